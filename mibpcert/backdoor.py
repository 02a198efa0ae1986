"""Test-time backdoor certificate for a :class:`~mibpcert.threats.SharedTrigger` threat.

After certified training against a shared trigger, a triggered test point is ``x + delta`` with
``delta`` nonzero only on the trigger's mask and ``|delta_f| <= eps`` (the attacker's pattern is
one of these). Its logits are bounded over the parameter box and the box ``x ± eps·mask`` by the
interval forward pass; a point is *safe* when no parameter vector in the box and no such trigger
can make the model predict the target class:

* one logit (binary, torch's rule ``pred = z > 0``): target 1 is excluded when ``z <= 0``
  everywhere (upper bound ``<= 0``), target 0 when ``z > 0`` everywhere (lower bound ``> 0``);
* several logits: when some class ``j != target`` has ``z_j - z_target > 0`` everywhere
  (``argmax`` then never returns the target). The difference is bounded through the last layer,
  ``(W_j - W_t) a + (b_j - b_t)`` with the shared activation ``a`` (as in
  :func:`mibpcert.certificates.margin_bounds`).

Without a target (clean-label trigger) a point is safe when its prediction is provably correct on
the trigger box. The attack success rate, measured on the eligible points (clean label different
from the target; every point without a target), is at most the fraction of eligible points that
are not safe: a sound upper bound for every model training can reach and every trigger in the
threat's set.
"""
from __future__ import annotations

from dataclasses import dataclass

import torch

from .certificates import logit_differences, nominal_predictions
from .data_checks import check_test_data
from .steps.interval import forward
from .interval.tensor import Interval, outward_rounding
from .threats import Both, GlobalBudget, SharedTrigger, Threat, Union


@dataclass
class BackdoorReport:
    """``safe``: (N,) provably not flipped to the target by any trigger; ``eligible``: points
    counted in the success rate; ``logits``: bounds on the triggered logits (N, C);
    ``success_upper``: upper bound on the attack success rate over the eligible points;
    ``nominal_success``: the success rate of the trigger-free nominal model's prediction on the
    clean points (how many eligible points it already gives the target), for reference."""

    safe: torch.Tensor
    eligible: torch.Tensor
    logits: Interval
    target: int | None
    eps: float
    success_upper: float
    nominal_success: float
    mask: tuple[int, ...] = ()  # the trigger's features (0/1 per feature)

    @property
    def certified_fraction(self) -> float:
        n = int(self.eligible.sum())
        return float((self.safe & self.eligible).sum()) / n if n else 1.0

    def summary(self) -> dict:
        return {
            "target": self.target,
            "trigger_eps": self.eps,
            "mask": list(self.mask),
            "eligible": int(self.eligible.sum()),
            "certified_not_flipped": self.certified_fraction,
            "attack_success_upper": self.success_upper,
            "nominal_success_clean": self.nominal_success,
        }


def triggers_in(threat: Threat) -> list[SharedTrigger]:
    """The shared triggers a threat contains (itself, parts of a union or combination, the threat
    under a global budget), in order, so each can be certified at test time."""
    if isinstance(threat, SharedTrigger):
        return [threat]
    if isinstance(threat, Union):
        return [t for p in threat.parts for t in triggers_in(p)]
    if isinstance(threat, Both):
        return triggers_in(threat.a) + triggers_in(threat.b)
    if isinstance(threat, GlobalBudget):
        return triggers_in(threat.threat)
    return []


def _target_excluded(spec, box, x: Interval, logits: Interval, post, target: int) -> torch.Tensor:
    """True where no model in the box predicts ``target`` for any input in ``x``."""
    if spec.out_features == 1:
        z = logits[:, 0]
        ok = (z.hi <= 0) if target == 1 else (z.lo > 0)
        return ok & z.is_finite()
    ref = torch.full((logits.shape[0],), target, dtype=torch.long, device=logits.device)
    m = logit_differences(spec, box, x, post, ref)  # z_t - z_j: some j with z_j - z_t > 0 everywhere
    others = torch.ones(spec.out_features, dtype=torch.bool, device=m.lo.device)
    others[target] = False
    finite = m.is_finite().all(dim=1) & logits.is_finite().all(dim=1)
    return finite & (m.hi[:, others] < 0).any(dim=1)


def backdoor_certificate(result, X_test: torch.Tensor, y_test: torch.Tensor, trigger: SharedTrigger,
                         target: int | None = None) -> BackdoorReport:
    """Bound the effect of the trigger set of ``trigger`` on a test set for every model in
    ``result``'s parameter box (see the module docstring). ``target`` defaults to the trigger's."""
    if not isinstance(trigger, SharedTrigger):
        raise TypeError(f"backdoor_certificate needs a SharedTrigger, got {type(trigger).__name__}")
    spec, cfg = result.spec, result.config
    X, y, task, num_classes = check_test_data(result, X_test, y_test)
    if task == "regression":
        raise ValueError("backdoor_certificate needs a classification model")
    if len(trigger.mask) != X.shape[1]:
        raise ValueError(f"the trigger mask has {len(trigger.mask)} entries but the test data has {X.shape[1]} features")
    target = trigger.target if target is None else target
    if target is not None and (isinstance(target, bool) or not isinstance(target, int) or not 0 <= target < num_classes):
        raise ValueError(f"backdoor_certificate: target must be a class index in [0, {num_classes - 1}], got {target!r}")
    box = result.box()
    with outward_rounding(cfg.outward_rounding):
        xb = trigger.poisoned_box(X)
        pre, post = forward(spec, box, xb, exact=cfg.exact_matmul)
        logits = pre[-1]
        if target is not None:
            safe = _target_excluded(spec, box, xb, logits, post, target)
            eligible = y.long() != target
        else:  # no target: the prediction must stay correct on the trigger box
            safe = _correct_on_box(spec, box, xb, logits, post, y)
            eligible = torch.ones_like(safe)
    pred = nominal_predictions(result, X)
    n = int(eligible.sum())
    if target is not None:
        nominal = float(((pred == target) & eligible).sum()) / n if n else 0.0
    else:
        nominal = float(((pred != y.long()) & eligible).sum()) / n if n else 0.0
    upper = float((~safe & eligible).sum()) / n if n else 0.0
    return BackdoorReport(safe, eligible, logits, target, trigger.eps, upper, nominal, tuple(int(m) for m in trigger.mask))


def _correct_on_box(spec, box, x: Interval, logits: Interval, post, y: torch.Tensor) -> torch.Tensor:
    """True where every model in the box predicts the clean label on every input in ``x``."""
    if spec.out_features == 1:
        z = logits[:, 0]
        ok = torch.where(y > 0.5, z.lo > 0, z.hi <= 0)
        return ok & z.is_finite()
    # the label is predicted when z_y - z_j > 0 for every j != y
    yi = y.long()
    m = logit_differences(spec, box, x, post, yi)
    self_mask = torch.nn.functional.one_hot(yi, spec.out_features).bool()
    out = torch.where(self_mask, True, m.lo > 0).all(dim=1)
    return out & m.is_finite().all(dim=1) & logits.is_finite().all(dim=1)
