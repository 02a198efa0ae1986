"""Step bounders: one interface for every way of bounding an SGD step.

A step bounder maps the state carried between steps (today the parameter box) and one batch
with its threat region to the state after the step and a few statistics. The training loop only
sees this interface, so checkpointing, epoch selection and certificates do not depend on which
bounder ran. :class:`IntervalBounder` runs the interval step; :class:`MibpBounder` runs it too
and intersects its box with the solver bounds of the step's mixed-integer bilinear program;
:class:`AffineBounder` carries affine forms between steps and :class:`RelationalMibpBounder`
refines each affine step with the joint program tied to the forms. Each is sound when the state
it starts from contains every reachable parameter vector.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol

import torch

from .config import TrainConfig
from .encode.tighten import StepTightener
from .steps.affine import AffineUpdate, SymbolTable, affine_update, finish, params_box, params_from_box
from .steps.interval import ParamBox, StepBounds, box_widths, interval_step
from .losses import get_loss
from .model import ModelSpec
from .threats import TaskInfo, Threat


@dataclass(frozen=True)
class StepContext:
    """What a bounder needs besides the state, the batch and its region: the run's model, recipe
    and threat, this step's learning rate, and the nominal parameters before the step (a point
    of the state, used as a warm start; empty for bounders that do not ask for it)."""

    spec: ModelSpec
    cfg: TrainConfig
    info: TaskInfo
    threat: Threat
    lr: float
    theta_nominal: dict[str, torch.Tensor]


@dataclass(frozen=True)
class Batch:
    X: torch.Tensor
    y: torch.Tensor
    index: torch.Tensor | None = None  # the rows' indices in the training set, if known


class StepBounder(Protocol):
    needs_nominal: bool  # whether StepContext.theta_nominal is used (copying it costs every step)

    def bound_step(self, state: ParamBox, batch: Batch, region, ctx: StepContext) -> tuple[ParamBox, dict]:
        """The state after one SGD step on ``batch`` for every data set in ``region``, and the
        step's statistics: fields of :class:`~mibpcert.train.StepLog` (for bounders that tighten
        the interval step, its ``interval_mean_width`` and the solver counts)."""
        ...

    def restore(self, log: list, saved=None) -> None:
        """Resume after the steps of ``log`` (:class:`~mibpcert.train.StepLog`) from a checkpoint,
        with what :meth:`saved_state` returned then."""
        ...

    def saved_state(self):
        """What a checkpoint must keep besides the box to resume exactly (picklable), or None."""
        ...

    def close(self) -> None:
        """Release workers or solver processes."""
        ...

    def relational(self) -> dict | None:
        """A relational enclosure of the parameters after the last step (name -> affine forms of
        :mod:`mibpcert.interval.affine`), for bounders that keep one; else None."""
        ...


def step_intervals(state: ParamBox, region, ctx: StepContext) -> StepBounds:
    """The interval step from ``state`` over ``region`` with the run's loss and recipe."""
    cfg = ctx.cfg
    return interval_step(ctx.spec, state, region, get_loss(cfg.loss), ctx.lr, cfg.weight_decay, exact=cfg.exact_matmul)


class IntervalBounder:
    """Interval arithmetic with outward rounding through the forward pass, the loss gradient, the
    backward pass and the update (:func:`mibpcert.steps.interval.interval_step`)."""

    needs_nominal = False

    def bound_step(self, state: ParamBox, batch: Batch, region, ctx: StepContext) -> tuple[ParamBox, dict]:
        return step_intervals(state, region, ctx).params, {}

    def restore(self, log: list, saved=None) -> None:
        pass

    def saved_state(self) -> None:
        return None

    def close(self) -> None:
        pass

    def relational(self) -> None:
        return None


class MibpBounder:
    """The interval step intersected with the solver bounds of the step's program (per sample or
    joint, :class:`~mibpcert.encode.tighten.StepTightener`); a side the solver cannot bound keeps
    the interval bound and is counted."""

    needs_nominal = True

    def __init__(self, spec: ModelSpec, cfg: TrainConfig, info: TaskInfo) -> None:
        self.tightener = StepTightener(spec, cfg, info)

    def restore(self, log: list, saved=None) -> None:
        self.tightener.solved_before = any(s.solver_bounds > 0 for s in log)

    def saved_state(self) -> None:
        return None

    def bound_step(self, state: ParamBox, batch: Batch, region, ctx: StepContext) -> tuple[ParamBox, dict]:
        sb = step_intervals(state, region, ctx)
        iv_width = float(box_widths(sb.params).mean())
        box, stats = self.tightener.tighten(state, sb, region, batch.X, batch.y, ctx.lr, ctx.theta_nominal, ctx.threat)
        return box, {"interval_mean_width": iv_width, **stats}

    def close(self) -> None:
        self.tightener.close()

    def relational(self) -> None:
        return None


