"""Executors (``mibpcert.solvers.executors``): Ray tasks give the bounds of the local executor bit
for bit, for ``bound_many``/``bound_parallel`` and for whole MIBP training runs; every program is
shipped once per call; a missing Ray is said before any training step; Ctrl-C neither kills Ray's
workers nor cuts the step in flight short, and a run that started its own Ray instance leaves no
process behind.

The tests share one local Ray instance with 2 CPUs (module fixture); without Ray they fail, never
skip (the ``ray`` extra: ``pip install -e '.[ray]'``)."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from dataclasses import replace
from pathlib import Path

import pytest
import torch

import mibpcert.bounders as bounders_mod
from mibpcert import TrainConfig, certified_train, certify
from mibpcert.cli import main
from mibpcert.ir.program import LinearExpr
from mibpcert.solvers import SolveOptions, SolverUnavailable
from mibpcert.solvers.executors import RayExecutor, make_executor
from mibpcert.solvers.parallel import SolverPool, bound_many, bound_parallel
from tests.helpers.bounds import assert_same_box
from tests.helpers.mibp import case_data, mibp_cfg
from tests.helpers.programs import TINY, random_mibp
from tests.test_cli import SLOW_RUN, SLOW_STEPS


@pytest.fixture(scope="module")
def ray_instance():
    """One local Ray instance (2 CPUs) for the module; executors find it running and leave it."""
    try:
        import ray
    except ImportError as e:
        pytest.fail(f"Ray is needed for these tests ({e}): pip install -e '.[ray]'")
    assert not ray.is_initialized(), "a Ray instance is already running in the test process"
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _numbers(res):
    return [(b.lower, b.upper, b.lower_status, b.upper_status) for b in res]


def _problems():
    jobs = [(t.program, [t.objective, LinearExpr.var(0, 2.0, 1.0)]) for t in TINY]
    prog, _, objs = random_mibp(7, n_cont=30, n_bin=5, n_bil=20, n_rows=20)
    return jobs, prog, objs * 3


def _cli_config(tmp_path: Path, train: str) -> Path:
    """The slow CLI run of tests/test_cli.py (``SLOW_STEPS`` joint MIBP steps), 2 workers, ``train`` lines."""
    cfg = tmp_path / "cfg.toml"
    cfg.write_text(SLOW_RUN.replace('relax = "lp"\n', f'relax = "lp"\nworkers = 2\n{train}\n'))
    return cfg


def test_ray_bounds_are_the_local_bounds_and_programs_ship_once(ray_instance, monkeypatch):
    """bound_many and bound_parallel on Ray (1 and 2 workers) equal the serial and the process-pool
    results bit for bit; each call puts every distinct program into the object store once (one
    shared program over four chunks: one put)."""
    jobs, prog, objs = _problems()
    ref_many = bound_many("highs", jobs, SolveOptions(), workers=1)
    ref_par = bound_parallel("highs", prog, objs, SolveOptions(relax="lp"), workers=1, chunk_size=3)
    puts = []
    real_put = ray_instance.put
    monkeypatch.setattr(ray_instance, "put", lambda v, **k: (puts.append(v), real_put(v, **k))[1])
    with SolverPool(2) as local, RayExecutor(1) as one, RayExecutor(2) as two:
        for ex in (local, one, two):
            puts.clear()
            many = bound_many("highs", jobs, SolveOptions(), pool=ex, jobs_per_chunk=2)
            assert [_numbers(r) for r in many] == [_numbers(r) for r in ref_many], type(ex).__name__
            assert len(puts) == (len(jobs) if ex is not local else 0)
            puts.clear()
            par = bound_parallel("highs", prog, objs, SolveOptions(relax="lp"), chunk_size=3, pool=ex)
            assert _numbers(par) == _numbers(ref_par) and len(par) == len(objs), type(ex).__name__
            assert len(puts) == (1 if ex is not local else 0) and all(p is prog for p in puts)
    assert ray_instance.is_initialized(), "an executor shut down a Ray instance it did not start"


@pytest.mark.parametrize("mode", ["per_sample", "joint"])
def test_ray_training_is_local_training_bit_for_bit(ray_instance, mode):
    """certified_train with executor='ray' and 2 workers: the box and the step counts of the local
    executor with 2 workers (the same chunks: joint mode splits the program's objectives in two)."""
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    cfg = dict(loss=loss, mode=mode, relax="lp", time_limit=None, epochs=2, workers=2)
    local = certified_train(model, X, y, threat_f(), mibp_cfg(**cfg))
    on_ray = certified_train(model, X, y, threat_f(), mibp_cfg(executor="ray", **cfg))
    assert_same_box(local, on_ray, f"ray {mode}")
    assert [(s.solver_bounds, s.fallback_bounds) for s in local.log] == [(s.solver_bounds, s.fallback_bounds) for s in on_ray.log]
    assert sum(s.solver_bounds for s in on_ray.log) > 0 and on_ray.config.executor == "ray"
    assert ray_instance.is_initialized()


def test_mibp_certificate_runs_on_the_training_executor(ray_instance, monkeypatch):
    """certify(method='mibp') of a run trained with executor='ray' sends its programs to Ray, and
    its margins are those of the same certificate on the local executor, bit for bit."""
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    res = certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, mode="joint", relax="lp", time_limit=None,
                                                            epochs=1, executor="ray", workers=2))
    calls = []
    real = RayExecutor.map_chunks
    monkeypatch.setattr(RayExecutor, "map_chunks", lambda self, *a, **k: (calls.append(1), real(self, *a, **k))[1])
    for eps in (0.25, 0.5, 1.0, 2.0, 4.0):  # a test radius that leaves margins undecided: those get programs
        margin = certify(res, X, y, test_eps=eps).margin
        if bool(((margin.lo <= 0) & (margin.hi >= 0)).any()):
            break
    else:
        pytest.fail("no test radius leaves a margin undecided by intervals, so no program would be solved")
    on_ray = certify(res, X, y, test_eps=eps, method="mibp")
    assert calls, "the certificate's programs did not go to Ray"
    local = certify(replace(res, config=replace(res.config, executor="local")), X, y, test_eps=eps, method="mibp")
    assert torch.equal(local.margin.lo, on_ray.margin.lo) and torch.equal(local.margin.hi, on_ray.margin.hi)


