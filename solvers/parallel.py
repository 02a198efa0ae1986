"""Parallel bounding behind one small interface, :class:`Executor`.

Work is cut into chunks that do not depend on the executor, and every chunk is bounded by a fresh
backend instance (:func:`solve_jobs`: its own solver model, built where the chunk runs from the
pickled :class:`~mibpcert.ir.program.Program`). A chunk's result therefore does not depend on which
process or machine solves it, so the results (``seconds`` aside) are the same for every executor
(:class:`SolverPool` here, :class:`~mibpcert.solvers.executors.RayExecutor`) and every worker
count, given a deterministic solver and no time limit being hit.

Workers are started with the ``spawn`` method (safe next to torch/OpenMP state in the parent), so
callers running a script must guard their entry point with ``if __name__ == "__main__":``.
"""
from __future__ import annotations

import abc
import concurrent.futures as cf
import dataclasses
import multiprocessing as mp
import os
import signal
from typing import Sequence

from threadpoolctl import threadpool_limits

from mibpcert.ir.program import LinearExpr, Program

from .base import ObjectiveBound, SolveOptions
from .registry import get_backend

# (program, objectives) or (program, objectives, warm_start): a job's own feasible start point
# replaces ``options.warm_start`` for that job.
Job = tuple


def solve_jobs(backend_name: str, jobs: list[Job], options: SolveOptions) -> list[list[ObjectiveBound]]:
    """Bound each job of one chunk with a fresh backend: what every executor runs per chunk (in a
    worker, or in this process when serial), so a chunk's result does not depend on where it ran.

    numpy's BLAS runs on one thread meanwhile. Between solves the backends take a few dot products
    of program-sized vectors (e.g. HiGHS's rigorous dual bound); above ~10,000 entries OpenBLAS
    spreads those over its threads, which then spin waiting for more work and take the core a
    neighbouring worker needs (measured: two workers each ran at half speed, so ``workers=2``
    gave no speed-up on 2 cores)."""
    backend = get_backend(backend_name)
    out = []
    with threadpool_limits(1, user_api="blas"):
        for job in jobs:
            program, objs = job[0], list(job[1])
            opts = dataclasses.replace(options, warm_start=job[2]) if len(job) > 2 and job[2] is not None else options
            out.append(backend.bound(program, objs, opts))
    return out


def _ignore_interrupts() -> None:
    """Workers ignore SIGINT: Ctrl-C reaches the whole process group, and the parent decides
    (a checkpointed run finishes the step in flight, which needs its workers)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)


class Executor(abc.ABC):
    """Runs chunks of jobs with :func:`solve_jobs`, one call per chunk, and returns their results
    in input order. ``workers``: how many chunks it runs at once (the callers cut the work for it).
    Reusable across calls until :meth:`close`; a context manager."""

    workers: int

    @abc.abstractmethod
    def map_chunks(self, backend_name: str, chunks: list[list[Job]], options: SolveOptions) -> list[list[list[ObjectiveBound]]]:
        """``[solve_jobs(backend_name, chunk, options) for chunk in chunks]``, run in parallel."""

    @abc.abstractmethod
    def close(self) -> None:
        """Release the workers (this executor cannot be used afterwards)."""

    def __enter__(self) -> "Executor":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


class SolverPool(Executor):
    """The local executor: a reusable pool of solver worker processes (``spawn`` by default).

    Starting a worker costs an interpreter plus the ``mibpcert`` import (seconds, with torch), so a
    caller that bounds many batches (e.g. once per training step) should keep one pool open and
    pass it as ``pool=`` to :func:`bound_many` / :func:`bound_parallel`::

        with SolverPool(4) as pool:
            for step in ...:
                res = bound_many("highs", jobs, options, pool=pool)
    """

    def __init__(self, workers: int, mp_context: str = "spawn") -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = int(workers)
        self._executor = cf.ProcessPoolExecutor(max_workers=self.workers, mp_context=mp.get_context(mp_context),
                                                initializer=_ignore_interrupts)
        # start the workers now (importing the package is cheap: it does not import torch)
        for f in [self._executor.submit(os.getpid) for _ in range(self.workers)]:
            f.result()

    def map_chunks(self, backend_name: str, chunks: list[list[Job]], options: SolveOptions) -> list[list[list[ObjectiveBound]]]:
        """Each chunk is pickled to its worker whole (with its programs)."""
        futs = [self._executor.submit(solve_jobs, backend_name, c, options) for c in chunks]
        return [f.result() for f in futs]

    def close(self) -> None:
        self._executor.shutdown(wait=True, cancel_futures=True)


def _run(backend_name: str, chunks: list[list[Job]], options: SolveOptions, workers: int,
         pool: Executor | None):
    if pool is not None:
        return pool.map_chunks(backend_name, chunks, options)
    if workers <= 1 or len(chunks) <= 1:
        return [solve_jobs(backend_name, c, options) for c in chunks]
    with SolverPool(min(workers, len(chunks))) as tmp:
        return tmp.map_chunks(backend_name, chunks, options)


def bound_parallel(
    backend_name: str,
    program: Program,
    objectives: Sequence[LinearExpr],
    options: SolveOptions,
    workers: int = 1,
    chunk_size: int = 16,
    pool: Executor | None = None,
) -> list[ObjectiveBound]:
    """Bounds of ``objectives`` over one ``program``, in input order.

    The objectives are cut into consecutive chunks of ``chunk_size`` (independent of ``workers``);
    each chunk gets its own solver model (warm starts stay within a chunk). ``pool``: an
    :class:`Executor` to run the chunks on; without one, ``workers <= 1`` runs the same chunks
    serially in this process and ``workers > 1`` a temporary :class:`SolverPool`."""
    objectives = list(objectives)
    if chunk_size < 1:
        raise ValueError("chunk_size must be >= 1")
    chunks = [[(program, objectives[i:i + chunk_size])] for i in range(0, len(objectives), chunk_size)]
    out: list[ObjectiveBound] = []
    for res in _run(backend_name, chunks, options, workers, pool):
        out.extend(res[0])
    return out


def bound_many(
    backend_name: str,
    jobs: Sequence[Job],
    options: SolveOptions,
    workers: int = 1,
    jobs_per_chunk: int | None = None,
    pool: Executor | None = None,
) -> list[list[ObjectiveBound]]:
    """Bounds for many ``(program, objectives[, warm_start])`` jobs (e.g. one small program per
    training sample).

    Returns one list per job, in input order. Each job is bounded whole by one backend call, so the
    result does not depend on ``workers`` or on the chunking; chunks of consecutive jobs
    (default: about four per worker) only balance the load and amortise pickling. ``pool``: an
    :class:`Executor` to reuse; otherwise ``workers > 1`` starts a temporary :class:`SolverPool`."""
    jobs = [(j[0], list(j[1])) + tuple(j[2:3]) for j in jobs]
    if not jobs:
        return []
    if pool is None and workers <= 1:
        return solve_jobs(backend_name, jobs, options)
    n_workers = pool.workers if pool is not None else workers
    if jobs_per_chunk is None:
        jobs_per_chunk = max(1, -(-len(jobs) // (4 * n_workers)))
    chunks = [jobs[i:i + jobs_per_chunk] for i in range(0, len(jobs), jobs_per_chunk)]
    out: list[list[ObjectiveBound]] = []
    for res in _run(backend_name, chunks, options, n_workers, pool):
        out.extend(res)
    return out
