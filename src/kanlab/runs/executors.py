"""Where runs execute: this process, a local process pool, Dask or Ray, behind one small Protocol.

A worker trains a Job in a private temporary folder and returns the run folder packed as a tar
archive (bytes). Workers never touch the results tree or the database, and need no disk shared
with the driver: the driver alone unpacks each folder atomically and records it.

Every executor yields an Outcome per job as jobs finish, in any order. A job whose worker process
died is reported with `died=True` once the executor is sure which job killed it (Dask and Ray
retry a task on another worker first; each local pool worker has its own pipe, so its death
names its job), and the executor goes on with the rest. Dask and Ray live in
kanlab.runs.clusters.
"""

from __future__ import annotations

import os
import signal
import weakref
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from multiprocessing import connection, get_context, resource_tracker
from multiprocessing.connection import Connection
from multiprocessing.process import BaseProcess
from typing import Protocol

from kanlab.runs.interrupts import ctrl_c_deferred, ignore_ctrl_c
from kanlab.runs.jobs import WORKER_THREADS as WORKER_THREADS
from kanlab.runs.jobs import Job as Job
from kanlab.runs.jobs import Outcome as Outcome
from kanlab.runs.jobs import Target as Target
from kanlab.runs.jobs import error_text as error_text
from kanlab.runs.jobs import in_one_thread as in_one_thread
from kanlab.runs.jobs import pack as pack
from kanlab.runs.jobs import run_job as run_job
from kanlab.runs.jobs import unpack as unpack

DIED = "worker process died while running this run (killed, out of memory, or a crash in native code)"


class ExecutorUnavailable(ConnectionError):
    """An executor could not start: a cluster that cannot be reached, or a package that is missing."""


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


def _serve(target: Target, conn: Connection) -> None:
    """A pool worker: run each Job the driver sends, reply b"R" + packed folder or b"E" + error text."""
    # Ctrl-C reaches the whole process group: the driver alone handles it (and stops its workers).
    # Started with SIGINT blocked (see LocalExecutor._start), so one during start-up waited till now.
    ignore_ctrl_c()
    while True:
        try:
            job = conn.recv()  # from our own driver, over a private pipe
        except (EOFError, OSError):  # the driver closed the pipe (reset if it had unread data): no more work
            return
        try:
            reply = b"R" + in_one_thread(target, job)
        except Exception as err:  # noqa: BLE001 - any error is this job's outcome, not the worker's end
            reply = b"E" + error_text(err).encode()
        try:
            conn.send_bytes(reply)
        except OSError:  # the driver is gone or gave up on this job: nobody to tell
            return


def death_text(exitcode: int | None) -> str:
    """DIED, with how the worker process ended (its exit code or the signal that killed it)."""
    if exitcode is not None and exitcode < 0:
        try:
            return f"{DIED} (signal {signal.Signals(-exitcode).name})"
        except ValueError:
            return f"{DIED} (signal {-exitcode})"
    return f"{DIED} (exit code {exitcode})"


@dataclass
class _Worker:
    process: BaseProcess
    conn: Connection
    job: Job | None = None

    def stop(self, *, kill: bool = False) -> int | None:
        """End the process (politely by closing its pipe, or killed) and return its exit code."""
        if kill:
            self.process.kill()
        self.conn.close()
        self.process.join(timeout=None if kill else 10)  # an idle worker returns once it reads the EOF
        if self.process.is_alive():
            self.process.kill()
            self.process.join()
        return self.process.exitcode


