"""Solver backends that bound linear objectives over a mixed-integer bilinear program.

``get_backend(name)`` returns a :class:`Backend`:

* ``"highs"`` — McCormick relaxation (LP or MILP) solved by HiGHS; sound but looser.
* ``"gurobi"`` — exact nonconvex MIQCP via gurobipy (the pip licence is size-limited).
* ``"scip"`` — exact spatial branch and bound via PySCIPOpt; disabled for certification unless
  ``MIBPCERT_ALLOW_UNVERIFIED_SCIP=1`` (SCIP 10 returned unsound dual bounds, see ``scip.py``).
* ``"pyomo:<solver>"`` — any Pyomo solver (``"pyomo:appsi_highs"``, ``"pyomo:gurobi_direct"``);
  solvers without nonconvex quadratic support get the McCormick relaxation.

Every backend returns, per objective, its solver's dual bound padded outward (never an incumbent);
a failed side is ``-inf``/``+inf`` with ``Status.FAILED``.
"""
from __future__ import annotations

from .base import Backend, LicenceLimit, ObjectiveBound, SolveOptions, SolverUnavailable, Status, pad_outward
from .registry import available_backends, get_backend

__all__ = [
    "Backend",
    "LicenceLimit",
    "ObjectiveBound",
    "SolveOptions",
    "SolverUnavailable",
    "Status",
    "pad_outward",
    "get_backend",
    "available_backends",
]
