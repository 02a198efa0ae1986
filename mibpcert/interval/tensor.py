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
import functools
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
        with torch.inference_mode(False):  # an ordinary tensor, also when first needed in inference mode
            v = _INF[key] = torch.tensor(-torch.inf if negative else torch.inf, dtype=t.dtype, device=t.device)
    return v


def _down(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, _inf(t, True))


def _up(t: torch.Tensor) -> torch.Tensor:
    return torch.nextafter(t, _inf(t, False))


def _reduced_float32_matmul(device_type: str) -> str | None:
    """The reduced float32 matmul precision torch may use on ``device_type`` ("tf32", "bf16",
    "high", ...), or None for IEEE float32. Reads torch's per-backend ``fp32_precision`` settings
    where a torch has them and one is set (torch refuses the legacy queries once they are), else
    ``get_float32_matmul_precision`` and, on CUDA, ``allow_tf32``."""
    backend = torch.backends.cuda.matmul if device_type == "cuda" else getattr(torch.backends, "mkldnn", None)
    new = getattr(getattr(backend, "matmul", backend), "fp32_precision", None) if backend is not None else None
    if new not in (None, "none", "ieee"):
        return str(new)
    if new is not None:  # the new API is in use ("none" defers to the legacy settings, which torch may refuse to read)
        try:
            legacy = torch.get_float32_matmul_precision()
        except RuntimeError:
            return None if new == "ieee" else "unknown"
    else:
        legacy = torch.get_float32_matmul_precision()
    if legacy != "highest":
        return legacy
    if device_type == "cuda" and torch.backends.cuda.matmul.allow_tf32:
        return "tf32"
    return None


