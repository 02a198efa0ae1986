"""Certified training: the per-step loop that bounds every parameter SGD could reach.

Each step runs, on the same batch, (1) the nominal SGD step on the clean data (plain torch) and
(2) the step bounder of ``config.method`` (:mod:`mibpcert.bounders`: the interval step, or the
interval step intersected with the solver bounds of the step's mixed-integer bilinear program)
over the threat's region. The nominal parameters must lie in every box (a violation is a bug and
raises). With ``checkpoint_dir`` the state is checkpointed after every step
(:mod:`mibpcert.checkpoint`): an interrupted or killed run resumes where it stopped, and SIGINT or
SIGTERM lets the step in flight finish and be saved before the run stops.
"""
from __future__ import annotations

import contextlib
import copy
import logging
import math
import os
import time
from dataclasses import asdict, dataclass, field, fields

import torch
import torch.optim.optimizer as torch_optimizer

from . import checkpoint, persist
from .bounders import Batch, StepContext, make_bounder
from .certificates import certified_mask
from .config import TrainConfig
from .data_checks import check_training_data
from .losses import get_loss
from .steps.affine import check_size as check_affine_size
from .steps.interval import ParamBox, flatten
from .interval.tensor import Interval, check_exact_float32_matmul, outward_rounding
from .model import ModelSpec, describe
from .threats import Region, TaskInfo, Threat

log = logging.getLogger("mibpcert")


class BoundsDiverged(RuntimeError):
    """The parameter bounds became non-finite: training diverged under the bounds."""


class SoundnessError(RuntimeError):
    """A computed box excludes the nominal parameters (a bug: the bound cannot be sound)."""


@dataclass
class StepLog:
    step: int
    epoch: int
    lr: float
    mean_width: float
    max_width: float
    seconds: float
    interval_mean_width: float
    solver_bounds: int = 0
    fallback_bounds: int = 0
    solver_seconds: float = 0.0
    width_ratio: float = 1.0  # mean width of the final box / mean width of the interval box
    fallback_reasons: dict[str, int] = field(default_factory=dict)  # why bounds kept the interval value
    symbols: int = 0  # affine method: symbols of the parameter forms after the step
    licence_fallback_programs: int = 0  # MIBP: programs the backend's licence could not take, bounded by HiGHS
    skipped_objectives: int = 0  # MIBP: objectives bounded without a solver (range known, or no wider than it could improve)
    tensor_mean_width: dict[str, float] = field(default_factory=dict)  # per parameter tensor (state_dict name)


RESULT_FILE = "mibpcert.TrainResult"
REGION_CACHE_BYTES = 16 * 2**20  # training data up to this size keeps every batch's threat region (~6x its size)


@dataclass
class EpochState:
    """The box and the nominal parameters after one finished epoch (0-based ``epoch``)."""

    epoch: int
    param_bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]
    nominal: dict[str, torch.Tensor]

    def box(self) -> ParamBox:
        return {n: Interval(lo, hi, check=False) for n, (lo, hi) in self.param_bounds.items()}


@dataclass
class TrainResult:
    """Output of :func:`certified_train`.

    ``param_bounds``: {name: (lower, upper)} with the names and shapes of ``model.state_dict()``;
    ``nominal``: the model trained on the clean data with the same init, order and recipe;
    ``log``: one :class:`StepLog` per step; ``selected_epoch``: the epoch the box belongs to;
    ``diverged``: with ``select_epoch``, why training stopped early when the bounds of a later
    epoch became non-finite (the box is then the best finished epoch's), else None;
    ``relational``: affine forms of the parameters (``method="affine"`` or ``relational=True``, when
    the box is the last step's), which :func:`~mibpcert.certificates.certify` uses besides the box, else None;
    ``epochs``: per finished epoch, its box and nominal model (:class:`EpochState`), to certify or
    plot any epoch afterwards.
    """

    spec: ModelSpec
    param_bounds: dict[str, tuple[torch.Tensor, torch.Tensor]]
    nominal: torch.nn.Module
    log: list[StepLog]
    config: TrainConfig
    threat: Threat
    info: TaskInfo
    selected_epoch: int
    epoch_val_certified: list[float] = field(default_factory=list)
    diverged: str | None = None
    relational: dict | None = None
    epochs: list["EpochState"] = field(default_factory=list)

    def box(self) -> ParamBox:
        return {n: Interval(lo, hi, check=False) for n, (lo, hi) in self.param_bounds.items()}

    def save(self, path) -> None:
        """Write the whole result (box, nominal model, config, threat, log, affine forms) to
        ``path``, to certify other test data later without training again (:meth:`load`)."""
        persist.write(path, RESULT_FILE, {f.name: getattr(self, f.name) for f in fields(self)})

    @staticmethod
    def load(path, map_location="cpu") -> "TrainResult":
        """A result written by :meth:`save`, its tensors on ``map_location`` (``None``: where they
        were). The file holds pickled objects: load only files you trust."""
        return TrainResult(**persist.read(path, RESULT_FILE, map_location))

    def widths(self) -> dict[str, torch.Tensor]:
        return {n: hi - lo for n, (lo, hi) in self.param_bounds.items()}


