"""Structured threats over several SGD steps or at once (``mibpcert.threats``): the boxes contain
randomly poisoned multi-step runs, and cross-entropy runs with triggers, one-hot groups and unions
contain every enumerated poisoned step (containment only: the softmax is relaxed in the MIP). One
step per threat kind: ``tests/threats/``; guided multi-step attacks:
``tests/soundness/test_guided_structured_attacks.py``."""
from __future__ import annotations

import pytest
import torch

from mibpcert.threats import LabelFlip, LinfFeatures, OneHotFeature, SharedTrigger, Union
from tests.helpers.attacks import sgd_train
from tests.helpers.enumeration import l0_sets, onehot_sets, per_sample_sets, trigger_sets
from tests.helpers.structured import (
    B, CASES, EXACT, F64, assert_contains, box, flat_state, make_data, make_model, setup_case, trained,
)

pytestmark = pytest.mark.slow  # end to end: `make test` runs it, `make test-fast` does not


# ---------------------------------------------------------------------------------------------
# several steps: the boxes contain randomly poisoned multi-step runs
# ---------------------------------------------------------------------------------------------
@pytest.mark.parametrize("case_id", ["onehot-hinge", "trigger-hinge", "missing-mse", "union_boxes-hinge"])
def test_three_steps_random_attacks(case_id):
    d, loss, threat_f, X1, y1, model, _, _ = setup_case(case_id)
    X2, y2 = make_data(loss, d, seed=9, onehot=[1, 2, 3] if d == 4 else None)
    X, y = torch.cat([X1, X2]), torch.cat([y1, y2])
    lo, hi, _ = box(model, X, y, threat_f(), loss, epochs=2, lr=0.2)
    g = torch.Generator().manual_seed(0)
    _, _, _, sets_f, _ = CASES[case_id]

    def poison(net, Xb, yb, lr):  # an adaptive attacker: a random allowed batch at every step
        opts = sets_f(Xb, yb)
        return opts[int(torch.randint(0, len(opts), (1,), generator=g))]

    nets = [sgd_train(model, X, y, loss, epochs=2, lr=0.2, batch_size=B, poison=poison) for _ in range(15)]
    assert_contains(lo, hi, torch.stack([flat_state(n) for n in nets]), f"{case_id} two epochs")


def test_multiclass_trigger_and_onehot_contain_poisoned_steps():
    """Cross-entropy (the softmax is relaxed in the MIP): containment only."""
    X, y = make_data("ce", 4, seed=3, onehot=[1, 2, 3])
    model = make_model(4, "ce", seed=4)
    cases = [
        (SharedTrigger([1, 0, 0, 0], 0.4, k=1, target=2), trigger_sets(X, y, [1, 0, 0, 0], 0.4, 1, 2)),
        (OneHotFeature([1, 2, 3], k=1), onehot_sets(X, y, [1, 2, 3], 1)),
        (Union(LinfFeatures(0.4, k=1), LabelFlip(1, to=1)),
         l0_sets(X, y, 0.4, 4, 1, n_random=0) + per_sample_sets(X, y, 1, lambda i: [(X[i], torch.tensor(1.0, dtype=F64))])),
        (Union(SharedTrigger([1, 0, 0, 0], 0.4, k=1, target=0), LabelFlip(1, to=1)),
         trigger_sets(X, y, [1, 0, 0, 0], 0.4, 1, 0) + per_sample_sets(X, y, 1, lambda i: [(X[i], torch.tensor(1.0, dtype=F64))])),
    ]
    for threat, sets in cases:
        P = trained(model, sets, "ce")
        for method, mode in (("interval", "per_sample"), ("mibp", "per_sample"), ("mibp", "joint")):
            lo, hi, _ = box(model, X, y, threat, "ce", method=method, mode=mode, backend=EXACT or "highs")
            assert_contains(lo, hi, P, f"{threat.describe()['type']} ce {method} {mode}")
