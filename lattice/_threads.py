"""How many threads the kernels use: resolved once per call, in Python.

The default is OpenMP's own (``OMP_NUM_THREADS`` if set, else the number of cores,
and whatever limit threadpoolctl has put on the OpenMP runtime);
:func:`set_num_threads` and the :func:`num_threads` context manager override it.

The count is capped at :func:`max_threads` (four per CPU, at least 16): more never
makes the kernels faster, and the OpenMP runtime aborts the whole process when the
system refuses to create a thread. Before a kernel first runs on a team larger than
any before, the team is therefore tried with Python threads (:func:`check_team`),
so that a request the system cannot meet is a ``RuntimeError``, never a dead
process.

A process forked from one that has run OpenMP code (a DataLoader worker, a
multiprocessing pool with the fork start method) must not start an OpenMP team:
GNU libgomp's thread pool does not survive fork and the child would hang. In such a
child the kernels therefore always run on one thread.
"""

from __future__ import annotations

import contextlib
import numbers
import os
import threading

from . import _core

__all__ = [
    "check_team",
    "get_num_threads",
    "max_threads",
    "num_threads",
    "openmp_enabled",
    "set_num_threads",
]

_num_threads = None
_forked_child = False
# the largest team the system has been seen to start (check_team); guarded by a lock
# because engine calls may come from several Python threads at once
_largest_checked = 1
_check_lock = threading.Lock()


def _after_fork_in_child():
    global _forked_child
    _forked_child = True


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


def openmp_enabled() -> bool:
    """Whether the kernels were compiled with OpenMP.

    Without OpenMP the kernels run serially; results are identical.

    Examples
    --------
    >>> import lattice
    >>> isinstance(lattice.openmp_enabled(), bool)
    True
    """
    return _core.openmp_enabled()


def max_threads() -> int:
    """The most threads the kernels may use: four per CPU available to this
    process, and at least 16.

    :func:`set_num_threads` refuses more; a larger ``OMP_NUM_THREADS`` is capped.

    Examples
    --------
    >>> import lattice
    >>> lattice.max_threads() >= 16
    True
    """
    try:
        cpus = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        cpus = os.cpu_count() or 1
    return max(16, 4 * cpus)


def get_num_threads() -> int:
    """Number of threads the kernels use (1 without OpenMP and in forked children).

    Examples
    --------
    >>> import lattice
    >>> lattice.get_num_threads() >= 1
    True
    """
    if not _core.openmp_enabled() or _forked_child:
        return 1
    if _num_threads is not None:
        return _num_threads
    n = _core.omp_max_threads()
    return max(1, n if n <= 16 else min(n, max_threads()))  # max_threads() >= 16


def set_num_threads(n) -> None:
    """Set the number of threads the kernels use; ``None`` restores the default.

    The default follows ``OMP_NUM_THREADS`` (else the number of cores), capped at
    :func:`max_threads`. Examples of a batch are spread over the threads; each example
    runs on one thread, so results do not depend on ``n``.

    Parameters
    ----------
    n : int or None
        A positive thread count, at most :func:`max_threads`.

    Raises
    ------
    TypeError
        If ``n`` is not an int (or None).
    ValueError
        If ``n`` is below 1 or above :func:`max_threads`.

    Examples
    --------
    >>> import lattice
    >>> lattice.set_num_threads(1)
    >>> lattice.get_num_threads()
    1
    >>> lattice.set_num_threads(None)
    """
    global _num_threads
    if n is None:
        _num_threads = None
        return
    if not isinstance(n, numbers.Integral) or isinstance(n, bool):
        raise TypeError(f"n must be a positive int or None, got {n!r}")
    if n < 1:
        raise ValueError(f"n must be a positive int, got {n}")
    if n > max_threads():
        raise ValueError(
            f"n must be at most lattice.max_threads() = {max_threads()} (four threads "
            f"per CPU, at least 16; more never runs faster), got {n}"
        )
    _num_threads = int(n)


@contextlib.contextmanager
def num_threads(n):
    """Use ``n`` threads inside a ``with`` block, then restore the previous setting.

    The setting is process-wide: do not change it from several Python threads at
    once.

    Parameters
    ----------
    n : int or None
        As in :func:`set_num_threads`.

    Examples
    --------
    >>> import lattice
    >>> with lattice.num_threads(1):
    ...     lattice.get_num_threads()
    1
    """
    previous = _num_threads
    set_num_threads(n)
    try:
        yield
    finally:
        set_num_threads(previous)


def _stack_size():
    """The thread stack size the OpenMP runtime will use: ``OMP_STACKSIZE`` (or
    ``GOMP_STACKSIZE``) in bytes if set and readable, else 0 (the system default,
    which is also what Python threads get)."""
    units = {"B": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30}
    for name in ("OMP_STACKSIZE", "GOMP_STACKSIZE"):
        text = os.environ.get(name, "").strip().upper()
        if not text:
            continue
        unit = units.get(text[-1], None)
        number = text[:-1] if unit else text
        try:
            size = int(number.strip()) * (unit or units["K"])  # the default unit is K
        except ValueError:
            return 0
        return size if size >= 32768 else 0  # below threading.stack_size's minimum
    return 0


def check_team(n) -> int:
    """Make sure the system can start a team of ``n`` threads; return ``n``.

    The OpenMP runtime ends the process ("Thread creation failed") when it cannot
    create a thread. So before the kernels first run on more threads than ever
    before, ``n - 1`` Python threads with the runtime's stack size are started, held
    together and joined; if the system refuses one, this raises instead. Counts the
    system has already met are not tried again.

    Parameters
    ----------
    n : int
        The team size a kernel is about to use.

    Returns
    -------
    int
        ``n``.

    Raises
    ------
    RuntimeError
        If the system cannot start ``n`` threads (a memory or process limit): lower
        :func:`set_num_threads` or ``OMP_NUM_THREADS``.

    Examples
    --------
    >>> from lattice._threads import check_team
    >>> check_team(2)
    2
    """
    global _largest_checked
    if n <= _largest_checked:
        return n
    with _check_lock:
        if n <= _largest_checked:
            return n
        gate = threading.Event()
        started = []
        stack = _stack_size()
        previous = threading.stack_size(stack) if stack else None
        try:
            for _ in range(n - 1):
                thread = threading.Thread(target=gate.wait, daemon=True)
                thread.start()
                started.append(thread)
        except RuntimeError as exc:
            raise RuntimeError(
                f"the system cannot start {n} threads for lattice's kernels (it "
                f"refused thread {len(started) + 2}: {exc}); use fewer with "
                "lattice.set_num_threads(...) or OMP_NUM_THREADS"
            ) from exc
        finally:
            gate.set()
            for thread in started:
                thread.join()
            if previous is not None:
                threading.stack_size(previous)
        _largest_checked = n
    return n
