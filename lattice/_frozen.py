"""Arrays that no Python code can make writeable again.

The kernels index memory with the arrays of a :class:`~lattice.Graph` and a
:class:`~lattice.GraphBatch` (labels, arc ends, CSR and band indexes) and trust what
was validated when they were built: a label below the cached ``max_label``, an arc
end inside its graph. Clearing ``flags.writeable`` is not enough to keep that
promise, because numpy lets anyone set the flag back on an array that owns its
memory (or on its ``base``). :func:`freeze` therefore copies the values into an
immutable ``bytes`` object and returns a view of it: numpy refuses to make such a
view, or any view of it, writeable, so a validated array stays valid and no Python
action can make a kernel read out of bounds.
"""

from __future__ import annotations

import numpy as np

__all__ = ["freeze", "is_frozen"]


def is_frozen(array) -> bool:
    """Whether ``array`` is a view of immutable bytes (as :func:`freeze` returns).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice._frozen import freeze, is_frozen
    >>> is_frozen(freeze(np.arange(3))), is_frozen(np.arange(3))
    (True, False)
    """
    base = array
    while isinstance(base, np.ndarray):
        if base.flags.writeable:
            return False
        base = base.base
    return isinstance(base, bytes)


def freeze(array, dtype=None) -> np.ndarray:
    """A C-contiguous copy of ``array`` (in ``dtype``) that can never be written.

    An array that is already frozen, C-contiguous and of that dtype is returned as
    it is (no copy).

    Parameters
    ----------
    array : array_like
    dtype : numpy dtype, optional
        The dtype of the result (default: the array's own).

    Returns
    -------
    ndarray
        Read-only; setting ``flags.writeable = True`` on it, or on its base, raises
        ``ValueError``.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice._frozen import freeze
    >>> a = freeze([1, 2, 3], np.int32)
    >>> a.tolist(), a.flags.writeable
    ([1, 2, 3], False)
    >>> a.flags.writeable = True
    Traceback (most recent call last):
    ...
    ValueError: cannot set WRITEABLE flag to True of this array
    """
    arr = np.asarray(array, dtype=dtype)
    if arr.flags.c_contiguous and is_frozen(arr):
        return arr
    arr = np.ascontiguousarray(arr)
    return np.frombuffer(arr.tobytes(), dtype=arr.dtype).reshape(arr.shape)
