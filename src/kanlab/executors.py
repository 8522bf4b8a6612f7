"""Where runs execute: this process, a local process pool, Dask or Ray, behind one small Protocol.

A worker trains a Job in a private temporary folder and returns the run folder packed as a tar
archive (bytes). Workers never touch the results tree or the database, and need no disk shared
with the driver: the driver alone unpacks each folder atomically and records it.

Every executor yields an Outcome per job as jobs finish, in any order. A job whose worker process
died is reported with `died=True` once the executor is sure which job killed it (Dask and Ray
retry a task on another worker first; the local pool reruns the jobs that shared the pool with
the dead worker one at a time), and the executor goes on with the rest.
"""

from __future__ import annotations

import io
import os
import secrets
import socket
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
from urllib.parse import urlsplit

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


def _one_thread(target: Target, job: Job) -> bytes:
    # Pool and cluster workers run one job per core: one torch thread each, or jobs fight for cores.
    import torch

    torch.set_num_threads(1)
    return target(job)


def _error(err: BaseException) -> str:
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
                yield Outcome(job, None, _error(err))
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
                running[pool.submit(_one_thread, self.target, job)] = job
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
                    yield Outcome(job, None, _error(err))
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


def check_reachable(address: str, what: str, *, timeout: float = 5.0) -> None:
    """Fail fast with a clear message when nothing listens at a host:port address.

    Args:
        address: e.g. tcp://10.0.0.5:8786, ray://head:10001 or head:6379 (no port: not checked).
        what: the service, for the message ("Dask scheduler").
        timeout: seconds to wait for the connection.
    """
    parts = urlsplit(address if "://" in address else f"tcp://{address}")
    try:
        port = parts.port
    except ValueError as err:
        raise ExecutorUnavailable(f"cannot reach {what} at {address}: bad address ({err})") from None
    if parts.hostname is None or port is None:
        return
    try:
        socket.create_connection((parts.hostname, port), timeout=timeout).close()
    except OSError as err:
        raise ExecutorUnavailable(f"cannot reach {what} at {address}: {err}") from None


