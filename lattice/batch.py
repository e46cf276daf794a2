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


def _csr(ends, num_states):
    """Return (row pointer, arc ids) of arcs grouped by ``ends`` (stable order)."""
    order = np.argsort(ends, kind="stable").astype(np.int32)
    counts = np.bincount(ends, minlength=num_states)
    ptr = np.zeros(num_states + 1, dtype=np.int32)
    np.cumsum(counts, out=ptr[1:])
    return ptr, order


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
        Arc ids sorted by destination (source), stable within a state.
    max_in_degree : int
        The largest number of arcs entering one state (sizes Viterbi backpointers).

    Examples
    --------
    >>> import lattice
    >>> gb = lattice.GraphBatch([lattice.build("segmentation", [7, 8])])
    >>> gb.labels.tolist(), gb.in_ptr.tolist(), gb.in_arc.tolist()
    ([[7, 8]], [[0, 1, 3]], [[0, 1, 2]])
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
            ptr, arcs = _csr(g.dst, S)
            self.in_ptr[b, : S + 1] = ptr
            self.in_ptr[b, S + 1 :] = A
            self.in_arc[b, :A] = arcs
            ptr, arcs = _csr(g.src, S)
            self.out_ptr[b, : S + 1] = ptr
            self.out_ptr[b, S + 1 :] = A
            self.out_arc[b, :A] = arcs
            if A:
                max_in_degree = max(max_in_degree, int(np.diff(self.in_ptr[b]).max()))
        self.max_in_degree = max_in_degree
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
