"""torch autograd ops and losses on top of the lattice engine.

The layer is thin: tensors in, zero-copy views to the engine (numpy for CPU
tensors, CuPy through DLPack for CUDA tensors, which run on the GPU backend),
tensors out on the same device. Nothing below this module and ``_torch_ops.py``
imports torch. Every op here says
what is differentiable:

==========================  ====================================================
op                          differentiable with respect to
==========================  ====================================================
:func:`ctc_loss`            ``log_probs`` (the true derivative, for any scores)
:func:`lattice_score`       ``emissions``, ``frame_weights``, ``arc_weights``,
                            ``start_weights``, ``final_weights``
:func:`alignment_entropy`   as :func:`lattice_score`
:func:`viterbi_align`       nothing (returns integer paths and detached scores)
:class:`CTCLoss`            as :func:`ctc_loss`
:class:`SegmentationLoss`   ``log_probs``
:class:`ViterbiLoss`        ``log_probs`` (along the fixed best alignment)
:func:`mmi_loss`            ``log_probs``, ``denominator_weights`` and the
                            denominator's start / final weights
:class:`MMILoss`            as :func:`mmi_loss`
==========================  ====================================================

The engine runs inside ``torch.library`` operators (namespace ``lattice``, see
``_torch_ops.py``), which compute the gradients in the forward pass; so the losses
and :func:`lattice_score` and :func:`alignment_entropy` work under ``torch.compile`` (also with
``fullgraph=True``) and ``torch.jit.trace``; torch refuses ``torch.func``
transforms of them. Double backward is not supported: the gradients are computed by
the engine, not by differentiable torch operations. Bad input raises :class:`LatticeValueError` or :class:`LatticeTypeError`,
which are ``ValueError`` / ``TypeError`` and ``RuntimeError`` at once.
"""

from __future__ import annotations

import json
import weakref
from typing import NamedTuple

import numpy as np
import torch

from . import _torch_ops, engine
from ._torch_errors import LatticeTypeError, LatticeValueError, torch_errors
from .batch import GraphBatch, batch
from .graph import Graph
from .semiring import get_semiring

__all__ = [
    "CTCLoss",
    "LatticeTypeError",
    "LatticeValueError",
    "MMILoss",
    "SegmentationLoss",
    "ViterbiAlignment",
    "ViterbiLoss",
    "alignment_entropy",
    "ctc_loss",
    "lattice_score",
    "mmi_loss",
    "viterbi_align",
]

_REDUCTIONS = ("none", "mean", "sum")


# ----------------------------------------------------------------------------------
# checks of what torch.compile sees at trace time: types, devices, dtypes, ranks
# (every check of values happens inside the ops, see _torch_ops.py)
# ----------------------------------------------------------------------------------


def _check_device(name, tensor):
    if tensor.device.type not in ("cpu", "cuda"):
        raise NotImplementedError(
            f"{name} is on {tensor.device}; lattice computes on CPU tensors and, "
            "through its GPU backend (CuPy), on CUDA tensors"
        )


def _check_tensor(name, tensor):
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(tensor).__name__}")
    _check_device(name, tensor)
    if not torch.is_floating_point(tensor):
        raise TypeError(f"{name} must be a floating-point tensor, got {tensor.dtype}")
    return tensor


def _check_emissions(emissions):
    _check_tensor("emissions", emissions)
    if emissions.dim() != 3:
        raise ValueError(f"emissions must have shape (B, T, C), got {tuple(emissions.shape)}")