class DaskExecutor:
    """Jobs as tasks on a Dask distributed cluster (workers need kanlab installed).

    Args:
        client: a connected distributed.Client (see DaskExecutor.connect).
        target: the worker function.
        description: where jobs run, for the progress bar.
    """

    def __init__(self, client: Any, *, target: Target = run_job, description: str = "Dask") -> None:
        self.client, self.target, self.description = client, target, description

    @classmethod
    def connect(cls, address: str, *, timeout: float = 5.0, target: Target = run_job) -> DaskExecutor:
        """Connect to a running scheduler, failing within about `timeout` seconds.

        Args:
            address: the scheduler, e.g. tcp://127.0.0.1:8786.
            timeout: seconds to wait for it.
            target: the worker function.
        Returns:
            The executor.
        """
        try:
            from distributed import Client
        except ImportError:
            raise ExecutorUnavailable("the Dask executor needs dask[distributed]: "
                                      "pip install 'kanlab[dask]'") from None
        check_reachable(address, "Dask scheduler", timeout=timeout)
        try:
            client = Client(address, timeout=timeout, set_as_default=False)
        except (OSError, TimeoutError) as err:
            raise ExecutorUnavailable(f"cannot reach Dask scheduler at {address}: {err}") from None
        workers = len(client.scheduler_info().get("workers", {}))
        return cls(client, target=target, description=f"the Dask scheduler at {address} ({workers} workers)")

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Submit every job as a task; yield outcomes as tasks finish (KilledWorker: died)."""
        from distributed import KilledWorker, as_completed

        # One task group ("kanlab-run") in one graph, so the scheduler queues the tasks and hands each
        # worker thread one at a time instead of assigning them all up front (a dying worker then takes
        # only its own task down). Keys are new on every submission.
        todo = list(jobs)
        keys = [f"kanlab-run-{secrets.token_hex(8)}" for _ in todo]
        mapped = self.client.map(_one_thread, [self.target] * len(todo), todo, key=keys, pure=False)
        futures = dict(zip(mapped, todo, strict=True))
        try:
            for future in as_completed(list(futures), loop=self.client.loop):
                job = futures[future]
                try:
                    packed = future.result()
                except KilledWorker as err:
                    yield Outcome(job, None, f"{DIED}: {err}", died=True)
                except Exception as err:  # noqa: BLE001 - the task's own error is its outcome
                    yield Outcome(job, None, _error(err))
                else:
                    yield Outcome(job, packed)
                future.release()
        finally:
            self.client.cancel([f for f in futures if not f.done()])

    def close(self) -> None:
        """Disconnect from the scheduler (the cluster keeps running)."""
        self.client.close()


class RayExecutor:
    """Jobs as Ray tasks, on a running cluster or a private local instance bound to 127.0.0.1.

    Use RayExecutor.connect; Ray keeps one connection per process, which close() ends.
    """

    def __init__(self, ray: Any, *, target: Target = run_job, description: str = "Ray") -> None:
        self.ray, self.target, self.description = ray, target, description

    @classmethod
    def connect(cls, address: str | None = None, *, workers: int | None = None, timeout: float = 5.0,
                target: Target = run_job) -> RayExecutor:
        """Connect to a Ray cluster (address, e.g. ray://head:10001) or start a local one (None).

        Args:
            address: the cluster; None starts a private instance on 127.0.0.1 with `workers` CPUs.
            workers: CPUs of the private instance (default: the cores this process may use).
            timeout: seconds to wait for the cluster.
            target: the worker function.
        Returns:
            The executor.
        """
        if address is None:
            # On Linux Ray advertises, and listens on, the machine's address even for a local instance
            # unless this switch is off; it keeps a private instance on 127.0.0.1. Ray reads it when
            # first imported, so it has no effect once ray is imported in this process.
            os.environ.setdefault("RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER", "0")
        try:
            import ray
        except ImportError:
            raise ExecutorUnavailable("the Ray executor needs ray: pip install 'kanlab[ray]'") from None
        if address is None:
            ray.init(num_cpus=workers or default_workers(), include_dashboard=False, log_to_driver=False,
                     _node_ip_address="127.0.0.1")
            return cls(ray, target=target, description="a private local Ray instance on 127.0.0.1")
        check_reachable(address, "Ray cluster", timeout=timeout)
        try:
            ray.init(address=address, log_to_driver=False)
        except (ConnectionError, TimeoutError, RuntimeError) as err:
            raise ExecutorUnavailable(f"cannot reach Ray cluster at {address}: {err}") from None
        return cls(ray, target=target, description=f"the Ray cluster at {address}")

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Submit every job as a task; yield outcomes as tasks finish (a crashed worker: died)."""
        ray = self.ray
        died = (ray.exceptions.WorkerCrashedError, ray.exceptions.NodeDiedError,
                ray.exceptions.LocalRayletDiedError, ray.exceptions.OutOfMemoryError)
        task = ray.remote(num_cpus=1, max_retries=2)(_one_thread)
        refs = {task.remote(self.target, job): job for job in jobs}
        left = list(refs)
        try:
            while left:
                done, left = ray.wait(left, num_returns=1)
                for ref in done:
                    job = refs[ref]
                    try:
                        packed = ray.get(ref)
                    except died as err:
                        yield Outcome(job, None, f"{DIED}: {_error(err)}", died=True)
                    except ray.exceptions.RayTaskError as err:
                        yield Outcome(job, None, _error(err.cause or err))
                    else:
                        yield Outcome(job, packed)
        finally:
            for ref in left:
                ray.cancel(ref)

    def close(self) -> None:
        """Disconnect (and stop the private instance, if this executor started one)."""
        self.ray.shutdown()
