"""MIP encoding of a threat's region: the training inputs and labels as program variables.

The generic encoding reads the threat's :class:`~mibpcert.threats.Region`: a sample's features lie
in its box and its label in its allowed set. In ``per_sample`` mode the caller says whether the
sample is picked (poisoned region) or not (base region). In ``joint`` mode a budget of k picked
samples gets one binary ``p_i`` per sample with ``sum p_i <= k``; every change beyond the base
region is gated by ``p_i`` (``x_i - base_hi <= (pois_hi - base_hi) p_i`` and the mirror row;
labels outside the base set need ``p_i = 1``). Both are exact descriptions of the region model, so
the program's feasible set contains every poisoned batch the threat allows.
"""
from __future__ import annotations

import numpy as np

from .encoder import Encoder, Vec


def as_array(t) -> np.ndarray:
    """A tensor's values as a float64 numpy array on the CPU (program data is float64)."""
    return t.detach().to("cpu").double().numpy()


def label_vec(enc: Encoder, allowed, clean_row, task: str, name: str = "label") -> Vec:
    """Label encoding of one sample: the 0/1 label (binary), a one-hot vector (multiclass) or the
    target vector (regression, ``allowed`` = (lo, hi))."""
    if task == "regression":
        lo, hi = allowed
        return enc.var_or_const(lo, hi, clean_row, name=name)
    allowed = np.asarray(allowed, dtype=bool)
    y = int(clean_row)
    if task == "binary":
        if allowed.all():
            return enc.binaries(1, [float(y)], name=name)
        return enc.const([float(np.argmax(allowed))])
    C = allowed.shape[0]
    onehot = enc.const(np.eye(C)[y] if allowed.sum() == 1 and allowed[y] else np.eye(C)[np.argmax(allowed)])
    if allowed.sum() > 1:
        sel = np.nonzero(allowed)[0]
        b = enc.binaries(len(sel), (sel == y).astype(float), name=name)
        enc.equal(b.idx, np.ones(len(sel)), 1.0)
        onehot = enc.const(np.zeros(C))
        onehot.start = np.eye(C)[y]
        onehot.idx[sel], onehot.lo[sel], onehot.hi[sel] = b.idx, 0.0, 1.0
    return onehot


def labels_of(region_labels, i: int, task: str):
    """Sample i's allowed labels: a boolean class mask, or the (lo, hi) target box (regression)."""
    if task == "regression":
        return (as_array(region_labels.lo[i]), as_array(region_labels.hi[i]))
    return as_array(region_labels[i]).astype(bool)


def clean_label(y, i: int, task: str):
    """Sample i's clean label: its class, or its target vector (regression)."""
    return as_array(y[i]).reshape(-1) if task == "regression" else int(y[i])


def region_sample(enc: Encoder, region, X, y, i: int, picked: bool, task: str) -> tuple[Vec, Vec]:
    """Sample i of the batch in its poisoned region (``picked``) or its base region."""
    feats = region.poisoned_features if picked else region.features
    labels = region.poisoned_labels if picked else region.labels
    x = enc.var_or_const(as_array(feats.lo[i]), as_array(feats.hi[i]), as_array(X[i]), name=f"x{i}")
    lab = label_vec(enc, labels_of(labels, i, task), clean_label(y, i, task), task, name=f"y{i}")
    return x, lab


def region_batch(enc: Encoder, region, X, y, task: str) -> tuple[list[Vec], list[Vec]]:
    """Every sample of the batch; with a budget k < B, gated by one pick binary per sample."""
    B = X.shape[0]
    k = region.k
    if k is None or k >= B:
        pairs = [region_sample(enc, region, X, y, i, True, task) for i in range(B)]
        return [p[0] for p in pairs], [p[1] for p in pairs]
    picks = enc.binaries(B, np.zeros(B), name="pick")
    enc.row(picks.idx, np.ones(B), hi=float(k))
    xs, labs = [], []
    for i in range(B):
        p = picks.idx[i]
        blo, bhi = as_array(region.features.lo[i]), as_array(region.features.hi[i])
        plo, phi = as_array(region.poisoned_features.lo[i]), as_array(region.poisoned_features.hi[i])
        x = enc.var_or_const(plo, phi, as_array(X[i]), name=f"x{i}")
        _gate_box(enc, x, blo, bhi, plo, phi, p)
        task_lab = labels_of(region.poisoned_labels, i, task)
        lab = label_vec(enc, task_lab, clean_label(y, i, task), task, name=f"y{i}")
        if task == "regression":
            (blo_t, bhi_t), (plo_t, phi_t) = labels_of(region.labels, i, task), task_lab
            _gate_box(enc, lab, blo_t, bhi_t, plo_t, phi_t, p)
        else:
            base_allowed = labels_of(region.labels, i, task)
            extra = task_lab & ~base_allowed
            if task == "binary":
                if lab.idx[0] >= 0 and extra.any():
                    # the label may leave the base set only when picked: |y - y_base| <= p
                    if np.argmax(base_allowed) == 0:
                        enc.row([lab.idx[0], p], [1.0, -1.0], hi=0.0)  # y <= p
                    else:
                        enc.row([lab.idx[0], p], [-1.0, -1.0], hi=-1.0)  # 1 - y <= p
            elif extra.any():
                sel = np.nonzero(extra)[0]
                enc.row(np.concatenate([lab.idx[sel], [p]]), np.concatenate([np.ones(len(sel)), [-1.0]]), hi=0.0)
        xs.append(x)
        labs.append(lab)
    return xs, labs


