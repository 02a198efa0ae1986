"""Gurobi backend: the exact nonconvex MIQCP (bilinear equalities kept as quadratic constraints).

Per objective and sense the bound is Gurobi's ``ObjBound`` (the best dual bound of its spatial
branch and bound; on a time limit the bound reached so far), never ``ObjVal``. Gurobi works to
``FeasibilityTol = 1e-9`` on the (bilinear) constraints, so its bound is valid for a slightly
enlarged feasible set; it is padded outward by ``1e-6 (1 + ||c||_inf) + 1e-7 |v|``.

The pip wheel ships a size-limited licence. Measured with gurobipy 13: at most 2000 variables and
2000 linear constraints, and at most **200 variables** once any quadratic constraint is present
(error 10010, "Model too large for size-limited license"). Too-large programs raise
:class:`LicenceLimit` (a :class:`SolverUnavailable`) instead of returning failures.
"""
from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import Any

import numpy as np

from mibpcert.ir.program import LinearExpr, Program

from .base import Backend, LicenceLimit, SolveOptions, Status, dense_cost, failed_side, pad_outward, time_limit

LICENCE_ERRNO = 10010  # GRB_ERROR_SIZE_LIMIT_EXCEEDED
# Limits of the size-limited (pip) licence, measured with gurobipy 13.0.
LIMITED_MAX_VARS = 2000
LIMITED_MAX_CONSTRS = 2000
LIMITED_MAX_VARS_QUADRATIC = 200


def _too_large_message(program: Program) -> str:
    return (
        f"program has {program.num_vars} variables / {program.num_rows} constraints "
        f"({program.num_bilinear} bilinear), more than the size-limited Gurobi licence allows "
        f"(<= {LIMITED_MAX_VARS} variables and {LIMITED_MAX_CONSTRS} linear constraints, "
        f"<= {LIMITED_MAX_VARS_QUADRATIC} variables with quadratic constraints)"
    )


@functools.lru_cache(maxsize=1)
def licence_is_size_limited() -> bool:
    """True when the active Gurobi licence rejects a 2001-variable empty model (errno 10010)."""
    import gurobipy as gp

    with gp.Env(params={"OutputFlag": 0}) as env, gp.Model(env=env) as m:
        m.addMVar(LIMITED_MAX_VARS + 1, lb=0.0, ub=1.0)
        try:
            m.optimize()
        except gp.GurobiError as e:
            if e.errno == LICENCE_ERRNO:
                return True
            raise
    return False


def exceeds_limited_licence(program: Program) -> bool:
    """Whether ``program`` exceeds the size-limited licence (see module docstring)."""
    if program.num_vars > LIMITED_MAX_VARS or program.num_rows > LIMITED_MAX_CONSTRS:
        return True
    return program.num_bilinear > 0 and program.num_vars > LIMITED_MAX_VARS_QUADRATIC


def licence_misfit(program: Program) -> str | None:
    """Why the active licence cannot take ``program`` (it exceeds the size-limited licence, and the
    licence is size-limited), or None."""
    if not exceeds_limited_licence(program):
        return None
    try:
        limited = licence_is_size_limited()
    except Exception:
        return None  # cannot tell here; a solve that hits the limit raises LicenceLimit
    return _too_large_message(program) if limited else None


@dataclass
class _Model:
    env: Any  # gurobipy.Env
    model: Any  # gurobipy.Model
    x: Any  # gurobipy.MVar over the program's variables
    program: Program


