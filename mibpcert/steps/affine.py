"""The affine SGD step: the parameters as affine forms over symbols kept from step to step.

The interval step forgets every relation between parameters, so ``theta - lr g(theta)`` counts the
width of ``theta`` twice, and each step may pick the poisoned data anew. Here the parameters are
affine forms ``theta = c + G xi`` (:mod:`mibpcert.interval.affine`) whose symbols persist:

* data symbols: one per (training sample, feature, region kind) whose threat box has width. The
  poisoned training set is chosen once, before training, so a sample's poisoned value is the same
  in every step that sees it, and every such step uses the same symbol (keyed by the sample's
  index in the training set; a box that differs from the one first seen, or an unknown index,
  gets an independent term instead, which is always sound);
* switch symbols: a quantity that switches, a ReLU's derivative whose unit may be on or off or a
  loss gradient with no relation to the logits (a hinge sample that may cross its kink, an
  interval gradient), multiplies a whole vector of the backward pass, so its enclosure becomes one
  new symbol per sample and entry (:meth:`SymbolTable.lift`) shared by every parameter that
  sample's gradient reaches. A sample that may switch then moves the parameters along its gradient
  (a segment), not in a box of the same per-entry size;
* step symbols: what a step's relaxations leave independent (products, ReLUs, loss gradients) is
  one new symbol per parameter entry after the update. When there are more than ``cap`` symbols,
  the step symbols that matter least (Girard's score ``|g|_1 - |g|_inf``) are enclosed in one new
  symbol per parameter entry (order reduction, sound: a sum of symbols lies in the sum of
  their radii).

The step itself: forward pass, loss gradient (:meth:`mibpcert.losses.Loss.affine_grad`), backward
pass and update on forms, every sample of the batch in its region as in the interval step. With a
budget of ``0 < k < B`` poisoned samples, the batch gradient is the sum of the base forms plus, per
parameter, the k largest increases of a sample's poisoned form over its base form (the difference
is taken on forms, so the parameters' shared part cancels), as in the interval step's k-of-N rule.
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from ..interval.affine import Affine, linear, linear_t, outer_each, outer_sum
from ..interval.tensor import Interval, directed_sum, rounding_enabled
from ..losses import Loss
from ..model import ModelSpec

AffineParams = dict  # name -> Affine, all over the same symbols


@dataclass
class SymbolTable:
    """The persistent symbols: ``m`` columns of every parameter form; ``data`` maps (sample
    index, region kind) to the sample's columns (-1 where the box is a point) and its box."""

    m: int = 0
    data: dict = field(default_factory=dict)
    fixed: set = field(default_factory=set)  # data columns (never merged by order reduction)

    def __setstate__(self, state: dict) -> None:
        """The table is host bookkeeping: its tensors come back on the CPU whatever ``map_location``
        a checkpoint is loaded with (a data box on the GPU would not compare with the host's)."""
        state["data"] = {k: tuple(t.cpu() for t in v) for k, v in state["data"].items()}
        self.__dict__.update(state)

    def lift(self, form: Affine, where: torch.Tensor) -> Affine:
        """``form`` with the independent parts of the entries ``where`` as new symbols of the
        table (:meth:`~mibpcert.interval.affine.Affine.lift`; entries without one get none)."""
        out = form.lift(where & (form.e > 0), self.m)
        self.m = out.m
        return out

    def input_form(self, box: Interval, index: torch.Tensor | None, kind: str) -> Affine:
        """The inputs (B, d) of a batch in ``box`` as forms, with a shared symbol per sample and
        feature of width (new symbols are added to the table; forms over fewer symbols must be
        padded)."""
        return self.inputs(box, index, kind).rows(slice(None))

    def inputs(self, box: Interval, index: torch.Tensor | None, kind: str) -> "InputForms":
        """The batch's inputs as :class:`InputForms` (registers the symbols of samples seen for the
        first time; a sample whose box differs from the one first seen, or an unknown index, gets
        independent terms)."""
        B, d = box.shape
        cols = torch.full((B, d), -1, dtype=torch.long)
        if index is not None:  # host bookkeeping: the batch's box and indices copied once, not per sample
            bounds, index = box.stacked.detach().cpu(), index.tolist()
        for b in range(B if index is not None else 0):
            key = (int(index[b]), kind)
            lo, hi = bounds[0, b], bounds[1, b]
            known = self.data.get(key)
            if known is None:
                width = hi > lo
                c = torch.full((d,), -1, dtype=torch.long)
                c[width] = torch.arange(self.m, self.m + int(width.sum()))
                self.fixed.update(int(j) for j in c[width])
                self.m += int(width.sum())
                self.data[key] = known = (c, lo.clone(), hi.clone())
            if torch.equal(known[1], lo) and torch.equal(known[2], hi):
                cols[b] = known[0]
        return InputForms(box, cols.to(box.lo.device), self)


