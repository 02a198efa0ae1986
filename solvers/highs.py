"""HiGHS backend: bounds over a McCormick relaxation (LP or MILP) of the program.

The relaxed feasible set contains the program's (see :mod:`mibpcert.solvers.mccormick`), so a
bound over it is a sound, possibly looser, bound over the program. The relaxed model is loaded
once; per objective only the costs and the sense change, so LP re-solves start from the previous
basis.

How each bound is read:

* LP (``relax="lp"``, or no integer columns left): a Neumaier–Shcherbina safe bound computed from
  HiGHS's row duals ``y``. For *any* ``y`` and ``r = c - A^T y``, every ``x`` with
  ``row_lb <= A x <= row_ub`` and ``lb <= x <= ub`` satisfies
  ``c^T x = y^T (A x) + r^T x >= sum_i min(y_i row_lb_i, y_i row_ub_i) + sum_j min(r_j lb_j, r_j ub_j)``
  (all column bounds are finite; a dual on an infinite row side is set to 0). So the value does not
  depend on HiGHS's tolerances or on the basis being optimal: at optimality it equals the LP optimum
  up to the dual infeasibilities, and on a time-out it is still valid. It is padded by a few ulps
  of the summed magnitudes (rounding) plus ``1e-9 (1 + |v|)``. That last padding is not needed for
  soundness, so the bound lies at least :data:`LP_MARGIN` outside the objective's range
  (:meth:`HighsBackend.margin`).
* MILP: ``info.mip_dual_bound`` (HiGHS's best bound; on a time-out the bound reached so far),
  never the incumbent. HiGHS computes it from LP relaxations solved to its tolerances (set to
  1e-9 here), so it is padded by ``1e-6 (1 + ||c||_1) + 1e-9 |v|``.
"""
from __future__ import annotations

import functools
import os
import sys
from dataclasses import dataclass

import highspy
import numpy as np
import scipy.sparse as sp

from mibpcert.ir.program import LinearExpr, Program

from .base import Backend, SolveOptions, Status, dense_cost, failed_side, pad_outward, time_limit
from .mccormick import relax

_EPS = np.finfo(np.float64).eps
# Half the absolute LP padding 1e-9: the other half covers the rounding of the padded value and of
# adding the objective's constant (at most eps |bound|, below 5e-10 for bounds under 2e6).
LP_MARGIN = 5e-10
_SCHEDULER_THREADS: int | None = None  # thread count of HiGHS's global scheduler, once we set it
_LIMIT_STATUSES = frozenset({
    highspy.HighsModelStatus.kTimeLimit, highspy.HighsModelStatus.kIterationLimit,
    highspy.HighsModelStatus.kSolutionLimit, highspy.HighsModelStatus.kInterrupt,
    highspy.HighsModelStatus.kHighsInterrupt, highspy.HighsModelStatus.kObjectiveBound,
    highspy.HighsModelStatus.kObjectiveTarget, highspy.HighsModelStatus.kMemoryLimit,
})


@functools.lru_cache(maxsize=1)
def _silence_banner() -> None:
    """HiGHS writes a banner to the process's stdout (file descriptor 1) when its first instance
    is made, whatever the options; make that instance with descriptor 1 pointed at the null
    device, so solver text never mixes with the summary a user reads or pipes."""
    sys.stdout.flush()
    saved = os.dup(1)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 1)
            highspy.Highs()
    finally:
        os.dup2(saved, 1)
        os.close(saved)


