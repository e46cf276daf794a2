"""The alignment distribution beyond log Z and the best path.

For every example, the paths of its graph over its frames form a distribution,
``p(path) = exp(score(path) - log Z)``. :mod:`lattice.engine` computes its two ends
(``log Z`` and the best path); this module the rest:

* :func:`sample`: paths drawn from it (forward filtering, backward sampling);
* :func:`kbest`: its ``k`` most probable distinct paths, exactly;
* :func:`entropy`: its entropy in nats, and the gradient of the entropy;
* :func:`token_posteriors`: the probability that frame ``t`` lies in target token
  ``k`` (``Graph.tokens``), and that token ``k`` starts at frame ``t``.

Each validates its inputs like :func:`lattice.forward` (:mod:`lattice.problem`)
and hands them to the backend of the emissions' array type.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np

from .backends import backend_for
from .checks import int_value, is_int
from .problem import make_problem, raise_if_nan

__all__ = [
    "EntropyGradients",
    "KBest",
    "Samples",
    "TokenPosteriors",
    "entropy",
    "kbest",
    "sample",
    "token_posteriors",
]


class Samples(NamedTuple):
    """Paths drawn by :func:`sample`.

    Attributes
    ----------
    scores : ndarray, shape (B, N)
        The score of each drawn path (its log-probability is ``score - log_z``);
        ``-inf`` for every sample of an example with no path.
    states, labels : ndarray of int32, shape (B, N, T)
        The state occupied at each frame and its emission column; ``-1`` past the
        example's length and for examples with no path.
    arcs : ndarray of int32, shape (B, N, T)
        The arc taken into each frame (``-1`` at frame 0, past the length and for
        examples with no path).
    log_z : ndarray, shape (B,)
        ``log Z`` of every example (``-inf``: nothing could be drawn).

    Examples
    --------
    >>> import numpy as np, lattice
    >>> s = lattice.sample(np.zeros((1, 3, 2)), lattice.build("segmentation", [0, 1]), 4,
    ...                    seed=0)
    >>> s.states.shape, s.feasible.tolist()
    ((1, 4, 3), [True])
    """

    scores: np.ndarray
    states: np.ndarray
    labels: np.ndarray
    arcs: np.ndarray
    log_z: np.ndarray

    @property
    def feasible(self):
        """(B,) bool: whether the example has a path (and its samples are paths)."""
        return np.isfinite(self.log_z)


class KBest(NamedTuple):
    """The best distinct paths found by :func:`kbest`.

    Attributes
    ----------
    scores : ndarray, shape (B, k)
        Path scores in descending order; ``-inf`` past the number of paths.
    states, labels : ndarray of int32, shape (B, k, T)
        The states of each path and their emission columns (``-1`` past the length
        and past the number of paths).
    arcs : ndarray of int32, shape (B, k, T)
        The arc taken into each frame: of parallel arcs between the same two
        states, the one with the best weight (``-1`` at frame 0 and likewise).

    Examples
    --------
    >>> import numpy as np, lattice
    >>> best = lattice.kbest(np.zeros((1, 3, 2)), lattice.build("segmentation", [0, 1]), 4)
    >>> best.num_paths.tolist()   # C(2, 1): only two paths exist
    [2]
    """

    scores: np.ndarray
    states: np.ndarray
    labels: np.ndarray
    arcs: np.ndarray

    @property
    def num_paths(self):
        """(B,) int: how many paths each example has, up to k."""
        return np.isfinite(self.scores).sum(axis=1)


class EntropyGradients(NamedTuple):
    """The entropy and its gradients, from ``entropy(..., return_gradients=True)``.

    Attributes
    ----------
    entropy : ndarray, shape (B,)
        In nats; 0 for an example with no path.
    emission_grad : ndarray, shape (B, T, C)
        d entropy / d emissions (0 past each length and without a path).
    arc_grad : ndarray, shape (B, A_max) or (B, T, A_max)
        d entropy / d arc weights (per frame for time-dependent weights).
    start_grad, final_grad : ndarray, shape (B, S_max)

    Examples
    --------
    >>> import numpy as np, lattice
    >>> h, g_em, g_arc, g_start, g_final = lattice.entropy(
    ...     np.zeros((1, 3, 2)), lattice.build("segmentation", [0, 1]),
    ...     return_gradients=True)
    >>> round(float(h[0]), 6) == round(float(np.log(2)), 6)
    True
    """

    entropy: np.ndarray
    emission_grad: np.ndarray
    arc_grad: np.ndarray
    start_grad: np.ndarray
    final_grad: np.ndarray


@dataclass(frozen=True)
class TokenPosteriors:
    """Where the target tokens lie, from :func:`token_posteriors`.

    Attributes
    ----------
    occupancy : ndarray, shape (B, T, K)
        The probability that frame ``t`` lies in a state of token ``k``
        (``Graph.tokens``); ``K`` is the largest token of the batch plus one.
    onsets : ndarray, shape (B, T, K), or None
        The probability that token ``k`` starts at frame ``t`` (the path enters one
        of its states from a state of another token, or starts in it); None unless
        asked for.
    log_z : ndarray, shape (B,)
    lengths : ndarray of int64, shape (B,)

    Examples
    --------
    >>> import numpy as np, lattice
    >>> post = lattice.token_posteriors(np.zeros((1, 3, 3)), lattice.build("ctc", [1]))
    >>> (post.occupancy[0, :, 0] + post.non_token[0]).round(6).tolist()
    [1.0, 1.0, 1.0]
    """

    occupancy: np.ndarray
    onsets: np.ndarray | None
    log_z: np.ndarray
    lengths: np.ndarray

    @property
    def non_token(self):
        """(B, T): the probability that frame ``t`` lies in no token (a blank, say);
        with ``occupancy`` it sums to 1 on every frame within the length, and is 0
        past it and for examples with no path."""
        occupancy = self.occupancy  # numpy, or a GPU backend's arrays
        xp = np if isinstance(occupancy, np.ndarray) else backend_for(occupancy).xp
        frames = occupancy.shape[1]
        valid = xp.asarray(np.arange(frames) < np.asarray(self.lengths)[:, None]) & (
            xp.isfinite(self.log_z)[:, None])
        rest = 1 - occupancy.sum(axis=2)
        return xp.where(valid, xp.clip(rest, 0, 1), 0).astype(occupancy.dtype)


def _seed_key(seed):
    """The generator's 64-bit key for ``seed``."""
    if seed is None:
        sequence = np.random.SeedSequence()
    elif isinstance(seed, np.random.SeedSequence):
        sequence = seed
    elif isinstance(seed, np.random.Generator):
        return int(seed.integers(0, 2**64, dtype=np.uint64))
    elif is_int(seed):
        if int(seed) < 0:
            raise ValueError(f"seed must be >= 0, got {int(seed)}")
        sequence = np.random.SeedSequence(int(seed))
    else:
        raise TypeError(
            "seed must be None, a non-negative int, a numpy SeedSequence or a numpy "
            f"Generator, got {type(seed).__name__}"
        )
    return int(sequence.generate_state(1, np.uint64)[0])


