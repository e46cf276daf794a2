"""From user inputs to a validated :class:`~lattice.backends.Problem`, and back.

Every front-end function of the engine (:mod:`lattice.engine`, and the alignment
distribution of :mod:`lattice.distribution`) takes the same inputs: emissions, one
graph per example, lengths and optional weight overrides. :func:`make_problem`
checks them once and picks the backend that owns the emissions' array type;
:func:`raise_if_nan` refuses NaN or ``+inf`` scores, saying where they came from.
"""

from __future__ import annotations

import numpy as np

from .backends import GPU_INSTALL_HINT, Problem, backend_for, get_backend
from .batch import batch
from .checks import INT32_MAX
from .checks import lengths as check_lengths
from .checks import log_weights as check_log_weights
from .graph import Graph

__all__ = ["emissions_backend", "make_problem", "raise_if_nan", "to_host"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# array types lattice knows but whose backend is elsewhere
_ELSEWHERE = {"torch": "use lattice.torch for tensors"}


def emissions_backend(emissions):
    """The backend that computes on ``emissions`` and the emissions as it reads
    them: float32/float64 (B, T, C), T and C int32-indexable, unit stride over
    classes (copied only if the class axis is strided).

    Parameters
    ----------
    emissions : array_like, shape (B, T, C)
        A numpy array (or anything ``numpy.asarray`` takes), or an array of a
        registered backend's type.

    Returns
    -------
    (Backend, array)

    Raises
    ------
    TypeError
        For a torch tensor, a GPU array without a backend, or a dtype other than
        float32 / float64.
    ValueError
        For a shape other than (B, T, C), or more than ``2**31 - 1`` frames or
        classes.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.problem import emissions_backend
    >>> backend, e = emissions_backend(np.zeros((2, 5, 3))[:, :, ::-1])
    >>> backend.name, e.strides[2]
    ('cpu', 8)
    """
    backend = backend_for(emissions)
    if backend is None:
        package = type(emissions).__module__.partition(".")[0]
        if package in _ELSEWHERE:
            raise TypeError(
                f"emissions must be a numpy array here; {_ELSEWHERE[package]}"
            )
        if hasattr(emissions, "__cuda_array_interface__"):
            raise TypeError(
                f"emissions is a {type(emissions).__name__} on a GPU; lattice's GPU "
                "backend computes on CuPy arrays (cupy.asarray(emissions) views it "
                f"without a copy): {GPU_INSTALL_HINT}"
            )
        emissions = np.asarray(emissions)
        backend = get_backend("cpu")
    xp = backend.xp
    if emissions.dtype not in _FLOAT_DTYPES:
        raise TypeError(
            f"emissions must be float32 or float64, got dtype {emissions.dtype}"
        )
    if emissions.ndim != 3:
        raise ValueError(
            f"emissions must have shape (batch, frames, classes), got {emissions.shape}"
        )
    # checked before any copy: a zero-stride view of 2**32 frames costs no memory,
    # and a frame count beyond int32 would wrap in the kernels (a silent wrong score)
    for axis, what in ((1, "frames"), (2, "classes")):
        if emissions.shape[axis] > INT32_MAX:
            raise ValueError(
                f"emissions has {emissions.shape[axis]} {what} (axis {axis} of shape "
                f"{emissions.shape}); the kernels index {what} with int32, so at most "
                f"{INT32_MAX}"
            )
    # the kernels need a unit stride over classes (a single class has none to speak
    # of: a zero-stride broadcast of one class is read as it is, not copied)
    if emissions.shape[2] == 0 or (
        emissions.shape[2] > 1 and emissions.strides[2] != emissions.itemsize
    ):
        emissions = xp.ascontiguousarray(emissions)
    return backend, emissions


def make_problem(emissions, graphs, lengths, arc_weights, start_weights, final_weights):
    """The backend for these emissions and the validated :class:`Problem`.

    Parameters
    ----------
    emissions, graphs, lengths, arc_weights, start_weights, final_weights
        As in :func:`lattice.forward` (the overrides may be None).

    Returns
    -------
    (Backend, Problem)

    Raises
    ------
    TypeError, ValueError
        Naming the argument at fault.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> from lattice.problem import make_problem
    >>> backend, p = make_problem(np.zeros((1, 4, 3)), lattice.build("ctc", [1, 2]),
    ...                           [3], None, None, None)
    >>> p.lengths.tolist(), p.batch.max_states, p.weight.dtype.name
    ([3], 5, 'float64')
    """
    backend, emissions = emissions_backend(emissions)
    size, frames, classes = emissions.shape
    if isinstance(graphs, Graph):
        graphs = [graphs] * size
    gb = batch(graphs)
    if len(gb) != size:
        raise ValueError(
            f"got {len(gb)} graphs for a batch of {size} examples (emissions.shape[0])"
        )
    if gb.max_label >= classes:
        b = int(np.argmax((gb.labels >= classes).any(axis=1)))
        raise ValueError(
            f"graph {b} uses label {int(gb.labels[b].max())}, but emissions have only "
            f"{classes} classes (labels must be < emissions.shape[2])"
        )
    lengths = check_lengths("lengths", to_host(backend, lengths), size, frames)
    dtype = emissions.dtype
    overrides = (arc_weights, start_weights, final_weights)
    if all(value is None for value in overrides):
        # the graphs' own weights: one row per distinct graph, as the kernels read it
        weight, start, final = gb.distinct.weights_as(dtype)
        return backend, Problem(emissions, gb, lengths, weight, False, False, start,
                                final, gb.graph_index)
    arc_weights, start_weights, final_weights = (to_host(backend, v) for v in overrides)
    weight, start, final = gb.weights_as(dtype)  # one row per example
    time_dependent = False
    if arc_weights is not None:
        arr = np.asarray(arc_weights)
        time_dependent = arr.ndim == 3
        shape = (size, frames, gb.max_arcs) if time_dependent else (size, gb.max_arcs)
        weight = check_log_weights("arc_weights", arr, shape, dtype)
    if start_weights is not None:
        start = check_log_weights("start_weights", start_weights, start.shape, dtype)
    if final_weights is not None:
        final = check_log_weights("final_weights", final_weights, final.shape, dtype)
    return backend, Problem(emissions, gb, lengths, weight, time_dependent,
                            arc_weights is not None, start, final,
                            np.arange(size, dtype=np.int64))


def to_host(backend, value):
    """``value`` on the host: device arrays of ``backend`` (lengths, weights,
    targets) are copied, anything else is left to the checks.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> from lattice.problem import to_host
    >>> to_host(lattice.backends.get_backend("cpu"), [3, 4])   # left as it is
    [3, 4]
    """
    if value is None or type(value) is np.ndarray:
        return value
    if backend_for(value) is backend and backend.xp is not np:
        return backend.to_numpy(value)
    return value


def raise_if_nan(scores, p):
    """Refuse NaN and +inf scores, saying whether the inputs held NaN / +inf or
    finite inputs overflowed the dtype.

    Weights are validated (no NaN, no +inf), so a NaN or +inf score comes either
    from NaN / +inf emissions at a (frame, class) the graph reads (the kernels
    propagate NaN instead of skipping it), or from finite scores whose sum exceeds
    the dtype's range (+inf, or NaN from inf - inf inside a logsumexp).

    Parameters
    ----------
    scores : ndarray, shape (B,)
    p : Problem
        The problem they were computed from.

    Raises
    ------
    FloatingPointError
        Naming the examples and the first bad frame and class, or the magnitudes
        that overflowed.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> from lattice.problem import make_problem, raise_if_nan
    >>> e = np.zeros((1, 2, 2)); e[0, 1, 1] = np.nan
    >>> _, p = make_problem(e, lattice.build("ctc", [1]), None, None, None, None)
    >>> raise_if_nan(np.array([0.0]), p)            # a clean score passes
    >>> raise_if_nan(np.array([np.nan]), p)
    Traceback (most recent call last):
    ...
    FloatingPointError: the score of example(s) [0] is NaN or +inf: emissions contain NaN or +inf at frames and classes these graphs use (example 0 holds NaN at frame 1, class 1)
    """
    total = float(scores.sum())  # one sum (and, on a GPU, one copy of it)
    if not (np.isnan(total) or total == np.inf):
        return  # the sum is NaN or +inf if any score is: the common case costs one sum
    backend = backend_for(scores)
    scores, emissions = (backend.to_numpy(a) for a in (scores, p.emissions))
    bad = np.flatnonzero(np.isnan(scores) | np.isposinf(scores))
    if not bad.size:
        return
    gb = p.batch
    examples = bad[:10].tolist()
    b = examples[0]  # describe the first bad example, list the others
    columns = np.unique(gb.labels[b, : gb.num_states[b]])
    used = emissions[b, : p.lengths[b]][:, columns]
    nan, posinf = np.isnan(used), np.isposinf(used)
    if nan.any() or posinf.any():
        t, k = np.argwhere(nan | posinf)[0]
        value = "NaN" if nan[t, k] else "+inf"
        column = int(columns[k])
        raise FloatingPointError(
            f"the score of example(s) {examples} is NaN or +inf: emissions contain "
            f"NaN or +inf at frames and classes these graphs use (example {b} "
            f"holds {value} at frame {int(t)}, class {column})"
        )
    info = np.finfo(emissions.dtype)
    finite = used[np.isfinite(used)]
    largest = float(np.abs(finite).max(initial=0.0))
    weights = float(max(
        np.abs(w[row][np.isfinite(w[row])]).max(initial=0.0)
        for w in (p.weight, p.start, p.final) for row in [p.weight_index[b]]
    ))  # fmt: skip
    raise FloatingPointError(
        f"the score of example(s) {examples} overflowed {emissions.dtype.name}: "
        f"the inputs are finite, but a sum of them exceeds the largest "
        f"{emissions.dtype.name} ({float(info.max):.3g}); example {b} has "
        f"emissions up to {largest:.3g} and log-weights up to {weights:.3g} in "
        "magnitude. Rescale the scores"
        + (" or compute in float64" if emissions.dtype == np.float32 else "")
    )
