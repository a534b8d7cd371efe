# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
Ctrl-C that is never lost. Python turns SIGINT into a KeyboardInterrupt raised wherever the main thread happens to
be, and two places there swallow it: a finalizer (`__del__`, run by the garbage collector at any allocation, where
the exception is only printed as "ignored") and the import of a C extension (OpenVINO's turns it into an ImportError,
which reads as "OpenVINO is not installed"). Measured on `orcahello detect`: 4 of about 160 Ctrl-Cs sent in a run's
first 5 seconds were lost that way, and the run went on to the end with exit status 0.

`watching_for_ctrl_c` installs a SIGINT handler that remembers the request as well as raising KeyboardInterrupt:
`raise_if_interrupted` (called once per scored batch) raises it again, and the command line reports an interrupted
run even when nothing else saw the KeyboardInterrupt (and Python's "Exception ignored" traceback for it is not
printed).
"""

import contextlib
import signal
import sys
import threading
from collections.abc import Iterator

_requested = threading.Event()


def _on_sigint(signal_number, frame):
    _requested.set()
    raise KeyboardInterrupt


def interrupted() -> bool:
    """Whether Ctrl-C was pressed since `watching_for_ctrl_c` began, whether or not its KeyboardInterrupt arrived."""
    return _requested.is_set()


def raise_if_interrupted() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed (at a point where the caller can stop cleanly)."""
    if _requested.is_set():
        raise KeyboardInterrupt


@contextlib.contextmanager
def watching_for_ctrl_c() -> Iterator[None]:
    """
    Within the block, SIGINT raises KeyboardInterrupt and is remembered (see the module's docstring); the previous
    handler is put back after it. Nothing changes where SIGINT is ignored (a shell's background job) or already
    handled by someone else, or off the main thread (where Python allows no signal handler).
    """
    if threading.current_thread() is not threading.main_thread() or (
        signal.getsignal(signal.SIGINT) is not signal.default_int_handler
    ):
        yield
        return
    previous_unraisable_hook = sys.unraisablehook

    def unraisable_hook(unraisable):
        # A KeyboardInterrupt swallowed by a finalizer is remembered: no "Exception ignored" traceback for it.
        if not (unraisable.exc_type is KeyboardInterrupt and _requested.is_set()):
            previous_unraisable_hook(unraisable)

    _requested.clear()
    signal.signal(signal.SIGINT, _on_sigint)
    sys.unraisablehook = unraisable_hook
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, signal.default_int_handler)
        sys.unraisablehook = previous_unraisable_hook
