"""Executors and the driver: dead workers, resume after SIGKILL of the driver, Dask and Ray.

Tests that need a worker to die use crash_on_seed_1 as the worker function; worker processes
import it from this module (by name for the local pool and Dask, by value for Ray).
"""

from __future__ import annotations

import io
import json
import os
import signal
import socket
import sqlite3
import subprocess
import sys
import tarfile
import threading
import time
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import tomllib

from kanlab.cli import main
from kanlab.runs.driver import run_experiments
from kanlab.runs.executors import Executor, Job, LocalExecutor, SerialExecutor, pack, run_job, unpack
from kanlab.study.config import ExperimentConfig
from kanlab.study.sweep import parse_sweep

SWEEP = """
name = "{name}"
seeds = {seeds}
depth = 2
[train]
steps = {steps}
eval_every = 10
[[tasks]]
name = "zigzag"
n_train = 32
n_test = 32
[[models]]
label = "KAN"
family = "kan"
[[models]]
label = "MLP"
family = "mlp"
[axes]
budget = {budgets}
"""


def crash_on_seed_1(job: Job) -> bytes:
    """A worker function whose process dies on every run with seed 1."""
    if job.config["seed"] == 1:
        os._exit(3)
    return run_job(job)


def echo_raise_or_die(job: Job) -> bytes:
    """A worker function keyed by seed: 0 raises, 1 is killed by SIGKILL, others echo their pid."""
    seed = job.config["seed"]
    if seed == 0:
        raise ValueError(f"bad seed 0:{os.getpid()}")
    if seed == 1:
        os.kill(os.getpid(), signal.SIGKILL)
    return f"{seed}:{os.getpid()}".encode()


def exit_leaving_a_child(job: Job) -> bytes:
    """A worker function that forks a child (which keeps the worker's pipe open), then exits."""
    child = os.fork()
    if child == 0:
        time.sleep(120)
        os._exit(0)
    Path(job.config["pid_file"]).write_text(str(child))
    os._exit(5)


def sweep_text(name: str, seeds: int, steps: int = 5, budgets: tuple[int, ...] = (300, 1000)) -> str:
    return SWEEP.format(name=name, seeds=list(range(seeds)), steps=steps, budgets=list(budgets))


def experiments(text: str) -> list[ExperimentConfig]:
    return list(parse_sweep(tomllib.loads(text)).experiments)


def rows(db: Path) -> list[dict[str, Any]]:
    con = sqlite3.connect(db)
    con.row_factory = sqlite3.Row
    out = [dict(r) for r in con.execute("SELECT * FROM runs ORDER BY run_id")]
    con.close()
    return out


def stamps(folder: Path) -> dict[str, int]:
    """final.json mtimes of the finished run folders under an experiment folder."""
    if not folder.is_dir():
        return {}
    return {p.name: (p / "final.json").stat().st_mtime_ns for p in folder.iterdir()
            if p.is_dir() and not p.name.startswith(".") and p.name != "plots"}


def test_pack_and_unpack_round_trip_and_refuse_escapes(tmp_path: Path) -> None:
    src = tmp_path / "src"
    (src / "plots").mkdir(parents=True)
    (src / "final.json").write_text("{}")
    (src / "plots" / "a.png").write_bytes(b"\x89PNG")
    unpack(pack(src), tmp_path / "dst")
    assert (tmp_path / "dst" / "final.json").read_text() == "{}"
    assert (tmp_path / "dst" / "plots" / "a.png").read_bytes() == b"\x89PNG"
    for name, kind in (("../evil.txt", tarfile.REGTYPE), ("link", tarfile.SYMTYPE)):
        buffer = io.BytesIO()
        with tarfile.open(fileobj=buffer, mode="w") as tar:
            info = tarfile.TarInfo(name)
            info.type, info.linkname = kind, "/etc/passwd"
            tar.addfile(info, io.BytesIO(b""))
        with pytest.raises(ValueError, match="refusing archive member"):
            unpack(buffer.getvalue(), tmp_path / "dst2")
    assert not (tmp_path / "evil.txt").exists()


