"""The joint step program on a relational parameter set: affine forms in, affine forms out.

The joint program of :mod:`.training_step` starts from a box. Here it starts from the affine forms
``theta = c + G xi`` of the parameters before the step: the symbols ``xi`` in [-1, 1]^m become
program variables, every parameter variable is tied to its form (``theta_j - G_j xi = c_j``) and
every input feature that carries a data symbol to it (``x_if - g_if xi_s = c_if``). Both ties
hold for the computed training whenever the forms enclose it with one value of the symbols, so
adding them never cuts off a real trajectory; they restore the relations the box forgets (between
parameters, and between a sample's poisoned value in different steps).

The objectives are, per parameter entry, the *residual* of the affine step's result
``theta' = c' + G' xi + e' eta``, ``theta'_j - G'_j xi``, and the value ``theta'_j`` itself. The
residual's solver bounds ``[r_lo, r_hi]`` give ``theta'_j = G'_j xi + r`` with ``r`` in
``[r_lo, r_hi]`` for every reachable (theta', xi): a form over the same symbols whose independent
part is at most the affine step's (the two residual ranges are intersected), so the relations are
kept and what the affine relaxations lost is tightened. The value's bounds tighten the box (a
form's box adds the ranges of its terms; the value's range can be smaller).
"""
from __future__ import annotations

import numpy as np
import torch

from ..interval.affine import Affine
from ..steps.affine import InputForms
from ..ir.program import LinearExpr
from .training_step import StepProgram, StepSetting, TraceBounds, joint_encoding


def _rows(form: Affine) -> tuple[np.ndarray, np.ndarray]:
    """Centres (n,) and generator rows (n, m) of a form as float64 numpy arrays."""
    n = form.c.numel()
    return (form.c.detach().to("cpu", torch.float64).reshape(n).numpy(),
            form.G.detach().to("cpu", torch.float64).reshape(n, form.m).numpy())


def relational_program(st: StepSetting, region, X, y, tb: TraceBounds, before: dict[str, Affine],
                       inputs: InputForms | None, after: dict[str, Affine]) -> StepProgram:
    """The joint program of the batch tied to the forms ``before`` (parameters before the step,
    no independent part) and ``inputs`` (the batch's input forms, over the same numbering of the
    symbols; None: no data ties). Objectives:
    the residuals of ``after`` (over ``m`` symbols, ``m`` at least that of ``before`` and
    ``inputs``) for the targets in order, then the values of the same targets (``targets`` lists
    them twice)."""
    if any(bool((f.e != 0).any()) for f in before.values()):
        raise RuntimeError("the parameter forms a relational step starts from must have no independent part")
    J = joint_encoding(st, region, X, y, tb)
    enc = J.enc
    m = next(iter(after.values())).m
    xi = enc.var(-np.ones(m), np.ones(m), np.zeros(m), name="xi")
    for name in st.spec.param_names:
        c, G = _rows(before[name])
        var = J.theta[name]
        for j in np.nonzero(var.is_var)[0]:
            nz = np.nonzero(G[j])[0]
            enc.equal(np.concatenate([[var.idx[j]], xi.idx[nz]]), np.concatenate([[1.0], -G[j, nz]]), float(c[j]))
    if inputs is not None:
        # a feature with a data symbol s is c + r xi_s (the centre and radius of its box, as in
        # InputForms.rows); features without one stay free in the threat's encoding
        box = Affine.from_interval(inputs.box, 0)
        c, r = (t.detach().to("cpu", torch.float64).numpy() for t in (box.c, box.e))
        cols = inputs.cols.detach().cpu().numpy()
        for b, x in enumerate(J.inputs):
            for f in np.nonzero(x.is_var & (cols[b] >= 0))[0]:
                enc.equal(np.array([x.idx[f], xi.idx[cols[b, f]]]), np.array([1.0, -r[b, f]]), float(c[b, f]))
    flat_G = np.concatenate([_rows(after[n])[1] for n in st.spec.param_names])
    exprs = []
    for expr, t in zip(J.exprs, J.targets):
        nz = np.nonzero(flat_G[t])[0]
        exprs.append(LinearExpr(np.concatenate([expr.idx, xi.idx[nz]]), np.concatenate([expr.coef, -flat_G[t, nz]]), expr.const))
    prog = J.program(exprs + J.exprs)
    prog.targets = np.concatenate([J.targets, J.targets])
    return prog