class LocalExecutor:
    """A pool of worker processes on this machine (fresh interpreters, one torch thread each).

    Each worker has its own pipe, so when one dies the driver knows which job it was running:
    that job is reported as died, the worker is replaced and the other jobs go on untouched.
    Workers are spawned, so a script that uses this pool must start from an
    `if __name__ == "__main__":` block, as with any spawn-based pool.

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
        self._idle: list[_Worker] = []
        self._busy: dict[Connection, _Worker] = {}
        # Workers wait for jobs until their pipe closes, and multiprocessing joins them at exit:
        # stop them when this executor is collected or the interpreter exits without close().
        weakref.finalize(self, _stop_all, self._idle, self._busy)

    def _start(self) -> _Worker:
        # spawn: each worker is a fresh interpreter. Forking (directly or from a forkserver) copies
        # a process that already runs BLAS and torch threads, which can leave a child deadlocked on
        # a lock some other thread held; a worker that hangs at start is a sweep that never ends. A
        # fresh worker takes a few seconds to import torch, paid once per worker (and replacement).
        context = get_context("spawn")
        ours, theirs = context.Pipe()
        process = context.Process(target=_serve, args=(self.target, theirs), name="kanlab-worker")
        # Started with SIGINT blocked, which the new interpreter keeps until _serve ignores it: a
        # Ctrl-C while it imports torch is the driver's to handle, like one later. The driver itself
        # never ignores SIGINT: one that lands during the start is recorded, and raised after it.
        # multiprocessing's resource tracker, launched by the first start in a process, unblocks
        # SIGINT in this thread as it starts: launched first, it cannot undo the block.
        if os.name == "posix":
            resource_tracker.ensure_running()
        with ctrl_c_deferred(block=True) as pressed:
            process.start()
        theirs.close()  # the worker holds the other end: its death reads as EOF here
        worker = _Worker(process, ours)
        if pressed:
            try:
                signal.raise_signal(signal.SIGINT)  # to this process's own handler: KeyboardInterrupt
            except BaseException:
                worker.stop(kill=True)
                raise
        return worker

    def _give(self, job: Job) -> None:
        worker = self._idle.pop() if self._idle else self._start()
        try:
            if not worker.process.is_alive():
                raise BrokenPipeError
            worker.conn.send(job)
        except OSError:  # the idle worker had died meanwhile: a fresh one takes the job
            worker.stop(kill=True)
            self._give(job)
            return
        worker.job = job
        self._busy[worker.conn] = worker

    def _collect(self, worker: _Worker) -> Outcome:
        job = worker.job
        assert job is not None  # only busy workers are collected
        worker.job = None
        try:
            if not worker.conn.poll():  # exited without a reply (its pipe may live on in a child of its own)
                raise EOFError
            reply = worker.conn.recv_bytes()
        except (EOFError, OSError):
            return Outcome(job, None, death_text(worker.stop(kill=True)), died=True)
        self._idle.append(worker)
        if reply[:1] == b"R":
            return Outcome(job, reply[1:])
        return Outcome(job, None, reply[1:].decode(errors="replace"))

    def run(self, jobs: Iterable[Job]) -> Iterator[Outcome]:
        """Execute jobs, at most one per worker at a time, yielding outcomes as they finish."""
        waiting = deque(jobs)
        try:
            while waiting or self._busy:
                while waiting and len(self._busy) < self.workers:
                    self._give(waiting.popleft())
                # A reply, or a worker that ended. A process the worker forked may hold its pipe and
                # its sentinel open after it died, hence also a look at each busy worker every second.
                ready = connection.wait([*self._busy, *(w.process.sentinel for w in self._busy.values())],
                                        timeout=1.0)
                for conn in [c for c, w in self._busy.items()
                             if c in ready or w.process.sentinel in ready or not w.process.is_alive()]:
                    yield self._collect(self._busy.pop(conn))
        except KeyboardInterrupt:  # Ctrl-C: idle workers too, rather than wait while they import torch
            for worker in self._idle:
                worker.stop(kill=True)
            self._idle.clear()
            raise
        finally:
            for worker in self._busy.values():  # abandoned mid-sweep: stop what still runs
                worker.stop(kill=True)
            self._busy.clear()

    def close(self) -> None:
        """Stop the worker processes."""
        _stop_all(self._idle, self._busy)


def _stop_all(idle: list[_Worker], busy: dict[Connection, _Worker]) -> None:
    for worker in [*idle, *busy.values()]:
        worker.stop(kill=worker.job is not None)
    idle.clear()
    busy.clear()
