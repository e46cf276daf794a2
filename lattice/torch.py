"""torch autograd ops and losses on top of the lattice engine.

The layer is thin: tensors in, zero-copy numpy views to the engine, tensors out.
Nothing below this module imports torch. Every op here says what is differentiable:

==========================  ====================================================
op                          differentiable with respect to
==========================  ====================================================
:func:`ctc_loss`            ``log_probs`` (the true derivative, for any scores)
:func:`lattice_score`       ``emissions``, ``frame_weights``, ``arc_weights``,
                            ``start_weights``, ``final_weights``
:func:`viterbi_align`       nothing (returns integer paths and detached scores)
:class:`CTCLoss`            as :func:`ctc_loss`
:class:`SegmentationLoss`   ``log_probs``
:class:`ViterbiLoss`        ``log_probs`` (along the fixed best alignment)
==========================  ====================================================

Double backward is not supported: the gradients are computed by the engine, not by
differentiable torch operations. Bad input raises :class:`LatticeValueError` or
:class:`LatticeTypeError`, which are ``ValueError`` / ``TypeError`` and
``RuntimeError`` at once.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch

from . import engine
from ._torch_errors import LatticeTypeError, LatticeValueError, torch_errors
from .batch import batch
from .graph import Graph
from .registry import build_batch
from .semiring import get_semiring

__all__ = [
    "CTCLoss",
    "LatticeTypeError",
    "LatticeValueError",
    "SegmentationLoss",
    "ViterbiAlignment",
    "ViterbiLoss",
    "ctc_loss",
    "lattice_score",
    "viterbi_align",
]

_REDUCTIONS = ("none", "mean", "sum")
_NAN_MODES = ("propagate", "raise")


# ----------------------------------------------------------------------------------
# tensors <-> numpy at the edge
# ----------------------------------------------------------------------------------


def _check_device(name, tensor):
    if tensor.device.type != "cpu":
        raise NotImplementedError(
            f"{name} is on {tensor.device}; lattice has no GPU backend yet, so its "
            "torch ops take CPU tensors only (move the tensor with .cpu())"
        )


def _compute_dtype(name, tensor):
    """The dtype the engine computes in for a floating tensor (half types upcast)."""
    if not torch.is_floating_point(tensor):
        raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    if tensor.dtype in (torch.float32, torch.float64):
        return tensor.dtype
    return torch.float32


def _to_numpy(tensor, dtype):
    """A numpy view of ``tensor`` (copied only to change dtype or fix the last stride)."""
    t = tensor.detach()
    if t.dtype != dtype:
        t = t.to(dtype)
    if t.dim() and t.stride(-1) != 1:
        t = t.contiguous()
    return t.numpy()


def _optional_numpy(name, tensor, dtype):
    if tensor is None:
        return None
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(tensor).__name__}")
    _check_device(name, tensor)
    _compute_dtype(name, tensor)
    return _to_numpy(tensor, dtype)


def _is_integer(dtype):
    """Whether a torch dtype holds integers (bool, floating and complex do not)."""
    return not (dtype.is_floating_point or dtype.is_complex or dtype == torch.bool)


def _check_blank(blank):
    if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)):
        raise TypeError(f"blank must be an int, got {blank!r}")
    return int(blank)


def _lengths_numpy(name, lengths, size):
    if lengths is None:
        return None
    if isinstance(lengths, torch.Tensor):
        if not _is_integer(lengths.dtype):
            raise TypeError(f"{name} must hold integers, got {lengths.dtype}")
        arr = lengths.detach().cpu().numpy()
    else:
        arr = np.asarray(lengths)
        if arr.size and (arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer)):
            raise TypeError(f"{name} must hold integers, got {arr.dtype}")
    arr = arr.reshape(-1).astype(np.int64)
    if arr.shape != (size,):
        raise ValueError(f"{name} must have {size} entries, got {arr.shape[0]}")
    return arr


# ----------------------------------------------------------------------------------
# the differentiable lattice score
# ----------------------------------------------------------------------------------


class _LatticeScore(torch.autograd.Function):
    """log Z (log semiring) or best score (max semiring) and its engine gradients."""

    @staticmethod
    def forward(ctx, emissions, arc_weights, start_weights, final_weights, gb, lengths,
                semiring, grad_enabled, nan):
        dtype = _compute_dtype("emissions", emissions)
        em = _to_numpy(emissions, dtype)
        aw = _optional_numpy("arc_weights", arc_weights, dtype)
        sw = _optional_numpy("start_weights", start_weights, dtype)
        fw = _optional_numpy("final_weights", final_weights, dtype)
        overrides = dict(arc_weights=aw, start_weights=sw, final_weights=fw)
        # under torch.no_grad() the inputs may still require grad: compute gradients
        # only when autograd will ask for them (grad mode is read by the caller, as
        # it is always off inside Function.forward)
        needs_grad = grad_enabled and any(ctx.needs_input_grad[:4])
        score, grads = _score(em, gb, lengths, semiring, needs_grad, overrides, nan)
        ctx.grads = grads
        ctx.input_dtypes = tuple(
            None if t is None else t.dtype
            for t in (emissions, arc_weights, start_weights, final_weights)
        )
        # in the dtype computed in: a half type cannot hold scores beyond 65504
        return torch.from_numpy(score)

    @staticmethod
    def backward(ctx, grad_score):
        if torch.is_grad_enabled():
            # create_graph=True: the engine's gradients are constants to autograd, so a
            # second derivative would silently be wrong; refuse it instead
            raise RuntimeError(
                "lattice ops do not support double backward (create_graph=True): "
                "their gradients are computed by the engine, not by torch operations"
            )
        grads = ctx.grads
        if grads is None:
            return (None,) * 9
        out = []
        for need, grad, dtype in zip(ctx.needs_input_grad[:4], grads, ctx.input_dtypes):
            if not need or dtype is None:
                out.append(None)
                continue
            g = torch.from_numpy(grad)
            scale = grad_score.detach().to(g.dtype).reshape((-1,) + (1,) * (g.dim() - 1))
            out.append((g * scale).to(dtype))
        return (*out, None, None, None, None, None)


def _best_path_indicators(ali, gb, shape, time_dependent, dtype):
    """Gradients of the best score: 1 on each (frame, class), arc, start and end used."""
    size, frames, classes = shape
    g_em = np.zeros(shape, dtype=dtype)
    g_arc = np.zeros((size, frames, gb.max_arcs) if time_dependent else (size, gb.max_arcs),
                     dtype=dtype)
    g_start = np.zeros((size, gb.max_states), dtype=dtype)
    g_final = np.zeros((size, gb.max_states), dtype=dtype)
    b_idx, t_idx = np.nonzero(ali.labels >= 0)
    np.add.at(g_em, (b_idx, t_idx, ali.labels[b_idx, t_idx]), 1)
    b_idx, t_idx = np.nonzero(ali.arcs >= 0)
    if time_dependent:
        np.add.at(g_arc, (b_idx, t_idx, ali.arcs[b_idx, t_idx]), 1)
    else:
        np.add.at(g_arc, (b_idx, ali.arcs[b_idx, t_idx]), 1)
    ok = np.flatnonzero(ali.states[:, 0] >= 0)
    g_start[ok, ali.states[ok, 0]] = 1
    lengths = (ali.states >= 0).sum(axis=1)
    g_final[ok, ali.states[ok, lengths[ok] - 1]] = 1
    return g_em, g_arc, g_start, g_final


def _run(em, gb, lengths, semiring, needs_grad, overrides):
    """(scores, gradients) of one engine call; the gradients (emissions, arcs, starts,
    finals) are None unless ``needs_grad``."""
    if not needs_grad:
        return engine.forward(em, gb, lengths, semiring, **overrides), None
    if semiring == "log":
        fb = engine.forward_backward(em, gb, lengths, **overrides)
        return fb.score, (fb.emission_grad, fb.arc_grad, fb.start_grad, fb.final_grad)
    ali = engine.viterbi(em, gb, lengths, **overrides)
    aw = overrides.get("arc_weights")
    time_dependent = aw is not None and aw.ndim == 3
    return ali.score, _best_path_indicators(ali, gb, em.shape, time_dependent, em.dtype)


def _score(em, gb, lengths, semiring, needs_grad, overrides, nan):
    """As :func:`_run`; with ``nan="propagate"`` an example whose score is NaN (NaN
    or +inf emissions where its graph reads them) scores NaN, with NaN gradients,
    instead of the engine's FloatingPointError: what torch's ctc_loss returns."""
    try:
        return _run(em, gb, lengths, semiring, needs_grad, overrides)
    except FloatingPointError:
        if nan == "raise":
            raise
    return _run_propagating_nan(em, gb, lengths, semiring, needs_grad, overrides)


def _run_propagating_nan(em, gb, lengths, semiring, needs_grad, overrides):
    """The rare path of :func:`_score`, after the engine refused a NaN score.

    Only an example holding NaN or +inf emissions within its length can score NaN.
    All run as one batch with those emissions zeroed: that gives the others their
    results, and tells which suspects have no complete path at all (they score
    -inf whatever their emissions, as in torch). Each remaining suspect runs alone,
    where the engine tells whether its score is NaN. A NaN example gets NaN as its
    score and as the gradients of its frames and weights (torch's ctc_loss gives NaN
    on every valid frame), 0 past its length.
    """
    size, frames, _ = em.shape
    lengths = np.full(size, frames) if lengths is None else np.asarray(lengths)
    valid = np.arange(frames) < lengths[:, None]
    bad = np.isnan(em) | np.isposinf(em)
    suspects = (bad.any(axis=2) & valid).any(axis=1)
    score, grads = _run(np.where(bad, 0, em), gb, lengths, semiring, needs_grad, overrides)
    for b in np.flatnonzero(suspects & ~np.isneginf(score)).tolist():
        one = batch([gb.graphs[b]])
        sub = {}
        for name, value in overrides.items():
            width = one.max_arcs if name == "arc_weights" else one.max_states
            sub[name] = None if value is None else value[b : b + 1, ..., :width]
        try:
            s, g = _run(em[b : b + 1], one, lengths[b : b + 1], semiring, needs_grad, sub)
        except FloatingPointError:
            score[b] = np.nan
            if grads is not None:
                for full in grads:
                    full[b] = np.nan
                grads[0][b, lengths[b] :] = 0
            continue
        score[b] = s[0]
        if grads is not None:
            for full, part in zip(grads, g):
                full[b] = 0
                full[(b, ...) + tuple(slice(n) for n in part.shape[1:])] = part[0]
    return score, grads


def _graph_batch(graphs, size):
    if isinstance(graphs, Graph):
        graphs = [graphs] * size
    gb = batch(graphs)
    if len(gb) != size:
        raise ValueError(f"got {len(gb)} graphs for a batch of {size} examples")
    return gb


def _weight_frames(emissions, frame_weights):
    """emissions * frame_weights[..., None], differentiable in both, with 0 * -inf = 0.

    A weight of 0 ignores the frame (its emissions become 0 even where they were
    -inf); -inf emissions of weighted frames stay -inf and pass no gradient to the
    weights (their posterior is 0).
    """
    if not isinstance(frame_weights, torch.Tensor):
        raise TypeError(
            f"frame_weights must be a torch.Tensor, got {type(frame_weights).__name__}"
        )
    _check_device("frame_weights", frame_weights)
    _compute_dtype("frame_weights", frame_weights)
    size, frames, _ = emissions.shape
    if tuple(frame_weights.shape) != (size, frames):
        raise ValueError(
            f"frame_weights must have shape {(size, frames)}, got {tuple(frame_weights.shape)}"
        )
    if not torch.isfinite(frame_weights).all() or (frame_weights < 0).any():
        raise ValueError("frame_weights must be finite and non-negative")
    w = frame_weights.unsqueeze(-1)
    impossible = torch.isneginf(emissions)
    finite = emissions.masked_fill(impossible, 0)
    still_impossible = torch.zeros_like(finite).masked_fill(impossible & (w > 0), -torch.inf)
    return finite * w + still_impossible


@torch_errors
def lattice_score(
    emissions,
    graphs,
    lengths=None,
    semiring="log",
    frame_weights=None,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
    *,
    nan="raise",
):
    """Differentiable total score of alignment graphs: log Z (``"log"``) or best (``"max"``).

    Differentiable with respect to ``emissions``, ``frame_weights``, ``arc_weights``,
    ``start_weights`` and ``final_weights`` (any of them that require grad). Under the
    log semiring the gradients are posteriors (expected counts); under the max
    semiring they are the indicators of the best path (a sub-gradient where paths
    tie). Double backward is not supported.

    Parameters
    ----------
    emissions : Tensor, shape (B, T, C)
        Per-frame scores (float32/float64; float16/bfloat16 computed in float32).
    graphs : sequence of Graph, GraphBatch, or Graph
        One graph per example (a single Graph is used for all).
    lengths : Tensor or sequence of int, shape (B,), optional
        Valid frames per example (default T).
    semiring : {"log", "max"}
    frame_weights : Tensor, shape (B, T), optional
        Each frame's emission scores are multiplied by its weight (0 ignores the
        frame); gradients flow to the weights too.
    arc_weights : Tensor, shape (B, A_max) or (B, T, A_max), optional
        Arc log-weights replacing the graphs' own (time-dependent with a T axis:
        ``arc_weights[b, t, a]`` scores arc ``a`` taken into frame ``t``). Pass a
        tensor that requires grad to learn transition scores.
    start_weights, final_weights : Tensor, shape (B, S_max), optional
        Start / final log-weights replacing the graphs' own.
    nan : {"raise", "propagate"}, default "raise"
        What a NaN score (NaN or +inf emissions where a graph reads them) does:
        raise the engine's ``FloatingPointError``, or score NaN with NaN gradients
        on that example's frames (the other examples are unaffected).

    Returns
    -------
    Tensor, shape (B,)
        Scores in float32 for float16/bfloat16 emissions (a half type cannot hold
        scores beyond 65504), else in the emissions' dtype; ``-inf`` where no path
        fits. Gradients come back in each input's dtype.

    Raises
    ------
    LatticeValueError, LatticeTypeError
        On bad input (they are ``ValueError`` / ``TypeError`` and ``RuntimeError``).
    FloatingPointError
        With ``nan="raise"``, if a score is NaN.

    Examples
    --------
    Learn the weight of the "stay" arcs of a segmentation graph:

    >>> import torch, lattice
    >>> from lattice.torch import lattice_score
    >>> g = lattice.build("segmentation", [0, 1])          # arcs: stay 0, advance, stay 1
    >>> em = torch.zeros(1, 4, 2, requires_grad=True)
    >>> w = torch.zeros(1, 3, requires_grad=True)
    >>> score = lattice_score(em, [g], arc_weights=w)
    >>> round(score.item(), 4)                               # log C(3, 1)
    1.0986
    >>> score.backward()
    >>> w.grad.round(decimals=3).tolist()                    # expected arc counts
    [[1.0, 1.0, 1.0]]
    """
    if not isinstance(emissions, torch.Tensor):
        raise TypeError(f"emissions must be a torch.Tensor, got {type(emissions).__name__}")
    _check_device("emissions", emissions)
    if emissions.dim() != 3:
        raise ValueError(f"emissions must have shape (B, T, C), got {tuple(emissions.shape)}")
    sr = get_semiring(semiring).name
    _check_nan(nan)
    size, frames, _ = emissions.shape
    gb = _graph_batch(graphs, size)
    lengths = _lengths_numpy("lengths", lengths, size)
    if frame_weights is not None:
        emissions = _weight_frames(emissions, frame_weights)
    return _LatticeScore.apply(emissions, arc_weights, start_weights, final_weights, gb,
                               lengths, sr, torch.is_grad_enabled(), nan)


# ----------------------------------------------------------------------------------
# Viterbi alignment
# ----------------------------------------------------------------------------------


class ViterbiAlignment(NamedTuple):
    """Best paths as tensors (see :class:`lattice.Alignment`); no gradient."""

    scores: torch.Tensor
    states: torch.Tensor
    labels: torch.Tensor
    tokens: torch.Tensor
    starts: torch.Tensor
    ends: torch.Tensor
    num_segments: torch.Tensor


@torch_errors
def viterbi_align(emissions, graphs, lengths=None, arc_weights=None, start_weights=None, final_weights=None):
    """Best alignment of every example, as tensors. Not differentiable.

    Parameters
    ----------
    emissions : Tensor, shape (B, T, C)
    graphs, lengths, arc_weights, start_weights, final_weights
        As in :func:`lattice_score`.

    Returns
    -------
    ViterbiAlignment
        ``scores`` (B,) as :func:`lattice_score` returns them (float32 for half
        emissions); ``states``, ``labels`` (B, T) int64 with -1 past each length;
        per-token segments ``tokens``, ``starts``, ``ends`` (B, K) int64 (ends
        exclusive, -1 padded) and ``num_segments`` (B,).

    Examples
    --------
    >>> import torch, lattice
    >>> from lattice.torch import viterbi_align
    >>> em = torch.tensor([[[0., -5.], [0., -5.], [-5., 0.]]])
    >>> ali = viterbi_align(em, [lattice.build("segmentation", [0, 1])])
    >>> ali.states.tolist(), ali.starts.tolist(), ali.ends.tolist()
    ([[0, 0, 1]], [[0, 2]], [[2, 3]])
    """
    if not isinstance(emissions, torch.Tensor):
        raise TypeError(f"emissions must be a torch.Tensor, got {type(emissions).__name__}")
    _check_device("emissions", emissions)
    if emissions.dim() != 3:
        raise ValueError(f"emissions must have shape (B, T, C), got {tuple(emissions.shape)}")
    dtype = _compute_dtype("emissions", emissions)
    size = emissions.shape[0]
    ali = engine.viterbi(
        _to_numpy(emissions, dtype),
        _graph_batch(graphs, size),
        _lengths_numpy("lengths", lengths, size),
        arc_weights=_optional_numpy("arc_weights", arc_weights, dtype),
        start_weights=_optional_numpy("start_weights", start_weights, dtype),
        final_weights=_optional_numpy("final_weights", final_weights, dtype),
    )

    def ints(a):
        return torch.from_numpy(a.astype(np.int64))

    return ViterbiAlignment(
        torch.from_numpy(ali.score),
        ints(ali.states),
        ints(ali.labels),
        ints(ali.tokens),
        ints(ali.starts),
        ints(ali.ends),
        ints(ali.num_segments),
    )


# ----------------------------------------------------------------------------------
# losses with the conventions of torch.nn.functional.ctc_loss
# ----------------------------------------------------------------------------------


class _Sequences(NamedTuple):
    emissions: torch.Tensor  # (B, T, C) view of the (T, B, C) input
    targets: list  # B int64 arrays
    input_lengths: np.ndarray
    target_lengths: np.ndarray
    unbatched: bool


def _sequence_inputs(log_probs, targets, input_lengths, target_lengths):
    """Normalise ctc_loss-style inputs: (T, B, C) or (T, C), padded or concatenated targets."""
    if not isinstance(log_probs, torch.Tensor):
        raise TypeError(f"log_probs must be a torch.Tensor, got {type(log_probs).__name__}")
    _check_device("log_probs", log_probs)
    _compute_dtype("log_probs", log_probs)
    unbatched = log_probs.dim() == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
    if log_probs.dim() != 3:
        raise ValueError(
            f"log_probs must have shape (T, B, C) or (T, C), got {tuple(log_probs.shape)}"
        )
    frames, size, classes = log_probs.shape
    if not (frames and size and classes):  # as torch: "log_probs tensor must not be empty"
        raise ValueError(
            f"log_probs must not be empty, got shape {(frames, size, classes)}"
        )
    if not isinstance(targets, torch.Tensor):
        targets = torch.as_tensor(targets)
    _check_device("targets", targets)
    if not _is_integer(targets.dtype):
        raise TypeError(f"targets must hold integer class ids, got {targets.dtype}")
    if unbatched and targets.dim() == 1 and not (
        isinstance(target_lengths, torch.Tensor) and target_lengths.dim() == 1
    ):
        targets = targets.unsqueeze(0)
    input_lengths = _lengths_numpy("input_lengths", input_lengths, size)
    target_lengths = _lengths_numpy("target_lengths", target_lengths, size)
    if input_lengths.min(initial=0) < 0 or input_lengths.max(initial=0) > frames:
        raise ValueError(f"input_lengths must lie in [0, {frames}] (log_probs.shape[0])")
    if target_lengths.min(initial=0) < 0:
        raise ValueError("target_lengths must be non-negative")
    tg = targets.detach().cpu().numpy().astype(np.int64)
    if targets.dim() == 2 and targets.shape[0] == size:
        if target_lengths.max(initial=0) > targets.shape[1]:
            raise ValueError(
                f"target_lengths exceed the padded target length {targets.shape[1]}"
            )
        used = np.arange(tg.shape[1]) < target_lengths[:, None]
        bad = (used & ((tg < 0) | (tg >= classes))).any(axis=1)
        seqs = [tg[b, : target_lengths[b]] for b in range(size)]
    elif targets.dim() == 1:
        if int(target_lengths.sum()) != targets.shape[0]:
            raise ValueError(
                f"concatenated targets hold {targets.shape[0]} ids but target_lengths "
                f"sum to {int(target_lengths.sum())}"
            )
        example = np.repeat(np.arange(size), target_lengths)
        bad = np.zeros(size, dtype=bool)
        bad[example[(tg < 0) | (tg >= classes)]] = True
        seqs = np.split(tg, np.cumsum(target_lengths)[:-1])
    else:
        raise ValueError(
            f"targets must be padded (B, S) with B = {size}, or concatenated (sum of "
            f"target_lengths,), got shape {tuple(targets.shape)}"
        )
    if bad.any():
        raise ValueError(
            f"targets of example {int(np.argmax(bad))} hold class ids outside "
            f"[0, {classes}) (log_probs.shape[2])"
        )
    return _Sequences(log_probs.transpose(0, 1), seqs, input_lengths, target_lengths, unbatched)


def _reduce(nll, target_lengths, reduction, zero_infinity, unbatched):
    if zero_infinity:
        nll = torch.where(torch.isinf(nll), torch.zeros_like(nll), nll)
    if reduction == "none":
        return nll.squeeze(0) if unbatched else nll
    if reduction == "sum":
        return nll.sum()
    divisor = torch.as_tensor(target_lengths, dtype=nll.dtype).clamp(min=1)
    return (nll / divisor).mean()


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_nan(nan):
    if nan not in _NAN_MODES:
        raise ValueError(f"nan must be one of {_NAN_MODES}, got {nan!r}")


def _sequence_loss(builder, options, log_probs, targets, input_lengths, target_lengths,
                   reduction, zero_infinity, semiring, nan):
    _check_reduction(reduction)
    seq = _sequence_inputs(log_probs, targets, input_lengths, target_lengths)
    gb = build_batch(builder, seq.targets, **options)
    score = lattice_score(seq.emissions, gb, seq.input_lengths, semiring=semiring, nan=nan)
    # an empty input explains an empty target with probability 1 (as in torch)
    empty = (seq.input_lengths == 0) & (seq.target_lengths == 0)
    if empty.any():
        score = score.masked_fill(torch.from_numpy(empty), 0.0)
    if zero_infinity:
        # an impossible example must also contribute a zero gradient; a NaN stays
        # NaN, as in torch
        score = torch.where(torch.isinf(score), score.detach(), score)
    return _reduce(-score, seq.target_lengths, reduction, zero_infinity, seq.unbatched)


@torch_errors
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
             reduction="mean", zero_infinity=False, *, nan="propagate"):
    """The CTC loss, a drop-in for :func:`torch.nn.functional.ctc_loss`.

    Same signature, defaults, input layouts and reductions as torch's. One deliberate
    difference: the gradient is the **true derivative** of the loss with respect to
    ``log_probs`` for any input scores. torch's own backward assumes the input came
    from ``log_softmax`` and returns a different (wrong) gradient otherwise; both agree
    when it did. Differentiable with respect to ``log_probs``.

    Parameters
    ----------
    log_probs : Tensor, shape (T, B, C) or (T, C)
        Per-frame scores, usually ``log_softmax`` outputs; must not be empty (as in
        torch). float16/bfloat16 are computed in float32.
    targets : Tensor, shape (B, S) padded, or (sum(target_lengths),) concatenated
        Class ids; must not contain ``blank``.
    input_lengths, target_lengths : Tensor or tuple of int, shape (B,)
    blank : int, default 0
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides each loss by its target length (clamped to >= 1), then
        averages over the batch.
    zero_infinity : bool, default False
        Replace infinite losses (targets that cannot fit their inputs) and their
        gradients by zero. Decided on the float32/float64 loss, so a large but
        finite loss of float16 inputs is kept.
    nan : {"propagate", "raise"}, default "propagate"
        ``"propagate"`` does what torch does: an example whose loss is NaN (NaN or
        +inf ``log_probs`` at a frame and class its target uses) gets a NaN loss
        and a NaN gradient on its frames, the others are unaffected;
        ``zero_infinity`` does not zero a NaN. ``"raise"`` raises the engine's
        ``FloatingPointError`` naming the examples instead.

    Returns
    -------
    Tensor
        The loss: a scalar, or (B,) with ``reduction="none"``; float32 for
        float16/bfloat16 ``log_probs`` (as torch's under autocast), else their
        dtype. The gradient comes back in the dtype of ``log_probs``.

    Raises
    ------
    LatticeValueError, LatticeTypeError
        On bad input: a ``ValueError`` / ``TypeError`` that is also the
        ``RuntimeError`` torch raises.

    Examples
    --------
    >>> import torch
    >>> from lattice.torch import ctc_loss
    >>> log_probs = torch.randn(50, 3, 10).log_softmax(-1).requires_grad_()
    >>> targets = torch.randint(1, 10, (3, 12))
    >>> lengths, target_lengths = torch.full((3,), 50), torch.tensor([12, 9, 5])
    >>> loss = ctc_loss(log_probs, targets, lengths, target_lengths)
    >>> ref = torch.nn.functional.ctc_loss(log_probs, targets, lengths, target_lengths)
    >>> torch.allclose(loss, ref)
    True
    >>> loss.backward()
    """
    _check_nan(nan)
    return _sequence_loss("ctc", {"blank": _check_blank(blank)}, log_probs, targets,
                          input_lengths, target_lengths, reduction, zero_infinity, "log",
                          nan)


class CTCLoss(torch.nn.Module):
    """The CTC loss as a module, a drop-in for :class:`torch.nn.CTCLoss`.

    See :func:`ctc_loss` (``nan`` as there); differentiable with respect to
    ``log_probs``.

    Examples
    --------
    >>> import torch
    >>> from lattice.torch import CTCLoss
    >>> loss = CTCLoss(blank=0)(torch.randn(20, 2, 5).log_softmax(-1),
    ...                         torch.tensor([[1, 2], [3, 3]]), (20, 20), (2, 2))
    >>> loss.shape
    torch.Size([])
    """

    @torch_errors
    def __init__(self, blank=0, reduction="mean", zero_infinity=False, *, nan="propagate"):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        self.blank = _check_blank(blank)
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.nan = nan

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return ctc_loss(log_probs, targets, input_lengths, target_lengths,
                        self.blank, self.reduction, self.zero_infinity, nan=self.nan)


class SegmentationLoss(torch.nn.Module):
    """Negative log-likelihood summed over all monotone segmentations (no blank).

    Every frame belongs to one target symbol and the symbols appear in order, each for
    at least ``min_frames`` frames (the ``segmentation`` graph). Inputs and ``nan`` as
    in :func:`ctc_loss`; differentiable with respect to ``log_probs``.

    Examples
    --------
    >>> import torch
    >>> from lattice.torch import SegmentationLoss
    >>> lp = torch.zeros(4, 1, 3)                      # T=4, B=1, C=3: every path scores 0
    >>> loss = SegmentationLoss(reduction="none")(lp, torch.tensor([[1, 2]]), (4,), (2,))
    >>> round(-loss.item(), 4)                          # log C(3, 1) paths
    1.0986
    """

    @torch_errors
    def __init__(self, min_frames=1, reduction="mean", zero_infinity=False, *,
                 nan="propagate"):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        self.min_frames = min_frames
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.nan = nan

    @torch_errors
    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return _sequence_loss("segmentation", {"min_frames": self.min_frames}, log_probs,
                              targets, input_lengths, target_lengths, self.reduction,
                              self.zero_infinity, "log", self.nan)


class ViterbiLoss(torch.nn.Module):
    """Hard-alignment (Viterbi) training loss.

    Finds the best alignment of each target with the max semiring, then returns the
    frame-wise negative log-likelihood along it: minus the sum of ``log_probs`` of the
    labels on the best path (plus the graph's arc weights, zero for the built-in
    topologies). This is the iterate-align-and-train scheme in one step: the gradient
    is minus the indicator of the best path, which is held fixed. Inputs and ``nan``
    as in :func:`ctc_loss`; ``topology`` is any registered builder (``"ctc"`` by default)
    and ``options`` its options.

    Examples
    --------
    >>> import torch
    >>> from lattice.torch import ViterbiLoss
    >>> lp = torch.tensor([[[-.1, -3.]], [[-3., -.2]], [[-.3, -3.]]])   # (T=3, B=1, C=2)
    >>> loss = ViterbiLoss(reduction="sum")(lp, torch.tensor([[1]]), (3,), (1,))
    >>> round(loss.item(), 4)                            # best path: blank, 1, blank
    0.6
    """

    @torch_errors
    def __init__(self, topology="ctc", reduction="mean", zero_infinity=False, *,
                 nan="propagate", **options):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        self.nan = nan
        self.topology = topology
        self.options = options
        self.reduction = reduction
        self.zero_infinity = zero_infinity

    @torch_errors
    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return _sequence_loss(self.topology, self.options, log_probs, targets,
                              input_lengths, target_lengths, self.reduction,
                              self.zero_infinity, "max", self.nan)
