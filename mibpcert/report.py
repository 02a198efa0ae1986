"""Reports of a certified training run: a JSON record, a text summary table and a plot.

Used by the command line (``mibpcert run``) and usable from scripts::

    result = certified_train(model, X, y, threat, cfg)
    rep = certify(result, X_test, y_test, test_eps)
    doc = write_report("out/report.json", result, rep, config={...}, timings={"total": 3.2})
    print(format_summary(doc["summary"]))
    plot_run("out/plot.png", result, rep, data)

JSON has no infinity or NaN: non-finite floats are written as the strings ``"inf"``, ``"-inf"``
and ``"nan"`` (``float()`` reads them back).
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import textwrap
from functools import partial
from typing import Any, Callable

import numpy as np
import torch

from .certificates import CertReport, certified_mask, logit_bounds, margin_bounds, predicted_classes
from .data_checks import check_test_data
from .interval.tensor import outward_rounding
from .train import fallback_counts, fallback_note
from .version import __version__

__all__ = ["SCHEMA_VERSION", "build_report", "epoch_accuracy", "format_summary", "json_safe", "plot_run", "run_figure",
           "run_summary", "write_report"]

# Version of the report.json layout (docs/report.schema.json): "MAJOR.MINOR". MINOR goes up when
# fields are added; MAJOR when a field is removed or renamed or its meaning or type changes.
SCHEMA_VERSION = "1.2"


# ---------------------------------------------------------------------------------------------
# JSON
# ---------------------------------------------------------------------------------------------
def json_safe(obj: Any) -> Any:
    """Convert ``obj`` to plain JSON types: tensors to lists, tuples to lists, dataclasses to
    dicts, non-finite floats to ``"inf"``/``"-inf"``/``"nan"``."""
    if isinstance(obj, bool) or obj is None or isinstance(obj, str):
        return obj
    if isinstance(obj, int):
        return int(obj)
    if isinstance(obj, float):
        if math.isnan(obj):
            return "nan"
        if math.isinf(obj):
            return "inf" if obj > 0 else "-inf"
        return obj
    if isinstance(obj, torch.Tensor):
        return json_safe(obj.detach().cpu().tolist())
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        return json_safe(dataclasses.asdict(obj))
    if isinstance(obj, dict):
        return {str(k): json_safe(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple, set)):
        return [json_safe(v) for v in obj]
    if hasattr(obj, "item") and callable(obj.item):  # numpy scalars
        return json_safe(obj.item())
    return str(obj)


# ---------------------------------------------------------------------------------------------
# summary
# ---------------------------------------------------------------------------------------------
def run_summary(result, report: CertReport, timings: dict | None = None, backdoor: list | None = None) -> dict:
    """The headline numbers of a run as a flat dict (floats may be non-finite). ``backdoor``:
    :class:`~mibpcert.backdoor.BackdoorReport` of each shared trigger of the threat; the summary
    keeps the worst (largest) bound on the trigger's attack success."""
    widths = torch.cat([w.reshape(-1) for w in result.widths().values()])
    cfg = result.config
    steps_selected = sum(1 for s in result.log if s.epoch <= result.selected_epoch)
    s = {
        "clean_accuracy": report.clean_accuracy,
        "certified_accuracy": report.certified_accuracy,
        "accuracy_bounds": list(report.accuracy_bounds) if report.accuracy_bounds is not None else None,
        "test_loss_bounds": list(report.test_loss_bounds),
        "test_eps": report.test_eps,
        "trigger_eps": report.trigger_eps,
        "backdoor_success_upper": report.backdoor_success_upper,
        "n_test": int(report.certified.shape[0]),
        "n_certified": int(report.certified.sum()),
        "mean_param_width": float(widths.mean()),
        "max_param_width": float(widths.max()),
        "num_params": int(result.spec.num_params),
        "steps": len(result.log),
        "steps_to_selected_epoch": steps_selected,
        "epochs": cfg.epochs,
        "selected_epoch": int(result.selected_epoch),
        "epoch_val_certified": list(result.epoch_val_certified),
        "method": cfg.method,
        "relational": bool(cfg.relational),
        "attacker": "fixed" if cfg.method == "affine" or cfg.relational else "per_step",
        "backend": cfg.backend if cfg.method == "mibp" else None,
        "loss": cfg.loss,
        "solver_seconds": float(sum(x.solver_seconds for x in result.log)),
        "diverged": result.diverged,
    }
    if cfg.method == "mibp":
        solved, fell_back, reasons = fallback_counts(result.log)
        s["solver_bounds"], s["fallback_bounds"], s["fallback_reasons"] = solved, fell_back, reasons
        s["licence_fallback_programs"] = int(sum(x.licence_fallback_programs for x in result.log))
        s["skipped_objectives"] = int(sum(x.skipped_objectives for x in result.log))
    if backdoor:
        worst = max(backdoor, key=lambda b: b.success_upper)
        s["trigger_attack_success_upper"] = worst.success_upper
        s["trigger_certified_not_flipped"] = worst.certified_fraction
        s["trigger_target"] = worst.target
    for name, sec in (timings or {}).items():
        s[f"{name}_seconds"] = float(sec)
    return s


