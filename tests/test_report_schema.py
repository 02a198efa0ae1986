"""report.json against its JSON Schema (``docs/report.schema.json``): the schema is a valid draft
2020-12 schema that matches the code (fields of ``StepLog`` and ``TrainConfig``, the enums, the
schema version, the encoding of non-finite floats), every report a run writes validates (each
loss and task, MIBP, affine and relational runs, a shared trigger, ``mibpcert certify``, the
example configs), and reports with an unknown or a missing field do not.

jsonschema comes with the ``test`` extra (``pip install -e '.[test]'``); without it these tests
fail with that reason, they never skip."""
from __future__ import annotations

import copy
import dataclasses
import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from mibpcert import cli
from mibpcert.config import DTYPES, EXECUTORS, METHODS, MODES, RELAX, TrainConfig
from mibpcert.losses import LOSSES
from mibpcert.report import SCHEMA_VERSION, json_safe
from mibpcert.threats import from_config
from mibpcert.train import StepLog

ROOT = Path(__file__).resolve().parents[1]
SCHEMA_PATH = ROOT / "docs" / "report.schema.json"
SCHEMA: dict = json.loads(SCHEMA_PATH.read_text())
DEFS: dict = SCHEMA["$defs"]


def _validator(schema: dict = SCHEMA):
    """A draft 2020-12 validator of ``schema``; fails (never skips) without jsonschema."""
    try:
        import jsonschema
    except ImportError as e:  # pragma: no cover - the test extra installs it
        pytest.fail(f"jsonschema is needed to validate reports against {SCHEMA_PATH.name} ({e}); "
                    "install the test extra: pip install -e '.[test]'")
    return jsonschema.Draft202012Validator(schema)