@dataclass
class InputForms:
    """A batch's input forms, built a slice of rows at a time over the table's current symbols
    (a batch's forms over every data symbol would not fit in memory for large data sets)."""

    box: Interval
    cols: torch.Tensor  # (B, d): the data symbol of each feature, -1 for an independent term
    symbols: SymbolTable

    @property
    def batch(self) -> int:
        return int(self.cols.shape[0])

    def rows(self, sl: slice) -> Affine:
        box = Interval(self.box.lo[sl], self.box.hi[sl], check=False)
        x = Affine.from_interval(box, self.symbols.m)
        cols = self.cols[sl]
        shared = cols >= 0
        if x.m:  # G[b, f, cols[b, f]] = e[b, f] where shared (elsewhere 0 is written into a zero column)
            x.G.scatter_(-1, cols.clamp_min(0).unsqueeze(-1), torch.where(shared, x.e, 0.0).unsqueeze(-1))
        return Affine(x.c, x.G, torch.where(shared, 0.0, x.e))


def _forward_backward(spec: ModelSpec, theta: AffineParams, x: Affine, labels, loss: Loss, each: bool,
                      trace: list | None = None, switches: SymbolTable | None = None) -> dict:
    """Gradient forms of every parameter: summed over the batch, or per sample (``each``). When
    ``trace`` is a list, the per-sample forms of every pre-activation, of d loss / d logits and of
    every d loss / d pre-activation are appended to it as ``(pre, dlogits, deltas)``. With a table
    ``switches``, the enclosures of switching quantities become its symbols (module docstring): the
    loss gradient's entries whose independent part is at least their related part, and d loss /
    d pre-activation where the ReLU's derivative is open."""
    pre, post, grads = [], [], []
    a = x
    for layer in spec.layers:
        z = linear(a, theta[layer.weight], theta[layer.bias] if layer.bias else None)
        pre.append(z)
        if layer.relu:
            a, gate = z.relu()
            grads.append(gate)
        else:
            a = z
            grads.append(None)
        post.append(a)
    delta = loss.affine_grad(pre[-1], labels)
    if switches is not None:
        delta = switches.lift(delta, delta.e >= delta.gen_radius())
    dlogits = delta
    deltas: list[Affine] = [delta] * len(spec.layers)
    out: dict[str, Affine] = {}
    for li in range(len(spec.layers) - 1, -1, -1):
        layer = spec.layers[li]
        deltas[li] = delta
        a_prev = x if li == 0 else post[li - 1]
        out[layer.weight] = outer_each(delta, a_prev) if each else outer_sum(delta, a_prev)
        if layer.bias is not None:
            out[layer.bias] = delta if each else delta.sum(0)
        if li > 0:
            delta = linear_t(delta, theta[layer.weight])
            if grads[li - 1] is not None:
                delta = delta.gate(grads[li - 1])
                if switches is not None:
                    delta = switches.lift(delta, grads[li - 1].lo < grads[li - 1].hi)
    if trace is not None:
        trace.append((pre, dlogits, deltas))
    return out


def _chunks(batch: int, per_sample: int, symbols: SymbolTable, grows: int, max_elements: int):
    """Slices of the batch such that a chunk's forms hold about ``max_elements`` generator entries:
    ``per_sample`` entries per sample over the table's symbols at the chunk's start, plus the
    ``grows`` switch symbols a sample may add (``c * per_sample * (m + c * grows)`` for c samples)."""
    s = 0
    while s < batch:
        a, b = per_sample * grows, per_sample * max(1, symbols.m)
        c = max_elements // b if a == 0 else int((math.sqrt(b * b + 4 * a * max_elements) - b) / (2 * a))
        c = max(1, c)
        yield slice(s, s + c)
        s += c


