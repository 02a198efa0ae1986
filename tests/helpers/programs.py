"""Tiny mixed-integer bilinear programs with an exactly computable optimum, and random feasible
ones, for the solver tests.

Known optima come from an independent computation: for the tiny programs below every binary is
enumerated and the remaining problem is a quadratic with an indefinite Hessian over a polygon in
(x, y), whose extrema lie on the polygon's edges (endpoints or the stationary point of the
quadratic along the edge).
"""
from __future__ import annotations

import numpy as np

from mibpcert.ir.program import LinearExpr, Program, ProgramBuilder
from mibpcert.solvers import ObjectiveBound


# ------------------------------------------------------------------------------------------------
# Tiny MIBPs with an exactly computable optimum
# ------------------------------------------------------------------------------------------------
def _clip(poly: list[np.ndarray], a: np.ndarray, h: float) -> list[np.ndarray]:
    """Sutherland–Hodgman clip of a convex polygon by ``a . p <= h``."""
    out = []
    for i in range(len(poly)):
        p, q = poly[i], poly[(i + 1) % len(poly)]
        fp, fq = a @ p - h, a @ q - h
        if fp <= 0:
            out.append(p)
        if (fp < 0 < fq) or (fq < 0 < fp):
            out.append(p + (q - p) * (fp / (fp - fq)))
    return out


class Tiny:
    """x in [xl,xu], y in [yl,yu], b binary, s fixed; z = x*y, q = x*x, w = b*x, t = s*y;
    rows  a1 x + a2 y + a3 b <= h1,  a4 x + a5 y >= h2;  objective over (z, q, w, t, x, y, b)."""

    def __init__(self, seed: int) -> None:
        rng = np.random.default_rng(seed)
        self.xl, self.yl = rng.uniform(-2, 0.5, 2)
        self.xu, self.yu = self.xl + rng.uniform(0.5, 3), self.yl + rng.uniform(0.5, 3)
        self.s0 = float(rng.uniform(-1.5, 1.5))
        x0, y0, b0 = rng.uniform(self.xl, self.xu), rng.uniform(self.yl, self.yu), float(rng.integers(0, 2))
        self.a = rng.normal(size=5)
        self.h1 = self.a[0] * x0 + self.a[1] * y0 + self.a[2] * b0 + rng.uniform(0.0, 0.5)
        self.h2 = self.a[3] * x0 + self.a[4] * y0 - rng.uniform(0.0, 0.5)
        self.c = rng.normal(size=7)  # on z, q, w, t, x, y, b
        self.c[0] = np.sign(self.c[0]) * max(abs(self.c[0]), 0.3)  # keep the Hessian indefinite
        self.const = float(rng.normal())

        B = ProgramBuilder()
        x = int(B.add_vars(self.xl, self.xu, name="x"))
        y = int(B.add_vars(self.yl, self.yu, name="y"))
        b = int(B.add_binaries((), name="b"))
        s = int(B.add_vars(self.s0, self.s0, name="s"))
        pz = [self.xl * self.yl, self.xl * self.yu, self.xu * self.yl, self.xu * self.yu]
        z = int(B.add_vars(min(pz), max(pz), name="z"))
        q = int(B.add_vars(0.0 if self.xl <= 0 <= self.xu else min(self.xl**2, self.xu**2),
                           max(self.xl**2, self.xu**2), name="q"))
        w = int(B.add_vars(min(0.0, self.xl), max(0.0, self.xu), name="w"))
        pt = [self.s0 * self.yl, self.s0 * self.yu]
        t = int(B.add_vars(min(pt), max(pt), name="t"))
        B.add_bilinear(z, x, y)
        B.add_bilinear(q, x, x)
        B.add_bilinear(w, b, x)
        B.add_bilinear(t, s, y)
        B.add_row([x, y, b], self.a[:3], hi=self.h1)
        B.add_row([x, y], self.a[3:], lo=self.h2)
        self.program = B.build()
        self.objective = LinearExpr(np.array([z, q, w, t, x, y, b]), self.c.copy(), self.const)
        self.feasible = np.zeros(self.program.num_vars)
        self.feasible[[x, y, b, s, z, q, w, t]] = [x0, y0, b0, self.s0, x0 * y0, x0 * x0, b0 * x0, self.s0 * y0]
        assert self.program.max_violation(self.feasible) < 1e-9
        self.true_min, self.true_max = self._exact()

    def _f(self, px: float, py: float, b: float) -> float:
        cz, cq, cw, ct, cx, cy, cb = self.c
        return (cz * px * py + cq * px * px + cw * b * px + ct * self.s0 * py + cx * px + cy * py
                + cb * b + self.const)

    def _exact(self, bs: tuple[float, ...] = (0.0, 1.0)) -> tuple[float, float]:
        vals = []
        for b in bs:
            poly = [np.array(p, dtype=float) for p in
                    [(self.xl, self.yl), (self.xu, self.yl), (self.xu, self.yu), (self.xl, self.yu)]]
            poly = _clip(poly, np.array(self.a[:2]), self.h1 - self.a[2] * b)
            poly = _clip(poly, -np.array(self.a[3:]), -self.h2) if poly else poly
            cz, cq, cw, ct, cx, cy, _ = self.c
            alpha, gamma = cw * b + cx, ct * self.s0 + cy
            for i in range(len(poly)):
                p, d = poly[i], poly[(i + 1) % len(poly)] - poly[i]
                # f(p + t d) = A t^2 + B t + const along the edge
                A = cz * d[0] * d[1] + cq * d[0] ** 2
                Bt = cz * (p[0] * d[1] + p[1] * d[0]) + 2 * cq * p[0] * d[0] + alpha * d[0] + gamma * d[1]
                ts = [0.0, 1.0]
                if abs(A) > 1e-14:
                    ts.append(float(np.clip(-Bt / (2 * A), 0.0, 1.0)))
                vals += [self._f(p[0] + tt * d[0], p[1] + tt * d[1], b) for tt in ts]
        return min(vals), max(vals)


