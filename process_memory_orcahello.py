# Copyright 2026 Orcasound and the OrcaHello contributors. MIT License.
"""
How OrcaHello's processes use memory: glibc's mmap threshold, fixed once per process so that memory stays flat over
hours of audio (`return_large_buffers_to_the_system`), and lifted around each PyTorch forward pass so that the
activations reuse the heap (`heap_reused_for_activations`).

The setting is process-wide (`mallopt`): the processes' entry points make it (the command line, the endpoint
handler, batch workers), never a library call such as building a pipeline. Standard library only; everything here
is a no-op where glibc is not the C library.
"""

import contextlib
import ctypes
import functools
import sys
from collections.abc import Iterator

# Buffers of this size and more are handed straight back to the system when they are freed (see
# `return_large_buffers_to_the_system`).
MMAP_THRESHOLD_BYTES = 1 << 20
_fixed_mmap_threshold = None  # set by return_large_buffers_to_the_system


def return_large_buffers_to_the_system() -> None:
    """
    Make glibc hand buffers of `MMAP_THRESHOLD_BYTES` and more straight back to the system when they are freed.

    Scoring allocates and frees buffers of tens of MB for every block of windows. glibc's default raises its mmap
    threshold after each such free, so later buffers come from the heap and fragment it: a process scoring a
    60-minute file ended 330 MB above one scoring a 10-minute file, and a live process scoring one minute after
    another would keep growing. With the threshold fixed at 1 MB, peak memory is the same for 5 and 20 minutes of
    audio (at 4 or 16 MB it still grew, by 230 MB from 5 to 20 minutes: the per-window results kept until the end
    of a file sit between the freed buffers). The frontend keeps its per-window buffers under 1 MB, so that they are
    reused rather than mapped and page-faulted in again for every window. This is a process-wide setting
    (`mallopt`), so the processes' entry points make it (the command line, the endpoint handler, batch workers),
    never a library call; it is a no-op where glibc is not the C library.
    """
    global _fixed_mmap_threshold
    libc = _glibc()
    if libc is not None:
        libc.mallopt(_M_MMAP_THRESHOLD, MMAP_THRESHOLD_BYTES)
        _fixed_mmap_threshold = MMAP_THRESHOLD_BYTES


def fixed_mmap_threshold() -> int | None:
    """The mmap threshold `return_large_buffers_to_the_system` fixed in this process; None when it was not called."""
    return _fixed_mmap_threshold


# glibc's mallopt parameters (malloc.h) and the values glibc's own adaptive mode reaches after large frees.
_M_TRIM_THRESHOLD, _M_MMAP_THRESHOLD = -1, -3
_DEFAULT_TRIM_THRESHOLD_BYTES = 128 * 1024
_ADAPTIVE_MMAP_THRESHOLD_BYTES = 32 * 1024 * 1024  # glibc's ceiling on 64-bit systems
_ADAPTIVE_TRIM_THRESHOLD_BYTES = 2 * _ADAPTIVE_MMAP_THRESHOLD_BYTES


@functools.cache
def _glibc():
    if not sys.platform.startswith("linux"):
        return None
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt  # noqa: B018  (musl and others: AttributeError)
    except (OSError, AttributeError):
        return None
    return libc


@contextlib.contextmanager
def heap_reused_for_activations(process_mmap_threshold: int | None) -> Iterator[None]:
    """
    Within the block, let PyTorch's CPU activation buffers (up to 32 MB) come from the heap and stay there when
    freed, as glibc's adaptive defaults do; afterwards, put back the fixed `process_mmap_threshold` that a process
    set to keep its memory flat (`return_large_buffers_to_the_system`), and glibc's default trim
    threshold that goes with it. Does nothing when `process_mmap_threshold` is None or glibc is not the C library.

    Under that fixed 1 MB threshold every activation of every batch is a fresh `mmap`, page-faulted in and unmapped
    again: the eager ResNet50 spent about 40% of its time on it (1.37 s against 0.86 s CPU time for 8 windows, 1
    thread). The heap kept between batches is the forward pass's own peak, which the process reaches anyway.
    """
    libc = _glibc() if process_mmap_threshold is not None else None
    if libc is None or process_mmap_threshold is None:
        yield
        return
    libc.mallopt(_M_MMAP_THRESHOLD, _ADAPTIVE_MMAP_THRESHOLD_BYTES)
    libc.mallopt(_M_TRIM_THRESHOLD, _ADAPTIVE_TRIM_THRESHOLD_BYTES)
    try:
        yield
    finally:
        libc.mallopt(_M_MMAP_THRESHOLD, int(process_mmap_threshold))
        libc.mallopt(_M_TRIM_THRESHOLD, _DEFAULT_TRIM_THRESHOLD_BYTES)
