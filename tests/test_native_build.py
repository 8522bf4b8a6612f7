"""The native kernels' build cache (kanlab.layers.kan.native_build): keys, verification, one build at a time.

Tiny stand-in sources and a logging wrapper around the real compiler keep these cheap: the real
kernels take seconds to compile, and the caching is the same.
"""

from __future__ import annotations

import ctypes
import os
import shutil
import signal
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from kanlab.layers.kan import native_build

pytestmark = pytest.mark.skipif(sys.platform == "win32" or shutil.which("cc") is None,
                                reason="needs a C compiler (the kernels are not built on Windows)")

WRAPPER = """#!/bin/sh
echo "$*" >> "{log}"
if [ "$1" = "--version" ]; then echo "fakecc {version}"; exit 0; fi
sleep {pause}
exec {cc} "$@"
"""


def fake_cc(root: Path, version: str = "1.0", pause: float = 0.0) -> Path:
    """A compiler that logs each call to root/cc.log, says `fakecc <version>` and runs the real cc."""
    path = root / "fake-cc"
    path.write_text(WRAPPER.format(log=root / "cc.log", version=version, pause=pause, cc=shutil.which("cc")))
    path.chmod(0o755)
    return path


def compiles(root: Path) -> int:
    """How many compiler runs (not --version) the fake compiler logged."""
    log = root / "cc.log"
    return sum("--version" not in line for line in log.read_text().splitlines()) if log.exists() else 0