def test_an_error_outside_training_becomes_a_failed_run(tmp_path: Path) -> None:
    def broken(job: Job) -> bytes:
        raise RuntimeError("disk on fire")

    exps = experiments(sweep_text("err", 1))
    run_experiments(exps, tmp_path, tmp_path / "db", executor=SerialExecutor(target=broken))
    recorded = rows(tmp_path / "db")
    assert len(recorded) == 4 and {r["status"] for r in recorded} == {"failed"}
    assert recorded[0]["message"] == "RuntimeError: disk on fire"
    run_experiments(exps, tmp_path, tmp_path / "db", executor=SerialExecutor(target=lambda job: b"garbage"),
                    retry_failed=True)
    recorded = rows(tmp_path / "db")
    assert len(recorded) == 4 and {r["status"] for r in recorded} == {"failed"}
    assert "unreadable run folder" in recorded[0]["message"]


def test_resume_records_orphans_and_deletes_leftovers(tmp_path: Path) -> None:
    exps = experiments(sweep_text("orphans", 2))
    run_experiments(exps[:4], tmp_path, tmp_path / "db")
    before = stamps(tmp_path / "orphans")
    # The driver died between renaming folders and recording them, and inside another unpack.
    (tmp_path / "db").unlink()
    leftover = tmp_path / "orphans" / f".tmp-{exps[5].run_id}"
    leftover.mkdir()
    (leftover / "half.json").write_text("{")
    run_experiments(exps, tmp_path, tmp_path / "db")
    recorded = rows(tmp_path / "db")
    assert sorted(r["run_id"] for r in recorded) == sorted(e.run_id for e in exps)
    assert {r["status"] for r in recorded} == {"finished"} and not leftover.exists()
    after = stamps(tmp_path / "orphans")
    assert all(after[k] == v for k, v in before.items()) and len(after) == len(exps)


def dead_worker_then_retry(tmp_path: Path, executor: Executor, retry: Executor) -> None:
    exps = experiments(sweep_text("deaths", 3, budgets=(300,)))
    db = tmp_path / "db"
    run_experiments(exps, tmp_path, db, executor=executor)
    first = {r["run_id"]: r for r in rows(db)}
    assert len(first) == len(exps) == 6
    for exp in exps:
        row = first[exp.run_id]
        assert row["status"] == ("failed" if exp.seed == 1 else "finished"), (exp.seed, row["message"])
        if exp.seed == 1:
            assert "worker process died" in row["message"]
    done = {k: v for k, v in stamps(tmp_path / "deaths").items() if first[k]["status"] == "finished"}
    run_experiments(exps, tmp_path, db, executor=retry)  # failed runs stay failed
    assert {r["run_id"]: r["status"] for r in rows(db)} == {k: r["status"] for k, r in first.items()}
    run_experiments(exps, tmp_path, db, executor=retry, retry_failed=True)
    final = rows(db)
    assert len(final) == 6 and {r["status"] for r in final} == {"finished"}
    after = stamps(tmp_path / "deaths")
    assert all(after[k] == v for k, v in done.items())  # finished runs were not redone


@pytest.mark.slow  # spawns and kills worker processes: 10-30 s on 2 busy cores
def test_local_pool_marks_a_dead_workers_run_failed_and_goes_on(tmp_path: Path) -> None:
    pool, retry = LocalExecutor(2, target=crash_on_seed_1), LocalExecutor(2)
    try:
        dead_worker_then_retry(tmp_path, pool, retry)
    finally:
        pool.close()
        retry.close()


@pytest.mark.slow  # spawns and kills worker processes: 10-30 s on 2 busy cores
def test_local_pool_names_each_outcome_and_replaces_only_the_dead_worker() -> None:
    jobs = [Job(f"r{seed}", {"seed": seed}) for seed in (2, 0, 3, 1, 4, 5, 6)]
    pool = LocalExecutor(2, target=echo_raise_or_die)
    try:
        outcomes = {o.job.run_id: o for o in pool.run(jobs)}
        again = {o.job.run_id: o for o in pool.run(jobs[-2:])}
    finally:
        pool.close()
    assert sorted(outcomes) == sorted(j.run_id for j in jobs)
    assert outcomes["r0"].error is not None and not outcomes["r0"].died
    assert outcomes["r0"].error.startswith("ValueError: bad seed 0:")
    assert outcomes["r1"].died and outcomes["r1"].packed is None
    assert outcomes["r1"].error is not None and outcomes["r1"].error.endswith("(signal SIGKILL)")
    echoed = {k: o.packed.decode().split(":") for k, o in outcomes.items() if o.packed is not None}
    assert {k: int(v[0]) for k, v in echoed.items()} == {"r2": 2, "r3": 3, "r4": 4, "r5": 5, "r6": 6}
    # Every worker that ran a job that did not kill it: the dead one ran r0 or an echo before r1.
    pids = {v[1] for v in echoed.values()} | {outcomes["r0"].error.rsplit(":", 1)[1]}
    pids |= {o.packed.decode().split(":")[1] for o in again.values() if o.packed}
    assert len(again) == 2 and all(o.packed for o in again.values()) and str(os.getpid()) not in pids
    assert len(pids) == 3  # two workers kept across both runs, and one replacement for the dead one