def sample(
    emissions,
    graphs,
    num_samples,
    lengths=None,
    seed=None,
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """Draw paths from the posterior distribution over each example's paths.

    Each path is drawn with probability exactly ``exp(score - log Z)`` (up to the
    rounding of the emissions' dtype) by forward filtering, backward sampling: one
    forward pass stores alpha, then each sample picks its last state and, going
    back, the arc into every state in proportion to its share of alpha. Parallel
    arcs are distinct paths, as in ``log Z``.

    Parameters
    ----------
    emissions, graphs, lengths
        As in :func:`lattice.forward`.
    num_samples : int >= 1
        Paths per example.
    seed : None, int >= 0, numpy.random.SeedSequence or numpy.random.Generator
        Seeds the generator. The same seed gives the same samples whatever the
        thread count (each example and sample has its own stream); None draws fresh
        entropy.
    arc_weights, start_weights, final_weights
        As in :func:`lattice.forward`.

    Returns
    -------
    Samples
        ``scores`` (B, N), ``states``, ``labels`` and ``arcs`` (B, N, T), and
        ``log_z``; an example with no path has ``-inf`` scores and ``-1`` paths
        (``Samples.feasible`` is False for it).

    Raises
    ------
    TypeError, ValueError
        On bad inputs (as :func:`lattice.forward`), ``num_samples < 1`` or a bad
        seed.
    FloatingPointError
        If a score is NaN (NaN or ``+inf`` emissions where the graph reads them).

    Examples
    --------
    Two paths with probabilities 0.8 and 0.2:

    >>> import numpy as np, lattice
    >>> g = lattice.build("segmentation", [0, 1])
    >>> e = np.log([[[1.0, 1.0], [0.8, 0.2], [1.0, 1.0]]])
    >>> s = lattice.sample(e, g, 10000, seed=1)
    >>> share = (s.states[0, :, 1] == 0).mean()   # stayed in state 0 at frame 1
    >>> bool(abs(share - 0.8) < 0.02)
    True
    """
    num_samples = int_value("num_samples", num_samples, 1)
    key = _seed_key(seed)
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                              final_weights)
    result = backend.sample(p, num_samples, key)
    raise_if_nan(result.log_z, p)
    return Samples(*result)


