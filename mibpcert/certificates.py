"""Prediction certificates and poisoning-objective bounds over a parameter box.

A test point is *certified* when every parameter vector in the box and every test input within
``test_eps`` (l-infinity) gives the correct class: for one logit, ``z > 0`` for label 1 and
``z < 0`` for label 0 (torch's rule ``pred = z > 0``, so both are strict); for several logits the
margin ``z_y - z_j`` is provably positive for every ``j != y``. The margin is bounded through the
last layer as ``(W_y - W_j) a + (b_y - b_j)``, which keeps the shared activation ``a`` and is
tighter than comparing separate logit bounds. A point whose bounds are NaN or infinite anywhere is
never certified.

Poisoning goals (as in abstract gradient training): the worst-case mean test loss (untargeted), the
worst-case accuracy (targeted: certified points are correct under every attack; points whose
prediction is provably wrong stay wrong), and the worst-case success of a backdoor whose trigger
lies in an l-infinity ball (a triggered point can only change its prediction if it is not
certified at the trigger radius).
"""
from __future__ import annotations

from contextlib import nullcontext
from dataclasses import dataclass

import torch

from .data_checks import check_test_data
from .encode.predict import mibp_margin_lower
from .losses import get_loss, label_mask
from .steps.affine import logit_forms
from .steps.interval import ParamBox, forward
from .interval.affine import Affine
from .interval.tensor import Interval, cast_down, cast_up, check_exact_float32_matmul, outward_rounding
from .model import ModelSpec
from .solvers import SolveOptions
from .solvers.executors import make_executor


def input_box(X: torch.Tensor, eps: float) -> Interval | torch.Tensor:
    if eps < 0 or eps != eps:
        raise ValueError(f"test eps must be a non-negative number, got {eps!r}")
    return X if eps == 0 else Interval(X - eps, X + eps, check=False)


def logit_bounds(spec: ModelSpec, box: ParamBox, X: torch.Tensor, eps: float = 0.0, exact: bool = False) -> Interval:
    """Bounds on the logits of every input within ``eps`` of ``X`` for every parameter in ``box``."""
    x = input_box(X, eps)
    pre, _ = forward(spec, box, x if isinstance(x, Interval) else Interval.point(x), exact=exact)
    return pre[-1]


def margin_bounds(
    spec: ModelSpec, box: ParamBox, X: torch.Tensor, y: torch.Tensor, eps: float, exact: bool = False
) -> Interval:
    """Bounds on the classification margin (N,): positive lower bound = certified correct,
    negative upper bound = provably wrong."""
    x = input_box(X, eps)
    x = x if isinstance(x, Interval) else Interval.point(x)
    pre, post = forward(spec, box, x, exact=exact)
    logits = pre[-1]
    if spec.out_features == 1:
        # label 1 needs z > 0, label 0 needs z < 0: the margin is z or -z
        sign = (2 * y - 1).reshape(-1)
        z = logits[:, 0]
        return Interval(torch.where(sign > 0, z.lo, -z.hi), torch.where(sign > 0, z.hi, -z.lo), check=False)
    yi = y.long().reshape(-1)
    m = logit_differences(spec, box, x, post, yi)
    inf = torch.tensor(torch.inf, dtype=m.dtype, device=m.device)
    self_mask = torch.nn.functional.one_hot(yi, spec.out_features).bool()
    lo = torch.where(self_mask, inf, m.lo).amin(dim=1)
    hi = torch.where(self_mask, inf, m.hi).amin(dim=1)
    finite = logits.is_finite().all(dim=1) & m.is_finite().all(dim=1)
    nan = torch.tensor(torch.nan, dtype=m.dtype, device=m.device)
    return Interval(torch.where(finite, lo, nan), torch.where(finite, hi, nan), check=False)


def logit_differences(spec: ModelSpec, box: ParamBox, x: Interval, post: list[Interval], ref: torch.Tensor) -> Interval:
    """Bounds (N, C) on ``z_ref - z_j`` for every class j (``ref``: (N,) class indices), given the
    interval forward pass ``post`` of ``x``. Bounded through the last layer as
    ``(W_ref - W_j) a + (b_ref - b_j)`` with the shared activation ``a``, which is tighter than
    subtracting separate logit bounds and sound for the same reason (every factor is enclosed)."""
    last = spec.layers[-1]
    a = post[-2] if len(spec.layers) > 1 else x
    W = box[last.weight]
    Wr = W[ref]  # (N, in)
    dW = Interval(Wr.lo.unsqueeze(1) - W.hi.unsqueeze(0), Wr.hi.unsqueeze(1) - W.lo.unsqueeze(0), check=False)  # (N, C, in)
    m = (dW * a.unsqueeze(1)).sum(dim=2)  # (N, C)
    if last.bias:
        b = box[last.bias]
        br = b[ref]
        m = m + Interval(br.lo.unsqueeze(1) - b.hi.unsqueeze(0), br.hi.unsqueeze(1) - b.lo.unsqueeze(0), check=False)
    return m


