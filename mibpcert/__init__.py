"""mibpcert: certified training against data poisoning.

Bounds every parameter that SGD could reach on any poisoned training set allowed by a threat
model (interval arithmetic, tightened by mixed-integer bilinear programs), then certifies
predictions over that parameter box and a test-time perturbation ball.
"""
from . import data, threats
from .certify import CertReport, certify
from .config import TrainConfig
from .model import describe, mlp
from .train import BoundsDiverged, SoundnessError, StepLog, TrainResult, certified_train

__all__ = [
    "BoundsDiverged",
    "CertReport",
    "SoundnessError",
    "StepLog",
    "TrainConfig",
    "TrainResult",
    "certified_train",
    "certify",
    "data",
    "describe",
    "mlp",
    "threats",
]
__version__ = "0.1.0"
