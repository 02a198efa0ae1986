"""SCIP backend (PySCIPOpt): the exact program, bilinear equalities as nonlinear constraints.

**Disabled unless opted in** (``MIBPCERT_ALLOW_UNVERIFIED_SCIP=1``). SCIP 10.0 (PySCIPOpt 6.3)
reports status "optimal" with dual bounds that exclude parameters reached by plain torch training
on enumerated poisoned data sets: on one-hot, union and FeatureValues step programs of
``tests/threats/`` (one-step union programs) by up to 0.14. The same program written out by SCIP and read
by Gurobi gives the enumerated optimum, so the translation is right and the bound is wrong.
Which programs fail changes with presolving, separation, heuristics, tolerances, a warm start
or an explicit objective variable, and the looser of two configurations still failed, so no
setting was found that makes it trustworthy; ``tests/solvers/test_scip.py`` keeps one of these
programs as a regression check that fails once a SCIP release gets it right.

Per objective and sense the bound is ``Model.getDualbound()`` (the global dual bound of SCIP's
spatial branch and bound; on a time or node limit the bound reached so far), never the primal
bound. SCIP enforces constraints up to ``numerics/feastol`` (set to 1e-9; a looser feasibility
tolerance only enlarges the set it bounds), solves LP relaxations to ``numerics/dualfeastol``
(1e-7; tighter values are clamped by SoPlex without GMP) and works with further relative
tolerances on nonconvex constraints, so the bound is padded outward by
``1e-6 (1 + ||c||_inf) + 1e-6 |v|``. Every objective side is solved on a freshly built model:
re-using one model across objectives (``freeTransform`` and a new objective) returned dual bounds
that cut off feasible points in our enumeration tests.
"""
from __future__ import annotations

import os

import numpy as np

from mibpcert.ir.program import LinearExpr, Program

from .base import (
    Backend, SolveOptions, SolverUnavailable, Status, dense_cost, failed_side, pad_outward, time_limit,
)

_LIMIT_STATUSES = {
    "timelimit", "nodelimit", "totalnodelimit", "stallnodelimit", "memlimit",
    "sollimit", "bestsollimit", "restartlimit", "userinterrupt", "primallimit", "duallimit",
}


ALLOW_ENV = "MIBPCERT_ALLOW_UNVERIFIED_SCIP"


def opted_in() -> bool:
    """Whether the user allowed SCIP with ``MIBPCERT_ALLOW_UNVERIFIED_SCIP=1`` (experiments and
    benchmarks: its bounds are not certificates)."""
    return os.environ.get(ALLOW_ENV, "").strip() not in ("", "0")


def unverified_reason() -> str | None:
    """Why SCIP may not produce certificates here, or None when :func:`opted_in`."""
    if opted_in():
        return None
    try:
        import pyscipopt

        version = f"SCIP {pyscipopt.Model().version()} (PySCIPOpt {pyscipopt.__version__})"
    except Exception:
        version = "SCIP"
    return (
        f"{version} is disabled for certification: it reported status 'optimal' with dual bounds "
        "that exclude parameters reached by plain training on mibpcert's step programs (see "
        "docs/backends.md), so its bounds cannot be certificates. Use backend='gurobi' (exact) or "
        f"'highs' (sound relaxation); set {ALLOW_ENV}=1 to run SCIP anyway for experiments"
    )


