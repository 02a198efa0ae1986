"""Linear relaxations of a :class:`~mibpcert.ir.program.Program`.

``relax_bilinear`` replaces every bilinear equality ``z = u * v`` by linear rows whose solution set
contains every point of the original feasible set, so any bound of a linear objective over the
relaxed program is a sound bound over the original program (it can only be looser):

* ``u`` or ``v`` fixed (``lb == ub``): ``z = c * v`` is linear, added exactly.
* otherwise the McCormick envelope (the convex hull of ``{(u, v, u v)}`` over the box
  ``[uL, uU] x [vL, vU]``)::

      z >= uL v + vL u - uL vL        z >= uU v + vU u - uU vU
      z <= uU v + vL u - uU vL        z <= uL v + vU u - uL vU

  If ``u`` (or ``v``) is binary and binaries are kept integral, these four rows are exact: at
  ``u = 0`` they force ``z = 0``, at ``u = 1`` they force ``z = v``.
* ``partitions = P > 1`` (only for two continuous, non-fixed factors): the factor with the larger
  range, say ``u``, has its interval cut into ``P`` equal pieces ``[a_k, a_{k+1}]``. With binaries
  ``l_k`` (``sum l_k = 1``) and disaggregated copies ``u_k, v_k, z_k`` (``u = sum u_k`` etc.) each
  piece carries the McCormick envelope of its own box, multiplied through by ``l_k``
  (``a_k l_k <= u_k <= a_{k+1} l_k``, ``vL l_k <= v_k <= vU l_k``). A feasible ``(u, v, u v)``
  is represented by switching on a piece containing ``u`` and setting the other copies to zero,
  so the formulation is sound; with the ``l_k`` integral it is the union of the piece envelopes,
  which lies inside the plain envelope (tighter).

Floating-point safety: the right-hand sides of envelope rows are products of bounds computed in
double precision; every such row is widened by a few ulps of the magnitudes involved so that the
exact point ``(u, v, u v)`` satisfies the rounded row.
"""
from __future__ import annotations

import numpy as np
import scipy.sparse as sp

from mibpcert.ir.program import Program

_EPS = np.finfo(np.float64).eps


class _Rows:
    """Collects extra variables and rows appended to a program (rows as blocks of triplets)."""

    def __init__(self, program: Program) -> None:
        self.n0 = program.num_vars
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.is_bin: list[bool] = []
        self.names: list[str] = []
        self.ri: list[np.ndarray] = []
        self.rj: list[np.ndarray] = []
        self.rv: list[np.ndarray] = []
        self.rlo: list[np.ndarray] = []
        self.rhi: list[np.ndarray] = []
        self.num_rows = 0

    def var(self, lo: float, hi: float, binary: bool = False, name: str = "") -> int:
        self.lb.append(float(lo))
        self.ub.append(float(hi))
        self.is_bin.append(binary)
        self.names.append(name)
        return self.n0 + len(self.lb) - 1

    def rows(self, idx, coef, lo, hi, slack=0.0) -> None:
        """Rows ``lo - slack <= sum_w coef[r, w] x[idx[r, w]] <= hi + slack`` (``idx``, ``coef``:
        (rows, width), an index -1 pads a shorter row; the bounds per row or scalars; slack only
        widens finite sides)."""
        idx = np.atleast_2d(np.asarray(idx, dtype=np.int64))
        r, w = idx.shape
        lo, hi, slack = (np.broadcast_to(np.asarray(a, dtype=np.float64), (r,)) for a in (lo, hi, slack))
        keep = idx.reshape(-1) >= 0
        self.ri.append(np.repeat(np.arange(self.num_rows, self.num_rows + r), w)[keep])
        self.rj.append(idx.reshape(-1)[keep])
        self.rv.append(np.broadcast_to(np.asarray(coef, dtype=np.float64), (r, w)).reshape(-1)[keep])
        self.rlo.append(np.where(np.isfinite(lo), lo - slack, lo))
        self.rhi.append(np.where(np.isfinite(hi), hi + slack, hi))
        self.num_rows += r

    def row(self, idx: list[int], coef: list[float], lo: float, hi: float, slack: float = 0.0) -> None:
        """One row (see :meth:`rows`)."""
        self.rows([idx], [coef], lo, hi, slack)

    def matrix(self, n: int) -> sp.csr_matrix:
        cat = lambda parts, dtype: np.concatenate(parts) if parts else np.zeros(0, dtype)  # noqa: E731
        return sp.csr_matrix((cat(self.rv, np.float64), (cat(self.ri, np.int64), cat(self.rj, np.int64))),
                             shape=(self.num_rows, n))

    def bounds(self) -> tuple[np.ndarray, np.ndarray]:
        cat = lambda parts: np.concatenate(parts) if parts else np.zeros(0)  # noqa: E731
        return cat(self.rlo), cat(self.rhi)


