"""The "native" KANLinear path: a small layer's forward and backward as plain C loops.

At the sizes of the KAN paper's examples ([2, 5, 1], a thousand points) every other path spends
its time dispatching tensor operations (a few microseconds each, a few hundred per LBFGS closure),
not computing. _native.c does the whole layer, uniform-grid basis included, in one call each way.
It is compiled with the system's C compiler on first use (a few seconds, once; cached in
~/.cache/kanlab/native, or $KANLAB_CACHE/native, and checked against its checksum before each
load: see build) and loaded with ctypes. Where no compiler works,
KANLinear runs the "dense" or "gather" path instead: silently under path="auto" (which picks
native for the smallest layers), after one RuntimeWarning under path="native".

The loops split the samples over torch's threads and read the coefficient table once per sample
and edge: fast while a layer is small (see SMALL_EDGES), slower than the gather path's vectorized
loops (_native_gather.c, built into the same library) beyond. CPU only; float32 and
float64 (sums in double either way); order 2..5. On a uniform grid the kernels find each input's
cell by one multiplication; on any other (after update_grid) by a binary search over the knots,
and its bases from per-cell polynomials (cell_table), built once per grid and cached.
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import os
import platform
import shutil
import subprocess
import sys
import threading
import warnings
import weakref
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import torch

from kanlab import splines
from kanlab.layers.kan._fast import _power_matrix, graph_grads, reference_layer

try:
    import fcntl
except ImportError:  # Windows: the kernels are not built there (see library)
    fcntl = None  # type: ignore[assignment]

HERE = Path(__file__).parent
SOURCES = (HERE / "_native.c", HERE / "_native_gather.c")  # one library: both include _native.h
HEADER = HERE / "_native.h"
C_TYPES = {torch.float32: "float", torch.float64: "double"}
BASE_CODES = {None: 0, "silu": 1, "identity": 2, "tanh": 3}
# "auto" runs native for layers with at most this many edges (in * out): measured against the
# gather path's kernels (fwd+bwd, 2 threads, batch 1000-16384, float32 / float64) native is
# 0.6 / 0.6x at 2->5 and 5->1, 0.7 / 0.6x at 4->8, 0.8 / 0.55x at 8->8, 1.0 / 0.65x at 8->16 and
# 1.1 / 1.0x at 16->16.
SMALL_EDGES = 128
MAX_ORDER = 5  # MAX_K in _native.c

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
    key = hashlib.sha256(b"".join(p.read_bytes() for p in (*SOURCES, HEADER)) + stamp).hexdigest()[:16]
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
    instruction instead of SSE2's 4 (2x at 256->256). The flags are part of the cache key, so each
    kind of machine gets its own build."""
    if platform.machine().lower() not in ("x86_64", "amd64"):
        return []
    return ["-mavx2", "-mfma"] if torch.backends.cpu.get_cpu_capability() in ("AVX2", "AVX512") else []


def wide_flags(source: Path) -> list[str]:
    """AVX-512 F, VL, BW and DQ for the gather kernels where torch runs AVX-512 kernels: their 32
    vector registers hold the forward's sums without spilling (the local basis and the gather
    forward 0.65-0.75x, float64's table gradient 0.6-0.7x). Not for _native.c: its kernels were
    no faster, and it compiled in twice the time."""
    if source.name != "_native_gather.c" or "-mavx2" not in vector_flags():
        return []
    if torch.backends.cpu.get_cpu_capability() != "AVX512":
        return []
    return ["-mavx512f", "-mavx512vl", "-mavx512bw", "-mavx512dq"]


def _load(path: Path) -> ctypes.CDLL:
    lib = ctypes.CDLL(str(path))
    i64, addr, cint = ctypes.c_int64, ctypes.c_void_p, ctypes.c_int
    first: list[Any] = [i64, i64, i64, i64, cint, addr, addr, addr, addr, addr, addr, addr, addr, cint]
    lib.kan_forward.argtypes = [*first, addr, addr, cint]
    lib.kan_backward.argtypes = [*first, addr, addr, addr, addr, addr, addr, cint]
    lib.gather_basis.argtypes = [i64, i64, i64, cint, addr, addr, addr, addr, addr, addr, addr, cint]
    lib.gather_forward.argtypes = [i64, i64, i64, i64, cint, addr, addr, addr, addr, cint]
    lib.gather_backward.argtypes = [i64, i64, i64, i64, cint, *[addr] * 10, cint]
    lib.gather_table.argtypes = [i64, i64, i64, cint, addr, addr, addr, cint]
    lib.gather_forward_build.argtypes = [i64, i64, i64, i64, cint, *[addr] * 6, cint]
    for fn in (lib.kan_forward, lib.kan_backward, lib.gather_basis, lib.gather_forward, lib.gather_backward,
               lib.gather_table, lib.gather_forward_build):
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


