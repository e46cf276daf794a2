"""What the engine hands a backend, and what a backend must compute.

The front ends (``lattice/engine.py``, ``lattice/distribution.py``) validate the
user's inputs once into a :class:`Problem` (``lattice/problem.py``): arrays in the
form every backend reads, nothing backend-specific.
A backend turns a problem into numbers: it owns the buffers, the choice of kernels
and their calls. A new backend (another device, another kernel family) subclasses
:class:`Backend`, implements its methods on its own array type, and is registered
with :func:`lattice.backends.register_backend`; nothing in the engine changes. A
backend may leave the alignment distribution (:meth:`Backend.sample`,
:meth:`Backend.kbest`, :meth:`Backend.posteriors`) out: the base class raises
``NotImplementedError`` naming the backend and what it lacks.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

__all__ = ["Backend", "CTCProblem", "Gradients", "KBestPaths", "Paths", "Posteriors",
           "Problem", "Samples"]


class Problem(NamedTuple):
    """Validated inputs of one engine call.

    Attributes
    ----------
    emissions : array, shape (B, T, C)
        float32 or float64 with a unit stride over classes (or a single class);
        ``T`` and ``C`` at most ``2**31 - 1``.
    batch : GraphBatch
        One graph per example; every label is below ``C``. A graph shared by
        several examples is stored once: example ``b`` uses row
        ``batch.graph_index[b]`` of ``batch.distinct``, the arrays a backend reads.
    lengths : ndarray of int64, shape (B,)
        Valid frames per example, in ``[0, T]``.
    weight : ndarray, shape (R, A_max) or (R, T, A_max)
        Arc log-weights in the emissions' dtype, example ``b`` at row
        ``weight_index[b]``: the graphs' own (``batch.distinct.weights_as(dtype)[0]``)
        unless ``custom_weights``; no NaN, no ``+inf``.
    time_dependent : bool
        Whether ``weight`` has a time axis (``weight[r, t, a]`` scores arc ``a``
        taken into frame ``t``).
    custom_weights : bool
        Whether ``weight`` was passed by the caller instead of read from the batch.
    start, final : ndarray, shape (R, S_max)
        Start / final log-weights in the emissions' dtype, rows as ``weight``'s.
    weight_index : ndarray of int64, shape (B,)
        The row of ``weight``, ``start`` and ``final`` that example ``b`` reads:
        ``batch.graph_index`` when all three are the graphs' own (R is the number
        of distinct graphs), ``arange(B)`` when any was passed per example (R = B).
    """

    emissions: np.ndarray
    batch: object
    lengths: np.ndarray
    weight: np.ndarray
    time_dependent: bool
    custom_weights: bool
    start: np.ndarray
    final: np.ndarray
    weight_index: np.ndarray


class CTCProblem(NamedTuple):
    """Validated inputs of one CTC call without a graph batch
    (:func:`lattice.ctc_score`, :func:`lattice.ctc_forward_backward`), for a backend
    with fused CTC kernels (:attr:`Backend.fused_ctc`).

    Attributes
    ----------
    emissions : array, shape (B, T, C)
        As :attr:`Problem.emissions`.
    targets : ndarray of int64, shape (N,)
        Every example's target, one after the other (at least one value: a padding
        id when all are empty); ids in ``[0, C)``, none equal to ``blank``.
    offsets, target_lengths : ndarray of int64, shape (B,)
        Example ``b``'s target is ``targets[offsets[b] : offsets[b] +
        target_lengths[b]]``; its CTC graph has ``2 target_lengths[b] + 1`` states.
    lengths : ndarray of int64, shape (B,)
        Valid frames per example, in ``[0, T]``.
    blank : int
        The blank's class, in ``[0, C)``.
    band : int
        3 if some target has two different symbols in a row (its graph has a skip
        arc), else 2: the band width of ``lattice.build_batch("ctc", ...)``.
    """

    emissions: np.ndarray
    targets: np.ndarray
    offsets: np.ndarray
    target_lengths: np.ndarray
    lengths: np.ndarray
    blank: int
    band: int


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


class Samples(NamedTuple):
    """What :meth:`Backend.sample` returns (as ``lattice.Samples``): ``scores``
    (B, N), ``states``, ``labels``, ``arcs`` (B, N, T) int32 with -1 past each
    length, at frame 0 for arcs, and for examples with no path, ``log_z`` (B,)."""

    scores: np.ndarray
    states: np.ndarray
    labels: np.ndarray
    arcs: np.ndarray
    log_z: np.ndarray


class KBestPaths(NamedTuple):
    """What :meth:`Backend.kbest` returns (as ``lattice.KBest``): ``scores`` (B, k)
    in descending order (-inf past the number of paths), ``states``, ``labels``,
    ``arcs`` (B, k, T) int32 (-1 likewise)."""

    scores: np.ndarray
    states: np.ndarray
    labels: np.ndarray
    arcs: np.ndarray


class Posteriors(NamedTuple):
    """What :meth:`Backend.posteriors` returns; the fields not asked for are None.

    ``log_z`` (B,); ``entropy`` (B,); its gradients ``emission_grad``, ``arc_grad``,
    ``start_grad``, ``final_grad`` laid out as :class:`Gradients`; ``occupancy``
    and ``onsets`` (B, T, K): the probability that frame t lies in token k, and
    that token k starts at frame t.
    """

    log_z: np.ndarray
    entropy: np.ndarray | None = None
    emission_grad: np.ndarray | None = None
    arc_grad: np.ndarray | None = None
    start_grad: np.ndarray | None = None
    final_grad: np.ndarray | None = None
    occupancy: np.ndarray | None = None
    onsets: np.ndarray | None = None


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
    #: Whether :meth:`ctc_forward` and :meth:`ctc_forward_backward` are implemented;
    #: without them the CTC front ends build the graph batch and call
    #: :meth:`forward` / :meth:`forward_backward`.
    fused_ctc = False

    def forward(self, problem: Problem, semiring: str) -> np.ndarray:
        """The (B,) total scores under ``semiring`` (``"log"`` or ``"max"``)."""
        raise NotImplementedError

    def forward_backward(self, problem: Problem, semiring: str = "log",
                         checkpoint=None) -> Gradients:
        """The scores and their gradients with respect to emissions, arc weights
        (per frame if time-dependent), start and final weights: posteriors under
        ``"log"``, the indicators of the best path under ``"max"``. ``checkpoint``
        (None, a bool or an int >= 1, checked by :mod:`lattice.memory`) says whether
        to store every alpha row or recompute them from checkpoints; a backend that
        stores nothing of the kind may ignore it, but never its results."""
        raise NotImplementedError

    def viterbi(self, problem: Problem, checkpoint=None) -> Paths:
        """The best path of every example, its states, labels, arcs and segments
        (``checkpoint`` as in :meth:`forward_backward`)."""
        raise NotImplementedError

    def ctc_forward(self, problem: CTCProblem, graphs=None) -> np.ndarray:
        """The (B,) CTC log-likelihoods, the same numbers as :meth:`forward` under
        ``"log"`` of the targets' CTC graphs (only if :attr:`fused_ctc`);
        ``graphs`` as in :meth:`ctc_forward_backward`."""
        raise NotImplementedError(self._missing("fused CTC kernels"))

    def ctc_forward_backward(self, problem: CTCProblem, checkpoint=None,
                             graphs=None, negate=False, weights=None):
        """The (B,) CTC log-likelihoods and their (B, T, C) emission gradients, the
        numbers :meth:`forward_backward` gives for the targets' CTC graphs (only if
        :attr:`fused_ctc`); with ``negate``, minus both (the CTC losses and their
        gradients, as a loss needs them: exactly the negated numbers, without a
        pass over the gradient to negate it). ``weights`` (B float64 values, or
        None for ones) multiplies each example's gradient (not its score): the
        gradient of the weighted sum of the scores, as ``ctc_loss``'s reductions
        need it, without a pass of their own. ``graphs(rows)`` returns the CTC
        graphs of examples ``rows`` as a GraphBatch, for a backend that recomputes
        some examples on the graph path."""
        raise NotImplementedError(self._missing("fused CTC kernels"))

    def to_numpy(self, array) -> np.ndarray:
        """``array`` (of this backend's array type) as a numpy array on the host:
        how the engine reads lengths and weights given as device arrays, and
        describes a NaN score."""
        return np.asarray(array)

    def zeros_like_emissions(self, emissions, dtype=None):
        """Zeros of the emissions' shape and dtype (or ``dtype``), in their memory
        order, to hold an emission gradient (or a copy of the emissions in another
        dtype). The (B, T, C) view of a time-major (T, B, C) input (torch's layout)
        gets the same view of a (T, B, C) array, so the caller's transpose back is
        contiguous and torch does not copy the gradient once more. Every kernel
        takes any batch and frame strides; the class stride stays unit.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> cpu = lattice.backends.get_backend("cpu")
        >>> time_major = np.zeros((5, 2, 3)).transpose(1, 0, 2)   # (B, T, C) view
        >>> g = cpu.zeros_like_emissions(time_major)
        >>> g.shape, g.transpose(1, 0, 2).flags.c_contiguous
        ((2, 5, 3), True)
        """
        return self._like_emissions(emissions, dtype, zero=True)

    def empty_like_emissions(self, emissions, dtype=None):
        """As :meth:`zeros_like_emissions`, uninitialised: for a kernel that writes
        every value (zeroing 8 MB first took 2% of a CTC step).

        Examples
        --------
        >>> import numpy as np, lattice
        >>> cpu = lattice.backends.get_backend("cpu")
        >>> g = cpu.empty_like_emissions(np.zeros((5, 2, 3)).transpose(1, 0, 2))
        >>> g.shape, g.transpose(1, 0, 2).flags.c_contiguous
        ((2, 5, 3), True)
        """
        return self._like_emissions(emissions, dtype, zero=False)

    def _like_emissions(self, emissions, dtype, zero):
        """Zeros (or, not ``zero``, an uninitialised array) laid out as the
        emissions (see :meth:`zeros_like_emissions`)."""
        xp = self.xp
        dtype = emissions.dtype if dtype is None else dtype
        if emissions.ndim == 3:
            b, t, c = (abs(s) for s in emissions.strides)
            if b >= t >= c:
                return self._new_array(emissions.shape, dtype, zero)
            if t >= b >= c:
                B, T, C = emissions.shape
                return self._new_array((T, B, C), dtype, zero).transpose(1, 0, 2)
        like = xp.zeros_like if zero else xp.empty_like
        grad = like(emissions, dtype=dtype, order="K")
        if grad.ndim == 3 and grad.shape[2] > 1 and grad.strides[2] != grad.itemsize:
            grad = self._new_array(emissions.shape, dtype, zero)
        return grad

    def _new_array(self, shape, dtype, zero):
        """A C-ordered array of ``shape``: zeros (``xp.zeros``, not ``zeros_like``:
        fresh zero pages) or, not ``zero``, uninitialised."""
        return (self.xp.zeros if zero else self.xp.empty)(shape, dtype=dtype)

    def sample(self, problem: Problem, num_samples: int, key: int) -> Samples:
        """``num_samples`` paths per example, each drawn with probability
        ``exp(score - log Z)``; ``key`` (a uint64) seeds a generator whose draws do
        not depend on the thread count."""
        raise NotImplementedError(self._missing("sampling (lattice.sample)"))

    def kbest(self, problem: Problem, k: int) -> KBestPaths:
        """The ``k`` best distinct paths (state sequences) of every example."""
        raise NotImplementedError(self._missing("k-best paths (lattice.kbest)"))

    def posteriors(self, problem: Problem, entropy: bool, gradients: bool,
                   num_tokens: int | None, onsets: bool = True) -> Posteriors:
        """log Z and, as asked, the entropy of the posterior over paths (with its
        gradients if ``gradients``) and the token occupancy over ``num_tokens``
        tokens (None: not asked), with the onsets too if ``onsets``."""
        raise NotImplementedError(
            self._missing("entropy and token posteriors (lattice.entropy, "
                          "lattice.token_posteriors)")
        )

    def _missing(self, what):
        return (f"the {self.name!r} backend does not implement {what}; run it on the "
                "'cpu' backend (numpy arrays)")
