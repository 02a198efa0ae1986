"""The MIBP soundness setting (formerly the helpers of ``test_mibp_soundness.py``): tiny ReLU nets,
two SGD steps of two samples (programs small enough for Gurobi's size-limited licence), the cases
with ambiguous ReLUs, ``certified_train`` runs, the step programs the MIBP path builds, and the
concrete attack runs (``helpers.attacks``)."""
from __future__ import annotations

import functools

import pytest
import torch

from mibpcert import TrainConfig, certified_train, describe, mlp
from mibpcert.data_checks import check_training_data
from mibpcert.encode.training_step import StepSetting, TraceBounds, joint_program, sample_program
from mibpcert.losses import get_loss
from mibpcert.steps.interval import interval_step
from mibpcert.solvers import SolverUnavailable
from mibpcert.threats import Both, LabelFlip, LabelNoise, LinfFeatures

from .attacks import Budget, Poisoner, param_direction, sgd_train

F64 = torch.float64
TASK = {"bce": "binary", "hinge": "binary", "ce": "multiclass", "mse": "regression"}
LR = 0.5
N, BATCH = 4, 2  # two SGD steps of two samples: programs stay tiny (Gurobi's size-limited licence)


def make_data(task: str, n: int, seed: int, d: int = 2):
    g = torch.Generator().manual_seed(seed)
    X = torch.randn(n, d, dtype=F64, generator=g)
    if task == "binary":
        y = (X[:, 0] + 0.5 * X[:, 1] > 0).to(F64)
    elif task == "multiclass":
        y = torch.bucketize(torch.atan2(X[:, 1], X[:, 0]), torch.tensor([-1.0, 1.2], dtype=F64)).to(F64)
    else:
        y = (X[:, :1] - 0.5 * X[:, 1:2] + 0.1 * torch.randn(n, 1, dtype=F64, generator=g))
    return X, y


def budget(task: str, **kw) -> Budget:
    return Budget(task=task, num_classes={"binary": 2, "multiclass": 3}.get(task), **kw)


def run_mibp(model, X, y, threat, loss, backend="highs", mode="joint", relax="milp", epochs=1, lr=LR,
             batch_size=BATCH, **kw):
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, loss=loss, method="mibp", backend=backend,
                      mode=mode, relax=relax, **kw)
    try:
        return certified_train(model, X, y, threat, cfg)
    except SolverUnavailable as e:  # a missing package or a too small licence: fail, never skip
        pytest.fail(f"{backend} cannot run this check: {e}")


def run_interval(model, X, y, threat, loss, epochs=1, lr=LR, batch_size=BATCH, **kw):
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch_size, loss=loss, method="interval", **kw)
    return certified_train(model, X, y, threat, cfg)


def build_step_programs(model, box, X, y, threat, loss, lr, weight_decay=0.0, pieces=4, mode="joint"):
    """The step programs the MIBP path builds for one batch ``(X, y)`` starting from ``box``
    (joint: one program; per_sample: one per sample and region), with the nominal parameters of
    ``model`` as warm start. Returns ``(programs, interval StepBounds)``."""
    spec = describe(model)
    X, y, info = check_training_data(spec, X, y, loss, X.shape[0], F64, "cpu")
    threat.validate(info)
    region = threat.region(X, y, info)
    sb = interval_step(spec, box, region, loss, lr, weight_decay)
    nominal = {k: v.detach() for k, v in model.state_dict().items()}
    st = StepSetting(spec, box, nominal, threat, get_loss(loss), lr, weight_decay, pieces)
    if mode == "joint":
        tb = TraceBounds.of(sb.base)
        if sb.poisoned is not None:
            tb = tb.hull(TraceBounds.of(sb.poisoned))
        return [joint_program(st, region, X, y, tb)], sb
    progs = []
    slots = [(sb.base, False), (sb.poisoned, True)] if sb.poisoned is not None else [(sb.base, region.k is None or region.k >= X.shape[0])]
    for trace, picked in slots:
        tb = TraceBounds.of(trace)
        for i in range(X.shape[0]):
            progs.append(sample_program(st, region, X, y, tb, i, picked))
    return progs, sb


def build_joint_step(model, box, X, y, threat, loss, lr, weight_decay=0.0, pieces=4):
    progs, sb = build_step_programs(model, box, X, y, threat, loss, lr, weight_decay, pieces, "joint")
    return progs[0], sb


