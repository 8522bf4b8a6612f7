"""Builds, caches and loads the C kernels of the native and gather paths (_native.c,
_native_gather.c, the threads they run on in _native_runtime.c, _native.h) and of fixed-function
edges (_native_fixed.c, the symbolic layer's): one library per float type.

Compiled with the system's C compiler on first use (a few seconds, once; cached in
~/.cache/kanlab/native, or $KANLAB_CACHE/native, and checked against its checksum before each
load: see build) and loaded with ctypes. Where no compiler works, library() is None and KANLinear
runs another path (layers/kan/paths.py).
"""

from __future__ import annotations

import contextlib
import ctypes
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

try:
    import fcntl
except ImportError:  # Windows: the kernels are not built there (see library)
    fcntl = None  # type: ignore[assignment]

HERE = Path(__file__).parent
# one library: the first three include _native.h
SOURCES = (HERE / "_native.c", HERE / "_native_gather.c", HERE / "_native_runtime.c",
           HERE / "_native_fixed.c")
HEADER = HERE / "_native.h"
# what _native_gather.c includes besides HEADER (one translation unit): part of the cache key too
GATHER_HEADERS = (HERE / "_native_gather_forward.h", HERE / "_native_gather_backward.h")
C_TYPES = {torch.float32: "float", torch.float64: "double"}

_LOCK = threading.Lock()
_LIBS: dict[torch.dtype, ctypes.CDLL | None] = {}
_FAILED: dict[torch.dtype, str] = {}  # why a build failed, until it is reported


def cache_dir() -> Path:
    """Where compiled kernels are kept: $KANLAB_CACHE/native, else ~/.cache/kanlab/native."""
    root = os.environ.get("KANLAB_CACHE")
    if root:
        return Path(root) / "native"
    return Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache") / "kanlab" / "native"


def library(dtype: torch.dtype) -> ctypes.CDLL | None:
    """The kernels for dtype, built on first use (once per process); None if they cannot be."""
    with _LOCK:
        if dtype not in _LIBS:
            try:
                if sys.platform == "win32":
                    raise RuntimeError("not built on Windows")
                _LIBS[dtype] = _load(build(C_TYPES[dtype]))
            except (OSError, RuntimeError, subprocess.SubprocessError) as err:
                _LIBS[dtype], _FAILED[dtype] = None, str(err)
        return _LIBS[dtype]


def available(dtype: torch.dtype, *, asked: bool = False) -> bool:
    """Whether the native path can run for dtype here (builds the kernels if needed).

    asked: the caller chose path="native": warn (once per dtype) when it cannot run.
    """
    ok = dtype in C_TYPES and library(dtype) is not None
    if not ok and asked and dtype in _FAILED:
        warnings.warn(f"kanlab: the native KAN path is unavailable ({_FAILED.pop(dtype)}); KANLinear "
                      "runs what path='auto' picks instead. Install a C compiler (gcc or clang) or set "
                      "CC to use it.", RuntimeWarning, stacklevel=3)
    return ok


def build(c_type: str) -> Path:
    """Compile the kernels for c_type ("float" or "double") unless a verified build of these sources exists.

    The cache key covers the sources, the flags, the compiler and its version string. A cached
    library is loaded only after its size and SHA-256 match the sidecar written when it was built: a
    truncated or corrupt file (which crashed every process that loaded it, with SIGBUS) is removed
    and rebuilt, with one RuntimeWarning. Processes that find the cache empty at once take a file
    lock, so one of them builds and the others wait for its file.
    """
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc") or shutil.which("clang")
    if cc is None:
        raise RuntimeError("no C compiler found")
    # -fno-trapping-math: the kernels never read the floating-point exception flags, and the
    # local basis's clamps only vectorize without them (the values are the same)
    flags = ["-O3", "-fno-trapping-math", "-shared", "-fPIC", f"-DREAL={c_type}", *vector_flags()]
    compile_flags = [[*flags, *wide_flags(src)] for src in SOURCES]
    stamp = " ".join([cc, compiler_version(cc), *(flag for own in compile_flags for flag in own),
                      platform.machine(), sys.platform]).encode()
    key = hashlib.sha256(b"".join(p.read_bytes() for p in (*SOURCES, HEADER, *GATHER_HEADERS)) + stamp
                         ).hexdigest()[:16]
    out = cache_dir() / f"kan_{c_type}_{key}.so"
    if verify(out) is None:
        return out
    out.parent.mkdir(parents=True, exist_ok=True)
    with _locked(out.with_suffix(".lock")):
        problem = verify(out)  # again: another process may have built it while this one waited
        if problem is None:
            return out
        if out.exists():
            warnings.warn(f"kanlab: the cached kernel library {out} is damaged ({problem}); it was removed "
                          "and is rebuilt now", RuntimeWarning, stacklevel=2)
            out.unlink()
        _compile(cc, flags, compile_flags, out)
    return out


