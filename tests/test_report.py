"""The run summary, report.json and the text summary (``mibpcert.report``): solver and fallback
bound counts with their reasons, the warning lines, and no solver line for interval runs."""
from __future__ import annotations

import dataclasses

import numpy as np

import mibpcert.solvers.highs as highs_mod
from mibpcert import certified_train
from mibpcert.solvers import Status
from tests.helpers.mibp import case_data, mibp_cfg, run_interval, run_mibp


# ---------------------------------------------------------------------------------------------
# fallbacks are reported: summary, report.json, warning line, reasons
# ---------------------------------------------------------------------------------------------
def test_fallbacks_are_reported_with_their_reasons(monkeypatch, tmp_path):
    """Most sides come back without a usable bound (as with ``time_limit=1e-6`` on real
    programs: time-limited without a finite dual bound, or failed). The step log, the summary and
    report.json count the solver and fallback bounds and why, from what the backend returned, and
    the text summary ends with a warning line."""
    from mibpcert import certify
    from mibpcert.report import format_summary, write_report

    orig = highs_mod.HighsBackend.bound
    sides: list[tuple[float, Status]] = []

    def degraded(self, program, objectives, options):
        out = []
        for j, r in enumerate(orig(self, program, objectives, options)):
            if j % 4 == 1:
                r = dataclasses.replace(r, lower=-np.inf, lower_status=Status.FAILED)
            elif j % 4 >= 2:
                r = dataclasses.replace(r, lower=-np.inf, upper=np.inf, lower_status=Status.TIME_LIMIT,
                                        upper_status=Status.TIME_LIMIT)
            sides.extend([(r.lower, r.lower_status), (r.upper, r.upper_status)])
            out.append(r)
        return out

    monkeypatch.setattr(highs_mod.HighsBackend, "bound", degraded)
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss))
    timed_out = sum(1 for v, st in sides if st == Status.TIME_LIMIT and not np.isfinite(v))
    failed = sum(1 for v, st in sides if st == Status.FAILED)
    solved = len(sides) - timed_out - failed
    assert timed_out > 0 and failed > 0 and timed_out + failed > solved
    doc = write_report(str(tmp_path / "report.json"), res, certify(res, X, y))
    s = doc["summary"]
    assert s["solver_bounds"] == solved and s["fallback_bounds"] == timed_out + failed
    assert s["fallback_reasons"] == {"time_limit": timed_out, "failed": failed}
    assert sum(sum(e["fallback_reasons"].values()) for e in doc["log"]) == timed_out + failed
    text = format_summary(s)
    assert f"{solved} from the solver, {timed_out + failed} kept the interval bound (failed {failed}, time limit {timed_out})" in text
    assert text.splitlines()[-1].startswith("WARNING: most solver bounds")


def test_skipped_objectives_are_reported(monkeypatch, tmp_path):
    """Objectives bounded without a solver: counted per step, summed in the summary and
    report.json, one line in the text summary. Features moved by 1e-13: no objective of any
    program needs the solver (the backend is never called), so every trainable entry of every
    per-sample program of every step is counted."""
    from mibpcert import certify
    from mibpcert.report import format_summary, write_report
    from mibpcert.threats import LinfFeatures

    monkeypatch.setattr(highs_mod.HighsBackend, "bound", lambda *a: (_ for _ in ()).throw(AssertionError("solver called")))
    model, X, y, _, _, loss = case_data("linf_k1-bce")
    cfg = mibp_cfg(loss=loss, mode="per_sample", relax="lp")
    res = certified_train(model, X, y, LinfFeatures(1e-13), cfg)
    trainable = sum(p.numel() for p in model.parameters())
    expected = len(res.log) * cfg.batch_size * trainable
    doc = write_report(str(tmp_path / "report.json"), res, certify(res, X, y))
    s = doc["summary"]
    assert s["skipped_objectives"] == sum(e["skipped_objectives"] for e in doc["log"]) == expected
    assert s["solver_bounds"] == s["fallback_bounds"] == 0
    (line,) = [x for x in format_summary(s).splitlines() if x.startswith("skipped objectives")]
    assert line.split()[2:6] == [str(expected), "bounded", "without", "a"]


def test_interval_runs_have_no_solver_line():
    from mibpcert import certify
    from mibpcert.report import format_summary, run_summary

    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    res = run_interval(model, X, y, threat_f(), loss)
    s = run_summary(res, certify(res, X, y))
    assert "solver_bounds" not in s and "solver bounds" not in format_summary(s) and "WARNING" not in format_summary(s)


