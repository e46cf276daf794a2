"""Weighted-time variants: arc weights that change along time without a new graph.

The engine accepts time-dependent arc weights of shape (B, T, A_max), where
``w[b, t, a]`` scores arc ``a`` taken into frame ``t``. The functions here build such
weights from a batch of graphs.
"""

from __future__ import annotations

import numbers

import numpy as np

from .batch import batch

__all__ = ["delay_penalty", "entering_arcs"]


def entering_arcs(graphs):
    """Mask of the arcs that enter a new target symbol, shape (B, A_max).

    An arc enters a new symbol when its destination stands for a target position
    (``tokens >= 0``) other than its source's: blank -> symbol, symbol -> next symbol,
    but not a self-loop, symbol -> blank, or a move inside one symbol's sub-graph.

    Examples
    --------
    >>> import lattice
    >>> g = lattice.build("ctc", [1, 2])      # arcs: 5 stays, 4 advances, 1 skip
    >>> lattice.weights.entering_arcs([g]).astype(int).tolist()
    [[0, 0, 0, 0, 0, 1, 0, 1, 0, 1]]
    """
    gb = batch(graphs)
    rows = np.arange(len(gb))[:, None]
    src_tok = gb.tokens[rows, gb.src]
    dst_tok = gb.tokens[rows, gb.dst]
    valid = np.arange(gb.max_arcs)[None, :] < gb.num_arcs[:, None]
    return valid & (dst_tok >= 0) & (dst_tok != src_tok)


def delay_penalty(graphs, num_frames, penalty, dtype=np.float64):
    """Time-dependent arc weights that charge ``penalty * t`` for entering a symbol at t.

    Added to the graphs' own arc weights, the result penalises late emission of every
    target symbol (the delay-penalised CTC / transducer training of streaming models):
    a path pays ``penalty`` times the frame at which it enters each new symbol. Pass it
    as ``arc_weights`` to :func:`lattice.forward` and friends or to
    :func:`lattice.torch.lattice_score`.

    Parameters
    ----------
    graphs : sequence of Graph or GraphBatch
    num_frames : int
        T, the number of frames of the emissions it will be used with.
    penalty : float
        Cost per frame of delay (>= 0).
    dtype : numpy dtype, default float64

    Returns
    -------
    ndarray, shape (B, T, A_max)

    Examples
    --------
    >>> import numpy as np, lattice
    >>> g = lattice.build("segmentation", [0, 1])   # arcs: stay 0, advance, stay 1
    >>> w = lattice.weights.delay_penalty([g], num_frames=3, penalty=0.5)
    >>> w[0].tolist()                                # entering symbol 1 at t costs 0.5 t
    [[0.0, 0.0, 0.0], [0.0, -0.5, 0.0], [0.0, -1.0, 0.0]]
    >>> best = lattice.viterbi(np.zeros((1, 3, 2)), [g], arc_weights=w)
    >>> best.states.tolist()                         # enter symbol 1 as early as possible
    [[0, 1, 1]]
    """
    if not isinstance(num_frames, numbers.Integral) or num_frames < 0:
        raise ValueError(f"num_frames must be a non-negative int, got {num_frames!r}")
    if not isinstance(penalty, numbers.Real) or not np.isfinite(penalty) or penalty < 0:
        raise ValueError(f"penalty must be a finite number >= 0, got {penalty!r}")
    gb = batch(graphs)
    mask = entering_arcs(gb)
    t = np.arange(num_frames, dtype=dtype)[None, :, None]
    weights = np.asarray(gb.weight, dtype=dtype)[:, None, :] - penalty * t * mask[:, None, :]
    return np.ascontiguousarray(weights, dtype=dtype)
