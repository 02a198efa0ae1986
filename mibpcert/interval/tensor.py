"""Sound interval tensors in torch.

An :class:`Interval` holds element-wise lower and upper bounds ``lo <= x <= hi``. Every operation
returns an interval that contains the result of the real operation for every choice of the inputs
inside their intervals. With outward rounding on (:func:`outward_rounding`), results are also sound
in floating point: each bound is moved outward by an a-priori bound on the rounding error of the
operation (one ulp for single correctly rounded operations, ``gamma_n`` times the magnitude for sums
of ``n`` products, a few ulps for ``exp``/``log`` from libm), so the real result stays inside.
"""
from __future__ import annotations

import contextlib
import contextvars
from typing import Iterator

import torch

_ROUNDING: contextvars.ContextVar[bool] = contextvars.ContextVar("mibpcert_outward_rounding", default=True)


@contextlib.contextmanager
def outward_rounding(enabled: bool) -> Iterator[None]:
    """Turn outward rounding of interval results on or off inside the ``with`` block."""
    token = _ROUNDING.set(bool(enabled))
    try:
        yield
    finally:
        _ROUNDING.reset(token)


def rounding_enabled() -> bool:
    return _ROUNDING.get()


_INF: dict[tuple[torch.dtype, torch.device, bool], torch.Tensor] = {}


def _inf(t: torch.Tensor, negative: bool) -> torch.Tensor:
    """A cached 0-dim +-inf of ``t``'s dtype and device (broadcast by ``nextafter``)."""
    key = (t.dtype, t.device, negative)
    v = _INF.get(key)
    if v is None:
        v = _INF[key] = torch.tensor(-torch.inf if negative else torch.inf, dtype=t.dtype, device=t.device)
    return v


def _down(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, _inf(t, True))


def _up(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, _inf(t, False))


def check_exact_float32_matmul(dtype: torch.dtype, device: torch.device) -> None:
    """The rounding bounds assume IEEE arithmetic; refuse float32 when torch may run its matmuls
    in reduced precision (TF32 on CUDA, or a float32 matmul precision below "highest")."""
    if dtype != torch.float32:
        return
    reduced = torch.get_float32_matmul_precision() != "highest"
    if torch.device(device).type == "cuda":
        reduced = reduced or torch.backends.cuda.matmul.allow_tf32
    if reduced:
        raise ValueError(
            "float32 bounds need IEEE float32 matmuls, but torch may use reduced precision (TF32 or "
            f"set_float32_matmul_precision({torch.get_float32_matmul_precision()!r})): call "
            "torch.set_float32_matmul_precision('highest') (and torch.backends.cuda.matmul.allow_tf32 = False) "
            "or use dtype='float64'"
        )


