"""The numpy API of the engine: forward, forward_backward and viterbi.

Each function validates its inputs once, resolves the thread count, allocates every
buffer the kernel needs, and calls one compiled kernel specialised for the semiring
and dtype (see ``_core.pyx.tp``). Nothing here loops over frames or states.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
from numpy.lib.stride_tricks import as_strided

from . import _core
from ._threads import check_team, get_num_threads
from .batch import GraphBatch, batch
from .graph import Graph
from .semiring import get_semiring

__all__ = ["forward", "forward_backward", "viterbi", "Alignment", "ForwardBackward"]

_FLOAT_DTYPES = (np.dtype(np.float32), np.dtype(np.float64))
# the kernels index frames, classes, states, arcs and every workspace row with C ints
# (only the stored alpha table and the backpointers are indexed in int64)
_INT32_MAX = int(np.iinfo(np.int32).max)
# below this many (frame x (state + arc)) steps a batch runs on the calling thread
_SERIAL_WORK = 50_000
# use the vectorised banded kernels where they apply (tests switch it off to compare
# both paths bit for bit)
_USE_BANDED = True
# the general kernels run an example's forward (backward) in the vectorised ELL layout
# of _rows.h when none of its states has more than this many in-arcs (out-arcs), and
# with the CSR loops otherwise; tests set 0 to compare both bit for bit
_ELL_MAX_DEGREE = 8
_ELL_WIDTHS = (1, 2, 3, 4, 6, 8)  # ELL_WIDTHS in _core.pyx.tp


class _Problem(NamedTuple):
    """Validated inputs, in the form the kernels read."""

    emissions: np.ndarray  # (B, T, C), float32/float64, last axis contiguous
    batch: GraphBatch
    lengths: np.ndarray  # (B,) int64
    order: np.ndarray  # (B,) int64, longest work first
    weight: np.ndarray  # (B, T, A_max) or (B, A_max) if time-independent
    time_dependent: bool
    band_weight: np.ndarray | None  # (B, D * S_max + D - 1), the banded fast path
    start: np.ndarray  # (B, S_max)
    final: np.ndarray  # (B, S_max)
    num_threads: int


def _check_emissions(emissions):
    if not isinstance(emissions, np.ndarray):
        if type(emissions).__module__.split(".")[0] in ("torch", "cupy"):
            raise TypeError(
                "emissions must be a numpy array here; use lattice.torch for tensors"
            )
        emissions = np.asarray(emissions)
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
        if emissions.shape[axis] > _INT32_MAX:
            raise ValueError(
                f"emissions has {emissions.shape[axis]} {what} (axis {axis} of shape "
                f"{emissions.shape}); the kernels index {what} with int32, so at most "
                f"{_INT32_MAX}"
            )
    # the kernels need a unit stride over classes (a single class has none to speak
    # of: a zero-stride broadcast of one class is read as it is, not copied)
    if emissions.shape[2] == 0 or (
        emissions.shape[2] > 1 and emissions.strides[2] != emissions.itemsize
    ):
        emissions = np.ascontiguousarray(emissions)
    return emissions


def _check_lengths(lengths, size, frames):
    if lengths is None:
        return np.full(size, frames, dtype=np.int64)
    arr = np.asarray(lengths)
    if arr.ndim == 0:
        arr = arr.reshape(1)
    if arr.size and arr.dtype.kind not in "iu":
        raise TypeError(f"lengths must hold integers, got dtype {arr.dtype}")
    if arr.shape != (size,):
        raise ValueError(f"lengths must have shape ({size},), got {arr.shape}")
    arr = arr.astype(np.int64, copy=False)
    if arr.size and (arr.min() < 0 or arr.max() > frames):
        raise ValueError(
            f"lengths must lie in [0, {frames}] (the number of frames), "
            f"got values in [{arr.min()}, {arr.max()}]"
        )
    return arr


def _check_log_weights(name, values, shape, dtype):
    arr = np.asarray(values)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape != shape:
        raise ValueError(f"{name} must have shape {shape}, got {arr.shape}")
    arr = np.ascontiguousarray(arr, dtype=dtype)
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    if np.isposinf(arr).any():
        raise ValueError(f"{name} contains +inf (log-weights may be -inf, never +inf)")
    return arr


def _problem(emissions, graphs, lengths, arc_weights, start_weights, final_weights):
    emissions = _check_emissions(emissions)
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
    lengths = _check_lengths(lengths, size, frames)
    dtype = emissions.dtype
    weight, start, final = gb.weights_as(dtype)
    time_dependent = False
    a_max = gb.max_arcs
    if arc_weights is not None:
        arr = np.asarray(arc_weights)
        time_dependent = arr.ndim == 3
        shape = (size, frames, a_max) if time_dependent else (size, a_max)
        weight = _check_log_weights("arc_weights", arr, shape, dtype)
    band_weight = None
    if not time_dependent and gb.band is not None and _USE_BANDED:
        # the dense (d, s) weight table of the banded fast path; -inf where no arc
        if arc_weights is None:
            band_weight = gb._band_weights_as(dtype)
        else:
            band_weight = gb._band_table(weight, -np.inf)
    if start_weights is not None:
        start = _check_log_weights("start_weights", start_weights, start.shape, dtype)
    if final_weights is not None:
        final = _check_log_weights("final_weights", final_weights, final.shape, dtype)
    work = lengths * (gb.num_states.astype(np.int64) + gb.num_arcs)
    order = np.argsort(-work, kind="stable").astype(np.int64)
    num_threads = max(1, min(get_num_threads(), size))
    if work.sum() < _SERIAL_WORK:
        # waking a thread team costs more than it saves on tiny batches, and idle
        # OpenMP workers spinning on an oversubscribed machine slow everyone down
        num_threads = 1
    check_team(num_threads)
    return _Problem(
        emissions, gb, lengths, order, weight, time_dependent, band_weight, start,
        final, num_threads,
    )


def _weight_view(p):
    """The arc weights as the general kernels index them, weight[b, t, a]: a zero
    time stride reads row b on every frame when they are time-independent."""
    weight = p.weight
    if p.time_dependent:
        return weight
    size, frames = p.emissions.shape[:2]
    return as_strided(
        weight,
        shape=(size, max(frames, 1), weight.shape[1]),
        strides=(weight.strides[0], 0, weight.strides[1]),
        writeable=False,
    )


def _kernel(name):
    return getattr(_core, name)


def _workspace(p, per_thread, dtype, int64_indexed=False):
    """A kernel workspace: one row of ``per_thread`` values for each thread.

    The kernels index a workspace row with C ints, except the stored alpha table and
    the backpointers (``int64_indexed``): a row that int32 cannot index is refused
    here, before anything is allocated, instead of overflowing in the kernel.
    """
    per_thread = max(int(per_thread), 1)
    if not int64_indexed and per_thread > _INT32_MAX:
        gb = p.batch
        raise ValueError(
            f"these graphs are too large for the kernels: the largest has "
            f"{gb.max_states} states and {gb.max_arcs} arcs, and a workspace of "
            f"{per_thread} values would have to be indexed with int32 (at most "
            f"{_INT32_MAX}); split the graphs"
        )
    return np.empty((p.num_threads, per_thread), dtype=dtype)


def _table_size(p, pad=0):
    """Values in the largest (frames x states) table of the batch: the alpha table
    of forward_backward, the backpointers of viterbi; ``pad`` more per row."""
    return int((p.lengths * (p.batch.num_states.astype(np.int64) + pad)).max(initial=0))


# the banded and ELL kernels keep this many cells of -inf before every alpha row and
# after the y row of the backward pass (BAND_PAD in _core.pyx.tp); the general
# kernels lay out their alpha rows the same way
_BAND_PAD = 2


def _ell_cap(gb):
    """The most ELL slots per state the general kernels' workspaces hold: the batch's
    largest in- or out-degree rounded up to an ELL width, at most _ELL_MAX_DEGREE
    (rounded likewise); 0 runs every example with the CSR loops."""
    if _ELL_MAX_DEGREE < 1:
        return 0
    degree = max(gb.max_in_degree, gb.max_out_degree, 1)
    degree = min(degree, _ELL_MAX_DEGREE, _ELL_WIDTHS[-1])
    cap = next(width for width in _ELL_WIDTHS if width >= degree)
    # the largest ELL workspace row (the backward's, _workspace) must be int32-indexable
    s_max, a_max = gb.max_states, gb.max_arcs
    if max(2 * cap * s_max + 2 * s_max + _BAND_PAD, cap * s_max + a_max) > _INT32_MAX:
        return 0
    return cap


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
    for b in bad[:1].tolist():  # describe the first bad example, list the others
        columns = np.unique(gb.labels[b, : gb.num_states[b]])
        used = emissions[b, : p.lengths[b]][:, columns]
        nan, posinf = np.isnan(used), np.isposinf(used)
        examples = bad[:10].tolist()
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
    p = _problem(emissions, graphs, lengths, arc_weights, start_weights, final_weights)
    size = p.emissions.shape[0]
    dtype = p.emissions.dtype
    scores = np.empty(size, dtype=dtype)
    if size == 0:
        return scores
    gb = p.batch
    if p.band_weight is not None:
        scratch = _workspace(p, 2 * (gb.max_states + _BAND_PAD), dtype)
        bp_scratch = _workspace(p, gb.max_states, np.uint8)
        _kernel(f"forward_banded_{sr.name}_{dtype.name}")(
            p.emissions, p.lengths, p.order, gb.num_states, gb.labels, gb.band,
            p.band_weight, p.start, p.final, scratch, bp_scratch, scores,
            p.num_threads,
        )  # fmt: skip
    else:
        s_max, a_max, cap = gb.max_states, gb.max_arcs, _ell_cap(gb)
        scratch = _workspace(p, 2 * (s_max + _BAND_PAD), dtype)
        _kernel(f"forward_{sr.name}_{dtype.name}")(
            p.emissions, p.lengths, p.order, gb.num_states, gb.labels, gb.src,
            gb.dst, gb.in_ptr, gb.in_arc, _weight_view(p), p.start, p.final, scratch,
            _workspace(p, max(a_max + 2 * s_max, cap * s_max), dtype),
            _workspace(p, max(s_max, cap * s_max + a_max), np.int32),
            _workspace(p, s_max, np.uint8), cap, scores, p.num_threads,
        )  # fmt: skip
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
    *,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
):
    """log Z under the log semiring and its gradients with respect to every input.

    The gradients are posteriors: ``emission_grad[b, t, c]`` is the probability that
    the path emits class ``c`` at frame ``t``; ``arc_grad[b, a]`` the expected count of
    arc ``a``. They are exact derivatives for any input scores (no normalisation is
    assumed). Memory: one ``T x S`` alpha table per thread (not per example) in the
    input dtype; beta is never stored.

    Parameters
    ----------
    emissions, graphs, lengths, arc_weights, start_weights, final_weights
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
    """
    p = _problem(emissions, graphs, lengths, arc_weights, start_weights, final_weights)
    size, frames, classes = p.emissions.shape
    dtype = p.emissions.dtype
    gb = p.batch
    scores = np.empty(size, dtype=dtype)
    grad_emissions = np.zeros((size, frames, classes), dtype=dtype)
    grad_start = np.zeros((size, gb.max_states), dtype=dtype)
    grad_final = np.zeros((size, gb.max_states), dtype=dtype)
    if p.time_dependent:
        arc_grad = grad_weight = np.zeros((size, frames, gb.max_arcs), dtype=dtype)
    else:
        arc_grad = np.zeros((size, gb.max_arcs), dtype=dtype)
        grad_weight = as_strided(
            arc_grad,
            shape=(size, max(frames, 1), gb.max_arcs),
            strides=(arc_grad.strides[0], 0, arc_grad.strides[1]),
        )
    if size:
        if p.band_weight is not None:
            alpha = _workspace(p, _table_size(p, _BAND_PAD), dtype, int64_indexed=True)
            scratch = _workspace(p, 4 * gb.max_states + _BAND_PAD, dtype)
            grad_band = np.zeros_like(p.band_weight)
            _kernel(f"forward_backward_banded_{dtype.name}")(
                p.emissions, p.lengths, p.order, gb.num_states, gb.labels, gb.band,
                p.band_weight, p.start, p.final, alpha, scratch,
                grad_emissions, grad_band, grad_start, grad_final,
                scores, p.num_threads,
            )  # fmt: skip
            arc_grad[...] = gb._arc_values(grad_band)
        else:
            s_max, a_max, cap = gb.max_states, gb.max_arcs, _ell_cap(gb)
            alpha = _workspace(p, _table_size(p, _BAND_PAD), dtype, int64_indexed=True)
            beta = _workspace(p, 2 * s_max, dtype)
            work = max(a_max + 4 * s_max, 2 * cap * s_max + 2 * s_max + _BAND_PAD)
            _kernel(f"forward_backward_{dtype.name}")(
                p.emissions, p.lengths, p.order, gb.num_states, gb.labels, gb.src,
                gb.dst, gb.in_ptr, gb.in_arc, gb.out_ptr, gb.out_arc,
                _weight_view(p), p.start, p.final, alpha, beta,
                _workspace(p, work, dtype),
                _workspace(p, max(s_max, cap * s_max + a_max), np.int32), cap,
                grad_emissions, grad_weight, grad_start, grad_final,
                scores, p.num_threads,
            )  # fmt: skip
        _raise_if_nan(scores, p)
    return ForwardBackward(scores, grad_emissions, arc_grad, grad_start, grad_final)


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
    p = _problem(emissions, graphs, lengths, arc_weights, start_weights, final_weights)
    size, frames, _ = p.emissions.shape
    dtype = p.emissions.dtype
    gb = p.batch
    scores = np.full(size, -np.inf, dtype=dtype)
    states = np.full((size, frames), -1, dtype=np.int32)
    labels = np.full((size, frames), -1, dtype=np.int32)
    arcs = np.full((size, frames), -1, dtype=np.int32)
    seg = np.full((3, size, max(frames, 1)), -1, dtype=np.int32)
    num_segments = np.zeros(size, dtype=np.int32)
    if size and frames:
        if p.band_weight is not None:
            scratch = _workspace(p, 2 * (gb.max_states + _BAND_PAD), dtype)
            backpointers = _workspace(p, _table_size(p), np.uint8, int64_indexed=True)
            _kernel(f"viterbi_banded_{dtype.name}")(
                p.emissions, p.lengths, p.order, gb.num_states, gb.labels, gb.tokens,
                gb.band, gb.band_arc, p.band_weight, p.start, p.final,
                scratch, backpointers, states, labels, arcs,
                seg[0], seg[1], seg[2], num_segments, scores, p.num_threads,
            )  # fmt: skip
        else:
            s_max, a_max = gb.max_states, gb.max_arcs
            scratch = _workspace(p, 2 * (s_max + _BAND_PAD), dtype)
            if gb.max_in_degree <= 255:
                kind, bp_dtype, cap = "u8", np.uint8, _ell_cap(gb)
            else:
                kind, bp_dtype, cap = "i32", np.int32, 0
            backpointers = _workspace(p, _table_size(p), bp_dtype, int64_indexed=True)
            _kernel(f"viterbi_{dtype.name}_{kind}")(
                p.emissions, p.lengths, p.order, gb.num_states, gb.labels, gb.tokens,
                gb.src, gb.in_ptr, gb.in_arc, _weight_view(p), p.start, p.final,
                scratch, backpointers, _workspace(p, cap * s_max, dtype),
                _workspace(p, cap * s_max + a_max, np.int32), cap, states, labels, arcs,
                seg[0], seg[1], seg[2], num_segments, scores, p.num_threads,
            )  # fmt: skip
        _raise_if_nan(scores, p)
    k = int(num_segments.max(initial=0))
    return Alignment(
        score=scores,
        states=states,
        labels=labels,
        arcs=arcs,
        tokens=seg[0, :, :k].copy(),
        starts=seg[1, :, :k].copy(),
        ends=seg[2, :, :k].copy(),
        num_segments=num_segments,
    )
