"""Padding many graphs into one :class:`GraphBatch` the kernels read directly.

A batch is built once (per training set, per bucket, or per step) and reused: it owns
padded arrays of every graph's states and arcs plus two CSR indexes, the incoming arcs
of each state (for the forward recursion) and its outgoing arcs (for the backward
recursion). Padding is per example: row ``b`` of every ``(B, S_max)`` array is valid
up to ``num_states[b]``, row ``b`` of every ``(B, A_max)`` array up to ``num_arcs[b]``.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from .graph import Graph

__all__ = ["GraphBatch", "batch"]


# the widest band the fast path handles: arcs from s - d to s with d < MAX_BAND
MAX_BAND = 3


def _csr(ends, others, num_states, descending_others):
    """Return (row pointer, arc ids) of arcs grouped by ``ends``.

    Within a group arcs are sorted by ``others`` (descending or ascending), then by
    arc id. This canonical order is the order in which the kernels combine the arcs
    of a state, which is what lets the banded fast path reproduce the general path
    bit for bit, and it decides Viterbi ties (the first arc in this order wins).
    """
    key = -others.astype(np.int64) if descending_others else others
    order = np.lexsort((np.arange(ends.shape[0]), key, ends)).astype(np.int32)
    counts = np.bincount(ends, minlength=num_states)
    ptr = np.zeros(num_states + 1, dtype=np.int32)
    np.cumsum(counts, out=ptr[1:])
    return ptr, order


def _band_width(g):
    """D if every arc of ``g`` goes from s - d to s with d < D <= MAX_BAND and no two
    arcs join the same states (the banded fast path applies); else None."""
    if g.num_arcs == 0:
        return 1
    offset = g.dst.astype(np.int64) - g.src
    if offset.min() < 0 or offset.max() >= MAX_BAND:
        return None
    pairs = g.dst.astype(np.int64) * MAX_BAND + offset
    if np.unique(pairs).shape[0] != pairs.shape[0]:
        return None
    return int(offset.max()) + 1


class GraphBatch:
    """Many graphs padded into arrays, with CSR indexes of in- and out-arcs.

    Build it with :func:`lattice.batch` (or let the engine build one from a list of
    graphs on every call). All arrays are read-only.

    Attributes
    ----------
    graphs : tuple of Graph
        The graphs, in batch order.
    num_states, num_arcs : ndarray of int32, shape (B,)
        Size of each graph.
    labels, tokens : ndarray of int32, shape (B, S_max)
        Per-state emission column and target position (padding: 0 and -1).
    src, dst : ndarray of int32, shape (B, A_max)
        Arc endpoints (padding: 0).
    weight : ndarray of float64, shape (B, A_max)
        Arc log-weights (padding: 0).
    start, final : ndarray of float64, shape (B, S_max)
        Start / final log-weights (padding: -inf).
    in_ptr, out_ptr : ndarray of int32, shape (B, S_max + 1)
        CSR row pointers: the arcs entering (leaving) state ``s`` of example ``b`` are
        ``in_arc[b, in_ptr[b, s]:in_ptr[b, s + 1]]`` (likewise ``out_arc``).
    in_arc, out_arc : ndarray of int32, shape (B, A_max)
        Arc ids grouped by destination (source). Within a state, in-arcs come by
        decreasing source and out-arcs by increasing destination, then by arc id:
        the order in which the kernels combine them (Viterbi ties go to the first).
    band : int or None
        ``D`` if every graph is *banded* (each arc goes from ``s - d`` to ``s`` with
        ``d < D <= 3``, at most one arc per pair of states): the engine then uses
        its vectorised fast path, which gives the same bits as the general one.
        ``None`` otherwise.
    band_arc : ndarray of int32, shape (B, band * S_max), or None
        For a banded batch, the arc id in band slot ``d * num_states[b] + s`` of
        example ``b`` (the arc from ``s - d`` to ``s``), ``-1`` where there is none.
    max_in_degree : int
        The largest number of arcs entering one state (sizes Viterbi backpointers).

    Examples
    --------
    >>> import lattice
    >>> gb = lattice.GraphBatch([lattice.build("segmentation", [7, 8])])
    >>> gb.labels.tolist(), gb.in_ptr.tolist(), gb.in_arc.tolist()
    ([[7, 8]], [[0, 1, 3]], [[0, 2, 1]])
    >>> gb.band
    2
    """

    def __init__(self, graphs: Sequence[Graph]):
        graphs = tuple(graphs)
        for i, g in enumerate(graphs):
            if not isinstance(g, Graph):
                raise TypeError(
                    f"graphs[{i}] must be a lattice.Graph, got {type(g).__name__}"
                )
        self.graphs = graphs
        size = len(graphs)
        self.num_states = np.array([g.num_states for g in graphs], dtype=np.int32)
        self.num_arcs = np.array([g.num_arcs for g in graphs], dtype=np.int32)
        s_max = int(self.num_states.max(initial=0))
        a_max = int(self.num_arcs.max(initial=0))
        self.max_states, self.max_arcs = s_max, a_max

        self.labels = np.zeros((size, s_max), dtype=np.int32)
        self.tokens = np.full((size, s_max), -1, dtype=np.int32)
        self.start = np.full((size, s_max), -np.inf)
        self.final = np.full((size, s_max), -np.inf)
        self.src = np.zeros((size, a_max), dtype=np.int32)
        self.dst = np.zeros((size, a_max), dtype=np.int32)
        self.weight = np.zeros((size, a_max))
        self.in_ptr = np.zeros((size, s_max + 1), dtype=np.int32)
        self.out_ptr = np.zeros((size, s_max + 1), dtype=np.int32)
        self.in_arc = np.zeros((size, a_max), dtype=np.int32)
        self.out_arc = np.zeros((size, a_max), dtype=np.int32)
        max_in_degree = 0
        for b, g in enumerate(graphs):
            S, A = g.num_states, g.num_arcs
            self.labels[b, :S] = g.labels
            self.tokens[b, :S] = g.tokens
            self.start[b, :S] = g.start
            self.final[b, :S] = g.final
            self.src[b, :A] = g.src
            self.dst[b, :A] = g.dst
            self.weight[b, :A] = g.weight
            # in-arcs by decreasing source (increasing offset d = dst - src), out-arcs
            # by increasing destination: the orders of the banded row functions
            ptr, arcs = _csr(g.dst, g.src, S, descending_others=True)
            self.in_ptr[b, : S + 1] = ptr
            self.in_ptr[b, S + 1 :] = A
            self.in_arc[b, :A] = arcs
            ptr, arcs = _csr(g.src, g.dst, S, descending_others=False)
            self.out_ptr[b, : S + 1] = ptr
            self.out_ptr[b, S + 1 :] = A
            self.out_arc[b, :A] = arcs
            if A:
                max_in_degree = max(max_in_degree, int(np.diff(self.in_ptr[b]).max()))
        self.max_in_degree = max_in_degree
        widths = [_band_width(g) for g in graphs]
        if graphs and all(w is not None for w in widths):
            # at least 2: the row functions exist for D = 2 and D = 3
            self.band = max(2, max(widths))
            self.band_arc = np.full((size, self.band * s_max), -1, dtype=np.int32)
            for b, g in enumerate(graphs):
                d = g.dst.astype(np.int64) - g.src
                self.band_arc[b, d * g.num_states + g.dst] = np.arange(g.num_arcs)
        else:
            self.band = None
            self.band_arc = None
        self.max_label = int(self.labels.max(initial=-1)) if s_max else -1
        for value in vars(self).values():
            if isinstance(value, np.ndarray):
                value.flags.writeable = False
        self._cast_cache = {}

    def __len__(self):
        return len(self.graphs)

    def __repr__(self):
        return (
            f"GraphBatch(size={len(self)}, max_states={self.max_states}, "
            f"max_arcs={self.max_arcs})"
        )

    def weights_as(self, dtype):
        """Return ``(weight, start, final)`` cast to ``dtype`` (cached per dtype)."""
        dtype = np.dtype(dtype)
        cached = self._cast_cache.get(dtype)
        if cached is None:
            cached = tuple(
                np.ascontiguousarray(a, dtype=dtype)
                for a in (self.weight, self.start, self.final)
            )
            for a in cached:
                a.flags.writeable = False
            self._cast_cache[dtype] = cached
        return cached


def batch(graphs) -> GraphBatch:
    """Pad a sequence of graphs into a :class:`GraphBatch`.

    Build the batch once and pass it to the engine on every step: the kernels read its
    arrays directly, so nothing is rebuilt per call.

    Parameters
    ----------
    graphs : sequence of Graph, or GraphBatch
        One graph per example. A ``GraphBatch`` is returned unchanged.

    Returns
    -------
    GraphBatch

    Examples
    --------
    >>> import lattice
    >>> gb = lattice.batch([lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])])
    >>> gb
    GraphBatch(size=2, max_states=5, max_arcs=10)
    >>> gb.num_states.tolist()
    [5, 3]
    """
    if isinstance(graphs, GraphBatch):
        return graphs
    if isinstance(graphs, Graph):
        raise TypeError("batch() takes a sequence of graphs; wrap one graph in a list")
    return GraphBatch(graphs)
