"""Affine forms: relational enclosures ``x = c + G xi + e eta`` of torch tensors.

``xi`` in [-1, 1]^m are symbols shared by every quantity that carries them (the columns of ``G``,
its last axis; symbols are numbered once for a whole computation and new ones are appended, so a
form over fewer symbols is padded with zero columns where it meets another); ``eta`` is independent per entry, ``|eta| <= 1``, with radius ``e >= 0``: the part
of the uncertainty that carries no relation. Two forms over the same symbols keep their
correlation: ``x - x`` is exactly 0, where intervals would double the width.

Every operation returns a form that contains the exact result for every value of the symbols:
linear operations are exact, products of two forms put their quadratic remainder
``|(G_a xi + e_a)(G_b xi + e_b)| <= (r_a + e_a)(r_b + e_b)`` (``r = sum |G|``) into ``e``, and
ReLUs use the DeepZ relaxation. With outward rounding on (:func:`rounding_enabled`), the
floating-point error of computing ``c`` and ``G`` is bounded by ``gamma(K) * magnitude`` (the
standard bound for sums of K products) and added to ``e``, which is itself rounded up; so the form
stays sound in floating point. Forms are float64.
"""
from __future__ import annotations

import torch

from .tensor import Interval, gamma, rounding_enabled, widen


def _up(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, torch.full_like(t, torch.inf))


def _finish(e: torch.Tensor, mag: torch.Tensor, terms: int) -> torch.Tensor:
    """The error radius ``e`` (a sum of non-negative terms) plus the rounding error of a result
    whose computation summed ``terms`` products of total magnitude ``mag``, rounded up."""
    if not rounding_enabled():
        return e
    g = gamma(terms, e.dtype)
    tiny = torch.finfo(e.dtype).tiny
    out = _up((e + 2 * g * mag) * (1 + 2 * g) + torch.where(mag > 0, tiny, 0.0))
    return torch.where((mag > 0) | (e > 0), out, e)


