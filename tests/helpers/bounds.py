"""Assertions on certified parameter boxes (``TrainResult.param_bounds``) shared by the soundness,
exactness and fallback tests."""
from __future__ import annotations

import torch

from mibpcert.interval.tensor import Interval


def flat_bounds(res) -> tuple[torch.Tensor, torch.Tensor]:
    lo = torch.cat([lo.reshape(-1) for lo, _ in res.param_bounds.values()])
    hi = torch.cat([hi.reshape(-1) for _, hi in res.param_bounds.values()])
    return lo, hi


def mean_width(res) -> float:
    lo, hi = flat_bounds(res)
    return float((hi - lo).mean())


def assert_same_box(a, b, what="", tol=0.0):
    """Equal boxes (``tol=0``: bit for bit; else up to ``tol`` relative)."""
    for name, (lo, hi) in a.param_bounds.items():
        blo, bhi = b.param_bounds[name]
        if tol == 0:
            assert torch.equal(lo, blo) and torch.equal(hi, bhi), f"{what}: {name} differs"
        else:
            pad = tol * (1 + torch.maximum(blo.abs(), bhi.abs()))
            assert ((lo - blo).abs() <= pad).all() and ((hi - bhi).abs() <= pad).all(), (
                f"{what}: {name} differs by up to {float(torch.maximum((lo - blo).abs(), (hi - bhi).abs()).max()):.3e}"
            )


def assert_in_box(res, net, what: str = "") -> None:
    state = net.state_dict()
    for name, (lo, hi) in res.param_bounds.items():
        p = state[name]
        out = (p < lo) | (p > hi)
        assert not out.any(), (
            f"{what}: {int(out.sum())} entries of {name} outside the certified box, "
            f"by up to {float(torch.maximum(lo - p, p - hi).max()):.3e}"
        )


def assert_box_inside(inner, outer, what: str = "", tol: float = 1e-12) -> None:
    """Every interval of ``inner`` lies in the matching interval of ``outer``, up to ``tol``
    relative: the outward-rounded interval step is not inclusion-isotone at the last ulp (its
    rounding pad grows with the magnitudes), so a box that starts inside another one may end up to
    ~1e-17 outside it after the next step (measured in per_sample mode)."""
    for name, (lo, hi) in inner.param_bounds.items():
        olo, ohi = outer.param_bounds[name]
        pad = tol * (1 + torch.maximum(olo.abs(), ohi.abs()))
        assert (lo >= olo - pad).all() and (hi <= ohi + pad).all(), (
            f"{what}: {name} box not inside the reference box by up to "
            f"{float(torch.maximum(olo - lo, hi - ohi).max()):.3e}"
        )


def point_box(state: dict, width: float = 0.0) -> dict:
    return {n: Interval(p.detach() - width, p.detach() + width, check=False) for n, p in state.items()}
