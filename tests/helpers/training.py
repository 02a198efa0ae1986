"""The interval-training soundness setting (formerly the helpers of ``test_soundness_training.py``):
small data sets (optionally in the unit box), the models per task, plain-terms budgets, and the
``TaskInfo`` of a batch."""
from __future__ import annotations

import torch

from mibpcert import mlp
from mibpcert.threats import TaskInfo

from .attacks import Budget

F64 = torch.float64
EPS = 0.02
TEST_EPS = 0.02
N_TRAIN, N_TEST, BATCH = 10, 12, 4  # batches of 4, 4 and a partial 2
TASK = {"bce": "binary", "hinge": "binary", "ce": "multiclass", "mse": "regression"}


# ---------------------------------------------------------------------------------------------
# data and models
# ---------------------------------------------------------------------------------------------
def make_data(task: str, n: int, seed: int, unit_box: bool = False):
    g = torch.Generator().manual_seed(seed)
    if task == "regression":
        X = torch.randn(n, 3, dtype=F64, generator=g)
        W = torch.tensor([[1.0, -0.5, 0.3], [0.2, 0.8, -1.0]], dtype=F64)
        y = X @ W.T + 0.1 * torch.randn(n, 2, dtype=F64, generator=g)
        return X, y
    if unit_box:
        X = torch.rand(n, 2, dtype=F64, generator=g)
        X[0, 0], X[1, 1], X[2] = 0.0, 1.0, torch.tensor([1.0, 0.0], dtype=F64)
        X[3] = torch.tensor([0.995, 0.005], dtype=F64)  # within eps of both ends
        c = X - 0.5
    else:
        X = torch.randn(n, 2, dtype=F64, generator=g)
        c = X
    if task == "binary":
        y = (c[:, 0] + 0.5 * c[:, 1] > 0).to(F64)
    else:
        ang = torch.atan2(c[:, 1], c[:, 0])
        y = torch.bucketize(ang, torch.tensor([-1.0, 1.2], dtype=F64)).to(F64)
    return X, y


def make_model(task: str, seed: int = 0):
    widths = {"binary": [2, 4, 1], "multiclass": [2, 5, 3], "regression": [3, 4, 2]}[task]
    return mlp(widths, seed=seed)


# ---------------------------------------------------------------------------------------------
# the cases: (threat, loss, plain-terms budget, recipe)
# ---------------------------------------------------------------------------------------------
def budget(task, **kw):
    return Budget(task=task, num_classes={"binary": 2, "multiclass": 3}.get(task), **kw)


# ---------------------------------------------------------------------------------------------
# region level: the threat regions contain what the threat allows
# ---------------------------------------------------------------------------------------------
def task_info(task, n):
    return TaskInfo(task, {"binary": 2, "multiclass": 3}.get(task), 2 if task != "regression" else 3, n)
