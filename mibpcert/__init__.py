"""mibpcert: certified training against data poisoning.

Bounds every parameter that SGD could reach on any poisoned training set allowed by a threat
model (interval arithmetic, tightened by mixed-integer bilinear programs), then certifies
predictions over that parameter box and a test-time perturbation ball.

Names are imported on first use, so solver worker processes that only need the IR and the
backends start without importing torch.
"""
from __future__ import annotations

import importlib

_EXPORTS = {
    "BoundsDiverged": "train",
    "CertReport": "certify",
    "SoundnessError": "train",
    "StepLog": "train",
    "TrainConfig": "config",
    "TrainResult": "train",
    "certified_train": "train",
    "certify": "certify",
    "describe": "model",
    "mlp": "model",
}
_SUBMODULES = ("data", "threats")

__all__ = sorted([*_EXPORTS, *_SUBMODULES])
__version__ = "0.1.0"


def __getattr__(name: str):
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'mibpcert' has no attribute {name!r}")


def __dir__() -> list[str]:
    return __all__