def _compile(cc: str, flags: list[str], compile_flags: list[list[str]], out: Path) -> None:
    """Build the library into out, its checksum first (see verify): each file replaced atomically."""
    tmp = out.with_name(f"{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    objects = [tmp.with_name(f"{tmp.name}.{n}.o") for n in range(len(SOURCES))]
    jobs: list[subprocess.Popen[str]] = []
    try:
        # one compiler per source, at once (each takes seconds at -O3), then one link
        jobs = [subprocess.Popen([cc, *own, "-c", str(src), "-o", str(obj)], stdout=subprocess.DEVNULL,
                                 stderr=subprocess.PIPE, text=True)
                for src, own, obj in zip(SOURCES, compile_flags, objects, strict=True)]
        errors = [err.strip()[-1000:] for job in jobs for err in [job.communicate(timeout=300)[1]]
                  if job.returncode != 0]
        if errors:
            raise RuntimeError(f"{cc} failed: {errors[0]}")
        done = subprocess.run([cc, *flags, *map(str, objects), "-o", str(tmp), "-lm"], capture_output=True,
                              text=True, timeout=300)
        if done.returncode != 0:
            raise RuntimeError(f"{cc} failed: {done.stderr.strip()[-1000:]}")
        data = tmp.read_bytes()
        sums = _checksum(out)
        sums_tmp = sums.with_name(f"{tmp.name}.sha256")
        sums_tmp.write_text(f"{len(data)} {hashlib.sha256(data).hexdigest()}\n")
        os.replace(sums_tmp, sums)
        os.replace(tmp, out)  # atomic: a process never loads half a file
    finally:
        for job in jobs:  # after a timeout: no compiler left writing into the cache
            if job.poll() is None:
                job.kill()
                job.wait()
        for path in (tmp, *objects, _checksum(out).with_name(f"{tmp.name}.sha256")):
            path.unlink(missing_ok=True)


def _checksum(library: Path) -> Path:
    return library.with_name(f"{library.name}.sha256")


def verify(library: Path) -> str | None:
    """None when library exists and matches the size and SHA-256 recorded beside it; else what is wrong."""
    try:
        data = library.read_bytes()
    except FileNotFoundError:
        return "not built"
    try:
        size, digest = _checksum(library).read_text().split()
    except (OSError, ValueError):
        return "no checksum recorded beside it"
    if len(data) != int(size):
        return f"{len(data)} bytes where {size} were written"
    if hashlib.sha256(data).hexdigest() != digest:
        return "its SHA-256 differs from the one recorded when it was built"
    return None


@contextlib.contextmanager
def _locked(path: Path) -> Iterator[None]:
    """Hold an exclusive lock on path (created if missing) for the block. flock: the OS releases it
    when its holder exits or is killed, so a lock file left behind never blocks a later build."""
    with path.open("a") as handle:
        if fcntl is not None:
            fcntl.flock(handle, fcntl.LOCK_EX)
        yield


def compiler_version(cc: str) -> str:
    """What `cc --version` prints: a new compiler (or the same name for another one) gets a new build."""
    done = subprocess.run([cc, "--version"], capture_output=True, text=True, timeout=60)
    if done.returncode != 0:
        raise RuntimeError(f"{cc} --version failed: {done.stderr.strip()[-300:]}")
    return done.stdout.strip()


def vector_flags() -> list[str]:
    """-mavx2 -mfma where torch itself runs AVX2 or AVX-512 kernels (x86-64 only), so never more
    than this machine has: the gather kernels' loops over outputs then take 8 floats per
    instruction instead of SSE2's 4 (benchmarks/README.md). The flags are part of the cache key, so each
    kind of machine gets its own build."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    return ["-mavx2", "-mfma"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []


def wide_flags(source: Path) -> list[str]:
    """AVX-512 F, VL, BW and DQ for the gather kernels where torch runs AVX-512 kernels: their 32
    vector registers hold the forward's sums without spilling. Not for _native.c: no faster there,
    and slower to compile (benchmarks/README.md)."""
    if source.name != "_native_gather.c" or "-mavx2" not in vector_flags():
        return []
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return []
    return ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    i64, addr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    first: list[Any] = [i64, i64, i64, i64, cint, addr, addr, addr, addr, addr, addr, addr, addr, cint]
    lib.kan_forward.argtypes = [*first, addr, addr, addr, cint]
    lib.kan_backward.argtypes = [*first, *[addr] * 7, cint]
    lib.gather_basis.argtypes = [i64, i64, i64, cint, addr, addr, addr, addr, addr, addr, addr, cint]
    lib.gather_forward.argtypes = [i64, i64, i64, i64, cint, addr, addr, addr, addr, cint]
    lib.gather_backward.argtypes = [i64, i64, i64, i64, i64, cint, *[addr] * 10, cint]
    lib.gather_table.argtypes = [i64, i64, i64, cint, addr, addr, addr, cint]
    lib.gather_forward_build.argtypes = [i64, i64, i64, i64, cint, *[addr] * 6, cint]
    lib.fixed_forward.argtypes = [i64, i64, i64, *[addr] * 5]
    lib.fixed_backward.argtypes = [i64, i64, i64, *[addr] * 7]
    for fn in (lib.kan_forward, lib.kan_backward, lib.gather_basis, lib.gather_forward, lib.gather_backward,
               lib.gather_table, lib.gather_forward_build, lib.fixed_forward, lib.fixed_backward):
        fn.restype = cint
    lib.kan_runtime.argtypes = [addr, addr, addr]
    lib.kan_runtime.restype = None
    lib.kan_runtime(*openmp_runtime())
    return lib


def openmp_runtime() -> tuple[int | None, int | None, int | None]:
    """The addresses of GOMP_parallel, omp_get_thread_num and omp_get_num_threads in the OpenMP
    runtime torch's own parallel loops run on, or Nones (the kernels then run on one thread)
    where torch does not run on OpenMP or its runtime is not in the process's global scope."""
    if "parallel backend: OpenMP" not in torch.__config__.parallel_info():
        return None, None, None
    try:
        scope = ctypes.CDLL(None)
        names = ("GOMP_parallel", "omp_get_thread_num", "omp_get_num_threads")
        return tuple(ctypes.cast(getattr(scope, n), ctypes.c_void_p).value for n in names)  # type: ignore[return-value]
    except (AttributeError, OSError, TypeError):
        return None, None, None
