"""The engine as ``torch.library`` operators: what autograd, ``torch.compile`` and FX see.

Each operator (namespace ``lattice``) is one opaque node for torch. Its fake
implementation gives the shapes and dtypes of the outputs, for tracing; its CPU
implementation hands zero-copy numpy views to the engine (its CUDA implementation,
zero-copy CuPy views through DLPack, run on torch's current stream: the engine's
GPU backend) and returns the scores
**together with their gradients**, which the engine computes in the same pass. An
``autograd.Function`` (:class:`_EngineFunction`) saves those gradients and scales them
by the incoming gradient in backward, so backward costs one multiplication.

Operators take tensors and primitive values only, so the graphs reach them in two
ways:

* ``lattice::graph_score`` (and ``lattice::graph_entropy``, the entropy of the
  posterior over paths, :func:`lattice.entropy`) takes a :class:`~lattice.GraphBatch` packed into one
  uint8 tensor (:func:`pack_graphs`: a header and the padded arrays) and rebuilds it
  with the validating :meth:`GraphBatch.from_padded <lattice.GraphBatch.from_padded>`.
  The batches of the last few packed graphs are kept, keyed by their bytes, so a
  batch reused on every step is validated once.
* ``lattice::ctc_score`` and ``lattice::sequence_score`` take the targets and lengths
  as tensors and build the graphs inside the op with :func:`lattice.build_batch`, as
  the losses always did on every step; a builder's options come as JSON text
  (``blank`` as an int, which torch.compile may make symbolic).

Every check of input values happens inside the operators (they see real data, also
when compiled), and every ``ValueError`` / ``TypeError`` they raise is also a
``RuntimeError`` (``_torch_errors.py``).
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections import OrderedDict

import numpy as np
import torch

from . import distribution, engine, fused
from .backends import GPU_INSTALL_HINT
from ._torch_errors import torch_errors
from .batch import GraphBatch, batch
from .memory import check_checkpoint
from .registry import build_batch

__all__ = [
    "NAN_MODES",
    "compute_dtype",
    "ctc_score",
    "cupy_module",
    "device_context",
    "from_engine",
    "graph_entropy",
    "graph_score",
    "pack_graphs",
    "sequence_score",
    "to_engine",
    "to_numpy",
]

NAN_MODES = ("propagate", "raise")


def compute_dtype(dtype):
    """The dtype the engine computes in (and scores come out in) for a float dtype."""
    return dtype if dtype in (torch.float32, torch.float64) else torch.float32


def _prepared(tensor, dtype):
    t = tensor.detach()
    if dtype is not None and t.dtype != dtype:
        t = t.to(dtype)
    if t.dim() and t.stride(-1) != 1:
        t = t.contiguous()
    return t


def to_numpy(tensor, dtype=None):
    """A numpy view of ``tensor`` (copied only to change dtype or fix the last stride;
    a CUDA tensor is copied to the host: for targets, lengths and graphs)."""
    t = _prepared(tensor, dtype)
    return (t.cpu() if t.is_cuda else t).numpy()


def cupy_module():
    """CuPy, or an ImportError saying which package to install."""
    try:
        import cupy
    except ImportError as error:
        raise ImportError(
            f"CUDA tensors go to lattice's GPU backend, which needs CuPy; "
            f"{GPU_INSTALL_HINT}"
        ) from error
    return cupy


def to_engine(tensor, dtype=None):
    """The array the engine computes on, without a copy (but to change dtype or fix
    the last stride): a numpy view of a CPU tensor, a CuPy view of a CUDA one."""
    t = _prepared(tensor, dtype)
    return cupy_module().from_dlpack(t) if t.is_cuda else t.numpy()


def from_engine(array):
    """The tensor viewing an engine result (numpy: CPU, CuPy: CUDA), no copy."""
    if isinstance(array, np.ndarray):
        return torch.from_numpy(array)
    return torch.from_dlpack(array)


def _emission_grad(array, emissions):
    """The emission gradient (an engine result) as a tensor laid out as
    ``torch.empty_like(emissions)``, which is what the fake ops promise
    torch.compile: the engine's gradients follow the emissions' memory order, so
    this is a view, but for layouts numpy and torch order differently (size-1
    axes, a strided class axis), which are copied."""
    grad = from_engine(array)
    if grad.stride() == emissions.stride():  # a dense layout: empty_like's own
        return grad
    like = torch.empty_like(emissions, dtype=grad.dtype)
    if like.stride() == grad.stride():
        return grad
    return like.copy_(grad)


def _xp(array):
    """numpy or CuPy: the namespace of an engine array."""
    return np if isinstance(array, np.ndarray) else cupy_module()


@contextlib.contextmanager
def device_context(*tensors):
    """Inside it, the GPU backend runs on the CUDA device of the first CUDA tensor
    among ``tensors`` and on torch's current stream there (ordered with torch's own
    work); with no CUDA tensor it changes nothing."""
    device = next((t.device for t in tensors if isinstance(t, torch.Tensor) and t.is_cuda),
                  None)
    if device is None:
        yield
        return
    cupy = cupy_module()
    stream = torch.cuda.current_stream(device)
    with cupy.cuda.Device(device.index), cupy.cuda.ExternalStream(
            stream.cuda_stream, device.index):
        yield


def _on_device(impl):
    """``impl`` run inside :func:`device_context` of its arguments (its CUDA kernel)."""

    def run(*args):
        with device_context(*args):
            return impl(*args)

    run.__name__ = impl.__name__
    return run


# ----------------------------------------------------------------------------------
# graphs as one tensor
# ----------------------------------------------------------------------------------

# the padded arrays of a GraphBatch in a packed graph, after a header of four int64
# (B, S_max, A_max, copies): the float64 ones first, so that every array stays
# aligned. copies > 1: the batch is one graph used by `copies` examples, stored once
_PACKED_FIELDS = (("start", np.float64, "S"), ("final", np.float64, "S"),
                  ("weight", np.float64, "A"), ("num_states", np.int32, None),
                  ("num_arcs", np.int32, None), ("labels", np.int32, "S"),
                  ("tokens", np.int32, "S"), ("src", np.int32, "A"),
                  ("dst", np.int32, "A"))  # fmt: skip
_HEADER_BYTES = 32


def pack_graphs(gb):
    """The padded arrays of ``gb`` packed into one 1-D uint8 tensor (a copy: the
    batch's arrays are read-only, which ``torch.from_numpy`` warns about). A batch
    that shares graphs is packed as its distinct graphs (``gb.distinct``) followed
    by ``gb.graph_index``, so a shared denominator travels once."""
    size, distinct = len(gb), gb.distinct
    header = np.array([len(distinct), distinct.max_states, distinct.max_arcs, size],
                      dtype=np.int64)
    parts = [header] + [np.ascontiguousarray(getattr(distinct, name), dtype)
                        for name, dtype, _ in _PACKED_FIELDS]  # fmt: skip
    if distinct is not gb:
        parts.append(np.ascontiguousarray(gb.graph_index, np.int64))
    # frombuffer, unlike from_numpy, is no TracerWarning under torch.jit.trace
    return torch.frombuffer(bytearray(b"".join(p.tobytes() for p in parts)),
                            dtype=torch.uint8)


def _unpack_graphs(packed):
    """The padded arrays of a packed batch's distinct graphs, as keyword arguments
    of from_padded, and the graph index of its examples (None: one graph each)."""
    wrong = ValueError("graph must be a 1-D uint8 tensor made by pack_graphs")
    if packed.ndim != 1 or packed.dtype != np.uint8 or packed.size < _HEADER_BYTES:
        raise wrong
    distinct, states, arcs, size = (int(v) for v in
                                    packed[:_HEADER_BYTES].view(np.int64))
    if min(distinct, states, arcs) < 0 or size < distinct or (size > 0 and not distinct):
        raise wrong
    dims = {None: (), "S": (states,), "A": (arcs,)}
    fields = [(name, dtype, (distinct, *dims[axis]))
              for name, dtype, axis in _PACKED_FIELDS]
    ends = np.cumsum([_HEADER_BYTES] + [int(np.prod(shape)) * np.dtype(dtype).itemsize
                                        for _, dtype, shape in fields])  # fmt: skip
    index_bytes = 0 if size == distinct else 8 * size
    if ends[-1] + index_bytes != packed.size:
        raise wrong
    graph_index = None
    if index_bytes:
        graph_index = packed[ends[-1]:].view(np.int64)
        if graph_index.min() < 0 or graph_index.max() >= distinct:
            raise wrong
    return {
        name: packed[start:end].view(dtype).reshape(shape)
        for (name, dtype, shape), start, end in zip(fields, ends[:-1], ends[1:])
    }, graph_index


_GRAPH_CACHE = OrderedDict()  # (packed bytes, size, shared) -> GraphBatch
_GRAPH_CACHE_SIZE = 8
_GRAPH_CACHE_LOCK = threading.Lock()


def _graph_batch(graph, size, shared):
    """The GraphBatch of a packed graph (of one graph used ``size`` times if
    ``shared``): validated by ``from_padded`` the first time these bytes are seen,
    from a small cache afterwards (a batch reused on every step is validated once)."""
    packed = to_numpy(graph)
    key = (packed.tobytes(), size, shared)
    with _GRAPH_CACHE_LOCK:
        gb = _GRAPH_CACHE.get(key)
        if gb is not None:
            _GRAPH_CACHE.move_to_end(key)
            return gb
    fields, graph_index = _unpack_graphs(packed)
    gb = GraphBatch.from_padded(**fields)
    if graph_index is not None:  # graphs shared among examples: stored once
        gb = batch([gb.graphs[r] for r in graph_index.tolist()])
    if shared:
        if len(gb) != 1:
            raise ValueError(f"a shared graph must hold one graph, got {len(gb)}")
        gb = batch(gb.graphs * size)
    with _GRAPH_CACHE_LOCK:
        _GRAPH_CACHE[key] = gb
        while len(_GRAPH_CACHE) > _GRAPH_CACHE_SIZE:
            _GRAPH_CACHE.popitem(last=False)
    return gb


# ----------------------------------------------------------------------------------
# the engine calls
# ----------------------------------------------------------------------------------


def checkpoint_code(checkpoint):
    """The ``checkpoint`` argument (lattice.memory) as the int an op's schema takes:
    -1 for None (by the memory budget), -2 for True, 0 for False, else k >= 1."""
    checkpoint = check_checkpoint(checkpoint)
    if checkpoint is None:
        return -1
    if checkpoint is True:
        return -2
    return 0 if checkpoint is False else checkpoint


def _checkpoint(code):
    """The inverse of :func:`checkpoint_code`."""
    return {-1: None, -2: True, 0: False}.get(code, code)


def _run(em, gb, lengths, semiring, needs_grad, overrides, checkpoint=None):
    """(scores, gradients) of one engine call; the gradients (emissions, arcs, starts,
    finals) are None unless ``needs_grad``."""
    if not needs_grad:
        return engine.forward(em, gb, lengths, semiring, **overrides), None
    # posteriors under "log", the best path's indicators under "max"
    fb = engine.forward_backward(em, gb, lengths, semiring, checkpoint=checkpoint,
                                 **overrides)
    return fb.score, (fb.emission_grad, fb.arc_grad, fb.start_grad, fb.final_grad)


def _run_entropy(em, gb, lengths, semiring, needs_grad, overrides, checkpoint=None):
    """(entropies, gradients) as :func:`_run` does for scores (``semiring`` unused;
    the entropy kernels store their tables whole, so ``checkpoint`` is too)."""
    if not needs_grad:
        return distribution.entropy(em, gb, lengths, **overrides), None
    result = distribution.entropy(em, gb, lengths, return_gradients=True, **overrides)
    return result.entropy, tuple(result[1:])


def _score(em, gb, lengths, semiring, needs_grad, overrides, nan, run=_run,
           checkpoint=None):
    """As :func:`_run` (or ``run``); with ``nan="propagate"`` an example whose score
    is NaN (NaN or +inf emissions where its graph reads them) scores NaN, with NaN
    gradients, instead of the engine's FloatingPointError: what torch's ctc_loss
    returns."""
    try:
        return run(em, gb, lengths, semiring, needs_grad, overrides, checkpoint)
    except FloatingPointError:
        if nan == "raise":
            raise
    return _run_propagating_nan(em, gb, lengths, semiring, needs_grad, overrides, run,
                                checkpoint)


def _run_propagating_nan(em, gb, lengths, semiring, needs_grad, overrides, run=_run,
                         checkpoint=None):
    """The rare path of :func:`_score`, after the engine refused a NaN score.

    Only an example holding NaN or +inf emissions within its length can score NaN.
    All run as one batch with those emissions zeroed: that gives the others their
    results, and tells which suspects have no complete path at all (they score
    -inf whatever their emissions, as in torch; an entropy says 0 then, so
    ``run=_run_entropy`` reruns every suspect). Each remaining suspect runs alone,
    where the engine tells whether its score is NaN. A NaN example gets NaN as its
    score and as the gradients of its frames and weights (torch's ctc_loss gives NaN
    on every valid frame), 0 past its length.
    """
    xp = _xp(em)
    size, frames, _ = em.shape
    lengths = np.full(size, frames) if lengths is None else np.asarray(lengths)
    valid = xp.asarray(np.arange(frames) < lengths[:, None])
    bad = xp.isnan(em) | xp.isposinf(em)
    suspects = (bad.any(axis=2) & valid).any(axis=1)
    score, grads = run(xp.where(bad, 0, em), gb, lengths, semiring, needs_grad, overrides,
                       checkpoint)
    if run is _run:
        suspects &= ~xp.isneginf(score)
    suspects = suspects.get() if xp is not np else suspects
    for b in np.flatnonzero(suspects).tolist():
        one = batch([gb.graphs[b]])
        sub = {}
        for name, value in overrides.items():
            width = one.max_arcs if name == "arc_weights" else one.max_states
            sub[name] = None if value is None else value[b : b + 1, ..., :width]
        try:
            s, g = run(em[b : b + 1], one, lengths[b : b + 1], semiring, needs_grad, sub,
                       checkpoint)
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


# ----------------------------------------------------------------------------------
# lattice::graph_score
# ----------------------------------------------------------------------------------


def _frame_weighted(em, w):
    """em * w[..., None] with 0 * -inf = 0: a weight of 0 ignores the frame (even its
    -inf emissions); -inf emissions of weighted frames stay -inf."""
    xp = _xp(em)
    impossible = xp.isneginf(em)
    out = xp.where(impossible, 0, em) * w[..., None]
    out[impossible & (w[..., None] > 0)] = -np.inf
    return out


def _graph_inputs(emissions, frame_weights, arc_weights, start_weights, final_weights,
                  graph, shared, lengths):
    """The numpy inputs of a graph op: (emissions, frame-weighted emissions, frame
    weights or None, GraphBatch, lengths or None, weight overrides)."""
    dtype = compute_dtype(emissions.dtype)
    em = to_engine(emissions, dtype)
    gb = _graph_batch(graph, em.shape[0], shared)
    lengths = None if lengths is None else to_numpy(lengths)
    w = None
    if frame_weights is not None:
        w = to_engine(frame_weights, dtype)
        if w.shape != em.shape[:2]:
            raise ValueError(
                f"frame_weights must have shape {em.shape[:2]}, got {w.shape}"
            )
        if not bool(_xp(w).isfinite(w).all()) or bool((w < 0).any()):
            raise ValueError("frame_weights must be finite and non-negative")
        em_in = _frame_weighted(em, w)
    else:
        em_in = em
    overrides = {
        name: None if t is None else to_engine(t, dtype)
        for name, t in (("arc_weights", arc_weights), ("start_weights", start_weights),
                        ("final_weights", final_weights))
    }  # fmt: skip
    return em, em_in, w, gb, lengths, overrides


def _graph_outputs(score, grads, emissions, em, w, frame_weights, arc_weights,
                   start_weights, final_weights):
    """The op's outputs: the scores and the gradients of the inputs given, with the
    chain rule through the frame weights."""
    if grads is None:
        return from_engine(score), []
    g_em, g_arc, g_start, g_final = grads
    g_w = None
    if w is not None:
        # d/d em = posterior * w; d/d w = sum over classes of posterior * em (0 where
        # em = -inf: such a cell has no posterior, nor gradient to its weight)
        xp = _xp(em)
        g_w = xp.einsum("btc,btc->bt", g_em, xp.where(xp.isneginf(em), 0, em))
        g_em = g_em * w[..., None]
    inputs = (frame_weights, arc_weights, start_weights, final_weights)
    return from_engine(score), [_emission_grad(g_em, emissions)] + [
        from_engine(g) for t, g in zip(inputs, (g_w, g_arc, g_start, g_final))
        if t is not None
    ]


@torch_errors
def _graph_score(emissions, frame_weights, arc_weights, start_weights, final_weights,
                 graph, shared, lengths, semiring, needs_grad, nan, checkpoint=-1):
    weights = (frame_weights, arc_weights, start_weights, final_weights)
    em, em_in, w, gb, lengths, overrides = _graph_inputs(emissions, *weights, graph,
                                                         shared, lengths)
    score, grads = _score(em_in, gb, lengths, semiring, needs_grad, overrides, nan,
                          checkpoint=_checkpoint(checkpoint))
    return _graph_outputs(score, grads, emissions, em, w, *weights)


@torch_errors
def _graph_entropy(emissions, frame_weights, arc_weights, start_weights, final_weights,
                   graph, shared, lengths, needs_grad, nan):
    weights = (frame_weights, arc_weights, start_weights, final_weights)
    em, em_in, w, gb, lengths, overrides = _graph_inputs(emissions, *weights, graph,
                                                         shared, lengths)
    score, grads = _score(em_in, gb, lengths, "log", needs_grad, overrides, nan,
                          run=_run_entropy)
    return _graph_outputs(score, grads, emissions, em, w, *weights)


def _fake_outputs(emissions, differentiable):
    """What an op returns, as fake tensors: the scores and the gradients of the
    ``differentiable`` inputs, in the dtype the engine computes in."""
    dtype = compute_dtype(emissions.dtype)
    return (emissions.new_empty(emissions.shape[0], dtype=dtype),
            [torch.empty_like(t, dtype=dtype) if t is emissions
             else emissions.new_empty(t.shape, dtype=dtype) for t in differentiable])


def _fake_graph_score(emissions, frame_weights, arc_weights, start_weights, final_weights,
                      graph, shared, lengths, semiring, needs_grad, nan, checkpoint=-1):
    inputs = (emissions, frame_weights, arc_weights, start_weights, final_weights)
    return _fake_outputs(emissions, [t for t in inputs if t is not None and needs_grad])


def _fake_graph_entropy(emissions, frame_weights, arc_weights, start_weights,
                        final_weights, graph, shared, lengths, needs_grad, nan):
    inputs = (emissions, frame_weights, arc_weights, start_weights, final_weights)
    return _fake_outputs(emissions, [t for t in inputs if t is not None and needs_grad])


# ----------------------------------------------------------------------------------
# lattice::ctc_score and lattice::sequence_score
# ----------------------------------------------------------------------------------


def _integers(tensor):
    return to_numpy(tensor).reshape(-1).astype(np.int64)


def _sequences(targets, input_lengths, target_lengths, size, frames, classes):
    """Validate ctc_loss-style targets and lengths; the targets as B int64 arrays."""
    input_lengths, target_lengths = _integers(input_lengths), _integers(target_lengths)
    for name, arr in (("input_lengths", input_lengths), ("target_lengths", target_lengths)):
        if arr.shape != (size,):
            raise ValueError(f"{name} must have {size} entries, got {arr.shape[0]}")
    if input_lengths.min(initial=0) < 0 or input_lengths.max(initial=0) > frames:
        raise ValueError(f"input_lengths must lie in [0, {frames}] (log_probs.shape[0])")
    if target_lengths.min(initial=0) < 0:
        raise ValueError("target_lengths must be non-negative")
    tg = to_numpy(targets).astype(np.int64)
    if tg.ndim == 2 and tg.shape[0] == size:
        if target_lengths.max(initial=0) > tg.shape[1]:
            raise ValueError(
                f"target_lengths exceed the padded target length {tg.shape[1]}"
            )
        used = np.arange(tg.shape[1]) < target_lengths[:, None]
        bad = (used & ((tg < 0) | (tg >= classes))).any(axis=1)
        seqs = [tg[b, : target_lengths[b]] for b in range(size)]
    elif tg.ndim == 1:
        if int(target_lengths.sum()) != tg.shape[0]:
            raise ValueError(
                f"concatenated targets hold {tg.shape[0]} ids but target_lengths "
                f"sum to {int(target_lengths.sum())}"
            )
        example = np.repeat(np.arange(size), target_lengths)
        bad = np.zeros(size, dtype=bool)
        bad[example[(tg < 0) | (tg >= classes)]] = True
        seqs = np.split(tg, np.cumsum(target_lengths)[:-1])
    else:
        raise ValueError(
            f"targets must be padded (B, S) with B = {size}, or concatenated (sum of "
            f"target_lengths,), got shape {tuple(tg.shape)}"
        )
    if bad.any():
        raise ValueError(
            f"targets of example {int(np.argmax(bad))} hold class ids outside "
            f"[0, {classes}) (log_probs.shape[2])"
        )
    return seqs, input_lengths, target_lengths


def _sequence_score(emissions, targets, input_lengths, target_lengths, builder, options,
                    semiring, needs_grad, nan, checkpoint):
    dtype = compute_dtype(emissions.dtype)
    em = to_engine(emissions, dtype)  # (B, T, C), a view of the (T, B, C) input
    if em.size == 0:  # as torch: "log_probs tensor must not be empty"
        size, frames, classes = em.shape
        raise ValueError(
            f"log_probs must not be empty, got shape {(frames, size, classes)}"
        )
    seqs, input_lengths, target_lengths = _sequences(
        targets, input_lengths, target_lengths, *em.shape
    )
    gb = build_batch(builder, seqs, **options)
    score, grads = _score(em, gb, input_lengths, semiring, needs_grad, {}, nan,
                          checkpoint=_checkpoint(checkpoint))
    # an empty input explains an empty target with probability 1 (as in torch)
    empty = (input_lengths == 0) & (target_lengths == 0)
    if empty.any():
        score[_xp(score).asarray(empty)] = 0
    return from_engine(score), [] if grads is None else [_emission_grad(grads[0],
                                                                       emissions)]


def _reduction_weights(target_lengths, reduction):
    """The float64 weights (one per example, of validated ``target_lengths``) whose
    weighted sum of the losses is ``reduction``: 1 for ``"sum"``, 1 / (B
    max(target_length, 1)) for ``"mean"`` (as torch divides); None for
    ``"none"``."""
    if reduction == "none":
        return None
    if reduction == "sum":
        return np.ones(target_lengths.shape[0])
    return 1.0 / (np.maximum(target_lengths, 1) * float(target_lengths.shape[0]))


def _fused_ctc_score(emissions, targets, input_lengths, target_lengths, blank,
                     needs_grad, checkpoint, negate=False, reduction="none"):
    """The results of :func:`_ctc_score` from the fused CTC kernels (lattice.fused),
    or None where the graph path must run instead: a backend without them, a bad
    input (the graph path's checks then say what is wrong, in this layer's
    words), or a NaN or +inf log-likelihood (the graph path handles ``nan``)."""
    if emissions.is_cuda:  # the GPU backend has no fused kernels
        return None
    em = to_engine(emissions, compute_dtype(emissions.dtype))
    if em.size == 0:
        return None
    try:
        backend, p = fused.ctc_problem(em, to_numpy(targets), _integers(input_lengths),
                                       _integers(target_lengths), blank)
    except (TypeError, ValueError):
        return None
    if not backend.fused_ctc:
        return None
    weights = _reduction_weights(p.target_lengths, reduction)
    if needs_grad:
        score, grad = backend.ctc_forward_backward(
            p, _checkpoint(checkpoint), lambda rows: fused.ctc_graphs(p, rows),
            negate=negate, weights=weights,
        )
    else:
        score = backend.ctc_forward(p, lambda rows: fused.ctc_graphs(p, rows))
        if negate:
            score = np.negative(score, out=score)
        grad = None
    total = float(score.sum())
    if np.isnan(total) or total == (-np.inf if negate else np.inf):
        return None
    # an empty input explains an empty target with probability 1 (as in torch)
    empty = (p.lengths == 0) & (p.target_lengths == 0)
    if empty.any():
        score[empty] = 0
    if weights is not None:  # the kernel has weighted the gradient already
        score = np.asarray(np.dot(score.astype(np.float64), weights), dtype=score.dtype)
    return from_engine(score), [] if grad is None else [_emission_grad(grad, emissions)]


@torch_errors
def _ctc_score(emissions, targets, input_lengths, target_lengths, blank, needs_grad, nan,
               checkpoint=-1, negate=False, reduction="none"):
    if reduction not in ("none", "sum", "mean"):
        raise ValueError(f"reduction must be 'none', 'sum' or 'mean', got {reduction!r}")
    result = _fused_ctc_score(emissions, targets, input_lengths, target_lengths, blank,
                              needs_grad, checkpoint, negate, reduction)
    if result is not None:
        return result
    score, grads = _sequence_score(emissions, targets, input_lengths, target_lengths,
                                   "ctc", {"blank": blank}, "log", needs_grad, nan,
                                   checkpoint)
    if negate:
        score, grads = -score, [-g for g in grads]
    weights = _reduction_weights(_integers(target_lengths), reduction)
    if weights is not None:  # validated by _sequence_score: one per example
        w = torch.from_numpy(weights).to(score.device)
        score = (score.double() * w).sum().to(score.dtype)
        grads = [g * w.to(g.dtype).reshape((-1,) + (1,) * (g.dim() - 1)) for g in grads]
    return score, grads


@torch_errors
def _options_sequence_score(emissions, targets, input_lengths, target_lengths, builder,
                            options, semiring, needs_grad, nan, checkpoint=-1):
    return _sequence_score(emissions, targets, input_lengths, target_lengths, builder,
                           json.loads(options), semiring, needs_grad, nan, checkpoint)


def _fake_ctc_score(emissions, targets, input_lengths, target_lengths, blank, needs_grad,
                    nan, checkpoint=-1, negate=False, reduction="none"):
    score, grads = _fake_outputs(emissions, [emissions] if needs_grad else [])
    return (score if reduction == "none" else score.new_empty(())), grads


def _fake_options_sequence_score(emissions, targets, input_lengths, target_lengths,
                                 builder, options, semiring, needs_grad, nan, checkpoint=-1):
    return _fake_outputs(emissions, [emissions] if needs_grad else [])


# ----------------------------------------------------------------------------------
# registration
# ----------------------------------------------------------------------------------

_LIBRARY = torch.library.Library("lattice", "DEF")
_OPS = {
    "graph_score": (
        "(Tensor emissions, Tensor? frame_weights, Tensor? arc_weights, "
        "Tensor? start_weights, Tensor? final_weights, Tensor graph, bool shared, "
        "Tensor? lengths, str semiring, bool needs_grad, str nan, int checkpoint=-1) "
        "-> (Tensor, Tensor[])",
        _graph_score, _fake_graph_score,
    ),
    "graph_entropy": (
        "(Tensor emissions, Tensor? frame_weights, Tensor? arc_weights, "
        "Tensor? start_weights, Tensor? final_weights, Tensor graph, bool shared, "
        "Tensor? lengths, bool needs_grad, str nan) -> (Tensor, Tensor[])",
        _graph_entropy, _fake_graph_entropy,
    ),
    "ctc_score": (
        "(Tensor emissions, Tensor targets, Tensor input_lengths, Tensor target_lengths, "
        "SymInt blank, bool needs_grad, str nan, int checkpoint=-1, bool negate=False, "
        "str reduction='none') -> (Tensor, Tensor[])",
        _ctc_score, _fake_ctc_score,
    ),
    "sequence_score": (
        "(Tensor emissions, Tensor targets, Tensor input_lengths, Tensor target_lengths, "
        "str builder, str options, str semiring, bool needs_grad, str nan, "
        "int checkpoint=-1) -> (Tensor, Tensor[])",
        _options_sequence_score, _fake_options_sequence_score,
    ),
}  # fmt: skip
#: each op's implementations (host, CUDA), which eager calls reach directly (_call)
_EAGER = {}
for _name, (_schema, _impl, _fake) in _OPS.items():
    _LIBRARY.define(_name + _schema)
    _LIBRARY.impl(_name, _impl, "CPU")
    _LIBRARY.impl(_name, _on_device(_impl), "CUDA")
    torch.library.register_fake(f"lattice::{_name}", _fake, lib=_LIBRARY)
    _EAGER[getattr(torch.ops.lattice, _name).default] = (_impl, _on_device(_impl))


def _dispatch_modes():
    """How many torch dispatch modes are active (None where this torch cannot say:
    then every call goes through the dispatcher)."""
    count = getattr(torch._C, "_len_torch_dispatch_stack", None)
    return None if count is None else count()


def _call(op, args):
    """``op(*args)``. In eager mode, on plain tensors, straight to the op's Python
    implementation: the dispatcher's round trip from Python to C++ and back took
    0.04 ms a call (5% of a CTC loss at B = 16, T = 200). Through the dispatcher
    wherever torch traces or intercepts (torch.compile, a dispatch mode such as
    make_fx's, tensor subclasses such as fake tensors), so that those see the op."""
    impls = _EAGER.get(op)
    if (impls is None or torch.compiler.is_compiling()
            or _dispatch_modes() != 0):
        return op(*args)
    cuda = False
    for t in args:
        if isinstance(t, torch.Tensor):
            if type(t) is not torch.Tensor and not isinstance(t, torch.nn.Parameter):
                return op(*args)
            cuda = cuda or t.is_cuda
    return impls[cuda](*args)


# ----------------------------------------------------------------------------------
# autograd: the saved engine gradients times the incoming gradient
# ----------------------------------------------------------------------------------


class _EngineFunction(torch.autograd.Function):
    """Runs one op on ``args``, whose first ``differentiable`` entries are the inputs
    that may have a gradient. The op returns the scores and, if it was asked to, one
    gradient for each of those inputs that is not None; forward saves them, backward
    scales them by the incoming gradient.

    Unless the graph is kept (``retain_graph=True``), a saved gradient serves this
    one backward, so backward scales it in place (not at all where the incoming
    gradient is all ones and the gradient large) and hands it over, instead of
    writing a fresh tensor the size of the emissions: that multiply and its fresh
    memory were 12% of a ``ctc_loss`` step at B = 8, T = 2000, C = 512. With the
    graph kept, backward leaves the saved gradients as they are and returns new
    tensors, so every backward sees the same gradients.

    (A ``forward(ctx, ...)`` Function: ``torch.library.register_autograd`` or a
    ``setup_context`` costs 0.05-0.25 ms more per call, 3-15% of a small CTC loss; so
    ``torch.func`` transforms are refused, by torch.)
    """

    @staticmethod
    def forward(ctx, op, differentiable, *args):
        score, grads = _call(op, args)
        ctx.save_for_backward(*grads)
        ctx.inputs = tuple(
            (i, t.dtype) for i, t in enumerate(args[:differentiable]) if t is not None
        )
        ctx.num_args = len(args)
        return score

    @staticmethod
    def backward(ctx, grad_score):
        if torch.is_grad_enabled():
            # create_graph=True: the engine's gradients are constants to autograd, so
            # a second derivative would silently be wrong; refuse it instead
            raise RuntimeError(
                "lattice ops do not support double backward (create_graph=True): "
                "their gradients are computed by the engine, not by torch operations"
            )
        grads = ctx.saved_tensors
        once = _graph_used_once()
        out = [None] * ctx.num_args
        for k, (i, dtype) in enumerate(ctx.inputs):
            if not ctx.needs_input_grad[2 + i]:
                continue
            if not grads:
                raise RuntimeError(
                    "this lattice op computed no gradients: when it ran, no input "
                    "required grad or grad mode was off"
                )
            grad = grads[k]
            scale = grad_score.reshape((-1,) + (1,) * (grad.dim() - 1))
            if once and grad.dtype == dtype and _scales_in_place(grad, scale):
                if not _is_one(scale, grad):
                    grad.mul_(scale)
                out[i] = grad
            else:
                out[i] = (grad * scale).to(dtype)
        return (None, None, *out)


def _graph_used_once():
    """True inside a backward that frees the graph after it (no ``retain_graph``), so
    that the tensors saved for it are used this once; False where torch cannot say,
    and while torch.compile traces the backward (the traced graph multiplies)."""
    keep_graph = getattr(torch._C._autograd, "_get_current_graph_task_keep_graph", None)
    if keep_graph is None or torch.compiler.is_compiling():
        return False
    try:
        return not keep_graph()
    except RuntimeError:  # not inside the engine's backward (never expected)
        return False


def _is_one(scale, grad):
    """Whether ``scale`` is all ones, asked only where skipping the multiply pays,
    on the CPU (on a GPU the look would wait for the device):

    - ``scale`` is one value, or one value broadcast (every stride 0: what a
      ``sum``'s backward hands on), so one look at it settles it. That is the
      gradient of a ``ctc_loss`` reduced by the op itself, or of
      ``loss.sum().backward()``: the multiply it saves ran right after the kernel,
      on rows the other thread had just written, and took 0.03 ms of a 0.85 ms
      ``ctc_loss`` step at B = 16, T = 200 (8 us alone);
    - or the gradient is large (1e6 values or more), where comparing every value
      of ``scale`` with 1 costs less than the multiply.
    """
    if grad.is_cuda:
        return False
    if scale.numel() == 1 or not any(scale.stride()):
        return scale[(0,) * scale.dim()].item() == 1
    return grad.numel() >= 1 << 20 and bool((scale == 1).all())


def _scales_in_place(grad, scale):
    """Whether ``grad *= scale`` gives ``grad * scale`` (``scale`` of shape (n, 1, ...,
    1) as backward makes it: n matches or is 1, and no dtype is promoted)."""
    return (grad.dim() >= 1 and scale.shape[0] in (1, grad.shape[0])
            and torch.result_type(grad, scale) == grad.dtype)


def graph_score(emissions, frame_weights, arc_weights, start_weights, final_weights,
                graph, shared, lengths, semiring, needs_grad, nan, checkpoint=-1):
    """Scores of a graph batch (``graph`` from :func:`pack_graphs`; with ``shared``,
    its one graph serves every example), differentiable with respect to the
    emissions, frame weights and arc, start and final weights; the op computes the
    gradients in the same pass if ``needs_grad`` (``checkpoint`` as
    :func:`checkpoint_code` encodes it)."""
    return _EngineFunction.apply(
        torch.ops.lattice.graph_score.default, 5, emissions, frame_weights, arc_weights,
        start_weights, final_weights, graph, shared, lengths, semiring, needs_grad, nan,
        checkpoint,
    )  # fmt: skip


def graph_entropy(emissions, frame_weights, arc_weights, start_weights, final_weights,
                  graph, shared, lengths, needs_grad, nan):
    """Entropies of the posterior over the paths of a graph batch (as
    :func:`graph_score`), differentiable with respect to the same inputs."""
    return _EngineFunction.apply(
        torch.ops.lattice.graph_entropy.default, 5, emissions, frame_weights,
        arc_weights, start_weights, final_weights, graph, shared, lengths, needs_grad,
        nan,
    )  # fmt: skip


def ctc_score(emissions, targets, input_lengths, target_lengths, blank, needs_grad, nan,
              checkpoint=-1, negate=False, reduction="none"):
    """CTC log-likelihoods of (B, T, C) emissions, differentiable with respect to
    them (the op computes the gradient in the same pass if ``needs_grad``); with
    ``negate``, the CTC losses (minus them), whose gradient the kernel writes
    negated, never negated once more by a pass of torch's. With ``reduction``
    ``"sum"`` or ``"mean"`` (as torch's ``ctc_loss`` reduces: the mean of the
    losses divided by the target lengths), the reduced value, a 0-dim tensor, whose
    gradient the kernel writes weighted, so that the backward multiplies it by
    nothing."""
    return _EngineFunction.apply(
        torch.ops.lattice.ctc_score.default, 1, emissions, targets, input_lengths,
        target_lengths, blank, needs_grad, nan, checkpoint, negate, reduction,
    )  # fmt: skip


def sequence_score(emissions, targets, input_lengths, target_lengths, builder, options,
                   semiring, needs_grad, nan, checkpoint=-1):
    """Scores of the graphs that ``builder`` (with ``options``, a JSON object) makes
    of the targets, differentiable with respect to the emissions (the op computes
    the gradient in the same pass if ``needs_grad``)."""
    return _EngineFunction.apply(
        torch.ops.lattice.sequence_score.default, 1, emissions, targets, input_lengths,
        target_lengths, builder, options, semiring, needs_grad, nan, checkpoint,
    )  # fmt: skip