def attack_nets(model, X, y, bud: Budget, loss: str, epochs=1, lr=LR, batch_size=BATCH, n_simple=3, n_guided=4,
                attack_seed=0, **recipe):
    """Concrete SGD runs (plain torch): clean, random, vertex, and gradient-guided poisoning that
    pushes random parameter coordinates up and down (and one maximising the training loss).
    ``recipe``: further ``sgd_train`` options (weight_decay, lr_decay, shuffle, seed: the shuffle
    seed of the recipe; ``attack_seed`` seeds the attackers)."""
    kw = dict(epochs=epochs, lr=lr, batch_size=batch_size, **recipe)
    yield "clean", sgd_train(model, X, y, loss, **kw)
    for s in range(n_simple):
        for mode in ("random", "vertex"):
            yield f"{mode} {s}", sgd_train(model, X, y, loss, poison=Poisoner(bud, loss, mode, seed=attack_seed + s), **kw)
    g = torch.Generator().manual_seed(attack_seed + 17)
    params = [(n, p.numel()) for n, p in model.named_parameters()]
    dirs = [None]
    for _ in range(n_guided):
        n, size = params[int(torch.randint(0, len(params), (1,), generator=g))]
        j = int(torch.randint(0, size, (1,), generator=g))
        dirs += [param_direction(n, j, 1.0), param_direction(n, j, -1.0)]
    for k, d in enumerate(dirs):
        yield f"guided {k}", sgd_train(model, X, y, loss, poison=Poisoner(bud, loss, "guided", seed=attack_seed + k, direction=d), **kw)


# ---------------------------------------------------------------------------------------------
# the cases: (model widths, loss, threat, plain-terms budget)
# ---------------------------------------------------------------------------------------------
def _cases():
    """id: (widths, loss, threat, budget, (data seed, model seed)); the seeds are chosen so that
    the step programs of both modes contain ambiguous ReLUs (asserted below)."""
    b, m, r = "binary", "multiclass", "regression"
    return {
        "linf_all-hinge": ([2, 4, 1], "hinge", lambda: LinfFeatures(0.1), budget(b, eps=0.1, feat_k=None), (1, 4)),
        "linf_k1-bce": ([2, 4, 1], "bce", lambda: LinfFeatures(0.1, k=1), budget(b, eps=0.1, feat_k=1), (1, 4)),
        "flip_k1-hinge": ([2, 4, 1], "hinge", lambda: LabelFlip(1), budget(b, flip_k=1), (2, 3)),
        "both_linf_flip1-bce": (
            [2, 4, 1], "bce", lambda: Both(LinfFeatures(0.05), LabelFlip(1)), budget(b, eps=0.05, feat_k=None, flip_k=1), (2, 3),
        ),
        "noise_k1-mse": ([2, 4, 1], "mse", lambda: LabelNoise(1, 0.3), budget(r, gamma=0.3, noise_k=1), (5, 7)),
        "both_linfk1_noise1-mse": (
            [2, 4, 1], "mse", lambda: Both(LinfFeatures(0.1, k=1), LabelNoise(1, 0.2)),
            budget(r, eps=0.1, feat_k=1, gamma=0.2, noise_k=1), (2, 3),
        ),
        "linf_k1-ce": ([2, 3, 3], "ce", lambda: LinfFeatures(0.1, k=1), budget(m, eps=0.1, feat_k=1), (2, 3)),
        "flip_k1-ce": ([2, 3, 3], "ce", lambda: LabelFlip(1), budget(m, flip_k=1), (3, 5)),
        "deep-linf_all-hinge": ([2, 3, 3, 1], "hinge", lambda: LinfFeatures(0.1), budget(b, eps=0.1, feat_k=None), (3, 5)),
    }


CASES = _cases()


@functools.lru_cache(maxsize=None)
def case_data(case_id: str):
    widths, loss, threat_f, bud, (dseed, mseed) = CASES[case_id]
    X, y = make_data(TASK[loss], N, seed=dseed)
    model = mlp(widths, seed=mseed)
    return model, X, y, threat_f, bud, loss


def mibp_cfg(**kw):
    """The MIBP config of the cases (joint HiGHS MILP, hinge), with overrides."""
    base = dict(epochs=1, lr=LR, batch_size=BATCH, loss="hinge", method="mibp", backend="highs", mode="joint", relax="milp")
    base.update(kw)
    return TrainConfig(**base)
