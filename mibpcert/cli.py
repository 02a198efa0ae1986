"""Command line: ``mibpcert run CONFIG.toml [--out DIR] [--quiet]`` and
``mibpcert certify RUN_DIR [--data CONFIG.toml] [--test-eps E] [--out FILE]``.

The TOML file has the tables ``[data]``, ``[model]``, ``[threat]``, ``[train]``, ``[certify]`` and
``[output]`` (see docs/cli.md). Unknown tables or keys and invalid values are reported as one line
``error: ...`` with exit status 2; a run whose bounds diverge exits with status 1.
"""
from __future__ import annotations

import argparse
import dataclasses
import inspect
import json
import logging
import os
import sys
import time
import traceback
from typing import Any

try:  # Python >= 3.11
    import tomllib
except ModuleNotFoundError:  # pragma: no cover - Python 3.10
    import tomli as tomllib

from . import checkpoint, threats
from . import data as data_mod
from .backdoor import backdoor_certificate, triggers_in
from .certificates import certify
from .config import TrainConfig
from .losses import get_loss
from .model import mlp
from .report import build_report, format_summary, plot_run, write_report
from .threats import check_keys, check_threat_table
from .train import TrainResult, certified_train
from .version import __version__

TABLES = ("data", "model", "threat", "train", "certify", "output")
MODEL_KEYS = {"hidden": [20], "seed": 0}
OUTPUT_KEYS = {"dir": None}
DATA_PATH_KEYS = ("path", "test_path", "val_path")  # [data] keys naming files, relative to the config
RESULT_NAME = "result.pt"  # the saved TrainResult in a run's output directory


class ConfigError(ValueError):
    """An invalid configuration file."""


# ---------------------------------------------------------------------------------------------
# config validation (pure helpers, also used by the tests and docs)
# ---------------------------------------------------------------------------------------------
def _check_keys(table: str, d: dict, allowed, what: str = "") -> None:
    try:
        check_keys(table, d, allowed, what)
    except ValueError as e:
        raise ConfigError(str(e)) from None


def data_keys(name: str) -> list[str]:
    """Keyword arguments accepted by the data set ``name`` (``[data]`` keys besides ``name``)."""
    if name not in data_mod.DATASETS:
        raise ConfigError(f"unknown data set {name!r}; valid names: {', '.join(sorted(data_mod.DATASETS))}")
    return list(inspect.signature(data_mod.DATASETS[name]).parameters)


def _certify_keys() -> list[str]:
    return [p for p in inspect.signature(certify).parameters if p not in ("result", "X_test", "y_test")]


def _train_keys() -> list[str]:
    return [f.name for f in dataclasses.fields(TrainConfig)]


def _number(v: Any, name: str) -> float:
    if isinstance(v, bool) or not isinstance(v, (int, float)) or v != v or v < 0 or v == float("inf"):
        raise ConfigError(f"{name} must be a finite non-negative number, got {v!r}")
    return float(v)


def _no_limit(table: dict, name: str, key: str) -> None:
    """TOML has no null: ``key = "none"`` is no time limit."""
    v = table.get(key)
    if isinstance(v, str):
        if v.strip().lower() != "none":
            raise ConfigError(f'{name}.{key} must be a positive number of seconds or "none", got {v!r}')
        table[key] = None


def _check_data_table(d: dict, where: str = "") -> None:
    """Check a ``[data]`` table in place: ``path`` alone names your own file (data set ``file``)."""
    if "name" not in d and "path" in d:
        d["name"] = "file"  # your own data: [data] path = "train.csv"
    if "name" not in d:
        raise ConfigError(f"{where}[data] needs a 'name' key (e.g. name = \"two_moons\") or a 'path' to your own "
                          "CSV/.npz file")
    _check_keys("data", d, ["name", *data_keys(d["name"])], f" for data set {d['name']!r}")


def _load_data(d: dict):
    """The data set of a checked ``[data]`` table."""
    return data_mod.load(d["name"], **{k: v for k, v in d.items() if k != "name"})


