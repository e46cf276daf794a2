"""How many threads the kernels use: resolved once per call, in Python.

The default is OpenMP's own (``OMP_NUM_THREADS`` if set, else the number of cores);
:func:`set_num_threads` overrides it for the whole process.
"""

from __future__ import annotations

import numbers

from . import _core

__all__ = ["get_num_threads", "set_num_threads", "openmp_enabled"]

_num_threads = None


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
    """Number of threads the kernels use (1 without OpenMP).

    Examples
    --------
    >>> import lattice
    >>> lattice.get_num_threads() >= 1
    True
    """
    if not _core.openmp_enabled():
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
