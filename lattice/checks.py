"""Validation of the ids, counts and weights that enter lattice, written once.

Ids (labels, tokens, arc ends, target symbols, ``blank``-like options) enter through
:class:`~lattice.Graph`, :class:`~lattice.GraphBuilder`, :mod:`lattice.compose`,
:meth:`~lattice.GraphBatch.from_padded` and the builders of ``plugins/``; all of them
check with the functions here, so one rule holds everywhere:

* an integer is a Python ``int`` or a value of a numpy integer dtype, kind ``"i"``
  or ``"u"``. ``bool`` is not one, and neither are ``timedelta64`` (kind ``"m"``,
  which numpy counts among its integers) and ``datetime64`` (kind ``"M"``);
* a value is judged, and reported, as it is: a ``uint64`` of ``2**64 - 1`` is beyond
  int32, not ``-1`` (which is what casting it to int64 first would make of it);
* the kernels index states, arcs and labels with int32, so no id exceeds
  :data:`INT32_MAX`, and no graph has more than :data:`SIZE_LIMIT` states or arcs:
  builders and combinators compute the size of what they are about to build, in
  Python ints, and call :func:`check_size` before allocating anything.

Log-weights (real numbers: kinds ``"i"``, ``"u"``, ``"f"``) are checked here too.
"""

from __future__ import annotations

import math
import numbers

import numpy as np

from . import _layout
from ._frozen import freeze

__all__ = [
    "INT32_MAX",
    "SIZE_LIMIT",
    "beyond_size",
    "check_integer_dtype",
    "check_length",
    "check_range",
    "check_size",
    "first_outside",
    "index_array",
    "int_value",
    "is_int",
    "is_real",
    "lengths",
    "log_weight",
    "log_weights",
    "real_value",
    "symbol_size",
    "target_ids",
    "weight_array",
]

INT32_MAX = _layout.INT32_MAX
"""The largest id: the kernels index labels, states and arcs with int32."""

SIZE_LIMIT = INT32_MAX
"""The most states, and the most arcs, one graph may have (the kernels index them
with int32). Read when a check runs, so tests can lower it."""


def is_int(value) -> bool:
    """Whether ``value`` is an integer scalar (not bool, timedelta64 or datetime64).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import is_int
    >>> is_int(3), is_int(np.uint64(2**64 - 1)), is_int(True), is_int(np.timedelta64(3))
    (True, True, False, False)
    """
    if isinstance(value, np.generic):
        return value.dtype.kind in "iu"
    return isinstance(value, numbers.Integral) and not isinstance(value, bool)


def is_real(value) -> bool:
    """Whether ``value`` is a real scalar: an integer (see :func:`is_int`) or a float.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import is_real
    >>> is_real(-0.5), is_real(np.float32(1)), is_real(False)
    (True, True, False)
    >>> is_real(np.timedelta64(1))
    False
    """
    if isinstance(value, np.generic):
        return value.dtype.kind in "iuf"
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def int_value(name, value, minimum=None, *, int32=True) -> int:
    """``value`` as a Python int, checked: an integer, ``>= minimum``, within int32.

    Parameters
    ----------
    name : str
        The argument's name, for messages.
    value : int
    minimum : int, optional
    int32 : bool, default True
        Refuse values beyond :data:`INT32_MAX` (for ids; counts are bounded by the
        size of the graph they make instead).

    Raises
    ------
    TypeError
        If ``value`` is not an integer (see :func:`is_int`).
    ValueError
        If it is below ``minimum`` or beyond int32.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import int_value
    >>> int_value("blank", np.uint8(3), 0)
    3
    >>> int_value("blank", np.uint64(2**64 - 1), 0)
    Traceback (most recent call last):
    ...
    ValueError: blank is 18446744073709551615, beyond int32 (at most 2147483647)
    """
    if not is_int(value):
        raise TypeError(f"{name} must be an int, got {value!r}")
    value = int(value)  # exact, whatever the dtype
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    if int32 and value > INT32_MAX:
        raise ValueError(f"{name} is {value}, beyond int32 (at most {INT32_MAX})")
    return value