def test_missing_ray_is_said_before_any_step(monkeypatch, tmp_path, capsys):
    """Without Ray, executor='ray' stops the run before any training step with the install hint,
    from the API (SolverUnavailable) and the command line (one line, exit status 1)."""
    monkeypatch.setitem(sys.modules, "ray", None)  # `import ray` raises ImportError
    steps = []
    real = bounders_mod.interval_step
    monkeypatch.setattr(bounders_mod, "interval_step", lambda *a, **k: (steps.append(1), real(*a, **k))[1])
    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    with pytest.raises(SolverUnavailable, match=r"needs Ray, which is not installed .*pip install 'mibpcert\[ray\]'"):
        certified_train(model, X, y, threat_f(), mibp_cfg(loss=loss, executor="ray", workers=2))
    with pytest.raises(SolverUnavailable, match=r"pip install 'mibpcert\[ray\]'"):
        make_executor("ray", 1, "auto")
    cfg = _cli_config(tmp_path, 'executor = "ray"')
    assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 1
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "SolverUnavailable: executor='ray' needs Ray" in err and "mibpcert[ray]" in err
    assert steps == []


def test_bad_executor_values(tmp_path, capsys):
    """Unknown executors, an address without Ray and no workers are ValueErrors (the TrainConfig
    checks are in tests/test_config.py); in [train] they are exit status 2 before any work."""
    with pytest.raises(ValueError, match="executor must be 'local' or 'ray'.*got 'dask'"):
        make_executor("dask", 2)
    with pytest.raises(ValueError, match="an address only with 'ray'.*'auto'"):
        make_executor("local", 2, "auto")
    with pytest.raises(ValueError, match="workers must be >= 1"):
        RayExecutor(0)
    for train, message in (('executor = "dask"', "TrainConfig.executor must be one of ('local', 'ray'), got 'dask'"),
                           ('ray_address = "auto"', "TrainConfig.ray_address='auto' needs executor='ray'")):
        cfg = _cli_config(tmp_path, train)
        assert main(["run", str(cfg), "--out", str(tmp_path / "out"), "--quiet"]) == 2
        assert message in capsys.readouterr().err