def _batches(n: int, cfg: TrainConfig, epoch: int, device) -> list[tuple[torch.Tensor, slice | torch.Tensor]]:
    """Each batch's row indices, with what selects its rows: a slice when the order is the given
    one (a view of the data, no copy), else the indices."""
    if cfg.shuffle:
        g = torch.Generator().manual_seed(cfg.seed * 100003 + epoch)
        order = torch.randperm(n, generator=g).to(device)
        return [(order[i : i + cfg.batch_size],) * 2 for i in range(0, n, cfg.batch_size)]
    order = torch.arange(n, device=device)
    return [(order[i : i + cfg.batch_size], slice(i, i + cfg.batch_size)) for i in range(0, n, cfg.batch_size)]


def _check_description(spec: ModelSpec, model: torch.nn.Module, X: torch.Tensor) -> None:
    """What is certified must be what torch runs: the described network reproduces ``model(X)``."""
    with torch.no_grad():
        out = model(X)
        ref = spec.forward(model.state_dict(), X)
    tol = 64 * torch.finfo(X.dtype).eps  # both run the same kernels: equal up to a few ulps at most
    if out.shape != ref.shape or not bool(((out - ref).abs() <= tol * (1 + ref.abs())).all()):
        gap = float((out - ref).abs().max()) if out.shape == ref.shape else float("nan")
        raise TypeError(
            f"the model's forward pass does not compute the network mibpcert read from it ({_describe_layers(spec)}): "
            f"outputs differ by up to {gap:.3g} on the training inputs; only plain Sequential ReLU MLPs are supported"
        )


def _check_optimizer_hooks() -> None:
    """Global optimizer hooks change every SGD step torch takes; the bounds cannot see them."""
    if any(getattr(torch_optimizer, name, None) for name in ("_global_optimizer_pre_hooks", "_global_optimizer_post_hooks")):
        raise TypeError("global optimizer hooks are registered (torch.optim.optimizer.register_optimizer_step_*_hook); "
                        "they change every SGD step and the bounds cannot see them: remove them before certifying")


def _describe_layers(spec: ModelSpec) -> str:
    return " -> ".join(f"Linear({d.in_features}, {d.out_features})" + (" -> ReLU" if d.relu else "") for d in spec.layers)


def _step_numbers(flat: torch.Tensor, p: torch.Tensor, sign: torch.Tensor, sizes: list[int],
                  tol: float) -> tuple[bool, float, float, float, list[float]]:
    """Everything a step checks and logs, in one transfer to the host: whether every width of the
    stacked flat box ``flat`` (2, P) is finite, the largest and the mean width, how far the nominal
    parameters ``p`` (P,) lie outside the box widened by ``tol * (1 + |p|)`` (> 0: outside
    somewhere; the sign of a difference of two floats is exact; ``sign`` is [[-1], [1]]), and the
    mean width of each tensor (``sizes``, in order). Means are sums divided on the host, as
    ``Tensor.mean`` does."""
    w = torch.sub(*flat.unbind(0)[::-1])  # (P,): hi - lo
    lim = flat if tol == 0 else torch.addcmul(flat, sign, tol * (1 + p.abs()))
    outside = ((p - lim) * sign).amax()  # max over entries of lo - p and p - hi
    vals = torch.stack([*torch.aminmax(w)[::-1], outside, w.sum()] + [c.sum() for c in w.split(sizes)]).tolist()
    finite = math.isfinite(vals[0]) and math.isfinite(vals[1])  # a NaN makes the maximum NaN
    return finite, vals[0], vals[3] / w.numel(), vals[2], [s / n for s, n in zip(vals[4:], sizes)]


