"""The monotone segmentation grid: stay on a symbol or advance, no blank."""

import functools

from lattice import compose as C
from lattice.checks import check_size, int_value, symbol_size, target_ids


@functools.lru_cache(maxsize=64)
def _template(min_frames):
    return C.symbol(C.SYMBOL, min_frames=min_frames)


def segmentation(target, min_frames=1):
    """Monotone segmentation graph of ``target``: each symbol covers a run of frames.

    With ``min_frames = 1`` there is one state per symbol, emitting it, with a stay arc
    (i -> i) and an advance arc (i -> i + 1); paths start in the first symbol and end in
    the last, so over T frames there are C(T - 1, K - 1) paths. With ``min_frames = m``
    each symbol becomes a chain of m states (all emitting the symbol, only the last one
    may stay), so every symbol lasts at least m frames. Use it for auto-segmentation
    criteria where every frame belongs to some target symbol (no blank).

    All states of symbol i carry ``tokens`` = i, so Viterbi segments are the symbols'
    frame ranges. An empty target gives an empty graph (score -inf). Arcs are sorted
    by (source, destination). The graph is built with :mod:`lattice.compose` as
    ``chain(target, symbol(SYMBOL, min_frames=m))``; see the ``hmm`` builder for
    several states per symbol and a maximum duration.

    Parameters
    ----------
    target : sequence of int
        Symbol ids (repeats allowed: consecutive equal symbols are distinct segments).
    min_frames : int, default 1
        Minimum number of frames per symbol.

    Returns
    -------
    lattice.Graph

    Raises
    ------
    ValueError
        For a bad target or ``min_frames``, or a graph of more than ``2**31 - 1``
        states or arcs (refused before it is built).

    Examples
    --------
    >>> import lattice
    >>> g = lattice.build("segmentation", [4, 2])
    >>> g.labels.tolist(), g.src.tolist(), g.dst.tolist()
    ([4, 2], [0, 0, 1], [0, 1, 1])
    >>> lattice.build("segmentation", [4, 2], min_frames=2).num_states
    4
    """
    target = target_ids(target)
    m = int_value("min_frames", min_frames, 1, int32=False)
    # before the template is built (a unit of m states)
    k = target.shape[0]
    check_size(f"segmentation: min_frames={m} for a target of length {k}",
               *symbol_size(1, m, copies=k))
    return C.chain(target, _template(m)).to_graph(sort_arcs=True)