def _optional_tensor(name, tensor):
    if tensor is None:
        return None
    if not isinstance(tensor, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor or None, got {type(tensor).__name__}")
    return _check_tensor(name, tensor)


def _integer_tensor(name, values, what="integers"):
    """``values`` (a tensor, or anything torch.as_tensor takes) as an integer tensor;
    bool, floating and complex values are refused, naming the argument."""
    if not isinstance(values, torch.Tensor):
        try:
            tensor = torch.as_tensor(values)
        except (TypeError, ValueError, RuntimeError) as error:
            raise TypeError(f"{name} must hold {what}, got {values!r}") from error
        if tensor.numel() == 0:  # () or [] hold no value of any type
            tensor = tensor.to(torch.int64)
    else:
        tensor = values
    _check_device(name, tensor)
    dtype = tensor.dtype
    if dtype.is_floating_point or dtype.is_complex or dtype == torch.bool:
        raise TypeError(f"{name} must hold {what}, got {dtype}")
    return tensor


def _lengths_tensor(name, lengths):
    return None if lengths is None else _integer_tensor(name, lengths).reshape(-1)


def _check_reduction(reduction):
    if reduction not in _REDUCTIONS:
        raise ValueError(f"reduction must be one of {_REDUCTIONS}, got {reduction!r}")


def _check_nan(nan):
    if nan not in _torch_ops.NAN_MODES:
        raise ValueError(f"nan must be one of {_torch_ops.NAN_MODES}, got {nan!r}")


def _check_blank(blank):
    if isinstance(blank, bool) or not isinstance(blank, (int, np.integer, torch.SymInt)):
        raise TypeError(f"blank must be an int, got {blank!r}")
    if blank < 0:
        raise ValueError(f"blank must be >= 0, got {blank}")
    return int(blank) if isinstance(blank, np.integer) else blank


def _needs_grad(*tensors):
    # under torch.no_grad() inputs may still require grad: the engine computes
    # gradients only when autograd will ask for them. torch.jit.trace records the
    # answer as a constant (and checks the trace under no_grad), so a traced op
    # always computes them.
    if torch.jit.is_tracing():
        return True
    return torch.is_grad_enabled() and any(
        t is not None and t.requires_grad for t in tensors
    )


# ----------------------------------------------------------------------------------
# the differentiable lattice score
# ----------------------------------------------------------------------------------


_PACKED = weakref.WeakKeyDictionary()  # GraphBatch -> its packed graph


@torch.compiler.disable  # numpy work that torch.compile must never trace
def _pack(graphs):
    gb = batch([graphs] if isinstance(graphs, Graph) else graphs)
    if torch.jit.is_tracing():  # a fresh constant: the trace check compares origins
        return _torch_ops.pack_graphs(gb)
    packed = _PACKED.get(gb)
    if packed is None:
        packed = _torch_ops.pack_graphs(gb)
        if gb is graphs:
            _PACKED[gb] = packed
    return packed


@torch.compiler.assume_constant_result
def _packed_graphs(graphs):
    """``graphs`` (a GraphBatch, a sequence of Graph, or one Graph) packed into one
    tensor, the form ``lattice::graph_score`` takes them in.

    Made once per GraphBatch the caller keeps. Under ``torch.compile`` this runs at
    trace time, outside the traced code: the packed graph is a constant of the
    compiled graph, which is guarded on the ``graphs`` object (another object
    recompiles).
    """
    return _pack(graphs)


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
    checkpoint=None,
):
    """Differentiable total score of alignment graphs: log Z (``"log"``) or best (``"max"``).

    Differentiable with respect to ``emissions``, ``frame_weights``, ``arc_weights``,
    ``start_weights`` and ``final_weights`` (any of them that require grad). Under the
    log semiring the gradients are posteriors (expected counts); under the max
    semiring they are the indicators of the best path (a sub-gradient where paths
    tie). The engine computes them in the forward pass (inside the custom op
    ``lattice::graph_score``); works under ``torch.compile``. Double backward is not
    supported.

    Parameters
    ----------
    emissions : Tensor, shape (B, T, C)
        Per-frame scores (float32/float64; float16/bfloat16 computed in float32).
    graphs : sequence of Graph, GraphBatch, or Graph
        One graph per example (a single Graph is used for all). Under
        ``torch.compile`` the graphs are a constant of the compiled code: build a
        GraphBatch once and reuse it (another object recompiles).
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
    checkpoint : None, bool or int >= 1, optional
        How the gradients' alpha table is stored, as in
        :func:`lattice.forward_backward`: by the memory budget (None), with
        checkpoints (True, or every ``k`` frames) or whole (False). The results
        are the same.

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
    sr = get_semiring(semiring).name
    _check_nan(nan)
    code = _torch_ops.checkpoint_code(checkpoint)
    inputs, graph, lengths = _graph_op_inputs(emissions, graphs, lengths, frame_weights,
                                              arc_weights, start_weights, final_weights)
    return _torch_ops.graph_score(
        *inputs, graph, isinstance(graphs, Graph), lengths, sr, _needs_grad(*inputs), nan,
        code,
    )


def _graph_op_inputs(emissions, graphs, lengths, frame_weights, arc_weights,
                     start_weights, final_weights):
    """The checked inputs of a graph op: the emissions and weights (a tensor given
    twice gets a view, which torch.compile needs for an autograd.Function), the
    packed graphs and the lengths."""
    _check_emissions(emissions)
    weights = tuple(
        _optional_tensor(name, t)
        for name, t in (("frame_weights", frame_weights), ("arc_weights", arc_weights),
                        ("start_weights", start_weights), ("final_weights", final_weights))
    )  # fmt: skip
    if torch.compiler.is_compiling() and not isinstance(graphs, (Graph, GraphBatch)):
        raise TypeError(
            "under torch.compile, graphs must be a GraphBatch (build it once, outside "
            "the compiled code, with lattice.batch) or one Graph, got "
            f"{type(graphs).__name__}"
        )
    graph = _packed_graphs(graphs)
    lengths = _lengths_tensor("lengths", lengths)
    inputs = [emissions, *weights]
    for i in range(1, len(inputs)):
        if inputs[i] is not None and any(inputs[i] is inputs[j] for j in range(i)):
            inputs[i] = inputs[i].view_as(inputs[i])
    return inputs, graph, lengths


def alignment_entropy(
    emissions,
    graphs,
    lengths=None,
    frame_weights=None,
    arc_weights=None,
    start_weights=None,
    final_weights=None,
    *,
    nan="raise",
):
    """Differentiable entropy (nats) of the posterior distribution over each example's
    alignments (paths of its graph).

    The same quantity as :func:`lattice.entropy`, differentiable with respect to
    ``emissions``, ``frame_weights``, ``arc_weights``, ``start_weights`` and
    ``final_weights``. The engine computes the gradient (minus the covariance, over
    paths, of each input's count with the path score) in the forward pass with one
    extra backward recursion, in float64, inside the custom op
    ``lattice::graph_entropy``; works under ``torch.compile``. Double backward is
    not supported. Use it as a regulariser: adding ``-beta * alignment_entropy`` to
    a CTC loss spreads the alignment (maximum-entropy CTC), adding ``+beta *``
    sharpens it.

    Parameters
    ----------
    emissions, graphs, lengths, frame_weights, arc_weights, start_weights, final_weights
        As in :func:`lattice_score`.
    nan : {"raise", "propagate"}, default "raise"
        As in :func:`lattice_score`: NaN or +inf emissions where a graph reads them
        raise ``FloatingPointError``, or give that example a NaN entropy and NaN
        gradients.

    Returns
    -------
    Tensor, shape (B,)
        Entropies (float32 for float16/bfloat16 emissions, else their dtype); 0 for
        an example with no path, whose gradients are 0.

    Raises
    ------
    LatticeValueError, LatticeTypeError
        On bad input.
    FloatingPointError
        With ``nan="raise"``, if a score is NaN.

    Examples
    --------
    Uniform emissions make the three paths of a segmentation over 4 frames equally
    likely, the largest entropy three paths can have, so its gradient vanishes:

    >>> import torch, lattice
    >>> from lattice.torch import alignment_entropy
    >>> g = lattice.build("segmentation", [0, 1])
    >>> em = torch.zeros(1, 4, 2, dtype=torch.float64, requires_grad=True)
    >>> h = alignment_entropy(em, [g])
    >>> round(h.item(), 4)                                   # log 3
    1.0986
    >>> h.backward()
    >>> em.grad.abs().max().item()
    0.0

    Elsewhere it points to flatter alignments:

    >>> em = torch.tensor([[[0.0, 0.0], [2.0, 0.0], [0.0, 0.0], [0.0, 0.0]]],
    ...                   dtype=torch.float64, requires_grad=True)
    >>> alignment_entropy(em, [g]).backward()
    >>> bool(em.grad[0, 1, 0] < 0)   # a higher score of staying at frame 1: less entropy
    True
    """
    _check_nan(nan)
    inputs, graph, lengths = _graph_op_inputs(emissions, graphs, lengths, frame_weights,
                                              arc_weights, start_weights, final_weights)
    return _torch_ops.graph_entropy(
        *inputs, graph, isinstance(graphs, Graph), lengths, _needs_grad(*inputs), nan
    )


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


@torch.compiler.disable
@torch_errors
def viterbi_align(emissions, graphs, lengths=None, arc_weights=None, start_weights=None,
                  final_weights=None, *, checkpoint=None):
    """Best alignment of every example, as tensors. Not differentiable.

    It returns integer paths of data-dependent sizes, so ``torch.compile`` runs it
    eagerly (a graph break; inside ``fullgraph=True`` code it raises).

    Parameters
    ----------
    emissions : Tensor, shape (B, T, C)
    graphs, lengths, arc_weights, start_weights, final_weights
        As in :func:`lattice_score`.
    checkpoint : None, bool or int >= 1, optional
        As in :func:`lattice.viterbi`: long inputs keep an alpha row every ``k``
        frames and recompute the backpointers block by block (the same path).

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
    _check_emissions(emissions)
    dtype = _torch_ops.compute_dtype(emissions.dtype)
    lengths = _lengths_tensor("lengths", lengths)

    def array(name, tensor):
        tensor = _optional_tensor(name, tensor)
        return None if tensor is None else _torch_ops.to_engine(tensor, dtype)

    with _torch_ops.device_context(emissions):  # CUDA: the GPU backend, torch's stream
        ali = engine.viterbi(
            _torch_ops.to_engine(emissions, dtype),
            graphs,
            None if lengths is None else _torch_ops.to_numpy(lengths),
            arc_weights=array("arc_weights", arc_weights),
            start_weights=array("start_weights", start_weights),
            final_weights=array("final_weights", final_weights),
            checkpoint=checkpoint,
        )

        def ints(a):
            return _torch_ops.from_engine(a).to(torch.int64)

        return ViterbiAlignment(
            _torch_ops.from_engine(ali.score),
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
    targets: torch.Tensor  # padded (B, S) or concatenated
    input_lengths: torch.Tensor  # (B,)
    target_lengths: torch.Tensor  # (B,)
    unbatched: bool


def _sequence_inputs(log_probs, targets, input_lengths, target_lengths):
    """Normalise ctc_loss-style inputs: (T, B, C) or (T, C), padded or concatenated
    targets, lengths as tensors or sequences. The op checks their values."""
    _check_tensor("log_probs", log_probs)
    unbatched = log_probs.dim() == 2
    if unbatched:
        log_probs = log_probs.unsqueeze(1)
    if log_probs.dim() != 3:
        raise ValueError(
            f"log_probs must have shape (T, B, C) or (T, C), got {tuple(log_probs.shape)}"
        )
    targets = _integer_tensor("targets", targets, "integer class ids")
    if unbatched and targets.dim() == 1 and not (
        isinstance(target_lengths, torch.Tensor) and target_lengths.dim() == 1
    ):
        targets = targets.unsqueeze(0)
    return _Sequences(log_probs.transpose(0, 1), targets,
                      _lengths_tensor("input_lengths", input_lengths),
                      _lengths_tensor("target_lengths", target_lengths), unbatched)


def _loss(score, seq, reduction, zero_infinity):
    """The reduced negative log-likelihood of the scores from an op."""
    return _reduced(-score, seq, reduction, zero_infinity)


def _op_reduction(seq, reduction, zero_infinity):
    """The reduction the op may do itself (``"sum"``, ``"mean"``), or ``"none"``
    where :func:`_reduced` must: no reduction, ``zero_infinity`` (which needs the
    losses first), an empty batch (whose mean is NaN)."""
    if zero_infinity or seq.emissions.shape[0] == 0:
        return "none"
    return reduction


def _reduced(nll, seq, reduction, zero_infinity):
    """The reduction of the negative log-likelihoods ``nll`` (B,)."""
    if zero_infinity:
        # an impossible example contributes a zero loss and a zero gradient; a NaN
        # stays NaN, as in torch
        nll = torch.where(torch.isinf(nll), nll.detach(), nll)
        nll = torch.where(torch.isinf(nll), torch.zeros_like(nll), nll)
    if reduction == "none":
        return nll.squeeze(0) if seq.unbatched else nll
    if reduction == "sum":
        return nll.sum()
    # lengths may sit on the host while the scores are on a GPU
    return (nll / seq.target_lengths.to(nll.device, nll.dtype).clamp(min=1)).mean()


def _sequence_loss(builder, options, log_probs, targets, input_lengths, target_lengths,
                   reduction, zero_infinity, semiring, nan, checkpoint=-1):
    seq = _sequence_inputs(log_probs, targets, input_lengths, target_lengths)
    score = _torch_ops.sequence_score(
        seq.emissions, seq.targets, seq.input_lengths, seq.target_lengths, builder,
        options, semiring, _needs_grad(seq.emissions), nan, checkpoint,
    )  # fmt: skip
    return _loss(score, seq, reduction, zero_infinity)


def _encode_options(topology, options):
    """The builder options as JSON text, the form the op takes them in."""

    def plain(value):
        if isinstance(value, np.generic):
            return value.item()
        raise TypeError(
            f"the options of {topology!r} must be None, bools, numbers, strings or "
            f"lists of them, got {type(value).__name__}"
        )

    return json.dumps(options, sort_keys=True, default=plain)


@torch_errors
def ctc_loss(log_probs, targets, input_lengths, target_lengths, blank=0,
             reduction="mean", zero_infinity=False, *, nan="propagate", checkpoint=None):
    """The CTC loss, a drop-in for :func:`torch.nn.functional.ctc_loss`.

    Same signature, defaults, input layouts and reductions as torch's. One deliberate
    difference: the gradient is the **true derivative** of the loss with respect to
    ``log_probs`` for any input scores. torch's own backward assumes the input came
    from ``log_softmax`` and returns a different (wrong) gradient otherwise; both agree
    when it did. Differentiable with respect to ``log_probs``; the engine computes
    the gradient in the forward pass (inside the custom op ``lattice::ctc_score``),
    and the loss works under ``torch.compile``.

    Parameters
    ----------
    log_probs : Tensor, shape (T, B, C) or (T, C)
        Per-frame scores, usually ``log_softmax`` outputs; must not be empty (as in
        torch). float16/bfloat16 are computed in float32.
    targets : Tensor, shape (B, S) padded, or (sum(target_lengths),) concatenated
        Class ids (integers); must not contain ``blank``.
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
    checkpoint : None, bool or int >= 1, optional
        How the alpha table of the gradient is stored (see
        :func:`lattice.forward_backward`): by the memory budget (None, so that a
        long input checkpoints instead of running out of memory), with checkpoints
        (True, or every ``k`` frames) or whole (False). The loss and gradient are
        the same bits in every case.

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
    _check_reduction(reduction)
    _check_nan(nan)
    blank = _check_blank(blank)
    code = _torch_ops.checkpoint_code(checkpoint)
    seq = _sequence_inputs(log_probs, targets, input_lengths, target_lengths)
    # the op returns the losses and their gradient (negated in the kernel, not by
    # a pass of torch's over the gradient), and reduces them itself where it can
    # (its kernel writes the reduction's gradient: no pass of torch's to weigh it)
    in_op = _op_reduction(seq, reduction, zero_infinity)
    nll = _torch_ops.ctc_score(
        seq.emissions, seq.targets, seq.input_lengths, seq.target_lengths, blank,
        _needs_grad(seq.emissions), nan, code, True, in_op,
    )  # fmt: skip
    if in_op != "none":
        return nll
    return _reduced(nll, seq, reduction, zero_infinity)


class CTCLoss(torch.nn.Module):
    """The CTC loss as a module, a drop-in for :class:`torch.nn.CTCLoss`.

    See :func:`ctc_loss` (``nan`` and ``checkpoint`` as there); differentiable with
    respect to ``log_probs``.

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
    def __init__(self, blank=0, reduction="mean", zero_infinity=False, *, nan="propagate",
                 checkpoint=None):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        _torch_ops.checkpoint_code(checkpoint)
        self.blank = _check_blank(blank)
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.nan = nan
        self.checkpoint = checkpoint

    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return ctc_loss(log_probs, targets, input_lengths, target_lengths, self.blank,
                        self.reduction, self.zero_infinity, nan=self.nan,
                        checkpoint=self.checkpoint)


class SegmentationLoss(torch.nn.Module):
    """Negative log-likelihood summed over all monotone segmentations (no blank).

    Every frame belongs to one target symbol and the symbols appear in order, each for
    at least ``min_frames`` frames (the ``segmentation`` graph; ``min_frames`` is
    fixed at construction). Inputs, ``nan``, ``checkpoint`` and dtypes as in
    :func:`ctc_loss`; differentiable with respect to ``log_probs``.

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
                 nan="propagate", checkpoint=None):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        _torch_ops.checkpoint_code(checkpoint)
        self.checkpoint = checkpoint
        self._min_frames = min_frames
        self._options = _encode_options("segmentation", {"min_frames": min_frames})
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.nan = nan

    @property
    def min_frames(self):
        """The least number of frames of a symbol (read-only)."""
        return self._min_frames

    @torch_errors
    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return _sequence_loss("segmentation", self._options, log_probs, targets,
                              input_lengths, target_lengths, self.reduction,
                              self.zero_infinity, "log", self.nan,
                              _torch_ops.checkpoint_code(self.checkpoint))


class ViterbiLoss(torch.nn.Module):
    """Hard-alignment (Viterbi) training loss.

    Finds the best alignment of each target with the max semiring, then returns the
    frame-wise negative log-likelihood along it: minus the sum of ``log_probs`` of the
    labels on the best path (plus the graph's arc weights, zero for the built-in
    topologies). This is the iterate-align-and-train scheme in one step: the gradient
    is minus the indicator of the best path, which is held fixed. Inputs, ``nan``,
    ``checkpoint`` and dtypes as in :func:`ctc_loss`; ``topology`` is any registered builder
    (``"ctc"`` by default) and ``options`` its options (None, bools, numbers,
    strings or lists of them), both fixed at construction.

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
                 nan="propagate", checkpoint=None, **options):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        _torch_ops.checkpoint_code(checkpoint)
        self.checkpoint = checkpoint
        if not isinstance(topology, str):
            raise TypeError(f"topology must be a builder name, got {topology!r}")
        self._topology = topology
        self._options = dict(options)
        self._encoded = _encode_options(topology, options)
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.nan = nan

    @property
    def topology(self):
        """The builder's name (read-only)."""
        return self._topology

    @property
    def options(self):
        """A copy of the builder's options (read-only)."""
        return dict(self._options)

    @torch_errors
    def forward(self, log_probs, targets, input_lengths, target_lengths):
        return _sequence_loss(self._topology, self._encoded, log_probs, targets,
                              input_lengths, target_lengths, self.reduction,
                              self.zero_infinity, "max", self.nan,
                              _torch_ops.checkpoint_code(self.checkpoint))


# ----------------------------------------------------------------------------------
# MMI (CTC-CRF): the CTC numerator of each target against one shared denominator
# ----------------------------------------------------------------------------------


def _denominator_graphs(denominator, size):
    """``(graphs, shared, one)``: what the graph op takes (``shared``: its one graph
    serves every example) and the one graph, or None for B different graphs."""
    if isinstance(denominator, Graph):
        return denominator, True, denominator
    if isinstance(denominator, GraphBatch):
        if len(denominator) == 1:
            return denominator, True, denominator.graphs[0]
        if len(denominator) == size:
            return denominator, False, denominator.shared_graph
        raise ValueError(
            f"denominator must be one Graph, or a GraphBatch of 1 or B = {size} graphs "
            f"(one per example), got a GraphBatch of {len(denominator)}"
        )
    raise TypeError(
        "denominator must be a lattice.Graph (e.g. lattice.build('ctc_denominator', "
        f"transcripts, num_tokens=...)) or a GraphBatch, got {type(denominator).__name__}"
    )


def _check_mmi_options(ctc_weight, numerator_lm):
    """``ctc_weight`` as a float, checked with ``numerator_lm``."""
    if isinstance(ctc_weight, bool) or not isinstance(ctc_weight, (int, float, np.number)):
        raise TypeError(f"ctc_weight must be a real number, got {ctc_weight!r}")
    if not 0 <= float(ctc_weight) < float("inf"):
        raise ValueError(f"ctc_weight must be finite and >= 0, got {ctc_weight}")
    if not isinstance(numerator_lm, (bool, np.bool_)):
        raise TypeError(f"numerator_lm must be a bool, got {numerator_lm!r}")
    return float(ctc_weight)


def _denominator_override(name, tensor, size, one, count, what):
    """A denominator weight override: (B, n) as given, or (n,) for one graph,
    broadcast to every example (autograd then sums its gradient over the batch)."""
    tensor = _optional_tensor(name, tensor)
    if tensor is None or tensor.dim() == 2:
        return tensor  # (B, n): the op checks the shape
    if tensor.dim() != 1:
        raise ValueError(f"{name} must have shape ({what},) or (B, {what}_max), got "
                         f"{tuple(tensor.shape)}")
    if one is None:
        raise ValueError(f"{name} of shape ({what},) needs one denominator graph; for "
                         f"a batch of B different graphs give shape (B, {what}_max)")
    if tensor.shape[0] != count(one):
        raise ValueError(f"{name} must have shape ({what},) = ({count(one)},), one "
                         f"value per {'arc' if what == 'A' else 'state'} of the "
                         f"denominator, got {tuple(tensor.shape)}")
    return tensor.expand(size, tensor.shape[0])


@torch.compiler.disable  # numpy work on the targets
def _target_emissions(seq, blank, dtype):
    """One-hot (B, K', C) emissions of one labelling of each target (its tokens, a
    blank between two equal ones; one blank for an empty target) and their lengths
    K': the denominator scores them with the weight of the target's labellings."""
    size, frames, classes = seq.emissions.shape
    targets, _, _ = _torch_ops._sequences(seq.targets, seq.input_lengths,
                                          seq.target_lengths, size, frames, classes)
    labellings = []
    for t in targets:
        k = t.shape[0]
        shift = np.concatenate([[0], np.cumsum(t[1:] == t[:-1])]).astype(np.int64)
        lab = np.full(max(1, k + int(shift[-1])), blank)  # one blank: no token
        lab[np.arange(k) + shift[:k]] = t
        labellings.append(lab)
    lengths = np.array([lab.shape[0] for lab in labellings], dtype=np.int64)
    em = np.full((size, int(lengths.max(initial=1)), classes), -np.inf)
    for b, lab in enumerate(labellings):
        em[b, np.arange(lab.shape[0]), lab] = 0.0
    return (torch.from_numpy(em).to(seq.emissions.device, dtype),
            torch.from_numpy(lengths))


@torch.compiler.disable  # numpy work on the targets and the graph between its ops
@torch_errors
def mmi_loss(log_probs, targets, input_lengths, target_lengths, denominator, blank=0,
             reduction="mean", zero_infinity=False, ctc_weight=0.0,
             denominator_weights=None, *, denominator_start_weights=None,
             denominator_final_weights=None, numerator_lm=True, nan="propagate",
             checkpoint=None):
    """The MMI (CTC-CRF) loss: each target's CTC score against one shared denominator.

    With ``denominator`` the graph of a token n-gram over the CTC topology
    (``lattice.build("ctc_denominator", transcripts, num_tokens=C)``), every frame
    labelling ``pi`` has the weight ``w(pi) = exp(sum_t log_probs[t, pi_t])
    P_LM(B(pi))``, ``B`` the CTC collapse, and the loss of an example is minus the
    log-posterior of its target ``l`` (Xiang & Ou 2019's CTC-CRF; LF-MMI with a
    CTC topology)::

        loss = -(log Z_num - log Z_den)
        log Z_num = log sum_{B(pi) = l} w(pi) = ctc(l) + log P_LM(l)
        log Z_den = log sum_pi w(pi)

    so it lies in ``[0, inf)`` and is 0 when the model leaves no mass to other
    token sequences. ``ctc(l)`` is the usual CTC log-likelihood (the CTC graph of
    each target, as in :func:`ctc_loss`); ``log P_LM(l)`` is the denominator's
    weight of one labelling of ``l`` (its tokens, a blank between repeats), a
    second, short pass over the denominator. With ``numerator_lm=False`` the
    numerator is ``ctc(l)`` alone: the loss is lower by the constant
    ``-log P_LM(l)`` (it may go below 0) and the gradient to ``log_probs`` is the
    same. ``+ ctc_weight *`` :func:`ctc_loss` (same reduction) is added when
    ``ctc_weight`` is not 0, a common regulariser of MMI training.

    Memory: ``denominator`` is one graph for every example; a ``Graph`` (or a
    ``GraphBatch`` of one graph) is stored once however large the batch
    (:attr:`lattice.GraphBatch.shared_graph`), never copied B times. The engine's
    per-example buffers (alpha rows, and the arc gradients of each example) still
    grow with B.

    It prepares the targets and the denominator with numpy between its ops, so
    ``torch.compile`` runs it eagerly (a graph break; inside ``fullgraph=True``
    code it raises), with the same loss and gradients.

    Differentiable with respect to ``log_probs`` and, when given and requiring
    grad, ``denominator_weights``, ``denominator_start_weights`` and
    ``denominator_final_weights`` (learning the LM, or a weight scale on it: they
    enter both ``log P_LM(l)`` and ``log Z_den``, so with ``numerator_lm=True``
    their gradient is the target's arc counts minus the expected ones; without
    the numerator's term it only pushes every weight down). A 1-D override is
    broadcast to every example and its gradient is **summed over the batch**.

    Parameters
    ----------
    log_probs : Tensor, shape (T, B, C) or (T, C)
        Per-frame log-probabilities, as in :func:`ctc_loss`.
    targets, input_lengths, target_lengths
        As in :func:`ctc_loss`: padded (B, S) or concatenated targets, no blank.
    denominator : Graph or GraphBatch
        One graph for every example (a GraphBatch of 1, or of B graphs, one per
        example, also works). Its labels must be below C, and it must use the same
        ``blank``. :class:`MMILoss` packs it once; ``mmi_loss`` with a ``Graph``
        repacks it on every call (``O(arcs)``): pass ``lattice.batch([g])``, built
        once, to avoid that.
    blank : int, default 0
    reduction : {"mean", "sum", "none"}
        ``"mean"`` divides each example's loss by its target length (clamped to
        >= 1), then averages over the batch, like :func:`ctc_loss`.
    zero_infinity : bool, default False
        Replace infinite losses (a target that cannot fit its frames, or that the
        denominator cannot emit) and their gradients by zero.
    ctc_weight : float, default 0.0
        Weight (>= 0) of the CTC loss added to the MMI loss.
    denominator_weights : Tensor, shape (A,) or (B, A_max), optional
        Arc log-weights replacing the denominator's own.
    denominator_start_weights, denominator_final_weights : Tensor, shape (S,) or (B, S_max), optional
        Start / final log-weights replacing the denominator's own.
    numerator_lm : bool, default True
        Include ``log P_LM(l)`` in the numerator (see above).
    nan : {"propagate", "raise"}, default "propagate"
        As in :func:`ctc_loss`.
    checkpoint : None, bool or int >= 1, optional
        As in :func:`ctc_loss`, for the numerator and the denominator passes (the
        numerator's LM pass is as short as the targets).

    Returns
    -------
    Tensor
        A scalar, or (B,) with ``reduction="none"``; float32 for float16/bfloat16
        ``log_probs``, else their dtype. An example of no frames has the loss 0 if
        its target is empty (probability 1, as in :func:`ctc_loss`), else inf.

    Raises
    ------
    LatticeValueError, LatticeTypeError
        On bad input (also ``RuntimeError``), naming the argument.

    Examples
    --------
    >>> import torch, lattice
    >>> from lattice.torch import mmi_loss
    >>> den = lattice.build("ctc_denominator", [[1, 2], [2, 3, 1], [3, 3]],
    ...                     num_tokens=4)
    >>> _ = torch.manual_seed(0)
    >>> x = torch.randn(20, 2, 4, dtype=torch.float64, requires_grad=True)
    >>> log_probs = x.log_softmax(-1)
    >>> targets, target_lengths = torch.tensor([[1, 2, 3], [3, 3, 0]]), (3, 2)
    >>> loss = mmi_loss(log_probs, targets, (20, 20), target_lengths, den,
    ...                 reduction="none")
    >>> posterior = torch.exp(-loss)       # P(target | x) under the CTC-CRF model
    >>> bool(((0 < posterior) & (posterior < 1)).all())
    True
    >>> loss.sum().backward()
    """
    _check_reduction(reduction)
    _check_nan(nan)
    blank = _check_blank(blank)
    ctc_weight = _check_mmi_options(ctc_weight, numerator_lm)
    code = _torch_ops.checkpoint_code(checkpoint)
    seq = _sequence_inputs(log_probs, targets, input_lengths, target_lengths)
    size = seq.emissions.shape[0]
    graphs, shared, one = _denominator_graphs(denominator, size)
    weights = (
        _denominator_override("denominator_weights", denominator_weights, size, one,
                              lambda g: g.num_arcs, "A"),
        _denominator_override("denominator_start_weights", denominator_start_weights,
                              size, one, lambda g: g.num_states, "S"),
        _denominator_override("denominator_final_weights", denominator_final_weights,
                              size, one, lambda g: g.num_states, "S"),
    )  # fmt: skip
    # the numerator: the CTC graph of each target (the op checks targets, lengths)
    num = _torch_ops.ctc_score(
        seq.emissions, seq.targets, seq.input_lengths, seq.target_lengths, blank,
        _needs_grad(seq.emissions), nan, code,
    )  # fmt: skip
    inputs, graph, lengths = _graph_op_inputs(seq.emissions, graphs, seq.input_lengths,
                                              None, *weights)
    den = _torch_ops.graph_score(*inputs, graph, shared, lengths, "log",
                                 _needs_grad(*inputs), nan, code)
    no_frames = (seq.input_lengths == 0).to(den.device)
    den = torch.where(no_frames, torch.zeros_like(den), den)  # not -inf: no path
    score = num
    if numerator_lm:
        em, lm_lengths = _target_emissions(seq, blank,
                                           _torch_ops.compute_dtype(seq.emissions.dtype))
        lm_inputs, _, lm_lengths = _graph_op_inputs(em, graphs, lm_lengths, None,
                                                    *weights)
        score = score + _torch_ops.graph_score(*lm_inputs, graph, shared, lm_lengths,
                                               "log", _needs_grad(*lm_inputs), "raise")
    score = score - den
    # no frames and no target: probability 1 (as ctc_loss), whatever the LM says
    score = torch.where(no_frames & (seq.target_lengths == 0).to(den.device),
                        torch.zeros_like(score),
                        score)
    loss = _loss(score, seq, reduction, zero_infinity)
    if ctc_weight:
        loss = loss + float(ctc_weight) * _loss(num, seq, reduction, zero_infinity)
    return loss


class MMILoss(torch.nn.Module):
    """The MMI (CTC-CRF) loss as a module, with its denominator fixed at construction.

    See :func:`mmi_loss`; the denominator (a ``Graph``, or a ``GraphBatch``) is
    packed for the engine once, on the first call, and shared by every example.
    ``forward`` takes the inputs of :class:`CTCLoss` and, as keywords, the
    optional weight overrides of :func:`mmi_loss` (``denominator_weights``, ...).

    Examples
    --------
    >>> import torch, lattice
    >>> from lattice.torch import MMILoss
    >>> den = lattice.build("ctc_denominator", [[1, 2], [2, 2, 1]], num_tokens=3)
    >>> criterion = MMILoss(den, ctc_weight=0.1)
    >>> loss = criterion(torch.randn(12, 2, 3).log_softmax(-1),
    ...                  torch.tensor([[1, 2], [2, 2]]), (12, 12), (2, 2))
    >>> loss.shape
    torch.Size([])
    """

    @torch_errors
    def __init__(self, denominator, blank=0, reduction="mean", zero_infinity=False,
                 ctc_weight=0.0, *, numerator_lm=True, nan="propagate",
                 checkpoint=None):
        super().__init__()
        _check_reduction(reduction)
        _check_nan(nan)
        if not isinstance(denominator, (Graph, GraphBatch)):
            _denominator_graphs(denominator, None)  # raises the TypeError
        ctc_weight = _check_mmi_options(ctc_weight, numerator_lm)
        self._denominator = denominator
        # one GraphBatch kept for every call: the graph is packed once (_PACKED)
        self._graphs = batch([denominator]) if isinstance(denominator, Graph) else denominator
        self.blank = _check_blank(blank)
        self.reduction = reduction
        self.zero_infinity = zero_infinity
        self.ctc_weight = ctc_weight
        self.numerator_lm = bool(numerator_lm)
        self.nan = nan
        _torch_ops.checkpoint_code(checkpoint)
        self.checkpoint = checkpoint

    @property
    def denominator(self):
        """The denominator graph (read-only)."""
        return self._denominator

    def forward(self, log_probs, targets, input_lengths, target_lengths, *,
                denominator_weights=None, denominator_start_weights=None,
                denominator_final_weights=None):
        return mmi_loss(log_probs, targets, input_lengths, target_lengths, self._graphs,
                        self.blank, self.reduction, self.zero_infinity, self.ctc_weight,
                        denominator_weights,
                        denominator_start_weights=denominator_start_weights,
                        denominator_final_weights=denominator_final_weights,
                        numerator_lm=self.numerator_lm, nan=self.nan,
                        checkpoint=self.checkpoint)