def test_relational_runs_say_so():
    """The MIBP program on affine forms: the summary names it and its attacker (poisons once)."""
    from mibpcert import certify
    from mibpcert.report import format_summary, run_summary

    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    res = run_mibp(model, X, y, threat_f(), loss, relax="lp", relational=True)
    s = run_summary(res, certify(res, X, y))
    assert s["relational"] is True and s["attacker"] == "fixed" and s["solver_bounds"] > 0
    text = format_summary(s)
    assert "on affine forms (relational)" in text and "poisons the training set once" in text


def test_plot_titles_and_epochs_read_one_way(tmp_path):
    """A long threat parameter (a trigger mask) is summarised in the title; the summary counts
    epochs from 1 like the config; non-2-D classification gets the width and margin panels."""
    import torch

    from mibpcert import TrainConfig, certified_train, certify, mlp
    from mibpcert.report import _threat_title, format_summary, plot_run, run_summary
    from mibpcert.threats import SharedTrigger

    g = torch.Generator().manual_seed(0)
    X = torch.rand(30, 16, generator=g, dtype=torch.float64)
    y = (X[:, 0] > 0.5).to(torch.float64)
    res = certified_train(mlp([16, 4, 1], seed=0), X, y, SharedTrigger([1.0] * 16, 0.05, k=1, target=1),
                          TrainConfig(epochs=3, lr=0.2, batch_size=10, loss="hinge"))
    title = _threat_title(res)
    assert "mask=[16 values]" in title and len(title) < 160, title
    rep = certify(res, X, y, test_eps=0.01)
    text = format_summary(run_summary(res, rep))
    assert "box after step 9 (epoch 3 of 3)" in text, text
    path = plot_run(str(tmp_path / "p.png"), res, rep, None)
    assert open(path, "rb").read(8) == b"\x89PNG\r\n\x1a\n"


# ---------------------------------------------------------------------------------------------
# the run figure: accuracy per epoch and width per tensor, for every kind of run
# ---------------------------------------------------------------------------------------------
EPS, TEST_EPS = 0.001, 0.02


def _moons_run(method: str = "interval", epochs: int = 3):
    """A tiny two-moons run whose accuracies change from epoch to epoch (clean 0.45, 0.45, 0.925;
    certified at TEST_EPS 0.45, 0.45, 0.025, at test_eps 0 the last is 0.1)."""
    from mibpcert import TrainConfig, certified_train, mlp, threats
    from mibpcert.data import two_moons

    ds = two_moons(n_train=60, n_test=40, seed=0)
    cfg = TrainConfig(epochs=epochs, lr=3.0, batch_size=30, loss="bce", method=method)
    return ds, certified_train(mlp([2, 8, 1], seed=0), ds.X_train, ds.y_train, threats.LinfFeatures(eps=EPS), cfg)


