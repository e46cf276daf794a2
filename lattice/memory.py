"""How much memory the stored tables may take, and the checkpoint option.

:func:`forward_backward` stores one alpha row per frame and :func:`viterbi` one
backpointer row per frame (per thread, not per example): for an hour of audio
aligned to a long transcript that is gigabytes. Above the **memory budget** (1 GiB
by default, all threads together; :func:`set_memory_budget`, the
:func:`memory_budget` context manager, or the ``LATTICE_MEMORY_BUDGET`` environment
variable, in bytes, read when lattice is imported) they switch to **checkpointing**:
an alpha row is kept every ``k`` frames and the rows between are recomputed, block
by block, when the backward pass or the traceback needs them. The results are the
same bits; the cost is a second forward pass over the recomputed blocks (about 1.3x
the time of forward-backward; for banded Viterbi, whose traceback recomputes only
the cells that can reach the path, almost nothing).

The ``checkpoint`` argument of :func:`~lattice.forward_backward`,
:func:`~lattice.viterbi` and the ``lattice.torch`` ops says what to do:

* ``None`` (default): the full table if it fits the budget, else checkpoints with
  the interval :func:`checkpoint_interval` chooses;
* ``True``: checkpoints with that interval, whatever the budget;
* an int ``k >= 1``: a checkpoint every ``k`` frames (``k >= T``: the full table);
* ``False``: the full table, whatever the budget.

This module checks the argument and chooses the interval; the backends size their
tables with it.
"""

from __future__ import annotations

import contextlib
import math
import numbers
import os
import threading

import numpy as np

__all__ = [
    "DEFAULT_MEMORY_BUDGET",
    "check_checkpoint",
    "checkpoint_interval",
    "get_memory_budget",
    "memory_budget",
    "resolve_checkpoint",
    "set_memory_budget",
]

DEFAULT_MEMORY_BUDGET = 512 << 20  # bytes: 512 MiB

_lock = threading.Lock()


def _check_budget(nbytes, where="nbytes"):
    if not isinstance(nbytes, numbers.Integral) or isinstance(nbytes, bool):
        raise TypeError(f"{where} must be an int number of bytes, got {nbytes!r}")
    if nbytes < 0:
        raise ValueError(f"{where} must be >= 0 bytes, got {nbytes}")
    return int(nbytes)


def _budget_from_environment():
    value = os.environ.get("LATTICE_MEMORY_BUDGET")
    if value is None or not value.strip():
        return DEFAULT_MEMORY_BUDGET
    try:
        return _check_budget(int(value.strip()), "LATTICE_MEMORY_BUDGET")
    except ValueError as exc:
        raise ValueError(
            f"LATTICE_MEMORY_BUDGET must be a number of bytes (an int >= 0), got "
            f"{value!r}"
        ) from exc


_budget = _budget_from_environment()


def get_memory_budget() -> int:
    """The bytes the stored tables of one engine call may take before it checkpoints.

    Examples
    --------
    >>> import lattice
    >>> lattice.get_memory_budget() > 0
    True
    """
    return _budget


def set_memory_budget(nbytes) -> None:
    """Set the memory budget of the stored tables (bytes, all threads together).

    Parameters
    ----------
    nbytes : int >= 0
        0 checkpoints every call whose full table takes any memory at all.

    Raises
    ------
    TypeError, ValueError
        For anything but an int >= 0.

    Examples
    --------
    >>> import lattice
    >>> before = lattice.get_memory_budget()
    >>> lattice.set_memory_budget(256 * 2**20)
    >>> lattice.get_memory_budget()
    268435456
    >>> lattice.set_memory_budget(before)
    """
    global _budget
    nbytes = _check_budget(nbytes)
    with _lock:
        _budget = nbytes


@contextlib.contextmanager
def memory_budget(nbytes):
    """Use another memory budget inside a ``with`` block (process-wide), then restore it.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> e, g = np.zeros((1, 50, 3)), lattice.build("ctc", [1, 2])
    >>> with lattice.memory_budget(0):          # checkpoints, same result
    ...     fb = lattice.forward_backward(e, g)
    >>> bool((fb.emission_grad == lattice.forward_backward(e, g).emission_grad).all())
    True
    """
    global _budget
    nbytes = _check_budget(nbytes)
    with _lock:
        previous = _budget
        _budget = nbytes
    try:
        yield nbytes
    finally:
        with _lock:
            _budget = previous


def check_checkpoint(checkpoint):
    """``checkpoint`` checked: None, True, False or an int >= 1 (returned as int).

    Examples
    --------
    >>> from lattice.memory import check_checkpoint
    >>> check_checkpoint(True), check_checkpoint(16), check_checkpoint(None)
    (True, 16, None)
    """
    if checkpoint is None or isinstance(checkpoint, bool):
        return checkpoint
    if isinstance(checkpoint, np.bool_):
        return bool(checkpoint)
    if not isinstance(checkpoint, numbers.Integral):
        raise TypeError(
            "checkpoint must be None (by the memory budget), True, False or an int "
            f"number of frames >= 1, got {checkpoint!r}"
        )
    if checkpoint < 1:
        raise ValueError(
            f"checkpoint must be >= 1 frames between checkpoints, got {checkpoint}"
        )
    return int(min(checkpoint, 2**31 - 1))


def checkpoint_interval(frames, row_bytes=1.0, block_row_bytes=1.0):
    """The interval ``k`` that :func:`resolve_checkpoint` chooses for ``frames``.

    The stored rows are ``ceil(T / k)`` checkpoints of ``row_bytes`` and a block of
    about ``k`` rows of ``block_row_bytes`` (alpha rows for forward-backward,
    backpointer rows for Viterbi); ``k = sqrt(T * row_bytes / block_row_bytes)``
    minimises their sum. The time does not depend on ``k``: every block but the last
    is recomputed once.

    Examples
    --------
    >>> from lattice.memory import checkpoint_interval
    >>> checkpoint_interval(100_000)
    317
    >>> checkpoint_interval(180_000, row_bytes=4, block_row_bytes=1)   # Viterbi, float32
    849
    """
    frames = max(int(frames), 1)
    return max(1, math.ceil(math.sqrt(frames * row_bytes / block_row_bytes)))


def resolve_checkpoint(checkpoint, frames, full_bytes, row_bytes=1.0,
                       block_row_bytes=1.0):
    """The interval a kernel gets: ``frames`` (at least 1) for the full table, else k.

    Parameters
    ----------
    checkpoint : None, bool or int
        As checked by :func:`check_checkpoint`.
    frames : int
        The longest example's length.
    full_bytes : int
        What the full tables of the call would take (all threads).
    row_bytes, block_row_bytes : float
        As :func:`checkpoint_interval` takes them.

    Examples
    --------
    >>> from lattice.memory import resolve_checkpoint
    >>> resolve_checkpoint(None, 1000, full_bytes=10)      # fits the budget: full
    1000
    >>> resolve_checkpoint(True, 1000, full_bytes=10)
    32
    >>> resolve_checkpoint(None, 1000, full_bytes=2**40)   # does not fit
    32
    """
    frames = max(int(frames), 1)
    if checkpoint is False:
        return frames
    if checkpoint is None:
        if full_bytes <= get_memory_budget():
            return frames
        checkpoint = True
    if checkpoint is True:
        return min(frames, checkpoint_interval(frames, row_bytes, block_row_bytes))
    return min(frames, int(checkpoint))