def _slack(*mags):
    """A few ulps of the largest magnitude in a row: absorbs rounding of bound products (scalars
    or arrays, elementwise)."""
    total = 0.0
    for m in mags:
        total = total + np.abs(m)
    return 8.0 * _EPS * (1.0 + total)


def _envelope(z, u, v, uL, uU, vL, vU, lam=None):
    """McCormick rows for ``z = u v`` on ``[uL,uU] x [vL,vU]`` (arrays of n products) as
    ``(idx, coef, lo, hi, slack)`` for :meth:`_Rows.rows`, four rows per product, product by
    product; with ``lam`` the rows are homogenised (``const`` becomes ``const * x[lam]``), which
    is the per-piece form."""
    # z - a v - b u >= -a b  (sign +1)  or  <= -a b  (sign -1);  a, b per row of the envelope.
    a = np.stack([uL, uU, uU, uL], axis=-1)
    b = np.stack([vL, vU, vL, vU], axis=-1)
    lower_row = np.array([True, True, False, False])
    c = -a * b
    slack = _slack(a * vL[:, None], a * vU[:, None], b * uL[:, None], b * uU[:, None], c)
    cols = [np.broadcast_to(x[:, None], a.shape) for x in (z, v, u)]
    coefs = [np.ones_like(a), -a, -b]
    if lam is None:
        lo, hi = np.where(lower_row, c, -np.inf), np.where(lower_row, np.inf, c)
    else:
        cols.append(np.broadcast_to(lam[:, None], a.shape))
        coefs.append(-c)
        lo, hi = np.where(lower_row, 0.0, -np.inf), np.where(lower_row, np.inf, 0.0)
        lo, hi = np.broadcast_to(lo, a.shape), np.broadcast_to(hi, a.shape)
    return (np.stack(cols, axis=-1).reshape(-1, len(cols)), np.stack(coefs, axis=-1).reshape(-1, len(cols)),
            lo.reshape(-1), hi.reshape(-1), slack.reshape(-1))


def _prod_range(a: float, b: float, c: float, d: float) -> tuple[float, float]:
    p = (a * c, a * d, b * c, b * d)
    lo, hi = min(p), max(p)
    s = _slack(*p)
    return lo - s, hi + s


def relax_bilinear(program: Program, partitions: int = 1) -> Program:
    """Return a program without bilinear rows whose feasible set contains ``program``'s.

    Each ``z = u v`` becomes exact linear rows (a fixed factor), the McCormick envelope
    (``partitions == 1``, or a binary factor, where the envelope is already exact under
    integrality), or a partitioned McCormick formulation with ``partitions`` pieces and new
    binaries (two continuous factors). Original variables keep their indices; new ones are appended.
    The rows of the first two kinds come product by product (built as arrays), then those of the
    partitioned products.
    """
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    rows = _Rows(program)
    lb, ub, isb = program.lb, program.ub, program.is_binary
    z, u, v = (np.asarray(program.bilinear, dtype=np.int64).reshape(-1, 3)).T
    uL, uU, vL, vU = lb[u].astype(np.float64), ub[u].astype(np.float64), lb[v].astype(np.float64), ub[v].astype(np.float64)
    fixed = (uL == uU) | (vL == vU)
    split = ~fixed & (partitions > 1) & ~isb[u].astype(bool) & ~isb[v].astype(bool)
    # One factor fixed: z = c * other (or a constant if both are fixed).
    u_fixed = (uL == uU)[fixed]
    c = np.where(u_fixed, uL[fixed], vL[fixed])
    other = np.where(u_fixed, v[fixed], u[fixed])
    oL, oU = np.where(u_fixed, vL[fixed], uL[fixed]), np.where(u_fixed, vU[fixed], uU[fixed])
    env = ~fixed & ~split
    e_idx, e_coef, e_lo, e_hi, e_slack = _envelope(z[env], u[env], v[env], uL[env], uU[env], vL[env], vU[env])
    # product order: a fixed product gives one row, an envelope four (padded to width 3)
    count = np.where(fixed, 1, np.where(env, 4, 0))
    first = np.cumsum(count) - count
    total = int(count.sum())
    idx = np.full((total, 3), -1, dtype=np.int64)
    coef = np.zeros((total, 3))
    lo, hi, slack = np.zeros(total), np.zeros(total), np.zeros(total)
    at = first[fixed]
    idx[at, 0], idx[at, 1], coef[at, 0], coef[at, 1], slack[at] = z[fixed], other, 1.0, -c, _slack(c * oL, c * oU)
    at = (first[env][:, None] + np.arange(4)).reshape(-1)
    idx[at], coef[at], lo[at], hi[at], slack[at] = e_idx, e_coef, e_lo, e_hi, e_slack
    rows.rows(idx, coef, lo, hi, slack)
    for k in np.flatnonzero(split):
        _partition(rows, k, int(z[k]), int(u[k]), int(v[k]), float(uL[k]), float(uU[k]), float(vL[k]), float(vU[k]),
                   int(partitions))

    n = program.num_vars + len(rows.lb)
    m0 = program.num_rows
    extra = rows.matrix(n)
    A0 = sp.csr_matrix(program.A, shape=(m0, program.num_vars))
    A0 = sp.hstack([A0, sp.csr_matrix((m0, n - program.num_vars))], format="csr")
    A = sp.vstack([A0, extra], format="csr")
    A.sum_duplicates()
    rlo, rhi = rows.bounds()
    names = tuple(program.names) + tuple(rows.names) if program.names else ()
    return Program(
        lb=np.concatenate([program.lb, np.asarray(rows.lb, dtype=np.float64)]),
        ub=np.concatenate([program.ub, np.asarray(rows.ub, dtype=np.float64)]),
        is_binary=np.concatenate([program.is_binary.astype(bool), np.asarray(rows.is_bin, dtype=bool)]),
        A=A,
        row_lb=np.concatenate([program.row_lb, rlo]),
        row_ub=np.concatenate([program.row_ub, rhi]),
        bilinear=np.zeros((0, 3), dtype=np.int64),
        names=names,
    )


