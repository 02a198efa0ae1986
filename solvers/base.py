"""The one interface every solver backend implements, and the one solve loop they share.

``Backend.bound(program, objectives, options)`` returns, for every objective, a sound lower and
upper bound over the program's feasible set. "Sound" means: the solver's *dual* bound (best bound),
padded outward by the solver's tolerances; never an incumbent value. On a time-out the dual bound
reached so far is returned; on failure the side is ``-inf``/``+inf`` with status ``FAILED`` so the
caller keeps its interval bound.

:meth:`Backend.bound` is written once, here (a template method). A backend implements only:

* :meth:`Backend._prepare` — build the solver model once per program (warm start and time limit
  included); an exception makes every objective ``FAILED``, a :class:`SolverUnavailable` (e.g.
  :class:`LicenceLimit`) propagates to the caller;
* :meth:`Backend._objective` — per objective, what both sides share (e.g. the cost vector loaded
  into the model); an exception makes both sides of that objective ``FAILED``;
* :meth:`Backend._solve_side` — one objective, one sense: ``(padded dual bound, Status)``, where a
  side without a usable dual bound is :func:`failed_side`; an exception makes that side ``FAILED``;
* :meth:`Backend._release` — free the model (always called after the loop).
"""
from __future__ import annotations

import enum
import importlib
import time
from dataclasses import dataclass, field
from typing import Any, Sequence

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
    SKIPPED = "skipped"  # not given to a solver: the caller's own bound is at least as tight


@dataclass
class SolveOptions:
    time_limit: float | None = None  # seconds per objective side; None = no limit
    threads: int = 1
    warm_start: np.ndarray | None = None  # a feasible point of the program, if known
    relax: str = "milp"  # relaxing backends: "milp" keeps binaries, "lp" relaxes them too
    partitions: int = 1  # relaxing backends: McCormick pieces per bilinear term (1 = plain)
    extra: dict = field(default_factory=dict)  # backend-specific parameters
    deadline: float | None = None  # time.monotonic() after which no side starts (they keep no bound)


@dataclass
class ObjectiveBound:
    lower: float
    upper: float
    lower_status: Status
    upper_status: Status
    seconds: float = 0.0


class Backend:
    """Base class: subclasses set ``name`` and ``exact`` and implement the hooks below (see the
    module docstring); :meth:`bound` is the shared loop over objectives and senses.

    ``package``/``missing``: an optional solver package the backend needs and the message of the
    :class:`SolverUnavailable` raised at construction when it does not import."""

    name: str = "base"
    exact: bool = False  # True when bilinear terms are kept (not relaxed)
    package: str | None = None
    missing: str = ""

    def __init__(self) -> None:
        if self.package is not None:
            try:
                importlib.import_module(self.package)
            except ImportError as e:
                raise SolverUnavailable(self.missing) from e

    def bound(
        self, program: Program, objectives: Sequence[LinearExpr], options: SolveOptions
    ) -> list[ObjectiveBound]:
        """Sound [lower, upper] of each objective: the solver's padded dual bound per side.

        Raises :class:`SolverUnavailable` (e.g. :class:`LicenceLimit`) when the backend cannot
        take ``program`` at all; any other failure is reported as ``Status.FAILED``."""
        objectives = list(objectives)
        try:
            state = self._prepare(program, options)
        except SolverUnavailable:
            raise
        except Exception:
            return [ObjectiveBound(-np.inf, np.inf, Status.FAILED, Status.FAILED) for _ in objectives]
        try:
            return [self._bound_objective(state, obj, options) for obj in objectives]
        finally:
            self._release(state)

    def _bound_objective(self, state: Any, obj: LinearExpr, options: SolveOptions) -> ObjectiveBound:
        t0 = time.perf_counter()
        try:
            task = self._objective(state, obj)
        except Exception:
            return ObjectiveBound(-np.inf, np.inf, Status.FAILED, Status.FAILED, time.perf_counter() - t0)
        sides = []
        for sense_min in (True, False):
            if options.deadline is not None and time.monotonic() >= options.deadline:
                sides.append(((-np.inf if sense_min else np.inf), Status.TIME_LIMIT))
                continue
            try:
                sides.append(self._solve_side(state, task, sense_min, options))
            except SolverUnavailable:
                raise
            except Exception:
                sides.append(failed_side(sense_min))
        (lo, ls), (hi, us) = sides
        return ObjectiveBound(lo, hi, ls, us, time.perf_counter() - t0)

    def margin(self, program: Program, options: SolveOptions) -> float:
        """A width ``w >= 0`` such that every lower bound this backend returns for an objective of
        ``program`` is at least ``w`` below the objective's minimum over the program, and every
        upper bound at least ``w`` above its maximum (padding beyond what soundness needs). A sound
        enclosure of an objective's values no wider than ``w`` is therefore never loosened by this
        backend's bound, so the objective need not be solved. Default 0: the padding only covers
        the solver's tolerances."""
        return 0.0

    def misfit(self, program: Program) -> str | None:
        """Why this backend cannot take ``program`` (e.g. a size-limited licence), or None when it
        can; decided from the program's size, before any solve (default: every program fits)."""
        return None

    # -- hooks -----------------------------------------------------------------------------------
    def _prepare(self, program: Program, options: SolveOptions) -> Any:
        """The solver model for ``program``, built once for all objectives."""
        raise NotImplementedError

    def _objective(self, state: Any, obj: LinearExpr) -> Any:
        """What both sides of ``obj`` share (default: the objective itself)."""
        return obj

    def _solve_side(self, state: Any, task: Any, sense_min: bool, options: SolveOptions) -> tuple[float, Status]:
        """The padded dual bound of one objective in one sense, and its status."""
        raise NotImplementedError

    def _release(self, state: Any) -> None:
        """Free what :meth:`_prepare` built (default: nothing)."""


def failed_side(sense_min: bool) -> tuple[float, Status]:
    """A side without a usable dual bound: ``-inf`` (lower) or ``+inf`` (upper), ``FAILED``."""
    return (-np.inf if sense_min else np.inf), Status.FAILED


def dense_cost(obj: LinearExpr, n: int) -> np.ndarray:
    """The objective's coefficients as a dense vector over ``n`` variables (repeats summed)."""
    c = np.zeros(n)
    np.add.at(c, np.asarray(obj.idx, dtype=np.int64), np.asarray(obj.coef, dtype=np.float64))
    return c


def time_limit(options: SolveOptions) -> float | None:
    """The per-side time limit in seconds (negative taken as 0), at most the time left before the
    deadline; None for no limit."""
    if options.time_limit is None:
        return None
    limit = float(max(options.time_limit, 0.0))
    if options.deadline is not None:
        limit = min(limit, max(options.deadline - time.monotonic(), 0.0))
    return limit


def pad_outward(value: float, sense_min: bool, abs_tol: float, rel_tol: float) -> float:
    """Move a dual bound outward by the solver's tolerances so floating-point slack cannot make it
    exclude a feasible point."""
    if not np.isfinite(value):
        return value
    pad = abs_tol + rel_tol * abs(value)
    return value - pad if sense_min else value + pad
