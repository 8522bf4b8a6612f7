"""A job and what comes back: the run to execute, the worker's side (train it in a private
temporary folder, pack the run folder as a tar archive) and the driver's unpacking of it."""

from __future__ import annotations

import io
import tarfile
import tempfile
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from kanlab.runs.experiment import Draw, execute
from kanlab.study.config import ExperimentConfig


@dataclass(frozen=True)
class Job:
    """One run to execute: its id, its resolved config (ExperimentConfig.to_dict()) and what draws
    its plots (a module-level function, so that it pickles to workers; None: no plots)."""

    run_id: str
    config: Mapping[str, Any]
    draw: Draw | None = None

    @classmethod
    def of(cls, exp: ExperimentConfig, *, draw: Draw | None = None) -> Job:
        """The Job of an experiment."""
        return cls(exp.run_id, exp.to_dict(), draw)


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
        return pack(execute(exp, Path(tmp), draw=job.draw))


# Torch threads of each pool and cluster worker, which run one job per core. A run's own count
# (ExperimentConfig.threads, set from this by `kanlab sweep`) is what execute computes on.
WORKER_THREADS = 1


def in_one_thread(target: Target, job: Job) -> bytes:
    """target(job) with WORKER_THREADS torch threads: pool and cluster workers run one job per core."""
    import torch

    torch.set_num_threads(WORKER_THREADS)
    return target(job)


def error_text(err: BaseException) -> str:
    """"Type: message" of an exception, as recorded for a failed run."""
    return f"{type(err).__name__}: {err}"
