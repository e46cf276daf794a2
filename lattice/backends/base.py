"""What the engine hands a backend, and what a backend must compute.

The engine (``lattice/engine.py``) validates the user's inputs once into a
:class:`Problem`: arrays in the form every backend reads, nothing backend-specific.
A backend turns a problem into numbers: it owns the buffers, the choice of kernels
and their calls. A new backend (another device, another kernel family) subclasses
:class:`Backend`, implements its methods on its own array type, and is registered
with :func:`lattice.backends.register_backend`; nothing in the engine changes.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Backend", "Gradients", "Paths", "Problem"]


class Problem(NamedTuple):
    """Validated inputs of one engine call.

    Attributes
    ----------
    emissions : array, shape (B, T, C)
        float32 or float64 with a unit stride over classes (or a single class);
        ``T`` and ``C`` at most ``2**31 - 1``.
    batch : GraphBatch
        One graph per example; every label is below ``C``.
    lengths : ndarray of int64, shape (B,)
        Valid frames per example, in ``[0, T]``.
    weight : ndarray, shape (B, A_max) or (B, T, A_max)
        Arc log-weights in the emissions' dtype: the batch's own
        (``batch.weights_as(dtype)[0]``) unless ``custom_weights``; no NaN, no
        ``+inf``.
    time_dependent : bool
        Whether ``weight`` has a time axis (``weight[b, t, a]`` scores arc ``a``
        taken into frame ``t``).
    custom_weights : bool
        Whether ``weight`` was passed by the caller instead of read from the batch.
    start, final : ndarray, shape (B, S_max)
        Start / final log-weights in the emissions' dtype.
    """

    emissions: np.ndarray
    batch: object
    lengths: np.ndarray
    weight: np.ndarray
    time_dependent: bool
    custom_weights: bool
    start: np.ndarray
    final: np.ndarray


class Gradients(NamedTuple):
    """What :meth:`Backend.forward_backward` returns (as ``lattice.ForwardBackward``)."""

    score: np.ndarray
    emission_grad: np.ndarray
    arc_grad: np.ndarray
    start_grad: np.ndarray
    final_grad: np.ndarray


class Paths(NamedTuple):
    """What :meth:`Backend.viterbi` returns (the fields of ``lattice.Alignment``).

    ``tokens``, ``starts`` and ``ends`` are (B, K) with ``K`` the largest segment
    count of the batch, padded with -1.
    """

    score: np.ndarray
    states: np.ndarray
    labels: np.ndarray
    arcs: np.ndarray
    tokens: np.ndarray
    starts: np.ndarray
    ends: np.ndarray
    num_segments: np.ndarray


class Backend:
    """The interface every backend implements.

    Each method takes a validated :class:`Problem` and returns arrays of the
    problem's array type, in the emissions' dtype (integer paths in int32). Scores
    are ``-inf`` for examples with no complete path, whose gradients are zero; NaN
    or ``+inf`` scores are returned as they are (the engine turns them into
    exceptions).

    Attributes
    ----------
    name : str
        The name it is registered under.
    xp : module
        The array namespace of its arrays (``numpy`` for the CPU backend): the
        engine validates emissions with it (``xp.ascontiguousarray``).
    """

    name = "abstract"
    xp = np

    def forward(self, problem: Problem, semiring: str) -> np.ndarray:
        """The (B,) total scores under ``semiring`` (``"log"`` or ``"max"``)."""
        raise NotImplementedError

    def forward_backward(self, problem: Problem, semiring: str = "log") -> Gradients:
        """The scores and their gradients with respect to emissions, arc weights
        (per frame if time-dependent), start and final weights: posteriors under
        ``"log"``, the indicators of the best path under ``"max"``."""
        raise NotImplementedError

    def viterbi(self, problem: Problem) -> Paths:
        """The best path of every example, its states, labels, arcs and segments."""
        raise NotImplementedError