def relational_bounds(spec: ModelSpec, theta: dict, X: torch.Tensor, y: torch.Tensor | None, eps: float,
                      max_elements: int = 1 << 24) -> tuple[Interval, Interval | None]:
    """Logit and margin bounds from affine forms of the parameters (``TrainResult.relational``):
    the forward pass keeps the relations between the layers' parameters, and the margins
    ``z_y - z_j`` are differences of forms (classification labels ``y``; None: logits only).
    Sound for every parameter vector of the forms and every input within ``eps`` of ``X``. The
    points go through in chunks whose forms hold about ``max_elements`` generator entries."""
    los, his, mlo, mhi = [], [], [], []
    m0, d = next(iter(theta.values())).m, X.shape[1]
    chunk = 128
    width = max([d] + [layer.out_features for layer in spec.layers])
    while chunk > 1 and chunk * width * (m0 + chunk * d) > max_elements:
        chunk //= 2
    for s in range(0, X.shape[0], chunk):
        Xc = X[s:s + chunk].to(torch.float64)
        x = input_box(Xc, eps)
        z = logit_forms(spec, theta, x if isinstance(x, Interval) else Interval.point(x))
        b = z.bounds()
        los.append(b.lo)
        his.append(b.hi)
        if y is None:
            continue
        yc = y[s:s + chunk]
        if spec.out_features == 1:
            m = z.reshape(-1).scale((2 * yc - 1).reshape(-1).to(torch.float64)).bounds()
        else:
            ref = yc.long().reshape(-1)
            idx = torch.arange(len(ref), device=ref.device)
            zy = Affine(z.c[idx, ref].unsqueeze(1).expand_as(z.c), z.G[idx, ref].unsqueeze(1).expand_as(z.G),
                        z.e[idx, ref].unsqueeze(1).expand_as(z.e))
            d = (zy - z).bounds()
            other = torch.ones_like(d.lo, dtype=torch.bool)
            other[idx, ref] = False
            inf = torch.full_like(d.lo, torch.inf)
            m = Interval(torch.where(other, d.lo, inf).amin(1), torch.where(other, d.hi, inf).amin(1), check=False)
        mlo.append(m.lo)
        mhi.append(m.hi)
    dt = X.dtype
    logits = Interval(cast_down(torch.cat(los), dt), cast_up(torch.cat(his), dt), check=False)
    if y is None:
        return logits, None
    return logits, Interval(cast_down(torch.cat(mlo), dt), cast_up(torch.cat(mhi), dt), check=False)


def certified_mask(spec: ModelSpec, box: ParamBox, X: torch.Tensor, y: torch.Tensor, eps: float,
                   exact: bool = False) -> torch.Tensor:
    """True where the prediction is provably correct (finite bounds and positive margin)."""
    m = margin_bounds(spec, box, X, y, eps, exact)
    finite = torch.isfinite(m.lo) & torch.isfinite(m.hi)
    return finite & (m.lo > 0)


@dataclass
class CertReport:
    """Per-sample certificates and aggregate bounds for one test set.

    ``certified``: provably correct for every reachable model and test input; ``provably_wrong``:
    wrong for all of them; ``logits``: logit bounds (N, C); ``margin``: margin bounds (classification);
    ``test_loss_bounds``: bounds on the mean test loss over the box (untargeted goal);
    ``accuracy_bounds``: (worst, best) accuracy any reachable model can have (targeted goal);
    ``backdoor_success_upper``: upper bound on the fraction of points a trigger in the
    ``trigger_eps`` ball can flip (None when no trigger radius was given).
    """

    certified: torch.Tensor
    provably_wrong: torch.Tensor
    logits: Interval
    margin: Interval | None
    nominal_correct: torch.Tensor
    test_eps: float
    test_loss_bounds: tuple[float, float]
    accuracy_bounds: tuple[float, float] | None
    backdoor_success_upper: float | None
    trigger_eps: float | None

    @property
    def certified_accuracy(self) -> float | None:
        if self.margin is None:
            return None
        return float(self.certified.double().mean())

    @property
    def clean_accuracy(self) -> float | None:
        if self.margin is None:
            return None
        return float(self.nominal_correct.double().mean())

    def summary(self) -> dict:
        return {
            "test_eps": self.test_eps,
            "n": int(self.certified.shape[0]),
            "clean_accuracy": self.clean_accuracy,
            "certified_accuracy": self.certified_accuracy,
            "accuracy_bounds": self.accuracy_bounds,
            "test_loss_bounds": self.test_loss_bounds,
            "backdoor_success_upper": self.backdoor_success_upper,
            "trigger_eps": self.trigger_eps,
        }


def predicted_classes(z: torch.Tensor) -> torch.Tensor:
    """The classes (N,) of logits ``z`` (N, C): torch's rule ``z > 0`` for one logit, else argmax."""
    return (z[:, 0] > 0).long() if z.shape[1] == 1 else z.argmax(dim=1)


