"""One description of the network, shared by the interval path and the MIBP encoder.

Supported: ``torch.nn.Sequential`` of ``Linear`` layers with ``ReLU`` between them (optionally a
leading ``Flatten``), i.e. a ReLU MLP, a single ``Linear``, or any other ``nn.Module`` whose forward
is such a chain (read with ``torch.fx``: ``Linear``/``ReLU``/``Flatten`` submodules, ``F.relu``,
``torch.relu``, ``x.relu()``, ``torch.flatten(x, 1)``). :func:`describe` reads exactly
what torch runs: every entry of the chain in order (a module used twice counts twice), and
refuses what it cannot see through (hooks on modules or parameters, parametrizations such as
``weight_norm``, subclasses, shared weights) with a ``TypeError`` naming the module.
Parameters with ``requires_grad=False`` are recorded as frozen: training leaves them unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.fx
import torch.nn.functional as F
import torch.nn.modules.module as torch_module
from torch.nn.utils import parametrize

SUPPORTED = ("a chain of Linear layers with ReLU between them (optionally a leading Flatten): a torch.nn.Sequential, "
             "one Linear, or a module whose forward is such a chain")
_RELU_FUNCTIONS = (F.relu, torch.relu, torch.relu_)


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
    """The network as a chain of :class:`Dense` layers; ``frozen``: the names of parameters
    that training does not change (``requires_grad=False`` in the model)."""

    layers: tuple[Dense, ...]
    frozen: frozenset[str] = frozenset()

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

    def frozen_mask(self, device: torch.device | str | None = None) -> torch.Tensor:
        """Flat boolean mask over all parameter entries (``param_names`` order), True where frozen."""
        parts = [torch.full((int(torch.Size(s).numel()),), n in self.frozen, dtype=torch.bool, device=device)
                 for n, s in self.param_shapes().items()]
        return torch.cat(parts)

    def forward(self, params: dict[str, torch.Tensor], x: torch.Tensor) -> torch.Tensor:
        """The network's output on concrete parameters (plain torch), as certified."""
        a = x.reshape(x.shape[0], -1)
        for layer in self.layers:
            a = F.linear(a, params[layer.weight], params[layer.bias] if layer.bias else None)
            if layer.relu:
                a = torch.relu(a)
        return a


# torch keeps global module hooks in private module-level dicts; reading them is the only way to
# know that none is registered
_GLOBAL_HOOKS = ("_global_forward_hooks", "_global_forward_pre_hooks", "_global_backward_hooks",
                 "_global_backward_pre_hooks")
_MODULE_HOOKS = ("_forward_hooks", "_forward_pre_hooks", "_backward_hooks", "_backward_pre_hooks",
                 "_state_dict_hooks", "_state_dict_pre_hooks", "_load_state_dict_pre_hooks",
                 "_load_state_dict_post_hooks")
# the instance attributes of freshly built modules: anything else callable on an instance (an
# instance ``forward``, ``_call_impl``, ``__deepcopy__`` ...) would change what torch runs
_PLAIN_ATTRS = {cls: set(vars(make())) for cls, make in (
    (torch.nn.Linear, lambda: torch.nn.Linear(1, 1)), (torch.nn.ReLU, torch.nn.ReLU),
    (torch.nn.Flatten, torch.nn.Flatten), (torch.nn.Sequential, torch.nn.Sequential))}


def _check_hooks(model: torch.nn.Module) -> None:
    """Refuse hooks and parametrizations: they change what torch runs in ways the bounds cannot see."""
    for attr in _GLOBAL_HOOKS:
        if getattr(torch_module, attr, None):
            raise TypeError(
                "global torch.nn module hooks are registered (torch.nn.modules.module.register_module_*_hook); "
                "they change what every module computes and the bounds cannot see them: remove them before certifying"
            )
    for name, mod in model.named_modules(remove_duplicate=False):
        where = f"module {name!r}" if name else "the model"
        if parametrize.is_parametrized(mod):
            raise TypeError(
                f"{where} ({type(mod).__name__}) has parametrized parameters (e.g. weight_norm or spectral_norm); "
                f"unsupported: mibpcert certifies plain {SUPPORTED}"
            )
        for attr in _MODULE_HOOKS:
            if getattr(mod, attr, None):
                kind = attr.strip("_").replace("_", " ")
                raise TypeError(
                    f"{where} ({type(mod).__name__}) has {kind} (e.g. from torch.nn.utils.weight_norm, pruning "
                    "or a registered hook); the bounds cannot see what a hook does: remove it before certifying"
                )
        extra = [k for k, v in vars(mod).items()
                 if k not in _PLAIN_ATTRS.get(type(mod), ()) and (callable(v) or hasattr(type(mod), k))]
        if extra:
            raise TypeError(
                f"{where} ({type(mod).__name__}) overrides {', '.join(sorted(extra))} on the instance; "
                "the bounds cannot see what that changes: use plain modules"
            )
        for pname, p in mod.named_parameters(recurse=False):
            if getattr(p, "_backward_hooks", None) or getattr(p, "_post_accumulate_grad_hooks", None):
                raise TypeError(
                    f"parameter {pname!r} of {where} has gradient hooks (Tensor.register_hook); the bounds cannot "
                    "see what a hook does to the gradient: remove it before certifying"
                )