class ScipBackend(Backend):
    """Bounds over the exact program with SCIP's spatial branch and bound (opt-in only: see
    :func:`unverified_reason`)."""

    name = "scip"
    exact = True
    package = "pyscipopt"
    missing = (
        "pyscipopt is not installed (pip install pyscipopt); alternatives: "
        "backend='highs' (McCormick relaxation) or backend='gurobi' (exact, size-limited)"
    )

    def __init__(self) -> None:
        super().__init__()
        reason = unverified_reason()
        if reason is not None:
            raise SolverUnavailable(reason)

    def _prepare(self, program: Program, options: SolveOptions) -> Program:
        return program  # every side builds its own model (see the module docstring)

    def _objective(self, program: Program, obj: LinearExpr) -> tuple[LinearExpr, np.ndarray]:
        return obj, dense_cost(obj, program.num_vars)

    def _solve_side(self, program: Program, task, sense_min: bool, options: SolveOptions) -> tuple[float, Status]:
        # a fresh model per side: re-using one model across objectives (freeTransform and a new
        # objective) gave dual bounds that excluded feasible points in our tests
        model = None
        try:
            model, x = self._build(program, options)
            return self._side(model, x, *task, sense_min)
        finally:
            if model is not None:
                try:
                    model.freeProb()
                except Exception:
                    pass

    @staticmethod
    def _build(program: Program, options: SolveOptions):
        import pyscipopt as ps

        m = ps.Model()
        m.hideOutput()
        x = [
            m.addVar(name=f"x{i}", vtype="B" if program.is_binary[i] else "C",
                     lb=float(program.lb[i]), ub=float(program.ub[i]))
            for i in range(program.num_vars)
        ]
        A = program.A.tocsr()
        for r in range(program.num_rows):
            s, e = A.indptr[r], A.indptr[r + 1]
            if e == s:
                continue  # empty row: constrains no variable
            expr = ps.quicksum(float(c) * x[int(j)] for j, c in zip(A.indices[s:e], A.data[s:e]))
            lo, hi = float(program.row_lb[r]), float(program.row_ub[r])
            if np.isfinite(lo) and np.isfinite(hi):
                m.addCons(ps.ExprCons(expr, lhs=lo, rhs=hi))
            elif np.isfinite(lo):
                m.addCons(expr >= lo)
            elif np.isfinite(hi):
                m.addCons(expr <= hi)
        for z, u, v in program.bilinear:
            m.addCons(x[int(z)] == x[int(u)] * x[int(v)])
        # Presolving and primal heuristics off: with either on, SCIP 10 reported "optimal" dual
        # bounds that cut off feasible points of our step programs (hinge, MSE and FeatureValues
        # cases in tests/encode/test_training_step.py); with both off the bounds match enumeration. Only
        # the dual bound is used, so heuristics are not needed.
        m.setPresolve(ps.SCIP_PARAMSETTING.OFF)
        m.setHeuristics(ps.SCIP_PARAMSETTING.OFF)
        m.setParam("numerics/feastol", 1e-9)
        # SCIP re-solves unstable LPs with tolerances 1e-3 times these; SoPlex without GMP clamps
        # anything below 1e-10 (and prints a line each time), so the dual tolerance stays at 1e-7.
        m.setParam("numerics/dualfeastol", 1e-7)
        m.setParam("limits/gap", 1e-7)
        m.setParam("limits/absgap", 1e-7)
        m.setParam("randomization/randomseedshift", 0)
        if options.time_limit is not None:
            m.setParam("limits/time", time_limit(options))
        for key, val in options.extra.items():
            m.setParam(key, val)
        return m, x

    @staticmethod
    def _side(model, x, obj: LinearExpr, c: np.ndarray, sense_min: bool) -> tuple[float, Status]:
        import pyscipopt as ps

        nz = np.flatnonzero(c)
        expr = ps.quicksum(float(c[j]) * x[j] for j in nz) if nz.size else ps.Expr()
        model.setObjective(expr, "minimize" if sense_min else "maximize")
        # ``options.warm_start`` is not passed: with the (feasible) nominal point added as a
        # solution SCIP 10 cut off enumerated optima on two more FeatureValues/union programs.
        model.optimize()
        st = model.getStatus()
        v = float(model.getDualbound())
        bad = failed_side(sense_min)
        if st in ("optimal", "gaplimit"):
            status = Status.OPTIMAL
        elif st in _LIMIT_STATUSES:
            status = Status.TIME_LIMIT
        else:  # infeasible, unbounded, unknown
            return bad
        if not np.isfinite(v) or abs(v) >= model.infinity():
            return bad
        v += float(obj.const)
        pad = 1e-6 * (1.0 + float(np.max(np.abs(c), initial=0.0)))
        return float(pad_outward(v, sense_min, pad, 1e-6)), status