def kbest(
    emissions,
    graphs,
    k,
    lengths=None,
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """The ``k`` highest-scoring distinct paths of every example, exactly.

    Paths are distinct state sequences: of parallel arcs between the same two
    states only the best counts, as in the max semiring, so the first path is
    :func:`lattice.viterbi`'s. The search is the recursive enumeration algorithm of
    Jimenez and Marzal: one max-semiring forward pass stores the table of best
    scores, then each further path asks at most one (frame, state) per frame for its
    next best path, so ``k`` paths cost little beyond one Viterbi pass for small
    ``k`` (memory: the table, about ``T x S`` values and ints per thread, plus
    ``O(k T)`` records). Ties between equal scores are broken in a fixed order.

    Parameters
    ----------
    emissions, graphs, lengths
        As in :func:`lattice.forward`.
    k : int >= 1
    arc_weights, start_weights, final_weights
        As in :func:`lattice.forward`.

    Returns
    -------
    KBest
        ``scores`` (B, k) in descending order and ``states``, ``labels``, ``arcs``
        (B, k, T); an example with fewer than ``k`` paths gets ``-inf`` scores and
        ``-1`` paths past its last one.

    Raises
    ------
    TypeError, ValueError
        On bad inputs, ``k < 1``, or a ``k`` whose search would not fit the
        kernels' int32 indexes.
    FloatingPointError
        If a score is NaN.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> g = lattice.build("segmentation", [0, 1])
    >>> e = np.log([[[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]]])
    >>> best = lattice.kbest(e, g, 2)
    >>> best.states[0].tolist()
    [[0, 0, 1, 1], [0, 1, 1, 1]]
    >>> np.exp(best.scores[0]).round(4).tolist()   # 0.9 * 0.6 * 0.7 * 0.9, ...
    [0.3402, 0.2268]
    """
    k = int_value("k", k, 1)
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                              final_weights)
    result = backend.kbest(p, k)
    raise_if_nan(result.scores[:, 0], p)
    return KBest(*result)


