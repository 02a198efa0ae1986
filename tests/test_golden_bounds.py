"""Refactors must not change bounds: every example config and the (shortened) benchmark settings of
``tests/golden/settings.py`` give the stored boxes bit for bit. On another machine (torch version or
CPU kernel family) than the one that stored them, kernels may round differently, and the check is
to 1e-12 relative instead."""
import os
import sys

import numpy as np
import pytest
import torch

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden"))
import settings as golden  # noqa: E402

STORED = np.load(golden.STORE)
SETTINGS = golden.settings()


def test_every_setting_is_stored():
    assert sorted(SETTINGS) == sorted(k for k in STORED.files if k != "__machine__")


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(SETTINGS))
def test_bounds_equal_the_stored_ones(name):
    got = golden.flat(SETTINGS[name]())
    want = STORED[name]
    assert got.shape == want.shape
    same_machine = str(STORED["__machine__"]) == golden.machine()
    diff = np.abs(got - want)
    tol = 0.0 if same_machine else 1e-12 * (1 + np.abs(want))
    assert bool((diff <= tol).all()), f"{name}: bounds moved by up to {diff.max():.3e} ({int((diff > tol).sum())} entries)"