class GurobiBackend(Backend):
    """Exact bounds over the program with Gurobi's nonconvex MIQCP solver: padded ``ObjBound``.

    :meth:`bound` raises :class:`LicenceLimit` when the licence is too small for the program."""

    name = "gurobi"
    exact = True
    package = "gurobipy"
    missing = (
        "gurobipy is not installed (pip install gurobipy, size-limited licence included); "
        "alternative: backend='highs' (McCormick relaxation)"
    )

    def misfit(self, program: Program) -> str | None:
        return licence_misfit(program)

    def _prepare(self, program: Program, options: SolveOptions) -> _Model:
        import gurobipy as gp

        reason = licence_misfit(program)
        if reason is not None:
            raise LicenceLimit(reason)
        env = None
        try:
            env = gp.Env(params={"OutputFlag": 0})
            model, x = self._build(gp, env, program, options)
        except Exception as e:
            if env is not None:
                env.dispose()
            if isinstance(e, gp.GurobiError) and e.errno == LICENCE_ERRNO:
                raise LicenceLimit(_too_large_message(program)) from e
            raise
        return _Model(env, model, x, program)

    def _objective(self, state: _Model, obj: LinearExpr) -> tuple[LinearExpr, np.ndarray]:
        return obj, dense_cost(obj, state.x.shape[0])

    def _solve_side(self, state: _Model, task, sense_min: bool, options: SolveOptions) -> tuple[float, Status]:
        import gurobipy as gp

        try:
            return self._side(gp, state.model, state.x, *task, sense_min)
        except gp.GurobiError as e:
            if e.errno == LICENCE_ERRNO:
                raise LicenceLimit(_too_large_message(state.program)) from e
            raise

    def _release(self, state: _Model) -> None:
        state.model.dispose()
        state.env.dispose()

    @staticmethod
    def _build(gp, env, program: Program, options: SolveOptions):
        model = gp.Model(env=env)
        vtype = np.where(program.is_binary, gp.GRB.BINARY, gp.GRB.CONTINUOUS)
        x = model.addMVar(program.num_vars, lb=program.lb, ub=program.ub, vtype=vtype)
        A = program.A.tocsr()
        lo, hi = program.row_lb, program.row_ub
        eq = np.isfinite(lo) & np.isfinite(hi) & (lo == hi)
        rng = np.isfinite(lo) & np.isfinite(hi) & ~eq
        ge = np.isfinite(lo) & ~np.isfinite(hi)
        le = ~np.isfinite(lo) & np.isfinite(hi)
        for mask, sense, rhs in ((eq, "=", lo), (ge, ">", lo), (le, "<", hi)):
            if mask.any():
                model.addMConstr(A[mask], x, sense, rhs[mask])
        if rng.any():  # two-sided rows: both sides as separate rows
            model.addMConstr(A[rng], x, ">", lo[rng])
            model.addMConstr(A[rng], x, "<", hi[rng])
        for z, u, v in program.bilinear:
            model.addConstr(x[int(z)] == x[int(u)] * x[int(v)])
        p = model.Params
        p.NonConvex = 2
        p.Threads = int(options.threads) if options.threads else 0
        if options.time_limit is not None:
            p.TimeLimit = time_limit(options)
        p.FeasibilityTol = 1e-9
        p.IntFeasTol = 1e-9
        p.OptimalityTol = 1e-9
        p.MIPGap = 1e-7
        p.MIPGapAbs = 1e-7
        p.Seed = 0
        for key, val in options.extra.items():
            model.setParam(key, val)
        if options.warm_start is not None:
            ws = np.asarray(options.warm_start, dtype=np.float64)
            if ws.shape == (program.num_vars,):
                x.Start = ws
        model.update()
        return model, x

    @staticmethod
    def _side(gp, model, x, obj: LinearExpr, c: np.ndarray, sense_min: bool) -> tuple[float, Status]:
        model.setObjective(c @ x + float(obj.const), gp.GRB.MINIMIZE if sense_min else gp.GRB.MAXIMIZE)
        model.optimize()
        st = model.Status
        bad = failed_side(sense_min)
        if st == gp.GRB.OPTIMAL:
            status = Status.OPTIMAL
        elif st in (gp.GRB.TIME_LIMIT, gp.GRB.NODE_LIMIT, gp.GRB.ITERATION_LIMIT,
                    gp.GRB.SOLUTION_LIMIT, gp.GRB.INTERRUPTED, gp.GRB.SUBOPTIMAL,
                    gp.GRB.WORK_LIMIT, gp.GRB.MEM_LIMIT, gp.GRB.USER_OBJ_LIMIT):
            status = Status.TIME_LIMIT
        else:  # infeasible / unbounded / numeric trouble
            return bad
        try:
            v = float(model.ObjBound)
        except (gp.GurobiError, AttributeError):
            return bad
        if not np.isfinite(v) or abs(v) >= gp.GRB.INFINITY:
            return bad
        pad = 1e-6 * (1.0 + float(np.max(np.abs(c), initial=0.0)))
        return float(pad_outward(v, sense_min, pad, 1e-7)), status
