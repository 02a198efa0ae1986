"""End-to-end tests of the command line ``mibpcert run CONFIG.toml``.

The report written by the CLI is compared with an independent run through the Python API with the
same settings; bad configurations must fail with exit status 2 and a one-line message.
"""
from __future__ import annotations

import json
import math
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from mibpcert import TrainConfig, certified_train, certify, data, mlp, threats
from mibpcert.cli import main
from mibpcert.threats import from_config
from tests.helpers.attacks import sgd_train
from tests.helpers.backends import require

F64 = torch.float64
ROOT = Path(__file__).resolve().parents[1]
PNG_MAGIC = b"\x89PNG\r\n\x1a\n"

TINY = """
[data]
name = "two_moons"
n_train = 100
n_test = 40
n_val = 30
noise = 0.1
seed = 3

[model]
hidden = [8]
seed = 1

[threat]
type = "linf_features"
eps = 0.005

[train]
epochs = 2
lr = 0.1
batch_size = 50
loss = "bce"
select_epoch = true

[certify]
test_eps = 0.001
trigger_eps = 0.01
"""


def _write(tmp_path: Path, text: str, name: str = "cfg.toml") -> Path:
    p = tmp_path / name
    p.write_text(text)
    return p


def _check_png(path: Path) -> None:
    assert path.is_file()
    with open(path, "rb") as f:
        assert f.read(8) == PNG_MAGIC
    assert path.stat().st_size > 1000


def _api_reference():
    """The TINY run through the Python API (independent of the CLI's config handling)."""
    ds = data.two_moons(n_train=100, n_test=40, n_val=30, noise=0.1, seed=3)
    model = mlp([2, 8, 1], seed=1)
    cfg = TrainConfig(epochs=2, lr=0.1, batch_size=50, loss="bce", select_epoch=True)
    result = certified_train(model, ds.X_train, ds.y_train, threats.LinfFeatures(0.005), cfg, ds.X_val, ds.y_val)
    return result, certify(result, ds.X_test, ds.y_test, test_eps=0.001, trigger_eps=0.01)


def _check_report(doc: dict) -> None:
    for key in ("config", "summary", "log", "per_sample", "selected_epoch", "mibpcert_version"):
        assert key in doc, key
    s = doc["summary"]
    for key in ("clean_accuracy", "certified_accuracy", "accuracy_bounds", "test_loss_bounds", "mean_param_width",
                "max_param_width", "steps", "total_seconds", "method", "backend", "selected_epoch"):
        assert key in s, key
    assert 0.0 <= s["certified_accuracy"] <= 1.0
    assert 0.0 <= s["clean_accuracy"] <= 1.0
    lo, hi = s["accuracy_bounds"]
    assert lo == s["certified_accuracy"] and lo <= hi <= 1.0
    assert s["method"] == "interval"
    assert doc["config"]["threat_describe"]["type"] == "linf_features"
    assert isinstance(doc["config"]["train_config"]["progress"], bool)
    assert isinstance(doc["log"], list) and doc["log"] and {"step", "epoch", "mean_width", "max_width"} <= set(doc["log"][0])
    cert = doc["per_sample"]["certified"]
    assert all(isinstance(c, bool) for c in cert)
    assert sum(cert) / len(cert) == pytest.approx(s["certified_accuracy"])


def test_cli_in_process_matches_api(tmp_path, capsys):
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    printed = capsys.readouterr().out
    assert "certified accuracy" in printed and "clean accuracy" in printed

    doc = json.loads((out / "report.json").read_text())
    _check_report(doc)
    _check_png(out / "plot.png")
    assert doc["config"]["data"]["name"] == "two_moons"
    assert doc["config"]["model"]["widths"] == [2, 8, 1]
    assert doc["config"]["train_config"]["progress"] is False  # --quiet
    s = doc["summary"]
    assert s["steps"] == 4 and len(doc["log"]) == 4
    assert s["test_eps"] == 0.001 and s["trigger_eps"] == 0.01

    # an independent path through the Python API gives the same numbers
    result, rep = _api_reference()
    assert s["certified_accuracy"] == rep.certified_accuracy
    assert s["clean_accuracy"] == rep.clean_accuracy
    assert s["accuracy_bounds"] == list(rep.accuracy_bounds)
    assert s["backdoor_success_upper"] == rep.backdoor_success_upper
    assert doc["selected_epoch"] == result.selected_epoch
    assert doc["per_sample"]["certified"] == [bool(c) for c in rep.certified.tolist()]
    widths = torch.cat([w.reshape(-1) for w in result.widths().values()])
    assert s["max_param_width"] == float(widths.max())
    for a, b in zip(doc["log"], result.log):
        assert a["step"] == b.step and a["max_width"] == b.max_width


