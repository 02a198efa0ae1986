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
    """Collects extra variables and rows appended to a program."""

    def __init__(self, program: Program) -> None:
        self.n0 = program.num_vars
        self.lb: list[float] = []
        self.ub: list[float] = []
        self.is_bin: list[bool] = []
        self.names: list[str] = []
        self.ri: list[int] = []
        self.rj: list[int] = []
        self.rv: list[float] = []
        self.rlo: list[float] = []
        self.rhi: list[float] = []

    def var(self, lo: float, hi: float, binary: bool = False, name: str = "") -> int:
        self.lb.append(float(lo))
        self.ub.append(float(hi))
        self.is_bin.append(binary)
        self.names.append(name)
        return self.n0 + len(self.lb) - 1

    def row(self, idx: list[int], coef: list[float], lo: float, hi: float, slack: float = 0.0) -> None:
        """``lo - slack <= sum coef x[idx] <= hi + slack`` (slack only widens finite sides)."""
        r = len(self.rlo)
        self.ri.extend([r] * len(idx))
        self.rj.extend(int(i) for i in idx)
        self.rv.extend(float(c) for c in coef)
        self.rlo.append(lo - slack if np.isfinite(lo) else lo)
        self.rhi.append(hi + slack if np.isfinite(hi) else hi)


def _slack(*mags: float) -> float:
    """A few ulps of the largest magnitude in a row: absorbs rounding of bound products."""
    return 8.0 * _EPS * (1.0 + sum(abs(m) for m in mags))


def _envelope(rows: _Rows, z: int, u: int, v: int, uL: float, uU: float, vL: float, vU: float,
              lam: int | None = None) -> None:
    """McCormick rows for ``z = u v`` on ``[uL,uU] x [vL,vU]``; with ``lam`` the rows are
    homogenised (``const`` becomes ``const * x[lam]``), which is the per-piece form."""
    # z - uL v - vL u >= -uL vL  etc.; in homogenised form the constant moves to the lam column.
    specs = [  # (a, b, sign): z  -  a v - b u  (>= or <=)  - a b
        (uL, vL, +1),
        (uU, vU, +1),
        (uU, vL, -1),
        (uL, vU, -1),
    ]
    for a, b, sgn in specs:
        c = -a * b
        mags = (a * vL, a * vU, b * uL, b * uU, c)
        s = _slack(*mags)
        idx, coef = [z, v, u], [1.0, -a, -b]
        if lam is None:
            lo, hi = (c, np.inf) if sgn > 0 else (-np.inf, c)
        else:
            idx.append(lam)
            coef.append(-c)
            lo, hi = (0.0, np.inf) if sgn > 0 else (-np.inf, 0.0)
        rows.row(idx, coef, lo, hi, s)


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
    """
    if partitions < 1:
        raise ValueError("partitions must be >= 1")
    rows = _Rows(program)
    lb, ub, isb = program.lb, program.ub, program.is_binary
    for k, (z, u, v) in enumerate(program.bilinear):
        z, u, v = int(z), int(u), int(v)
        uL, uU, vL, vU = float(lb[u]), float(ub[u]), float(lb[v]), float(ub[v])
        if uL == uU or vL == vU:
            # One factor fixed: z = c * other (or a constant if both are fixed).
            if uL == uU:
                c, other, oL, oU = uL, v, vL, vU
            else:
                c, other, oL, oU = vL, u, uL, uU
            s = _slack(c * oL, c * oU)
            rows.row([z, other], [1.0, -c], 0.0, 0.0, s)
            continue
        if partitions == 1 or isb[u] or isb[v]:
            _envelope(rows, z, u, v, uL, uU, vL, vU)
            continue
        # Partition the factor with the larger range.
        if (vU - vL) > (uU - uL):
            u, v, uL, uU, vL, vU = v, u, vL, vU, uL, uU
        P = int(partitions)
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
            _envelope(rows, zk, uk, vk, a0, a1, vL, vU, lam=lk)
            lam.append(lk)
            us.append(uk)
            vs.append(vk)
            zs.append(zk)
        rows.row(lam, [1.0] * P, 1.0, 1.0)
        rows.row([u] + us, [1.0] + [-1.0] * P, 0.0, 0.0, _slack(uL, uU))
        rows.row([v] + vs, [1.0] + [-1.0] * P, 0.0, 0.0, _slack(vL, vU))
        zmag = max(abs(uL * vL), abs(uL * vU), abs(uU * vL), abs(uU * vU))
        rows.row([z] + zs, [1.0] + [-1.0] * P, 0.0, 0.0, _slack(zmag))

    n = program.num_vars + len(rows.lb)
    m0 = program.num_rows
    extra = sp.csr_matrix((rows.rv, (rows.ri, rows.rj)), shape=(len(rows.rlo), n))
    A0 = sp.csr_matrix(program.A, shape=(m0, program.num_vars))
    A0 = sp.hstack([A0, sp.csr_matrix((m0, n - program.num_vars))], format="csr")
    A = sp.vstack([A0, extra], format="csr")
    A.sum_duplicates()
    names = tuple(program.names) + tuple(rows.names) if program.names else ()
    return Program(
        lb=np.concatenate([program.lb, np.asarray(rows.lb, dtype=np.float64)]),
        ub=np.concatenate([program.ub, np.asarray(rows.ub, dtype=np.float64)]),
        is_binary=np.concatenate([program.is_binary.astype(bool), np.asarray(rows.is_bin, dtype=bool)]),
        A=A,
        row_lb=np.concatenate([program.row_lb, np.asarray(rows.rlo, dtype=np.float64)]),
        row_ub=np.concatenate([program.row_ub, np.asarray(rows.rhi, dtype=np.float64)]),
        bilinear=np.zeros((0, 3), dtype=np.int64),
        names=names,
    )


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