def _switch_columns(spec: ModelSpec, switches: SymbolTable | None) -> int:
    """The most switch symbols one sample adds to a step: one per logit and per hidden unit."""
    return 0 if switches is None else sum(layer.out_features for layer in spec.layers)


def _batch_grads(spec: ModelSpec, theta: AffineParams, x: InputForms, labels, loss: Loss, trace: list | None,
                 switches: SymbolTable | None, max_elements: int = 1 << 24) -> dict:
    """The batch gradient forms, summed over chunks of samples (memory does not grow with the
    batch); ``trace`` receives the bounds of each chunk's intermediate quantities."""
    per_sample = spec.in_features + sum(layer.out_features for layer in spec.layers)
    total: dict[str, Affine] = {}
    for sl in _chunks(x.batch, per_sample, x.symbols, _switch_columns(spec, switches), max_elements):
        parts: list | None = [] if trace is not None else None
        g = _forward_backward(spec, theta, x.rows(sl), _rows_labels(labels, sl), loss, each=False, trace=parts,
                              switches=switches)
        total = g if not total else {n: total[n] + g[n] for n in g}
        if parts:
            pre, dlogits, deltas = parts[0]
            trace.append(([z.bounds() for z in pre], dlogits.bounds(), [d.bounds() for d in deltas]))
    return total


def _budget_grads(spec: ModelSpec, theta: AffineParams, xb: InputForms, xp: InputForms, region, loss: Loss, k: int,
                  switches: SymbolTable | None, max_elements: int = 1 << 24) -> dict:
    """The batch gradient when at most k samples leave their base region: the sum of the base
    forms plus, per entry, the k largest increases (and decreases) of a sample's poisoned form over
    its base form. Per-sample forms are built a chunk of samples at a time (at most about
    ``max_elements`` generator entries), so memory does not grow with the batch."""
    per_sample = sum(f.c.numel() for f in theta.values())
    total: dict[str, Affine] = {}
    inc_hi: dict[str, list] = {n: [] for n in theta}
    inc_lo: dict[str, list] = {n: [] for n in theta}
    for sl in _chunks(xb.batch, per_sample, xb.symbols, _switch_columns(spec, switches), max_elements):
        # the base forms go into the sum (their switches kept as symbols); a poisoned form is only
        # compared with its base form, entry by entry, so its switches would name nothing
        gb = _forward_backward(spec, theta, xb.rows(sl), _rows_labels(region.labels, sl), loss, each=True, switches=switches)
        gp = _forward_backward(spec, theta, xp.rows(sl), _rows_labels(region.poisoned_labels, sl), loss, each=True)
        for n in gb:
            part = gb[n].sum(0)
            total[n] = part if n not in total else total[n] + part
            diff = (gp[n] - gb[n]).bounds()
            inc_hi[n].append(diff.hi.clamp_min(0))
            inc_lo[n].append((-diff.lo).clamp_min(0))
    out = {}
    for n in total:
        top_hi = directed_sum(torch.topk(torch.cat(inc_hi[n]), k, dim=0).values, up=True)
        top_lo = directed_sum(torch.topk(torch.cat(inc_lo[n]), k, dim=0).values, up=True)
        out[n] = total[n].shift(Interval(-top_lo, top_hi, check=False))
    return out


def _rows_labels(labels, sl: slice):
    return Interval(labels.lo[sl], labels.hi[sl], check=False) if isinstance(labels, Interval) else labels[sl]


@dataclass
class AffineUpdate:
    """One step on forms before its independent parts become symbols: ``theta`` (the parameters
    after the update, over ``symbols.m`` symbols, with independent parts ``e``), ``inputs`` (the
    batch's input forms, data symbols included, when every sample lies in them; None with a
    k-of-N split) and, when every sample was bounded in one region (no split), ``trace``:
    per-sample bounds of every pre-activation, of d loss / d logits and of every d loss /
    d pre-activation, in the layout of :class:`mibpcert.steps.interval.SampleTrace` (else None)."""

    theta: AffineParams
    inputs: InputForms | None
    trace: tuple[list[Interval], Interval, list[Interval]] | None