@pytest.mark.slow  # full CLI runs
def test_cli_mibp_summary_counts_solver_and_fallback_bounds(tmp_path, capsys):
    text = TINY.replace("select_epoch = true", 'select_epoch = true\nmethod = "mibp"\nmode = "joint"\nrelax = "lp"')
    text = text.replace("epochs = 2", "epochs = 1").replace("n_train = 100", "n_train = 50")
    cfg = _write(tmp_path, text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    printed = capsys.readouterr().out
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    s = doc["summary"]
    assert s["solver_bounds"] == sum(e["solver_bounds"] for e in doc["log"]) > 0
    assert s["fallback_bounds"] == sum(e["fallback_bounds"] for e in doc["log"])
    assert "solver bounds" in printed and f"{s['solver_bounds']} from the solver" in printed


@pytest.mark.slow  # a fresh interpreter imports torch
def test_cli_subprocess(tmp_path):
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "sub"
    exe = Path(sys.executable).with_name("mibpcert")
    cmd = [str(exe)] if exe.exists() else [sys.executable, "-m", "mibpcert.cli"]
    proc = subprocess.run([*cmd, "run", str(cfg), "--out", str(out)], capture_output=True, text=True,
                          cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "certified accuracy" in proc.stdout
    doc = json.loads((out / "report.json").read_text())
    _check_report(doc)
    _check_png(out / "plot.png")
    assert doc["config"]["train_config"]["progress"] is True  # default of the CLI without --quiet


def test_output_dir_from_config_and_width_plot(tmp_path, monkeypatch):
    """[output] dir is used without --out; data that is not 2-D gets the width-per-step plot."""
    monkeypatch.chdir(tmp_path)
    cfg = _write(tmp_path, """
[data]
name = "breast_cancer"
n_val = 20
[model]
hidden = [4]
[threat]
type = "label_flip"
k = 1
[train]
epochs = 1
lr = 0.05
batch_size = 200
select_epoch = true
[output]
dir = "res/bc"
""")
    assert main(["run", str(cfg), "--quiet"]) == 0
    doc = json.loads((tmp_path / "res/bc/report.json").read_text())
    assert doc["config"]["threat_describe"] == {"type": "label_flip", "k": 1, "to": None}
    assert 0.0 <= doc["summary"]["certified_accuracy"] <= 1.0
    _check_png(tmp_path / "res/bc/plot.png")


def test_regression_report_has_no_accuracy(tmp_path):
    cfg = _write(tmp_path, """
[data]
name = "diabetes"
[model]
hidden = [4]
[threat]
type = "label_noise"
k = 1
gamma = 0.1
[train]
epochs = 1
lr = 0.01
loss = "mse"
""")
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 0
    doc = json.loads((tmp_path / "o/report.json").read_text())
    assert doc["summary"]["certified_accuracy"] is None and doc["summary"]["accuracy_bounds"] is None
    lo, hi = (float(v) for v in doc["summary"]["test_loss_bounds"])
    assert lo <= hi
    _check_png(tmp_path / "o/plot.png")


BAD = {
    "unknown_key": ('[data]\nname = "two_moons"\nn_train = 100\nfoo = 1\n[threat]\ntype = "linf_features"\neps = 0.01\n', "foo"),
    "unknown_table": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\neps = 0.01\n[trian]\nlr = 0.1\n', "trian"),
    "unknown_train_key": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\neps = 0.01\n[train]\nlearning_rate = 0.1\n', "learning_rate"),
    "unknown_threat_key": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\nepsilon = 0.01\n', "epsilon"),
    "negative_eps": ('[data]\nname = "two_moons"\nn_train = 100\n[threat]\ntype = "linf_features"\neps = -0.01\n', "eps"),
    "negative_test_eps": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\neps = 0.01\n[certify]\ntest_eps = -1.0\n', "test_eps"),
    "unknown_threat": ('[data]\nname = "two_moons"\nn_train = 100\n[threat]\ntype = "gaussian_noise"\neps = 0.01\n', "gaussian_noise"),
    "unknown_data": ('[data]\nname = "mnist_full"\n[threat]\ntype = "linf_features"\neps = 0.01\n', "mnist_full"),
    "bad_lr": ('[data]\nname = "two_moons"\nn_train = 100\n[threat]\ntype = "linf_features"\neps = 0.01\n[train]\nlr = -0.1\n', "lr"),
    "no_val_set": ('[data]\nname = "two_moons"\nn_train = 100\n[threat]\ntype = "linf_features"\neps = 0.01\n[train]\nselect_epoch = true\n', "n_val"),
    "bad_toml": ('[data\nname = "two_moons"\n', "TOML"),
    "paired_string": ('[data]\nname = "two_moons"\n[threat]\ntype = "both"\npaired = "false"\n[[threat.parts]]\n'
                      'type = "linf_features"\neps = 0.01\nk = 2\n[[threat.parts]]\ntype = "label_flip"\nk = 2\n', "paired"),
    "eps_string": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\neps = "0.01"\n', "eps"),
    "mibp_float32": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\neps = 0.01\n[train]\nmethod = "mibp"\n'
                     'dtype = "float32"\n', "float64"),
    "domain_one_value": ('[data]\nname = "two_moons"\n[threat]\ntype = "linf_features"\neps = 0.01\ndomain = [0]\n', "domain"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_bad_config_exit_2_one_line(tmp_path, capsys, case):
    text, needle = BAD[case]
    cfg = _write(tmp_path, text)
    assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
    captured = capsys.readouterr()
    err = captured.err.strip()
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: ") and needle in err
    assert "Traceback" not in captured.err + captured.out
    assert not (tmp_path / "o" / "report.json").exists()


@pytest.mark.slow  # a fresh interpreter imports torch
def test_bad_config_subprocess_no_traceback(tmp_path):
    cfg = _write(tmp_path, BAD["unknown_threat"][0])
    proc = subprocess.run([sys.executable, "-m", "mibpcert.cli", "run", str(cfg), "--quiet"], capture_output=True,
                          text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 2
    assert proc.stderr.strip().count("\n") == 0 and proc.stderr.startswith("error: unknown threat type")


def test_missing_config_file(tmp_path, capsys):
    assert main(["run", str(tmp_path / "nope.toml")]) == 2
    assert capsys.readouterr().err.startswith("error: config file not found")


def test_examples_parse():
    """Every example config passes validation (without running it)."""
    from mibpcert.cli import load_config

    for p in sorted((ROOT / "examples").glob("*.toml")):
        cfg = load_config(str(p))
        assert cfg["data"]["name"] and cfg["threat"]["type"]


@pytest.mark.slow
def test_two_moons_example_end_to_end(tmp_path):
    out = tmp_path / "two_moons"
    assert main(["run", str(ROOT / "examples" / "two_moons.toml"), "--out", str(out), "--quiet"]) == 0
    doc = json.loads((out / "report.json").read_text())
    _check_report(doc)
    _check_png(out / "plot.png")
    s = doc["summary"]
    # the demo is meant to show a non-trivial certificate
    assert 0.3 < s["certified_accuracy"] <= s["clean_accuracy"]
    assert math.isfinite(float(s["max_param_width"]))
    assert doc["config"]["output"]["dir"] == str(out)


# ---------------------------------------------------------------------------------------------
# every structured threat through the CLI, and the backdoor certificate of a shared trigger
# ---------------------------------------------------------------------------------------------
# ---------------------------------------------------------------------------------------------
# the CLI
# ---------------------------------------------------------------------------------------------
CLI_THREATS = {
    "onehot": 'type = "feature_values"\nfeature = [0, 1]\nvalues = "onehot"\nk = 2',
    "missing": 'type = "missing_values"\nfeatures = [1]\nlow = -0.5\nhigh = 0.5\nk = 1',
    "l0": 'type = "l0_features"\neps = 0.05\ns = 1\nk = 2',
    "l1": 'type = "l1_features"\neps1 = 0.05',
    "trigger": 'type = "shared_trigger"\nmask = [1, 0]\neps = 0.05\nk = 2\ntarget = 1',
    "union": 'type = "union"\n[[threat.parts]]\ntype = "l1_features"\neps1 = 0.05\nk = 1\n[[threat.parts]]\ntype = "label_flip"\nk = 1',
    "global": 'type = "global_budget"\nk = 3\n[threat.threat]\ntype = "l0_features"\neps = 0.05\ns = 1',
}


CLI_TEMPLATE = """
[data]
name = "two_moons"
n_train = 12
n_test = 10
seed = 0

[model]
hidden = [3]
seed = 0

[threat]
{threat}

[train]
epochs = 1
lr = 0.1
batch_size = 6
loss = "hinge"
{train}
"""


@pytest.mark.slow  # full CLI runs
@pytest.mark.parametrize("name", list(CLI_THREATS))
def test_cli_runs_every_threat(name, tmp_path, capsys):
    from mibpcert.cli import main

    train = 'method = "mibp"\nmode = "joint"\nbackend = "highs"' if name in ("union", "trigger") else ""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CLI_TEMPLATE.format(threat=CLI_THREATS[name], train=train))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    doc = json.loads((out / "report.json").read_text())
    assert doc["summary"]["steps"] == 2
    assert json.dumps(doc).count(from_config(_parse_threat(cfg)).describe()["type"]) >= 1


def test_cli_backdoor_certificate_for_shared_trigger(tmp_path, capsys):
    """A shared trigger in the threat (here inside a union) makes the CLI bound the trigger's
    success on triggered test points: the report lists every trigger with per-point ``safe``
    flags, and no point flagged safe is flipped to the target by a model trained in plain torch
    on trigger-poisoned data and tested with a trigger of the threat's set."""
    from mibpcert import data
    from mibpcert.cli import main

    threat = ('type = "union"\n[[threat.parts]]\ntype = "shared_trigger"\nmask = [1, 0]\neps = 0.1\nk = 2\n'
              'target = 1\n[[threat.parts]]\ntype = "label_flip"\nk = 1')
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(CLI_TEMPLATE.format(threat=threat, train=""))
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0, capsys.readouterr().err
    assert "trigger success <=" in capsys.readouterr().out
    doc = json.loads((out / "report.json").read_text())
    (bd,) = doc["backdoor"]
    assert (bd["mask"], bd["trigger_eps"], bd["target"]) == ([1, 0], 0.1, 1)
    assert doc["summary"]["trigger_attack_success_upper"] == bd["attack_success_upper"]
    safe, eligible = torch.tensor(bd["per_point"]["safe"]), torch.tensor(bd["per_point"]["eligible"])
    assert bd["eligible"] == int(eligible.sum())
    ds = data.two_moons(n_train=12, n_test=10, seed=0)
    assert torch.equal(eligible, ds.y_test != 1)
    assert abs(bd["attack_success_upper"] - float((~safe & eligible).sum()) / int(eligible.sum())) < 1e-12
    model = mlp([2, 3, 1], seed=0)
    g = torch.Generator().manual_seed(0)
    for trial in range(12):
        delta = torch.tensor([0.1 if trial % 2 else -0.1, 0.0], dtype=F64)
        if trial >= 4:
            delta[0] = 0.1 * (2 * float(torch.rand(1, generator=g, dtype=F64)) - 1)

        def poison(net, Xb, yb, lr, delta=delta):
            Xp, yp = Xb.clone(), yb.clone()
            for i in torch.randperm(Xb.shape[0], generator=g)[: int(torch.randint(0, 3, (1,), generator=g))]:
                Xp[i], yp[i] = Xb[i] + delta, 1.0
            return Xp, yp

        net = sgd_train(model, ds.X_train, ds.y_train, "hinge", epochs=1, lr=0.1, batch_size=6, poison=poison)
        for test_delta in (delta, torch.tensor([0.1, 0.0], dtype=F64), torch.tensor([-0.1, 0.0], dtype=F64)):
            with torch.no_grad():
                hit = net(ds.X_test + test_delta)[:, 0] > 0
            assert not (hit & safe & eligible).any(), "a point certified safe was flipped to the target"
    # the check is not vacuous: some eligible points are certified safe, not all of them
    assert (safe & eligible).any() and (~safe & eligible).any()


def _parse_threat(path: Path) -> dict:
    from mibpcert.cli import load_config

    return load_config(str(path))["threat"]


def test_cli_rejects_bad_threat_tables(tmp_path, capsys):
    from mibpcert.cli import main

    bad = {
        "unknown key": 'type = "l1_features"\neps = 0.05',
        "at least 2 columns": 'type = "one_hot_feature"\ncolumns = [0]',
        "mask has 3 entries": 'type = "shared_trigger"\nmask = [1, 0, 0]\neps = 0.05\nk = 1',
        "unknown key 'epsilon'": 'type = "global_budget"\nk = 3\n[threat.threat]\ntype = "l0_features"\nepsilon = 0.05\ns = 1',
    }
    for msg, table in bad.items():
        cfg = tmp_path / "bad.toml"
        cfg.write_text(CLI_TEMPLATE.format(threat=table, train=""))
        assert main(["run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"]) == 2
        err = capsys.readouterr().err
        assert msg in err, err


@pytest.mark.parametrize("where", ["file", "under_file"])
def test_a_bad_output_location_fails_before_training(tmp_path, capsys, where):
    """--out naming an existing file (or a path below one) is refused with exit status 2 before
    any work: no training line is printed and the file is untouched."""
    cfg = _write(tmp_path, TINY)
    blocker = tmp_path / "taken"
    blocker.write_text("keep me")
    out = blocker if where == "file" else blocker / "run"
    assert main(["run", str(cfg), "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "output directory" in err and "mibpcert: two_moons" not in err, err
    assert blocker.read_text() == "keep me"


@pytest.mark.slow  # a fresh interpreter imports torch
def test_quiet_mibp_run_prints_the_summary_only(tmp_path):
    """--quiet with the HiGHS backend: stdout holds the summary and nothing of the solver (HiGHS
    writes a banner to the process's stdout when its first instance is made)."""
    text = TINY.replace("epochs = 2", 'epochs = 1\nmethod = "mibp"\nmode = "joint"\nrelax = "lp"').replace("n_train = 100", "n_train = 40")
    text = text.replace("batch_size = 50", "batch_size = 20").replace("select_epoch = true", "select_epoch = false")
    cfg = _write(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", "mibpcert.cli", "run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    assert "HiGHS" not in proc.stdout and "HiGHS" not in proc.stderr, proc.stdout
    assert "certified accuracy" in proc.stdout and proc.stderr == ""


@pytest.mark.slow  # a fresh interpreter imports torch
def test_certify_a_saved_run_without_training(tmp_path, capsys):
    """`mibpcert run` saves its result; `mibpcert certify RUN_DIR` (the real entry point, in a
    subprocess) certifies the run's test set at another radius, and another data config's test
    set, with the numbers of an independent API run; a directory without a saved result is exit 2."""
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    assert (out / "result.pt").is_file()
    capsys.readouterr()
    other = _write(tmp_path, TINY.replace("seed = 3", "seed = 4"), "other.toml")
    exe = [sys.executable, "-m", "mibpcert.cli"]
    proc = subprocess.run([*exe, "certify", str(out), "--test-eps", "0.02", "--out", str(tmp_path / "c.json")],
                          capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr
    proc2 = subprocess.run([*exe, "certify", str(out), "--data", str(other)], capture_output=True, text=True,
                           cwd=tmp_path, timeout=300)
    assert proc2.returncode == 0, proc2.stderr
    result, _ = _api_reference()
    ds = data.two_moons(n_train=100, n_test=40, n_val=30, noise=0.1, seed=3)
    rep = certify(result, ds.X_test, ds.y_test, test_eps=0.02, trigger_eps=0.01)
    doc = json.loads((tmp_path / "c.json").read_text())
    assert doc["summary"]["certified_accuracy"] == rep.certified_accuracy and doc["summary"]["test_eps"] == 0.02
    assert doc["per_sample"]["certified"] == [bool(c) for c in rep.certified.tolist()]
    ds4 = data.two_moons(n_train=100, n_test=40, n_val=30, noise=0.1, seed=4)
    rep4 = certify(result, ds4.X_test, ds4.y_test, test_eps=0.001, trigger_eps=0.01)
    assert f"({int(rep4.certified.sum())}/40, test_eps=0.001)" in proc2.stdout, proc2.stdout
    bad = subprocess.run([*exe, "certify", str(tmp_path)], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert bad.returncode == 2 and bad.stderr.startswith("error: ") and "holds no saved result" in bad.stderr


def test_the_same_command_again_resumes_and_another_config_is_refused(tmp_path, capsys):
    """The run directory holds the checkpoint: running the same config again resumes (and says
    so) with the same results; another config there is refused with exit status 2 before any
    step, unless --force."""
    cfg = _write(tmp_path, TINY)
    out = tmp_path / "out"
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    first = json.loads((out / "report.json").read_text())["summary"]
    capsys.readouterr()
    assert main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    err = capsys.readouterr().err
    assert "resuming from step 4 of 4" in err, err
    again = json.loads((out / "report.json").read_text())["summary"]
    assert again["certified_accuracy"] == first["certified_accuracy"] and again["max_param_width"] == first["max_param_width"]
    other = _write(tmp_path, TINY.replace("lr = 0.1", "lr = 0.05"), "other.toml")
    assert main(["run", str(other), "--out", str(out), "--quiet"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "checkpoint of another run" in err and "--force" in err
    broken = _write(tmp_path, TINY.replace("lr = 0.1", "lr = -1.0"), "broken.toml")
    saved = (out / "result.pt").read_bytes()
    assert main(["run", str(broken), "--out", str(out), "--quiet", "--force"]) == 2  # refused before anything is removed
    assert (out / "checkpoint.pt").exists() and (out / "result.pt").read_bytes() == saved
    capsys.readouterr()
    assert main(["run", str(other), "--out", str(out), "--quiet", "--force"]) == 0
    assert json.loads((out / "report.json").read_text())["config"]["train"]["lr"] == 0.05


SLOW_RUN = """
[data]
name = "two_moons"
n_train = 60
n_test = 20
noise = 0.1
seed = 3

[model]
hidden = [8]

[threat]
type = "linf_features"
eps = 0.01

[train]
epochs = 6
lr = 0.1
batch_size = 10
loss = "hinge"
method = "mibp"
mode = "joint"
relax = "lp"

[certify]
test_eps = 0.001
"""


def _wait_for_step(path: Path, step: int, proc, timeout: float = 300.0) -> None:
    t0 = time.time()
    while time.time() - t0 < timeout:
        if proc.poll() is not None:
            pytest.fail(f"the run ended (status {proc.returncode}) before step {step} was saved: it cannot be interrupted")
        try:
            if path.exists() and torch.load(path, weights_only=False)["step"] >= step:
                return
        except Exception:  # noqa: BLE001 - the file is being replaced: try again
            pass
        time.sleep(0.02)
    pytest.fail(f"no checkpoint of step {step} after {timeout} s")


SLOW_STEPS = 36  # 6 epochs of 6 batches


@pytest.mark.slow  # two fresh interpreters and 36 MIBP steps
@pytest.mark.parametrize("how", ["SIGKILL", "SIGINT"])
def test_an_interrupted_run_resumes_to_the_uninterrupted_bounds(tmp_path, how):
    """The real entry point in a subprocess, stopped by SIGKILL (nothing runs after it) or SIGINT
    (the step in flight finishes and is saved) after step 3: the same command again resumes where
    the checkpoint stands and ends with the bounds and report of an uninterrupted run."""
    import signal

    from mibpcert import TrainResult

    cfg = _write(tmp_path, SLOW_RUN)
    ref = tmp_path / "ref"
    assert main(["run", str(cfg), "--out", str(ref), "--quiet"]) == 0
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mibpcert.cli", "run", str(cfg), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path)
    _wait_for_step(out / "checkpoint.pt", 3, proc)
    proc.send_signal(getattr(signal, how))
    _, err = proc.communicate(timeout=300)
    if how == "SIGINT":
        assert proc.returncode == 130 and "interrupted after step" in err and "run the same command" in err, err
    else:
        assert proc.returncode == -signal.SIGKILL
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert 3 <= step < SLOW_STEPS and not (out / "result.pt").exists()
    again = subprocess.run(cmd, capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert again.returncode == 0, again.stderr
    assert f"resuming from step {step} of {SLOW_STEPS}" in again.stderr, again.stderr
    a, b = TrainResult.load(ref / "result.pt"), TrainResult.load(out / "result.pt")
    for n, (lo, hi) in a.param_bounds.items():
        assert torch.equal(b.param_bounds[n][0], lo) and torch.equal(b.param_bounds[n][1], hi), n
    ra, rb = (json.loads((d / "report.json").read_text()) for d in (ref, out))
    assert ra["per_sample"] == rb["per_sample"] and ra["summary"]["accuracy_bounds"] == rb["summary"]["accuracy_bounds"]


def test_time_limit_none_and_debug_tracebacks(tmp_path, capsys, monkeypatch):
    """`time_limit = "none"` is no limit (TOML has no null); any other string is refused. An
    unexpected exception is an internal error (exit 1, one line, how to report it); --debug adds
    the traceback."""
    from mibpcert.cli import load_config

    text = TINY.replace('loss = "bce"', 'loss = "bce"\ntime_limit = "none"\nstep_time_limit = "None"')
    cfg = load_config(str(_write(tmp_path, text)))
    assert cfg["train"]["time_limit"] is None and TrainConfig(**cfg["train"]).time_limit is None
    assert cfg["train"]["step_time_limit"] is None
    bad = _write(tmp_path, TINY.replace('loss = "bce"', 'loss = "bce"\ntime_limit = "forever"'), "bad.toml")
    assert main(["run", str(bad)]) == 2
    assert 'train.time_limit must be a positive number of seconds or "none"' in capsys.readouterr().err

    import mibpcert.cli as cli_mod

    def broken(*a, **k):
        raise AttributeError("'dict' object has no attribute 'x'")

    monkeypatch.setattr(cli_mod, "plot_run", broken)
    cfg_path = _write(tmp_path, TINY, "ok.toml")
    assert main(["run", str(cfg_path), "--out", str(tmp_path / "o"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "internal error, a bug in mibpcert" in err and "--debug" in err
    assert "Traceback" not in err
    assert main(["run", str(cfg_path), "--out", str(tmp_path / "o"), "--quiet", "--debug"]) == 1
    err = capsys.readouterr().err
    assert "Traceback (most recent call last)" in err and err.rstrip().splitlines()[-1].startswith("error: internal error")


@pytest.mark.slow  # a fresh interpreter imports torch
def test_a_gurobi_run_too_large_for_the_licence_goes_on_with_highs(tmp_path):
    """The real entry point, backend gurobi with the size-limited pip licence and the default mode
    (joint for this full batch): the run is not stopped; it says once, before the first solve,
    which programs HiGHS bounds instead, and the summary counts them."""
    require("gurobipy")
    from mibpcert.solvers.gurobi import licence_is_size_limited

    if not licence_is_size_limited():
        pytest.fail("a full Gurobi licence is active here, so the size-limited licence cannot be checked")
    text = TINY.replace("epochs = 2", 'epochs = 2\nmethod = "mibp"\nbackend = "gurobi"').replace("n_train = 100", "n_train = 20")
    text = text.replace("batch_size = 50", "batch_size = 20").replace("select_epoch = true", "select_epoch = false")
    cfg = _write(tmp_path, text)
    proc = subprocess.run([sys.executable, "-m", "mibpcert.cli", "run", str(cfg), "--out", str(tmp_path / "o"), "--quiet"],
                          capture_output=True, text=True, cwd=tmp_path, timeout=600)
    assert proc.returncode == 0, proc.stderr
    said = [line for line in proc.stderr.splitlines() if "cannot take" in line]
    assert len(said) == 1 and said[0].startswith("warning: gurobi cannot take 1 of the 1 programs"), proc.stderr
    assert "size-limited Gurobi licence" in said[0] and "mode='per_sample'" in said[0]
    assert "licence fallback      2 programs too large for the gurobi licence, bounded by HiGHS instead" in proc.stdout
    doc = json.loads((tmp_path / "o" / "report.json").read_text())
    assert doc["summary"]["licence_fallback_programs"] == 2 and doc["config"]["train_config"]["mode"] == "joint"
    assert [s["licence_fallback_programs"] for s in doc["log"]] == [1, 1]