def _gate_box(enc: Encoder, v: Vec, blo, bhi, plo, phi, p: int) -> None:
    """v in the poisoned box always, and in the base box unless pick p is 1."""
    for j in range(len(v)):
        if v.idx[j] < 0:
            continue
        if phi[j] > bhi[j]:
            enc.row([v.idx[j], p], [1.0, -(phi[j] - bhi[j])], hi=bhi[j])
        if plo[j] < blo[j]:
            enc.row([v.idx[j], p], [1.0, (blo[j] - plo[j])], lo=blo[j])


# ---------------------------------------------------------------------------------------------
# building blocks of the structured threats (mibpcert.threats) and of unions of threats
# ---------------------------------------------------------------------------------------------
def pick_binaries(enc: Encoder, B: int, k, force: bool = False) -> list:
    """The joint-mode budget: ``[True] * B`` when every sample may be picked (``k`` None or
    ``>= B``) and nothing needs a pick variable, else one binary per sample with ``sum <= k``
    (``force``: binaries even without a budget row, for threats whose picked samples differ from
    their unpicked ones in more than a free perturbation, e.g. a forced label). Entries are
    ``True`` or the index of the sample's pick binary."""
    budget = k is not None and k < B
    if not budget and not force:
        return [True] * B
    pv = enc.binaries(B, np.zeros(B), name="pick")
    if budget:
        enc.row(pv.idx, np.ones(B), hi=float(k))
    return [int(p) for p in pv.idx]


def clean_label_vec(enc: Encoder, region, y, i: int, task: str) -> Vec:
    """Sample i's label in the region's base label set (the clean label for feature threats)."""
    return label_vec(enc, labels_of(region.labels, i, task), clean_label(y, i, task), task, name=f"y{i}")


def gated_box(enc: Encoder, lo, hi, clean, pick, name: str = "x") -> Vec:
    """A vector in the box [lo, hi] (which contains ``clean``) that equals ``clean`` unless the
    sample is picked: ``pick`` True (free in the box), False (the constant ``clean``) or the index
    of a pick binary p (``x - clean <= (hi - clean) p`` and ``x - clean >= (lo - clean) p``:
    exact for binary p)."""
    clean = np.asarray(clean, dtype=np.float64).reshape(-1)
    if pick is False:
        return enc.const(clean)
    x = enc.var_or_const(lo, hi, clean, name=name)
    if pick is not True:
        _gate_box(enc, x, clean, clean, np.asarray(lo, dtype=np.float64).reshape(-1), np.asarray(hi, dtype=np.float64).reshape(-1), pick)
    return x


def choose_vector(enc: Encoder, cands: np.ndarray, clean: int, pick, name: str = "x") -> Vec:
    """A vector equal to one row of ``cands`` (m, K): one binary per row with sum 1 and the
    vector equal to the chosen row (exact). ``clean`` is the row of the clean value (the warm
    start); ``pick``: True (any row) or the index of a pick binary p (the clean row unless
    p = 1: ``b_clean + p >= 1``)."""
    m, K = cands.shape
    b = enc.binaries(m, (np.arange(m) == clean).astype(float), name=f"{name}_choice")
    enc.equal(b.idx, np.ones(m), 1.0)
    x = enc.var(cands.min(0), cands.max(0), cands[clean], name=name)
    for j in range(K):
        enc.equal(np.concatenate([[x.idx[j]], b.idx]), np.concatenate([[-1.0], cands[:, j]]), 0.0)
    if pick is not True:
        enc.row([b.idx[clean], pick], [1.0, 1.0], lo=1.0)
    return x


def one_hot_selector(enc: Encoder, n: int, name: str = "choose") -> Vec:
    """n binaries with sum 1 (the first one set in the warm start)."""
    s = enc.binaries(n, (np.arange(n) == 0).astype(float), name=name)
    enc.equal(s.idx, np.ones(n), 1.0)
    return s


def _is_01(v: Vec) -> bool:
    """Every entry a binary-valued quantity (a 0/1 constant or a variable in [0, 1])."""
    const01 = (~v.is_var) & ((v.lo == 0) | (v.lo == 1))
    var01 = v.is_var & (v.lo >= 0) & (v.hi <= 1)
    return bool((const01 | var01).all())