@functools.cache
def _poly(order: int) -> torch.Tensor:
    return _power_matrix(order, True, torch.float64, torch.device("cpu")).contiguous()


def cell_table(grid: torch.Tensor, order: int) -> torch.Tensor:
    """What the kernels read to find the bases on a grid of any spacing (_native.h's
    local_basis_cells): per input, the m knots padded with +inf to a power of two >= m + 1 (for a
    branch-free binary search), then m + 1 cell records, each its first knot, 1 / its width and
    the (k + 1, k + 1) polynomial coefficients of splines.cell_polynomials; the cells below the
    first knot and from the last one on are zero. (i, m) float64 knots -> (i, block) float64."""
    grid = grid.to(torch.float64)
    i, m = grid.shape
    k = order
    size = 1 << m.bit_length()  # the smallest power of two >= m + 1
    search = torch.cat([grid, grid.new_full((i, size - m), float("inf"))], 1)  # (i, size)
    width = grid.diff(dim=1)                                               # (i, m - 1)
    inv = torch.where(width > 0, 1.0 / torch.where(width > 0, width, 1.0), 0.0)
    inner = torch.cat([grid[:, :-1, None], inv[..., None],
                       splines.cell_polynomials(grid, k).flatten(2)], 2)  # (i, m - 1, 2 + (k + 1)^2)
    outer = inner.new_zeros(i, 1, inner.shape[2])
    below, above = outer.clone(), outer.clone()
    below[:, 0, 0], above[:, 0, 0] = grid[:, 0], grid[:, -1]
    records = torch.cat([below, inner, above], 1)                          # (i, m + 1, 2 + (k + 1)^2)
    return torch.cat([search, records.flatten(1)], 1).contiguous()


# id(grid), order -> (grid._version, cell_table): tables are built once per grid (a few hundred
# tensor operations), dropped when their grid is freed, rebuilt when it is changed in place.
_CELLS: dict[tuple[int, int], tuple[int, torch.Tensor]] = {}


def cells(grid: torch.Tensor, order: int, uniform: bool) -> torch.Tensor | None:
    """cell_table(grid, order), cached per grid tensor; None for a uniform grid (the kernels need
    no table there)."""
    if uniform:
        return None
    try:
        version = grid._version
    except RuntimeError:  # an inference tensor has no version counter: not cached
        return cell_table(grid, order)
    key = (id(grid), order)
    hit = _CELLS.get(key)
    if hit is not None and hit[0] == version:
        return hit[1]
    if hit is None:
        weakref.finalize(grid, _CELLS.pop, key, None)
    table = cell_table(grid, order)
    _CELLS[key] = (version, table)
    return table


# Below this many multiply-adds a kernel call runs on one thread: waking torch's threads costs
# microseconds.
MIN_PARALLEL_WORK = 1 << 16


