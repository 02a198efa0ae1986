"""Parallel bounding (``mibpcert.solvers.parallel``): the same numbers for every worker count."""
from __future__ import annotations

import pytest

from mibpcert.ir.program import LinearExpr
from mibpcert.solvers import SolveOptions, get_backend
from mibpcert.solvers.parallel import SolverPool, bound_many, bound_parallel
from tests.helpers.programs import TINY, contains, random_mibp


# ------------------------------------------------------------------------------------------------
# Parallel helpers and registry
# ------------------------------------------------------------------------------------------------
def _numbers(res):
    return [(b.lower, b.upper, b.lower_status, b.upper_status) for b in res]


@pytest.mark.slow  # spawns worker processes
def test_bound_many_and_parallel_identical_for_worker_counts() -> None:
    jobs = [(t.program, [t.objective, LinearExpr.var(0, 2.0, 1.0)]) for t in TINY]
    prog, _, objs = random_mibp(7, n_cont=30, n_bin=5, n_bil=20, n_rows=20)
    objs = objs * 3
    one = bound_many("highs", jobs, SolveOptions(), workers=1)
    s1 = bound_parallel("highs", prog, objs, SolveOptions(relax="lp"), workers=1, chunk_size=3)
    # one pool of spawned workers for both calls (a worker start imports mibpcert, i.e. torch)
    with SolverPool(2) as pool:
        two = bound_many("highs", jobs, SolveOptions(), pool=pool, jobs_per_chunk=2)
        s2 = bound_parallel("highs", prog, objs, SolveOptions(relax="lp"), chunk_size=3, pool=pool)
    assert [_numbers(r) for r in one] == [_numbers(r) for r in two]
    for t, r in zip(TINY, one):
        assert contains(r[0], t.true_min, t.true_max)
    assert _numbers(s1) == _numbers(s2) and len(s1) == len(objs)
    direct = get_backend("highs").bound(prog, objs[:3], SolveOptions(relax="lp"))
    assert _numbers(direct) == _numbers(s1[:3])


@pytest.mark.slow  # spawns worker processes
def test_workers_ignore_ctrl_c() -> None:
    """Ctrl-C in a terminal reaches every process of the group: the workers ignore it, so the
    parent can finish (and checkpoint) the step in flight with them."""
    import os
    import signal
    import time

    jobs = [(t.program, [t.objective]) for t in TINY]
    with SolverPool(2) as pool:
        first = bound_many("highs", jobs, SolveOptions(), pool=pool, jobs_per_chunk=1)
        pids = list(pool._executor._processes)
        assert pids, "no worker process started"

        def ignores_sigint(pid: int) -> bool:  # the worker has run its initializer (Linux: /proc)
            with open(f"/proc/{pid}/status") as f:
                mask = next(int(line.split()[1], 16) for line in f if line.startswith("SigIgn:"))
            return bool(mask & (1 << (signal.SIGINT - 1)))

        t0 = time.time()
        while not all(ignores_sigint(pid) for pid in pids):  # a worker may still be starting
            assert time.time() - t0 < 120, "workers did not finish starting"
            time.sleep(0.05)
        for pid in pids:
            os.kill(pid, signal.SIGINT)
        time.sleep(0.5)
        again = bound_many("highs", jobs, SolveOptions(), pool=pool, jobs_per_chunk=1)
        assert list(pool._executor._processes) == pids, "a worker died on SIGINT"
    assert [_numbers(r) for r in first] == [_numbers(r) for r in again]


def test_solves_run_with_single_threaded_blas(monkeypatch) -> None:
    """Spinning BLAS helper threads took the core of the neighbouring worker (two workers ran at
    half speed each): every chunk is solved with numpy's BLAS on one thread, and the caller's
    setting is restored afterwards."""
    import threadpoolctl

    from mibpcert.solvers import parallel

    def blas_threads() -> list[int]:
        return [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]

    seen = []

    class Recorder:
        def bound(self, program, objectives, options):
            seen.append(blas_threads())
            return []

    monkeypatch.setattr(parallel, "get_backend", lambda name: Recorder())
    with threadpoolctl.threadpool_limits(2, user_api="blas"):
        outside = blas_threads()
        assert outside and set(outside) == {2}, f"no BLAS library with 2 threads to check against: {outside}"
        parallel.solve_jobs("highs", [(TINY[0].program, [TINY[0].objective])] * 2, SolveOptions())
        assert blas_threads() == outside
    assert seen == [[1] * len(outside)] * 2