@pytest.mark.slow  # spawns and kills worker processes: 10-30 s on 2 busy cores
def test_local_pool_replaces_a_worker_that_died_while_idle() -> None:
    pool = LocalExecutor(1, target=echo_raise_or_die)
    try:
        (first,) = pool.run([Job("a", {"seed": 2})])
        assert first.packed is not None
        old_pid = int(first.packed.decode().split(":")[1])
        os.kill(old_pid, signal.SIGKILL)  # between jobs: nothing of ours is lost
        time.sleep(0.5)
        (second,) = pool.run([Job("b", {"seed": 3})])
    finally:
        pool.close()
    assert not second.died and second.packed is not None
    seed, pid = second.packed.decode().split(":")
    assert seed == "3" and int(pid) != old_pid


@pytest.mark.slow  # spawns worker processes: 10-20 s on 2 busy cores
@pytest.mark.timeout(60)  # the bug this guards against is a hang
def test_local_pool_sees_a_worker_exit_while_its_child_holds_the_pipe(tmp_path: Path) -> None:
    pid_file = tmp_path / "child.pid"
    pool = LocalExecutor(1, target=exit_leaving_a_child)
    try:
        (outcome,) = pool.run([Job("r", {"pid_file": str(pid_file)})])
    finally:
        pool.close()
        if pid_file.exists():
            os.kill(int(pid_file.read_text()), signal.SIGKILL)
    assert outcome.died and outcome.error is not None and outcome.error.endswith("(exit code 5)")


@pytest.mark.slow  # end to end: a second interpreter and its pool
def test_a_pool_left_open_does_not_hold_the_interpreter_at_exit(tmp_path: Path) -> None:
    script = (
        "from kanlab.runs.executors import Job, LocalExecutor\n"
        "from tests.test_executors import echo_raise_or_die\n"
        "pool = LocalExecutor(2, target=echo_raise_or_die)\n"
        "print([o.packed for o in pool.run([Job('a', {'seed': 2}), Job('b', {'seed': 3})])])\n"
    )  # no pool.close(): the idle workers must still stop when the interpreter exits
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.count("b'") == 2