def affine_update(spec: ModelSpec, theta: AffineParams, symbols: SymbolTable, region, index: torch.Tensor | None,
                  loss: Loss, lr: float, weight_decay: float = 0.0, with_trace: bool = False,
                  switch_symbols: bool = True) -> AffineUpdate:
    """One SGD step on the mean batch loss over ``region``, on forms (see module docstring); the
    symbols of samples seen for the first time are added to ``symbols``, and with
    ``switch_symbols`` those of the step's switching quantities. ``with_trace``: also bound the
    intermediate quantities (costs a few passes over the per-sample forms)."""
    B = region.features.shape[0]
    k = region.k
    split = k is not None and 0 < k < B
    use_pois = k is None or k >= B
    feats = region.poisoned_features if (use_pois or split) else region.features
    labs = region.poisoned_labels if (use_pois or split) else region.labels
    x = symbols.inputs(feats, index, "poisoned" if (use_pois or split) else "base")
    if split:
        xb = symbols.inputs(region.features, index, "base")
    theta = {n: f.pad(symbols.m) for n, f in theta.items()}
    switches = symbols if switch_symbols else None
    chunks: list | None = None
    if split:
        grads = _budget_grads(spec, theta, xb, x, region, loss, k, switches)
    else:
        chunks = [] if with_trace else None
        grads = _batch_grads(spec, theta, x, labs, loss, chunks, switches)
    decay = 1.0 - lr * weight_decay
    new = {n: theta[n] if n in spec.frozen else theta[n].combine(decay, grads[n], -lr / B) for n in spec.param_names}
    new = {n: f.pad(symbols.m) for n, f in new.items()}  # over every symbol the step added
    bounds = None
    if chunks:
        cat = lambda ivs: Interval(torch.cat([iv.lo for iv in ivs]), torch.cat([iv.hi for iv in ivs]), check=False)  # noqa: E731
        L = len(spec.layers)
        bounds = ([cat([c[0][li] for c in chunks]) for li in range(L)], cat([c[1] for c in chunks]),
                  [cat([c[2][li] for c in chunks]) for li in range(L)])
    return AffineUpdate(new, None if split else x, bounds)


def finish(theta: AffineParams, symbols: SymbolTable, cap: int) -> AffineParams:
    """Forms with no independent part: each becomes a new symbol, then order reduction keeps at
    most about ``cap`` symbols."""
    return _reduce(_absorb(theta, symbols), symbols, cap)


def _absorb(theta: AffineParams, symbols: SymbolTable) -> AffineParams:
    """Every independent part becomes a new symbol (one per entry with e > 0)."""
    names = list(theta)
    e = torch.cat([theta[n].e.reshape(-1) for n in names])
    nz = torch.nonzero(e > 0).reshape(-1)
    if len(nz) == 0:
        return theta
    m0 = symbols.m
    symbols.m += len(nz)
    flat_G = torch.cat([theta[n].G.reshape(theta[n].c.numel(), m0) for n in names])
    G = torch.cat([flat_G, flat_G.new_zeros(flat_G.shape[0], len(nz))], dim=1)
    G[nz, m0 + torch.arange(len(nz), device=G.device)] = e[nz]
    return _split(names, theta, torch.cat([theta[n].c.reshape(-1) for n in names]), G, torch.zeros_like(e))


def _split(names, like: AffineParams, c, G, e) -> AffineParams:
    out, at = {}, 0
    for n in names:
        size = like[n].c.numel()
        shape = like[n].shape
        out[n] = Affine(c[at:at + size].reshape(shape), G[at:at + size].reshape(*shape, G.shape[1]), e[at:at + size].reshape(shape))
        at += size
    return out


