"""mibpcert: certified training against data poisoning.

Bounds every parameter that SGD could reach on any poisoned training set allowed by a threat
model (interval arithmetic, tightened by mixed-integer bilinear programs), then certifies
predictions over that parameter box and a test-time perturbation ball.
"""
from __future__ import annotations

import importlib
import os

from .version import __version__

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
__all__ = sorted([*_EXPORTS, "data", "threats"])


def __getattr__(name: str):
    """Lazy access, used only in solver worker processes (see below)."""
    if name in ("data", "threats"):
        return importlib.import_module(f".{name}", __name__)
    if name in _EXPORTS:
        return getattr(importlib.import_module(f".{_EXPORTS[name]}", __name__), name)
    raise AttributeError(f"module 'mibpcert' has no attribute {name!r}")


# Solver worker processes (mibpcert.solvers.parallel) only need the IR and the backends; they run
# with this variable set so that importing the package does not import torch (seconds per worker).
# Everywhere else the public names are bound eagerly, which also keeps ``mibpcert.certify`` the
# function (not the submodule of the same name).
if not os.environ.get("MIBPCERT_SOLVER_WORKER"):
    from . import data, threats
    from .certify import CertReport, certify
    from .config import TrainConfig
    from .model import describe, mlp
    from .train import BoundsDiverged, SoundnessError, StepLog, TrainResult, certified_train