def _pct(v) -> str:
    return "n/a" if v is None else f"{100.0 * float(v):.1f} %"


def _num(v) -> str:
    if v is None:
        return "n/a"
    v = float(v)
    if math.isnan(v) or math.isinf(v):
        return str(v)
    return f"{v:.4g}"


def format_summary(summary: dict, title: str | None = None) -> str:
    """A fixed-width text table of :func:`run_summary` (or the ``summary`` of a report)."""
    s = {k: (float(v) if v in ("inf", "-inf", "nan") else v) for k, v in summary.items()}
    rows: list[tuple[str, str]] = []
    rows.append(("clean accuracy", _pct(s.get("clean_accuracy"))))
    cert = _pct(s.get("certified_accuracy"))
    if s.get("certified_accuracy") is not None:
        cert += f"  ({s.get('n_certified')}/{s.get('n_test')}, test_eps={_num(s.get('test_eps'))})"
    rows.append(("certified accuracy", cert))
    ab = s.get("accuracy_bounds")
    rows.append(("accuracy bounds", "n/a" if ab is None else f"[{_pct(ab[0])}, {_pct(ab[1])}]"))
    lb = s.get("test_loss_bounds")
    rows.append(("test loss bounds", "n/a" if lb is None else f"[{_num(lb[0])}, {_num(lb[1])}]"))
    if s.get("backdoor_success_upper") is not None:
        rows.append(("backdoor success <=", f"{_pct(s['backdoor_success_upper'])}  (trigger_eps={_num(s.get('trigger_eps'))})"))
    if s.get("trigger_attack_success_upper") is not None:
        tgt = s.get("trigger_target")
        rows.append(("trigger success <=", f"{_pct(s['trigger_attack_success_upper'])}  "
                     f"(shared trigger{'' if tgt is None else f', target {tgt}'}; "
                     f"{_pct(s.get('trigger_certified_not_flipped'))} certified not flipped)"))
    rows.append(("param width mean/max", f"{_num(s.get('mean_param_width'))} / {_num(s.get('max_param_width'))}  ({s.get('num_params')} parameters)"))
    steps = f"{s.get('steps')} run ({s.get('epochs')} epoch{'' if s.get('epochs') == 1 else 's'})"
    if s.get("steps_to_selected_epoch") is not None:
        steps += f", box after step {s['steps_to_selected_epoch']} (epoch {s.get('selected_epoch') + 1} of {s.get('epochs')})"
    rows.append(("steps", steps))
    if s.get("total_seconds") is not None:
        t = f"{s['total_seconds']:.1f} s"
        parts = [f"{k[:-8]} {s[k]:.1f} s" for k in ("train_seconds", "certify_seconds") if s.get(k) is not None]
        if parts:
            t += f"  ({', '.join(parts)})"
        rows.append(("total time", t))
    method = str(s.get("method"))
    if s.get("backend"):
        method += f" / {s['backend']}"
    if s.get("relational"):
        method += " on affine forms (relational)"
    rows.append(("method / backend", method))
    if s.get("attacker") == "fixed":
        rows.append(("attacker", "poisons the training set once (the same poisoned data in every epoch)"))
    warnings: list[str] = []
    if s.get("solver_bounds") is not None:
        line, warning = fallback_note(int(s["solver_bounds"]), int(s.get("fallback_bounds") or 0),
                                      s.get("fallback_reasons") or {})
        rows.append(("solver bounds", line))
        if s.get("skipped_objectives"):
            rows.append(("skipped objectives", f"{s['skipped_objectives']} bounded without a solver (range known from "
                                               "the box, or no wider than a solver bound could tighten)"))
        if s.get("licence_fallback_programs"):
            rows.append(("licence fallback", f"{s['licence_fallback_programs']} programs too large for the "
                                             f"{s.get('backend')} licence, bounded by HiGHS instead"))
        if warning:
            warnings.append(warning)
    if s.get("diverged"):
        warnings.append(f"WARNING: training stopped early, the bounds diverged ({s['diverged']}); "
                        f"the box is that of epoch {s.get('selected_epoch') + 1}, the best finished one")
    w = max(len(k) for k, _ in rows)
    lines = [f"{k:<{w}}  {v}" for k, v in rows]
    width = max(len(x) for x in lines + ([title] if title else []))
    out = []
    if title:
        out += [title, "=" * width]
    else:
        out.append("=" * width)
    out += lines + ["=" * width] + warnings
    return "\n".join(out)


