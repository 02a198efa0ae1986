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
