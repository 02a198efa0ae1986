"""Encoder of one SGD step as a mixed-integer bilinear program over the shared model description.

Variables: the parameters theta (in the current box; constants where the box is a point), the
sample's input and label (from the threat's encoding), per layer the pre-activation
``z = W a + b`` (a bilinear product ``W_jk a_k`` where both vary), the activation with one binary
per ReLU whose sign is not fixed (big-M constants from the interval pass), the loss gradient
(:meth:`mibpcert.losses.Loss.encode_grad`), the backward pass ``delta_prev = r * (W^T delta)`` with the *same* ReLU
binary r (exact big-M product), and the parameter gradients ``delta (x) a`` (bilinear). All
variables are bounded by the interval pass, which is sound, so the bounds are implied constraints.

The objective for parameter j is its updated value. ``joint``: one program for the whole batch,
``theta'_j = (1 - lr wd) theta_j - lr/B sum_i g_ij`` bounded exactly (up to the relaxations of the
backend): every sample shares the same theta. ``per_sample``: ``theta'_j = mean_i h_ij`` with
``h_ij = (1 - lr wd) theta_j - lr g_ij``; each ``h_ij`` is bounded in its own program and the bounds
are summed. The sum of per-sample minima is at most the minimum of the sum (each minimiser may pick
its own theta and data), so the result is sound; it is looser than ``joint`` but the programs are
small and independent.
"""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from ..ir.encoder import Encoder, Vec, objective
from ..ir.inputs import as_array
from ..ir.program import LinearExpr, Program
from ..losses import Loss
from ..model import ModelSpec
from ..steps.interval import SampleTrace
from ..threats import Threat


@dataclass
class TraceBounds:
    """numpy copies of a :class:`SampleTrace` (one array pair (lo, hi) per quantity, batch first)."""

    pre: list[tuple[np.ndarray, np.ndarray]]
    dlogits: tuple[np.ndarray, np.ndarray]
    deltas: list[tuple[np.ndarray, np.ndarray]]

    @staticmethod
    def of(trace: SampleTrace) -> "TraceBounds":
        iv = lambda v: (as_array(v.lo), as_array(v.hi))  # noqa: E731
        return TraceBounds([iv(p) for p in trace.pre], iv(trace.dlogits), [iv(d) for d in trace.deltas])

    def hull(self, other: "TraceBounds") -> "TraceBounds":
        h = lambda a, b: (np.minimum(a[0], b[0]), np.maximum(a[1], b[1]))  # noqa: E731
        return TraceBounds([h(a, b) for a, b in zip(self.pre, other.pre)], h(self.dlogits, other.dlogits),
                           [h(a, b) for a, b in zip(self.deltas, other.deltas)])

    def intersect(self, pre: list, dlogits, deltas: list) -> "TraceBounds":
        """These bounds intersected with other sound bounds on the same quantities (intervals in
        the layout of :class:`SampleTrace`); an empty intersection means one of them is unsound
        and raises."""
        def cap(a, iv):
            lo, hi = np.maximum(a[0], as_array(iv.lo)), np.minimum(a[1], as_array(iv.hi))
            if bool((lo > hi).any()):
                raise RuntimeError("two sound bounds on the step's intermediate quantities do not intersect")
            return lo, hi

        return TraceBounds([cap(a, p) for a, p in zip(self.pre, pre)], cap(self.dlogits, dlogits),
                           [cap(a, d) for a, d in zip(self.deltas, deltas)])

    def row(self, q: tuple[np.ndarray, np.ndarray], i: int) -> tuple[np.ndarray, np.ndarray]:
        return q[0][i].reshape(-1), q[1][i].reshape(-1)


def encode_theta(enc: Encoder, spec: ModelSpec, box: dict, nominal: dict) -> dict[str, Vec]:
    """Parameters as variables in the box (constants where the box is a point)."""
    return {n: enc.var_or_const(as_array(box[n].lo), as_array(box[n].hi), as_array(nominal[n]), name=n) for n in spec.param_names}


def encode_forward(enc: Encoder, spec: ModelSpec, theta: dict[str, Vec], x: Vec,
                   pre_bounds: list[tuple[np.ndarray, np.ndarray]]) -> tuple[list[Vec], list[Vec | None]]:
    """Forward pass: activations (input first, logits last) and each hidden layer's ReLU
    indicator; ``pre_bounds[l]`` are sound bounds on layer l's pre-activation."""
    acts = [x]
    gates: list[Vec | None] = []
    a = x
    for li, layer in enumerate(spec.layers):
        b = theta[layer.bias] if layer.bias else None
        z = enc.dot_rows(theta[layer.weight], (layer.out_features, layer.in_features), a, b, pre_bounds[li], name=f"z{li}")
        if layer.relu:
            a, r = enc.relu(z, name=f"a{li}")
            gates.append(r)
        else:
            a = z
            gates.append(None)
        acts.append(a)
    return acts, gates


