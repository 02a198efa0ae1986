"""The executors a run can use (:func:`make_executor`), and the Ray one.

:class:`RayExecutor` runs each chunk as a Ray task calling the same :func:`~.parallel.solve_jobs`
as the local :class:`~.parallel.SolverPool`, so both give the same bounds bit for bit. Per
:meth:`~RayExecutor.map_chunks` call (one per training step and backend), every distinct program is
put into Ray's object store once and the chunks of objectives refer to it: a joint program whose
objectives are split over the workers is sent to each node once, not pickled per chunk. Ray is an
optional dependency (``pip install 'mibpcert[ray]'``), imported when a :class:`RayExecutor` starts.
"""
from __future__ import annotations

from typing import Any

from .base import ObjectiveBound, SolveOptions, SolverUnavailable
from .parallel import Executor, Job, SolverPool, solve_jobs

RAY_HINT = "pip install 'mibpcert[ray]'"


def _solve_shipped(backend_name: str, options: SolveOptions, jobs: list[tuple], *programs) -> list[list[ObjectiveBound]]:
    """A Ray task: :func:`solve_jobs` on ``jobs`` whose first entry is an index into ``programs``
    (the programs are the task's top-level object refs, which Ray resolves before the call)."""
    return solve_jobs(backend_name, [(programs[j[0]], *j[1:]) for j in jobs], options)


class RayExecutor(Executor):
    """Chunks as Ray tasks (one CPU each), results in input order.

    ``address``: a running cluster (``"auto"``, ``"ray://host:10001"``, ``"host:6379"``); None starts
    a local Ray instance with ``workers`` CPUs. When Ray is already initialised in this process it
    is used as it is. :meth:`close` shuts Ray down only if this executor started it. On a cluster,
    ``workers`` is the number of chunks a step is cut into for parallelism (e.g. the cluster's CPUs);
    Ray queues tasks beyond its free CPUs. Missing Ray, or a cluster that cannot be reached, is a
    :class:`~.base.SolverUnavailable` raised here, before any work."""

    def __init__(self, workers: int, address: str | None = None) -> None:
        if workers < 1:
            raise ValueError("workers must be >= 1")
        self.workers = int(workers)
        try:
            import ray
        except ImportError as e:
            raise SolverUnavailable(f"executor='ray' needs Ray, which is not installed ({e}): {RAY_HINT}") from None
        self._ray: Any = ray
        self._started = not ray.is_initialized()
        if self._started:
            where = dict(address=address) if address else dict(num_cpus=self.workers)
            try:
                ray.init(**where, include_dashboard=False, log_to_driver=False, ignore_reinit_error=True)
            except Exception as e:
                what = f"connect to the Ray cluster at {address!r}" if address else "start a local Ray instance"
                raise SolverUnavailable(f"executor='ray' could not {what}: {type(e).__name__}: {e}") from None
        self._task = ray.remote(num_cpus=1)(_solve_shipped)

    def map_chunks(self, backend_name: str, chunks: list[list[Job]], options: SolveOptions) -> list[list[list[ObjectiveBound]]]:
        """Every distinct program (by identity) is ``ray.put`` once for this call; each chunk's task
        gets its objectives and warm starts and the refs of the programs it uses."""
        ray = self._ray
        refs: dict[int, Any] = {}
        tasks = []
        for chunk in chunks:
            slot: dict[int, int] = {}  # program id -> its position among this task's program arguments
            for job in chunk:
                slot.setdefault(id(job[0]), len(slot))
                if id(job[0]) not in refs:
                    refs[id(job[0])] = ray.put(job[0])
            jobs = [(slot[id(job[0])], *job[1:]) for job in chunk]
            tasks.append(self._task.remote(backend_name, options, jobs, *(refs[k] for k in slot)))
        try:
            return ray.get(tasks)
        except BaseException:  # a failed chunk or a second Ctrl-C: the other chunks are not wanted
            for t in tasks:
                ray.cancel(t)
            raise

    def close(self) -> None:
        if self._started and self._ray.is_initialized():
            self._ray.shutdown()
        self._started = False


def make_executor(kind: str, workers: int, address: str | None = None) -> Executor:
    """``"local"``: a :class:`~.parallel.SolverPool` of ``workers`` processes; ``"ray"``: a
    :class:`RayExecutor` (``address`` only for Ray)."""
    if kind == "ray":
        return RayExecutor(workers, address)
    if kind == "local" and address is None:
        return SolverPool(workers)
    raise ValueError(f"executor must be 'local' or 'ray' (an address only with 'ray'), got {kind!r} with address {address!r}")
