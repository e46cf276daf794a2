"""The engine's front end: forward, forward_backward and viterbi.

Each function validates its inputs once into a :class:`~lattice.backends.Problem`
(:mod:`lattice.problem`) and hands it to the backend that owns the emissions' array type (numpy: the
compiled kernels of :mod:`lattice.backends.cpu`), then checks the scores it gets
back. Nothing here sizes a buffer, picks a kernel or calls one.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .memory import check_checkpoint
from .problem import make_problem, raise_if_nan
from .semiring import get_semiring

__all__ = ["forward", "forward_backward", "viterbi", "Alignment", "ForwardBackward"]


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
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                          final_weights)
    scores = backend.forward(p, sr.name)
    raise_if_nan(scores, p)
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
    checkpoint=None,
):
    """The total score (log Z, or the best score) and its gradients with respect to
    every input.

    Under ``"log"`` the gradients are posteriors: ``emission_grad[b, t, c]`` is the
    probability that the path emits class ``c`` at frame ``t``; ``arc_grad[b, a]``
    the expected count of arc ``a``. They are exact derivatives for any input scores
    (no normalisation is assumed). Memory: one ``T x S`` alpha table per thread (not
    per example) in the input dtype; beta is never stored. Above the memory budget
    (:mod:`lattice.memory`, 512 MiB by default) only every ``k``-th row is kept and
    the others are recomputed (``checkpoint``): the same bits in about 1.3x the
    time, in ``2 sqrt(T)`` rows instead of ``T``. Under ``"max"`` the score
    is that of the best path (:func:`viterbi`) and the gradients are its indicators:
    1 on every (frame, class), arc, start and final state it uses (a sub-gradient
    where paths tie).

    Parameters
    ----------
    emissions, graphs, lengths, semiring, arc_weights, start_weights, final_weights
        As in :func:`forward`.
    checkpoint : None, bool or int >= 1, optional
        ``None`` (default): the full alpha table if it fits the memory budget, else
        checkpoints; ``True``: checkpoints every ``ceil(sqrt(T))`` frames; an int
        ``k``: every ``k`` frames; ``False``: the full table whatever its size.
        Results are identical in every case.

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

    A long input with a checkpoint every 10 frames gives the same bits:

    >>> e = np.random.default_rng(0).normal(size=(1, 200, 2))
    >>> low = lattice.forward_backward(e, [g], checkpoint=10)
    >>> bool((low.emission_grad == lattice.forward_backward(e, [g]).emission_grad).all())
    True
    """
    sr = get_semiring(semiring)
    checkpoint = check_checkpoint(checkpoint)
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                          final_weights)
    result = backend.forward_backward(p, sr.name, checkpoint)
    raise_if_nan(result.score, p)
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
    checkpoint=None,
):
    """Best path of every example (max semiring) with its states, labels and segments.

    Not differentiable. Ties between equally good arcs into a state go to the arc
    from the highest-numbered source state (for left-to-right topologies: staying
    beats advancing, which beats skipping), then to the arc listed first. Backpointers
    take one byte per (frame, state) when no state has more than 255 incoming arcs,
    four otherwise. Above the memory budget (:mod:`lattice.memory`) an alpha row is
    kept every ``k`` frames and the traceback recomputes the backpointers of one
    block at a time (``checkpoint``): the same path. Banded graphs (CTC, HMM
    chains, segmentation) recompute only the cells that reach the path, which costs
    almost nothing; other graphs compute their forward pass twice.

    Parameters
    ----------
    emissions, graphs, lengths, arc_weights, start_weights, final_weights
        As in :func:`forward`.
    checkpoint : None, bool or int >= 1, optional
        As in :func:`forward_backward` (``True`` chooses ``k`` near
        ``sqrt(4 T)`` for float32 with one-byte backpointers).

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
    checkpoint = check_checkpoint(checkpoint)
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                          final_weights)
    paths = backend.viterbi(p, checkpoint)
    raise_if_nan(paths.score, p)
    return Alignment(*paths)