def validate_config(cfg: dict) -> dict:
    """Check the structure of a parsed config and fill in defaults; returns a new dict with every
    table present. Values are checked by the library when the objects are built."""
    if not isinstance(cfg, dict):
        raise ConfigError("the config must be a TOML document of tables")
    for t in cfg:
        if t not in TABLES:
            raise ConfigError(f"unknown table or top-level key {t!r}; allowed tables: {', '.join(TABLES)}")
        if not isinstance(cfg[t], dict):
            raise ConfigError(f"{t!r} must be a table ([{t}])")
    out = {t: dict(cfg.get(t, {})) for t in TABLES}
    # [data]
    _check_data_table(out["data"])
    # [model]
    m = out["model"]
    _check_keys("model", m, MODEL_KEYS)
    m = out["model"] = {**MODEL_KEYS, **m}
    hidden = m["hidden"]
    if not isinstance(hidden, list) or any(isinstance(h, bool) or not isinstance(h, int) or h <= 0 for h in hidden):
        raise ConfigError(f"model.hidden must be a list of positive integers, got {hidden!r}")
    if isinstance(m["seed"], bool) or not isinstance(m["seed"], int):
        raise ConfigError(f"model.seed must be an integer, got {m['seed']!r}")
    # [threat]
    if not out["threat"]:
        raise ConfigError("the config needs a [threat] table (e.g. type = \"linf_features\", eps = 0.01)")
    try:
        check_threat_table(out["threat"])
    except ValueError as e:
        raise ConfigError(str(e)) from None
    # [train]
    _check_keys("train", out["train"], _train_keys())
    _no_limit(out["train"], "train", "time_limit")
    _no_limit(out["train"], "train", "step_time_limit")
    # [certify]
    c = out["certify"]
    _check_keys("certify", c, _certify_keys())
    c.setdefault("test_eps", 0.0)
    _number(c["test_eps"], "certify.test_eps")
    if "trigger_eps" in c:
        _number(c["trigger_eps"], "certify.trigger_eps")
    # [output]
    _check_keys("output", out["output"], OUTPUT_KEYS)
    if "dir" in out["output"] and not isinstance(out["output"]["dir"], str):
        raise ConfigError(f"output.dir must be a string, got {out['output']['dir']!r}")
    return out


def _read_toml(path: str) -> dict:
    try:
        with open(path, "rb") as f:
            return tomllib.load(f)
    except FileNotFoundError:
        raise ConfigError(f"config file not found: {path}") from None
    except IsADirectoryError:
        raise ConfigError(f"config path is a directory: {path}") from None
    except tomllib.TOMLDecodeError as e:
        raise ConfigError(f"{path}: invalid TOML: {e}") from None


def load_config(path: str) -> dict:
    """Read and validate a TOML config file; data file paths in ``[data]`` are taken relative to
    the config file's directory."""
    cfg = validate_config(_read_toml(path))
    _resolve_data_paths(cfg["data"], os.path.dirname(os.path.abspath(path)))
    return cfg


def _resolve_data_paths(table: dict, base: str) -> None:
    for key in DATA_PATH_KEYS:
        v = table.get(key)
        if isinstance(v, str) and not os.path.isabs(v):
            table[key] = os.path.normpath(os.path.join(base, v))


def output_width(loss: str, dataset) -> int:
    """Number of model outputs the loss needs on the data set (:meth:`Loss.output_width`)."""
    y = dataset.y_train
    try:
        return get_loss(loss).output_width(dataset.num_classes, int(y.shape[1]) if y.dim() == 2 else 1)
    except ValueError as e:
        raise ConfigError(str(e)) from None


