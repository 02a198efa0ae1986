"""Checkpoints of a certified training run, and stopping it cleanly on a signal.

A checkpoint holds everything the loop needs to continue after a finished step (box, nominal
model and optimizer, learning rate, log, epoch selection state) and a fingerprint of the run
(recipe, threat, model init, data): a checkpoint is only ever resumed by the run that wrote it.
Files are written beside their place and renamed, so a kill at any moment leaves the previous
checkpoint whole.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import threading

import torch

from . import persist
from .model import ModelSpec
from .version import __version__

FILE = "checkpoint.pt"


class TrainingInterrupted(KeyboardInterrupt):
    """A checkpointed run stopped on SIGINT/SIGTERM after saving its last finished step."""

    def __init__(self, step: int, path: str) -> None:
        super().__init__(f"interrupted after step {step}, which is saved in {path}; run the same command (or "
                         "certified_train with the same checkpoint_dir) again to resume")
        self.step, self.path = step, path


class ForeignCheckpoint(ValueError):
    """The checkpoint directory holds the checkpoint of another run."""

    def __init__(self, path: str) -> None:
        super().__init__(
            f"{path} is the checkpoint of another run (different data, model, threat, recipe or mibpcert version); "
            "remove it, or use another checkpoint directory (the command line: another --out, or --force to start afresh)"
        )
        self.path = path


def fingerprint(model: torch.nn.Module, spec: ModelSpec, X: torch.Tensor, y: torch.Tensor, threat, cfg) -> str:
    """A hash of what determines the run's bounds: the mibpcert version, recipe and certification
    options (not where or how fast it runs), frozen parameters, threat, initial weights and data."""
    h = hashlib.sha256(__version__.encode())
    keep = {k: v for k, v in cfg.to_dict().items() if k not in ("progress", "checkpoint_dir", "workers", "executor", "ray_address", "device")}
    h.update(json.dumps(keep, sort_keys=True, default=str).encode())
    h.update(json.dumps(sorted(spec.frozen)).encode())
    h.update(json.dumps(threat.describe(), sort_keys=True, default=str).encode())
    for t in (X, y, *model.state_dict().values()):
        h.update(t.detach().to("cpu", torch.float64).contiguous().numpy().tobytes())
    return h.hexdigest()


def load(path: str, fingerprint: str, device) -> dict | None:
    """The checkpoint at ``path`` for the run with ``fingerprint``; None when there is none. A
    checkpoint of another run is a :class:`ForeignCheckpoint` (it is never overwritten silently)."""
    if not os.path.exists(path):
        return None
    ck = torch.load(path, map_location=device, weights_only=False)
    if ck.get("fingerprint") != fingerprint:
        raise ForeignCheckpoint(path)
    return ck


def save(path: str, state: dict) -> None:
    """Write ``state`` (with its fingerprint) whole or not at all."""
    persist.save_atomic(path, state)


class StopRequest:
    """While active (in the main thread), SIGINT and SIGTERM only set :attr:`signal`, so the step
    in flight finishes and is saved; a second signal stops at once (KeyboardInterrupt)."""

    def __init__(self) -> None:
        self.signal: int | None = None
        self._old: dict = {}

    def __enter__(self) -> "StopRequest":
        if threading.current_thread() is threading.main_thread():
            for s in (signal.SIGINT, signal.SIGTERM):
                self._old[s] = signal.signal(s, self._handle)
        return self

    def _handle(self, signum, frame) -> None:
        if self.signal is not None:
            raise KeyboardInterrupt
        self.signal = signum

    def __exit__(self, *exc) -> None:
        for s, h in self._old.items():
            signal.signal(s, h)