# ---------------------------------------------------------------------------------------------
# report.json
# ---------------------------------------------------------------------------------------------
def build_report(result, report: CertReport, config: dict | None = None, timings: dict | None = None,
                 extra: dict | None = None, backdoor: list | None = None) -> dict:
    """The JSON document of a run (already :func:`json_safe`).

    Keys: ``schema_version`` (:data:`SCHEMA_VERSION`, the layout described by
    ``docs/report.schema.json``), ``mibpcert_version``,
    ``config`` (the given config echo plus ``threat_describe`` and the full ``train_config``),
    ``summary`` (:func:`run_summary`), ``selected_epoch``, ``log`` (one dict per SGD step),
    ``per_sample`` (``certified``, ``provably_wrong``, ``nominal_correct`` lists over the test set),
    and with ``backdoor`` (one :class:`~mibpcert.backdoor.BackdoorReport` per shared trigger of
    the threat) ``backdoor``: per trigger its summary (with the trigger's ``mask``,
    ``trigger_eps`` and ``target``) and ``per_point`` ``safe`` and ``eligible`` flags.
    """
    cfg_echo = dict(config or {})
    cfg_echo["threat_describe"] = result.threat.describe()
    cfg_echo["train_config"] = result.config.to_dict()
    doc = {
        "schema_version": SCHEMA_VERSION,
        "mibpcert_version": __version__,
        "config": cfg_echo,
        "summary": run_summary(result, report, timings, backdoor),
        "selected_epoch": int(result.selected_epoch),
        "log": [dataclasses.asdict(s) for s in result.log],
        "per_sample": {
            "certified": [bool(v) for v in report.certified.cpu().tolist()],
            "provably_wrong": [bool(v) for v in report.provably_wrong.cpu().tolist()],
            "nominal_correct": [bool(v) for v in report.nominal_correct.cpu().tolist()],
        },
    }
    if backdoor:
        doc["backdoor"] = [
            {**b.summary(), "per_point": {"safe": [bool(v) for v in b.safe.cpu().tolist()],
                                          "eligible": [bool(v) for v in b.eligible.cpu().tolist()]}}
            for b in backdoor
        ]
    if extra:
        clash = sorted(set(extra) & set(doc))
        if clash:
            raise ValueError(f"build_report: extra keys {clash} would replace the report's own")
        doc.update(extra)
    return json_safe(doc)


