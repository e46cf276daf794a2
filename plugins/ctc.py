"""The CTC topology: the target with an optional blank between and around symbols."""

import numpy as np

import lattice

from ._target import check_int_option, check_target


def ctc(target, blank=0):
    """Blank-augmented CTC alignment graph of ``target``.

    States are ``blank, t1, blank, t2, ..., tK, blank`` (2K + 1). Every state may stay;
    every state may advance to the next; a symbol may skip the blank that follows it
    when the next symbol differs (between two equal symbols the blank is mandatory,
    which is how CTC tells "aa" from "a"). Paths start in the first blank or the first
    symbol and end in the last symbol or the last blank. An empty target gives one
    blank state. Summing this graph under the log semiring gives the CTC
    log-likelihood of ``torch.nn.functional.ctc_loss``.

    Symbol states carry ``tokens`` = their position in the target, blanks ``-1``, so
    Viterbi segments are the frames of each target symbol.

    Parameters
    ----------
    target : sequence of int
        Symbol ids; must not contain ``blank``.
    blank : int, default 0
        The emission column of the blank.

    Returns
    -------
    lattice.Graph

    Examples
    --------
    >>> import lattice
    >>> g = lattice.build("ctc", [1, 2, 2], blank=0)
    >>> g.labels.tolist()
    [0, 1, 0, 2, 0, 2, 0]
    >>> g.num_arcs   # 7 stays + 6 advances + 1 skip (1 -> 2, not 2 -> 2)
    14
    """
    target = check_target(target)
    blank = check_int_option("blank", blank, 0)
    if np.any(target == blank):
        pos = int(np.flatnonzero(target == blank)[0])
        raise ValueError(
            f"target contains the blank id {blank} at position {pos}; "
            "the blank cannot be a target symbol"
        )
    K = target.shape[0]
    S = 2 * K + 1
    labels = np.full(S, blank, dtype=np.int64)
    labels[1::2] = target
    tokens = np.full(S, -1, dtype=np.int64)
    tokens[1::2] = np.arange(K)
    states = np.arange(S)
    skip_from = 2 * np.flatnonzero(target[1:] != target[:-1]) + 1  # symbol i -> i + 1
    src = np.concatenate([states, states[:-1], skip_from])
    dst = np.concatenate([states, states[1:], skip_from + 2])
    start = np.full(S, -np.inf)
    start[: min(2, S)] = 0.0
    final = np.full(S, -np.inf)
    final[max(S - 2, 0):] = 0.0
    return lattice.Graph(labels, src, dst, None, start, final, tokens=tokens)