def _outside_error(flat: torch.Tensor, p: torch.Tensor, names: list[str], sizes: list[int], step: int, tol: float) -> SoundnessError:
    """The error for a box that excludes the nominal parameters ``p``: which tensor, how many entries."""
    slack = tol * (1 + p.abs())
    bad = (p < flat[0] - slack) | (p > flat[1] + slack)
    first = int(bad.nonzero()[0])
    name = names[int((torch.tensor(sizes).cumsum(0) <= first).sum())]
    return SoundnessError(
        f"step {step}: the box of {name!r} excludes the nominal parameters at {int(bad.sum())} entries; "
        "this is a bug in the bounds, please report it"
    )


def certified_train(
    model: torch.nn.Module,
    X: torch.Tensor,
    y: torch.Tensor,
    threat: Threat,
    config: TrainConfig | dict | None = None,
    X_val: torch.Tensor | None = None,
    y_val: torch.Tensor | None = None,
) -> TrainResult:
    """Train ``model`` (its current weights are the init) with SGD on ``(X, y)`` and bound every
    parameter that training on any poisoned data set allowed by ``threat`` could reach. The data
    may be tensors or anything ``torch.as_tensor`` takes (numpy arrays); ``config`` a
    :class:`TrainConfig`, a dict of its fields, or None (the defaults)."""
    cfg = TrainConfig.of(config)
    if not isinstance(threat, Threat):
        raise TypeError(f"threat must be a mibpcert.threats model, got {type(threat).__name__}")
    spec = describe(model)
    device, dtype = cfg.torch_device(), cfg.torch_dtype
    check_exact_float32_matmul(dtype, device)
    X, y, info = check_training_data(spec, X, y, cfg.loss, cfg.batch_size, dtype, device)
    cfg = cfg.resolved(X.shape[0])
    threat.validate(info)
    if cfg.select_epoch:
        if X_val is None or y_val is None:
            raise ValueError("TrainConfig.select_epoch needs a validation set: pass X_val and y_val")
        X_val, y_val, _ = check_training_data(spec, X_val, y_val, cfg.loss, cfg.batch_size, dtype, device, what="validation")
    _check_optimizer_hooks()
    model_dtypes = {p.dtype for p in model.parameters()}
    if model_dtypes != {dtype}:
        log.warning("the model's parameters are %s; certifying SGD in %s (TrainConfig.dtype) from these initial "
                    "values: the certificate is about %s training", ", ".join(sorted(map(str, model_dtypes))),
                    dtype, dtype)
    nominal = copy.deepcopy(model).to(device=device, dtype=dtype)
    _check_description(spec, nominal, X)
    trainable = [p for p in nominal.parameters() if p.requires_grad]
    if not trainable:
        raise ValueError(
            "every parameter of the model has requires_grad=False: nothing would be trained (a TrainResult's "
            "nominal model is returned frozen; call .requires_grad_(True) on it to train it further)"
        )
    opt = torch.optim.SGD(trainable, lr=cfg.lr, weight_decay=cfg.weight_decay)
    if cfg.method == "affine" or cfg.relational:
        check_affine_size(spec, X.shape[0], spec.in_features, cfg.affine_symbols, cfg.batch_size)
    loss = get_loss(cfg.loss)
    state = nominal.state_dict()
    box: ParamBox = {n: Interval.point(state[n].detach().clone()) for n in spec.param_names}
    steps_log: list[StepLog] = []
    lr = cfg.lr
    start_step = 0
    epochs_done = 0
    best = None  # (validation score, epoch)
    history: list[EpochState] = []
    val_scores: list[float] = []

    n = X.shape[0]
    n_batches = (n + cfg.batch_size - 1) // cfg.batch_size
    total = cfg.epochs * n_batches
    ckpt_path = os.path.join(cfg.checkpoint_dir, checkpoint.FILE) if cfg.checkpoint_dir else None
    fingerprint = checkpoint.fingerprint(model, spec, X, y, threat, cfg) if ckpt_path else ""
    ck = checkpoint.load(ckpt_path, fingerprint, device) if ckpt_path else None
    bounder = make_bounder(spec, cfg, info)  # after the checkpoint check: another run's checkpoint starts no workers
    if ck is not None:
        start_step = ck["step"]
        box = {n: Interval(lo, hi, check=False) for n, (lo, hi) in ck["box"].items()}
        nominal.load_state_dict(ck["nominal"])
        opt.load_state_dict(ck["optimizer"])
        lr = ck["lr"]
        steps_log = [StepLog(**d) for d in ck["log"]]
        bounder.restore(steps_log, ck.get("bounder"))
        best, val_scores = ck["best"], ck["val_scores"]
        history = [EpochState(**d) for d in ck["history"]]
        epochs_done = ck["epochs_done"]
        log.warning("resuming from step %d of %d (checkpoint %s)", start_step, total, ckpt_path)

    def save_checkpoint() -> None:
        checkpoint.save(ckpt_path, dict(
            fingerprint=fingerprint, step=step, box={k: (v.lo, v.hi) for k, v in box.items()}, nominal=nominal.state_dict(),
            optimizer=opt.state_dict(), lr=lr, log=[asdict(s) for s in steps_log], best=best, val_scores=val_scores,
            history=[asdict(h) for h in history], epochs_done=epochs_done, bounder=bounder.saved_state()))

    tol = 0.0 if cfg.outward_rounding else (1e-12 if dtype == torch.float64 else 1e-5)  # rounding off: not sound
    # per step: in the given order the batches are row views made once for every epoch (contiguous,
    # as the copies X[idx] of a shuffled order are), and the check and log read the nominal
    # parameters (``state`` aliases them: SGD and a resume update them in place; flat views too)
    X, y = X.contiguous(), y.contiguous()
    fixed = None if cfg.shuffle else [(idx, X[rows], y[rows]) for idx, rows in _batches(n, cfg, 0, device)]
    # the same batches in every epoch: their regions (a function of the batch alone), with what the
    # interval step caches on them (stacked bounds, midpoints, radii), are made once for a small data set
    regions: dict[int, Region] | None = {} if fixed is not None and X.nbytes <= REGION_CACHE_BYTES else None
    names = spec.param_names
    nominal_params = [state[k] for k in names]
    flat_params = [t.view(-1) for t in nominal_params] if all(t.is_contiguous() for t in nominal_params) else None
    sizes = [t.numel() for t in nominal_params]
    sign = torch.tensor([[-1.0], [1.0]], dtype=dtype, device=device)
    bar = None
    if cfg.progress:
        from tqdm.auto import tqdm

        bar = tqdm(total=total, initial=start_step, desc="certified training", unit="step", disable=None)  # terminals only
    step = 0
    diverged = None
    stop = checkpoint.StopRequest() if ckpt_path else contextlib.nullcontext()
    try:
        with outward_rounding(cfg.outward_rounding), stop:
            for epoch in range(cfg.epochs):
                for b, (idx, Xb, yb) in enumerate(fixed or ((i, X[r], y[r]) for i, r in _batches(n, cfg, epoch, device))):
                    step += 1
                    if step <= start_step:
                        continue
                    t0 = time.perf_counter()
                    theta_before = ({k: v.detach().clone() for k, v in nominal.state_dict().items()}
                                    if bounder.needs_nominal else {})
                    # nominal SGD step on the clean batch
                    opt.zero_grad()
                    loss.mean_value(nominal(Xb), yb).backward()
                    opt.step()
                    # the bounder's step over the threat region
                    region = regions[b] if regions is not None and b in regions else threat.region(Xb, yb, info)
                    if regions is not None:
                        regions[b] = region
                    ctx = StepContext(spec, cfg, info, threat, lr, theta_before)
                    new_box, stats = bounder.bound_step(box, Batch(Xb, yb, idx), region, ctx)
                    flat = flatten(new_box, names).stacked
                    p = torch.cat(flat_params or [t.reshape(-1) for t in nominal_params])
                    finite, max_w, mean_w, outside, tensor_w = _step_numbers(flat, p, sign, sizes, tol)
                    if not finite:
                        prev = ", ".join(f"{s.step}:{s.max_width:.3g}" for s in steps_log[-5:])
                        raise BoundsDiverged(
                            f"parameter bounds became non-finite at step {step} (epoch {epoch}): training diverged "
                            f"under the bounds; max widths of the last steps: [{prev}]. Lower lr or eps."
                        )
                    if outside > 0:
                        raise _outside_error(flat, p, names, sizes, step, tol)
                    box = new_box
                    iv_width = stats.pop("interval_mean_width", mean_w)  # bounders that tighten report it
                    steps_log.append(
                        StepLog(
                            step=step, epoch=epoch, lr=lr, mean_width=mean_w, max_width=max_w,
                            seconds=time.perf_counter() - t0, interval_mean_width=iv_width,
                            width_ratio=mean_w / iv_width if iv_width > 0 else 1.0,
                            tensor_mean_width=dict(zip(names, tensor_w)), **stats,
                        )
                    )
                    if step == start_step + 1:
                        _estimate(steps_log[-1].seconds, step, total, cfg)
                    if bar is not None:
                        bar.update(1)
                        bar.set_postfix(mean_w=f"{mean_w:.2e}", max_w=f"{max_w:.2e}")
                    if ckpt_path:
                        save_checkpoint()
                        if stop.signal is not None:
                            raise checkpoint.TrainingInterrupted(step, ckpt_path)
                if epoch < epochs_done:
                    continue
                if cfg.select_epoch:
                    score = float(certified_mask(spec, box, X_val, y_val, cfg.val_eps, exact=cfg.exact_matmul).double().mean())
                    val_scores.append(score)
                    if best is None or score > best[0]:
                        best = (score, epoch)
                history.append(EpochState(epoch, {k: (v.lo.detach().clone(), v.hi.detach().clone()) for k, v in box.items()},
                                          {k: v.detach().clone() for k, v in nominal.state_dict().items()}))
                lr = lr * cfg.lr_decay
                for g in opt.param_groups:
                    g["lr"] = lr
                epochs_done = epoch + 1
                if ckpt_path:
                    save_checkpoint()
    except BoundsDiverged as e:
        if not (cfg.select_epoch and best is not None):
            raise
        diverged = str(e)
        log.warning("%s Keeping the box of epoch %d, the best finished epoch on the validation set.", e, best[1])
    finally:
        bounder.close()
        if bar is not None:
            bar.close()
    _warn_fallbacks(steps_log)
    relational = bounder.relational()

    selected = cfg.epochs - 1
    bounds = {k: (v.lo.detach(), v.hi.detach()) for k, v in box.items()}
    if cfg.select_epoch and best is not None:
        selected = best[1]
        bounds = history[selected].param_bounds
        nominal.load_state_dict(history[selected].nominal)
    if selected != cfg.epochs - 1 or diverged is not None:
        relational = None  # the forms describe the last step, not the box returned
    nominal.requires_grad_(False)
    return TrainResult(spec, bounds, nominal, steps_log, cfg, threat, info, selected, val_scores, diverged, relational,
                       history)