# ---------------------------------------------------------------------------------------------
# the run
# ---------------------------------------------------------------------------------------------
def run(cfg: dict, out_dir: str | None = None, quiet: bool = False, force: bool = False) -> dict:
    """Run a validated config end to end; write result.pt, report.json and plot.png; return the
    report. Training is checkpointed into the output directory (unless ``[train] checkpoint_dir``
    says elsewhere): the same command again resumes an interrupted run; a checkpoint of another
    run there is an error unless ``force`` (then it is removed first)."""
    def say(msg: str) -> None:
        if not quiet:
            print(msg, file=sys.stderr, flush=True)

    t_start = time.perf_counter()
    out_dir = out_dir or cfg["output"].get("dir") or os.path.join("runs", cfg["data"]["name"])
    prepare_out_dir(out_dir)
    train_kw = dict(cfg["train"])
    train_kw.setdefault("checkpoint_dir", out_dir)
    if quiet:
        train_kw["progress"] = False
    else:
        train_kw.setdefault("progress", True)
    tc = TrainConfig(**train_kw)
    threat = threats.from_config(cfg["threat"])
    ds = _load_data(cfg["data"])
    if tc.select_epoch and ds.X_val is None:
        raise ConfigError("train.select_epoch = true needs a validation set: set n_val > 0 in [data]")
    widths = [ds.num_features, *cfg["model"]["hidden"], output_width(tc.loss, ds)]
    model = mlp(widths, seed=cfg["model"]["seed"], dtype=tc.torch_dtype)
    say(f"mibpcert: {ds.name} ({ds.X_train.shape[0]} train, {ds.X_test.shape[0]} test), "
        f"model {'-'.join(map(str, widths))}, threat {threat.describe()}, method {tc.method}")

    t0 = time.perf_counter()
    val = (ds.X_val, ds.y_val) if tc.select_epoch else (None, None)
    try:
        result = certified_train(model, ds.X_train, ds.y_train, threat, tc, *val)
    except checkpoint.ForeignCheckpoint as e:  # raised after every input was checked, before any step
        if not force:
            raise
        say(f"--force: removing {e.path} (the checkpoint of another run)")
        os.remove(e.path)
        result = certified_train(model, ds.X_train, ds.y_train, threat, tc, *val)
    t_train = time.perf_counter() - t0
    result.save(os.path.join(out_dir, RESULT_NAME))  # before anything else can fail
    t0 = time.perf_counter()
    ckw = {k: v for k, v in cfg["certify"].items()}
    rep = certify(result, ds.X_test, ds.y_test, **ckw)
    # a shared trigger in the threat: bound its success on triggered test points
    backdoor = [] if result.info.task == "regression" else [backdoor_certificate(result, ds.X_test, ds.y_test, t) for t in triggers_in(threat)]
    t_cert = time.perf_counter() - t0

    report_path = os.path.join(out_dir, "report.json")
    plot_path = os.path.join(out_dir, "plot.png")
    echo = {t: cfg[t] for t in TABLES}
    echo["output"] = {**cfg["output"], "dir": out_dir}
    echo["model"] = {**cfg["model"], "widths": widths}
    t0 = time.perf_counter()
    plot_run(plot_path, result, rep, ds)
    t_plot = time.perf_counter() - t0
    timings = {"train": t_train, "certify": t_cert, "plot": t_plot, "total": time.perf_counter() - t_start}
    doc = write_report(report_path, result, rep, config=echo, timings=timings, backdoor=backdoor)
    title = f"mibpcert run: {ds.name}, {threat.describe().get('type')}, {tc.method}"
    print(format_summary(doc["summary"], title))
    print(f"wrote {report_path}, {plot_path} and {os.path.join(out_dir, RESULT_NAME)}")
    return doc


def certify_run(run_dir: str, data_config: str | None = None, test_eps: float | None = None,
                out: str | None = None) -> dict:
    """Certify test data with the saved result of a run (``RUN_DIR/result.pt``), without training:
    the run's own test set, or the ``[data]`` table of ``data_config`` (its ``[certify]`` table
    too, if it has one); ``test_eps`` overrides the radius. Prints the summary; writes the report
    to ``out`` when given. Returns the report."""
    path = os.path.join(run_dir, RESULT_NAME)
    if not os.path.isfile(path):
        raise ConfigError(f"{run_dir!r} holds no saved result ({RESULT_NAME}); `mibpcert run` writes one into its "
                          "output directory")
    result = TrainResult.load(path)
    if data_config is not None:
        raw = _read_toml(data_config)
        if not isinstance(raw.get("data"), dict):
            raise ConfigError(f"{data_config}: needs a [data] table")
        tables = {"data": dict(raw["data"]), "certify": dict(raw.get("certify", {}))}
        _check_data_table(tables["data"], f"{data_config}: ")
        _resolve_data_paths(tables["data"], os.path.dirname(os.path.abspath(data_config)))
    else:
        try:
            with open(os.path.join(run_dir, "report.json")) as f:
                echo = json.load(f)["config"]
        except (OSError, ValueError, KeyError) as e:
            raise ConfigError(f"{run_dir!r}: cannot read the run's report.json for its data ({e}); give --data") from None
        tables = {"data": echo["data"], "certify": echo.get("certify", {})}
    _check_keys("certify", tables["certify"], _certify_keys())
    ckw = {k: v for k, v in tables["certify"].items()}
    if test_eps is not None:
        ckw["test_eps"] = _number(test_eps, "--test-eps")
    ds = _load_data(tables["data"])
    rep = certify(result, ds.X_test, ds.y_test, **ckw)
    config = {"data": tables["data"], "certify": ckw, "run_dir": run_dir}
    doc = write_report(out, result, rep, config=config) if out is not None else build_report(result, rep, config=config)
    print(format_summary(doc["summary"], f"mibpcert certify: {ds.name} test set, saved run {run_dir}"))
    if out is not None:
        print(f"wrote {out}")
    return doc


