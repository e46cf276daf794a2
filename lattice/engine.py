"""The engine's front end: forward, forward_backward and viterbi.

Each function validates its inputs once into a :class:`~lattice.backends.Problem`
and hands it to the backend that owns the emissions' array type (numpy: the
compiled kernels of :mod:`lattice.backends.cpu`), then checks the scores it gets
back. Nothing here sizes a buffer, picks a kernel or calls one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .checks import INT32_MAX
from .checks import lengths as check_lengths
from .checks import log_weights as check_log_weights
from .backends import Problem, backend_for, get_backend
from .batch import batch
from .graph import Graph
from .semiring import get_semiring

__all__ = ["forward", "forward_backward", "viterbi", "Alignment", "ForwardBackward"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# array types lattice knows but whose backend is elsewhere
_ELSEWHERE = {"torch": "use lattice.torch for tensors"}


def _backend_and_emissions(emissions):
    """The backend that computes on ``emissions`` and the emissions as it reads
    them: float32/float64 (B, T, C), T and C int32-indexable, unit stride over
    classes."""
    backend = backend_for(emissions)
    if backend is None:
        package = type(emissions).__module__.partition(".")[0]
        if package in _ELSEWHERE:
            raise TypeError(
                f"emissions must be a numpy array here; {_ELSEWHERE[package]}"
            )
        if hasattr(emissions, "__cuda_array_interface__"):
            raise TypeError(
                f"emissions is a {type(emissions).__name__} on a GPU, and no backend "
                "for its arrays is registered (lattice.backends.register_backend)"
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


def _problem(emissions, graphs, lengths, arc_weights, start_weights, final_weights):
    """The backend for these emissions and the validated :class:`Problem`."""
    backend, emissions = _backend_and_emissions(emissions)
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
    lengths = check_lengths("lengths", lengths, size, frames)
    dtype = emissions.dtype
    weight, start, final = gb.weights_as(dtype)
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
                            arc_weights is not None, start, final)


def _raise_if_nan(scores, p):
    """Refuse NaN and +inf scores, saying whether the inputs held NaN / +inf or
    finite inputs overflowed the dtype.

    Weights are validated (no NaN, no +inf), so a NaN or +inf score comes either
    from NaN / +inf emissions at a (frame, class) the graph reads (the kernels
    propagate NaN instead of skipping it), or from finite scores whose sum exceeds
    the dtype's range (+inf, or NaN from inf - inf inside a logsumexp).
    """
    total = np.add.reduce(scores)
    if not (np.isnan(total) or total == np.inf):
        return  # the sum is NaN or +inf if any score is: the common case costs one sum
    bad = np.flatnonzero(np.isnan(scores) | np.isposinf(scores))
    if not bad.size:
        return
    gb, emissions = p.batch, p.emissions
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
        np.abs(w[b][np.isfinite(w[b])]).max(initial=0.0)
        for w in (p.weight, p.start, p.final)
    ))  # fmt: skip
    raise FloatingPointError(
        f"the score of example(s) {examples} overflowed {emissions.dtype.name}: "
        f"the inputs are finite, but a sum of them exceeds the largest "
        f"{emissions.dtype.name} ({float(info.max):.3g}); example {b} has "
        f"emissions up to {largest:.3g} and log-weights up to {weights:.3g} in "
        "magnitude. Rescale the scores"
        + (" or compute in float64" if emissions.dtype == np.float32 else "")
    )


def forward(
    emissions,
    graphs,
    lengths=None,
    semiring="log",
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """Total score of every example's graph under a semiring.

    Under ``"log"`` this is the log-partition ``log Z`` (logsumexp over all paths);
    under ``"max"`` the score of the best path. Not differentiable by itself: see
    :func:`forward_backward` for gradients.

    Parameters
    ----------
    emissions : ndarray of float32 or float64, shape (B, T, C)
        Per-frame scores, usually log-probabilities. Computation happens in this
        dtype. Any strides are accepted; a copy is made only if the class axis is not
        contiguous.
    graphs : sequence of Graph, GraphBatch, or Graph
        One graph per example (a single ``Graph`` is used for every example).
    lengths : array_like of int, shape (B,), optional
        Number of valid frames per example (default ``T``). A length of 0 scores
        ``-inf``.
    semiring : {"log", "max"}
    arc_weights : array_like, shape (B, A_max) or (B, T, A_max), optional
        Replace the graphs' arc weights. With a time axis, ``arc_weights[b, t, a]`` is
        the score of taking arc ``a`` into frame ``t`` (row ``t = 0`` is unused).
    start_weights, final_weights : array_like, shape (B, S_max), optional
        Replace the graphs' start / final weights.

    Returns
    -------
    ndarray, shape (B,)
        Scores in the emissions' dtype; ``-inf`` where no path fits the length.

    Raises
    ------
    TypeError, ValueError
        On a bad dtype, shape, length, or a label outside ``[0, C)``.
    FloatingPointError
        If a score is NaN (emissions hold NaN or ``+inf`` where the graph reads them).

    Examples
    --------
    The segmentation of two symbols over 3 frames has C(2, 1) = 2 paths; with zero
    emissions, log Z = log 2:

    >>> import numpy as np, lattice
    >>> g = lattice.build("segmentation", [0, 1])
    >>> float(lattice.forward(np.zeros((1, 3, 2)), [g])[0]) == float(np.log(2))
    True
    >>> float(lattice.forward(np.zeros((1, 3, 2)), [g], semiring="max")[0])
    0.0
    """
    sr = get_semiring(semiring)
    backend, p = _problem(emissions, graphs, lengths, arc_weights, start_weights,
                          final_weights)
    scores = backend.forward(p, sr.name)
    _raise_if_nan(scores, p)
    return scores


class ForwardBackward(NamedTuple):
    """Result of :func:`forward_backward`: ``log Z`` and its gradients.

    Attributes
    ----------
    score : ndarray, shape (B,)
        log Z per example (``-inf`` where no path fits; its gradients are then 0).
    emission_grad : ndarray, shape (B, T, C)
        d log Z / d emissions: the posterior mass of each class at each frame.
    arc_grad : ndarray, shape (B, A_max) or (B, T, A_max)
        d log Z / d arc weights: the expected number of times each arc is taken
        (per frame when the arc weights were time-dependent).
    start_grad, final_grad : ndarray, shape (B, S_max)
        Posterior of starting / ending in each state.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> score, grad, arc_grad, start_grad, final_grad = lattice.forward_backward(
    ...     np.zeros((1, 2, 1)), [lattice.build("segmentation", [0])])
    >>> float(score[0]), grad[0].ravel().tolist(), arc_grad.tolist()
    (0.0, [1.0, 1.0], [[1.0]])
    """

    score: np.ndarray
    emission_grad: np.ndarray
    arc_grad: np.ndarray
    start_grad: np.ndarray
    final_grad: np.ndarray


def forward_backward(
    emissions,
    graphs,
    lengths=None,
    semiring="log",
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """The total score (log Z, or the best score) and its gradients with respect to
    every input.

    Under ``"log"`` the gradients are posteriors: ``emission_grad[b, t, c]`` is the
    probability that the path emits class ``c`` at frame ``t``; ``arc_grad[b, a]``
    the expected count of arc ``a``. They are exact derivatives for any input scores
    (no normalisation is assumed). Memory: one ``T x S`` alpha table per thread (not
    per example) in the input dtype; beta is never stored. Under ``"max"`` the score
    is that of the best path (:func:`viterbi`) and the gradients are its indicators:
    1 on every (frame, class), arc, start and final state it uses (a sub-gradient
    where paths tie).

    Parameters
    ----------
    emissions, graphs, lengths, semiring, arc_weights, start_weights, final_weights
        As in :func:`forward`.

    Returns
    -------
    ForwardBackward
        ``(score, emission_grad, arc_grad, start_grad, final_grad)``; gradients are
        zero past each example's length and for examples with ``score == -inf``.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> g = lattice.build("segmentation", [0, 1])
    >>> fb = lattice.forward_backward(np.zeros((1, 3, 2)), [g])
    >>> fb.emission_grad[0].round(2).tolist()   # each of the two paths has p = 1/2
    [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]]
    >>> fb.arc_grad[0].round(2).tolist()        # arcs: stay 0, advance, stay 1
    [0.5, 1.0, 0.5]
    >>> best = lattice.forward_backward(np.zeros((1, 3, 2)), [g], semiring="max")
    >>> best.emission_grad[0].tolist()           # the best path stays in 0, then 1
    [[1.0, 0.0], [0.0, 1.0], [0.0, 1.0]]
    """
    sr = get_semiring(semiring)
    backend, p = _problem(emissions, graphs, lengths, arc_weights, start_weights,
                          final_weights)
    result = backend.forward_backward(p, sr.name)
    _raise_if_nan(result.score, p)
    return ForwardBackward(*result)


@dataclass(frozen=True)
class Alignment:
    """Best paths of a batch, from :func:`viterbi`.

    Attributes
    ----------
    score : ndarray, shape (B,)
        Score of the best path (``-inf`` where no path fits).
    states : ndarray of int32, shape (B, T)
        State occupied at each frame; ``-1`` past the length and for infeasible
        examples.
    labels : ndarray of int32, shape (B, T)
        Emission column of that state (``-1`` likewise).
    arcs : ndarray of int32, shape (B, T)
        Arc taken into each frame (``-1`` at frame 0, past the length and for
        infeasible examples).
    tokens, starts, ends : ndarray of int32, shape (B, K)
        Segments: maximal runs of frames whose states share a non-negative token
        (``Graph.tokens``); ``ends`` are exclusive. Padded with ``-1``.
    num_segments : ndarray of int32, shape (B,)

    Examples
    --------
    >>> import numpy as np, lattice
    >>> ali = lattice.viterbi(np.zeros((1, 3, 2)), [lattice.build("segmentation", [0, 1])])
    >>> ali.states.tolist(), ali.num_segments.tolist()   # a tie: staying wins
    ([[0, 1, 1]], [2])
    """

    score: np.ndarray
    states: np.ndarray
    labels: np.ndarray
    arcs: np.ndarray
    tokens: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    num_segments: np.ndarray

    def segments(self, b):
        """Segments of example ``b`` as a list of ``(token, start, end)`` tuples.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> e = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1],
        ...                       [.1, .1, .8]]]))
        >>> lattice.viterbi(e, [lattice.build("ctc", [1, 2])]).segments(0)
        [(0, 0, 2), (1, 3, 4)]
        """
        n = int(self.num_segments[b])
        return [
            (int(k), int(s), int(e))
            for k, s, e in zip(self.tokens[b, :n], self.starts[b, :n], self.ends[b, :n])
        ]


def viterbi(
    emissions,
    graphs,
    lengths=None,
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """Best path of every example (max semiring) with its states, labels and segments.

    Not differentiable. Ties between equally good arcs into a state go to the arc
    from the highest-numbered source state (for left-to-right topologies: staying
    beats advancing, which beats skipping), then to the arc listed first. Backpointers
    take one byte per (frame, state) when no state has more than 255 incoming arcs,
    four otherwise.

    Parameters
    ----------
    emissions, graphs, lengths, arc_weights, start_weights, final_weights
        As in :func:`forward`.

    Returns
    -------
    Alignment

    Examples
    --------
    >>> import numpy as np, lattice
    >>> e = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1],
    ...                       [.1, .1, .8]]]))
    >>> ali = lattice.viterbi(e, [lattice.build("ctc", [1, 2])])
    >>> ali.labels[0].tolist(), ali.states[0].tolist()
    ([1, 1, 0, 2], [1, 1, 2, 3])
    """
    backend, p = _problem(emissions, graphs, lengths, arc_weights, start_weights,
                          final_weights)
    paths = backend.viterbi(p)
    _raise_if_nan(paths.score, p)
    return Alignment(*paths)