def log_weight(name, value) -> float:
    """``value`` as a float log-weight: a real number, not NaN, not ``+inf``.

    Examples
    --------
    >>> from lattice.checks import log_weight
    >>> log_weight("stay", -1)
    -1.0
    >>> log_weight("stay", float("inf"))
    Traceback (most recent call last):
    ...
    ValueError: stay is +inf (log-weights may be -inf, never +inf)
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a real number (a log-weight), got {value!r}")
    value = float(value)
    if math.isnan(value):
        raise ValueError(f"{name} is NaN")
    if value == math.inf:
        raise ValueError(f"{name} is +inf (log-weights may be -inf, never +inf)")
    return value


def check_integer_dtype(name, arr, what="integers"):
    """Raise ``TypeError`` unless ``arr`` has an integer dtype (kind ``"i"``/``"u"``).

    An object array of Python ints is no integer array either, but when its ints are
    beyond int32 (numpy makes object arrays of ints beyond 64 bits) the range is what
    is wrong: ``ValueError`` reports the first such value.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import check_integer_dtype
    >>> check_integer_dtype("labels", np.arange(3, dtype=np.uint16))
    >>> check_integer_dtype("labels", np.arange(3).astype("m8[s]"))
    Traceback (most recent call last):
    ...
    TypeError: labels must hold integers, got dtype timedelta64[s]
    """
    if arr.dtype.kind in "iu":
        return
    if arr.dtype.kind == "O" and arr.size and all(is_int(v) for v in arr.flat):
        check_range(name, arr, -INT32_MAX)
    raise TypeError(f"{name} must hold {what}, got dtype {arr.dtype}")


def first_outside(arr, minimum, maximum=INT32_MAX):
    """``(position, value)`` of the first element outside ``[minimum, maximum]``, or
    ``None``; the position is flat (C order) and the value a Python int, exact for
    every integer dtype.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import first_outside
    >>> first_outside(np.array([3, 2**64 - 1, 2**63], dtype=np.uint64), 0)
    (1, 18446744073709551615)
    >>> first_outside(np.array([3, 4]), 0) is None
    True
    """
    if not arr.size or (minimum <= int(arr.min()) and int(arr.max()) <= maximum):
        return None
    # comparisons of numpy integers with Python ints are exact (no cast of the array)
    pos = int(np.flatnonzero((arr < minimum) | (arr > maximum))[0])
    return pos, int(arr.reshape(-1)[pos])


def check_range(name, arr, minimum, maximum=INT32_MAX, what="value"):
    """Raise ``ValueError`` naming the first element of ``arr`` outside
    ``[minimum, maximum]``, by its position and true value.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import check_range
    >>> labels = np.array([0, 2**64 - 1], dtype=np.uint64)
    >>> check_range("labels", labels, 0, what="label")
    Traceback (most recent call last):
    ...
    ValueError: labels holds the label 18446744073709551615 at position 1, beyond ...
    """
    bad = first_outside(arr, minimum, maximum)
    if bad is None:
        return
    pos, value = bad
    if value < minimum:
        if minimum == 0:
            raise ValueError(f"{name} holds a negative {what} {value} at position "
                             f"{pos}")
        raise ValueError(f"{name} holds the {what} {value} at position {pos}, below "
                         f"{minimum}")
    limit = "beyond int32" if maximum == INT32_MAX else "above the maximum"
    raise ValueError(f"{name} holds the {what} {value} at position {pos}, {limit} "
                     f"(at most {maximum})")


def index_array(name, values, length=None, minimum=-INT32_MAX, what="value"):
    """A 1-D array of ids as a frozen int32 copy, checked.

    Parameters
    ----------
    name : str
    values : array_like of int
        An empty sequence is accepted whatever numpy makes of it (``[]`` is float).
    length : int, optional
        The length it must have.
    minimum : int, default -INT32_MAX
        The smallest value allowed (the largest is :data:`INT32_MAX`).
    what : str, default "value"
        What one value is, for messages (``"label"``).

    Returns
    -------
    ndarray of int32, read-only

    Raises
    ------
    TypeError
        If the values are not integers (see :func:`check_integer_dtype`).
    ValueError
        For a shape other than ``(length,)``, more elements than a graph may have
        states or arcs (:data:`SIZE_LIMIT`, refused before the copy) or a value out
        of range.

    Examples
    --------
    >>> from lattice.checks import index_array
    >>> index_array("src", [0, 2, 1]).tolist()
    [0, 2, 1]
    >>> index_array("labels", [1, -1], minimum=0, what="label")
    Traceback (most recent call last):
    ...
    ValueError: labels holds a negative label -1 at position 1
    """
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    check_length(name, arr.shape[0])  # one value per state or arc
    if arr.size or arr.dtype.kind not in "iuf":
        check_integer_dtype(name, arr)
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {arr.shape[0]}")
    check_range(name, arr, minimum, what=what)
    return freeze(arr, np.int32)


def weight_array(name, values, length):
    """A 1-D array of log-weights (a scalar is broadcast) as a frozen float64 copy,
    checked: real numbers (kinds ``"i"``, ``"u"``, ``"f"``), no NaN, no ``+inf``.

    Examples
    --------
    >>> from lattice.checks import weight_array
    >>> weight_array("start", 0.0, 3).tolist()
    [0.0, 0.0, 0.0]
    >>> weight_array("start", [0.0, float("inf")], 2)
    Traceback (most recent call last):
    ...
    ValueError: start contains +inf (log-weights may be -inf, never +inf)
    """
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(length, arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {arr.shape[0]}")
    out = freeze(arr, np.float64)
    if np.isnan(out).any():
        raise ValueError(f"{name} contains NaN")
    if np.isposinf(out).any():
        raise ValueError(f"{name} contains +inf (log-weights may be -inf, never +inf)")
    return out


def target_ids(target, name="target"):
    """A target (symbol ids in ``[0, INT32_MAX]``) as a 1-D int64 array, checked.

    Parameters
    ----------
    target : sequence of int
    name : str, default "target"
        For messages (``"targets[3]"`` for one of a batch).

    Returns
    -------
    ndarray of int64
        ``target`` itself when it already is a 1-D int64 array.

    Raises
    ------
    TypeError
        If the ids are not integers (see :func:`check_integer_dtype`).
    ValueError
        For a shape other than 1-D, or an id that is negative or beyond int32.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import target_ids
    >>> target_ids(np.array([3, 1], dtype=np.uint8)).tolist()
    [3, 1]
    >>> target_ids(np.array([1, 2**64 - 1], dtype=np.uint64))
    Traceback (most recent call last):
    ...
    ValueError: target holds the symbol id 18446744073709551615 at position 1, beyond ...
    """
    arr = np.asarray(target)
    if arr.ndim != 1:
        raise ValueError(
            f"{name} must be a 1-D sequence of symbol ids, got shape {arr.shape}"
        )
    if arr.size == 0:
        return np.zeros(0, dtype=np.int64)
    check_integer_dtype(name, arr, what="integer symbol ids")
    check_range(name, arr, 0, what="symbol id")
    return arr.astype(np.int64, copy=False)


def beyond_size(count) -> bool:
    """Whether ``count`` states or arcs are more than one graph may have.

    Examples
    --------
    >>> from lattice.checks import beyond_size
    >>> beyond_size(2**31 - 1), beyond_size(2**31)
    (False, True)
    """
    return count > SIZE_LIMIT


def check_length(name, length):
    """Refuse an array of one value per state or arc longer than :data:`SIZE_LIMIT`
    (before it is copied or read).

    Examples
    --------
    >>> from lattice.checks import check_length
    >>> check_length("labels", 2**31)
    Traceback (most recent call last):
    ...
    ValueError: labels has 2147483648 values; the kernels index states and arcs ...
    """
    if beyond_size(length):
        raise ValueError(f"{name} has {length} values; the kernels index states and "
                         f"arcs with int32, so a graph has at most {SIZE_LIMIT}")


def check_size(what, states, arcs):
    """Refuse a graph of more than :data:`SIZE_LIMIT` states or arcs.

    Call it with counts computed in Python ints *before* allocating the graph: the
    point is to fail at once instead of after tens of GB.

    Parameters
    ----------
    what : str
        What would make the graph, naming the options (``"min_frames=... for 2
        symbols"``).
    states, arcs : int

    Raises
    ------
    ValueError
        Naming ``what``, the count and the limit.

    Examples
    --------
    >>> from lattice.checks import check_size
    >>> check_size("repeat(max_count=3)", 3, 5)
    >>> check_size("repeat(max_count=2147483648)", 2**31, 2**32 - 1)
    Traceback (most recent call last):
    ...
    ValueError: repeat(max_count=2147483648) would make a graph of 2147483648 states; ...
    """
    for count, kind in ((states, "states"), (arcs, "arcs")):
        if count > SIZE_LIMIT:
            raise ValueError(
                f"{what} would make a graph of {count} {kind}; the kernels index "
                f"states and arcs with int32, so a graph has at most {SIZE_LIMIT}"
            )


def symbol_size(states=1, min_frames=1, max_frames=None, copies=1):
    """``(num_states, num_arcs)`` of ``copies`` units ``compose.symbol(label, states,
    min_frames=..., max_frames=...)`` in a row, as ``compose.chain`` of a target of
    ``copies`` symbols makes them, computed without building them.

    Each unit has one state per (HMM state ``j``, frames so far ``c``) that matters
    (see ``compose.symbol``): without ``max_frames``, ``c`` runs over
    ``min(j + 1, m) .. m``, every state has a stay arc and all but those of the last
    HMM state an advance arc, and only ``(k - 1, m)`` is an exit; with ``max_frames =
    M``, ``c`` runs over ``j + 1 .. M - k + 1 + j``, the last ``c`` of each ``j`` has
    no stay arc, and the states of ``k - 1`` with ``c >= m`` are exits. A unit has one
    entry, so consecutive copies are joined by one arc per exit.

    Examples
    --------
    >>> from lattice.checks import symbol_size
    >>> from lattice import compose as C
    >>> u = C.symbol(1, 3, min_frames=5)
    >>> symbol_size(3, 5), (u.num_states, u.num_arcs)
    ((12, 21), (12, 21))
    >>> symbol_size(1, 2**31, copies=2)   # segmentation, min_frames=2**31, 2 symbols
    (4294967296, 4294967297)
    """
    k, m, top = states, min_frames, max_frames
    if top is None:
        r = min(k, m)  # HMM states j < r count frames min(j + 1, m) .. m
        num_states = r * m - r * (r - 1) // 2 + (k - r)
        num_arcs = 2 * num_states - (m - r + 1)  # no advance out of the last state
        exits = 1
    else:
        num_states = k * (top - k + 1)
        num_arcs = k * (top - k) + (k - 1) * (top - k + 1)
        exits = top - max(m, k) + 1
    return copies * num_states, copies * num_arcs + max(copies - 1, 0) * exits


def real_value(name, value, minimum=None) -> float:
    """``value`` as a finite float, checked: a real number (see :func:`is_real`),
    ``>= minimum``.

    Examples
    --------
    >>> from lattice.checks import real_value
    >>> real_value("length_norm", 1)
    1.0
    >>> real_value("length_norm", float("nan"))
    Traceback (most recent call last):
    ...
    ValueError: length_norm must be finite, got nan
    """
    if not is_real(value):
        raise TypeError(f"{name} must be a real number, got {value!r}")
    value = float(value)
    if not math.isfinite(value):
        raise ValueError(f"{name} must be finite, got {value}")
    if minimum is not None and value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return value


def lengths(name, values, size, frames, what="the number of frames") -> np.ndarray:
    """Per-example counts (frames, or target symbols) as int64, checked: shape
    ``(size,)`` (a scalar is one example), integers (see :func:`is_int`), within
    ``[0, frames]`` (``what`` says where that bound comes from), or only
    non-negative if ``frames`` is None. ``None`` values mean every example has all
    ``frames``.

    Examples
    --------
    >>> from lattice.checks import lengths
    >>> lengths("lengths", [3, 5], 2, 5).tolist()
    [3, 5]
    >>> lengths("lengths", [3, 6], 2, 5)
    Traceback (most recent call last):
    ...
    ValueError: lengths must lie in [0, 5] (the number of frames), got values in [3, 6]
    >>> lengths("target_lengths", [-1], 1, None)
    Traceback (most recent call last):
    ...
    ValueError: target_lengths must be non-negative, got values in [-1, -1]
    """
    if values is None:
        return np.full(size, frames, dtype=np.int64)
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if arr.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},), got {arr.shape}")
    if arr.size:
        low, high = int(arr.min()), int(arr.max())  # exact for uint64 too
        if frames is None and low < 0:
            raise ValueError(f"{name} must be non-negative, got values in [{low}, {high}]")
        if frames is not None and (low < 0 or high > frames):
            raise ValueError(
                f"{name} must lie in [0, {frames}] ({what}), got values in [{low}, {high}]"
            )
    return arr.astype(np.int64, copy=False)


def log_weights(name, values, shape, dtype) -> np.ndarray:
    """An array of log-weights in ``dtype``, C-contiguous, checked: real numbers (no
    bool, no timedelta64), of ``shape``, no NaN, no ``+inf`` (``-inf`` forbids).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.checks import log_weights
    >>> log_weights("arc_weights", [[0, -np.inf]], (1, 2), np.float32).dtype
    dtype('float32')
    >>> log_weights("arc_weights", [[0, np.inf]], (1, 2), np.float64)
    Traceback (most recent call last):
    ...
    ValueError: arc_weights contains +inf (log-weights may be -inf, never +inf)
    """
    arr = np.asarray(values)
    if arr.dtype.kind not in "iuf":
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if np.isposinf(arr).any():
        raise ValueError(f"{name} contains +inf (log-weights may be -inf, never +inf)")
    return arr
