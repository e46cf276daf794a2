"""Left-to-right HMM topology: k states per symbol, optional duration bounds."""

import functools

from lattice import compose as C
from lattice.checks import check_size, int_value, log_weight, symbol_size, target_ids


@functools.lru_cache(maxsize=64)
def _template(states, min_frames, max_frames, stay, advance):
    return C.symbol(C.SYMBOL, states, min_frames=min_frames, max_frames=max_frames,
                    stay=stay, advance=advance)


def hmm(target, states=3, min_frames=1, max_frames=None, stay=0.0, advance=0.0):
    """Left-to-right HMM graph: every symbol is ``states`` states in a row.

    Each symbol of the target becomes ``states`` states emitting it; a path enters a
    symbol in its first state, stays in each state one or more frames, advances to the
    next, and leaves from the last into the next symbol (no blank). Paths start in the
    first symbol and end in the last. Without duration bounds there are
    ``C(T - 1, K * states - 1)`` paths over ``T`` frames.

    Use it for HMM-style training and forced alignment without a blank, when a symbol
    should last at least a few frames (each state takes one or more; ``min_frames``),
    at most ``max_frames``, or carry HMM transition weights (``stay``, ``advance``).
    The states of a symbol share its emission column (tied states); for one column
    per state, build the symbol from per-state units with :mod:`lattice.compose`.

    Duration bounds are exact: the graph gets one state per (HMM state, frames so far)
    that matters, so every alignment is one path. ``stay = log p`` and
    ``advance = log(1 - p)`` make the classic self-loop probability ``p`` (``advance``
    is also the weight of leaving the symbol). All states of symbol ``i`` have
    ``tokens = i``, so Viterbi segments are whole symbols. Arcs are sorted by (source,
    destination) as in ``segmentation``, which is ``hmm`` with ``states=1``.

    Parameters
    ----------
    target : sequence of int
        Symbol ids (repeats allowed).
    states : int, default 3
        States per symbol (>= 1); every state lasts at least one frame.
    min_frames : int, default 1
        Minimum frames per symbol.
    max_frames : int or None, default None
        Maximum frames per symbol (>= ``max(min_frames, states)``).
    stay, advance : float, default 0.0
        Log-weights of the stay and advance arcs.

    Returns
    -------
    lattice.Graph

    Raises
    ------
    ValueError
        For a bad target or option, or a graph of more than ``2**31 - 1`` states or
        arcs (refused before it is built).

    Examples
    --------
    >>> import lattice
    >>> g = lattice.build("hmm", [4, 2], states=2)
    >>> g.labels.tolist(), g.tokens.tolist()
    ([4, 4, 2, 2], [0, 0, 1, 1])
    >>> g.num_paths(6)      # C(5, 3)
    10
    >>> lattice.build("hmm", [4, 2], states=2, max_frames=3).num_paths(6)
    4
    """
    target = target_ids(target)
    states = int_value("states", states, 1, int32=False)
    min_frames = int_value("min_frames", min_frames, 1, int32=False)
    if max_frames is not None:
        max_frames = int_value("max_frames", max_frames, max(min_frames, states),
                               int32=False)
    stay = log_weight("stay", stay)
    advance = log_weight("advance", advance)
    # before the template is built (a unit of up to states * max_frames states)
    k = target.shape[0]
    check_size(f"hmm: states={states}, min_frames={min_frames}, "
               f"max_frames={max_frames} for a target of length {k}",
               *symbol_size(states, min_frames, max_frames, copies=k))
    unit = _template(states, min_frames, max_frames, stay, advance)
    return C.chain(target, unit).to_graph(sort_arcs=True)
