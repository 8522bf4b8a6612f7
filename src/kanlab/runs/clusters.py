"""Executors on a cluster someone already runs: Dask distributed and Ray (kanlab.runs.executors has the rest).

Both connect to an existing cluster by address (tests use a LocalCluster / a private Ray instance
bound to 127.0.0.1), fail within seconds with ExecutorUnavailable when nothing listens there, and
yield the same Outcomes as the local pool.
"""

from __future__ import annotations

import os
import secrets
import socket
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

from kanlab.runs.executors import (
    DIED,
    ExecutorUnavailable,
    Job,
    Outcome,
    Target,
    default_workers,
    error_text,
    in_one_thread,
    run_job,
)


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
        mapped = self.client.map(in_one_thread, [self.target] * len(todo), todo, key=keys, pure=False)
        futures = dict(zip(mapped, todo, strict=True))
        try:
            for future in as_completed(list(futures), loop=self.client.loop):
                job = futures[future]
                try:
                    packed = future.result()
                except KilledWorker as err:
                    yield Outcome(job, None, f"{DIED}: {err}", died=True)
                except Exception as err:  # noqa: BLE001 - the task's own error is its outcome
                    yield Outcome(job, None, error_text(err))
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
        task = ray.remote(num_cpus=1, max_retries=2)(in_one_thread)
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
                        yield Outcome(job, None, f"{DIED}: {error_text(err)}", died=True)
                    except ray.exceptions.RayTaskError as err:
                        yield Outcome(job, None, error_text(err.cause or err))
                    else:
                        yield Outcome(job, packed)
        finally:
            for ref in left:
                ray.cancel(ref)

    def close(self) -> None:
        """Disconnect (and stop the private instance, if this executor started one)."""
        self.ray.shutdown()