class Affine:
    """Affine forms of one tensor: centre ``c`` (shape S), generators ``G`` (S + (m,)), independent
    error radius ``e`` (S, non-negative)."""

    __slots__ = ("c", "G", "e", "_r")

    def __init__(self, c: torch.Tensor, G: torch.Tensor, e: torch.Tensor) -> None:
        self.c, self.G, self.e = c, G, e
        self._r: torch.Tensor | None = None  # gen_radius, computed once (forms are not modified)

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def point(c: torch.Tensor, m: int) -> "Affine":
        return Affine(c, c.new_zeros(*c.shape, m), torch.zeros_like(c))

    @staticmethod
    def from_interval(iv: Interval, m: int) -> "Affine":
        """The interval as centre plus independent error (no relation to any symbol)."""
        c = (iv.lo + iv.hi) / 2
        e = torch.maximum(iv.hi - c, c - iv.lo)
        if rounding_enabled():
            e = torch.where(e > 0, _up(e), e)
        return Affine(c, c.new_zeros(*c.shape, m), e)

    # -- views -------------------------------------------------------------------------------
    @property
    def m(self) -> int:
        return int(self.G.shape[-1])

    @property
    def shape(self) -> torch.Size:
        return self.c.shape

    def gen_radius(self) -> torch.Tensor:
        """``sum |G|`` over the symbols, rounded up (an upper bound of ``|G xi|``)."""
        if self._r is None:
            r = self.G.abs().sum(-1)
            if rounding_enabled() and self.m:
                r = _up(r * (1 + 2 * gamma(self.m, r.dtype)))
            self._r = r
        return self._r

    def radius(self) -> torch.Tensor:
        r = self.gen_radius() + self.e
        return _up(r) if rounding_enabled() else r

    def bounds(self) -> Interval:
        rad = self.radius()
        lo, hi = self.c - rad, self.c + rad
        if rounding_enabled():
            lo, hi = widen(lo, hi, 0.0)
        return Interval(lo, hi, check=False)

    def pad(self, m: int) -> "Affine":
        """The same form over ``m >= self.m`` symbols (the new ones unused)."""
        if m == self.m:
            return self
        G = torch.cat([self.G, self.G.new_zeros(*self.shape, m - self.m)], dim=-1)
        return Affine(self.c, G, self.e)

    def lift(self, where: torch.Tensor, first: int) -> "Affine":
        """The independent parts of the entries ``where`` (a mask of the form's shape) as new
        symbols ``first, first + 1, ...`` (one per entry, in row-major order; the form is padded
        to ``first`` plus their number). Sound: an entry's independent term is used by this entry
        alone, so naming it by a symbol that no other quantity carries changes no value; the
        quantities computed from the lifted form then share it, which keeps their relation."""
        if first < self.m:
            raise ValueError(f"new symbols must follow the form's {self.m} symbols, not start at {first}")
        idx = torch.nonzero(where.reshape(-1)).reshape(-1)
        n = int(idx.numel())
        out = self.pad(first + n)
        if n == 0:
            return out
        flat_G = out.G.reshape(-1, out.m)  # a view of the padded (fresh) tensor
        e = out.e.reshape(-1)
        flat_G[idx, first + torch.arange(n, device=idx.device)] = e[idx]
        return Affine(out.c, out.G, torch.where(where, 0.0, out.e))

    def reshape(self, *shape) -> "Affine":
        c = self.c.reshape(*shape)  # resolves a -1, which G cannot when it has no symbols (m = 0)
        return Affine(c, self.G.reshape(*c.shape, self.m), self.e.reshape(c.shape))

    # -- linear operations -------------------------------------------------------------------
    def combine(self, a: float, other: "Affine", b: float) -> "Affine":
        """``a * self + b * other`` (same shape; the form over fewer symbols is padded)."""
        self, other = aligned(self, other)
        c = a * self.c + b * other.c
        G = a * self.G + b * other.G
        e = abs(a) * self.e + abs(b) * other.e
        mag = abs(a) * (self.c.abs() + self.gen_radius()) + abs(b) * (other.c.abs() + other.gen_radius())
        return Affine(c, G, _finish(e, mag, 3))

    def __add__(self, other: "Affine") -> "Affine":
        return self.combine(1.0, other, 1.0)

    def __sub__(self, other: "Affine") -> "Affine":
        return self.combine(1.0, other, -1.0)

    def scale(self, s: "float | torch.Tensor") -> "Affine":
        """``s * self`` for a number or a tensor of the form's shape."""
        a = abs(s)
        G = s * self.G if not isinstance(s, torch.Tensor) else s.unsqueeze(-1) * self.G
        mag = a * (self.c.abs() + self.gen_radius())
        return Affine(s * self.c, G, _finish(a * self.e, mag, 1))

    def shift(self, iv: Interval) -> "Affine":
        """Plus an independent term in the interval ``iv`` (per entry)."""
        t = Affine.from_interval(iv, self.m)
        mag = self.c.abs() + t.c.abs()
        return Affine(self.c + t.c, self.G, _finish(self.e + t.e, mag, 1))

    def sum(self, dim: int) -> "Affine":
        n = self.shape[dim]
        mag = (self.c.abs() + self.gen_radius()).sum(dim)
        return Affine(self.c.sum(dim), self.G.sum(dim), _finish(self.e.sum(dim), mag, n))

    # -- ReLU ------------------------------------------------------------------------------------
    def relu(self) -> tuple["Affine", Interval]:
        """DeepZ: identity where the input is surely >= 0, zero where surely <= 0, and
        ``lam z + beta / 2 +- beta / 2`` elsewhere, with ``lam = u / (u - l)`` and ``beta`` the
        largest value of ``relu(z) - lam z`` on [l, u] (sound for any lam in [0, 1]). Also returns
        torch's ReLU derivative (1 where z > 0, else 0) as an interval."""
        b = self.bounds()
        l, u = b.lo, b.hi
        dead, amb = u <= 0, (l < 0) & (u > 0)
        lam = torch.where(amb, u / torch.where(amb, u - l, 1.0), torch.where(dead, 0.0, 1.0)).clamp(0.0, 1.0)
        beta = torch.where(amb, torch.maximum((1 - lam) * u, -lam * l), 0.0)
        if rounding_enabled():
            beta = torch.where(amb, _up(beta * (1 + 4 * gamma(2, beta.dtype))), beta)
        c = lam * self.c + beta / 2
        G = lam.unsqueeze(-1) * self.G
        mag = lam * (self.c.abs() + self.gen_radius()) + beta
        e = _finish(lam * self.e + beta / 2, torch.where(amb, mag, 0.0), 3)
        grad = Interval((l > 0).to(l.dtype), (u > 0).to(u.dtype), check=False)
        return Affine(c, G, e), grad

    def gate(self, d: Interval) -> "Affine":
        """Product with a ReLU derivative ``d`` (bounds 0 or 1): the form where d = 1, zero where
        d = 0. Where d is [0, 1] the product ``r q`` lies in ``q / 2 +- max|q| / 2`` (keeps half
        of the relation) and in the hull of 0 and q (an interval); the narrower is used."""
        on, amb = d.lo > 0, (d.lo <= 0) & (d.hi > 0)
        b = self.bounds()
        rad_q = torch.maximum(b.lo.abs(), b.hi.abs())
        half_rad = 0.5 * (self.gen_radius() + self.e + rad_q)
        hull = Affine.from_interval(Interval(b.lo.clamp_max(0), b.hi.clamp_min(0), check=False), self.m)
        use_hull = amb & (hull.e <= half_rad)
        k = torch.where(on, 1.0, torch.where(amb & ~use_hull, 0.5, 0.0)).to(self.c.dtype)
        c = torch.where(use_hull, hull.c, k * self.c)
        G = k.unsqueeze(-1) * self.G
        e = torch.where(use_hull, hull.e, torch.where(amb, 0.5 * self.e + 0.5 * rad_q, k * self.e))
        mag = torch.where(amb & ~use_hull, self.c.abs() + self.gen_radius() + rad_q, 0.0)
        return Affine(c, G, _finish(e, mag, 3))


