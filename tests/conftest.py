"""Shared test configuration: single-threaded torch (tiny tensors), a fixed seed per test."""
import pytest
import torch

# the tensors in these tests are tiny: intra-op threads only cost (2-thread softmax on a 4x3
# tensor takes milliseconds instead of microseconds on a busy machine)
torch.set_num_threads(1)

# modules whose first test trains (module names follow the package layout: tests.<folder>.test_<module>)
_TRAINING_MODULES = {
    "tests.soundness.test_interval_training",
    "tests.soundness.test_guided_structured_attacks",
    "tests.test_data_checks",
    "tests.test_certificates",
    "tests.train.test_checkpoint",
    "tests.train.test_recipe",
}


@pytest.fixture
def unverified_scip(monkeypatch):
    """Opt in to the SCIP backend, which is disabled for certification (solvers/scip.py): the
    tests that use it check the wrapper (statuses, dual bounds, time limits) on programs where
    SCIP's answers are verified independently (scipy, enumeration, Gurobi)."""
    from mibpcert.solvers.scip import ALLOW_ENV

    monkeypatch.setenv(ALLOW_ENV, "1")
    yield


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(1234)
    yield


def pytest_collection_modifyitems(session, config, items):
    # torch.optim imports torch._dynamo the first time an optimizer is built (several seconds);
    # pay that once here, not inside whichever test happens to train first
    if any(item.module.__name__ in _TRAINING_MODULES for item in items if getattr(item, "module", None)):
        torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=0.1)
