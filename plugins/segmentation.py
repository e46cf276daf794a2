"""The monotone segmentation grid: stay on a symbol or advance, no blank."""

import numpy as np

import lattice

from ._target import check_int_option, check_target


def segmentation(target, min_frames=1):
    """Monotone segmentation graph of ``target``: each symbol covers a run of frames.

    With ``min_frames = 1`` there is one state per symbol, emitting it, with a stay arc
    (i -> i) and an advance arc (i -> i + 1); paths start in the first symbol and end in
    the last, so over T frames there are C(T - 1, K - 1) paths. With ``min_frames = m``
    each symbol becomes a chain of m states (all emitting the symbol, only the last one
    may stay), so every symbol lasts at least m frames. Use it for auto-segmentation
    criteria where every frame belongs to some target symbol (no blank).

    All states of symbol i carry ``tokens`` = i, so Viterbi segments are the symbols'
    frame ranges. An empty target gives an empty graph (score -inf).

    Parameters
    ----------
    target : sequence of int
        Symbol ids (repeats allowed: consecutive equal symbols are distinct segments).
    min_frames : int, default 1
        Minimum number of frames per symbol.

    Returns
    -------
    lattice.Graph

    Examples
    --------
    >>> import lattice
    >>> g = lattice.build("segmentation", [4, 2])
    >>> g.labels.tolist(), g.src.tolist(), g.dst.tolist()
    ([4, 2], [0, 0, 1], [0, 1, 1])
    >>> lattice.build("segmentation", [4, 2], min_frames=2).num_states
    4
    """
    target = check_target(target)
    m = check_int_option("min_frames", min_frames, 1)
    K = target.shape[0]
    S = K * m
    labels = np.repeat(target, m)
    tokens = np.repeat(np.arange(K), m)
    states = np.arange(S)
    last = states[m - 1 :: m]  # the state of each symbol that may stay
    # arcs: every state advances to the next (inside a chain, or into the next
    # symbol's chain); the last state of each chain also stays.
    src = np.concatenate([last, states[:-1]])
    dst = np.concatenate([last, states[1:]])
    order = np.lexsort((dst, src))
    start = np.full(S, -np.inf)
    final = np.full(S, -np.inf)
    if S:
        start[0] = 0.0
        final[-1] = 0.0
    return lattice.Graph(labels, src[order], dst[order], None, start, final, tokens=tokens)