def prepare_out_dir(path: str) -> None:
    """Create the run directory before any work is done, so that a location that cannot hold the
    results fails at once instead of after training."""
    if os.path.exists(path) and not os.path.isdir(path):
        raise ConfigError(f"output directory {path!r} exists and is not a directory; choose another --out")
    try:
        os.makedirs(path, exist_ok=True)
    except OSError as e:
        raise ConfigError(f"cannot create the output directory {path!r}: {e.strerror or e}") from None
    if not os.access(path, os.W_OK | os.X_OK):
        raise ConfigError(f"output directory {path!r} is not writable; choose another --out")


def _one_line(e: BaseException) -> str:
    msg = str(e) or type(e).__name__
    return " ".join(msg.split())


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``mibpcert`` command; returns the exit status (0 ok, 1 the run failed,
    2 invalid command line or configuration). argparse itself exits with 2 on a bad command line."""
    parser = argparse.ArgumentParser(prog="mibpcert", description="Certified training against data poisoning.")
    parser.add_argument("--version", action="version", version=f"mibpcert {__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    p_run = sub.add_parser("run", help="certified training + certification from a TOML config")
    p_run.add_argument("config", metavar="CONFIG.toml", help="run configuration (see docs/cli.md)")
    p_run.add_argument("--out", metavar="DIR", help="output directory (overrides [output] dir)")
    p_run.add_argument("--quiet", action="store_true", help="no progress bar or status lines; only the summary")
    p_run.add_argument("--debug", action="store_true", help="on an error, also print the traceback")
    p_run.add_argument("--force", action="store_true", help="start afresh when the output directory holds the "
                       "checkpoint of another run (it is removed once the new run's inputs are checked)")
    p_cert = sub.add_parser("certify", help="certify test data with a finished run's saved result (no training)")
    p_cert.add_argument("run_dir", metavar="RUN_DIR", help="output directory of a `mibpcert run`")
    p_cert.add_argument("--data", metavar="CONFIG.toml", help="a config whose [data] table names the test data "
                        "(default: the run's own test set)")
    p_cert.add_argument("--test-eps", type=float, metavar="E", help="test-time radius (default: the run's [certify] test_eps)")
    p_cert.add_argument("--out", metavar="FILE", help="also write the report (JSON) to FILE")
    p_cert.add_argument("--debug", action="store_true", help="on an error, also print the traceback")
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help(sys.stderr)
        return 2
    logger = logging.getLogger("mibpcert")
    handler, propagate = _StderrLines(), logger.propagate
    logger.addHandler(handler)
    logger.propagate = False  # the library's warnings (fallbacks, resuming) once, on stderr
    try:
        return _dispatch(args)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate


class _StderrLines(logging.Handler):
    """Each log record as one ``warning: ...`` line on the current stderr."""

    def __init__(self) -> None:
        super().__init__(logging.WARNING)

    def emit(self, record: logging.LogRecord) -> None:
        print(f"{record.levelname.lower()}: {_one_line(Exception(record.getMessage()))}", file=sys.stderr, flush=True)


def _dispatch(args) -> int:
    """Run the command; every failure is one ``error:`` line and an exit status (0 ok, 1 the run
    failed, 2 invalid input, 130 interrupted); ``--debug`` adds the traceback."""
    try:
        if args.command == "certify":
            certify_run(args.run_dir, args.data, args.test_eps, args.out)
        else:
            run(load_config(args.config), args.out, args.quiet, args.force)
        return 0
    except BaseException as e:  # noqa: BLE001 - every failure becomes one line and a status
        line, status = _failure(e)
        if args.debug:
            traceback.print_exception(type(e), e, e.__traceback__)
        print(line, file=sys.stderr)
        return status


def _failure(e: BaseException) -> tuple[str, int]:
    """The error line and exit status of an exception."""
    if isinstance(e, checkpoint.TrainingInterrupted):  # the last finished step is saved
        return f"error: {e}", 130
    if isinstance(e, KeyboardInterrupt):
        return "error: interrupted", 130
    if isinstance(e, (ValueError, TypeError, OSError)):  # invalid configuration, data or output location
        return f"error: {_one_line(e)}", 2
    if isinstance(e, RuntimeError):  # BoundsDiverged, SoundnessError, solver failures
        return f"error: {type(e).__name__}: {_one_line(e)}", 1
    if isinstance(e, MemoryError):
        return "error: out of memory; use a smaller model, data set or batch, or method = \"interval\"", 1
    if isinstance(e, (SystemExit, GeneratorExit)):
        raise e
    return (f"error: internal error, a bug in mibpcert {__version__} ({type(e).__name__}: {_one_line(e)}); "
            "please report it with the output of the same command with --debug"), 1

if __name__ == "__main__":
    sys.exit(main())
