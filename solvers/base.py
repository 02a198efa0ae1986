"""The one interface every solver backend implements.

``Backend.bound(program, objectives, options)`` returns, for every objective, a sound lower and
upper bound over the program's feasible set. "Sound" means: the solver's *dual* bound (best bound),
padded outward by the solver's tolerances; never an incumbent value. On a time-out the dual bound
reached so far is returned; on failure the side is ``-inf``/``+inf`` with status ``FAILED`` so the
caller keeps its interval bound.
"""
from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Sequence

import numpy as np

from mibpcert.ir.program import LinearExpr, Program


class SolverUnavailable(RuntimeError):
    """A backend's package (or licence) is missing or too small for a program."""


class LicenceLimit(SolverUnavailable):
    """The solver's licence is too small for this program (a certified run falls back to the
    interval bound for the step and counts it)."""


class Status(str, enum.Enum):
    OPTIMAL = "optimal"
    TIME_LIMIT = "time-limit"
    FAILED = "failed"


@dataclass
class SolveOptions:
    time_limit: float | None = None  # seconds per objective side; None = no limit
    threads: int = 1
    warm_start: np.ndarray | None = None  # a feasible point of the program, if known
    relax: str = "milp"  # relaxing backends: "milp" keeps binaries, "lp" relaxes them too
    partitions: int = 1  # relaxing backends: McCormick pieces per bilinear term (1 = plain)
    extra: dict = field(default_factory=dict)  # backend-specific parameters


@dataclass
class ObjectiveBound:
    lower: float
    upper: float
    lower_status: Status
    upper_status: Status
    seconds: float = 0.0


class Backend:
    """Base class: subclasses implement :meth:`bound` and set ``name`` and ``exact``."""

    name: str = "base"
    exact: bool = False  # True when bilinear terms are kept (not relaxed)

    def bound(
        self, program: Program, objectives: Sequence[LinearExpr], options: SolveOptions
    ) -> list[ObjectiveBound]:
        raise NotImplementedError


def pad_outward(value: float, sense_min: bool, abs_tol: float, rel_tol: float) -> float:
    """Move a dual bound outward by the solver's tolerances so floating-point slack cannot make it
    exclude a feasible point."""
    if not np.isfinite(value):
        return value
    pad = abs_tol + rel_tol * abs(value)
    return value - pad if sense_min else value + pad