def _drawn(fig):
    """Draw ``fig``; return each panel's title and its full extent (captions, outside legends)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return [(ax.get_title(), ax.get_tightbbox(canvas.get_renderer())) for ax in fig.axes]


def _assert_apart(panels) -> None:
    for i, (t1, b1) in enumerate(panels):
        for t2, b2 in panels[i + 1:]:
            assert not b1.overlaps(b2), f"panels {t1!r} and {t2!r} overlap"


def test_plot_panels_by_kind_of_run():
    """Every run gets the accuracy-per-epoch (classification with test data) and width-per-tensor
    panels besides the others, laid out without overlaps; results saved without epochs or
    per-tensor widths, and regression, leave out what they cannot show."""
    import torch

    from mibpcert import TrainConfig, certified_train, certify, mlp, threats
    from mibpcert.data.dataset import Dataset
    from mibpcert.report import run_figure
    from tests.helpers.mibp import make_data

    ds, res = _moons_run()
    rep = certify(res, ds.X_test, ds.y_test)
    panels = _drawn(run_figure(res, rep, ds, resolution=40))
    assert [t.split(";")[0] for t, _ in panels] == [
        "decision boundary band", "parameter box width per step", "margin bounds per test point",
        "test accuracy per epoch", "parameter box width per tensor"]
    _assert_apart(panels)

    X, y = make_data("binary", 40, 0, d=3)
    res3 = certified_train(mlp([3, 4, 1], seed=0), X, y, threats.LinfFeatures(eps=0.01),
                           TrainConfig(epochs=2, lr=0.5, batch_size=20, loss="bce"))
    ds3 = Dataset(X, y, X, y, "binary", 2, "t")
    panels = _drawn(run_figure(res3, certify(res3, X, y), ds3))
    assert [t.split(";")[0] for t, _ in panels] == [
        "parameter box width per step", "margin bounds per test point", "test accuracy per epoch",
        "parameter box width per tensor"]
    _assert_apart(panels)

    old = dataclasses.replace(res3, epochs=[], log=[dataclasses.replace(s, tensor_mean_width={}) for s in res3.log])
    assert [t.split(";")[0] for t, _ in _drawn(run_figure(old, certify(old, X, y), ds3))] == [
        "parameter box width per step", "margin bounds per test point"]

    Xr, yr = make_data("regression", 40, 0)
    resr = certified_train(mlp([2, 4, 1], seed=0), Xr, yr, threats.LinfFeatures(eps=0.01),
                           TrainConfig(epochs=2, lr=0.1, batch_size=20, loss="mse"))
    fig = run_figure(resr, certify(resr, Xr, yr), Dataset(Xr, yr, Xr, yr, "regression", None, "r"))
    panels = _drawn(fig)
    assert [t for t, _ in panels] == ["parameter box width per step", "parameter box width per tensor"]
    _assert_apart(panels)
    tensor_ax = fig.axes[1]
    assert tensor_ax.get_yscale() == "log" and tensor_ax.get_xlabel() == "SGD step"
    lines = {ln.get_label(): ln for ln in tensor_ax.get_lines()}
    for name, (lo, hi) in resr.param_bounds.items():  # last step's box: the one returned
        assert lines[name].get_ydata()[-1] == torch.mean(hi - lo).item(), name


def test_plotted_accuracy_per_epoch_is_that_of_training_that_many_epochs():
    """The clean and certified accuracy plotted for epoch e are what certifying a run of e epochs
    gives, and the box returned (epoch 3, 1-based) is marked."""
    from mibpcert import TrainConfig, certified_train, certify, mlp, threats
    from mibpcert.report import run_figure

    ds, res = _moons_run()
    fig = run_figure(res, certify(res, ds.X_test, ds.y_test, TEST_EPS), ds, resolution=40)
    ax = next(a for a in fig.axes if a.get_title() == "test accuracy per epoch")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert list(lines["certified (box)"].get_xdata()) == [1, 2, 3]
    assert list(lines["box returned: epoch 3"].get_xdata()) == [3, 3]
    assert "certified (report)" not in lines  # the report used the same box
    seen = set()
    for e in (1, 2, 3):
        cfg = TrainConfig(epochs=e, lr=3.0, batch_size=30, loss="bce")
        rep_e = certify(certified_train(mlp([2, 8, 1], seed=0), ds.X_train, ds.y_train, threats.LinfFeatures(eps=EPS),
                                        cfg), ds.X_test, ds.y_test, TEST_EPS)
        assert lines["certified (box)"].get_ydata()[e - 1] == rep_e.certified_accuracy, e
        assert lines["clean (nominal model)"].get_ydata()[e - 1] == rep_e.clean_accuracy, e
        seen.add((rep_e.clean_accuracy, rep_e.certified_accuracy))
    assert len(seen) > 1  # the epochs differ: the check can tell them apart


def test_plot_marks_the_report_when_affine_forms_certify_more():
    """With affine forms the report can certify more than the box of the last epoch: the figure
    then shows the report's value as its own marker and says why."""
    from mibpcert import certify
    from mibpcert.report import run_figure

    ds, res = _moons_run("affine")
    rep = certify(res, ds.X_test, ds.y_test, TEST_EPS)
    fig = run_figure(res, rep, ds, resolution=40)
    ax = next(a for a in fig.axes if a.get_title() == "test accuracy per epoch")
    lines = {ln.get_label(): ln for ln in ax.get_lines()}
    assert lines["certified (box)"].get_ydata()[-1] < rep.certified_accuracy
    assert list(lines["certified (report)"].get_xdata()) == [3]
    assert list(lines["certified (report)"].get_ydata()) == [rep.certified_accuracy]
    assert any("affine forms" in t.get_text() for t in ax.texts)
