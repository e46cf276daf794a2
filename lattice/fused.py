"""CTC straight from the targets: the log-likelihoods and their gradients with no
graph batch in between, where the backend has fused CTC kernels.

:func:`ctc_score` and :func:`ctc_forward_backward` give the numbers that
``lattice.forward`` and ``lattice.forward_backward`` give for the graphs of
``lattice.build_batch("ctc", targets, blank=blank)``, within the numerical
contract of the float64 log-space result rather than bit for bit, but the CPU
backend writes each example's CTC graph inside the kernel instead of building the
batch, its band table and the kernels' inputs in Python: at small shapes (16
utterances of 200 frames) that preparation cost about as much as the recursion.
Its kernels are probability-space recursions written for the CTC graph alone
(blank and symbol states apart): the forward-backward about 1.3x faster than the
banded kernel's, the forward up to 2.6x faster than the log-space one (which it
continues in where its recursion underflows).
A backend without fused kernels (:attr:`lattice.backends.Backend.fused_ctc`) gets
the graph batch and runs its ordinary kernels. ``lattice.torch.ctc_loss`` runs on
these.

:func:`ctc_problem` is the validation both share (and ``lattice.torch`` calls):
the inputs as a :class:`~lattice.backends.CTCProblem`.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from . import _core, engine
from .backends import CTCProblem
from .checks import beyond_size, check_integer_dtype, check_size, int_value
from .checks import lengths as check_lengths
from .memory import check_checkpoint
from .problem import emissions_backend, to_host
from .registry import build_batch

__all__ = ["CTCForwardBackward", "ctc_forward_backward", "ctc_graphs", "ctc_problem",
           "ctc_score"]


class CTCForwardBackward(NamedTuple):
    """What :func:`ctc_forward_backward` returns.

    Attributes
    ----------
    score : ndarray, shape (B,)
        The CTC log-likelihoods (``-inf`` where a target cannot fit its frames).
    emission_grad : ndarray, shape (B, T, C)
        Their gradients with respect to the emissions: the posterior probability
        that the alignment emits class ``c`` at frame ``t`` (zero past each
        example's length and where ``score == -inf``).

    Examples
    --------
    >>> import numpy as np, lattice
    >>> fb = lattice.ctc_forward_backward(np.zeros((1, 4, 3)), [[1, 2]])
    >>> fb.score.shape, fb.emission_grad.shape
    ((1,), (1, 4, 3))
    """

    score: np.ndarray
    emission_grad: np.ndarray


def _flat_targets(targets, target_lengths, size):
    """(ids, offsets, lengths, padded width or None, raw) of the three target
    layouts; raw holds the ids in their own dtype (a uint64 id beyond int64 must
    not wrap before it is checked)."""
    if isinstance(targets, np.ndarray):
        if targets.size:
            check_integer_dtype("targets", targets, what="integer class ids")
        if targets.ndim == 2:
            if targets.shape[0] != size:
                raise ValueError(
                    f"padded targets must have {size} rows (emissions.shape[0]), got "
                    f"shape {targets.shape}"
                )
            width = targets.shape[1]
            lengths = check_lengths("target_lengths", target_lengths, size, width,
                                    "targets.shape[1]")
            ids = np.ascontiguousarray(targets, dtype=np.int64).reshape(-1)
            return (ids, np.arange(size, dtype=np.int64) * width, lengths,
                    width, targets.reshape(-1))
        if targets.ndim == 1:
            if target_lengths is None:
                raise ValueError(
                    "concatenated (1-D) targets need target_lengths, one per example"
                )
            lengths = check_lengths("target_lengths", target_lengths, size, None)
            if int(lengths.sum()) != targets.shape[0]:
                raise ValueError(
                    f"concatenated targets hold {targets.shape[0]} ids but "
                    f"target_lengths sum to {int(lengths.sum())}"
                )
            ends = np.cumsum(lengths)
            return (targets.astype(np.int64, copy=False), ends - lengths, lengths, None,
                    targets)
        raise ValueError(
            f"targets must be padded (B, S), concatenated (sum of target_lengths,) or "
            f"a sequence of B sequences, got an array of shape {targets.shape}"
        )
    if target_lengths is not None:
        raise ValueError(
            "target_lengths is only for padded or concatenated target arrays; a "
            "sequence of sequences gives its own lengths"
        )
    seqs = [np.asarray(t) for t in targets]
    seqs = [t.astype(np.int64) if t.size == 0 else t for t in seqs]  # [] is float
    if len(seqs) != size:
        raise ValueError(f"got {len(seqs)} targets for a batch of {size} examples "
                         "(emissions.shape[0])")
    for b, t in enumerate(seqs):
        if t.ndim != 1:
            raise ValueError(f"targets[{b}] must be a 1-D sequence of class ids, got "
                             f"shape {t.shape}")
        if t.size:
            check_integer_dtype(f"targets[{b}]", t, what="integer class ids")
    lengths = np.array([t.shape[0] for t in seqs], dtype=np.int64)
    raw = np.concatenate(seqs) if size else np.zeros(0, dtype=np.int64)
    return raw.astype(np.int64, copy=False), np.cumsum(lengths) - lengths, lengths, None, raw


def _check_targets(raw, ids, offsets, counts, width, classes, blank):
    """What ``_core.ctc_check_targets`` gives, (b, pos, skip), from numpy passes
    over the ids in their own dtype ``raw`` (padded to ``width``, or concatenated
    if None)."""
    size = counts.shape[0]
    bad = (raw < 0) | (raw >= classes) | (raw == blank)
    if width is None:  # concatenated: every id is read; a skip stays in one target
        same = ids[1:] == ids[:-1]
        same[offsets[counts > 0][1:] - 1] = True
        skip = not same.all()
    else:  # padded: only the first target_lengths[b] ids of row b are read
        used = np.arange(width) < counts[:, None]
        bad = bad.reshape(size, width) & used
        grid = ids.reshape(size, width)
        skip = bool(((grid[:, 1:] != grid[:, :-1]) & used[:, 1:]).any())
    if not bad.any():
        return -1, -1, skip
    q = int(np.argmax(bad.reshape(-1)))
    b = (q // width if width is not None
         else int(np.searchsorted(offsets + counts, q, side="right")))
    return b, q - int(offsets[b]), skip


def ctc_problem(emissions, targets, lengths=None, target_lengths=None, blank=0):
    """The backend for these emissions and the validated
    :class:`~lattice.backends.CTCProblem`.

    Parameters
    ----------
    emissions, targets, lengths, target_lengths, blank
        As in :func:`ctc_score`.

    Returns
    -------
    (Backend, CTCProblem)

    Raises
    ------
    TypeError, ValueError
        Naming the argument at fault.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.fused import ctc_problem
    >>> _, p = ctc_problem(np.zeros((2, 6, 4)), np.array([[1, 2], [3, 0]]),
    ...                    target_lengths=[2, 1])
    >>> p.offsets.tolist(), p.target_lengths.tolist(), p.band
    ([0, 2], [2, 1], 3)
    """
    backend, em = emissions_backend(emissions)
    size, frames, classes = em.shape
    blank = int_value("blank", blank, 0)
    if blank >= classes:
        raise ValueError(
            f"blank is {blank}, but emissions have only {classes} classes (blank must "
            "be < emissions.shape[2])"
        )
    lengths = check_lengths("lengths", to_host(backend, lengths), size, frames)
    targets = to_host(backend, targets)
    ids, offsets, counts, width, raw = _flat_targets(
        targets, to_host(backend, target_lengths), size
    )
    if beyond_size(5 * int(counts.max(initial=0))):  # 2 K + 1 states, up to 5 K arcs
        _refuse_too_long(ids, offsets, counts)
    if raw.dtype == np.int64:  # ids is raw: one pass in C
        b, pos, skip = _core.ctc_check_targets(ids, offsets, counts, classes, blank)
    else:  # numpy passes over the ids in their own dtype (a uint64 beyond int64)
        b, pos, skip = _check_targets(raw, ids, offsets, counts, width, classes, blank)
    if b >= 0:
        value = int(raw.reshape(-1)[int(offsets[b]) + pos])
        if value == blank:
            raise ValueError(f"targets[{b}] contains the blank id {blank} at position "
                             f"{pos}; the blank cannot be a target symbol")
        raise ValueError(f"targets[{b}] holds the class id {value} at position {pos}, "
                         f"outside [0, {classes}) (emissions.shape[2])")
    if ids.shape[0] == 0:
        ids = np.zeros(1, dtype=np.int64)  # the kernels take the address of ids[0]
    return backend, CTCProblem(em, ids, offsets, counts, lengths, blank,
                               3 if skip else 2)


def ctc_graphs(problem, rows=None):
    """The CTC graphs of examples ``rows`` (default all) of a
    :class:`~lattice.backends.CTCProblem`, as ``lattice.build_batch("ctc", ...)``
    makes them: the graph path's input.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.fused import ctc_graphs, ctc_problem
    >>> _, p = ctc_problem(np.zeros((2, 6, 4)), [[1, 2], [3]])
    >>> ctc_graphs(p).num_states.tolist(), ctc_graphs(p, [1]).labels.tolist()
    ([5, 3], [[0, 3, 0]])
    """
    p = problem
    rows = range(len(p.lengths)) if rows is None else rows
    seqs = [p.targets[p.offsets[b]: p.offsets[b] + p.target_lengths[b]] for b in rows]
    return build_batch("ctc", seqs, blank=p.blank)


def ctc_score(emissions, targets, lengths=None, target_lengths=None, blank=0):
    """CTC log-likelihoods, computed from the targets without a graph batch.

    The numbers of ``lattice.forward(emissions, lattice.build_batch("ctc",
    targets, blank=blank), lengths)`` to the numerical contract of the float64
    log-space result (within 1e-6 relative for float32 inputs, 1e-10 for
    float64), with less preparation per call (see the module's docstring): on the
    CPU a probability-space recursion in double, which goes on in log space from
    its last clean frame if it underflows or meets emissions it cannot scale (its
    rows lowered by the previous row's best cell, and in double past 4096 frames),
    so it is never silently wrong.

    Parameters
    ----------
    emissions : array, shape (B, T, C)
        float32 or float64 per-frame scores (usually log-probabilities).
    targets : array or sequence of sequences of int
        Padded ``(B, S)`` class ids (``target_lengths`` says how many of each row
        are used: all by default), concatenated ``(sum(target_lengths),)``, or one
        sequence per example. Ids in ``[0, C)``, none equal to ``blank``.
    lengths : array of int, shape (B,), optional
        Valid frames per example (default: all ``T``).
    target_lengths : array of int, shape (B,), optional
        For padded or concatenated ``targets``.
    blank : int, default 0
        The blank's class.

    Returns
    -------
    ndarray, shape (B,)
        ``-inf`` where a target cannot fit its frames.

    Raises
    ------
    TypeError, ValueError
        On bad input, naming the argument.
    FloatingPointError
        For a NaN or ``+inf`` score, as :func:`lattice.forward`.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> e = np.log(np.full((2, 5, 4), 0.25))
    >>> s = lattice.ctc_score(e, np.array([[1, 2], [3, 3]]))
    >>> ref = lattice.forward(e, lattice.build_batch("ctc", [[1, 2], [3, 3]]))
    >>> bool(np.allclose(s, ref, rtol=1e-12))
    True
    """
    backend, p = ctc_problem(emissions, targets, lengths, target_lengths, blank)
    if not backend.fused_ctc:
        return engine.forward(p.emissions, ctc_graphs(p), p.lengths)
    scores = backend.ctc_forward(p, lambda rows: ctc_graphs(p, rows))
    _raise_if_nan(backend, p, scores)
    return scores


def ctc_forward_backward(emissions, targets, lengths=None, target_lengths=None, blank=0,
                         *, checkpoint=None):
    """CTC log-likelihoods and their gradients with respect to the emissions,
    computed from the targets without a graph batch.

    The numbers of the ``score`` and ``emission_grad`` of
    ``lattice.forward_backward(emissions, lattice.build_batch("ctc", targets,
    blank=blank), lengths)``, to the numerical contract of the float64 log-space
    result (scores within 1e-6 relative for float32 inputs, 1e-10 for float64;
    gradients within 1e-6, 1e-10 absolute), not bit for bit: on the CPU a
    probability-space recursion in double written for the CTC graph, with the
    blank and symbol states apart. Float32 gradients are those of float64 to about
    3e-8 (the float32 rounding of the result); examples its check refuses are the
    float64 log-space kernel's result exactly.

    Parameters
    ----------
    emissions, targets, lengths, target_lengths, blank
        As in :func:`ctc_score`.
    checkpoint : None, bool or int >= 1, optional
        As in :func:`lattice.forward_backward` (the same bits in every case).

    Returns
    -------
    CTCForwardBackward
        ``score`` (B,) and ``emission_grad`` (B, T, C).

    Raises
    ------
    TypeError, ValueError
        On bad input, naming the argument.
    FloatingPointError
        For a NaN or ``+inf`` score, as :func:`lattice.forward_backward`.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> e = np.log(np.full((1, 3, 2), 0.5))
    >>> fb = lattice.ctc_forward_backward(e, [[1]])
    >>> round(float(np.exp(fb.score[0])), 6)   # 6 of the 8 paths of 3 frames align "1"
    0.75
    >>> fb.emission_grad[0, :, 1].round(2).tolist()   # P(frame t emits the 1)
    [0.5, 0.67, 0.5]
    """
    checkpoint = check_checkpoint(checkpoint)
    backend, p = ctc_problem(emissions, targets, lengths, target_lengths, blank)
    if not backend.fused_ctc:
        fb = engine.forward_backward(p.emissions, ctc_graphs(p), p.lengths,
                                     checkpoint=checkpoint)
        return CTCForwardBackward(fb.score, fb.emission_grad)
    scores, grad = backend.ctc_forward_backward(p, checkpoint,
                                                lambda rows: ctc_graphs(p, rows))
    _raise_if_nan(backend, p, scores)
    return CTCForwardBackward(scores, grad)


def _raise_if_nan(backend, p, scores):
    """Refuse NaN and +inf scores as the engine does (-inf, an impossible target, is
    fine): the graph path's forward then raises its FloatingPointError, naming the
    examples and what they read."""
    total = float(scores.sum())  # NaN or +inf if any score is: one sum, usually
    if np.isnan(total) or total == np.inf:
        engine.forward(p.emissions, ctc_graphs(p), p.lengths)


def _refuse_too_long(ids, offsets, counts):
    """Raise the ctc builder's error for the first target whose CTC graph has more
    states or arcs than the kernels can index (2 K + 1 states; 4 K + 1 arcs and a
    skip per change of symbol)."""
    for b in range(len(counts)):  # in order, as the builder: the first one fails
        target = ids[offsets[b]: offsets[b] + counts[b]]
        skips = int(np.count_nonzero(target[1:] != target[:-1]))
        k = int(counts[b])
        check_size(f"targets[{b}] of {k} symbols", 2 * k + 1, 4 * k + 1 + skips)