def _plain(mod: torch.nn.Module, cls: type) -> bool:
    """``mod`` is exactly a ``cls`` (not a subclass, which could change ``forward``, ``__call__``,
    attribute access or iteration)."""
    return type(mod) is cls


def _owned_parameter(mod: torch.nn.Linear, name: str, shape: tuple[int, ...], where: str) -> None:
    p = mod._parameters.get(name)
    if type(p) is not torch.nn.Parameter:
        what = "missing" if p is None else f"a {type(p).__name__}"
        raise TypeError(f"{where}.{name} is {what}, not a torch.nn.Parameter of the layer; unsupported")
    if tuple(p.shape) != shape:
        raise TypeError(f"{where}.{name} has shape {tuple(p.shape)}, expected {shape}")


def describe(model: torch.nn.Module) -> ModelSpec:
    """Read a ReLU MLP into a :class:`ModelSpec`; raise ``TypeError`` on anything unsupported."""
    if not isinstance(model, torch.nn.Module):
        raise TypeError(f"the model must be a torch.nn.Module, got {type(model).__name__}")
    _check_hooks(model)
    if isinstance(model, torch.nn.Linear):
        if not _plain(model, torch.nn.Linear):
            raise TypeError(f"unsupported model type {type(model).__name__}: a subclass of Linear; mibpcert certifies {SUPPORTED}")
        entries = [("", model)]
    elif isinstance(model, torch.nn.Sequential):
        if not _plain(model, torch.nn.Sequential):
            raise TypeError(
                f"unsupported model type {type(model).__name__}: a subclass of Sequential (it may change how the "
                f"layers run); mibpcert certifies {SUPPORTED}"
            )
        # every entry in the order torch runs them; named_children() would skip a repeated module
        entries = list(model._modules.items())
    else:
        entries = _traced_chain(model)
    layers: list[Dense] = []
    pending: torch.nn.Linear | None = None
    pending_name = ""
    seen_linear: dict[int, str] = {}
    for i, (name, mod) in enumerate(entries):
        prefix = f"{name}." if name else ""
        if _plain(mod, torch.nn.Flatten) and i == 0:
            if (mod.start_dim, mod.end_dim) != (1, -1):
                raise TypeError(f"layer {name!r}: only Flatten(start_dim=1, end_dim=-1) is supported")
            continue
        if _plain(mod, torch.nn.Linear):
            if id(mod) in seen_linear:
                raise TypeError(
                    f"layer {name!r} is the same Linear module as layer {seen_linear[id(mod)]!r} (shared weights); "
                    "unsupported: every Linear layer must have its own parameters"
                )
            seen_linear[id(mod)] = name
            where = f"layer {name!r}" if name else "the Linear model"
            _owned_parameter(mod, "weight", (mod.out_features, mod.in_features), where)
            if mod.bias is not None:
                _owned_parameter(mod, "bias", (mod.out_features,), where)
            if pending is not None:
                layers.append(_dense(pending, pending_name, relu=False))
            pending, pending_name = mod, prefix
        elif _plain(mod, torch.nn.ReLU):
            if pending is None:
                raise TypeError(f"layer {name!r}: ReLU must follow a Linear layer")
            layers.append(_dense(pending, pending_name, relu=True))
            pending = None
        else:
            what = "None" if mod is None else type(mod).__name__
            sub = " (a subclass)" if isinstance(mod, (torch.nn.Linear, torch.nn.ReLU, torch.nn.Flatten)) else ""
            raise TypeError(
                f"unsupported layer {name!r} of type {what}{sub}: only Linear and ReLU "
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
    params = {f"{n}.{p}" if n else p: t for n, m in entries for p, t in m.named_parameters(recurse=False)}
    unused = sorted(set(dict(model.named_parameters(remove_duplicate=False))) - set(params))
    if unused:
        raise TypeError(f"parameters {unused} are not used by the chain the forward runs; unsupported (every "
                        "parameter must belong to a Linear layer of the chain)")
    owners: dict[int, str] = {}
    for pname, t in params.items():
        ptr = t.untyped_storage().data_ptr()  # views of one storage are tied too
        if ptr in owners:
            raise TypeError(f"parameters {owners[ptr]!r} and {pname!r} share their memory (tied weights); unsupported")
        owners[ptr] = pname
    frozen = frozenset(n for n, t in params.items() if not t.requires_grad)
    return ModelSpec(tuple(layers), frozen)


def _traced_chain(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """The modules a forward runs, in order, read with ``torch.fx``: it must be one chain from the
    input to the output through Linear/ReLU/Flatten submodules and ReLU or flatten functions (the
    functions become plain ``ReLU``/``Flatten`` entries named after the graph node)."""
    try:
        graph = torch.fx.symbolic_trace(model).graph
    except Exception as e:  # noqa: BLE001 - data-dependent control flow, unsupported Python, ...
        raise TypeError(f"unsupported model type {type(model).__name__}: torch.fx cannot read its forward "
                        f"({type(e).__name__}: {e}); mibpcert certifies {SUPPORTED}") from None
    entries: list[tuple[str, torch.nn.Module]] = []
    prev = None
    for node in graph.nodes:
        if node.op == "placeholder":
            if prev is not None:
                raise TypeError(f"{type(model).__name__}.forward takes more than one input; unsupported")
            prev = node
            continue
        if node.op == "output":
            if node.args[0] is not prev:
                raise TypeError(f"{type(model).__name__}.forward does not return the last step of its chain; unsupported")
            break
        if node.all_input_nodes != [prev]:
            raise TypeError(f"{type(model).__name__}.forward is not a chain at `{node.format_node()}` (each step must take "
                            "the previous step's output only); unsupported")
        extra = list(node.args[1:])
        if node.op == "call_module":
            entries.append((str(node.target), model.get_submodule(str(node.target))))
        elif (node.op == "call_function" and node.target in _RELU_FUNCTIONS or node.op == "call_method"
              and node.target in ("relu", "relu_")) and not extra and set(node.kwargs) <= {"inplace"}:
            entries.append((f"{node.name} (relu)", torch.nn.ReLU()))
        elif (node.op == "call_function" and node.target is torch.flatten or node.op == "call_method"
              and node.target == "flatten") and list(extra) + list(node.kwargs.values()) in ([1], [1, -1]):
            entries.append((f"{node.name} (flatten)", torch.nn.Flatten()))
        else:
            raise TypeError(f"unsupported operation `{node.format_node()}` in {type(model).__name__}.forward: only "
                            "Linear layers, ReLU and a leading flatten are supported")
        prev = node
    return entries


def _dense(mod: torch.nn.Linear, prefix: str, relu: bool) -> Dense:
    return Dense(
        weight=f"{prefix}weight",
        bias=f"{prefix}bias" if mod.bias is not None else None,
        in_features=mod.in_features,
        out_features=mod.out_features,
        relu=relu,
    )


def mlp(widths: list[int] | tuple[int, ...], seed: int | None = 0, dtype: torch.dtype = torch.float64) -> torch.nn.Sequential:
    """Build a ReLU MLP with the given layer widths (input first, output last), seeded init. The
    weights are drawn in float64 and rounded to ``dtype``, so every dtype starts from the same
    model (up to that rounding)."""
    if len(widths) < 2 or any(int(w) <= 0 for w in widths):
        raise ValueError(f"widths must list at least input and output size, all positive; got {widths}")
    gen_state = torch.random.get_rng_state()
    if seed is not None:
        torch.manual_seed(seed)
    mods: list[torch.nn.Module] = []
    for i in range(len(widths) - 1):
        mods.append(torch.nn.Linear(int(widths[i]), int(widths[i + 1]), dtype=torch.float64).to(dtype))
        if i < len(widths) - 2:
            mods.append(torch.nn.ReLU())
    if seed is not None:
        torch.random.set_rng_state(gen_state)
    return torch.nn.Sequential(*mods)
