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

import importlib.util

from .base import Backend, LicenceLimit, ObjectiveBound, SolveOptions, SolverUnavailable, Status, pad_outward

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


# Pyomo solvers probed by ``available_backends``.
_PYOMO_PROBES = ("appsi_highs", "gurobi_direct", "scip")


def get_backend(name: str) -> Backend:
    """Backend by name: ``"highs"``, ``"gurobi"``, ``"scip"`` or ``"pyomo:<solver>"``.

    Raises ``ValueError`` for an unknown name and :class:`SolverUnavailable` when the backend's
    package is not installed.
    """
    key = name.strip()
    low = key.lower()
    if low == "highs":
        from .highs import HighsBackend

        return HighsBackend()
    if low == "gurobi":
        from .gurobi import GurobiBackend

        return GurobiBackend()
    if low == "scip":
        from .scip import ScipBackend

        return ScipBackend()
    if low.startswith("pyomo:") and key[len("pyomo:"):].strip():
        from .pyomo_backend import PyomoBackend

        return PyomoBackend(key[len("pyomo:"):].strip())
    raise ValueError(
        f"unknown solver backend {name!r}; valid names: 'highs', 'gurobi', 'scip', "
        "'pyomo:<solver>' (e.g. 'pyomo:appsi_highs', 'pyomo:gurobi_direct')"
    )


def available_backends(probe_pyomo: bool = True) -> list[str]:
    """Backends whose package imports here (for Pyomo, the probed solvers that report available)."""
    out = []
    from .scip import opted_in

    scip_ok = opted_in()
    for name, mod in (("highs", "highspy"), ("gurobi", "gurobipy"), ("scip", "pyscipopt")):
        if importlib.util.find_spec(mod) is not None and (name != "scip" or scip_ok):
            out.append(name)
    if probe_pyomo and importlib.util.find_spec("pyomo") is not None:
        try:
            import pyomo.environ  # noqa: F401  (registers the solver plugins)
            from pyomo.opt import SolverFactory

            for s in _PYOMO_PROBES:
                if "scip" in s and not scip_ok:
                    continue
                try:
                    if SolverFactory(s).available(exception_flag=False):
                        out.append(f"pyomo:{s}")
                except Exception:
                    pass
        except Exception:
            pass
    return out
