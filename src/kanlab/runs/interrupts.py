"""Ctrl-C answered on this process's terms and never lost: around imports and around starting workers.

A SIGINT set to SIG_IGN is dropped by the kernel, whichever of the process's threads it is
delivered to; blocking it in one thread is not enough either, as the kernel then hands it to
another thread (torch's OpenMP threads, pytest-xdist's, tqdm's), which drops it while it is
ignored. So the handler is swapped instead (a handler catches it on any thread), and the caller
acts on it once the block is done.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Callable, Iterator
from typing import Any

_HAS_MASK = hasattr(signal, "pthread_sigmask")  # POSIX


@contextlib.contextmanager
def ctrl_c_handled(handler: Callable[[int, Any], None], *, block: bool = False) -> Iterator[None]:
    """Run the block with handler as SIGINT's handler, then restore the previous one.

    Args:
        handler: called as handler(signum, frame) on the main thread for each Ctrl-C.
        block: also block SIGINT in this thread, so that a process started inside the block begins
            with SIGINT blocked (a signal mask survives exec, a handler does not) until it sets its
            own. A SIGINT pending at the end of the block reaches handler.
    Outside the main thread no handler can be set: there only `block` applies.
    """
    previous = signal.getsignal(signal.SIGINT)
    swap = threading.current_thread() is threading.main_thread() and previous is not None
    if swap:
        signal.signal(signal.SIGINT, handler)
    mask = signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGINT}) if block and _HAS_MASK else None
    try:
        yield
    finally:
        if mask is not None:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        if swap:
            signal.signal(signal.SIGINT, previous)


@contextlib.contextmanager
def ctrl_c_deferred(*, block: bool = False) -> Iterator[list[int]]:
    """Inside the block a Ctrl-C is appended to the yielded list instead of raising KeyboardInterrupt
    (block: as for ctrl_c_handled)."""
    pressed: list[int] = []
    with ctrl_c_handled(lambda signum, _frame: pressed.append(signum), block=block):
        yield pressed


def ignore_ctrl_c() -> None:
    """Ignore SIGINT from now on, then unblock it (a worker's first step; a pending one is dropped)."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    if _HAS_MASK:
        signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