def cast_down(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The largest values of ``dtype`` that are ``<= t`` (a lower bound converted soundly)."""
    c = t.to(dtype)
    if dtype == t.dtype:
        return c
    return torch.where(c.to(t.dtype) > t, _down(c), c)


def cast_up(t: torch.Tensor, dtype: torch.dtype) -> torch.Tensor:
    """The smallest values of ``dtype`` that are ``>= t`` (an upper bound converted soundly)."""
    c = t.to(dtype)
    if dtype == t.dtype:
        return c
    return torch.where(c.to(t.dtype) < t, _up(c), c)


def widen(lo: torch.Tensor, hi: torch.Tensor, err: torch.Tensor | float) -> tuple[torch.Tensor, torch.Tensor]:
    """Move ``lo`` down and ``hi`` up by the error bound ``err`` (plus one ulp for the move itself)."""
    return _down(lo - err), _up(hi + err)


def gamma(n: int, dtype: torch.dtype) -> float:
    u = torch.finfo(dtype).eps / 2
    m = n + 2
    return m * u / (1 - m * u)


def directed_sum(t: torch.Tensor, up: bool) -> torch.Tensor:
    """Sum over dim 0, rounded up (``up``) or down when outward rounding is on: an upper or
    lower bound of the exact sum."""
    s = t.sum(0)
    if rounding_enabled():
        err = gamma(t.shape[0], t.dtype) * t.abs().sum(0) + torch.finfo(t.dtype).tiny
        lo, hi = widen(s, s, err)
        s = hi if up else lo
    return s


class Interval:
    """Element-wise interval ``[lo, hi]`` of torch tensors with equal shape, dtype and device."""

    __slots__ = ("lo", "hi")

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, check: bool = True) -> None:
        if lo.shape != hi.shape:
            raise ValueError(f"interval bounds have different shapes {tuple(lo.shape)} and {tuple(hi.shape)}")
        if check and bool((lo > hi).any()):
            bad = int((lo > hi).sum())
            raise ValueError(f"invalid interval: lower bound exceeds upper bound at {bad} entries")
        self.lo = lo
        self.hi = hi

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def point(x: torch.Tensor) -> "Interval":
        return Interval(x, x, check=False)

    @staticmethod
    def from_mid_rad(mid: torch.Tensor, rad: torch.Tensor) -> "Interval":
        lo, hi = mid - rad, mid + rad
        if rounding_enabled():
            lo, hi = _down(lo), _up(hi)
        return Interval(lo, hi, check=False)

    # -- properties --------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self.lo.shape

    @property
    def dtype(self) -> torch.dtype:
        return self.lo.dtype

    @property
    def device(self) -> torch.device:
        return self.lo.device

    def mid_rad(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Midpoint and radius with ``[mid - rad, mid + rad] ⊇ [lo, hi]``."""
        mid = (self.lo + self.hi) * 0.5
        rad = torch.maximum(self.hi - mid, mid - self.lo)
        if rounding_enabled():
            rad = _up(rad)
        return mid, rad

    def width(self) -> torch.Tensor:
        return self.hi - self.lo

    def is_finite(self) -> torch.Tensor:
        return torch.isfinite(self.lo) & torch.isfinite(self.hi)

    def __getitem__(self, idx) -> "Interval":
        return Interval(self.lo[idx], self.hi[idx], check=False)

    def reshape(self, *shape) -> "Interval":
        return Interval(self.lo.reshape(*shape), self.hi.reshape(*shape), check=False)

    def unsqueeze(self, dim: int) -> "Interval":
        return Interval(self.lo.unsqueeze(dim), self.hi.unsqueeze(dim), check=False)

    def to(self, *args, **kwargs) -> "Interval":
        """Same arguments as ``torch.Tensor.to``; a change of dtype rounds both bounds outward
        (always, not only with outward rounding on), so the result contains ``self``."""
        target = torch.empty(0, dtype=self.lo.dtype, device=self.lo.device).to(*args, **kwargs)
        lo, hi = self.lo.to(device=target.device), self.hi.to(device=target.device)
        return Interval(cast_down(lo, target.dtype), cast_up(hi, target.dtype), check=False)

    def __repr__(self) -> str:
        return f"Interval(lo={self.lo}, hi={self.hi})"

    # -- set operations ----------------------------------------------------------------------
    def hull(self, other: "Interval") -> "Interval":
        return Interval(torch.minimum(self.lo, other.lo), torch.maximum(self.hi, other.hi), check=False)

    def intersect(self, other: "Interval") -> "Interval":
        """Intersection; raises when empty (the two enclosures cannot both be sound)."""
        return Interval(torch.maximum(self.lo, other.lo), torch.minimum(self.hi, other.hi))

    # -- arithmetic --------------------------------------------------------------------------
    def __add__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        o = _as_interval(other, self)
        lo, hi = self.lo + o.lo, self.hi + o.hi
        if rounding_enabled():
            lo, hi = _down(lo), _up(hi)
        return Interval(lo, hi, check=False)

    __radd__ = __add__

    def __neg__(self) -> "Interval":
        return Interval(-self.hi, -self.lo, check=False)

    def __sub__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        return self + (-_as_interval(other, self))

    def __rsub__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        return _as_interval(other, self) + (-self)

    def scale(self, c: torch.Tensor | float) -> "Interval":
        """Multiply by a point ``c`` (scalar or broadcastable tensor); exact up to rounding."""
        c_t = torch.as_tensor(c, dtype=self.dtype, device=self.device)
        a, b = self.lo * c_t, self.hi * c_t
        lo, hi = torch.minimum(a, b), torch.maximum(a, b)
        if rounding_enabled():
            lo, hi = _down(lo), _up(hi)
        return Interval(lo, hi, check=False)

    def __mul__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        """Element-wise product (exact: min and max over the four corner products)."""
        if not isinstance(other, Interval):
            return self.scale(other)
        p = (self.lo * other.lo, self.lo * other.hi, self.hi * other.lo, self.hi * other.hi)
        lo = torch.minimum(torch.minimum(p[0], p[1]), torch.minimum(p[2], p[3]))
        hi = torch.maximum(torch.maximum(p[0], p[1]), torch.maximum(p[2], p[3]))
        if rounding_enabled():
            lo, hi = _down(lo), _up(hi)
        return Interval(lo, hi, check=False)

    __rmul__ = __mul__

    def sum(self, dim: int) -> "Interval":
        lo, hi = self.lo.sum(dim), self.hi.sum(dim)
        if rounding_enabled():
            n = self.lo.shape[dim]
            g = gamma(n, self.dtype)
            lo, hi = widen(lo, hi, g * torch.maximum(self.lo.abs(), self.hi.abs()).sum(dim))
        return Interval(lo, hi, check=False)

    def relu(self) -> "Interval":
        return Interval(self.lo.clamp_min(0), self.hi.clamp_min(0), check=False)

    def gate(self, d: "Interval") -> "Interval":
        """Product with an interval ``d`` whose bounds are 0 or 1 (a ReLU derivative): ``self``
        where d = 1, 0 where d = 0, the hull of 0 and ``self`` where d is [0, 1]. Exact, so no
        rounding is needed."""
        zero = torch.zeros_like(self.lo)
        lo = torch.where(d.lo > 0, self.lo, torch.where(d.hi > 0, self.lo.clamp_max(0), zero))
        hi = torch.where(d.lo > 0, self.hi, torch.where(d.hi > 0, self.hi.clamp_min(0), zero))
        return Interval(lo, hi, check=False)

    def relu_grad(self) -> "Interval":
        """Bounds on torch's ReLU derivative (1 where x > 0, else 0) over the interval."""
        return Interval((self.lo > 0).to(self.dtype), (self.hi > 0).to(self.dtype), check=False)


def _as_interval(x: "Interval | torch.Tensor | float", like: Interval) -> Interval:
    if isinstance(x, Interval):
        return x
    t = torch.as_tensor(x, dtype=like.dtype, device=like.device)
    return Interval.point(t)


def matmul(a: Interval | torch.Tensor, b: Interval | torch.Tensor, exact: bool = False) -> Interval:
    """Bounds on ``a @ b`` for every ``a``, ``b`` inside their intervals (2-D or batched).

    A point factor is handled exactly (``mid ± |P| rad``). For two intervals the default is the
    midpoint-radius product (``|ma| rb + ra |mb| + ra rb``, at most 1.5x wider than optimal, three
    matrix products); ``exact=True`` takes the element-wise optimal product of every pair of
    entries and sums them (tight, but materialises an ``m x k x n`` tensor).
    """
    if not isinstance(a, Interval) and not isinstance(b, Interval):
        return Interval.point(a @ b)
    if exact and isinstance(a, Interval) and isinstance(b, Interval):
        prod = a.unsqueeze(-1) * b.unsqueeze(-3)
        return prod.sum(dim=-2)
    if isinstance(a, Interval) and isinstance(b, Interval):
        ma, ra = a.mid_rad()
        mb, rb = b.mid_rad()
        mid = ma @ mb
        rad = ma.abs() @ rb + ra @ mb.abs() + ra @ rb
        mag = ma.abs() @ mb.abs()
    elif isinstance(a, Interval):
        ma, ra = a.mid_rad()
        mid = ma @ b
        rad = ra @ b.abs()
        mag = ma.abs() @ b.abs()
    else:
        mb, rb = b.mid_rad()
        mid = a @ mb
        rad = a.abs() @ rb
        mag = a.abs() @ mb.abs()
    lo, hi = mid - rad, mid + rad
    if rounding_enabled():
        n = (a.shape[-1])
        lo, hi = widen(lo, hi, gamma(n + 2, lo.dtype) * (mag + rad) + torch.finfo(lo.dtype).tiny)
    return Interval(lo, hi, check=False)


def linear(x: Interval | torch.Tensor, weight: Interval, bias: Interval | None, exact: bool = False) -> Interval:
    """Bounds on ``x @ W.T + b`` for a batch ``x`` (B, in), ``W`` (out, in), ``b`` (out,)."""
    wt = Interval(weight.lo.T, weight.hi.T, check=False)
    z = matmul(x, wt, exact=exact)
    return z + bias if bias is not None else z


def monotone(fn, x: Interval, increasing: bool = True, ulps: int = 8) -> Interval:
    """Apply a monotone function to the bounds; ``ulps`` pads for a libm result that is not
    correctly rounded (``exp``, ``log1p``, ``sigmoid`` are accurate to a few ulps)."""
    a, b = fn(x.lo), fn(x.hi)
    lo, hi = (a, b) if increasing else (b, a)
    if rounding_enabled():
        eps = torch.finfo(lo.dtype).eps
        lo, hi = widen(lo, hi, ulps * eps * torch.maximum(lo.abs(), hi.abs()) + torch.finfo(lo.dtype).tiny)
    return Interval(lo, hi, check=False)