def kill_midway_then_resume(tmp_path: Path, options: list[str], sig: int = signal.SIGKILL) -> None:
    text = sweep_text("killed", 6, steps=20)
    spec = tmp_path / "killed.toml"
    spec.write_text(text)
    exps, root = experiments(text), tmp_path / "runs"
    command = [sys.executable, "-m", "kanlab.cli", "sweep", str(spec), "--root", str(root), "--no-report",
               *options]
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE)
    deadline = time.monotonic() + 120
    try:
        while not stamps(root / "killed"):
            assert proc.poll() is None, f"the sweep ended before it was killed: {proc.stderr.read()!r}"
            assert time.monotonic() < deadline, "no run finished within 120 s"
            time.sleep(0.02)
    finally:
        os.killpg(proc.pid, sig)  # the driver and its pool workers, mid-sweep
        _, err = proc.communicate(timeout=60)
    if sig == signal.SIGINT:  # Ctrl-C: the driver stops its workers and says how to resume
        text = err.decode()
        assert proc.returncode == 130 and "Traceback" not in text, text
        assert text.strip().splitlines()[-1] == (
            "kanlab: interrupted; finished runs are saved: run the same command again to resume")
    before = stamps(root / "killed")
    assert 0 < len(before) < len(exps)
    again = subprocess.run(command, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    recorded = rows(root / "kanlab.db")
    assert sorted(r["run_id"] for r in recorded) == sorted(e.run_id for e in exps)  # one row per run
    assert {r["status"] for r in recorded} == {"finished"}
    after = stamps(root / "killed")
    assert {k: after[k] for k in before} == before  # runs finished before the kill were not redone
    assert not list((root / "killed").glob(".tmp-*"))


@pytest.mark.slow  # end to end: worker processes, a cluster or two CLI processes
def test_sigkill_of_the_driver_then_rerun_completes_the_local_sweep(tmp_path: Path) -> None:
    kill_midway_then_resume(tmp_path, ["--workers", "2"])


@pytest.mark.slow  # end to end: worker processes, a cluster or two CLI processes
def test_ctrl_c_stops_the_local_sweep_cleanly_and_a_rerun_completes_it(tmp_path: Path) -> None:
    kill_midway_then_resume(tmp_path, ["--workers", "2"], signal.SIGINT)


def test_a_study_another_driver_is_running_is_refused_with_nothing_written(tmp_path: Path) -> None:
    # Two drivers landing one study's runs delete each other's half-landed folders.
    import fcntl

    exps = experiments(sweep_text("busy", 1))
    lock = tmp_path / "busy" / ".kanlab.lock"
    lock.parent.mkdir()
    with lock.open("a") as other:  # another driver's lock, as `running` takes it
        fcntl.flock(other, fcntl.LOCK_EX | fcntl.LOCK_NB)
        with pytest.raises(ValueError, match=r"study 'busy' is being run into .* by another kanlab process; "
                                             r"rerun this command when it has finished"):
            run_experiments(exps, tmp_path, tmp_path / "db")
    assert [p.name for p in (tmp_path / "busy").iterdir()] == [".kanlab.lock"]
    assert not (tmp_path / "db").exists()
    run_experiments(exps[:1], tmp_path, tmp_path / "db")  # free again: runs
    assert len(rows(tmp_path / "db")) == 1


@pytest.mark.slow  # two CLI processes
def test_two_studies_at_once_on_one_database_record_every_run(tmp_path: Path) -> None:
    for name in ("left", "right"):
        study = sweep_text(name, 2).split("[axes]")[0].replace("depth = 2", "depth = 2\nbudget = 300")
        (tmp_path / f"{name}.toml").write_text(study)
    command = [sys.executable, "-m", "kanlab.cli", "run", "--root", str(tmp_path / "runs"), "--no-plots"]
    procs = [subprocess.Popen([*command, str(tmp_path / f"{name}.toml")], stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, text=True) for name in ("left", "right")]
    errors = [p.communicate(timeout=300)[1] for p in procs]
    assert [p.returncode for p in procs] == [0, 0], errors
    recorded = rows(tmp_path / "runs" / "kanlab.db")
    assert sorted((r["experiment"], r["status"]) for r in recorded) == [("left", "finished")] * 4 + [
        ("right", "finished")] * 4


def sigint_state(job: Job) -> bytes:
    """A worker function that reports how its process treats SIGINT."""
    blocked = signal.SIGINT in signal.pthread_sigmask(signal.SIG_BLOCK, [])
    return f"{signal.getsignal(signal.SIGINT) is signal.SIG_IGN} {blocked}".encode()


@pytest.mark.timeout(120)
def test_a_ctrl_c_while_a_worker_starts_is_never_lost(monkeypatch: pytest.MonkeyPatch) -> None:
    # _start set SIGINT to SIG_IGN while it started a worker: a Ctrl-C landing then was dropped and the
    # sweep ran to its end. Blocking it in this thread instead is not enough either: the kernel hands
    # the signal to another thread (pytest-xdist's, torch's OpenMP threads), which dropped it too.
    from multiprocessing import active_children
    from multiprocessing.context import SpawnProcess

    real = SpawnProcess.start

    def start_under_ctrl_c(self: SpawnProcess) -> None:
        os.kill(os.getpid(), signal.SIGINT)  # the worst moment: while the driver starts a worker
        real(self)

    monkeypatch.setattr(SpawnProcess, "start", start_under_ctrl_c)
    idle = threading.Event()
    other = threading.Thread(target=idle.wait)  # a thread that the kernel may deliver SIGINT to
    other.start()
    got: list[int] = []

    def handler(signum: int, frame: object) -> None:
        got.append(signum)

    previous = signal.signal(signal.SIGINT, handler)
    pool = LocalExecutor(1, target=sigint_state)
    try:
        for n in range(1, 11):
            pool._start().stop(kill=True)
            assert got == [signal.SIGINT] * n  # delivered to the driver's own handler, every time
            assert signal.getsignal(signal.SIGINT) is handler
            assert signal.SIGINT not in signal.pthread_sigmask(signal.SIG_BLOCK, [])
        signal.signal(signal.SIGINT, signal.default_int_handler)  # Python's own: KeyboardInterrupt
        with pytest.raises(KeyboardInterrupt):
            pool._start()
        assert active_children() == []  # the worker started under it was stopped
    finally:
        signal.signal(signal.SIGINT, previous)
        idle.set()
        other.join()
        pool.close()


FIRST_WORKER = """
import os, signal, sys
from kanlab.runs.executors import Job, LocalExecutor
from tests.test_executors import sigint_state

pool = LocalExecutor(1, target=sigint_state)
worker = pool._start()  # the first of this process: it also launches multiprocessing's resource tracker
os.kill(worker.process.pid, signal.SIGINT)  # a Ctrl-C while it starts
pool._idle.append(worker)
(outcome,) = pool.run([Job("r", {})])
pool.close()
print(outcome.packed, outcome.error)
"""


@pytest.mark.slow  # waits for a worker to import torch
def test_a_worker_ignores_ctrl_c_from_its_first_moment() -> None:
    # It starts with SIGINT blocked (a Ctrl-C while it imports torch waits), then ignores it. The
    # first worker of a process was started unblocked: launching the resource tracker unblocked it.
    done = subprocess.run([sys.executable, "-c", FIRST_WORKER], capture_output=True, text=True, timeout=300,
                          cwd=Path(__file__).parent.parent)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "b'True False' None", done.stderr  # ignored, and no longer blocked
    assert "Traceback" not in done.stderr


CTRL_C_AT_EACH_START = """
import os, signal, sys
from multiprocessing.context import SpawnProcess

real = SpawnProcess.start


def start(self):
    os.killpg(0, signal.SIGINT)  # a Ctrl-C to the whole group while the driver starts a worker
    real(self)


SpawnProcess.start = start
from kanlab.cli import main

sys.exit(main(sys.argv[1:]))
"""


def interrupt(command: list[str], delay: float | None) -> tuple[int, str]:
    """Run command in its own process group; SIGINT the group after delay (None: it does so itself)."""
    proc = subprocess.Popen(command, start_new_session=True, stdout=subprocess.DEVNULL,
                            stderr=subprocess.PIPE, text=True, cwd=Path(__file__).parent.parent)
    if delay is not None:
        time.sleep(delay)
        os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=120)
    return proc.returncode, err