def test_ctrl_c_reaches_neither_the_ray_workers_nor_the_work(ray_instance):
    """Ray's workers block SIGINT: Ctrl-C during a call, here sent
    to the driver and to every worker, lets the call finish with the same bounds (the driver's
    handler decides, as a checkpointed run's does), and no worker dies."""
    prog, _, objs = random_mibp(7, n_cont=200, n_bin=30, n_bil=150, n_rows=150)
    objs, opts = objs * 4, SolveOptions(relax="lp")
    pid_task = ray_instance.remote(num_cpus=1)(lambda: os.getpid())

    def worker_pids() -> set[int]:
        return set(ray_instance.get([pid_task.remote() for _ in range(8)]))

    with RayExecutor(2) as ex:
        ref = bound_parallel("highs", prog, objs, opts, chunk_size=4, pool=ex)
        pids = worker_pids()
        got: list[float] = []
        old = signal.signal(signal.SIGINT, lambda s, f: got.append(time.monotonic()))
        try:
            timer = threading.Timer(0.3, lambda: [os.kill(p, signal.SIGINT) for p in (os.getpid(), *pids)])
            timer.start()
            res = bound_parallel("highs", prog, objs, opts, chunk_size=4, pool=ex)
            done = time.monotonic()
            timer.join()
        finally:
            signal.signal(signal.SIGINT, old)
        assert got and got[0] < done, "SIGINT did not arrive during the call"
        assert _numbers(res) == _numbers(ref)
        assert worker_pids() == pids, "a Ray worker died on SIGINT"


def _session_processes(sid: int) -> list[str]:
    """Command names of the processes in session ``sid`` (Linux /proc)."""
    out = []
    for d in Path("/proc").iterdir():
        try:
            stat = (d / "stat").read_text()
        except (OSError, ValueError):
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        if d.name.isdigit() and int(fields[3]) == sid:
            out.append(stat[stat.index("(") + 1:stat.rindex(")")])
    return out


@pytest.mark.slow  # a fresh interpreter that starts its own Ray instance
def test_ctrl_c_on_a_cli_run_with_its_own_ray_instance(tmp_path):
    """`mibpcert run` with executor = "ray" in a terminal session: Ctrl-C (SIGINT to the foreground
    process group) finishes and saves the step in flight, exits with status 130, and shuts down the
    Ray instance the run started: no process of the session is left."""
    cfg = _cli_config(tmp_path, 'executor = "ray"')
    out = tmp_path / "out"
    cmd = [sys.executable, "-m", "mibpcert.cli", "run", str(cfg), "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=tmp_path,
                            start_new_session=True)
    try:
        t0 = time.time()
        while not (out / "checkpoint.pt").exists():
            assert proc.poll() is None, f"the run ended (status {proc.returncode}) before its first step was saved"
            assert time.time() - t0 < 180, "no step saved after 180 s"
            time.sleep(0.05)
        os.killpg(proc.pid, signal.SIGINT)
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    assert proc.returncode == 130 and "interrupted after step" in err, err
    step = torch.load(out / "checkpoint.pt", weights_only=False)["step"]
    assert 1 <= step < SLOW_STEPS and not (out / "result.pt").exists()
    t0 = time.time()
    while (left := _session_processes(proc.pid)) and time.time() - t0 < 30:
        time.sleep(0.2)
    assert not left, f"processes of the run left running: {left}"


def test_train_config_of_a_run_keeps_the_executor():
    """The executor and address are not part of the checkpoint's fingerprint (a run may resume on
    another executor), and they are fields of the config."""
    from mibpcert import describe
    from mibpcert.checkpoint import fingerprint

    model, X, y, threat_f, _, loss = case_data("linf_k1-bce")
    spec = describe(model)
    fps = {fingerprint(model, spec, X, y, threat_f(), TrainConfig(method="mibp", loss=loss, **kw))
           for kw in (dict(), dict(executor="ray"), dict(executor="ray", ray_address="ray://head:10001", workers=8))}
    assert len(fps) == 1