def entropy(
    emissions,
    graphs,
    lengths=None,
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
    return_gradients=False,
):
    """The entropy, in nats, of the posterior distribution over each example's paths.

    ``H = -sum_path p(path) log p(path)`` with ``p = exp(score - log Z)``; parallel
    arcs are distinct paths, as in ``log Z``. It is computed without cancellation:
    the entropy of the prefixes ending in each (frame, state) follows a forward
    recursion over the stored alpha table, ``h(t, v) = sum_a r_a (h(t-1, src a) -
    log r_a)`` with ``r_a`` the posterior of the arc into ``v`` given ``v``; then
    ``H = sum_s P(end in s) (h(T-1, s) - log P(end in s))``. All of it in float64,
    whatever the dtype.

    The gradient of ``H`` with respect to an input is minus the covariance, over
    paths, of the input's count with the path score: per (frame, state)
    ``gamma (log gamma + H - h - g)``, with ``g`` the entropy of the suffixes, from
    one backward pass (see :doc:`/theory`).

    Parameters
    ----------
    emissions, graphs, lengths, arc_weights, start_weights, final_weights
        As in :func:`lattice.forward`.
    return_gradients : bool, default False
        Also return the gradients with respect to the emissions and the arc, start
        and final weights.

    Returns
    -------
    ndarray, shape (B,), or EntropyGradients
        The entropies in the emissions' dtype (0 for an example with no path);
        with ``return_gradients``, an :class:`EntropyGradients`.

    Raises
    ------
    TypeError, ValueError
        On bad inputs (as :func:`lattice.forward`).
    FloatingPointError
        If a score is NaN.

    Examples
    --------
    Uniform emissions make the C(3, 1) = 3 paths of a segmentation equally likely:

    >>> import numpy as np, lattice
    >>> g = lattice.build("segmentation", [0, 1])
    >>> h = lattice.entropy(np.zeros((1, 4, 2)), g)
    >>> bool(np.isclose(h[0], np.log(3)))
    True
    """
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                              final_weights)
    result = backend.posteriors(p, entropy=True, gradients=bool(return_gradients),
                                num_tokens=None, onsets=False)
    raise_if_nan(result.log_z, p)
    if not return_gradients:
        return result.entropy
    return EntropyGradients(result.entropy, result.emission_grad, result.arc_grad,
                            result.start_grad, result.final_grad)


def token_posteriors(
    emissions,
    graphs,
    lengths=None,
    *,
    onsets=False,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """The posterior probability that each frame lies in each target token.

    A graph's ``tokens`` map each state to a target position (``-1`` for states of
    no token, such as CTC's blanks). ``occupancy[b, t, k]`` is the probability, over
    all paths, that frame ``t`` lies in a state of token ``k``; with the non-token
    occupancy (:attr:`TokenPosteriors.non_token`) it sums to 1 on every frame. The
    memory is (B, T, K) values (twice that with ``onsets``), allocated only here:
    :func:`lattice.forward_backward` does not compute them.

    Parameters
    ----------
    emissions, graphs, lengths
        As in :func:`lattice.forward`.
    onsets : bool, default False
        Also compute the probability that token ``k`` starts at frame ``t``.
    arc_weights, start_weights, final_weights
        As in :func:`lattice.forward`.

    Returns
    -------
    TokenPosteriors

    Raises
    ------
    TypeError, ValueError
        On bad inputs (as :func:`lattice.forward`).
    FloatingPointError
        If a score is NaN.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> g = lattice.build("ctc", [1, 2])          # states: blank, 1, blank, 2, blank
    >>> e = np.log([[[.1, .8, .1], [.6, .2, .2], [.1, .1, .8]]])
    >>> post = lattice.token_posteriors(e, g, onsets=True)
    >>> post.occupancy[0].round(2).tolist()       # frames x tokens
    [[0.98, 0.0], [0.21, 0.21], [0.0, 0.98]]
    >>> post.non_token[0].round(2).tolist()       # the blanks
    [0.02, 0.57, 0.02]
    >>> post.onsets[0, :, 1].round(2).tolist()    # when token 1 starts
    [0.0, 0.21, 0.79]
    """
    backend, p = make_problem(emissions, graphs, lengths, arc_weights, start_weights,
                              final_weights)
    num_tokens = int(p.batch.distinct.tokens.max(initial=-1)) + 1
    result = backend.posteriors(p, entropy=False, gradients=False,
                                num_tokens=num_tokens, onsets=bool(onsets))
    raise_if_nan(result.log_z, p)
    return TokenPosteriors(result.occupancy, result.onsets, result.log_z, p.lengths)
