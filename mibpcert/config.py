"""The one validated configuration object of a certified training run."""
from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from dataclasses import dataclass

import torch

from .losses import get_loss

METHODS = ("interval", "mibp", "affine")
MODES = ("auto", "per_sample", "joint")
# mode="auto" picks "joint" when the whole training set is one batch of at most this many samples.
# Measured (benchmarks/results/backends.md, HiGHS LP): Moons-100 full batch, 2-10-1, joint 0.93x the
# interval width at 5.1 s/epoch against per_sample 0.998x at 3.6 s (MILP: 11.8 s); a joint program of
# 100 samples later in training (mini-batch benchmark, 2-20-1) took 1,800 s per step.
AUTO_JOINT_MAX_BATCH = 100
RELAX = ("milp", "lp")
EXECUTORS = ("local", "ray")  # mibpcert.solvers.executors.make_executor
DTYPES = {"float64": torch.float64, "float32": torch.float32}


def _parsed_device(device: str) -> str | None:
    """The device type torch reads from ``device`` ('cpu:0' is 'cpu'), None if it reads none."""
    try:
        return torch.device(device).type
    except RuntimeError:
        return None


@dataclass
class TrainConfig:
    """SGD recipe and certification options.

    Training: ``epochs`` passes over the data in the given order (``shuffle=True`` uses, in epoch
    e, ``torch.randperm(N, generator=torch.Generator().manual_seed(seed * 100003 + e))``), consecutive batches of ``batch_size`` (the last partial batch kept), the
    mean ``loss`` per batch, step ``lr`` multiplied by ``lr_decay`` after every epoch, L2
    ``weight_decay`` as in ``torch.optim.SGD``.

    Certification: ``method="interval"`` bounds every step with intervals; ``"mibp"`` also solves
    the step's mixed-integer bilinear program with ``backend`` in ``mode`` (``"per_sample"``,
    ``"joint"``, or ``"auto"``: joint for a full batch of at most ``AUTO_JOINT_MAX_BATCH`` samples
    and with ``relational=True``, else per_sample; see :meth:`resolved`) and intersects. ``relax``/``partitions``: how relaxing backends treat binaries and
    bilinear terms; ``pwl_pieces``: segments of the sigmoid enclosure (BCE); ``time_limit`` per
    objective (seconds), ``threads`` per solve, ``workers`` parallel solves on the ``executor``:
    ``"local"`` (a pool of ``workers`` processes, reused by every step; ``workers=1`` solves in
    this process) or ``"ray"`` (Ray tasks: a local Ray instance with ``workers`` CPUs, or the
    running cluster at ``ray_address``, e.g. ``"auto"`` or ``"ray://host:10001"``, whose steps are
    cut into ``workers`` parts; needs ``pip install 'mibpcert[ray]'``). The bounds are the same
    bit for bit for every executor and worker count (docs/scaling.md).
    ``"affine"`` carries the parameters as affine forms from step to step (relations between
    parameters and shared symbols for each poisoned sample: the poisoned training set is fixed
    before training) and intersects their box with the interval step's; ``affine_symbols`` caps the
    number of symbols (order reduction beyond it). ``relational=True`` (with ``method="mibp"``,
    ``mode="joint"``) runs the MIBP step on those forms: the program's parameters and poisoned
    inputs are tied to their symbols, and the solver bounds what the affine step's relaxations
    left independent, so the state stays relational (:mod:`mibpcert.encode.relational_step`).
    ``select_epoch``: return the epoch whose box certifies most of the validation set passed to
    :func:`certified_train` (at ``val_eps``); the choice only looks at bounds, so it stays sound.
    ``outward_rounding=False`` drops the floating-point error terms of the interval path (faster,
    for measurements only: the bounds are then not guaranteed to contain the computed training).
    """

    epochs: int = 1
    lr: float = 0.1
    batch_size: int = 100
    loss: str = "bce"
    weight_decay: float = 0.0
    lr_decay: float = 1.0
    shuffle: bool = False
    seed: int = 0
    method: str = "interval"
    backend: str = "highs"
    mode: str = "auto"
    relax: str = "lp"
    partitions: int = 1
    pwl_pieces: int = 4
    time_limit: float | None = 10.0
    step_time_limit: float | None = None
    threads: int = 1
    workers: int = 1
    executor: str = "local"
    ray_address: str | None = None
    select_epoch: bool = False
    val_eps: float = 0.0
    device: str = "cpu"
    dtype: str = "float64"
    outward_rounding: bool = True
    exact_matmul: bool = False
    affine_symbols: int = 2000
    relational: bool = False
    checkpoint_dir: str | None = None
    progress: bool = False

    def __post_init__(self) -> None:
        def positive_int(name: str) -> None:
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v <= 0:
                raise ValueError(f"TrainConfig.{name} must be a positive integer, got {v!r}")

        for name in ("epochs", "batch_size", "threads", "workers", "partitions", "pwl_pieces", "affine_symbols"):
            positive_int(name)
        for name in ("lr", "weight_decay", "lr_decay", "val_eps"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0 or v == float("inf"):
                raise ValueError(f"TrainConfig.{name} must be a finite non-negative number, got {v!r}")
        for name in ("shuffle", "select_epoch", "outward_rounding", "exact_matmul", "progress", "relational"):
            v = getattr(self, name)
            if not isinstance(v, bool):
                raise ValueError(f"TrainConfig.{name} must be true or false, got {v!r} ({type(v).__name__})")
        if isinstance(self.seed, bool) or not isinstance(self.seed, int):
            raise ValueError(f"TrainConfig.seed must be an integer, got {self.seed!r}")
        for name in ("backend", "device"):
            if not isinstance(getattr(self, name), str):
                raise ValueError(f"TrainConfig.{name} must be a string, got {getattr(self, name)!r}")
        if self.checkpoint_dir is not None and not isinstance(self.checkpoint_dir, (str, os.PathLike)):
            raise ValueError(f"TrainConfig.checkpoint_dir must be a path string or None, got {self.checkpoint_dir!r}")
        if self.lr == 0:
            raise ValueError("TrainConfig.lr must be positive")
        get_loss(self.loss)
        if self.method not in METHODS:
            raise ValueError(f"TrainConfig.method must be one of {METHODS}, got {self.method!r}")
        if self.mode not in MODES:
            raise ValueError(f"TrainConfig.mode must be one of {MODES}, got {self.mode!r}")
        if self.relax not in RELAX:
            raise ValueError(f"TrainConfig.relax must be one of {RELAX}, got {self.relax!r}")
        if self.executor not in EXECUTORS:
            raise ValueError(f"TrainConfig.executor must be one of {EXECUTORS}, got {self.executor!r}")
        if self.ray_address is not None and (not isinstance(self.ray_address, str) or not self.ray_address.strip()):
            raise ValueError(f"TrainConfig.ray_address must be a Ray address string or None, got {self.ray_address!r}")
        if self.ray_address is not None and self.executor != "ray":
            raise ValueError(f"TrainConfig.ray_address={self.ray_address!r} needs executor='ray', got executor={self.executor!r}")
        if self.relational and (self.method != "mibp" or self.mode == "per_sample"):
            raise ValueError(
                f"TrainConfig.relational=True runs the joint MIBP program on affine forms: it needs method='mibp' and "
                f"mode='joint' or 'auto', got method={self.method!r}, mode={self.mode!r} (method='affine' alone carries forms "
                "without a solver)"
            )
        if self.dtype not in DTYPES:
            raise ValueError(f"TrainConfig.dtype must be one of {tuple(DTYPES)}, got {self.dtype!r}")
        if self.method in ("mibp", "affine") and self.dtype != "float64":
            raise ValueError(
                f"TrainConfig: method={self.method!r} needs dtype='float64', got {self.dtype!r}: its bounds account for "
                "float64 rounding only and cannot contain a lower-precision SGD step; use float64, or "
                "method='interval' (whose outward rounding works in any precision) for float32"
            )
        if self.device != "auto" and _parsed_device(self.device) not in ("cpu", "cuda"):
            raise ValueError(f"TrainConfig.device must be 'cpu', 'cuda', 'cuda:N' or 'auto', got {self.device!r}")
        for name in ("time_limit", "step_time_limit"):
            v = getattr(self, name)
            if v is not None and (isinstance(v, bool) or not isinstance(v, (int, float)) or not v > 0):
                raise ValueError(f"TrainConfig.{name} must be positive or None, got {v!r}")

    def resolved(self, n_train: int) -> "TrainConfig":
        """This config with ``mode="auto"`` replaced by the mode it means for ``n_train`` samples."""
        if self.mode != "auto":
            return self
        joint = self.relational or (self.batch_size >= n_train and n_train <= AUTO_JOINT_MAX_BATCH)
        return dataclasses.replace(self, mode="joint" if joint else "per_sample")

    @property
    def torch_dtype(self) -> torch.dtype:
        return DTYPES[self.dtype]

    def torch_device(self) -> torch.device:
        """The device of the run's tensors (``"auto"``: CUDA when available); a CUDA device that
        this machine lacks is a ``ValueError`` before any work."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        dev = torch.device(self.device)
        if dev.type == "cuda" and not torch.cuda.is_available():
            raise ValueError(f"TrainConfig.device={self.device!r} but CUDA is not available; use 'cpu' or 'auto'")
        if dev.type == "cuda" and dev.index is not None and dev.index >= torch.cuda.device_count():
            raise ValueError(f"TrainConfig.device={self.device!r} but this machine has {torch.cuda.device_count()} CUDA "
                             f"device(s) (cuda:0 to cuda:{torch.cuda.device_count() - 1})")
        return dev

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @staticmethod
    def of(config: "TrainConfig | Mapping | None") -> "TrainConfig":
        """A config from a TrainConfig, a mapping of its fields (validated like the constructor's
        arguments), or None (the defaults)."""
        if config is None:
            return TrainConfig()
        if isinstance(config, TrainConfig):
            return config
        if isinstance(config, Mapping):
            fields = [f.name for f in dataclasses.fields(TrainConfig)]
            unknown = sorted(str(k) for k in config if k not in fields)
            if unknown:
                raise ValueError(f"unknown TrainConfig field(s) {unknown}; the fields are {fields}")
            return TrainConfig(**config)
        raise TypeError(f"config must be a TrainConfig or a dict of its fields, got {type(config).__name__}")