def _errors(doc: Any, schema: dict = SCHEMA) -> list[str]:
    """Every validation error of ``doc`` as ``path: message``."""
    errs = sorted(_validator(schema).iter_errors(doc), key=lambda e: list(map(str, e.absolute_path)))
    return [f"/{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errs]


def assert_valid(doc: dict) -> None:
    """``doc`` is strict JSON (no bare NaN or infinity) and valid against the schema."""
    doc = json.loads(json.dumps(doc, allow_nan=False))
    errs = _errors(doc)
    assert not errs, "report.json does not match docs/report.schema.json:\n" + "\n".join(errs[:20])
    assert doc["schema_version"] == SCHEMA_VERSION


def _sub(name: str) -> dict:
    """The schema of ``$defs/name`` (with every definition, for its references)."""
    return {"$schema": SCHEMA["$schema"], "$ref": f"#/$defs/{name}", "$defs": DEFS}


# ---------------------------------------------------------------------------------------------
# runs through the command line (in process; the plot is not drawn: it does not enter the report)
# ---------------------------------------------------------------------------------------------
TEMPLATE = """
[data]
{data}

[model]
hidden = [3]
seed = 0

[threat]
{threat}

[train]
{train}

[certify]
{certify}
"""
MOONS = 'name = "two_moons"\nn_train = 12\nn_test = 10\nseed = 0'
TRAIN_DEFAULTS = {"epochs": "1", "lr": "0.1", "batch_size": "6"}


def _no_plot(path: str, *args, **kwargs) -> str:
    return path


def _run(tmp_path: Path, monkeypatch, data: str = MOONS, threat: str = 'type = "linf_features"\neps = 0.05',
         train: str = 'loss = "bce"', certify: str = "test_eps = 0.0") -> tuple[dict, Path]:
    """``mibpcert run`` of a tiny config; returns report.json as written and the run directory."""
    monkeypatch.setattr(cli, "plot_run", _no_plot)
    given = {line.split("=")[0].strip() for line in train.splitlines()}
    train = "\n".join([train, *(f"{k} = {v}" for k, v in TRAIN_DEFAULTS.items() if k not in given)])
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(TEMPLATE.format(data=data, threat=threat, train=train, certify=certify))
    out = tmp_path / "out"
    assert cli.main(["run", str(cfg), "--out", str(out), "--quiet"]) == 0
    return json.loads((out / "report.json").read_text()), out


def _three_classes(tmp_path: Path) -> str:
    """A CSV file of three classes of 2-D points; returns its ``[data]`` table."""
    g = np.random.default_rng(0)
    centres = np.array([[0.0, 0.0], [2.0, 0.0], [1.0, 2.0]])
    y = np.arange(30) % 3
    X = centres[y] + 0.4 * g.standard_normal((30, 2))
    lines = ["x1,x2,label"] + [f"{a:.6f},{b:.6f},{c}" for (a, b), c in zip(X, y)]
    (tmp_path / "tri.csv").write_text("\n".join(lines) + "\n")
    return 'path = "tri.csv"\ntest_fraction = 0.3\nseed = 0'


CASES: dict[str, dict[str, str]] = {
    "bce_select_epoch": dict(data=MOONS.replace("n_test = 10", "n_test = 10\nn_val = 6"),
                             train='loss = "bce"\nepochs = 2\nselect_epoch = true',
                             certify="test_eps = 0.01\ntrigger_eps = 0.02"),
    "hinge_label_flip": dict(threat='type = "label_flip"\nk = 1', train='loss = "hinge"'),
    "mse_regression": dict(data='name = "diabetes"\nseed = 0', threat='type = "label_noise"\nk = 1\ngamma = 0.1',
                           train='loss = "mse"\nbatch_size = 200\nlr = 0.01'),
    "mibp_highs_lp": dict(threat='type = "linf_features"\neps = 0.05\nk = 1',
                          train='loss = "hinge"\nmethod = "mibp"\nbackend = "highs"\nrelax = "lp"\nmode = "joint"'),
    "mibp_relational": dict(train='loss = "hinge"\nmethod = "mibp"\nbackend = "highs"\nrelax = "lp"\nrelational = true\n'
                                  'batch_size = 12'),
    "affine": dict(train='loss = "bce"\nmethod = "affine"'),
    "shared_trigger": dict(threat='type = "union"\n[[threat.parts]]\ntype = "shared_trigger"\nmask = [1, 0]\neps = 0.1\n'
                                  'k = 2\ntarget = 1\n[[threat.parts]]\ntype = "label_flip"\nk = 1',
                           train='loss = "hinge"'),
}


@pytest.mark.parametrize("case", list(CASES))
def test_reports_of_runs_are_valid(case, tmp_path, monkeypatch):
    """Binary (bce, hinge), regression (mse), MIBP (per-step and relational), affine and shared
    trigger runs write valid reports, with the optional parts the case is about."""
    doc, _ = _run(tmp_path, monkeypatch, **CASES[case])
    assert_valid(doc)
    s = doc["summary"]
    assert ("backdoor" in doc) == (case == "shared_trigger")
    assert ("solver_bounds" in s) == (s["method"] == "mibp") == case.startswith("mibp")
    assert (s["certified_accuracy"] is None) == (case == "mse_regression")
    if case == "bce_select_epoch":
        assert len(s["epoch_val_certified"]) == 2 and s["trigger_eps"] == 0.02
    if case == "mibp_relational":
        assert s["attacker"] == "fixed" and s["relational"] is True


def test_multiclass_ce_report_is_valid(tmp_path, monkeypatch):
    """Cross-entropy on three classes of your own CSV data (several logits)."""
    doc, _ = _run(tmp_path, monkeypatch, data=_three_classes(tmp_path), threat='type = "l0_features"\neps = 0.05\ns = 1\nk = 1',
                  train='loss = "ce"')
    assert_valid(doc)
    assert doc["config"]["model"]["widths"][-1] == 3 and doc["summary"]["loss"] == "ce"


def test_certify_reports_are_valid(tmp_path, monkeypatch, capsys):
    """`mibpcert certify RUN_DIR --out FILE` (own test set at another radius, and another data
    config's test set) writes valid reports."""
    _, out = _run(tmp_path, monkeypatch)
    other = tmp_path / "other.toml"
    other.write_text(f"[data]\n{MOONS.replace('seed = 0', 'seed = 1')}\n[certify]\ntest_eps = 0.01\ntrigger_eps = 0.01\n")
    assert cli.main(["certify", str(out), "--test-eps", "0.02", "--out", str(tmp_path / "c.json")]) == 0
    assert cli.main(["certify", str(out), "--data", str(other), "--out", str(tmp_path / "d.json")]) == 0
    for name, eps in (("c.json", 0.02), ("d.json", 0.01)):
        doc = json.loads((tmp_path / name).read_text())
        assert_valid(doc)
        assert doc["config"]["run_dir"] == str(out) and doc["summary"]["test_eps"] == eps


# ---------------------------------------------------------------------------------------------
# the example configs
# ---------------------------------------------------------------------------------------------
EXAMPLES = sorted(p.name for p in (ROOT / "examples").glob("*.toml"))


@pytest.mark.parametrize("name", EXAMPLES)
def test_example_configs_write_valid_reports(name, tmp_path, monkeypatch):
    """Every example config, cut to one epoch (and one solver worker), writes a valid report."""
    monkeypatch.setattr(cli, "plot_run", _no_plot)
    cfg = cli.load_config(str(ROOT / "examples" / name))
    cfg["train"].update(epochs=1, workers=1)
    doc = cli.run(cfg, str(tmp_path / "out"), quiet=True)
    assert_valid(doc)
    assert_valid(json.loads((tmp_path / "out" / "report.json").read_text()))


@pytest.mark.slow  # the full demo run: 100 steps and the plot (5-15 s)
def test_two_moons_example_report_is_valid(tmp_path):
    """`mibpcert run examples/two_moons.toml` as shipped (plot included) writes a valid report."""
    out = tmp_path / "two_moons"
    assert cli.main(["run", str(ROOT / "examples" / "two_moons.toml"), "--out", str(out), "--quiet"]) == 0
    assert_valid(json.loads((out / "report.json").read_text()))


# ---------------------------------------------------------------------------------------------
# the schema itself and its agreement with the code
# ---------------------------------------------------------------------------------------------
def test_schema_is_a_valid_draft_2020_12_schema():
    _validator().check_schema(SCHEMA)
    assert SCHEMA["$schema"] == "https://json-schema.org/draft/2020-12/schema"


def test_schema_matches_the_code():
    """Versions, enums and the fields of StepLog and TrainConfig are those of the code; every
    property has a description."""
    assert SCHEMA["properties"]["schema_version"]["const"] == SCHEMA_VERSION
    major, minor = SCHEMA_VERSION.split(".")
    assert major.isdigit() and minor.isdigit()
    log, tc = DEFS["step_log"], DEFS["train_config"]
    assert set(log["properties"]) == set(log["required"]) == {f.name for f in dataclasses.fields(StepLog)}
    assert set(tc["properties"]) == set(tc["required"]) == {f.name for f in dataclasses.fields(TrainConfig)}
    assert set(DEFS["method"]["enum"]) == set(METHODS) and set(DEFS["loss"]["enum"]) == set(LOSSES)
    assert set(tc["properties"]["mode"]["enum"]) == set(MODES) and set(tc["properties"]["relax"]["enum"]) == set(RELAX)
    assert set(tc["properties"]["dtype"]["enum"]) == set(DTYPES) and set(tc["properties"]["executor"]["enum"]) == set(EXECUTORS)
    assert set(DEFS["xnumber"]["anyOf"][1]["enum"]) == {json_safe(v) for v in (math.inf, -math.inf, math.nan)}

    def walk(node: Any, where: str) -> None:  # the conditions (allOf, if/then/else, not) need none
        if isinstance(node, dict):
            for name, sub in node.get("properties", {}).items():
                assert "description" in sub or "$ref" in sub, f"{where}/{name} has no description"
            for k, v in node.items():
                if k not in ("allOf", "if", "then", "else", "not"):
                    walk(v, f"{where}/{k}")
        elif isinstance(node, list):
            for i, v in enumerate(node):
                walk(v, f"{where}/{i}")

    walk(SCHEMA, "")


THREAT_TABLES = [
    {"type": "linf_features", "eps": 0.01},
    {"type": "linf_features", "eps": 0.2, "k": 2, "domain": [0.0, 1.0]},
    {"type": "l0_features", "eps": 0.05, "s": 1, "k": 2},
    {"type": "l1_features", "eps1": 0.05},
    {"type": "label_flip", "k": 1, "to": 0},
    {"type": "label_noise", "gamma": 0.1},
    {"type": "feature_values", "feature": 0, "values": [1.0, -1.0], "k": 5},
    {"type": "feature_values", "feature": [0, 1], "values": "onehot", "k": 2},
    {"type": "one_hot_feature", "columns": [[0, 1], [2, 3]]},
    {"type": "missing_values", "features": [1], "low": -0.5, "high": 0.5, "k": 1},
    {"type": "shared_trigger", "mask": [1, 0], "eps": 0.05, "k": 2, "target": 1},
    {"type": "shared_trigger", "mask": [True, False], "eps": 0.05},
    {"type": "union", "parts": [{"type": "l1_features", "eps1": 0.05, "k": 1}, {"type": "label_flip", "k": 1}]},
    {"type": "both", "paired": False, "parts": [{"type": "linf_features", "eps": 0.01}, {"type": "label_flip", "k": 1}]},
    {"type": "global_budget", "k": 3, "threat": {"type": "l0_features", "eps": 0.05, "s": 1}},
]


def test_every_threat_description_is_valid():
    """``describe()`` of every built-in threat type matches ``$defs/threat``; a changed key does not."""
    kinds = set()
    for table in THREAT_TABLES:
        desc = json_safe(from_config(copy.deepcopy(table)).describe())
        kinds.add(desc["type"])
        assert not _errors(desc, _sub("threat")), (desc, _errors(desc, _sub("threat")))
    assert kinds == {c["if"]["properties"]["type"]["const"] for c in DEFS["threat"]["allOf"]}
    assert _errors({"type": "linf_features", "eps": 0.01, "k": None, "domain": None, "radius": 1}, _sub("threat"))
    assert _errors({"type": "union", "parts": [{"type": "label_flip", "k": "one", "to": None}] * 2}, _sub("threat"))
    assert not _errors({"type": "my_threat", "anything": [1, 2]}, _sub("threat"))  # a user-defined Threat class


# ---------------------------------------------------------------------------------------------
# what the schema refuses (so that the checks above can fail)
# ---------------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def report(tmp_path_factory) -> dict:
    """A valid report of a tiny MIBP run with a shared trigger (every optional part present)."""
    with pytest.MonkeyPatch.context() as mp:
        doc, _ = _run(tmp_path_factory.mktemp("schema"), mp, threat=CASES["shared_trigger"]["threat"],
                      train=CASES["mibp_highs_lp"]["train"])
    assert_valid(doc)
    return doc


def _edited(doc: dict, edit) -> dict:
    out = copy.deepcopy(doc)
    edit(out)
    return out


INVALID = {
    "missing_schema_version": lambda d: d.pop("schema_version"),
    "other_schema_version": lambda d: d.update(schema_version="0.9"),
    "unknown_summary_key": lambda d: d["summary"].update(certified_fraction=0.5),
    "missing_summary_key": lambda d: d["summary"].pop("n_certified"),
    "unknown_log_field": lambda d: d["log"][0].update(new_width=1.0),
    "unknown_train_config_field": lambda d: d["config"]["train_config"].update(momentum=0.9),
    "unknown_backdoor_key": lambda d: d["backdoor"][0].update(pattern=[0.1, 0.0]),
    "unknown_fallback_reason": lambda d: d["summary"]["fallback_reasons"].update(crashed=1),
    "mibp_without_solver_counts": lambda d: d["summary"].pop("solver_bounds"),
    "trigger_summary_without_backdoor": lambda d: d.pop("backdoor"),
    "bare_string_for_infinity": lambda d: d["summary"].update(max_param_width="Infinity"),
    "accuracy_out_of_range": lambda d: d["summary"].update(certified_accuracy=1.5),
    "flags_not_booleans": lambda d: d["per_sample"].update(certified=[1, 0]),
    "no_threat_describe": lambda d: d["config"].pop("threat_describe"),
}


@pytest.mark.parametrize("case", list(INVALID))
def test_invalid_reports_are_refused(case, report):
    assert _errors(_edited(report, INVALID[case])), f"{case}: the schema accepted an invalid report"


def test_non_finite_numbers_and_extra_keys(report):
    """Non-finite floats in json_safe's encoding are accepted where the code can write them;
    keys added through ``extra`` are accepted; the code's own top-level keys are all declared."""
    doc = _edited(report, lambda d: (d["summary"].update(test_loss_bounds=["nan", "inf"], max_param_width="inf"),
                                     d["log"][0].update(width_ratio="nan"), d.update(my_notes={"seed": 1})))
    assert not _errors(doc)
    assert set(report) <= set(SCHEMA["properties"])
