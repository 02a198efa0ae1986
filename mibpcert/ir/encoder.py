"""Vector quantities of a program and the operations the encoders build from.

A :class:`Vec` is a flat vector whose entries are either program variables or constants; it
carries sound bounds for every entry and the entry's value on the nominal (clean) trajectory,
which becomes the solver's warm start. :class:`Encoder` wraps the IR builder: it creates
variables, products (bilinear where both factors vary, linear where one is constant) and sums,
and bounds every new variable by interval arithmetic on its inputs (rounded outward),
intersected with the bounds of the interval pass when given. Valid bounds are implied
constraints, so adding them never cuts off a real trajectory.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from .program import LinearExpr, Program, ProgramBuilder

_EPS = np.finfo(np.float64).eps


def pad_down(x):
    """A value a little below ``x``: below every float64 rounding of a computation whose error is
    at most a few ulps of ``x`` (bounds of program variables are padded with it)."""
    return np.nextafter(x - 4 * _EPS * np.abs(x), -np.inf)


def pad_up(x):
    """A value a little above ``x`` (see :func:`pad_down`)."""
    return np.nextafter(x + 4 * _EPS * np.abs(x), np.inf)


@dataclass
class Vec:
    """Entry i is variable ``idx[i]`` when ``idx[i] >= 0``, else the constant ``lo[i] == hi[i]``."""

    idx: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    start: np.ndarray

    def __len__(self) -> int:
        return int(self.idx.shape[0])

    @property
    def is_var(self) -> np.ndarray:
        return self.idx >= 0

    def take(self, sel) -> "Vec":
        return Vec(self.idx[sel], self.lo[sel], self.hi[sel], self.start[sel])


@dataclass
class AffineSum:
    """``out[j] = const[j] + sum(coefs[t] * x[vars[t]] for t with rows[t] == j)`` for j < len(const),
    with interval bounds ``lo``/``hi`` of each sum (computed by the caller from its terms) and its
    value ``start`` on the nominal trajectory."""

    rows: np.ndarray
    vars: np.ndarray
    coefs: np.ndarray
    const: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    start: np.ndarray


def _products(ul, uh, vl, vh):
    c = np.stack([ul * vl, ul * vh, uh * vl, uh * vh])
    return pad_down(c.min(0)), pad_up(c.max(0))


class Encoder:
    """Builds one program; see the module docstring."""

    def __init__(self) -> None:
        self._b = ProgramBuilder()
        self._start: list[np.ndarray] = []

    # -- leaves ----------------------------------------------------------------------------
    def var(self, lo, hi, start, binary: bool = False, name: str = "v") -> Vec:
        lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        start = np.clip(np.broadcast_to(np.asarray(start, dtype=np.float64).reshape(-1), lo.shape), lo, hi)
        idx = self._b.add_vars(lo, hi, binary=binary, name=name).reshape(-1)
        self._start.append(start.copy())
        return Vec(idx, lo.copy(), hi.copy(), start)

    @staticmethod
    def const(values) -> Vec:
        v = np.asarray(values, dtype=np.float64).reshape(-1)
        return Vec(np.full(v.shape, -1, dtype=np.int64), v.copy(), v.copy(), v.copy())

    def var_or_const(self, lo, hi, start, name: str = "v") -> Vec:
        """Variables where ``lo < hi``, constants where the bounds coincide."""
        lo = np.asarray(lo, dtype=np.float64).reshape(-1)
        hi = np.asarray(hi, dtype=np.float64).reshape(-1)
        start = np.broadcast_to(np.asarray(start, dtype=np.float64).reshape(-1), lo.shape)
        out = self.const(lo)
        free = lo < hi
        if free.any():
            v = self.var(lo[free], hi[free], start[free], name=name)
            out.idx[free], out.hi[free], out.start[free] = v.idx, v.hi, v.start
        else:
            out.start = start.copy()
        return out

    def binaries(self, n: int, start, name: str = "b") -> Vec:
        return self.var(np.zeros(n), np.ones(n), start, binary=True, name=name)

    # -- constraints -----------------------------------------------------------------------
    def row(self, idx, coef, lo: float = -np.inf, hi: float = np.inf) -> None:
        """The linear constraint ``lo <= sum(coef[t] * x[idx[t]]) <= hi``."""
        self._b.add_row(idx, coef, lo=lo, hi=hi)

    def equal(self, idx, coef, rhs: float) -> None:
        """The linear constraint ``sum(coef[t] * x[idx[t]]) == rhs``."""
        self._b.add_eq(idx, coef, rhs)

    # -- linear algebra --------------------------------------------------------------------
    def affine(self, s: AffineSum, bounds: tuple[np.ndarray, np.ndarray] | None = None, name: str = "aff") -> Vec:
        """The sums ``s`` as new variables (constants where a sum has no variable term), bounded
        by the sums' interval bounds padded outward, intersected with ``bounds`` (optional tighter
        sound bounds, from the interval pass)."""
        n, rows, vars_, coefs, const, start = len(s.const), s.rows, s.vars, s.coefs, s.const, s.start
        lo, hi = pad_down(s.lo), pad_up(s.hi)
        if bounds is not None:
            lo = np.maximum(lo, bounds[0])
            hi = np.minimum(hi, bounds[1])
            hi = np.maximum(hi, lo)
        has_var = np.zeros(n, dtype=bool)
        has_var[rows] = True
        out = self.const(const)
        out.start = start.copy()
        if has_var.any():
            v = self.var(lo[has_var], hi[has_var], start[has_var], name=name)
            out.idx[has_var], out.lo[has_var], out.hi[has_var], out.start[has_var] = v.idx, v.lo, v.hi, v.start
            order = np.argsort(rows, kind="stable")
            rows_s, vars_s, coefs_s = rows[order], vars_[order], coefs[order]
            cuts = np.searchsorted(rows_s, np.arange(n + 1))
            for j in np.nonzero(has_var)[0]:
                a, b = cuts[j], cuts[j + 1]
                self.equal(np.concatenate([[out.idx[j]], vars_s[a:b]]), np.concatenate([[-1.0], coefs_s[a:b]]), -const[j])
        return out

    def product(self, u: Vec, v: Vec, name: str = "p") -> Vec:
        """Element-wise ``u * v``: bilinear variables where both vary, linear otherwise."""
        lo, hi = _products(u.lo, u.hi, v.lo, v.hi)
        start = u.start * v.start
        both = u.is_var & v.is_var
        out = self.const(u.lo * v.lo)
        out.start = start
        one = u.is_var ^ v.is_var
        if one.any():
            # c * x: a scaled copy expressed through affine rows
            sel = np.nonzero(one)[0]
            xv = np.where(u.is_var[sel], u.idx[sel], v.idx[sel])
            c = np.where(u.is_var[sel], v.lo[sel], u.lo[sel])
            w = self.affine(AffineSum(np.arange(len(sel)), xv, c, np.zeros(len(sel)), lo[sel], hi[sel], start[sel]), None, name)
            out.idx[sel], out.lo[sel], out.hi[sel] = w.idx, w.lo, w.hi
            zero_c = c == 0
            out.idx[sel[zero_c]] = -1
            out.lo[sel[zero_c]] = 0.0
            out.hi[sel[zero_c]] = 0.0
        if both.any():
            sel = np.nonzero(both)[0]
            z = self.var(lo[sel], hi[sel], start[sel], name=name)
            for zi, ui, vi in zip(z.idx, u.idx[sel], v.idx[sel]):
                self._b.add_bilinear(zi, ui, vi)
            out.idx[sel], out.lo[sel], out.hi[sel] = z.idx, z.lo, z.hi
        return out

    def dot_rows(self, M: Vec, shape: tuple[int, int], a: Vec, bias: Vec | None,
                 bounds: tuple[np.ndarray, np.ndarray] | None, name: str, transpose: bool = False) -> Vec:
        """``out = M a + bias`` (or ``M^T a`` with ``transpose``) for ``M`` stored row-major with
        ``shape`` (out, in). Products of two variables become bilinear variables."""
        n_out, n_in = shape
        if transpose:
            # out[k] = sum_j M[j, k] a[j]
            Mi = np.arange(n_out * n_in).reshape(n_out, n_in).T.reshape(-1)
            M = M.take(Mi)
            n_out, n_in = n_in, n_out
        A = a.take(np.tile(np.arange(n_in), n_out))
        rows = np.repeat(np.arange(n_out), n_in)
        plo, phi = _products(M.lo, M.hi, A.lo, A.hi)
        both = M.is_var & A.is_var
        m_only = M.is_var & ~A.is_var
        a_only = A.is_var & ~M.is_var
        neither = ~(M.is_var | A.is_var)
        const = np.zeros(n_out)
        np.add.at(const, rows[neither], M.lo[neither] * A.lo[neither])
        lo = np.zeros(n_out)
        hi = np.zeros(n_out)
        np.add.at(lo, rows, plo)
        np.add.at(hi, rows, phi)
        start = np.zeros(n_out)
        np.add.at(start, rows, M.start * A.start)
        pv = self.product(M.take(both), A.take(both), name=f"{name}_prod") if both.any() else None
        r_rows = np.concatenate([rows[m_only], rows[a_only]] + ([rows[both]] if pv is not None else []))
        r_vars = np.concatenate([M.idx[m_only], A.idx[a_only]] + ([pv.idx] if pv is not None else []))
        r_coefs = np.concatenate([A.lo[m_only], M.lo[a_only]] + ([np.ones(len(pv))] if pv is not None else []))
        if bias is not None:
            bv = bias.is_var
            const = const + np.where(bv, 0.0, bias.lo)
            lo, hi, start = lo + bias.lo, hi + bias.hi, start + bias.start
            r_rows = np.concatenate([r_rows, np.nonzero(bv)[0]])
            r_vars = np.concatenate([r_vars, bias.idx[bv]])
            r_coefs = np.concatenate([r_coefs, np.ones(int(bv.sum()))])
        err = (n_in + 2) * _EPS * np.maximum(np.abs(lo), np.abs(hi))
        return self.affine(AffineSum(r_rows, r_vars, r_coefs, const, lo - err, hi + err, start), bounds, name)

    # -- piecewise-linear pieces -----------------------------------------------------------
    def relu(self, z: Vec, name: str = "relu") -> tuple[Vec, Vec]:
        """``a = max(z, 0)`` and the ReLU derivative indicator ``r`` (torch: 1 where z > 0).

        Stable neurons (``lo > 0`` or ``hi <= 0``) need no binary. Otherwise one binary r:
        ``a >= z, a >= 0, a <= z - lo (1 - r), a <= hi r``; r = 1 forces z >= 0 and a = z,
        r = 0 forces z <= 0 and a = 0, so at z = 0 both derivative values stay possible."""
        active = z.lo > 0
        dead = z.hi <= 0
        amb = ~(active | dead)
        a = Vec(z.idx.copy(), z.lo.copy(), z.hi.copy(), np.maximum(z.start, 0))
        r = self.const(active.astype(np.float64))
        r.start = (z.start > 0).astype(np.float64)
        for arr, val in ((a.idx, -1), (a.lo, 0.0), (a.hi, 0.0)):
            arr[dead] = val
        if amb.any():
            sel = np.nonzero(amb)[0]
            rv = self.binaries(len(sel), r.start[sel], name=f"{name}_on")
            av = self.var(np.zeros(len(sel)), z.hi[sel], a.start[sel], name=name)
            for t, j in enumerate(sel):
                zi, ai, ri = z.idx[j], av.idx[t], rv.idx[t]
                lo, hi = z.lo[j], z.hi[j]
                if zi < 0:  # constant z cannot be ambiguous
                    raise AssertionError("constant pre-activation cannot be ambiguous")
                self.row([ai, zi], [1.0, -1.0], lo=0.0)  # a >= z
                self.row([ai, zi, ri], [1.0, -1.0, -lo], hi=-lo)  # a <= z - lo (1 - r)
                self.row([ai, ri], [1.0, -hi], hi=0.0)  # a <= hi r
                self.row([zi, ri], [1.0, -hi], hi=0.0)  # r = 0 -> z <= 0
                self.row([zi, ri], [1.0, lo], lo=lo)  # r = 1 -> z >= 0
            a.idx[sel], a.lo[sel], a.hi[sel] = av.idx, av.lo, av.hi
            r.idx[sel], r.lo[sel], r.hi[sel] = rv.idx, 0.0, 1.0
        return a, r

    def gate(self, r: Vec, q: Vec, name: str = "gate") -> Vec:
        """``d = r * q`` for an indicator ``r`` in {0, 1}: exact big-M rows with q's bounds
        (``r = 1 -> d = q``, ``r = 0 -> d = 0``)."""
        out = self.const(np.zeros(len(q)))
        out.start = r.start * q.start
        on = (~r.is_var) & (r.lo == 1)
        out.idx[on], out.lo[on], out.hi[on] = q.idx[on], q.lo[on], q.hi[on]
        amb = r.is_var
        if amb.any():
            sel = np.nonzero(amb)[0]
            qlo, qhi = np.minimum(q.lo[sel], 0), np.maximum(q.hi[sel], 0)
            d = self.var(qlo, qhi, out.start[sel], name=name)
            for t, j in enumerate(sel):
                di, ri = d.idx[t], r.idx[j]
                lo, hi = q.lo[j], q.hi[j]
                if q.idx[j] < 0:
                    c = q.lo[j]  # d = c r
                    self.equal([di, ri], [1.0, -c], 0.0)
                    continue
                qi = q.idx[j]
                self.row([di, ri], [1.0, -max(hi, 0.0)], hi=0.0)  # r = 0 -> d <= 0
                self.row([di, ri], [1.0, -min(lo, 0.0)], lo=0.0)  # r = 0 -> d >= 0
                self.row([di, qi, ri], [1.0, -1.0, -lo], hi=-lo)  # d - q <= -lo (1 - r)
                self.row([di, qi, ri], [1.0, -1.0, -hi], lo=-hi)  # d - q >= -hi (1 - r)
            out.idx[sel], out.lo[sel], out.hi[sel] = d.idx, d.lo, d.hi
        return out

    # -- result ------------------------------------------------------------------------------
    def build(self) -> tuple[Program, np.ndarray]:
        prog = self._b.build()
        start = np.concatenate(self._start) if self._start else np.zeros(0)
        return prog, start


def objective(terms: list[tuple[Vec, float]], j: int) -> tuple[LinearExpr | None, float, float]:
    """The expression ``sum(scale * vec[j])``; returns ``(expr, lo, hi)`` where ``expr`` is None
    when every entry is constant (then ``lo == hi`` is its value)."""
    idx, coef = [], []
    const = 0.0
    lo = hi = 0.0
    for vec, s in terms:
        a, b = s * vec.lo[j], s * vec.hi[j]
        lo += min(a, b)
        hi += max(a, b)
        if vec.idx[j] >= 0:
            idx.append(vec.idx[j])
            coef.append(s)
        else:
            const += s * vec.lo[j]
    if not idx:
        return None, const, const
    return LinearExpr(np.array(idx, dtype=np.int64), np.array(coef), const), lo, hi