def select(enc: Encoder, sel: Vec, options: list[Vec], name: str = "sel", binary: bool | None = None) -> Vec:
    """``out = options[t]`` for the t with ``sel[t] = 1`` (``sel``: one-hot binaries, sum 1).

    Entries that are the same constant in every option stay constant; every other entry is a new
    variable in the hull of the options' bounds ``[L, U]`` with, per option t, the big-M rows
    ``out - o_t <= (U - lo_t)(1 - s_t)`` and ``out - o_t >= (L - hi_t)(1 - s_t)``: ``s_t = 1``
    forces ``out = o_t``, ``s_t = 0`` leaves a row implied by the bounds. Exact for binary s.
    ``binary``: declare the new variables binary (default: when every option is 0/1-valued, e.g.
    labels)."""
    T = len(options)
    n = len(options[0])
    if binary is None:
        binary = all(_is_01(o) for o in options)
    t0 = int(np.argmax(sel.start)) if len(sel) else 0
    out = Vec(options[t0].idx.copy(), options[t0].lo.copy(), options[t0].hi.copy(), options[t0].start.copy())
    lo = np.min(np.stack([o.lo for o in options]), axis=0)
    hi = np.max(np.stack([o.hi for o in options]), axis=0)
    const_same = np.all(np.stack([~o.is_var for o in options]), axis=0) & (lo == hi)
    free = np.nonzero(~const_same)[0]
    out.idx[const_same] = -1
    if len(free) == 0:
        return out
    v = enc.var(lo[free], hi[free], out.start[free], binary=binary, name=name)
    for t, j in enumerate(free):
        xi, L, U = int(v.idx[t]), float(lo[j]), float(hi[j])
        for s_t, o in zip(sel.idx, options):
            if o.is_var[j]:
                oi, ol, oh = int(o.idx[j]), float(o.lo[j]), float(o.hi[j])
                enc.row([xi, oi, int(s_t)], [1.0, -1.0, U - ol], hi=U - ol)
                enc.row([xi, oi, int(s_t)], [1.0, -1.0, L - oh], lo=L - oh)
            else:
                c = float(o.lo[j])
                enc.row([xi, int(s_t)], [1.0, U - c], hi=U)
                enc.row([xi, int(s_t)], [1.0, L - c], lo=L)
    out.idx[free], out.lo[free], out.hi[free] = v.idx, v.lo, v.hi
    return out


def box_union_sample(enc: Encoder, regions: list, X, y, i: int, picked: bool, task: str, sel: Vec) -> tuple[Vec, Vec]:
    """Sample i in the union of several box-and-label-set regions (each in its poisoned or base
    region), chosen by the one-hot selector ``sel``: features ``sum_t s_t lo_t <= x <= sum_t s_t
    hi_t`` (gated bounds, exact: the selected region's box), labels in the union of the label
    sets with every class outside some region's set allowed only when a region allowing it is
    selected."""
    T = len(regions)
    feats = [r.poisoned_features if picked else r.features for r in regions]
    labs = [r.poisoned_labels if picked else r.labels for r in regions]
    los = np.stack([as_array(f.lo[i]) for f in feats])
    his = np.stack([as_array(f.hi[i]) for f in feats])
    x = enc.var_or_const(los.min(0), his.max(0), as_array(X[i]), name=f"x{i}")
    _gate_bounds(enc, x, los, his, sel)
    if task == "regression":
        tl = np.stack([labels_of(lab, i, task)[0] for lab in labs])
        th = np.stack([labels_of(lab, i, task)[1] for lab in labs])
        lab = enc.var_or_const(tl.min(0), th.max(0), clean_label(y, i, task), name=f"y{i}")
        _gate_bounds(enc, lab, tl, th, sel)
        return x, lab
    allowed = np.stack([labels_of(lab, i, task) for lab in labs])  # (T, K)
    union = allowed.any(0)
    lab = label_vec(enc, union, clean_label(y, i, task), task, name=f"y{i}")
    if task == "binary":
        if lab.idx[0] >= 0:
            for t in range(T):
                if allowed[t].sum() == 1:  # region t allows one class c only: s_t = 1 -> y = c
                    if allowed[t][0]:
                        enc.row([lab.idx[0], sel.idx[t]], [1.0, 1.0], hi=1.0)  # y <= 1 - s_t
                    else:
                        enc.row([lab.idx[0], sel.idx[t]], [1.0, -1.0], lo=0.0)  # y >= s_t
        return x, lab
    for c in np.nonzero(union)[0]:
        if lab.idx[c] < 0 or allowed[:, c].all():
            continue
        ok = np.nonzero(allowed[:, c])[0]
        enc.row(np.concatenate([[lab.idx[c]], sel.idx[ok]]), np.concatenate([[1.0], -np.ones(len(ok))]), hi=0.0)
    return x, lab


def _gate_bounds(enc: Encoder, v: Vec, los: np.ndarray, his: np.ndarray, sel: Vec) -> None:
    """``sum_t s_t lo_t <= v <= sum_t s_t hi_t`` for a one-hot selector (rows only where needed)."""
    for j in range(len(v)):
        if v.idx[j] < 0:
            continue
        if not np.all(los[:, j] == v.lo[j]):
            enc.row(np.concatenate([[v.idx[j]], sel.idx]), np.concatenate([[1.0], -los[:, j]]), lo=0.0)
        if not np.all(his[:, j] == v.hi[j]):
            enc.row(np.concatenate([[v.idx[j]], sel.idx]), np.concatenate([[1.0], -his[:, j]]), hi=0.0)