@pytest.mark.slow  # a dozen CLI processes
def test_ctrl_c_at_any_moment_of_a_sweep_exits_130_with_one_line(tmp_path: Path) -> None:
    spec = tmp_path / "cc.toml"
    spec.write_text(sweep_text("cc", 4, steps=20))
    args = ["sweep", str(spec), "--root", str(tmp_path / "runs"), "--no-report", "--workers", "2"]
    resume = "kanlab: interrupted; finished runs are saved: run the same command again to resume"
    for _ in range(3):  # at the worst moment: while a worker starts (the Ctrl-C was lost, exit 0)
        code, err = interrupt([sys.executable, "-c", CTRL_C_AT_EACH_START, *args], None)
        assert (code, err.strip()) == (130, resume), err
    # While Python imports torch (a traceback, or numpy's AttributeError), then at later moments.
    for delay in (0.3, 1.0, 2.0, 4.0):
        code, err = interrupt([sys.executable, "-m", "kanlab.cli", *args], delay)
        assert code == 130 and err.strip() in (resume, "kanlab: interrupted"), (delay, err)


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def dask_address() -> Iterator[str]:
    pytest.importorskip("distributed")
    import dask
    from distributed import LocalCluster

    # One task per worker at a time and no retries: a task that kills its worker is reported at once,
    # and no other task was on that worker to share the blame (Dask retries 3 times by default).
    settings = {"distributed.scheduler.allowed-failures": 0, "distributed.scheduler.worker-saturation": 1.0}
    with dask.config.set(settings), warnings.catch_warnings():
        warnings.simplefilter("ignore", ResourceWarning)
        cluster = LocalCluster(n_workers=2, threads_per_worker=1, processes=True, host="127.0.0.1",
                               dashboard_address="127.0.0.1:0", silence_logs=50)
    yield cluster.scheduler_address
    cluster.close()


