"""A second device emulated on the CPU, to catch device mix-ups without a GPU.

:class:`FakeDevice` is a ``TorchFunctionMode``: every tensor created on ``FAKE`` (a factory call
with ``device=FAKE``, ``.to(FAKE)``, ``.cuda()``) is a CPU tensor marked as living on ``FAKE``, and
every result of an operation on marked tensors is marked too; ``tensor.device`` answers ``FAKE``
for them. It records what CUDA would refuse or stall on:

* ``mixes``: an operation on marked tensors with an unmarked (host) tensor of dimension >= 1
  (CUDA accepts only 0-dim host tensors beside device tensors); indexing with host tensors is
  allowed by CUDA but is a copy to the device, recorded in ``copies``;
* ``syncs``: reading device values on the host (``item``, ``tolist``, ``bool``, ``int``, ``float``,
  ``numpy``, ``equal``, ``nonzero``, boolean-mask indexing, ``.cpu()``/``.to("cpu")``): each
  waits until the device has finished all queued work;
* ``copies``: host data copied to the device (``torch.tensor(data, device=FAKE)``, ``.to(FAKE)``
  of a host tensor, host index tensors).

Each record names the innermost ``mibpcert`` frame (file:line) that made the call.
"""
from __future__ import annotations

import traceback

import torch
from torch.overrides import TorchFunctionMode
from torch.utils._pytree import tree_leaves, tree_map

FAKE = torch.device("cuda", 0)
_MARK = "_on_fake_device"
_SYNC = {"item", "tolist", "__bool__", "__int__", "__float__", "__index__", "numpy", "equal", "nonzero", "argwhere",
         "masked_select", "unique", "repeat_interleave"}
_INDEXING = {"__getitem__", "__setitem__", "index_put_", "index_put", "copy_"}
_UPLOADS = {"tensor", "as_tensor"}


def on_fake(t) -> bool:
    return isinstance(t, torch.Tensor) and getattr(t, _MARK, False)


def _mark(t):
    if isinstance(t, torch.Tensor):
        setattr(t, _MARK, True)
    return t


def _is_fake(d) -> bool:
    return d is not None and not isinstance(d, torch.Tensor) and torch.device(d).type == FAKE.type


def _where() -> str:
    frames = [f for f in traceback.extract_stack() if "/mibpcert/" in f.filename.replace("\\", "/")]
    if not frames:
        return "<test>"
    f = frames[-1]
    return f"{f.filename.replace(chr(92), '/').split('/mibpcert/')[-1]}:{f.lineno} {f.name}"


class FakeDevice(TorchFunctionMode):
    """See the module docstring."""

    def __init__(self) -> None:
        super().__init__()
        self.mixes: list[tuple[str, str]] = []
        self.syncs: list[tuple[str, str]] = []
        self.copies: list[tuple[str, str]] = []

    def __torch_function__(self, func, types, args=(), kwargs=None):
        kwargs = dict(kwargs or {})
        name = getattr(func, "__name__", str(func))
        if name in ("__get__", "__set__"):
            return self._attribute(func, name, args)
        if name in ("_parse_to", "_has_compatible_shallow_copy_type"):  # Module.to's queries
            return func(*args, **kwargs)
        tensors = [t for t in tree_leaves((args, kwargs)) if isinstance(t, torch.Tensor)]
        dev_in = any(on_fake(t) for t in tensors)
        target = None  # where the result goes: "fake", "host" or None (follow the inputs)
        if name in ("to", "cuda", "cpu"):
            target, args, kwargs = self._move(name, args, kwargs)
            if name == "cuda":
                func = torch.Tensor.to
        elif _is_fake(kwargs.get("device")):
            kwargs["device"] = "cpu"
            target = "fake"
            if name in _UPLOADS and not dev_in:
                self.copies.append((f"torch.{name}(host data)", _where()))
        host = [t for t in tensors if not on_fake(t) and t.dim() > 0]
        if dev_in and host and target is None:
            (self.copies if name in _INDEXING else self.mixes).append((name, _where()))
        if dev_in and (name in _SYNC or (name == "__getitem__" and any(t.dtype == torch.bool for t in tensors[1:]))):
            self.syncs.append((name, _where()))
        out = func(*args, **kwargs)
        if target is not None and out is args[0] and (target == "fake") != on_fake(out):
            out = out.clone()  # a move that is a no-op on the host still makes a new tensor elsewhere
        if name.endswith("_") and len(args) and out is args[0]:
            return out  # in place: stays where it is
        if target == "fake" or (target is None and dev_in):
            tree_map(_mark, out)
        return out

    def _move(self, name, args, kwargs):
        """``.to``/``.cuda``/``.cpu``: where the result lives ("fake" or "host"), and the arguments
        of the real call on the host."""
        src = args[0]
        if name == "cuda":
            dev, args, kwargs = FAKE, (src, "cpu"), {}
        elif name == "cpu":
            dev = torch.device("cpu")
        else:
            dev, rest = kwargs.get("device"), list(args[1:])
            for i, a in enumerate(rest):
                if isinstance(a, (str, torch.device)):
                    dev, rest[i] = a, "cpu"
                elif isinstance(a, torch.Tensor):
                    dev = FAKE if on_fake(a) else a.device
            if "device" in kwargs:
                kwargs["device"] = "cpu"
            args = (src, *rest)
        target = ("fake" if on_fake(src) else "host") if dev is None else ("fake" if _is_fake(dev) else "host")
        if target == "host" and on_fake(src):
            self.syncs.append((f"{name}(cpu)", _where()))
        if target == "fake" and not on_fake(src):
            self.copies.append((f"{name}(device)", _where()))
        return target, args, kwargs

    def _attribute(self, func, name, args):
        attr = getattr(getattr(func, "__self__", None), "__name__", "")
        if name == "__set__":
            func(*args)
            if attr == "data" and on_fake(args[1]):
                _mark(args[0])  # Module.to sets param.data
            return None
        out = func(*args)
        if on_fake(args[0]):
            if attr == "device":
                return FAKE
            if attr == "is_cuda":
                return True
            if attr in ("grad", "data", "T", "mT", "real") and isinstance(out, torch.Tensor):
                _mark(out)
        return out