class LagrangianBound:
    """Rigorous bound of ``c^T x`` over ``{row_lb <= A x <= row_ub, lb <= x <= ub}`` from any row
    multipliers ``y`` (weak duality), padded for rounding. The transposes and masks are computed
    once per program, since the bound is evaluated for every objective side."""

    def __init__(self, A, row_lb: np.ndarray, row_ub: np.ndarray, lb: np.ndarray, ub: np.ndarray) -> None:
        A = sp.csr_matrix(A)
        self.AT = A.T.tocsr()
        self.absAT = abs(self.AT)
        self.lo_ok, self.hi_ok = np.isfinite(row_lb), np.isfinite(row_ub)
        self.rlo = np.where(self.lo_ok, row_lb, 0.0)
        self.rhi = np.where(self.hi_ok, row_ub, 0.0)
        self.lb, self.ub = lb, ub
        self.colmag = np.maximum(np.abs(lb), np.abs(ub))
        self.nnz = A.nnz

    def __call__(self, c: np.ndarray, y: np.ndarray, sense_min: bool) -> float:
        y = np.array(y, dtype=np.float64, copy=True)
        if not sense_min:  # max c^T x = -min (-c)^T x; the multipliers flip with the costs
            c, y = -c, -y
        y[~np.isfinite(y)] = 0.0
        # A positive multiplier uses the row's lower side, a negative one the upper side.
        y[(y > 0) & ~self.lo_ok] = 0.0
        y[(y < 0) & ~self.hi_ok] = 0.0
        r = c - self.AT @ y
        row_terms = np.where(y > 0, y * self.rlo, y * self.rhi)
        col_terms = np.where(r > 0, r * self.lb, r * self.ub)
        val = float(np.sum(row_terms) + np.sum(col_terms))
        # Rounding: of r (|c| + |A|^T |y|) times the column range, and of the sums.
        mag = float((np.abs(c) + self.absAT @ np.abs(y)) @ self.colmag)
        mag += float(np.sum(np.abs(row_terms)) + np.sum(np.abs(col_terms)))
        nnz = self.nnz + len(c) + len(y) + 2
        val -= 4.0 * nnz * _EPS * mag
        return val if sense_min else -val


def safe_lp_bound(
    c: np.ndarray, y: np.ndarray, A, row_lb: np.ndarray, row_ub: np.ndarray,
    lb: np.ndarray, ub: np.ndarray, sense_min: bool,
) -> float:
    """One-off :class:`LagrangianBound` (lower bound if ``sense_min`` else upper bound)."""
    return LagrangianBound(A, row_lb, row_ub, lb, ub)(c, y, sense_min)


@dataclass
class _Loaded:
    """A relaxed program loaded into HiGHS, with what every objective side needs."""

    h: "highspy.Highs"
    is_mip: bool
    rel: Program
    lag: LagrangianBound
    cols: np.ndarray