@pytest.fixture
def tiny(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """Two stand-in sources and a header, the fake compiler as CC and an empty cache; returns tmp_path."""
    monkeypatch.setenv("KANLAB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CC", str(fake_cc(tmp_path)))
    sources = (tmp_path / "a.c", tmp_path / "b.c")
    sources[0].write_text('#include "h.h"\nREAL twice(REAL x) { return 2 * x; }\n')
    sources[1].write_text('#include "h.h"\nREAL half(REAL x) { return x / 2; }\n')
    (tmp_path / "h.h").write_text("/* shared */\n")
    monkeypatch.setattr(native_build, "SOURCES", sources)
    monkeypatch.setattr(native_build, "HEADER", tmp_path / "h.h")
    return tmp_path


def twice(path: Path) -> float:
    lib = ctypes.CDLL(str(path))
    lib.twice.restype, lib.twice.argtypes = ctypes.c_double, [ctypes.c_double]
    return float(lib.twice(1.25))


def test_a_build_is_cached_by_source_flags_and_compiler_version(tiny: Path) -> None:
    first = native_build.build("double")
    stamp = first.stat().st_mtime_ns
    assert native_build.build("double") == first and first.stat().st_mtime_ns == stamp  # not rebuilt
    assert compiles(tiny) == 3                                                       # 2 sources + link
    assert native_build.build("float") != first                                      # flags: a new key
    os.environ["CC"] = str(fake_cc(tiny, version="2.0"))  # monkeypatch restores it
    assert native_build.build("double") != first                                     # compiler: a new key
    os.environ["CC"] = str(fake_cc(tiny))
    assert native_build.build("double") == first
    native_build.SOURCES[1].write_text('#include "h.h"\nREAL half(REAL x) { return x * 0.5; }\n')
    assert native_build.build("double") != first                                     # source: a new key
    names = sorted(p.name.split(".", 1)[1] for p in first.parent.iterdir())
    assert names == ["lock"] * 4 + ["so"] * 4 + ["so.sha256"] * 4                    # no .tmp or .o left


def test_an_edit_of_a_header_the_gather_source_includes_gives_a_new_build(
        tiny: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    # _native_gather.c includes its kernels' headers: an edited kernel must not reuse a cached library
    extra = tiny / "kernels.h"
    extra.write_text("/* v1 */\n")
    monkeypatch.setattr(native_build, "GATHER_HEADERS", (extra,))
    first = native_build.build("double")
    assert native_build.build("double") == first
    extra.write_text("/* v2 */\n")
    assert native_build.build("double") != first


@pytest.mark.parametrize("damage", ["truncated", "flipped", "no-checksum"])
def test_a_damaged_cached_library_is_removed_and_rebuilt_with_one_warning(tiny: Path, damage: str) -> None:
    # A truncated library crashed every process that loaded it (SIGBUS, exit 135), forever.
    path = native_build.build("double")
    data = path.read_bytes()
    if damage == "truncated":
        path.write_bytes(data[:1000])
    elif damage == "flipped":  # same size, one byte changed
        path.write_bytes(data[:500] + bytes([data[500] ^ 0xFF]) + data[501:])
    else:
        (path.parent / f"{path.name}.sha256").unlink()
    before = compiles(tiny)
    warning = rf"cached kernel library {path} is damaged \(.+\); it was removed and is rebuilt now"
    with pytest.warns(RuntimeWarning, match=warning):
        assert native_build.build("double") == path
    assert compiles(tiny) == before + 3
    assert native_build.verify(path) is None and twice(path) == 2.5
    assert native_build.build("double") == path and compiles(tiny) == before + 3  # healed: no second warning


def test_first_builds_at_once_compile_once(tiny: Path) -> None:
    # A sweep's workers start together and all find the cache empty: each built its own copy
    # (108 s each instead of 21 s). Four builders, each with its own lock file handle.
    os.environ["CC"] = str(fake_cc(tiny, pause=0.3))  # a slow compiler: the builds overlap
    start, paths, errors = threading.Barrier(4), [], []

    def builder() -> None:
        start.wait()
        try:
            paths.append(native_build.build("double"))
        except Exception as err:  # noqa: BLE001 - reported by the assert below
            errors.append(err)

    threads = [threading.Thread(target=builder) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert errors == [] and len(paths) == 4 and len(set(paths)) == 1
    assert compiles(tiny) == 3 and native_build.verify(paths[0]) is None


def test_a_lock_left_by_a_killed_build_never_blocks(tiny: Path) -> None:
    # Another process holds the lock, as a build would, and is killed: the OS drops its lock.
    probe = tiny / "probe"
    native_build.build("double")
    lock = next(tiny.glob("cache/native/*.lock"))
    next(tiny.glob("cache/native/*.so")).unlink()  # so that the next build needs the lock
    hold = (f"import fcntl, time; f = open({str(lock)!r}, 'a'); fcntl.flock(f, fcntl.LOCK_EX); "
            f"open({str(probe)!r}, 'w').close(); time.sleep(60)")
    holder = subprocess.Popen([sys.executable, "-c", hold])
    try:
        while not probe.exists():
            assert holder.poll() is None
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait(timeout=10)
        done: list[Path] = []
        builder = threading.Thread(target=lambda: done.append(native_build.build("double")), daemon=True)
        builder.start()
        builder.join(timeout=30)
        assert done and native_build.verify(done[0]) is None
    finally:
        holder.kill()
        holder.wait()


@pytest.mark.slow  # four interpreters importing torch
def test_processes_building_at_once_build_once(tiny: Path) -> None:
    code = ("import sys; from pathlib import Path; from kanlab.layers.kan import native_build; "
            "native_build.SOURCES = (Path(sys.argv[1]), Path(sys.argv[2])); "
            "native_build.HEADER = Path(sys.argv[3]); print(native_build.build('double'))")
    os.environ["CC"] = str(fake_cc(tiny, pause=0.5))
    args = [str(p) for p in (*native_build.SOURCES, native_build.HEADER)]
    procs = [subprocess.Popen([sys.executable, "-c", code, *args], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outs = [p.communicate(timeout=120)[0].strip() for p in procs]
    assert all(p.returncode == 0 for p in procs)
    assert len(set(outs)) == 1 and compiles(tiny) == 3  # one build: two compiles and a link
    built = sorted(p.name for p in (tiny / "cache" / "native").iterdir())
    name = Path(outs[0]).name
    assert built == sorted([name, f"{name}.sha256", name.replace(".so", ".lock")])  # nothing half-written


@pytest.mark.slow  # builds the real kernels (seconds) and starts two interpreters
def test_a_truncated_real_library_is_rebuilt_and_the_layer_runs(tmp_path: Path) -> None:
    # `truncate -s 1000 <cache>/kanlab/native/kan_double_*.so; kanlab run smoke` ended in SIGBUS.
    code = ("import torch; from kanlab import KANLinear; torch.manual_seed(0); "
            "layer = KANLinear(2, 3, path='native').double(); assert layer.resolved_path() == 'native'; "
            "print(float(layer(torch.ones(4, 2, dtype=torch.float64)).sum()))")
    env = {**os.environ, "KANLAB_CACHE": str(tmp_path)}
    first = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr
    (library,) = (tmp_path / "native").glob("kan_double_*.so")
    os.truncate(library, 1000)
    again = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert again.stdout == first.stdout
    warnings = [line for line in again.stderr.splitlines() if "RuntimeWarning" in line]
    assert len(warnings) == 1 and f"{library} is damaged (1000 bytes where" in warnings[0]
    assert native_build.verify(library) is None