def nominal_predictions(result, X: torch.Tensor) -> torch.Tensor:
    """The classes (N,) the trained nominal model predicts."""
    with torch.no_grad():
        return predicted_classes(result.nominal(X))


def certify(
    result,
    X_test: torch.Tensor,
    y_test: torch.Tensor,
    test_eps: float = 0.0,
    trigger_eps: float | None = None,
    method: str = "interval",
    backend: str | None = None,
    time_limit: float | None = None,
    workers: int | None = None,
) -> CertReport:
    """Certify the predictions of every model in ``result``'s parameter box on a test set, against
    test-time perturbations up to ``test_eps``; see the module docstring for the goals bounded.

    ``method="mibp"`` additionally bounds the margin of every point the intervals leave undecided
    with one mixed-integer bilinear program per point (``backend``, ``time_limit`` and ``workers``
    default to the training configuration's)."""
    if method not in ("interval", "mibp"):
        raise ValueError(f"certify: method must be 'interval' or 'mibp', got {method!r}")
    spec, cfg = result.spec, result.config
    X, y, task, num_classes = check_test_data(result, X_test, y_test)
    check_exact_float32_matmul(X.dtype, X.device)
    for eps_name, eps in (("test_eps", test_eps), ("trigger_eps", trigger_eps)):
        if eps is not None and (not isinstance(eps, (int, float)) or eps != eps or eps < 0):
            raise ValueError(f"{eps_name} must be a non-negative number, got {eps!r}")
    box = result.box()
    with outward_rounding(cfg.outward_rounding):
        logits = logit_bounds(spec, box, X, test_eps, exact=cfg.exact_matmul)
        rel = None
        if result.relational is not None:
            rel = relational_bounds(spec, result.relational, X, None if task == "regression" else y, test_eps)
        if rel is not None:
            logits = logits.intersect(rel[0])
        labels = Interval.point(y) if task == "regression" else label_mask(y, num_classes)
        loss_iv, _ = get_loss(cfg.loss).bounds(logits, labels)
        finite_loss = loss_iv.is_finite()
        loss_bounds = (
            float(loss_iv.lo.mean()) if bool(finite_loss.all()) else float("nan"),
            float(loss_iv.hi.mean()) if bool(finite_loss.all()) else float("inf"),
        )
        if task == "regression":
            empty = torch.zeros(X.shape[0], dtype=torch.bool, device=X.device)
            return CertReport(empty, empty, logits, None, empty, float(test_eps), loss_bounds, None, None, trigger_eps)
        margin = margin_bounds(spec, box, X, y, test_eps, exact=cfg.exact_matmul)
        if rel is not None:
            margin = margin.intersect(rel[1])
        finite = torch.isfinite(margin.lo) & torch.isfinite(margin.hi)
        if method == "mibp" and bool(finite.all()):
            margin = _mibp_margin(result, box, X, y, test_eps, margin, backend, time_limit, workers)
        certified = finite & (margin.lo > 0)
        wrong = finite & (margin.hi < 0)
        backdoor = None
        if trigger_eps is not None:
            trig = certified_mask(spec, box, X, y, trigger_eps, exact=cfg.exact_matmul)
            backdoor = 1.0 - float(trig.double().mean())
    nominal_correct = nominal_predictions(result, X) == y.long()
    acc = (float(certified.double().mean()), 1.0 - float(wrong.double().mean()))
    return CertReport(certified, wrong, logits, margin, nominal_correct, float(test_eps), loss_bounds, acc, backdoor, trigger_eps)


def _mibp_margin(result, box, X, y, eps, margin: Interval, backend, time_limit, workers) -> Interval:
    """Raise the margin's lower bound with the MIBP certificate where intervals are undecided."""
    cfg = result.config
    todo = (margin.lo <= 0) & (margin.hi >= 0)
    cpu_box = {n: iv.to("cpu") for n, iv in box.items()}
    nominal = {k: v.detach().to("cpu") for k, v in result.nominal.state_dict().items()}
    opts = SolveOptions(time_limit=time_limit if time_limit is not None else cfg.time_limit, threads=cfg.threads,
                        relax=cfg.relax, partitions=cfg.partitions)
    workers = workers or cfg.workers
    # the training's executor (a Ray cluster, say) also runs the certificate's programs
    with make_executor(cfg.executor, workers, cfg.ray_address) if cfg.executor != "local" else nullcontext() as pool:
        lower = mibp_margin_lower(result.spec, cpu_box, nominal, X.to("cpu"), y.to("cpu"), eps, todo.to("cpu"),
                                  backend or cfg.backend, opts, workers, pool=pool)
    lower = cast_down(lower, margin.lo.dtype).to(margin.lo.device)  # never rounded up into the margin
    return Interval(torch.maximum(margin.lo, lower), margin.hi, check=False)
