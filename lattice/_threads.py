"""How many threads the kernels use: resolved once per call, in Python.

The default is OpenMP's own (``OMP_NUM_THREADS`` if set, else the number of cores,
and whatever limit threadpoolctl has put on the OpenMP runtime);
:func:`set_num_threads` and the :func:`num_threads` context manager override it.

A process forked from one that has run OpenMP code (a DataLoader worker, a
multiprocessing pool with the fork start method) must not start an OpenMP team:
GNU libgomp's thread pool does not survive fork and the child would hang. In such a
child the kernels therefore always run on one thread.
"""

from __future__ import annotations

import contextlib
import numbers
import os

from . import _core

__all__ = ["get_num_threads", "set_num_threads", "num_threads", "openmp_enabled"]

_num_threads = None
_forked_child = False


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
    return max(1, _core.omp_max_threads())


def set_num_threads(n) -> None:
    """Set the number of threads the kernels use; ``None`` restores the default.

    The default follows ``OMP_NUM_THREADS`` (else the number of cores). Examples of a
    batch are spread over the threads; each example runs on one thread, so results do
    not depend on ``n``.

    Parameters
    ----------
    n : int or None
        A positive thread count.

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
