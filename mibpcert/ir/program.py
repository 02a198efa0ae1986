"""Solver-neutral intermediate representation (IR) of one mixed-integer bilinear program.

A :class:`Program` is a feasible set, built once and then bounded for many linear objectives:

* variables ``x`` with finite bounds ``lb <= x <= ub`` (binaries have bounds [0, 1] and
  ``is_binary`` set),
* sparse linear rows ``row_lb <= A x <= row_ub`` (either side may be infinite),
* bilinear equalities ``x[z] == x[u] * x[v]`` (one row of ``bilinear`` = ``(z, u, v)``); every
  factor has finite bounds, which relaxing backends need for McCormick envelopes.

An objective is a :class:`LinearExpr` ``const + sum(coef * x[idx])``; a backend returns, for each
objective, a sound lower and upper bound over the feasible set (the solver's dual bound padded
outward, never an incumbent).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np
import scipy.sparse as sp


@dataclass(frozen=True)
class LinearExpr:
    """``const + sum(coef[i] * x[idx[i]])``."""

    idx: np.ndarray
    coef: np.ndarray
    const: float = 0.0

    @staticmethod
    def var(i: int, scale: float = 1.0, const: float = 0.0) -> "LinearExpr":
        return LinearExpr(np.array([i], dtype=np.int64), np.array([scale], dtype=np.float64), const)

    def evaluate(self, x: np.ndarray) -> float:
        return float(self.const + np.dot(self.coef, x[self.idx]))


@dataclass(frozen=True)
class Program:
    """The feasible set of one MIBP (see module docstring). Immutable once built."""

    lb: np.ndarray
    ub: np.ndarray
    is_binary: np.ndarray
    A: sp.csr_matrix
    row_lb: np.ndarray
    row_ub: np.ndarray
    bilinear: np.ndarray  # (p, 3) int64 rows (z, u, v): x[z] == x[u] * x[v]
    names: tuple[str, ...] = field(default=())

    @property
    def num_vars(self) -> int:
        return int(self.lb.shape[0])

    @property
    def num_rows(self) -> int:
        return int(self.A.shape[0])

    @property
    def num_binaries(self) -> int:
        return int(self.is_binary.sum())

    @property
    def num_bilinear(self) -> int:
        return int(self.bilinear.shape[0])

    def max_violation(self, x: np.ndarray) -> float:
        """Largest violation of any bound, row, integrality or bilinear equality at ``x``."""
        v = [np.max(self.lb - x, initial=0.0), np.max(x - self.ub, initial=0.0)]
        if self.num_rows:
            ax = self.A @ x
            v += [np.max(self.row_lb - ax, initial=0.0), np.max(ax - self.row_ub, initial=0.0)]
        if self.num_binaries:
            xb = x[self.is_binary]
            v.append(np.max(np.minimum(np.abs(xb), np.abs(xb - 1.0)), initial=0.0))
        if self.num_bilinear:
            z, u, w = self.bilinear.T
            v.append(np.max(np.abs(x[z] - x[u] * x[w]), initial=0.0))
        return float(max(v))


class ProgramBuilder:
    """Incremental construction of a :class:`Program` (variables, rows, bilinear equalities)."""

    def __init__(self) -> None:
        self._lb: list[np.ndarray] = []
        self._ub: list[np.ndarray] = []
        self._bin: list[np.ndarray] = []
        self._names: list[str] = []
        self._n = 0
        self._rows_i: list[np.ndarray] = []
        self._rows_j: list[np.ndarray] = []
        self._rows_v: list[np.ndarray] = []
        self._row_lb: list[float] = []
        self._row_ub: list[float] = []
        self._bil: list[tuple[int, int, int]] = []

    @property
    def num_vars(self) -> int:
        return self._n

    def add_vars(self, lb, ub, binary: bool = False, name: str = "x") -> np.ndarray:
        """Add variables with bounds ``lb``/``ub`` (broadcast to a common shape); returns their indices
        in that shape. Bounds must be finite and ``lb <= ub``."""
        lb_a, ub_a = np.broadcast_arrays(np.asarray(lb, dtype=np.float64), np.asarray(ub, dtype=np.float64))
        if not (np.all(np.isfinite(lb_a)) and np.all(np.isfinite(ub_a))):
            raise ValueError(f"variable block {name!r} has non-finite bounds")
        if np.any(lb_a > ub_a):
            raise ValueError(f"variable block {name!r} has a lower bound above its upper bound")
        shape = lb_a.shape
        k = int(np.prod(shape)) if shape else 1
        idx = np.arange(self._n, self._n + k, dtype=np.int64).reshape(shape)
        self._lb.append(lb_a.reshape(-1).copy())
        self._ub.append(ub_a.reshape(-1).copy())
        self._bin.append(np.full(k, binary))
        self._names.extend(f"{name}[{i}]" for i in range(k))
        self._n += k
        return idx

    def add_binaries(self, shape, name: str = "b") -> np.ndarray:
        return self.add_vars(np.zeros(shape), np.ones(shape), binary=True, name=name)

    def add_row(self, idx, coef, lo: float = -np.inf, hi: float = np.inf) -> None:
        """Add ``lo <= sum(coef * x[idx]) <= hi``; repeated indices are summed."""
        idx_a = np.asarray(idx, dtype=np.int64).reshape(-1)
        coef_a = np.broadcast_to(np.asarray(coef, dtype=np.float64), idx_a.shape).reshape(-1)
        r = len(self._row_lb)
        self._rows_i.append(np.full(idx_a.shape[0], r, dtype=np.int64))
        self._rows_j.append(idx_a)
        self._rows_v.append(coef_a.copy())
        self._row_lb.append(float(lo))
        self._row_ub.append(float(hi))

    def add_eq(self, idx, coef, rhs: float) -> None:
        self.add_row(idx, coef, rhs, rhs)

    def add_bilinear(self, z: int, u: int, v: int) -> None:
        """Add ``x[z] == x[u] * x[v]``."""
        self._bil.append((int(z), int(u), int(v)))

    def build(self) -> Program:
        n = self._n
        lb = np.concatenate(self._lb) if self._lb else np.zeros(0)
        ub = np.concatenate(self._ub) if self._ub else np.zeros(0)
        is_bin = np.concatenate(self._bin) if self._bin else np.zeros(0, dtype=bool)
        m = len(self._row_lb)
        if m:
            A = sp.csr_matrix(
                (np.concatenate(self._rows_v), (np.concatenate(self._rows_i), np.concatenate(self._rows_j))),
                shape=(m, n),
            )
            A.sum_duplicates()
        else:
            A = sp.csr_matrix((0, n))
        bil = np.array(self._bil, dtype=np.int64).reshape(-1, 3)
        return Program(lb, ub, is_bin, A, np.array(self._row_lb), np.array(self._row_ub), bil, tuple(self._names))