def write_report(path: str, result, report: CertReport, config: dict | None = None, timings: dict | None = None,
                 extra: dict | None = None, backdoor: list | None = None) -> dict:
    """Write :func:`build_report` to ``path`` (strict JSON, directories created); return it."""
    doc = build_report(result, report, config, timings, extra, backdoor)
    d = os.path.dirname(os.path.abspath(path))
    os.makedirs(d, exist_ok=True)
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f, indent=1, allow_nan=False)
        f.write("\n")
    os.replace(tmp, path)
    return doc


# ---------------------------------------------------------------------------------------------
# plot
# ---------------------------------------------------------------------------------------------
def decision_band(result, grid: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """For inputs ``grid`` (M, 2): ``(band, nominal_class, nominal_logits)``. ``band`` is True where some model in
    the parameter box may predict differently from others: for one logit where the logit bounds
    contain 0 (or are not finite), for several where the nominal class's margin is not certified."""
    spec, cfg = result.spec, result.config
    lo0 = next(iter(result.param_bounds.values()))[0]
    X = grid.to(device=lo0.device, dtype=lo0.dtype)
    box = result.box()
    with torch.no_grad():
        z = result.nominal(X)
    with outward_rounding(cfg.outward_rounding):
        if spec.out_features == 1:
            lg = logit_bounds(spec, box, X, 0.0, exact=cfg.exact_matmul)
            lo, hi = lg.lo[:, 0], lg.hi[:, 0]
            decided = torch.isfinite(lo) & torch.isfinite(hi) & ((lo > 0) | (hi < 0))
            cls = (z[:, 0] > 0).long()
        else:
            cls = z.argmax(dim=1)
            m = margin_bounds(spec, box, X, cls.to(X.dtype), 0.0, exact=cfg.exact_matmul)
            decided = torch.isfinite(m.lo) & torch.isfinite(m.hi) & (m.lo > 0)
    return (~decided).cpu(), cls.cpu(), z.detach().cpu()


def _positive(a: np.ndarray) -> np.ndarray:
    """``a`` with its non-positive entries as NaN, for a log axis."""
    return np.where(a > 0, a, np.nan)


def _epoch_ends(result) -> dict[int, int]:
    """The last SGD step of each (0-based) epoch in the log."""
    return {s.epoch: s.step for s in result.log}


def _step_axis(ax, result, lines: list[np.ndarray]) -> None:
    """Shared look of the per-step panels: log y-axis (when anything is positive), integer
    "SGD step" x-axis, the end of the selected epoch marked, legend and grid."""
    from matplotlib.ticker import MaxNLocator

    if any(np.isfinite(_positive(a)).any() for a in lines):
        ax.set_yscale("log")
    step = _epoch_ends(result).get(result.selected_epoch)
    if step is not None:
        ax.axvline(step, color="k", ls=":", lw=1,
                   label=f"box returned: end of epoch {result.selected_epoch + 1} of {result.config.epochs}")
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("SGD step")
    ax.legend(loc="best", fontsize=7.5, ncol=2 if len(lines) > 5 else 1)
    ax.grid(True, which="both", alpha=0.3)


def _plot_widths(ax, result) -> None:
    """Mean and largest width of the parameter box per step."""
    steps = np.array([s.step for s in result.log])
    mean = np.array([s.mean_width for s in result.log], dtype=float)
    mx = np.array([s.max_width for s in result.log], dtype=float)
    ax.plot(steps, _positive(mean), label="mean width")
    ax.plot(steps, _positive(mx), label="max width")
    ax.set_ylabel("parameter interval width")
    ax.set_title("parameter box width per step")
    _step_axis(ax, result, [mx])
    _caption(ax, "Mean and largest width of the parameter box after each SGD step (log scale); every parameter any "
                 "allowed poisoning can reach lies in the box.")


def _plot_tensor_widths(ax, result) -> None:
    """Mean width of each parameter tensor per step, with the ends of the epochs marked."""
    steps = np.array([s.step for s in result.log])
    lines = [np.array([s.tensor_mean_width.get(n, np.nan) for s in result.log], dtype=float)
             for n in result.log[-1].tensor_mean_width]
    for name, w in zip(result.log[-1].tensor_mean_width, lines):
        ax.plot(steps, _positive(w), label=name)
    ends = _epoch_ends(result)
    for epoch, step in ends.items() if len(ends) < len(steps) else ():  # not when every step is an epoch
        if epoch != result.selected_epoch and step != steps[-1]:
            ax.axvline(step, color="0.75", lw=0.8)
    ax.set_ylabel("mean interval width")
    ax.set_title("parameter box width per tensor")
    _step_axis(ax, result, lines)
    _caption(ax, "Mean width of each parameter tensor's interval (state_dict names: layer.weight, layer.bias) "
                 "after each SGD step (log scale); thin grey lines: ends of epochs.")


def _caption(ax, text: str, under=None) -> None:
    """A few lines of explanation under a panel: below its x-axis label, or below the artist
    ``under`` (a legend placed under the axes). Offsets in points, so any panel height fits."""
    ax.annotate("\n".join(textwrap.wrap(text, 80)), xy=(0.5, 0), xycoords=under or "axes fraction",
                xytext=(0, -6 if under else -36), textcoords="offset points", ha="center", va="top",
                fontsize=7.5, color="0.25")


def _plot_margins(ax, result, report: CertReport, data) -> None:
    """Per test point: the bounds of its margin (correct class minus the best other, over every
    model in the box and test input within test_eps), sorted, with the nominal model's margin."""
    lo = report.margin.lo.detach().cpu().double().numpy()
    hi = report.margin.hi.detach().cpu().double().numpy()
    nominal = None
    if data is not None and getattr(data, "X_test", None) is not None and len(data.X_test) == len(lo):
        param = next(result.nominal.parameters())
        with torch.no_grad():  # the model may live on the GPU; the plot's numbers on the host
            z = result.nominal(data.X_test.to(device=param.device, dtype=param.dtype)).cpu()
        y = data.y_test.reshape(-1).cpu()
        if z.shape[1] == 1:
            nominal = ((2 * y - 1) * z[:, 0]).double().cpu().numpy()
        else:
            zy = z.gather(1, y.long().reshape(-1, 1))[:, 0]
            other = z.clone().scatter_(1, y.long().reshape(-1, 1), -torch.inf).amax(1)
            nominal = (zy - other).double().cpu().numpy()
    order = np.argsort(nominal if nominal is not None else (np.nan_to_num(lo) + np.nan_to_num(hi)) / 2, kind="stable")
    cert = report.certified.detach().cpu().numpy().astype(bool)[order]
    idx = np.arange(len(lo))
    span = np.nanmax(np.abs(np.concatenate([lo[np.isfinite(lo)], hi[np.isfinite(hi)], [1.0]])))
    clip = lambda a: np.clip(np.nan_to_num(a, nan=0.0, posinf=span, neginf=-span), -span, span)  # noqa: E731
    ax.vlines(idx[cert], clip(lo[order][cert]), clip(hi[order][cert]), colors="tab:green", lw=1.2, label="certified")
    ax.vlines(idx[~cert], clip(lo[order][~cert]), clip(hi[order][~cert]), colors="0.55", lw=1.2, label="not certified")
    if nominal is not None:
        ax.scatter(idx, nominal[order], s=5, color="k", zorder=3, label="nominal model")
    ax.axhline(0.0, color="tab:red", lw=0.8)
    ax.set_yscale("symlog", linthresh=max(1e-3, 1e-3 * span))
    ca = report.certified_accuracy
    ax.set_title(f"margin bounds per test point; certified {100 * ca:.1f} %")
    ax.set_xlabel("test point (sorted by the nominal margin)")
    ax.set_ylabel("margin bounds")
    ax.legend(loc="best", fontsize=7.5)
    ax.grid(True, which="both", alpha=0.3)
    _caption(ax, f"Each bar spans the margin (score of the true class minus the best other) of one test point over "
                 f"every model in the box and test inputs within {report.test_eps:g}; green bars lie above 0: certified.")


def epoch_accuracy(result, X_test, y_test, test_eps: float = 0.0) -> tuple[list[float], list[float]]:
    """Per finished epoch (``result.epochs``, empty for a result saved without them): the clean
    accuracy of that epoch's nominal model and the certified accuracy of that epoch's box on the
    test set at ``test_eps``, from the box alone (:func:`~mibpcert.certificates.certified_mask`, as
    :func:`~mibpcert.certificates.certify` without affine forms or MIBP margins). Classification only."""
    spec, cfg = result.spec, result.config
    X, y, task, _ = check_test_data(result, X_test, y_test)
    if task == "regression":
        raise ValueError("epoch_accuracy: accuracy needs a classification result, this one is regression")
    clean, cert = [], []
    with outward_rounding(cfg.outward_rounding):
        for ep in result.epochs:
            with torch.no_grad():
                predicted = predicted_classes(spec.forward(ep.nominal, X))
            clean.append(float((predicted == y.long()).double().mean()))
            cert.append(float(certified_mask(spec, ep.box(), X, y, test_eps, exact=cfg.exact_matmul).double().mean()))
    return clean, cert


def _plot_accuracy(ax, result, report: CertReport, acc: tuple[list[float], list[float]]) -> None:
    """Clean and certified test accuracy per epoch, the selected epoch marked; where the report's
    certified accuracy (affine forms or MIBP margins besides the box) differs, it as a star."""
    from matplotlib.ticker import MaxNLocator, PercentFormatter

    clean, cert = acc
    epochs = np.arange(1, len(cert) + 1)
    ax.plot(epochs, clean, marker="o", label="clean (nominal model)")
    ax.plot(epochs, cert, marker="s", color="tab:green", label="certified (box)")
    sel = result.selected_epoch + 1
    ax.axvline(sel, color="k", ls=":", lw=1, label=f"box returned: epoch {sel}")
    ca, note = report.certified_accuracy, ""
    if ca is not None and sel <= len(cert) and ca != cert[sel - 1]:
        ax.plot([sel], [ca], marker="*", ms=12, ls="none", color="tab:olive", label="certified (report)")
        how = "the affine forms of the parameters" if result.relational is not None else "MIBP margin bounds"
        note = f" Star: the report's certified accuracy, which also uses {how} and can exceed the box's."
    ax.set_xlim(0.5, len(cert) + 0.5)
    ax.set_ylim(-0.03, 1.03)
    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.yaxis.set_major_formatter(PercentFormatter(1.0))
    ax.set_xlabel("epoch")
    ax.set_ylabel("test accuracy")
    ax.set_title("test accuracy per epoch")
    ax.legend(loc="best", fontsize=7.5)
    ax.grid(True, alpha=0.3)
    _caption(ax, f"After each epoch: accuracy of the nominal model, and the fraction of test points every model in "
                 f"that epoch's box classifies correctly (test inputs within {report.test_eps:g}).{note}")


def _plot_band(ax, result, report: CertReport, data, resolution: int) -> None:
    """2-D classification: the decision boundary band of the box, the nominal boundary and the data."""
    import matplotlib
    from matplotlib.lines import Line2D
    from matplotlib.patches import Patch
    from matplotlib.transforms import ScaledTranslation

    Xtr = data.X_train.detach().cpu().double().numpy()
    ytr = data.y_train.detach().cpu().numpy().reshape(-1)
    Xte = data.X_test.detach().cpu().double().numpy()
    yte = data.y_test.detach().cpu().numpy().reshape(-1)
    allx = np.concatenate([Xtr, Xte])
    lo, hi = allx.min(axis=0), allx.max(axis=0)
    pad = 0.1 * np.maximum(hi - lo, 1e-6)
    lo, hi = lo - pad, hi + pad
    gx, gy = np.meshgrid(np.linspace(lo[0], hi[0], resolution), np.linspace(lo[1], hi[1], resolution))
    grid = torch.as_tensor(np.stack([gx.ravel(), gy.ravel()], axis=1))
    band, cls, z = decision_band(result, grid)
    band = band.numpy().reshape(gx.shape)
    cls = cls.numpy().reshape(gx.shape)
    cmap = matplotlib.colormaps["coolwarm"]
    n_cls = int(max(cls.max(), ytr.max(), yte.max())) + 1
    colors = [cmap(i / max(n_cls - 1, 1)) for i in range(n_cls)]
    ax.contourf(gx, gy, cls, levels=np.arange(-0.5, n_cls), colors=colors, alpha=0.12)
    ax.contourf(gx, gy, band.astype(float), levels=[0.5, 1.5], colors=["#f2b01e"], alpha=0.45)
    if z.shape[1] == 1:  # smooth nominal boundary z = 0
        zz = z[:, 0].numpy().reshape(gx.shape)
        if zz.min() < 0 < zz.max():
            ax.contour(gx, gy, zz, levels=[0.0], colors="k", linewidths=1.5)
    elif len(np.unique(cls)) > 1:
        ax.contour(gx, gy, cls, levels=np.arange(0.5, n_cls - 0.5), colors="k", linewidths=1.5)
    for c in range(n_cls):
        m = ytr == c
        ax.scatter(Xtr[m, 0], Xtr[m, 1], s=6, color=colors[c], alpha=0.35, linewidths=0, label=f"train, class {c}")
    cert = report.certified.cpu().numpy().astype(bool)
    for c in range(n_cls):
        m = (yte == c) & cert
        ax.scatter(Xte[m, 0], Xte[m, 1], s=28, color=colors[c], edgecolors="k", linewidths=0.6,
                   label=f"test, class {c}, certified")
        m = (yte == c) & ~cert
        ax.scatter(Xte[m, 0], Xte[m, 1], s=30, color=colors[c], marker="x", linewidths=1.4,
                   label=f"test, class {c}, not certified")
    handles, labels = ax.get_legend_handles_labels()
    handles += [Patch(color="#f2b01e", alpha=0.45), Line2D([], [], color="k", lw=1.5)]
    labels += ["boundary band (parameter box)", "nominal decision boundary"]
    below = ax.transAxes + ScaledTranslation(0, -36 / 72, ax.figure.dpi_scale_trans)  # under the x-axis label
    legend = ax.legend(handles, labels, loc="upper center", bbox_to_anchor=(0.5, 0), bbox_transform=below, ncol=3,
                       fontsize=7.5, frameon=False)
    ca = report.certified_accuracy
    ax.set_title(f"decision boundary band; certified accuracy {100 * ca:.1f} %")
    ax.set_xlim(lo[0], hi[0])
    ax.set_ylim(lo[1], hi[1])
    names = getattr(data, "feature_names", None) or ("x1", "x2")
    ax.set_xlabel(names[0])
    ax.set_ylabel(names[1])
    _caption(ax, "Shaded band: where some model in the parameter box (at test radius 0) puts the decision boundary; "
                 "a test point is certified when no reachable model and test input within test_eps misclassifies it.",
             under=legend)


def run_figure(result, report: CertReport, data=None, resolution: int = 200):
    """The figure :func:`plot_run` saves, as a ``matplotlib.figure.Figure`` (not registered with
    pyplot). Row 1: the decision boundary band (classification on 2-D inputs with ``data``), the
    box width per step and the margin bounds per test point (classification); row 2: clean and
    certified test accuracy per epoch (classification with ``data``, results with
    ``result.epochs``) and the box width per parameter tensor per step (results whose log has
    ``tensor_mean_width``). With at most two panels in all they share one row."""
    from matplotlib.figure import Figure

    classify = report.margin is not None
    top: list[tuple[Callable, float]] = []
    if classify and data is not None and result.spec.in_features == 2 and getattr(data, "X_train", None) is not None:
        top.append((partial(_plot_band, result=result, report=report, data=data, resolution=resolution), 1.25))
    top.append((partial(_plot_widths, result=result), 1.0))
    if classify:
        top.append((partial(_plot_margins, result=result, report=report, data=data), 1.0))
    bottom: list[tuple[Callable, float]] = []
    if classify and result.epochs and data is not None and getattr(data, "X_test", None) is not None:
        acc = epoch_accuracy(result, data.X_test, data.y_test, report.test_eps)
        bottom.append((partial(_plot_accuracy, result=result, report=report, acc=acc), 1.0))
    if result.log and result.log[-1].tensor_mean_width:
        bottom.append((partial(_plot_tensor_widths, result=result), 1.0))
    rows = [top + bottom] if len(top) + len(bottom) <= 2 else [top, bottom] if bottom else [top]
    cols = max(len(r) for r in rows)
    heights = [6.6 if ratio > 1 else 5.4 for ratio in (max(w for _, w in r) for r in rows)]
    fig = Figure(figsize=(19 if top[0][1] > 1 else 6.8 * cols, sum(heights)), layout="constrained")
    grid = fig.add_gridspec(len(rows), 1, height_ratios=heights)
    for row, cell in zip(rows, grid):
        n = max(len(row), 2 if len(rows) > 1 else 1)  # a lone panel under a row takes half the width
        sub = cell.subgridspec(1, n, width_ratios=[w for _, w in row] + [1.0] * (n - len(row)))
        for (draw, _), spot in zip(row, sub):
            draw(fig.add_subplot(spot))
    fig.get_layout_engine().set(h_pad=0.12)
    fig.suptitle(_threat_title(result), fontsize=10)
    return fig


def plot_run(path: str, result, report: CertReport, data=None, resolution: int = 200) -> str:
    """Save the figure of the run (:func:`run_figure`) to ``path`` (PNG by extension) and return ``path``.

    Row 1: for classification on 2-D inputs (``data`` a :class:`mibpcert.data.Dataset`), the band
    in which the decision boundary of any model in the parameter box can lie (shaded), the nominal
    decision boundary, the training points and the test points (filled: certified, crosses: not
    certified); then the mean and max parameter width per step; then, for classification, the
    bounds of every test point's margin (sorted, with the nominal model's margin). Row 2: for
    classification with ``data``, the clean accuracy of each epoch's nominal model and the
    certified accuracy of each epoch's box on the test set (the returned box's epoch marked), and
    the mean width of every parameter tensor per step. Panels a result or task lacks (regression,
    a result saved before per-epoch states or per-tensor widths were kept) are left out. Each
    panel has a caption saying what it shows.
    """
    fig = run_figure(result, report, data, resolution)
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    fig.savefig(path, dpi=110, bbox_inches="tight")
    return path


def _short(v) -> str:
    """A config value for a title: long lists (e.g. a 64-pixel trigger mask) by their length."""
    if isinstance(v, (list, tuple)) and len(v) > 6:
        return f"[{len(v)} values]"
    return str(v)


def _threat_title(result) -> str:
    desc = result.threat.describe()
    parts = ", ".join(f"{k}={_short(v)}" for k, v in desc.items() if k != "type" and v is not None and k != "parts")
    cfg = result.config
    return (f"threat {desc.get('type')}({parts}); {cfg.method}, lr={cfg.lr}, batch={cfg.batch_size}, "
            f"{cfg.epochs} epochs, loss={cfg.loss}")