def _reduce(theta: AffineParams, symbols: SymbolTable, cap: int) -> AffineParams:
    """Order reduction: when there are more than ``cap`` symbols, the step symbols with the
    smallest ``|g|_1 - |g|_inf`` are enclosed in one new symbol per parameter entry."""
    names = list(theta)
    P = sum(theta[n].c.numel() for n in names)
    if symbols.m <= cap:
        return theta
    G = torch.cat([theta[n].G.reshape(theta[n].c.numel(), symbols.m) for n in names])
    fixed = torch.tensor(sorted(symbols.fixed), dtype=torch.long)  # the symbol bookkeeping lives on the host
    absG = G.abs()
    score = (absG.sum(0) - absG.amax(0)).index_fill_(0, fixed.to(G.device), torch.inf)
    n_drop = min(symbols.m - len(fixed), symbols.m - cap + P)
    drop = torch.topk(score, n_drop, largest=False).indices
    keep = torch.ones(symbols.m, dtype=torch.bool)
    keep[drop.cpu()] = False
    e = absG[:, drop].sum(1)
    if rounding_enabled() and n_drop:
        e = torch.nextafter(e * (1 + 4 * torch.finfo(e.dtype).eps * (n_drop + 2)), torch.full_like(e, torch.inf))
    remap = torch.cumsum(keep.to(torch.long), 0) - 1
    symbols.data = {key: (torch.where(cols >= 0, remap[cols.clamp_min(0)], cols), lo, hi)
                    for key, (cols, lo, hi) in symbols.data.items()}
    symbols.fixed = set(remap[fixed].tolist())
    kept = keep.nonzero().reshape(-1)
    symbols.m = len(kept)
    c = torch.cat([theta[n].c.reshape(-1) for n in names])
    reduced = _split(names, theta, c, G.index_select(1, kept.to(G.device)), e)
    return _absorb(reduced, symbols)


MEMORY_LIMIT = 8 * 2**30  # bytes of generator tensors a step may need before the run is refused


def check_size(spec: ModelSpec, n_samples: int, n_features: int, cap: int, batch: int = 0) -> None:
    """Refuse, before training, a run whose forms would not fit in memory: every perturbed feature
    of every training sample may get a symbol (twice with a budget: base and poisoned regions),
    every sample of a ``batch`` a switch symbol per logit and hidden unit until the step's end,
    a step holds a few copies of the parameter forms (parameters x symbols), and the per-sample
    forms are built in chunks of bounded size (about 2^24 generator entries each)."""
    switches = min(batch, n_samples) * sum(layer.out_features for layer in spec.layers)
    symbols = 2 * n_samples * n_features + cap + spec.num_params + switches
    need = 8 * symbols * 8 * spec.num_params + 8 * 12 * 2**24
    if need > MEMORY_LIMIT:
        raise ValueError(
            f"the affine forms (method='affine', or relational=True) would need about {need / 2**30:.0f} GiB "
            f"({n_samples} training samples x {n_features} features may each carry a symbol, {spec.num_params} parameters); "
            "use fewer training samples or a smaller model, or method='interval'")


def params_from_box(box: dict, symbols: SymbolTable) -> AffineParams:
    """Forms of a parameter box: its centre and one new symbol per entry of width."""
    theta = {n: Affine.from_interval(iv, symbols.m) for n, iv in box.items()}
    return _absorb(theta, symbols)


def params_box(theta: AffineParams) -> dict:
    return {n: f.bounds() for n, f in theta.items()}


def logit_forms(spec: ModelSpec, theta: AffineParams, x: Interval) -> Affine:
    """The logits (N, C) of every input in the box ``x`` (N, d) for every parameter vector of the
    forms. Each input feature of width gets a new symbol (after the parameters' symbols), so the
    relations between the layers are kept for the parameters and for the input."""
    m0 = next(iter(theta.values())).m
    N, d = x.shape
    a = Affine.from_interval(x, m0 + N * d)
    cols = m0 + torch.arange(N * d, device=x.lo.device).reshape(N, d)
    a.G[torch.arange(N, device=x.lo.device)[:, None], torch.arange(d, device=x.lo.device)[None, :], cols] = a.e
    a = Affine(a.c, a.G, torch.zeros_like(a.e))
    theta = {n: f.pad(m0 + N * d) for n, f in theta.items()}
    for layer in spec.layers:
        a = linear(a, theta[layer.weight], theta[layer.bias] if layer.bias else None)
        if layer.relu:
            a, _ = a.relu()
    return a