LONG_RUN_SECONDS = 60.0


def _estimate(seconds: float, step: int, total: int, cfg: TrainConfig) -> None:
    """After the first step of a run (or of a resumed run), say how long the rest will take at
    this step's rate when that is long, so that a slow configuration is known before its cost."""
    rest = (total - step) * seconds
    if rest < LONG_RUN_SECONDS:
        return
    slower = " (later steps are often slower: wider boxes make larger programs)" if cfg.method == "mibp" else ""
    log.warning("step %d of %d took %s; the remaining %d steps will take about %s at this rate%s; Ctrl-C stops after "
                "the step in flight%s", step, total, duration(seconds), total - step, duration(rest), slower,
                " and saves it, the same command resumes" if cfg.checkpoint_dir else "")


def duration(seconds: float) -> str:
    """``seconds`` as '42 s', '3 min 5 s' or '2 h 14 min'."""
    s = int(round(seconds))
    if s < 60:
        return f"{seconds:.1f} s" if seconds < 10 else f"{s} s"
    if s < 3600:
        return f"{s // 60} min {s % 60} s"
    return f"{s // 3600} h {s % 3600 // 60} min"


def fallback_counts(steps: list[StepLog]) -> tuple[int, int, dict[str, int]]:
    """Bounds (objective sides) that came from the solver, that kept the interval bound, and the
    reasons of the latter, over all ``steps``."""
    reasons: dict[str, int] = {}
    for s in steps:
        for k, v in s.fallback_reasons.items():
            reasons[k] = reasons.get(k, 0) + v
    return sum(s.solver_bounds for s in steps), sum(s.fallback_bounds for s in steps), reasons


def fallback_note(solved: int, fell_back: int, reasons: dict[str, int]) -> tuple[str, str | None]:
    """One line saying where a run's bounds came from, and a warning when most fell back."""
    line = f"{solved} from the solver, {fell_back} kept the interval bound"
    if reasons:
        line += " (" + ", ".join(f"{k.replace('_', ' ')} {v}" for k, v in sorted(reasons.items())) + ")"
    warning = None
    if fell_back > solved:
        warning = (f"WARNING: most solver bounds ({fell_back} of {solved + fell_back}) fell back to the interval "
                   "bound; this box is mostly the interval method's")
    return line, warning


def _warn_fallbacks(steps: list[StepLog]) -> None:
    line, warning = fallback_note(*fallback_counts(steps))
    if warning:
        log.warning("%s: %s", warning, line)