def threads(work: int) -> int:
    """How many of torch's threads a kernel call of `work` multiply-adds runs on."""
    return max(1, min(torch.get_num_threads(), work // MIN_PARALLEL_WORK))


def ptr(t: torch.Tensor | None) -> int | None:
    """The address of t's data (None for None), for the kernels' pointer arguments."""
    return None if t is None else t.data_ptr()


def aux_of(x: torch.Tensor, base: str | None) -> torch.Tensor | None:
    """What the kernels read to get b(x) and b'(x) without an exp per element: torch's vectorized
    sigmoid (silu) or tanh of x, once per forward, kept for backward; None for the other bases."""
    return torch.sigmoid(x) if base == "silu" else torch.tanh(x) if base == "tanh" else None


def head(x: torch.Tensor, aux: torch.Tensor | None, out_features: int, grid: torch.Tensor,
         table: torch.Tensor | None, k: int, coef: int | None, scale: int | None, base_weight: int | None,
         base: str | None) -> list[Any]:
    """The arguments both kernels start with: x, aux, the float64 grid and its cell table (None
    for a uniform grid) as contiguous tensors, the parameters as addresses of contiguous data of
    x's dtype (None for an absent one)."""
    b, i = x.shape
    return [b, i, out_features, grid.shape[-1], k, ptr(x), ptr(aux), ptr(grid), ptr(_poly(k)), ptr(table),
            coef, scale, base_weight, BASE_CODES[base]]


def _head(x: torch.Tensor, aux: torch.Tensor | None, coef: torch.Tensor, scale: torch.Tensor | None,
          base_weight: torch.Tensor | None, grid: torch.Tensor, table: torch.Tensor | None, k: int,
          base: str | None) -> list[Any]:
    return head(x, aux, coef.shape[0], grid, table, k, ptr(coef), ptr(scale), ptr(base_weight), base)


def work_threads(x: torch.Tensor, coef: torch.Tensor) -> int:
    """threads() for one layer call on x (b, i) with coef (o, i, c)."""
    return threads(x.shape[0] * coef.shape[0] * coef.shape[1] * 4)


def check(status: int) -> None:
    """Raise if a kernel returned non-zero (it could not allocate its work space)."""
    if status != 0:
        raise MemoryError("the native KAN kernel could not allocate its accumulators")


@torch.compiler.disable
def native_layer(x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
                 base_weight: torch.Tensor | None, bias: torch.Tensor | None, grid: torch.Tensor,
                 order: int, base: str | None, uniform: bool = True) -> torch.Tensor:
    """The layer on the native kernels (NativeKAN), always run eagerly: torch.compile cannot see
    what a ctypes call reads and would trace it with wrong addresses, so inside a compiled model
    this is a graph break. uniform: the grid is uniform per input (else its cell table is used)."""
    return NativeKAN.apply(x, coef, scale, base_weight, bias, grid, order, base,
                           cells(grid, order, uniform))


class NativeKAN(torch.autograd.Function):
    """y = sum_i [s * phi(x_i) + w * b(x_i)] + bias by _native.c; saves only the inputs."""

    @staticmethod
    def forward(
        ctx: Any, x: torch.Tensor, coef: torch.Tensor, scale: torch.Tensor | None,
        base_weight: torch.Tensor | None, bias: torch.Tensor | None, grid: torch.Tensor,
        order: int, base: str | None, table: torch.Tensor | None,
    ) -> torch.Tensor:
        lib = library(x.dtype)
        assert lib is not None, "KANLinear only picks the native path where library() built it"
        for name, t in (("coef", coef), ("scale", scale), ("base_weight", base_weight), ("bias", bias)):
            if t is not None and t.dtype != x.dtype:
                raise TypeError(f"KANLinear: the input is {x.dtype} but the layer's {name} is {t.dtype}: "
                                "convert one to the other (model.double() or x.float())")
        x, coef, grid = x.contiguous(), coef.contiguous(), grid.contiguous()
        scale, base_weight, bias = (None if t is None else t.contiguous() for t in (scale, base_weight, bias))
        y = x.new_empty(x.shape[0], coef.shape[0])
        aux = aux_of(x, base)
        check(lib.kan_forward(*_head(x, aux, coef, scale, base_weight, grid, table, order, base), ptr(bias),
                              ptr(y), work_threads(x, coef)))
        ctx.save_for_backward(x, aux, coef, scale, base_weight, bias, grid, table)
        ctx.meta = (order, base)
        return y

    @staticmethod
    @torch.compiler.disable  # also under compiled autograd: the kernels read raw addresses
    def backward(ctx: Any, gy: torch.Tensor) -> tuple[Any, ...]:
        x, aux, coef, scale, base_weight, bias, grid, table = ctx.saved_tensors
        k, base = ctx.meta
        inputs = (x, coef, scale, base_weight, bias)
        needs = ctx.needs_input_grad[:5]
        if torch.is_grad_enabled():  # create_graph=True: higher derivatives through the general path
            return (*graph_grads(needs, gy, inputs, functools.partial(reference_layer, grid, k, base)),
                    None, None, None, None)
        grads = [torch.empty_like(t) if need and t is not None else None
                 for t, need in zip(inputs, needs, strict=True)]
        gy = gy.contiguous()  # held by a name: the kernel reads it after ptr returns
        lib = library(x.dtype)
        assert lib is not None
        check(lib.kan_backward(*_head(x, aux, coef, scale, base_weight, grid, table, k, base), ptr(gy),
                               *map(ptr, grads), work_threads(x, coef)))
        return (*grads, None, None, None, None)