TINY = [Tiny(s) for s in range(6)]


def brute(tiny: Tiny, n: int = 301) -> tuple[float, float]:
    """Grid check of the edge-based exact optimum (grid values lie inside it)."""
    xs, ys = np.meshgrid(np.linspace(tiny.xl, tiny.xu, n), np.linspace(tiny.yl, tiny.yu, n))
    lo, hi = np.inf, -np.inf
    for b in (0.0, 1.0):
        ok = (tiny.a[0] * xs + tiny.a[1] * ys + tiny.a[2] * b <= tiny.h1) & (tiny.a[3] * xs + tiny.a[4] * ys >= tiny.h2)
        if ok.any():
            f = tiny._f(xs[ok], ys[ok], b)
            lo, hi = min(lo, f.min()), max(hi, f.max())
    return lo, hi


# ------------------------------------------------------------------------------------------------
# Backends on tiny programs with known optimum
# ------------------------------------------------------------------------------------------------
def contains(b: ObjectiveBound, lo: float, hi: float, tol: float = 0.0) -> bool:
    return b.lower <= lo + tol and b.upper >= hi - tol


# ------------------------------------------------------------------------------------------------
# Time limits, failures, licence
# ------------------------------------------------------------------------------------------------
def random_mibp(seed: int, n_cont: int, n_bin: int, n_bil: int, n_rows: int, row_nnz: int = 5):
    """Random feasible MIBP (products of continuous pairs and binary-continuous pairs, sparse rows
    around a known feasible point); returns (program, feasible point, objectives)."""
    rng = np.random.default_rng(seed)
    B = ProgramBuilder()
    x0 = rng.normal(size=n_cont)
    xl, xu = x0 - rng.uniform(0.5, 2, n_cont), x0 + rng.uniform(0.5, 2, n_cont)
    x = B.add_vars(xl, xu, name="x")
    b = B.add_binaries(n_bin)
    val = list(x0) + list(rng.integers(0, 2, n_bin).astype(float))
    lo, hi = list(xl) + [0.0] * n_bin, list(xu) + [1.0] * n_bin
    zs = []
    for _ in range(n_bil):
        u = int(rng.choice(b)) if (n_bin and rng.random() < 0.3) else int(rng.choice(x))
        v = int(rng.choice(x))
        p = [lo[u] * lo[v], lo[u] * hi[v], hi[u] * lo[v], hi[u] * hi[v]]
        z = int(B.add_vars(min(p), max(p), name="z"))
        B.add_bilinear(z, u, v)
        val.append(val[u] * val[v])
        lo.append(min(p))
        hi.append(max(p))
        zs.append(z)
    val = np.array(val)
    for _ in range(n_rows):
        idx = rng.choice(B.num_vars, size=row_nnz, replace=False)
        coef = rng.normal(size=row_nnz)
        a = float(coef @ val[idx])
        B.add_row(idx, coef, a - rng.uniform(0.05, 0.5), a + rng.uniform(0.05, 0.5))
    prog = B.build()
    assert prog.max_violation(val) < 1e-9
    objs = [LinearExpr(np.array(zs[i:i + 3]), rng.normal(size=3), 0.25) for i in range(0, min(n_bil, 12), 3)]
    return prog, val, objs


def without_binaries(tiny: Tiny) -> tuple[Program, float, float] | None:
    """The tiny program with b fixed (as a continuous variable): no integer variables left."""
    for b in (0.0, 1.0):
        try:
            lo, hi = tiny._exact((b,))
        except ValueError:  # empty polygon for this b
            continue
        p = tiny.program
        lb, ub = p.lb.copy(), p.ub.copy()
        lb[2] = ub[2] = b
        return Program(lb, ub, np.zeros_like(p.is_binary), p.A, p.row_lb, p.row_ub, p.bilinear), lo, hi
    return None
