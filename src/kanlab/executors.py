"""Where runs execute: this process, a local process pool, Dask or Ray, behind one small Protocol.

A worker trains a Job in a private temporary folder and returns the run folder packed as a tar
archive (bytes). Workers never touch the results tree or the database, and need no disk shared
with the driver: the driver alone unpacks each folder atomically and records it.

Every executor yields an Outcome per job as jobs finish, in any order. A job whose worker process
died is reported with `died=True` once the executor is sure which job killed it (Dask and Ray
retry a task on another worker first; the local pool reruns the jobs that shared the pool with
the dead worker one at a time), and the executor goes on with the rest. Dask and Ray live in
kanlab.clusters.
"""

from __future__ import annotations

import io
import os
import tarfile
import tempfile
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping
from concurrent.futures import ALL_COMPLETED, FIRST_COMPLETED, Future, ProcessPoolExecutor, wait
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from multiprocessing import get_all_start_methods, get_context
from multiprocessing.context import BaseContext
from pathlib import Path
from typing import Any, Protocol

from kanlab.config import ExperimentConfig
from kanlab.runs import execute

DIED = "worker process died while running this run (killed, out of memory, or a crash in native code)"


class ExecutorUnavailable(ConnectionError):
    """An executor could not start: a cluster that cannot be reached, or a package that is missing."""


@dataclass(frozen=True)
class Job:
    """One run to execute: its id, its resolved config (ExperimentConfig.to_dict()) and plot switch."""

    run_id: str
    config: Mapping[str, Any]
    plots: bool = False

    @classmethod
    def of(cls, exp: ExperimentConfig, *, plots: bool = False) -> Job:
        """The Job of an experiment."""
        return cls(exp.run_id, exp.to_dict(), plots)


@dataclass(frozen=True)
class Outcome:
    """What came back for a job: its packed run folder, or an error (died: its worker process died)."""

    job: Job
    packed: bytes | None
    error: str | None = None
    died: bool = False


Target = Callable[[Job], bytes]


def pack(folder: Path) -> bytes:
    """A folder's files as a gzip'd tar archive, paths relative to the folder."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz", compresslevel=1) as tar:
        for path in sorted(Path(folder).rglob("*")):
            tar.add(path, arcname=str(path.relative_to(folder)), recursive=False)
    return buffer.getvalue()


def unpack(blob: bytes, dest: Path) -> None:
    """Write an archive made by pack into dest; only plain files and folders inside dest are allowed."""
    dest = Path(dest).resolve()
    with tarfile.open(fileobj=io.BytesIO(blob), mode="r:*") as tar:
        for member in tar.getmembers():
            target = (dest / member.name).resolve()
            if not target.is_relative_to(dest) or not (member.isfile() or member.isdir()):
                raise ValueError(f"refusing archive member {member.name!r}: not a file inside the folder")
            if member.isdir():
                target.mkdir(parents=True, exist_ok=True)
                continue
            source = tar.extractfile(member)
            assert source is not None  # a regular file always has contents
            target.parent.mkdir(parents=True, exist_ok=True)
            target.write_bytes(source.read())


def run_job(job: Job) -> bytes:
    """Train one job in a private temporary folder (the worker side of every executor).

    Args:
        job: the run to execute.
    Returns:
        Its run folder, packed (see pack).
    """
    exp = ExperimentConfig.from_dict(job.config)
    with tempfile.TemporaryDirectory(prefix="kanlab-run-") as tmp:
        return pack(execute(exp, Path(tmp), plots=job.plots))


def in_one_thread(target: Target, job: Job) -> bytes:
    """target(job) with one torch thread: pool and cluster workers run one job per core."""
    import torch

    torch.set_num_threads(1)
    return target(job)


def error_text(err: BaseException) -> str:
    """"Type: message" of an exception, as recorded for a failed run."""
    return f"{type(err).__name__}: {err}"


def default_workers() -> int:
    """Cores this process may use."""
    affinity = getattr(os, "sched_getaffinity", None)
    return len(affinity(0)) if affinity else (os.cpu_count() or 1)


class Executor(Protocol):
    """Runs jobs somewhere and yields their outcomes as they finish."""

    description: str

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Execute every job; yield one Outcome per job, in completion order."""
        ...

    def close(self) -> None:
        """Release workers and connections (the executor cannot be used afterwards)."""
        ...


