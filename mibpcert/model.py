"""One description of the network, shared by the interval path and the MIBP encoder.

Supported: ``torch.nn.Sequential`` of ``Linear`` layers with ``ReLU`` between them (optionally a
leading ``Flatten``), i.e. a ReLU MLP. Anything else is rejected with a clear ``TypeError``.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch


@dataclass(frozen=True)
class Dense:
    """One affine layer ``z = W a + b`` followed by ReLU when ``relu`` is set."""

    weight: str  # state_dict name of W (out, in)
    bias: str | None  # state_dict name of b (out,), None for bias-free layers
    in_features: int
    out_features: int
    relu: bool


@dataclass(frozen=True)
class ModelSpec:
    layers: tuple[Dense, ...]

    @property
    def in_features(self) -> int:
        return self.layers[0].in_features

    @property
    def out_features(self) -> int:
        return self.layers[-1].out_features

    @property
    def param_names(self) -> list[str]:
        names: list[str] = []
        for layer in self.layers:
            names.append(layer.weight)
            if layer.bias is not None:
                names.append(layer.bias)
        return names

    def param_shapes(self) -> dict[str, tuple[int, ...]]:
        shapes: dict[str, tuple[int, ...]] = {}
        for layer in self.layers:
            shapes[layer.weight] = (layer.out_features, layer.in_features)
            if layer.bias is not None:
                shapes[layer.bias] = (layer.out_features,)
        return shapes

    @property
    def num_params(self) -> int:
        return sum(int(torch.Size(s).numel()) for s in self.param_shapes().values())


def describe(model: torch.nn.Module) -> ModelSpec:
    """Read a ReLU MLP into a :class:`ModelSpec`; raise ``TypeError`` on anything unsupported."""
    if isinstance(model, torch.nn.Linear):
        modules = [("", model)]
    elif isinstance(model, torch.nn.Sequential):
        modules = list(model.named_children())
    else:
        raise TypeError(
            f"unsupported model type {type(model).__name__}: mibpcert certifies torch.nn.Sequential "
            "ReLU MLPs (Linear layers with ReLU between them)"
        )
    layers: list[Dense] = []
    pending: torch.nn.Linear | None = None
    pending_name = ""
    for i, (name, mod) in enumerate(modules):
        prefix = f"{name}." if name else ""
        if isinstance(mod, torch.nn.Flatten) and i == 0:
            continue
        if isinstance(mod, torch.nn.Linear):
            if pending is not None:
                layers.append(_dense(pending, pending_name, relu=False))
            pending, pending_name = mod, prefix
        elif isinstance(mod, torch.nn.ReLU):
            if pending is None:
                raise TypeError(f"layer {name!r}: ReLU must follow a Linear layer")
            layers.append(_dense(pending, pending_name, relu=True))
            pending = None
        else:
            raise TypeError(
                f"unsupported layer {name!r} of type {type(mod).__name__}: only Linear and ReLU "
                "(and a leading Flatten) are supported"
            )
    if pending is not None:
        layers.append(_dense(pending, pending_name, relu=False))
    if not layers:
        raise TypeError("the model has no Linear layer")
    if layers[-1].relu:
        raise TypeError("the last layer must be Linear (logits), not followed by ReLU")
    for a, b in zip(layers, layers[1:]):
        if a.out_features != b.in_features:
            raise TypeError(f"layer widths do not chain: {a.weight} outputs {a.out_features}, {b.weight} takes {b.in_features}")
    return ModelSpec(tuple(layers))


def _dense(mod: torch.nn.Linear, prefix: str, relu: bool) -> Dense:
    return Dense(
        weight=f"{prefix}weight",
        bias=f"{prefix}bias" if mod.bias is not None else None,
        in_features=mod.in_features,
        out_features=mod.out_features,
        relu=relu,
    )


def mlp(widths: list[int] | tuple[int, ...], seed: int | None = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Sequential:
    """Build a ReLU MLP with the given layer widths (input first, output last), seeded init."""
    if len(widths) < 2 or any(int(w) <= 0 for w in widths):
        raise ValueError(f"widths must list at least input and output size, all positive; got {widths}")
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for i in range(len(widths) - 1):
        mods.append(torch.nn.Linear(int(widths[i]), int(widths[i + 1]), dtype=dtype))
        if i < len(widths) - 2:
            mods.append(torch.nn.ReLU())
    if seed is not None:
        torch.random.set_rng_state(gen_state)
    return torch.nn.Sequential(*mods)