def encode_pass(enc: Encoder, spec: ModelSpec, theta: dict[str, Vec], x: Vec, label: Vec,
                tb: TraceBounds, i: int, loss: Loss, pieces: int) -> dict[str, Vec]:
    """Forward pass, loss gradient and backward pass of sample i; returns its parameter gradients
    (flattened like ``theta``)."""
    acts, gates = encode_forward(enc, spec, theta, x, [tb.row(p, i) for p in tb.pre])
    delta = loss.encode_grad(enc, acts[-1], label, tb.row(tb.dlogits, i), pieces)
    grads: dict[str, Vec] = {}
    for li in range(len(spec.layers) - 1, -1, -1):
        layer = spec.layers[li]
        a_prev = acts[li]
        n_out, n_in = layer.out_features, layer.in_features
        D = delta.take(np.repeat(np.arange(n_out), n_in))
        A = a_prev.take(np.tile(np.arange(n_in), n_out))
        grads[layer.weight] = enc.product(D, A, name=f"gW{li}")
        if layer.bias is not None:
            grads[layer.bias] = delta
        if li > 0:
            q = enc.dot_rows(theta[layer.weight], (n_out, n_in), delta, None, None, name=f"back{li}", transpose=True)
            delta = enc.gate(gates[li - 1], q, name=f"delta{li - 1}") if gates[li - 1] is not None else q
            lo, hi = tb.row(tb.deltas[li - 1], i)
            delta.lo[:] = np.maximum(delta.lo, lo)
            delta.hi[:] = np.minimum(delta.hi, hi)
    return grads


@dataclass
class StepProgram:
    """One program of a step and its objectives: ``exprs[t]`` bounds parameter entry
    ``targets[t]`` (flat index over ``spec.param_names`` in order); entries whose range is known
    without solving are listed in ``constants`` as (lo, hi)."""

    program: Program
    start: np.ndarray
    exprs: list[LinearExpr]
    targets: np.ndarray
    constants: dict[int, tuple[float, float]]


def _objectives(spec: ModelSpec, theta: dict[str, Vec], grads_list: list[dict[str, Vec]], decay: float, scale: float):
    exprs, targets, constants = [], [], {}
    flat = 0
    for name in spec.param_names:
        n = len(theta[name])
        if name in spec.frozen:  # not trained: no objective (the caller keeps its value)
            flat += n
            continue
        for j in range(n):
            terms = [(theta[name], decay)] + [(g[name], -scale) for g in grads_list]
            expr, lo, hi = objective(terms, j)
            if expr is None or (len(expr.idx) == 1 and expr.idx[0] == theta[name].idx[j]):
                # constant, or affine in theta_j alone: every theta in the box is feasible, so
                # the interval value of the expression is its exact range
                constants[flat + j] = (lo, hi)
            else:
                exprs.append(expr)
                targets.append(flat + j)
        flat += n
    return exprs, np.array(targets, dtype=np.int64), constants


@dataclass(frozen=True)
class StepSetting:
    """What every program of one step shares: the model, the box the step starts from, the
    nominal parameters before the step (the warm start), the threat, the loss, the step's
    learning rate and weight decay, and the segments of piecewise-linear loss enclosures."""

    spec: ModelSpec
    box: dict
    nominal: dict
    threat: Threat
    loss: Loss
    lr: float
    weight_decay: float = 0.0
    pieces: int = 4


def sample_program(st: StepSetting, region, X, y, tb: TraceBounds, i: int, picked: bool) -> StepProgram:
    """The per-sample program of sample i in its poisoned (``picked``) or base region; objectives
    ``h_ij = (1 - lr wd) theta_j - lr g_ij``."""
    enc = Encoder()
    theta = encode_theta(enc, st.spec, st.box, st.nominal)
    x, lab = st.threat.mip_sample(enc, region, X, y, i, picked, st.loss.task)
    grads = encode_pass(enc, st.spec, theta, x, lab, tb, i, st.loss, st.pieces)
    exprs, targets, constants = _objectives(st.spec, theta, [grads], 1.0 - st.lr * st.weight_decay, st.lr)
    prog, start = enc.build()
    return StepProgram(prog, start, exprs, targets, constants)


@dataclass
class JointEncoding:
    """The whole batch's step written into ``enc`` (not yet built): the parameter variables, each
    sample's input variables, and the objectives ``theta'_j`` as in :class:`StepProgram`."""

    enc: Encoder
    theta: dict[str, Vec]
    inputs: list[Vec]
    exprs: list[LinearExpr]
    targets: np.ndarray
    constants: dict[int, tuple[float, float]]

    def program(self, exprs: list[LinearExpr] | None = None) -> StepProgram:
        """The built program with these objectives (or others for the same targets)."""
        prog, start = self.enc.build()
        return StepProgram(prog, start, self.exprs if exprs is None else exprs, self.targets, self.constants)


def joint_encoding(st: StepSetting, region, X, y, tb: TraceBounds) -> JointEncoding:
    """The whole batch in one program: every sample shares the same theta."""
    enc = Encoder()
    theta = encode_theta(enc, st.spec, st.box, st.nominal)
    xs, labs = st.threat.mip_batch(enc, region, X, y, st.loss.task)
    B = X.shape[0]
    grads_list = [encode_pass(enc, st.spec, theta, xs[i], labs[i], tb, i, st.loss, st.pieces) for i in range(B)]
    exprs, targets, constants = _objectives(st.spec, theta, grads_list, 1.0 - st.lr * st.weight_decay, st.lr / B)
    return JointEncoding(enc, theta, xs, exprs, targets, constants)


def joint_program(st: StepSetting, region, X, y, tb: TraceBounds) -> StepProgram:
    """The whole batch in one program; objectives ``theta'_j`` directly."""
    return joint_encoding(st, region, X, y, tb).program()
