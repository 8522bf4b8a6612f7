"""The code version in a run's identity: a SHA-256 of the bytes of kanlab's source that computes results.

Hashed: every .py, .c and .h file of the package (relative path and bytes), so an upgrade or a local
edit of anything a run executes (layers, kernels, training, tasks, matching, the driver that
records it) gives new run ids and never reuses a result of the old code. Left out: report/, which
reads recorded results and is drawn anew for every report, so it never produces a number that is
stored; editing a plot keeps every run. Presets are study files: what they set is in the config.
Also hashed: the versions of the numerical libraries a run computes with (torch, numpy, scipy), so
upgrading one of them is a new version of the code too.
"""

from __future__ import annotations

import hashlib
from functools import cache
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

PACKAGE = Path(__file__).resolve().parents[1]  # kanlab/, above study/
SUFFIXES = (".py", ".c", ".h")
LEFT_OUT = ("report",)  # top-level folders of the package that compute no recorded number
LIBRARIES = ("torch", "numpy", "scipy")  # their releases change computed numbers


@cache
def library_versions() -> tuple[str, ...]:
    """`name==version` of each of LIBRARIES (`name==none` where it is not installed), looked up once
    per process (a lookup scans the installed distributions: ~9 ms, and expand asks per sweep point)."""
    out = []
    for name in LIBRARIES:
        try:
            out.append(f"{name}=={version(name)}")
        except PackageNotFoundError:
            out.append(f"{name}==none")
    return tuple(out)


def source_files(root: Path) -> list[Path]:
    """The files code_version hashes under a package folder, sorted by relative path."""
    return sorted(p for p in root.rglob("*")
                  if p.suffix in SUFFIXES and p.is_file() and p.relative_to(root).parts[0] not in LEFT_OUT
                  and "__pycache__" not in p.relative_to(root).parts)


@cache
def _digest(root: Path, libraries: tuple[str, ...]) -> str:
    h = hashlib.sha256()
    for pin in libraries:
        h.update(f"{pin}\0".encode())
    for path in source_files(root):
        data = path.read_bytes()
        # name and length before the bytes: moving code between files changes the hash
        h.update(f"{path.relative_to(root).as_posix()}\0{len(data)}\0".encode())
        h.update(data)
    return h.hexdigest()


def code_version() -> str:
    """SHA-256 (hex) of the package's source (see the module docstring); hashed once per process."""
    return _digest(PACKAGE, library_versions())