def aligned(*forms: Affine) -> tuple[Affine, ...]:
    """The forms over the largest of their symbol counts (symbols are numbered globally and new
    ones appended, so a form over fewer symbols does not carry the later ones)."""
    m = max(f.m for f in forms)
    return tuple(f.pad(m) for f in forms)


def _ac(a: Affine) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """|c|, sum|G| and the total deviation radius r + e of a form."""
    r = a.gen_radius()
    return a.c.abs(), r, r + a.e


def linear(x: Affine, W: Affine, b: Affine | None) -> Affine:
    """``x @ W^T + b`` for inputs (B, in), weights (out, in) and bias (out,), all forms over the
    same symbols; the products of two forms leave their remainder in ``e``."""
    x, W, *bias = aligned(x, W, *([b] if b is not None else []))
    b = bias[0] if bias else None
    xa, xr, xd = _ac(x)
    wa, wr, wd = _ac(W)
    c = x.c @ W.c.T
    G = torch.einsum("bk,jkm->bjm", x.c, W.G) + torch.einsum("jk,bkm->bjm", W.c, x.G)
    e = xa @ W.e.T + x.e @ wa.T + xd @ wd.T
    mag = xa @ wa.T + xa @ wr.T + xr @ wa.T
    terms = 2 * x.shape[1] + 2
    if b is not None:
        c = c + b.c
        G = G + b.G
        e = e + b.e
        mag = mag + b.c.abs() + b.gen_radius()
    return Affine(c, G, _finish(e, mag, terms))


def linear_t(d: Affine, W: Affine) -> Affine:
    """``d @ W`` for (B, out) and weights (out, in): the backward pass through a linear layer."""
    d, W = aligned(d, W)
    da, dr, dd = _ac(d)
    wa, wr, wd = _ac(W)
    c = d.c @ W.c
    G = torch.einsum("bj,jkm->bkm", d.c, W.G) + torch.einsum("jk,bjm->bkm", W.c, d.G)
    e = da @ W.e + d.e @ wa + dd @ wd
    mag = da @ wa + da @ wr + dr @ wa
    return Affine(c, G, _finish(e, mag, 2 * d.shape[1] + 2))


def outer_sum(d: Affine, a: Affine) -> Affine:
    """``sum_b d[b, :, None] * a[b, None, :]`` for (B, out) and (B, in): a batch's weight gradient."""
    d, a = aligned(d, a)
    da, dr, dd = _ac(d)
    aa, ar, ad = _ac(a)
    c = d.c.T @ a.c
    G = torch.einsum("bj,bkm->jkm", d.c, a.G) + torch.einsum("bk,bjm->jkm", a.c, d.G)
    e = da.T @ a.e + d.e.T @ aa + dd.T @ ad
    mag = da.T @ aa + da.T @ ar + dr.T @ aa
    return Affine(c, G, _finish(e, mag, 2 * d.shape[0] + 2))


def outer_each(d: Affine, a: Affine) -> Affine:
    """``d[b, :, None] * a[b, None, :]`` per sample: (B, out, in) forms."""
    d, a = aligned(d, a)
    da, dr, dd = _ac(d)
    aa, ar, ad = _ac(a)
    c = d.c.unsqueeze(2) * a.c.unsqueeze(1)
    G = d.c[:, :, None, None] * a.G.unsqueeze(1) + a.c[:, None, :, None] * d.G.unsqueeze(2)
    e = da.unsqueeze(2) * a.e.unsqueeze(1) + d.e.unsqueeze(2) * aa.unsqueeze(1) + dd.unsqueeze(2) * ad.unsqueeze(1)
    mag = da.unsqueeze(2) * aa.unsqueeze(1) + da.unsqueeze(2) * ar.unsqueeze(1) + dr.unsqueeze(2) * aa.unsqueeze(1)
    return Affine(c, G, _finish(e, mag, 4))