def check_exact_float32_matmul(dtype: torch.dtype, device: torch.device) -> None:
    """The rounding bounds assume IEEE arithmetic; refuse float32 when torch may run its matmuls
    in reduced precision (TF32 or bf16 through either of torch's precision APIs, or a float32
    matmul precision below "highest")."""
    if dtype != torch.float32:
        return
    reduced = _reduced_float32_matmul(torch.device(device).type)
    if reduced is not None:
        raise ValueError(
            f"float32 bounds need IEEE float32 matmuls, but torch may use reduced precision ({reduced}): call "
            "torch.set_float32_matmul_precision('highest') (or set torch.backends.fp32_precision = 'ieee'), "
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


@functools.lru_cache(maxsize=None)
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
        s = _up(s + err) if up else _down(s - err)
    return s


# Stacked bounds: one (2, *shape) tensor, lower bounds then upper bounds. At the sizes of a
# training step every torch operator costs a few microseconds whatever it computes, so one
# operator for both bounds (an addition, the ``nextafter`` of the outward rounding) saves one such
# cost. A reduction over the stacked dimension or a broadcast of three operands costs more than a
# plain element-wise operator, though, so midpoints, radii and libm functions use the two bounds.
_PAIRS: dict[tuple[str, torch.dtype, torch.device, int], torch.Tensor] = {}
_PAIR_VALUES = {"sign": (-1.0, 1.0), "ends": (-torch.inf, torch.inf), "min": (-torch.inf, 0.0), "max": (0.0, torch.inf),
                "zero": (0.0, 0.0)}


def _pair(kind: str, dtype: torch.dtype, device: torch.device, ndim: int) -> torch.Tensor:
    """A cached ``(2, 1, ..., 1)`` tensor with ``ndim`` dimensions that broadcasts against stacked
    bounds: ``"sign"`` [-1, 1] (the direction each bound moves outward), ``"ends"`` [-inf, inf],
    the clamp limits ``"min"`` [-inf, 0] and ``"max"`` [0, inf] that take both bounds to the hull
    with 0, and ``"zero"``."""
    key = (kind, dtype, device, ndim)
    v = _PAIRS.get(key)
    if v is None:
        with torch.inference_mode(False):  # an ordinary tensor, also when first needed in inference mode
            v = _PAIRS[key] = torch.tensor(_PAIR_VALUES[kind], dtype=dtype, device=device).reshape((2,) + (1,) * (ndim - 1))
    return v


def _outward_(s: torch.Tensor) -> torch.Tensor:
    """Stacked bounds moved outward by one ulp each (lower ones down, upper ones up), in place:
    for a tensor that nothing else holds."""
    return s.nextafter_(_pair("ends", s.dtype, s.device, s.dim()))


def _plus_minus(m: torch.Tensor, e: torch.Tensor) -> torch.Tensor:
    """``[lo - e, hi + e]`` for stacked bounds ``m``, or ``[m - e, m + e]`` for a tensor ``m`` of
    one bound's shape (``e`` never has the stacked dimension). One rounding per entry, the same
    as computing ``lo - e`` and ``hi + e``: the product of ``e`` with ±1 is exact."""
    return torch.addcmul(m, _pair("sign", e.dtype, e.device, max(m.dim(), e.dim() + 1)), e)


def _widen_(s: torch.Tensor, err: torch.Tensor) -> torch.Tensor:
    """Stacked counterpart of :func:`widen`, in place on stacked bounds ``s`` that nothing else
    holds: ``[lo - err, hi + err]`` (``err`` of one bound's shape, or stacked: one error per
    bound; one rounding per entry, as in :func:`_plus_minus`), each bound then moved one ulp
    outward for the rounding of that subtraction or addition."""
    return _outward_(s.addcmul_(_pair("sign", s.dtype, s.device, s.dim()), err))


def directed_sums(s: torch.Tensor) -> torch.Tensor:
    """Stacked counterpart of :func:`directed_sum` for stacked bounds ``s`` (2, n, ...): sums over
    dim 1, the lower ones rounded down and the upper ones up (each with the error bound of its
    own sum), a lower and an upper bound of the exact sums."""
    out = s.sum(1)
    if rounding_enabled():
        out = _widen_(out, s.abs().sum(1).mul_(gamma(s.shape[1], s.dtype)).add_(torch.finfo(s.dtype).tiny))
    return out


class Interval:
    """Element-wise interval ``[lo, hi]`` of torch tensors with equal shape, dtype and device.

    The bounds are held as two tensors, as one stacked ``(2, *shape)`` tensor (:attr:`stacked`),
    or both; each form is made from the other on first use (one operator) and kept. Arithmetic
    uses the stacked form where the operands have it (one operator for both bounds) and the two
    bounds otherwise. Intervals are immutable: derived values (the other form, the midpoint and
    radius) are cached.
    """

    __slots__ = ("_lo", "_hi", "_s", "_mr")

    def __init__(self, lo: torch.Tensor, hi: torch.Tensor, check: bool = True) -> None:
        if lo.shape != hi.shape:
            raise ValueError(f"interval bounds have different shapes {tuple(lo.shape)} and {tuple(hi.shape)}")
        if check and bool((lo > hi).any()):
            bad = int((lo > hi).sum())
            raise ValueError(f"invalid interval: lower bound exceeds upper bound at {bad} entries")
        self._lo: torch.Tensor | None = lo
        self._hi: torch.Tensor | None = hi
        self._s: torch.Tensor | None = None
        self._mr: tuple[bool, torch.Tensor, torch.Tensor] | None = None

    @staticmethod
    def from_stacked(s: torch.Tensor) -> "Interval":
        """The interval whose lower and upper bounds are ``s[0]`` and ``s[1]`` (not checked)."""
        iv = Interval.__new__(Interval)
        iv._lo = iv._hi = iv._mr = None
        iv._s = s
        return iv

    # -- construction ------------------------------------------------------------------------
    @staticmethod
    def point(x: torch.Tensor) -> "Interval":
        return Interval(x, x, check=False)

    @staticmethod
    def from_mid_rad(mid: torch.Tensor, rad: torch.Tensor) -> "Interval":
        return Interval._rounded(_plus_minus(mid, rad))

    # -- representation ----------------------------------------------------------------------
    @property
    def lo(self) -> torch.Tensor:
        if self._lo is None:
            self._lo, self._hi = self._s.unbind(0)
        return self._lo

    @property
    def hi(self) -> torch.Tensor:
        if self._hi is None:
            self._lo, self._hi = self._s.unbind(0)
        return self._hi

    @property
    def stacked(self) -> torch.Tensor:
        """Both bounds as one ``(2, *shape)`` tensor: ``stacked[0]`` lower, ``stacked[1]`` upper."""
        if self._s is None:
            self._s = torch.stack((self._lo, self._hi))
        return self._s

    def __getstate__(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.lo, self.hi

    def __setstate__(self, state) -> None:
        if isinstance(state[1], dict):  # pickled by versions that stored the slots lo and hi
            state = state[1]["lo"], state[1]["hi"]
        self._lo, self._hi = state
        self._s = self._mr = None

    def _aligned(self, ndim: int) -> torch.Tensor:
        """The stacked bounds with singleton dimensions inserted after the first, so that they
        broadcast like the bounds would against ``ndim``-dimensional operands."""
        s = self.stacked
        for _ in range(ndim + 1 - s.dim()):
            s = s.unsqueeze(1)
        return s

    # -- properties --------------------------------------------------------------------------
    @property
    def shape(self) -> torch.Size:
        return self._lo.shape if self._lo is not None else self._s.shape[1:]

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def dtype(self) -> torch.dtype:
        return (self._lo if self._lo is not None else self._s).dtype

    @property
    def device(self) -> torch.device:
        return (self._lo if self._lo is not None else self._s).device

    def mid_rad(self) -> tuple[torch.Tensor, torch.Tensor]:
        """Midpoint and radius with ``[mid - rad, mid + rad] ⊇ [lo, hi]`` (the radius rounded up
        covers the rounding of its subtractions)."""
        on = rounding_enabled()
        if self._mr is None or self._mr[0] != on:
            lo, hi = self.lo, self.hi
            mid = (lo + hi).mul_(0.5)
            rad = torch.maximum(hi - mid, mid - lo)
            self._mr = (on, mid, rad.nextafter_(_inf(rad, False)) if on else rad)
        return self._mr[1], self._mr[2]

    def width(self) -> torch.Tensor:
        return self.hi - self.lo

    def is_finite(self) -> torch.Tensor:
        return torch.isfinite(self.lo) & torch.isfinite(self.hi)

    def __getitem__(self, idx) -> "Interval":
        if self._s is not None:
            return Interval.from_stacked(self._s[(slice(None),) + (idx if isinstance(idx, tuple) else (idx,))])
        return Interval(self._lo[idx], self._hi[idx], check=False)

    def reshape(self, *shape) -> "Interval":
        if self._s is not None:
            dims = tuple(shape[0]) if len(shape) == 1 and not isinstance(shape[0], int) else shape
            return Interval.from_stacked(self._s.reshape((2,) + tuple(dims)))
        return Interval(self._lo.reshape(*shape), self._hi.reshape(*shape), check=False)

    def unsqueeze(self, dim: int) -> "Interval":
        if self._s is not None:
            return Interval.from_stacked(self._s.unsqueeze(dim + 1 if dim >= 0 else dim))
        return Interval(self._lo.unsqueeze(dim), self._hi.unsqueeze(dim), check=False)

    def to(self, *args, **kwargs) -> "Interval":
        """Same arguments as ``torch.Tensor.to``; a change of dtype rounds both bounds outward
        (always, not only with outward rounding on), so the result contains ``self``."""
        target = torch.empty(0, dtype=self.dtype, device=self.device).to(*args, **kwargs)
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
    def _operands(self, other: "Interval | torch.Tensor | float") -> tuple[torch.Tensor, "torch.Tensor | float", bool]:
        """``self``'s stacked bounds and ``other`` aligned for broadcasting: other's stacked bounds
        (flag True) or the point ``other`` itself (a tensor on self's dtype and device, or a
        Python number, which torch rounds to self's dtype as ``torch.as_tensor`` would)."""
        if isinstance(other, Interval):
            a, b = self.stacked, other.stacked
            if a.dim() != b.dim():
                nd = max(a.dim(), b.dim()) - 1
                a, b = self._aligned(nd), other._aligned(nd)
            return a, b, True
        if isinstance(other, torch.Tensor):
            if other.dtype != self.dtype or other.device != self.device:
                other = other.to(dtype=self.dtype, device=self.device)
            return self._aligned(max(self.ndim, other.dim())), other, False
        return self.stacked, other, False

    @staticmethod
    def _rounded(s: torch.Tensor) -> "Interval":
        """Stacked bounds ``s`` (a new tensor that nothing else holds) of a single correctly
        rounded operation per bound, moved one ulp outward when outward rounding is on (so they
        contain the real result)."""
        return Interval.from_stacked(_outward_(s) if rounding_enabled() else s)

    @staticmethod
    def _rounded_bounds(lo: torch.Tensor, hi: torch.Tensor) -> "Interval":
        """:meth:`_rounded` for separate new bounds."""
        if rounding_enabled():
            lo, hi = lo.nextafter_(_inf(lo, True)), hi.nextafter_(_inf(hi, False))
        return Interval(lo, hi, check=False)

    def _stacked_with(self, other: "Interval | torch.Tensor | float") -> bool:
        """Whether an operation with ``other`` works on stacked bounds (one operator for both
        bounds) or, cheaper where no stacked form exists yet, on the two bounds."""
        return self._s is not None and (not isinstance(other, Interval) or other._s is not None)

    def __add__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        if not self._stacked_with(other):
            o_lo, o_hi = _bounds(other, self)
            return Interval._rounded_bounds(self.lo + o_lo, self.hi + o_hi)
        a, b, _ = self._operands(other)
        return Interval._rounded(a + b)

    __radd__ = __add__

    def __neg__(self) -> "Interval":
        if self._s is not None:
            return Interval.from_stacked(-self._s.flip(0))
        return Interval(-self._hi, -self._lo, check=False)

    def __sub__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        """``[lo - other.hi, hi - other.lo]``."""
        if not self._stacked_with(other):
            o_lo, o_hi = _bounds(other, self)
            return Interval._rounded_bounds(self.lo - o_hi, self.hi - o_lo)
        a, b, iv = self._operands(other)
        return Interval._rounded(a - (b.flip(0) if iv else b))

    def __rsub__(self, other: "torch.Tensor | float") -> "Interval":
        """``other - self = [other - hi, other - lo]``."""
        if not self._stacked_with(other):
            o_lo, o_hi = _bounds(other, self)
            return Interval._rounded_bounds(o_lo - self.hi, o_hi - self.lo)
        a, b, _ = self._operands(other)
        return Interval._rounded(b - a.flip(0))

    def scale(self, c: torch.Tensor | float) -> "Interval":
        """Multiply by a point ``c`` (scalar or broadcastable tensor): ``[lo c, hi c]``, swapped for
        ``c < 0`` (the min and max of the two for a tensor ``c``); each product is correctly
        rounded, so one ulp outward contains the real one."""
        if isinstance(c, (int, float)):
            if self._s is None:
                a, b = self._lo * c, self._hi * c
                return Interval._rounded_bounds(b, a) if c < 0 else Interval._rounded_bounds(a, b)
            p = self._s * c
            return Interval._rounded(p.flip(0) if c < 0 else p)
        a, c_t, _ = self._operands(torch.as_tensor(c, dtype=self.dtype, device=self.device))
        p = a * c_t
        return Interval._rounded(torch.stack((p.amin(0), p.amax(0))))

    def __mul__(self, other: "Interval | torch.Tensor | float") -> "Interval":
        """Element-wise product (exact: min and max over the four corner products)."""
        if not isinstance(other, Interval):
            return self.scale(other)
        a, b, _ = self._operands(other)
        p = a.unsqueeze(1) * b.unsqueeze(0)  # (2, 2, ...): every lower/upper pairing
        return Interval._rounded(torch.stack((p.amin((0, 1)), p.amax((0, 1)))))

    __rmul__ = __mul__

    def sum(self, dim: int) -> "Interval":
        s = self.stacked
        out = s.sum(dim + 1 if dim >= 0 else dim)
        if rounding_enabled():
            out = _widen_(out, s.abs().amax(0).sum(dim).mul_(gamma(self.shape[dim], self.dtype)))
        return Interval.from_stacked(out)

    def relu(self) -> "Interval":
        if self._s is not None:
            return Interval.from_stacked(self._s.clamp_min(0))
        return Interval(self._lo.clamp_min(0), self._hi.clamp_min(0), check=False)

    def gate(self, d: "Interval") -> "Interval":
        """Product with an interval ``d`` of the same shape whose bounds are 0 or 1 (a ReLU
        derivative): ``self`` where d = 1, 0 where d = 0, the hull of 0 and ``self`` where d is
        [0, 1]. Exact, so no rounding is needed."""
        return self._gated(d.stacked > 0)

    def relu_backward(self, pre: "Interval") -> "Interval":
        """``self.gate(pre.relu_grad())`` (a gradient through a ReLU whose input is ``pre``), in
        fewer operations."""
        return self._gated(pre.stacked > 0)

    def _gated(self, on: torch.Tensor) -> "Interval":
        """The gate for ``on`` = (d.lo > 0, d.hi > 0) stacked."""
        s = self.stacked
        k = (s.dtype, s.device, s.dim())
        hull0 = s.clamp(min=_pair("min", *k), max=_pair("max", *k))
        return Interval.from_stacked(torch.where(on[:1], s, torch.where(on[1:], hull0, _pair("zero", *k))))

    def relu_grad(self) -> "Interval":
        """Bounds on torch's ReLU derivative (1 where x > 0, else 0) over the interval."""
        return Interval.from_stacked((self.stacked > 0).to(self.dtype))


def _bounds(x: "Interval | torch.Tensor | float", like: Interval) -> tuple:
    """Lower and upper bound of ``x``: an interval's, or twice the point ``x`` (a tensor on
    ``like``'s dtype and device, or a Python number, which torch rounds to that dtype as
    ``torch.as_tensor`` would)."""
    if isinstance(x, Interval):
        return x.lo, x.hi
    if isinstance(x, torch.Tensor) and (x.dtype != like.dtype or x.device != like.device):
        x = x.to(dtype=like.dtype, device=like.device)
    return x, x


def hull_where(candidates: list[Interval], allowed: torch.Tensor) -> Interval:
    """The hull, at every position, of the candidate intervals allowed there: the least lower
    bound and the greatest upper bound over the ``k`` with ``allowed[..., k]`` (``allowed``
    broadcasts against ``(*shape, K)`` for K candidates of one ``shape``); ``[inf, -inf]`` (empty)
    where none is allowed. Exact (see :func:`hull_last`)."""
    return hull_last(Interval.from_stacked(torch.stack([c.stacked for c in candidates], dim=-1)), allowed)


def hull_last(x: Interval, allowed: torch.Tensor) -> Interval:
    """The hull over the last axis of ``x`` of the entries allowed there (``allowed`` broadcasts
    against ``x``), that axis removed; ``[inf, -inf]`` (empty) where none is allowed. Exact: the
    lower bounds are negated (exact) so that one maximum gives both bounds, and negated back."""
    s = x.stacked  # (2, *shape, K)
    flipped = torch.where(allowed, s * _pair("sign", s.dtype, s.device, s.dim()), _inf(s, True))
    return Interval.from_stacked(flipped.amax(-1).mul_(_pair("sign", s.dtype, s.device, s.dim() - 1)))


def outer(a: Interval, b: Interval) -> Interval:
    """Bounds on the (batched) outer products ``a[..., :, None] * b[..., None, :]``: each entry
    is the product of two intervals (min and max of its four corner products, each correctly
    rounded, so one ulp outward contains the real product)."""
    p = a.stacked.reshape((2, 1) + tuple(a.shape) + (1,)) * b.stacked.reshape((1, 2) + tuple(b.shape[:-1]) + (1, b.shape[-1]))
    return Interval._rounded(torch.stack((p.amin((0, 1)), p.amax((0, 1)))))


def mid_rad_matmul(a: "Interval | torch.Tensor", mb: torch.Tensor, rb: torch.Tensor | None) -> Interval:
    """Bounds on ``a @ b`` for every ``a`` in its interval (or the point ``a``) and every ``b``
    in ``[mb - rb, mb + rb]`` (``rb=None``: the point ``mb``), 2-D or batched.

    With ``a`` in ``[ma - ra, ma + ra]``: ``|a @ b - ma @ mb| <= |ma| rb + ra |mb| + ra rb`` (at
    most 1.5x wider than optimal); a point factor is exact (``mid ± |P| rad``). With outward
    rounding on, each of the computed products and sums of ``n`` terms is off by at most
    ``gamma_(n+2)`` times the magnitude ``|ma| |mb| + rad`` (plus ``tiny`` for underflow), which
    widens the result, and the widening itself is rounded outward.
    """
    ma, ra = a.mid_rad() if isinstance(a, Interval) else (a, None)
    mid = ma @ mb
    ama = ma.abs()
    amb = mb.abs()
    if ra is None:
        rad = ama @ rb
    elif rb is None:
        rad = ra @ amb
    else:
        rad = (ama @ rb).add_(ra @ amb).add_(ra @ rb)
    s = _plus_minus(mid, rad)
    if rounding_enabled():
        s = _widen_(s, (ama @ amb).add_(rad).mul_(gamma(ma.shape[-1] + 2, mid.dtype)).add_(torch.finfo(mid.dtype).tiny))
    return Interval.from_stacked(s)


def matmul(a: Interval | torch.Tensor, b: Interval | torch.Tensor, exact: bool = False) -> Interval:
    """Bounds on ``a @ b`` for every ``a``, ``b`` inside their intervals (2-D or batched).

    A point factor is handled exactly (``mid ± |P| rad``). For two intervals the default is the
    midpoint-radius product (:func:`mid_rad_matmul`: at most 1.5x wider than optimal, three
    matrix products); ``exact=True`` takes the element-wise optimal product of every pair of
    entries and sums them (tight, but materialises an ``m x k x n`` tensor).
    """
    if not isinstance(a, Interval) and not isinstance(b, Interval):
        return Interval.point(a @ b)
    if exact and isinstance(a, Interval) and isinstance(b, Interval):
        prod = a.unsqueeze(-1) * b.unsqueeze(-3)
        return prod.sum(dim=-2)
    if isinstance(b, Interval):
        return mid_rad_matmul(a, *b.mid_rad())
    return mid_rad_matmul(a, b, None)


def _t(m: torch.Tensor) -> torch.Tensor:
    """``m.T``, with the strides torch gives the result of an element-wise operation on ``m.T``
    (row-major when a dimension is 1), so that the matrix products run the same kernels, and
    round the same way, as on bounds computed from transposed tensors."""
    return m.reshape(m.shape[1], m.shape[0]) if 1 in m.shape else m.T


def linear(x: Interval | torch.Tensor, weight: Interval, bias: Interval | None, exact: bool = False) -> Interval:
    """Bounds on ``x @ W.T + b`` for a batch ``x`` (B, in), ``W`` (out, in), ``b`` (out,)."""
    if exact and isinstance(x, Interval):
        z = (x.unsqueeze(-2) * weight).sum(-1)  # the product of every pair, summed over ``in``
    else:
        mw, rw = weight.mid_rad()
        z = mid_rad_matmul(x, _t(mw), _t(rw))
    return z + bias if bias is not None else z


def monotone(fn, x: Interval, increasing: bool = True, ulps: int = 8) -> Interval:
    """Apply an element-wise monotone function to the bounds; ``ulps`` pads for a libm result
    that is not correctly rounded (``exp``, ``log1p``, ``sigmoid`` are accurate to a few ulps)."""
    a, b = fn(x.lo), fn(x.hi)
    lo, hi = (a, b) if increasing else (b, a)
    if not rounding_enabled():
        return Interval(lo, hi, check=False)
    err = torch.maximum(lo.abs(), hi.abs()).mul_(ulps * torch.finfo(lo.dtype).eps).add_(torch.finfo(lo.dtype).tiny)
    return Interval.from_stacked(_widen_(torch.stack((lo, hi)), err))