class SerialExecutor:
    """Runs jobs one after another in this process (the default of `kanlab run`)."""

    def __init__(self, *, target: Target = run_job) -> None:
        self.target = target
        self.description = "this process"

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Execute each job when the caller asks for the next outcome."""
        for job in jobs:
            try:
                packed = self.target(job)
            except Exception as err:  # noqa: BLE001 - any error is this job's outcome, not the sweep's end
                yield Outcome(job, None, error_text(err))
                continue
            yield Outcome(job, packed)

    def close(self) -> None:
        """Nothing to release."""


def _pool_context() -> BaseContext:
    # forkserver: each worker forks from a server process that has only imported kanlab and torch,
    # so a fresh worker starts in milliseconds (the local pool restarts after a worker dies). Plain
    # fork is unsafe once torch has started thread pools in this process; spawn is the fallback.
    # torch._dynamo too: torch's optimizers import it on first use, which takes seconds.
    if "forkserver" not in get_all_start_methods():
        return get_context("spawn")
    context = get_context("forkserver")
    context.set_forkserver_preload(["kanlab.executors", "torch._dynamo"])
    return context


class LocalExecutor:
    """A pool of worker processes on this machine (forkserver or spawn, one torch thread each).

    Args:
        workers: number of processes (default: the cores this process may use).
        target: the worker function (run_job; tests pass one that crashes).
    """

    def __init__(self, workers: int | None = None, *, target: Target = run_job) -> None:
        self.workers = workers or default_workers()
        if self.workers < 1:
            raise ValueError(f"workers must be >= 1, got {workers!r}")
        self.target = target
        self.description = f"a local pool of {self.workers} process(es)"
        self._pool: ProcessPoolExecutor | None = None

    def _fresh_pool(self) -> ProcessPoolExecutor:
        pool = ProcessPoolExecutor(self.workers, mp_context=_pool_context())
        self._pool = pool
        return pool

    def _fill(self, pool: ProcessPoolExecutor, waiting: deque[Job], suspects: deque[Job],
              running: dict[Future[bytes], Job]) -> bool:
        # Only as many jobs as workers are submitted, so every running job is really running when a
        # worker dies. Those jobs become suspects and rerun one at a time: one that kills the pool
        # while alone is the culprit. False: the pool broke meanwhile (the job goes back in line).
        while (suspects and not running) or (waiting and not suspects and len(running) < self.workers):
            line = suspects if suspects else waiting
            job = line.popleft()
            try:
                running[pool.submit(in_one_thread, self.target, job)] = job
            except BrokenProcessPool:
                line.appendleft(job)
                return False
        return True

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Execute jobs, at most one per worker at a time; a dead worker's job is found and reported."""
        waiting, suspects = deque(jobs), deque[Job]()
        running: dict[Future[bytes], Job] = {}
        while waiting or suspects or running:
            pool = self._pool or self._fresh_pool()
            whole = self._fill(pool, waiting, suspects, running)
            done, _ = wait(running, return_when=FIRST_COMPLETED if whole else ALL_COMPLETED)
            if any(isinstance(f.exception(), BrokenProcessPool) for f in done):
                whole = False
                done, _ = wait(running)  # the pool is dead: every future resolves now
            dead: list[Job] = []
            for future in done:
                job = running.pop(future)
                err = future.exception()
                if isinstance(err, BrokenProcessPool):
                    dead.append(job)
                elif err is not None:
                    yield Outcome(job, None, error_text(err))
                else:
                    yield Outcome(job, future.result())
            if not whole:
                self._pool = None
                pool.shutdown(wait=True)
                if len(dead) == 1:
                    yield Outcome(dead[0], None, DIED, died=True)
                else:
                    suspects.extend(dead)

    def close(self) -> None:
        """Stop the worker processes."""
        if self._pool is not None:
            self._pool.shutdown(wait=True, cancel_futures=True)
            self._pool = None