class AffineBounder:
    """Affine forms carried between steps (:func:`mibpcert.steps.affine.affine_update`): the state
    the loop sees is the forms' box intersected with the interval step's box. The forms start from
    the first box they see, are checkpointed with the box, and restart from the box when the loop
    hands over another one: always sound, only the relations built before are lost."""

    needs_nominal = False
    with_trace = False  # whether the affine step also bounds its intermediate quantities
    switch_symbols = True  # whether switching quantities become symbols (steps.affine)

    def __init__(self, cfg: TrainConfig) -> None:
        self.cap = cfg.affine_symbols
        self.symbols = SymbolTable()
        self.theta: dict | None = None
        self.last: ParamBox | None = None

    def bound_step(self, state: ParamBox, batch: Batch, region, ctx: StepContext) -> tuple[ParamBox, dict]:
        if self.theta is None or self.last is None or not all(
                torch.equal(state[n].lo, self.last[n].lo) and torch.equal(state[n].hi, self.last[n].hi) for n in state):
            self.symbols = SymbolTable()
            self.theta = params_from_box({n: iv.to(torch.float64) for n, iv in state.items()}, self.symbols)
        sb = step_intervals(state, region, ctx)
        cfg = ctx.cfg
        upd = affine_update(ctx.spec, self.theta, self.symbols, region, batch.index, get_loss(cfg.loss), ctx.lr,
                            cfg.weight_decay, with_trace=self.with_trace, switch_symbols=self.switch_symbols)
        after, box, stats = self._refine(state, sb, batch, region, ctx, upd)
        self.theta = finish(after, self.symbols, self.cap)
        forms = params_box(self.theta)
        self.last = {n: box[n].intersect(forms[n]) for n in state}
        return self.last, {"interval_mean_width": float(box_widths(sb.params).mean()), "symbols": self.symbols.m, **stats}

    def _refine(self, state: ParamBox, sb: StepBounds, batch: Batch, region, ctx: StepContext,
                upd: AffineUpdate) -> tuple[dict, ParamBox, dict]:
        """The step's forms before their independent parts become symbols, a box enclosing the
        step's result (the interval step's here) and extra statistics."""
        return upd.theta, sb.params, {}

    def restore(self, log: list, saved=None) -> None:
        """Continue the forms of the checkpoint (a checkpoint without them: restart from its box)."""
        self.theta, self.symbols, self.last = (None, SymbolTable(), None) if saved is None else saved

    def saved_state(self) -> tuple:
        return self.theta, self.symbols, self.last

    def close(self) -> None:
        pass

    def relational(self) -> dict | None:
        return self.theta


class RelationalMibpBounder(AffineBounder):
    """The affine step with the joint MIBP program on its forms
    (:meth:`~mibpcert.encode.tighten.StepTightener.tighten_forms`): the solver bounds what the
    affine relaxations left independent, and the updated values, with the parameters and poisoned
    inputs tied to their symbols; binaries only for the ReLUs and loss pieces whose state the (affine-tightened)
    bounds leave open. A step the solver cannot bound keeps the affine step's forms."""

    needs_nominal = True
    with_trace = True
    # the program has no constraint tying a switch symbol to its sample's state: left free, it
    # would widen the residual the solver bounds, where the independent part it replaces is tightened
    switch_symbols = False

    def __init__(self, spec: ModelSpec, cfg: TrainConfig, info: TaskInfo) -> None:
        super().__init__(cfg)
        self.tightener = StepTightener(spec, cfg, info)

    def _refine(self, state, sb, batch, region, ctx, upd):
        return self.tightener.tighten_forms(state, sb, region, batch.X, batch.y, ctx.lr, ctx.theta_nominal, ctx.threat,
                                            self.theta, upd)

    def restore(self, log: list, saved=None) -> None:
        super().restore(log, saved)
        self.tightener.solved_before = any(s.solver_bounds > 0 for s in log)

    def close(self) -> None:
        self.tightener.close()


def make_bounder(spec: ModelSpec, cfg: TrainConfig, info: TaskInfo) -> StepBounder:
    """The bounder of ``cfg.method`` (and ``cfg.relational``)."""
    if cfg.method == "mibp":
        return RelationalMibpBounder(spec, cfg, info) if cfg.relational else MibpBounder(spec, cfg, info)
    if cfg.method == "affine":
        return AffineBounder(cfg)
    return IntervalBounder()
