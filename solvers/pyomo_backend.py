"""Pyomo backend: any solver Pyomo can drive, named ``"pyomo:<solver>"``.

Solvers whose name contains ``gurobi`` or ``scip`` get the exact program (bilinear equalities as
quadratic constraints, ``exact = True``); every other solver gets the McCormick relaxation of
:mod:`mibpcert.solvers.mccormick` (``options.relax`` / ``options.partitions`` honoured,
``exact = False``), whose feasible set contains the program's.

The bound is read from Pyomo's results object: ``results.problem.lower_bound`` for a minimisation
and ``upper_bound`` for a maximisation. What the plugins put there (checked in Pyomo 6.10):

* ``appsi_highs``: HiGHS ``mip_dual_bound`` for a MILP (also on a time-out); for an LP the
  objective value of the returned point on *both* sides.
* ``gurobi_direct``: ``ObjBound`` for a model with integer variables; for a model without them
  ``ObjVal`` (an incumbent) on both sides, even for a nonconvex QCP or on a time-out.

So: an exact model without binaries gets one unused binary variable (which makes the Gurobi plugin
report ``ObjBound``); a model without integer variables is trusted only when it is an LP
terminated ``optimal`` (then the optimal value is the bound); everything else needs a reported
dual side, else that side is ``FAILED``. Values are padded outward by
``1e-6 (1 + ||c||_1) + 1e-6 |v|``: Pyomo exposes no duals in a solver-independent way that would
allow a rigorous LP bound as in :mod:`mibpcert.solvers.highs`.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from mibpcert.ir.program import LinearExpr, Program

from .base import (
    Backend, LicenceLimit, SolveOptions, SolverUnavailable, Status, dense_cost, failed_side, pad_outward, time_limit,
)
from .gurobi import licence_misfit
from .mccormick import relax
from .scip import unverified_reason


def _handles_nonconvex(solver_name: str) -> bool:
    low = solver_name.lower()
    return "gurobi" in low or "scip" in low


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


@dataclass
class _Loaded:
    """The Pyomo model of a program (or of its relaxation) and the solver that bounds it."""

    pe: Any  # the pyomo.environ module
    prog: Program
    model: Any
    solver: Any
    kwargs: dict
    is_lp: bool  # no bilinear rows and no binaries: an LP
    has_int: bool  # integer variables present (then the plugins report a dual bound)


class PyomoBackend(Backend):
    """Bounds via ``pyomo.environ.SolverFactory(solver_name)``."""

    exact = False

    def __init__(self, solver_name: str) -> None:
        self.solver_name = solver_name
        self.name = f"pyomo:{solver_name}"
        self.exact = _handles_nonconvex(solver_name)
        if "scip" in solver_name.lower():
            reason = unverified_reason()
            if reason is not None:
                raise SolverUnavailable(reason)
        try:
            import pyomo.environ  # noqa: F401  (needs the 'packaging' package)
            from pyomo.opt import SolverFactory
        except ImportError as e:
            raise SolverUnavailable(
                f"pyomo is not importable ({e}); pip install pyomo packaging, or use "
                "backend='highs'"
            ) from e
        try:
            ok = bool(SolverFactory(solver_name).available(exception_flag=False))
        except Exception:
            ok = False
        if not ok:
            raise SolverUnavailable(
                f"Pyomo solver {solver_name!r} is not available here; try 'pyomo:appsi_highs', "
                "'pyomo:gurobi_direct', or backend='highs'"
            )

    def misfit(self, program: Program) -> str | None:
        return licence_misfit(program) if "gurobi" in self.solver_name.lower() else None

    def _prepare(self, program: Program, options: SolveOptions) -> _Loaded:
        import pyomo.environ as pe
        from pyomo.opt import SolverFactory

        prog = program if self.exact else relax(program, options.relax, options.partitions)
        model = self._build(pe, prog)
        if self.exact and not prog.is_binary.any():
            # Pyomo's gurobi plugins report ObjVal (an incumbent) as both bounds of a model
            # without integer variables, even a nonconvex one; an unused binary makes them
            # report ObjBound instead.
            model.force_mip = pe.Var(domain=pe.Binary)
        solver = SolverFactory(self.solver_name)
        self._set_options(solver, options)
        kwargs: dict = {"load_solutions": False}
        if options.time_limit is not None:
            kwargs["timelimit"] = time_limit(options)
        return _Loaded(
            pe, prog, model, solver, kwargs,
            is_lp=prog.num_bilinear == 0 and not prog.is_binary.any(),
            has_int=bool(prog.is_binary.any()) or hasattr(model, "force_mip"),
        )

    def _objective(self, state: _Loaded, obj: LinearExpr):
        c = dense_cost(obj, state.prog.num_vars)
        nz = np.flatnonzero(c)
        expr = sum(float(c[j]) * state.model.x[int(j)] for j in nz)
        return expr, nz.size, float(obj.const), 1e-6 * (1.0 + float(np.abs(c).sum()))

    def _solve_side(self, state: _Loaded, task, sense_min: bool, options: SolveOptions) -> tuple[float, Status]:
        expr, nnz, const, pad = task
        if nnz == 0:  # a constant objective
            return const, Status.OPTIMAL
        pe, model, prog = state.pe, state.model, state.prog
        try:
            if hasattr(model, "obj"):
                model.del_component(model.obj)
            model.obj = pe.Objective(expr=expr, sense=pe.minimize if sense_min else pe.maximize)
            res = state.solver.solve(model, **state.kwargs)
            v, st = self._read(res, sense_min, state.is_lp, state.has_int)
        except Exception as e:
            if "size-limited" in str(e).lower():
                raise LicenceLimit(
                    f"program has {prog.num_vars} variables / {prog.num_rows} constraints, "
                    "more than the size-limited Gurobi licence allows"
                ) from e
            raise
        if v is None:
            return failed_side(sense_min)
        return float(pad_outward(v + const, sense_min, pad, 1e-6)), st

    # -- internals -------------------------------------------------------------------------------
    @staticmethod
    def _build(pe, prog: Program):
        m = pe.ConcreteModel()
        n = prog.num_vars
        m.x = pe.Var(
            range(n),
            domain=lambda _m, i: pe.Binary if prog.is_binary[i] else pe.Reals,
            bounds=lambda _m, i: (float(prog.lb[i]), float(prog.ub[i])),
        )
        A = prog.A.tocsr()
        m.rows = pe.ConstraintList()
        for r in range(prog.num_rows):
            s, e = A.indptr[r], A.indptr[r + 1]
            if e == s:
                continue
            lo, hi = prog.row_lb[r], prog.row_ub[r]
            expr = sum(float(a) * m.x[int(j)] for j, a in zip(A.indices[s:e], A.data[s:e]))
            m.rows.add((float(lo) if np.isfinite(lo) else None, expr, float(hi) if np.isfinite(hi) else None))
        m.bilinear = pe.ConstraintList()
        for z, u, v in prog.bilinear:
            m.bilinear.add(m.x[int(z)] == m.x[int(u)] * m.x[int(v)])
        return m

    def _set_options(self, solver, options: SolveOptions) -> None:
        low = self.solver_name.lower()
        cfg = getattr(solver, "config", None)
        tl = options.time_limit
        if "gurobi" in low:
            opts = {"NonConvex": 2, "FeasibilityTol": 1e-9, "IntFeasTol": 1e-9, "OptimalityTol": 1e-9,
                    "MIPGap": 1e-7, "MIPGapAbs": 1e-7, "Threads": int(options.threads or 0)}
            if tl is not None:
                opts["TimeLimit"] = float(max(tl, 0.0))
        elif "highs" in low:
            opts = {"primal_feasibility_tolerance": 1e-9, "dual_feasibility_tolerance": 1e-9,
                    "mip_feasibility_tolerance": 1e-9}
            if options.threads:
                opts["threads"] = int(options.threads)
        elif "scip" in low:
            opts = {"numerics/feastol": 1e-9, "limits/gap": 1e-7}
            if tl is not None:
                opts["limits/time"] = float(max(tl, 0.0))
        else:
            opts = {}
        opts.update(options.extra)
        target = getattr(solver, "options", None)
        if target is None and cfg is not None:
            target = getattr(cfg, "solver_options", None)
        if target is not None:
            for k, v in opts.items():
                target[k] = v

    @staticmethod
    def _read(res, sense_min: bool, is_lp: bool, has_int: bool) -> tuple[float | None, Status]:
        """The dual side of the results. Without integer variables Pyomo's plugins fill both
        sides with the objective value of the returned point, which bounds anything only for an LP
        solved to optimality; everything else must come from a branch-and-bound dual bound."""
        from pyomo.opt import TerminationCondition as TC

        tc = res.solver.termination_condition
        if not has_int and not (is_lp and tc == TC.optimal):
            return None, Status.FAILED
        if tc in (TC.optimal, TC.globallyOptimal):
            status = Status.OPTIMAL
        elif tc in (TC.maxTimeLimit, TC.maxIterations, TC.maxEvaluations, TC.userInterrupt,
                    TC.resourceInterrupt, TC.feasible, TC.minFunctionValue):
            status = Status.TIME_LIMIT
        else:  # infeasible, unbounded, error, unknown
            return None, Status.FAILED
        lo, hi = _num(res.problem.lower_bound), _num(res.problem.upper_bound)
        dual, other = (lo, hi) if sense_min else (hi, lo)
        if dual is not None:
            return dual, status
        if is_lp and tc == TC.optimal and other is not None:
            return other, status
        return None, Status.FAILED
