"""Combinations of threats (``mibpcert.threats`` combinations: Both, Union, GlobalBudget): their
regions, one SGD step on tiny instances against every poisoned data set listed in plain terms,
unions tighter than their hull, a global budget over two batches, and clear errors for bad
parameters."""
from __future__ import annotations

import pytest
import torch

from mibpcert import mlp
from mibpcert.threats import Both, FeatureValues, GlobalBudget, L1Features, LabelFlip, LinfFeatures, OneHotFeature, Union
from tests.helpers.structured import (
    check_every_poisoned_step, check_fails_before_training,
    check_raw_joint_bounds_inside_interval_box, needs_exact,
)
from tests.helpers.inputs import binary_data, train
from tests.helpers.structured import (
    EXACT, assert_contains, assert_inside, box, make_data, make_model, mean_width, setup_case, trained,
)
from tests.helpers.training import make_data as training_data
from tests.helpers.training import task_info



@pytest.mark.parametrize("case_id", ['union_finite-mse', 'union_boxes-hinge', 'union_linf_flip-hinge', 'global_budget-mse', 'both_l0_flip-hinge'])
def test_interval_and_mibp_contain_every_poisoned_step(case_id):
    check_every_poisoned_step(case_id)


@needs_exact
@pytest.mark.parametrize("case_id", ['union_finite-mse'])
def test_raw_joint_bounds_inside_interval_box(case_id):
    """The solver's own bounds (before intersecting) lie inside the interval step's box and
    around every poisoned step."""
    check_raw_joint_bounds_inside_interval_box(case_id)


@needs_exact
def test_global_budget_two_batches():
    """k = 1 poisoned sample in the whole training set, two batches of 3: every data set with at
    most one changed sample lies in the box, and the box is no looser than per-batch k=1."""
    X1, y1 = make_data("mse", 3, seed=1)
    X2, y2 = make_data("mse", 3, seed=5)
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    model = make_model(3, "mse", seed=2)
    g = GlobalBudget(FeatureValues(0, [-1.0, 1.0]), 1)
    sets = [(X, y)]
    for i in range(6):
        for v in (-1.0, 1.0):
            Xp = X.clone()
            Xp[i, 0] = v
            sets.append((Xp, y))
    P = trained(model, sets, "mse", batch_size=3)
    for method, mode in (("interval", "per_sample"), ("mibp", "joint")):
        lo, hi, _ = box(model, X, y, g, "mse", method=method, mode=mode, backend=EXACT, batch_size=3)
        assert_contains(lo, hi, P, f"global budget {method}")
    lo_g, hi_g, _ = box(model, X, y, g, "mse", batch_size=3)
    lo_b, hi_b, _ = box(model, X, y, FeatureValues(0, [-1.0, 1.0], k=1), "mse", batch_size=3)
    assert torch.equal(lo_g, lo_b) and torch.equal(hi_g, hi_b)
    # a global budget above the batch size is fine (every sample of a batch may change)
    lo_big, hi_big, _ = box(model, X, y, GlobalBudget(FeatureValues(0, [-1.0, 1.0]), 5), "mse", batch_size=3)
    lo_all, hi_all, _ = box(model, X, y, FeatureValues(0, [-1.0, 1.0]), "mse", batch_size=3)
    assert torch.equal(lo_big, lo_all) and torch.equal(hi_big, hi_all)


@needs_exact
def test_union_of_boxes_tighter_than_their_hull():
    """Union(l-inf on one sample, one label flip): the selector keeps "features moved" and "label
    flipped" apart; the hull of the two regions (= Both(..., paired=True)) allows both at once."""
    d, loss, threat_f, X, y, model, _, _ = setup_case("union_linf_flip-hinge")
    both = Both(LinfFeatures(0.3, k=1), LabelFlip(1), paired=True)
    for mode in ("per_sample", "joint"):
        u = box(model, X, y, threat_f(), loss, method="mibp", mode=mode, backend=EXACT)
        h = box(model, X, y, both, loss, method="mibp", mode=mode, backend=EXACT)
        assert_inside(u[:2], h[:2], "union inside the hull")
        ratio = mean_width(*u[:2]) / mean_width(*h[:2])
        assert ratio < 0.93, f"{mode}: union/hull width ratio {ratio:.3f}"  # measured 0.870 (both modes)


def test_union_is_no_looser_than_hull_and_contains_parts():
    """The union's interval box contains each part's box."""
    d, loss, threat_f, X, y, model, _, _ = setup_case("union_finite-mse")
    u = box(model, X, y, threat_f(), loss)
    for part in threat_f().parts:
        p = box(model, X, y, part, loss)
        assert_inside(p[:2], u[:2], "a part's box must lie in the union's box")


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda: Union(LinfFeatures(0.1)), "at least two"),
        (lambda: GlobalBudget(LinfFeatures(0.1), -1), "k must be"),
        (lambda: GlobalBudget(LinfFeatures(0.1), None), "k must be"),
        (lambda: GlobalBudget(GlobalBudget(LinfFeatures(0.1), 1), 2), "nested"),
    ],
)
def test_bad_parameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "threat, loss, match",
    [
        (Union(L1Features(0.1, k=5), LabelFlip(1)), "hinge", "larger than the batch size"),
        (GlobalBudget(OneHotFeature([1, 7]), 2), "hinge", "out of range"),
        (GlobalBudget(LabelFlip(None), 2), "mse", "classification"),
    ],
)
def test_bad_parameters_fail_before_training(threat, loss, match, monkeypatch):
    check_fails_before_training(threat, loss, match, monkeypatch)


def test_both_budgets_checked_separately():
    X, y = binary_data()
    with pytest.raises(ValueError, match="larger than the batch size"):
        train(mlp([2, 3, 1]), X, y, threat=Both(LinfFeatures(0.1, k=5), LabelFlip(1)))
    # each fits, their sum (6) may exceed the batch: accepted
    train(mlp([2, 3, 1]), X, y, threat=Both(LinfFeatures(0.1, k=3), LabelFlip(3)))


def test_both_region_contains_the_feature_corners_exactly():
    X, y = training_data("binary", 50, seed=12)
    info = task_info("binary", 50)
    part = LinfFeatures(0.1)
    r = Both(part, LabelFlip(1)).region(X, y, info)
    box = part.poisoned_box(X)
    assert ((box.lo >= r.poisoned_features.lo) & (box.hi <= r.poisoned_features.hi)).all()
    assert ((box.lo >= r.features.lo) & (box.hi <= r.features.hi)).all()
