"""mibpcert: certified training against data poisoning.

Bounds every parameter that SGD could reach on any poisoned training set allowed by a threat
model (interval arithmetic, tightened by mixed-integer bilinear programs), then certifies
predictions over that parameter box and a test-time perturbation ball.
"""
from __future__ import annotations

import importlib

from .version import __version__

_EXPORTS = {
    "BoundsDiverged": "train",
    "CertReport": "certificates",
    "SoundnessError": "train",
    "StepLog": "train",
    "TrainConfig": "config",
    "TrainResult": "train",
    "certified_train": "train",
    "certify": "certificates",
    "describe": "model",
    "mlp": "model",
}
__all__ = sorted([*_EXPORTS, "data", "threats", "__version__"])


def __getattr__(name: str):
    """The public names, imported on first use: importing the package stays cheap (solver worker
    processes import ``mibpcert.solvers`` without torch)."""
    if name in ("data", "threats"):
        value = importlib.import_module(f".{name}", __name__)
    elif name in _EXPORTS:
        value = getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    else:
        raise AttributeError(f"module 'mibpcert' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
