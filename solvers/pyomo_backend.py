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
import time
from typing import Sequence

import numpy as np

from mibpcert.ir.program import LinearExpr, Program

from .base import Backend, LicenceLimit, ObjectiveBound, SolveOptions, SolverUnavailable, Status, pad_outward
from .mccormick import relax


def _handles_nonconvex(solver_name: str) -> bool:
    low = solver_name.lower()
    return "gurobi" in low or "scip" in low


def _num(v) -> float | None:
    try:
        f = float(v)
    except (TypeError, ValueError):
        return None
    return f if math.isfinite(f) else None


class PyomoBackend(Backend):
    """Bounds via ``pyomo.environ.SolverFactory(solver_name)``."""

    exact = False

    def __init__(self, solver_name: str) -> None:
        self.solver_name = solver_name
        self.name = f"pyomo:{solver_name}"
        self.exact = _handles_nonconvex(solver_name)
        if "scip" in solver_name.lower():
            from .scip import unverified_reason

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
                "'pyomo:gurobi_direct', or backend='highs'/'scip'"
            )

    def bound(
        self, program: Program, objectives: Sequence[LinearExpr], options: SolveOptions
    ) -> list[ObjectiveBound]:
        """Sound [lower, upper] of each objective (exact program or its McCormick relaxation)."""
        objectives = list(objectives)
        fail = [ObjectiveBound(-np.inf, np.inf, Status.FAILED, Status.FAILED) for _ in objectives]
        try:
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
        except Exception:
            return fail
        is_lp = prog.num_bilinear == 0 and not prog.is_binary.any()
        has_int = bool(prog.is_binary.any()) or hasattr(model, "force_mip")
        kwargs: dict = {"load_solutions": False}
        if options.time_limit is not None:
            kwargs["timelimit"] = float(max(options.time_limit, 0.0))
        out = []
        for obj in objectives:
            t0 = time.perf_counter()
            try:
                c = np.zeros(prog.num_vars)
                np.add.at(c, np.asarray(obj.idx, dtype=np.int64), np.asarray(obj.coef, dtype=np.float64))
                nz = np.flatnonzero(c)
                const = float(obj.const)
                expr = sum(float(c[j]) * model.x[int(j)] for j in nz)
            except Exception:
                out.append(ObjectiveBound(-np.inf, np.inf, Status.FAILED, Status.FAILED, 0.0))
                continue
            if nz.size == 0:
                out.append(ObjectiveBound(const, const, Status.OPTIMAL, Status.OPTIMAL, 0.0))
                continue
            pad = 1e-6 * (1.0 + float(np.abs(c).sum()))
            sides = []
            for sense_min in (True, False):
                try:
                    if hasattr(model, "obj"):
                        model.del_component(model.obj)
                    model.obj = pe.Objective(expr=expr, sense=pe.minimize if sense_min else pe.maximize)
                    res = solver.solve(model, **kwargs)
                    v, st = self._read(res, sense_min, is_lp, has_int)
                except Exception as e:
                    if "size-limited" in str(e).lower():
                        raise LicenceLimit(
                            f"program has {prog.num_vars} variables / {prog.num_rows} constraints, "
                            "more than the size-limited Gurobi licence allows; use per-sample programs "
                            "(mode='per_sample'), a smaller model, or backend='highs'"
                        ) from e
                    v, st = None, Status.FAILED
                if v is None:
                    sides.append((-np.inf if sense_min else np.inf, Status.FAILED))
                else:
                    sides.append((float(pad_outward(v + const, sense_min, pad, 1e-6)), st))
            (lo, ls), (hi, us) = sides
            out.append(ObjectiveBound(lo, hi, ls, us, time.perf_counter() - t0))
        return out

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
