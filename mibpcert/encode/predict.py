"""MIBP prediction certificate: bound the classification margin over the parameter box and the
test-time ball with one program per test point.

Parameters are variables in the box, the test input a variable in its l-infinity ball, the
forward pass is encoded as in training (bilinear weight x activation terms, one binary per
unstable ReLU, bounds from the interval forward pass). The margin (``z`` for label 1, ``-z`` for
label 0, ``z_y - z_j`` for every other class j) is minimised; the dual bound is a sound lower bound,
tighter than the interval margin because weights and activations stay coupled. Points that the
interval bound already certifies, or proves wrong, are not re-solved.
"""
from __future__ import annotations

import numpy as np
import torch

from ..steps.interval import ParamBox, forward
from ..interval.tensor import Interval
from ..ir.encoder import Encoder
from ..ir.inputs import as_array
from ..ir.program import LinearExpr
from ..model import ModelSpec
from ..solvers import SolveOptions, Status
from ..solvers.parallel import Executor, bound_many
from .training_step import encode_forward, encode_theta


def mibp_margin_lower(spec: ModelSpec, box: ParamBox, nominal: dict, X: torch.Tensor, y: torch.Tensor, eps: float,
                      todo: torch.Tensor, backend: str, options: SolveOptions, workers: int = 1,
                      pool: Executor | None = None) -> torch.Tensor:
    """Sound lower bounds (float64) on the margin of the points where ``todo`` is set (-inf
    elsewhere and where the solver gave no bound); one program per point, spread over ``pool``
    (an executor) when given, else over ``workers`` local processes."""
    x_iv = Interval(X - eps, X + eps, check=False)
    pre, _ = forward(spec, box, x_iv)
    pre_np = [(as_array(p.lo), as_array(p.hi)) for p in pre]
    Xn, yn = as_array(X), as_array(y).reshape(-1)
    jobs, owners = [], []
    for i in np.nonzero(as_array(todo.double()) > 0)[0]:
        enc = Encoder()
        theta = encode_theta(enc, spec, box, nominal)
        x = enc.var_or_const(Xn[i] - eps, Xn[i] + eps, Xn[i], name="x")
        acts, _ = encode_forward(enc, spec, theta, x, [(lo[i], hi[i]) for lo, hi in pre_np])
        z = acts[-1]
        exprs = []
        if spec.out_features == 1:
            s = 1.0 if yn[i] == 1 else -1.0
            exprs.append(_margin_expr([(z, 0, s)]))
        else:
            c = int(yn[i])
            for j in range(spec.out_features):
                if j != c:
                    exprs.append(_margin_expr([(z, c, 1.0), (z, j, -1.0)]))
        prog, start = enc.build()
        jobs.append((prog, exprs, start))
        owners.append(i)
    out = torch.full((X.shape[0],), -torch.inf, dtype=torch.float64)  # solver bounds, unrounded
    if not jobs:
        return out
    results = bound_many(backend, jobs, options, workers, pool=pool)
    for i, res in zip(owners, results):
        lows = [r.lower if r.lower_status != Status.FAILED else -np.inf for r in res]
        out[i] = float(min(lows))
    return out


def _margin_expr(terms) -> LinearExpr:
    idx, coef, const = [], [], 0.0
    for vec, j, s in terms:
        if vec.idx[j] >= 0:
            idx.append(vec.idx[j])
            coef.append(s)
        else:
            const += s * vec.lo[j]
    return LinearExpr(np.array(idx, dtype=np.int64), np.array(coef, dtype=np.float64), const)