class HighsBackend(Backend):
    """McCormick relaxation solved by HiGHS (``relax="milp"`` keeps binaries, ``"lp"`` drops them).
    Sound [lower, upper] of each objective over the relaxed program (see module doc)."""

    name = "highs"
    exact = False

    def _prepare(self, program: Program, options: SolveOptions) -> _Loaded:
        rel = relax(program, options.relax, options.partitions)
        h, is_mip = self._load(rel, program, options)
        lag = LagrangianBound(rel.A, rel.row_lb, rel.row_ub, rel.lb, rel.ub)
        return _Loaded(h, is_mip, rel, lag, np.arange(rel.num_vars, dtype=np.int32))

    def _objective(self, state: _Loaded, obj: LinearExpr) -> tuple[np.ndarray, float]:
        """Only the costs change between objectives, so LP re-solves start from the last basis."""
        n = state.rel.num_vars
        c = dense_cost(obj, n) if n else np.zeros(0)
        if n:
            state.h.changeColsCost(n, state.cols, c)
        return c, float(obj.const)

    def _solve_side(self, state: _Loaded, task, sense_min: bool, options: SolveOptions) -> tuple[float, Status]:
        c, const = task
        v, status = self._side(state.h, state.is_mip, c, state.lag, state.rel, sense_min, options)
        return v + const, status

    def margin(self, program: Program, options: SolveOptions) -> float:
        """:data:`LP_MARGIN` when the relaxation is an LP (``relax="lp"``, or no binaries and no
        partitions): the weak-duality value is rigorous before its ``1e-9 (1 + |v|)`` padding. A
        MILP's dual bound is HiGHS's own, padded only for its tolerances: 0."""
        lp = options.relax == "lp" or (not program.is_binary.any() and (options.partitions == 1 or not program.num_bilinear))
        return LP_MARGIN if lp else 0.0

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _load(rel: Program, program: Program, options: SolveOptions):
        _silence_banner()
        h = highspy.Highs()
        h.setOptionValue("output_flag", False)
        for key, val in (
            ("primal_feasibility_tolerance", 1e-9),
            ("dual_feasibility_tolerance", 1e-9),
            ("mip_feasibility_tolerance", 1e-9),
            ("mip_rel_gap", 1e-4),
            ("mip_abs_gap", 1e-6),
            ("random_seed", 0),
        ):
            h.setOptionValue(key, val)
        is_mip = bool(rel.is_binary.any())
        if not is_mip:
            # Unscaled simplex: the McCormick LPs re-solve 1.6-2.1x faster from the previous basis
            # (joint Moons-100 h 16 and 20, FullCert BCE) with bounds equal to 1e-4 relative;
            # scaling is HiGHS's to choose inside a MILP. The bound is rigorous either way.
            h.setOptionValue("simplex_scale_strategy", 0)
        if options.time_limit is not None:
            h.setOptionValue("time_limit", time_limit(options))
        global _SCHEDULER_THREADS
        want = int(options.threads) if options.threads and options.threads > 0 else _SCHEDULER_THREADS
        if want is not None:
            # HiGHS's thread pool is process-global and fixed at first use; a run whose "threads"
            # option differs fails, so the pool is rebuilt when the requested count changes.
            if _SCHEDULER_THREADS is not None and want != _SCHEDULER_THREADS:
                highspy.Highs.resetGlobalScheduler(True)
            _SCHEDULER_THREADS = want
            h.setOptionValue("threads", want)
        for key, val in options.extra.items():
            h.setOptionValue(key, val)
        n, m = rel.num_vars, rel.num_rows
        if n == 0:
            return h, False
        A = rel.A.tocsc()
        A.sort_indices()
        lp = highspy.HighsLp()
        lp.num_col_ = n
        lp.num_row_ = m
        lp.col_cost_ = np.zeros(n)
        lp.col_lower_ = rel.lb.astype(np.float64)
        lp.col_upper_ = rel.ub.astype(np.float64)
        inf = highspy.kHighsInf
        lp.row_lower_ = np.where(np.isfinite(rel.row_lb), rel.row_lb, -inf)
        lp.row_upper_ = np.where(np.isfinite(rel.row_ub), rel.row_ub, inf)
        lp.a_matrix_.format_ = highspy.MatrixFormat.kColwise
        lp.a_matrix_.start_ = A.indptr.astype(np.int32)
        lp.a_matrix_.index_ = A.indices.astype(np.int32)
        lp.a_matrix_.value_ = A.data.astype(np.float64)
        if is_mip:
            lp.integrality_ = [
                highspy.HighsVarType.kInteger if b else highspy.HighsVarType.kContinuous
                for b in rel.is_binary
            ]
        if h.passModel(lp) == highspy.HighsStatus.kError:
            raise RuntimeError("HiGHS rejected the model")
        if is_mip and options.warm_start is not None and rel.num_vars == program.num_vars:
            try:  # only helps pruning; the dual bound does not depend on it
                sol = highspy.HighsSolution()
                sol.col_value = list(np.asarray(options.warm_start, dtype=np.float64))
                h.setSolution(sol)
            except Exception:
                pass
        return h, is_mip

    @staticmethod
    def _side(h, is_mip: bool, c: np.ndarray, lag: LagrangianBound, rel: Program, sense_min: bool,
              options: SolveOptions) -> tuple[float, Status]:
        """The padded bound of ``c^T x`` in one sense, before the objective's constant."""
        if rel.num_vars == 0:
            return 0.0, Status.OPTIMAL
        h.changeObjectiveSense(highspy.ObjSense.kMinimize if sense_min else highspy.ObjSense.kMaximize)
        if options.time_limit is not None:  # HiGHS counts time_limit against the model's total run time
            h.setOptionValue("time_limit", float(h.getRunTime()) + time_limit(options))
        rs = h.run()
        ms = h.getModelStatus()
        if rs == highspy.HighsStatus.kError and ms == highspy.HighsModelStatus.kNotset:
            # typically a thread-count clash with a scheduler started elsewhere in this process
            highspy.Highs.resetGlobalScheduler(True)
            rs = h.run()
            ms = h.getModelStatus()
        bad = failed_side(sense_min)
        info = h.getInfo()
        # Only a completed or limit-stopped run has a meaningful dual side. Infeasible means the
        # relaxation is empty (an encoding bug): FAILED, so the caller falls back.
        if rs == highspy.HighsStatus.kError or not info.valid:
            return bad
        if ms == highspy.HighsModelStatus.kOptimal:
            status = Status.OPTIMAL
        elif ms in _LIMIT_STATUSES:
            status = Status.TIME_LIMIT
        else:
            return bad
        if is_mip:
            v = float(info.mip_dual_bound)
            if not np.isfinite(v):
                return bad
            pad = 1e-6 * (1.0 + float(np.abs(c).sum()))
            return pad_outward(v, sense_min, pad, 1e-9), status
        sol = h.getSolution()
        if not sol.dual_valid:
            return bad
        y = np.asarray(sol.row_dual, dtype=np.float64)
        if y.shape[0] != rel.num_rows:
            return bad
        v = lag(c, y, sense_min)
        if not np.isfinite(v):
            return bad
        return float(pad_outward(v, sense_min, 1e-9, 1e-9)), status