@pytest.mark.slow  # end to end: worker processes, a cluster or two CLI processes
def test_dask_marks_a_dead_workers_run_failed_and_goes_on(tmp_path: Path, dask_address: str) -> None:
    from kanlab.runs.clusters import DaskExecutor

    pool = DaskExecutor.connect(dask_address, target=crash_on_seed_1)
    retry = DaskExecutor.connect(dask_address)
    try:
        dead_worker_then_retry(tmp_path, pool, retry)
    finally:
        pool.close()
        retry.close()


@pytest.mark.slow  # end to end: worker processes, a cluster or two CLI processes
def test_sigkill_of_the_driver_then_rerun_completes_the_dask_sweep(tmp_path: Path, dask_address: str) -> None:
    kill_midway_then_resume(tmp_path, ["--executor", "dask", "--address", dask_address])


@pytest.mark.parametrize("kind", ["dask", "ray"])
def test_an_unreachable_cluster_is_a_clear_error_within_seconds(kind: str, tmp_path: Path,
                                                                capsys: pytest.CaptureFixture) -> None:
    pytest.importorskip("distributed" if kind == "dask" else "ray")
    spec = tmp_path / "s.toml"
    spec.write_text(sweep_text("unreachable", 1))
    address = f"tcp://127.0.0.1:{closed_port()}" if kind == "dask" else f"127.0.0.1:{closed_port()}"
    root = tmp_path / "runs"
    started = time.monotonic()
    assert main(["sweep", str(spec), "--root", str(root), "--executor", kind, "--address", address]) == 2
    assert time.monotonic() - started < 15
    name = "Dask scheduler" if kind == "dask" else "Ray cluster"
    assert f"kanlab: error: cannot reach {name} at {address}" in capsys.readouterr().err
    assert not root.exists()  # nothing written


RAY_RUN = """
import json, os, sys
from pathlib import Path

import tomllib

from kanlab.runs.driver import run_experiments
from kanlab.runs.clusters import RayExecutor
from kanlab.runs.executors import run_job
from kanlab.study.sweep import parse_sweep


def crash_on_seed_1(job):  # defined in __main__, so Ray ships it to its workers by value
    if job.config["seed"] == 1:
        os._exit(3)
    return run_job(job)


root = Path(sys.argv[1])
exps = parse_sweep(tomllib.loads((root / "sweep.toml").read_text())).experiments
executor = RayExecutor.connect(None, workers=2, target=crash_on_seed_1)
import ray  # only now: RayExecutor.connect configures ray before its first import
try:
    nodes = sorted({n["NodeManagerAddress"] for n in ray.nodes()})
    run_experiments(exps, root, root / "db", executor=executor)
finally:
    executor.close()
print(json.dumps(nodes))
"""


@pytest.mark.slow  # end to end: worker processes, a cluster or two CLI processes
def test_ray_runs_on_127_0_0_1_and_reports_a_dead_worker(tmp_path: Path) -> None:
    pytest.importorskip("ray")
    text = sweep_text("ray", 2, budgets=(300,))
    (tmp_path / "sweep.toml").write_text(text)
    # A separate process: the private instance must be the first use of ray there (see
    # RayExecutor.connect), and Ray's process-wide state stays out of the test session.
    env = {k: v for k, v in os.environ.items() if k != "RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"}
    done = subprocess.run([sys.executable, "-c", RAY_RUN, str(tmp_path)], capture_output=True, text=True,
                          env=env, timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.strip().splitlines()[-1]) == ["127.0.0.1"]
    status = {r["run_id"]: (r["status"], r["message"]) for r in rows(tmp_path / "db")}
    for exp in experiments(text):
        state, message = status[exp.run_id]
        assert state == ("failed" if exp.seed == 1 else "finished"), message
        assert exp.seed != 1 or "worker process died" in message
