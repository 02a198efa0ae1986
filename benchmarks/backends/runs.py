"""One ``certified_train`` run of the benchmark, with the test certified accuracy of every epoch."""
from __future__ import annotations

import contextlib
import statistics
import time

import mibpcert.train as mtrain
from mibpcert.certificates import certified_mask, certify
from mibpcert.config import TrainConfig
from mibpcert.interval.tensor import Interval
from mibpcert.model import mlp
from mibpcert.solvers import SolverUnavailable
from mibpcert.threats import LinfFeatures
from mibpcert.train import BoundsDiverged, certified_train


@contextlib.contextmanager
def record_epoch_boxes(store: list):
    """``certified_train(select_epoch=True)`` scores every epoch's box with ``certified_mask``,
    the name ``mibpcert.train`` imported from ``mibpcert.certificates``; wrapping that name hands us
    each epoch's box, so one run gives both the final and the validation-selected epoch."""
    orig = mtrain.certified_mask

    def wrapped(spec, box, *args, **kwargs):
        store.append({k: (v.lo.clone(), v.hi.clone()) for k, v in box.items()})
        return orig(spec, box, *args, **kwargs)

    mtrain.certified_mask = wrapped
    try:
        yield
    finally:
        mtrain.certified_mask = orig


def train_run(d, hidden: int, seed: int, eps: float, lr: float, epochs: int, method: str = "interval",
              backend: str = "highs", mode: str = "per_sample", relax: str = "lp", workers: int = 1,
              time_limit: float | None = None, loss: str = "hinge", batch: int = 100, widths=None) -> dict:
    """Train with ``select_epoch`` on the validation set; returns per-epoch test certified accuracy
    (interval certificate of each epoch's box), the selected and final epoch, logs and timings."""
    model = mlp(widths or [2, hidden, 1], seed=seed)
    select = d.X_val is not None
    cfg = TrainConfig(epochs=epochs, lr=lr, batch_size=batch, loss=loss, method=method, backend=backend, mode=mode,
                      relax=relax, workers=workers, time_limit=time_limit, select_epoch=select, val_eps=eps)
    boxes: list = []
    t0 = time.perf_counter()
    out = dict(ok=True, note="", hidden=hidden, seed=seed, eps=eps, method=method, backend=backend, mode=mode,
               relax=relax, workers=workers)
    try:
        with record_epoch_boxes(boxes):
            res = certified_train(model, d.X_train, d.y_train, LinfFeatures(eps), cfg,
                                  X_val=d.X_val if select else None, y_val=d.y_val if select else None)
    except BoundsDiverged as e:
        out.update(ok=False, note=f"bounds diverged: {e}", seconds=time.perf_counter() - t0)
        return out
    except Exception as e:  # SolverUnavailable (licence too small) and friends: report, do not crash
        kind = "licence too small" if isinstance(e, SolverUnavailable) and "licen" in str(e) else type(e).__name__
        out.update(ok=False, note=f"{kind}: {str(e)[:160]}", seconds=time.perf_counter() - t0)
        return out
    total = time.perf_counter() - t0
    spec = res.spec
    if select:
        if len(boxes) != epochs:
            raise RuntimeError(f"epoch hook saw {len(boxes)} boxes for {epochs} epochs: certified_train changed, update this script")
        test_acc = []
        for b in boxes:
            box = {k: Interval(lo, hi, check=False) for k, (lo, hi) in b.items()}
            test_acc.append(float(certified_mask(spec, box, d.X_test, d.y_test, eps).double().mean()))
        rep = certify(res, d.X_test, d.y_test, test_eps=eps)  # selected epoch, through the public API
        if abs(rep.certified_accuracy - test_acc[res.selected_epoch]) > 1e-12:
            raise RuntimeError("hooked epoch box disagrees with certify() on the selected epoch")
        out.update(final_acc=test_acc[-1], best_acc=test_acc[res.selected_epoch], selected=res.selected_epoch,
                   clean_acc=rep.clean_accuracy,
                   test_curve=test_acc, val_curve=list(res.epoch_val_certified))
    lg = res.log
    steps = [s.seconds for s in lg]
    per_epoch: dict[int, float] = {}
    for s in lg:
        per_epoch[s.epoch] = per_epoch.get(s.epoch, 0.0) + s.seconds
    out.update(
        seconds=total, step_seconds=steps, epoch_seconds=statistics.mean(per_epoch.values()),
        overhead=total - sum(steps), mean_width=[s.mean_width for s in lg], max_width=[s.max_width for s in lg],
        step_ratio=[s.width_ratio for s in lg], solver_bounds=sum(s.solver_bounds for s in lg),
        fallback_bounds=sum(s.fallback_bounds for s in lg),
    )
    return out


def cum_ratio(run: dict, ref: dict) -> float | None:
    if not run.get("ok") or not ref.get("ok") or "mean_width" not in run:
        return None
    a, b = run["mean_width"][-1], ref["mean_width"][len(run["mean_width"]) - 1]
    return a / b if b > 0 else 1.0