def _partition(rows: _Rows, k: int, z: int, u: int, v: int, uL: float, uU: float, vL: float, vU: float, P: int) -> None:
    """The partitioned McCormick formulation of product ``k``, ``z = u v`` (see module doc): the
    factor with the larger range is cut into ``P`` pieces."""
    if (vU - vL) > (uU - uL):
        u, v, uL, uU, vL, vU = v, u, vL, vU, uL, uU
    cuts = np.linspace(uL, uU, P + 1)
    cuts[0], cuts[-1] = uL, uU
    lam, us, vs, zs = [], [], [], []
    for p in range(P):
        a0, a1 = float(cuts[p]), float(cuts[p + 1])
        lk = rows.var(0.0, 1.0, True, f"mc{k}.lam[{p}]")
        uk = rows.var(min(0.0, a0), max(0.0, a1), False, f"mc{k}.u[{p}]")
        vk = rows.var(min(0.0, vL), max(0.0, vU), False, f"mc{k}.v[{p}]")
        zlo, zhi = _prod_range(a0, a1, vL, vU)
        zk = rows.var(min(0.0, zlo), max(0.0, zhi), False, f"mc{k}.z[{p}]")
        # a0 lam <= u_k <= a1 lam ;  vL lam <= v_k <= vU lam
        rows.row([uk, lk], [1.0, -a0], 0.0, np.inf, _slack(a0))
        rows.row([uk, lk], [1.0, -a1], -np.inf, 0.0, _slack(a1))
        rows.row([vk, lk], [1.0, -vL], 0.0, np.inf, _slack(vL))
        rows.row([vk, lk], [1.0, -vU], -np.inf, 0.0, _slack(vU))
        rows.rows(*_envelope(*(np.array([x]) for x in (zk, uk, vk, a0, a1, vL, vU)), lam=np.array([lk])))
        lam.append(lk)
        us.append(uk)
        vs.append(vk)
        zs.append(zk)
    rows.row(lam, [1.0] * P, 1.0, 1.0)
    rows.row([u] + us, [1.0] + [-1.0] * P, 0.0, 0.0, _slack(uL, uU))
    rows.row([v] + vs, [1.0] + [-1.0] * P, 0.0, 0.0, _slack(vL, vU))
    zmag = max(abs(uL * vL), abs(uL * vU), abs(uU * vL), abs(uU * vU))
    rows.row([z] + zs, [1.0] + [-1.0] * P, 0.0, 0.0, _slack(zmag))


def relax_binaries(program: Program) -> Program:
    """Return ``program`` with every binary relaxed to the continuous interval [0, 1] (a superset)."""
    return Program(
        lb=program.lb.copy(),
        ub=program.ub.copy(),
        is_binary=np.zeros_like(program.is_binary, dtype=bool),
        A=program.A.copy(),
        row_lb=program.row_lb.copy(),
        row_ub=program.row_ub.copy(),
        bilinear=program.bilinear.copy(),
        names=program.names,
    )


def relax(program: Program, mode: str = "milp", partitions: int = 1) -> Program:
    """``relax_bilinear`` and, for ``mode == "lp"``, also ``relax_binaries``."""
    if mode not in ("milp", "lp"):
        raise ValueError(f"relax must be 'milp' or 'lp', got {mode!r}")
    out = relax_bilinear(program, partitions)
    return relax_binaries(out) if mode == "lp" else out
