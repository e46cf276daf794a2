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

from .checks import INT32_MAX, check_integer_dtype, first_outside
from ._frozen import freeze
from ._layout import BAND_WIDTHS, MAX_BAND
from .graph import Graph

__all__ = ["GraphBatch", "batch"]

# the per-example arrays of a batch that shares graphs, made from the distinct
# graphs' rows when first read (GraphBatch.__getattr__)
_PER_EXAMPLE = ("labels", "tokens", "start", "final", "src", "dst", "weight",
                "band_slot", "band_arc")




def _check_sizes(name, values, size=None):
    """Validate per-example state or arc counts: a 1-D array of ints in int32 range."""
    arr = np.asarray(values)
    if arr.ndim != 1 or (size is not None and arr.shape[0] != size):
        want = "(B,)" if size is None else f"({size},)"
        raise ValueError(f"{name} must have shape {want}, got {arr.shape}")
    if arr.size:
        check_integer_dtype(name, arr)
    bad = first_outside(arr, 0, INT32_MAX)
    if bad is not None:
        raise ValueError(
            f"{name} must lie in [0, {INT32_MAX}], got {bad[1]} (example {bad[0]})"
        )
    return arr.astype(np.int32)


def _band_fits(band, max_states):
    """Whether the banded kernels can index a band table of ``band * max_states +
    band - 1`` entries (slot ``d * S + s``) with C ints; a batch whose table they
    cannot index runs on the general kernels instead."""
    return band * max_states + band - 1 <= INT32_MAX


def _csr_order(example, ends, key, size, s_max):
    """The stable order of arcs by (example, ends, key): arcs of equal keys keep
    their order (the concatenation is in arc-id order within each example).

    One integer key and a stable sort is several times faster than a lexsort over
    three keys; the key fits int64 unless the graphs are enormous (about 2**31
    states), and then the lexsort runs instead, with the same result.
    """
    if size * s_max * (2 * s_max + 1) + 2 * s_max < 2**63:
        composite = (example * s_max + ends) * (2 * s_max + 1) + (key + s_max)
        return np.argsort(composite, kind="stable")
    return np.lexsort((key, ends, example))


def _batch_csr(example, ends, key, arc_id, arc_mask, size, s_max):
    """CSR row pointers (B, S_max + 1) and arc ids (B, A_max) of the arcs grouped by
    ``ends``, ordered within a state by ``key`` (a state id, or minus one) then arc
    id, for the whole batch.

    This canonical order is the order in which the kernels combine the arcs of a
    state, which lets the banded fast path reproduce the general path bit for bit,
    and it decides Viterbi ties (the first arc in this order wins).
    """
    order = _csr_order(example, ends, key, size, s_max)
    arcs = np.zeros(arc_mask.shape, dtype=np.int32)
    arcs[arc_mask] = arc_id[order]  # sorted by example first: row-major fill
    counts = np.bincount(example * s_max + ends, minlength=size * s_max)
    counts = counts.reshape(size, s_max)
    ptr = np.zeros((size, s_max + 1), dtype=np.int32)
    np.cumsum(counts, axis=1, out=ptr[:, 1:])
    return ptr, arcs, counts


class GraphBatch:
    """Many graphs padded into arrays, with CSR indexes of in- and out-arcs.

    Build it with :func:`lattice.batch` (or let the engine build one from a list of
    graphs on every call), with :func:`lattice.build_batch` (one builder, many
    targets), or from padded arrays with :meth:`from_padded`. All arrays are
    read-only.

    A graph object that appears more than once (``[g] * B``, a bare ``Graph`` given
    to the engine, or ``[den, g1, den, g2]``) is stored once: the batch keeps the
    distinct graphs (:attr:`distinct`) and, per example, the row of the one it uses
    (:attr:`graph_index`), and the kernels read that row, so a denominator of
    300,000 arcs costs its own size, not B times it. The per-example arrays below
    are then made from those rows when first read: zero-stride views when one graph
    serves the whole batch (``shared_graph`` says which), gathered copies
    otherwise. Results, gradients included, are those of a batch of copies, bit for
    bit; gradients to arc weights stay per example (sum the rows of the examples
    that share a graph for that graph's).

    Attributes
    ----------
    graphs : tuple of Graph
        The graphs, in batch order (for a batch made by :meth:`from_padded`, built
        from the arrays when first read).
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
    band_slot : ndarray of int32, shape (B, A_max), or None
        For a banded batch, the band slot of every arc (padding: -1), the inverse
        of ``band_arc``: ``band_arc[b, band_slot[b, a]] == a``.
    max_in_degree, max_out_degree : int
        The largest number of arcs entering (leaving) one state: they size the
        Viterbi backpointers and decide whether the general kernels can use their
        vectorised ELL layout.

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
        # a graph object that repeats (a shared denominator, say) is stored once
        rows, distinct = {}, []
        for g in graphs:
            if rows.setdefault(id(g), len(distinct)) == len(distinct):
                distinct.append(g)
        if len(distinct) < len(graphs):
            graph_index = np.fromiter((rows[id(g)] for g in graphs), np.int64,
                                      len(graphs))
            self._share(GraphBatch(distinct), graph_index)
            self._set(_graphs=graphs)
            return
        num_states = np.array([g.num_states for g in graphs], dtype=np.int32)
        num_arcs = np.array([g.num_arcs for g in graphs], dtype=np.int32)
        state_mask = np.arange(num_states.max(initial=0)) < num_states[:, None]
        arc_mask = np.arange(num_arcs.max(initial=0)) < num_arcs[:, None]

        def padded(name, mask, fill, dtype):
            out = np.full(mask.shape, fill, dtype=dtype)
            if graphs:  # row-major order = batch order
                out[mask] = np.concatenate([getattr(g, name) for g in graphs])
            return out

        self._set(_graphs=graphs)
        self._index(
            num_states, num_arcs,
            labels=padded("labels", state_mask, 0, np.int32),
            tokens=padded("tokens", state_mask, -1, np.int32),
            start=padded("start", state_mask, -np.inf, np.float64),
            final=padded("final", state_mask, -np.inf, np.float64),
            src=padded("src", arc_mask, 0, np.int32),
            dst=padded("dst", arc_mask, 0, np.int32),
            weight=padded("weight", arc_mask, 0.0, np.float64),
        )  # fmt: skip

    @classmethod
    def from_padded(cls, num_states, num_arcs, labels, tokens, start, final, src, dst,
                    weight):
        """A batch from padded arrays, without building one :class:`Graph` per example.

        This is how a builder makes many graphs at once (see
        :func:`lattice.build_batch`): the arrays are validated with the rules of
        :class:`Graph`, row by row, in a few vectorised numpy operations.

        Parameters
        ----------
        num_states, num_arcs : array_like of int, shape (B,)
        labels, tokens : array_like of int, shape (B, S_max)
            As :class:`Graph` per row; values past ``num_states[b]`` are ignored.
        start, final : array_like of float, shape (B, S_max)
        src, dst : array_like of int, shape (B, A_max)
            Values past ``num_arcs[b]`` are ignored.
        weight : array_like of float, shape (B, A_max)

        Returns
        -------
        GraphBatch
            Equal, array for array, to ``GraphBatch`` of the graphs the rows describe.

        Raises
        ------
        TypeError, ValueError
            As :class:`Graph` would for the offending row, naming the example.

        Examples
        --------
        Two one-state graphs that stay in their state:

        >>> import numpy as np, lattice
        >>> gb = lattice.GraphBatch.from_padded(
        ...     num_states=[1, 1], num_arcs=[1, 1], labels=[[3], [4]],
        ...     tokens=[[0], [0]], start=np.zeros((2, 1)), final=np.zeros((2, 1)),
        ...     src=[[0], [0]], dst=[[0], [0]], weight=np.zeros((2, 1)))
        >>> gb.graphs[1].labels.tolist(), gb.band
        ([4], 2)
        """
        num_states = _check_sizes("num_states", num_states)
        num_arcs = _check_sizes("num_arcs", num_arcs, len(num_states))
        size = len(num_states)
        state_mask = np.arange(num_states.max(initial=0)) < num_states[:, None]
        arc_mask = np.arange(num_arcs.max(initial=0)) < num_arcs[:, None]

        def rows(name, values, mask, kind):
            arr = np.asarray(values)
            if arr.ndim != 2 or arr.shape[0] != size or arr.shape[1] < mask.shape[1]:
                raise ValueError(
                    f"{name} must have shape ({size}, >= {mask.shape[1]}), got {arr.shape}"
                )
            arr = arr[:, : mask.shape[1]]
            # numpy kinds: timedelta64 ("m") counts among numpy's integers, not here
            if arr.size and arr.dtype.kind not in ("iu" if kind == "index" else "iuf"):
                what = "integers" if kind == "index" else "real numbers"
                raise TypeError(f"{name} must hold {what}, got dtype {arr.dtype}")
            return arr

        def first_bad(name, bad, what):
            if bad.any():
                b = int(np.flatnonzero(bad.any(axis=1))[0])
                raise ValueError(f"{name} of example {b} {what}")

        labels = rows("labels", labels, state_mask, "index")
        tokens = rows("tokens", tokens, state_mask, "index")
        src = rows("src", src, arc_mask, "index")
        dst = rows("dst", dst, arc_mask, "index")
        first_bad("labels", state_mask & ((labels < 0) | (labels > INT32_MAX)),
                  "holds a negative label or one beyond int32")
        first_bad("tokens", state_mask & ((tokens < -1) | (tokens > INT32_MAX)),
                  "holds a token below -1 or beyond int32")
        for name, ends in (("src", src), ("dst", dst)):
            first_bad(name, arc_mask & ((ends < 0) | (ends >= num_states[:, None])),
                      "refers to a state outside the graph")
        weights = {}
        for name, values, mask in (("start", start, state_mask),
                                   ("final", final, state_mask),
                                   ("weight", weight, arc_mask)):
            arr = rows(name, values, mask, "weight").astype(np.float64)
            first_bad(name, mask & np.isnan(arr), "contains NaN")
            first_bad(name, mask & np.isposinf(arr),
                      "contains +inf (log-weights may be -inf, never +inf)")
            weights[name] = arr

        return cls.from_valid(
            num_states, num_arcs,
            labels=np.where(state_mask, labels, 0).astype(np.int32),
            tokens=np.where(state_mask, tokens, -1).astype(np.int32),
            start=np.where(state_mask, weights["start"], -np.inf),
            final=np.where(state_mask, weights["final"], -np.inf),
            src=np.where(arc_mask, src, 0).astype(np.int32),
            dst=np.where(arc_mask, dst, 0).astype(np.int32),
            weight=np.where(arc_mask, weights["weight"], 0.0),
        )  # fmt: skip

    @classmethod
    def from_valid(cls, num_states, num_arcs, band=None, **padded):
        """A batch from padded arrays already valid, typed (int32 indexes, float64
        weights) and padded as documented; for builders whose arrays are valid by
        construction (their tests compare them with graph-by-graph building).
        ``band``, if given, is ``(D, band_slot, band_arc)`` as the class documents
        ``band``, ``band_slot`` and ``band_arc``, for builders that know their graphs
        are banded.

        This is the builder-facing constructor (the ``ctc`` builder's
        ``build_batch`` uses it): nothing is checked, and the kernels index memory
        with these arrays, so use it only for arrays your code made valid, with
        tests that compare the result to :meth:`from_padded`.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> z = np.zeros((1, 1))
        >>> gb = lattice.GraphBatch.from_valid(
        ...     np.array([1], np.int32), np.array([1], np.int32),
        ...     labels=np.array([[2]], np.int32), tokens=np.array([[0]], np.int32),
        ...     start=z, final=z, src=np.array([[0]], np.int32),
        ...     dst=np.array([[0]], np.int32), weight=z)
        >>> gb.labels.tolist(), gb.band
        ([[2]], 2)
        """
        self = object.__new__(cls)
        self._set(_graphs=None)
        self._index(np.asarray(num_states, dtype=np.int32),
                    np.asarray(num_arcs, dtype=np.int32), band, **padded)
        return self

    def _index(self, num_states, num_arcs, band=None, **padded):
        """Store the padded arrays and the band layout (the CSR indexes are computed
        when first read: the banded fast path never needs them).

        Everything is computed on the whole batch at once: the batch is rebuilt for
        every training step, so there is no Python loop per graph.
        """
        s_max = int(num_states.max(initial=0))
        a_max = int(num_arcs.max(initial=0))
        # every array is frozen (see _frozen.py) and no attribute can be set from
        # outside (__setattr__): the kernels trust max_label, the arc ends and the
        # band and CSR indexes, so none may change once validated
        self._set(max_states=s_max, max_arcs=a_max, num_states=freeze(num_states),
                  num_arcs=freeze(num_arcs), _csr=None,
                  **{name: freeze(value) for name, value in padded.items()})
        if band is None:
            band = self._band_layout()  # checks _band_fits before allocating
        elif not _band_fits(band[0], s_max):
            # a builder's band layout the banded kernels cannot index with C ints
            # (d * S + s): a batch this large runs on the general kernels instead
            band = None
        if band is not None:
            self._set(band=band[0], band_slot=freeze(band[1]), band_arc=freeze(band[2]))
        else:
            self._set(band=None, band_slot=None, band_arc=None)
        self._set(max_label=int(self.labels.max(initial=-1)) if s_max else -1,
                  _cast_cache={}, _shared=None)

    def _share(self, distinct, graph_index):
        """Make this a batch whose example ``b`` uses graph ``graph_index[b]`` of the
        batch of distinct graphs ``distinct``: the kernels read ``distinct``'s rows,
        and the per-example arrays are made from them when first read
        (:meth:`__getattr__`)."""
        graph_index = freeze(np.asarray(graph_index, dtype=np.int64))
        self._set(_shared=(distinct, graph_index), _graphs=None, _csr=None,
                  _cast_cache={}, max_states=distinct.max_states,
                  max_arcs=distinct.max_arcs, band=distinct.band,
                  max_label=distinct.max_label)
        self._set(num_states=self._per_example(distinct.num_states),
                  num_arcs=self._per_example(distinct.num_arcs))

    def _per_example(self, value):
        """``value`` (one row per distinct graph) as one row per example: a
        zero-stride view if one graph serves every example, else a frozen gather."""
        if not isinstance(value, np.ndarray):
            return value
        distinct, graph_index = self._shared
        if len(distinct) == 1:
            return np.broadcast_to(value, graph_index.shape + value.shape[1:])
        return freeze(value[graph_index])

    def __getattr__(self, name):
        # only reached when the attribute is not set: the per-example arrays of a
        # batch that shares graphs, made from the distinct graphs' when first read
        shared = self.__dict__.get("_shared")
        if shared is None or name not in _PER_EXAMPLE:
            raise AttributeError(
                f"{type(self).__name__!r} object has no attribute {name!r}")
        value = self._per_example(getattr(shared[0], name))
        self._set(**{name: value})
        return value

    @property
    def distinct(self):
        """The batch of the distinct graphs, the rows the kernels read: ``self``
        unless a graph object repeats (see :attr:`graph_index`).

        Examples
        --------
        >>> import lattice
        >>> den, a, b = (lattice.build("ctc", t) for t in ([1, 2], [3], [2, 2]))
        >>> gb = lattice.batch([den, a, den, b, den])
        >>> len(gb), len(gb.distinct), gb.distinct.graphs[0] is den
        (5, 3, True)
        """
        return self if self._shared is None else self._shared[0]

    @property
    def graph_index(self):
        """ndarray of int64, shape (B,): the row of :attr:`distinct` that example
        ``b`` uses (``arange(B)`` when no graph object repeats).

        Examples
        --------
        >>> import lattice
        >>> den, a = lattice.build("ctc", [1, 2]), lattice.build("ctc", [3])
        >>> lattice.batch([den, a, den, den]).graph_index.tolist()
        [0, 1, 0, 0]
        """
        if self._shared is not None:
            return self._shared[1]
        index = self._cast_cache.get("graph_index")
        if index is None:
            index = self._cast_cache["graph_index"] = freeze(
                np.arange(len(self), dtype=np.int64))
        return index

    @property
    def shared_graph(self):
        """The :class:`Graph` every example uses, stored once, if the batch was made
        from one graph repeated (the same object) and has more than one example;
        else None (see :attr:`graph_index` for graphs shared by some examples).

        Examples
        --------
        >>> import lattice
        >>> g = lattice.build("ctc", [1, 2])
        >>> gb = lattice.batch([g] * 64)
        >>> gb.shared_graph is g, gb.labels.shape, gb.labels.strides
        (True, (64, 5), (0, 4))
        >>> lattice.batch([g, lattice.build("ctc", [1, 2])]).shared_graph is None
        True
        """
        if self._shared is None or len(self._shared[0]) != 1:
            return None
        return self._shared[0].graphs[0]

    def _set(self, **values):
        """Set attributes from inside the class (``__setattr__`` refuses)."""
        for name, value in values.items():
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError(
            f"GraphBatch is immutable: cannot set {name!r} (the kernels trust what was "
            "validated when the batch was built; build a new batch instead)"
        )

    def __delattr__(self, name):
        raise AttributeError(f"GraphBatch is immutable: cannot delete {name!r}")

    def __getstate__(self):
        if self._shared is not None:  # the distinct graphs, not the views made of them
            return {"_shared": self._shared, "_graphs": self._graphs}
        # the dtype casts are rebuilt when first asked for
        return {k: v for k, v in vars(self).items() if k != "_cast_cache"}

    def __setstate__(self, state):
        if state.get("_shared") is not None:
            self._share(*state["_shared"])
            self._set(_graphs=state["_graphs"])
            return

        # unpickled arrays (DataLoader workers, multiprocessing, copy) are fresh,
        # writeable arrays: freeze them again, as _index did
        def frozen(value):
            if isinstance(value, np.ndarray):
                return freeze(value)
            if isinstance(value, tuple):
                return tuple(frozen(v) for v in value)
            return value

        self._set(**{name: frozen(value) for name, value in state.items()})
        self._set(_cast_cache={})

    def _band_layout(self):
        """``(D, band_slot, band_arc)`` if the batch is banded, else None.

        Banded: every arc goes from ``s - d`` to ``s`` with ``d < MAX_BAND`` and no
        pair of states is joined twice. ``D`` is at least 2 (the row functions exist
        for D = 2 and D = 3); ``band_slot[b, a] = d * num_states[b] + dst`` (-1 for
        padding arcs) and ``band_arc`` its inverse, as the class documents them.
        """
        size, a_max = self.src.shape
        arc_mask = np.arange(a_max) < self.num_arcs[:, None]
        offset = self.dst - self.src
        if not size or not np.all((offset >= 0) & (offset < MAX_BAND) | ~arc_mask):
            return None
        slot = offset.astype(np.int64) * self.num_states[:, None] + self.dst
        if a_max:
            example = np.arange(size, dtype=np.int64)[:, None]
            pair = (example * (MAX_BAND * self.max_states) + slot)[arc_mask]
            if np.bincount(pair).max() > 1:
                return None
        band = max(BAND_WIDTHS[0], int(offset[arc_mask].max(initial=0)) + 1)
        if not _band_fits(band, self.max_states):
            return None
        band_slot = np.where(arc_mask, slot, -1).astype(np.int32)
        # band_arc inverts band_slot; padding arcs write into one extra column
        width = band * self.max_states
        band_arc = np.full((size, width + 1), -1, dtype=np.int32)
        target = np.where(arc_mask, slot, width).astype(np.intp)
        target += np.arange(0, size * (width + 1), width + 1, dtype=np.intp)[:, None]
        band_arc.reshape(-1)[target] = np.arange(a_max, dtype=np.int32)
        return band, band_slot, np.ascontiguousarray(band_arc[:, :width])

    def _index_csr(self):
        """(in_ptr, in_arc, out_ptr, out_arc, max_in_degree, max_out_degree),
        computed once."""
        if self._csr is None and self._shared is not None:
            *indexes, max_in, max_out = self._shared[0]._index_csr()
            self._set(_csr=tuple(self._per_example(a) for a in indexes)
                      + (max_in, max_out))
        if self._csr is None:
            size = len(self.num_states)
            arc_mask = np.arange(self.max_arcs) < self.num_arcs[:, None]
            example = np.repeat(np.arange(size), self.num_arcs)
            src = self.src[arc_mask].astype(np.int64)
            dst = self.dst[arc_mask].astype(np.int64)
            arc_id = np.arange(src.shape[0]) - np.repeat(
                np.cumsum(self.num_arcs) - self.num_arcs, self.num_arcs
            )
            # in-arcs by decreasing source (increasing offset d = dst - src), out-arcs
            # by increasing destination, then by arc id: the orders of the banded row
            # functions, which the general kernels follow too (see _batch_csr)
            in_ptr, in_arc, in_counts = _batch_csr(
                example, dst, -src, arc_id, arc_mask, size, self.max_states
            )
            out_ptr, out_arc, out_counts = _batch_csr(
                example, src, dst, arc_id, arc_mask, size, self.max_states
            )
            in_ptr, in_arc, out_ptr, out_arc = map(freeze, (in_ptr, in_arc, out_ptr, out_arc))
            self._set(_csr=(in_ptr, in_arc, out_ptr, out_arc,
                            int(in_counts.max(initial=0)),
                            int(out_counts.max(initial=0))))  # fmt: skip
        return self._csr

    in_ptr = property(lambda self: self._index_csr()[0])
    in_arc = property(lambda self: self._index_csr()[1])
    out_ptr = property(lambda self: self._index_csr()[2])
    out_arc = property(lambda self: self._index_csr()[3])
    # read from the distinct graphs: a batch that shares graphs makes its per-example
    # indexes only if they are read
    max_in_degree = property(lambda self: self.distinct._index_csr()[4])
    max_out_degree = property(lambda self: self.distinct._index_csr()[5])

    @property
    def graphs(self):
        if self._graphs is None and self._shared is not None:
            distinct = self._shared[0].graphs
            self._set(_graphs=tuple(distinct[r] for r in self._shared[1].tolist()))
        if self._graphs is None:
            self._set(_graphs=tuple(
                Graph(self.labels[b, :S], self.src[b, :A], self.dst[b, :A],
                      self.weight[b, :A], self.start[b, :S], self.final[b, :S],
                      self.tokens[b, :S])
                for b, (S, A) in enumerate(zip(self.num_states, self.num_arcs))
            ))  # fmt: skip
        return self._graphs

    def __len__(self):
        return len(self.num_states)

    def __repr__(self):
        return (
            f"GraphBatch(size={len(self)}, max_states={self.max_states}, "
            f"max_arcs={self.max_arcs})"
        )

    def weights_as(self, dtype):
        """Return ``(weight, start, final)`` cast to ``dtype`` (cached per dtype)."""
        dtype = np.dtype(dtype)
        cached = self._cast_cache.get(dtype)
        if cached is None and self._shared is not None:
            cached = tuple(self._per_example(a)
                           for a in self._shared[0].weights_as(dtype))
            self._cast_cache[dtype] = cached
        elif cached is None:
            cached = tuple(freeze(a, dtype) for a in (self.weight, self.start, self.final))
            self._cast_cache[dtype] = cached
        return cached

    def derived(self, key, make):
        """``make(self)``, computed the first time ``key`` is asked for and kept
        with the batch (not pickled): the GPU backend keeps its device copies of
        the batch's arrays here, under a key naming the device.

        Parameters
        ----------
        key : hashable
            What the value is; the same key returns the same value.
        make : callable
            Called with the batch when ``key`` is not known yet.

        Examples
        --------
        >>> import lattice
        >>> gb = lattice.batch([lattice.build("ctc", [1, 2])])
        >>> gb.derived("states", lambda b: int(b.num_states.sum()))
        5
        >>> gb.derived("states", lambda b: 0)   # kept: make is not called again
        5
        """
        cache_key = ("derived", key)
        if cache_key not in self._cast_cache:
            self._cast_cache[cache_key] = make(self)
        return self._cast_cache[cache_key]

    def _require_band(self, what):
        if self.band is None:
            raise ValueError(f"{what} needs a banded batch (GraphBatch.band is None)")

    def band_table(self, values, fill):
        """Per-arc ``values`` arranged as the banded kernels read them.

        Parameters
        ----------
        values : ndarray, shape (B, A_max)
        fill : scalar
            The value of slots with no arc (``-inf`` for log-weights).

        Returns
        -------
        ndarray, shape (B, band * S_max + band - 1)
            Slot ``d * num_states[b] + s`` holds the value of the arc from ``s - d``
            to ``s``, or ``fill`` where there is none; so do the ``band - 1``
            columns of padding the kernels read past the last slot.

        Raises
        ------
        ValueError
            If the batch is not banded.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> gb = lattice.batch([lattice.build("segmentation", [1, 2])])
        >>> gb.band_table(np.array([[10., 20., 30.]]), -1.0).tolist()  # d=0: stays
        [[10.0, 30.0, -1.0, 20.0, -1.0]]
        """
        self._require_band("band_table")
        return _gather_rows(values, self._transient("band_arc"), fill, pad=self.band - 1)

    def band_weights_as(self, dtype):
        """The batch's arc weights as a :meth:`band_table` (``-inf`` where no arc),
        cast to ``dtype``, frozen and cached per dtype.

        Examples
        --------
        >>> import lattice
        >>> gb = lattice.batch([lattice.build("segmentation", [1, 2])])
        >>> gb.band_weights_as("float32").tolist()
        [[0.0, 0.0, -inf, 0.0, -inf]]
        """
        self._require_band("band_weights_as")
        dtype = np.dtype(dtype)
        cached = self._cast_cache.get(("band", dtype))
        if cached is None and self._shared is not None:
            cached = self._per_example(self._shared[0].band_weights_as(dtype))
            self._cast_cache[("band", dtype)] = cached
        elif cached is None:
            cached = freeze(self.band_table(self.weights_as(dtype)[0], -np.inf))
            self._cast_cache[("band", dtype)] = cached
        return cached

    def arc_values(self, table):
        """The inverse of :meth:`band_table`: per-arc values (B, A_max) read from a
        band table, 0 for padding arcs.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> gb = lattice.batch([lattice.build("segmentation", [1, 2])])
        >>> gb.arc_values(gb.band_table(np.array([[10., 20., 30.]]), 0.0)).tolist()
        [[10.0, 20.0, 30.0]]
        """
        self._require_band("arc_values")
        return _gather_rows(table, self._transient("band_slot"), 0)

    def _transient(self, name):
        """The per-example array ``name``, made for one use (not kept on the batch)
        if the batch shares graphs and has not made it yet."""
        if self._shared is None or name in self.__dict__:
            return getattr(self, name)
        return self._per_example(getattr(self._shared[0], name))


def _gather_rows(values, index, fill, pad=0):
    """out[b, j] = values[b, index[b, j]], or ``fill`` where index[b, j] < 0 and in
    ``pad`` more columns."""
    values = np.asarray(values)
    size, width = values.shape
    out = np.full((size, index.shape[1] + pad), fill, dtype=values.dtype)
    if width:
        flat = index + np.arange(0, size * width, width, dtype=np.intp)[:, None]
        gathered = out[:, : index.shape[1]]
        values.reshape(-1).take(flat, out=gathered)
        gathered[index < 0] = fill
    return out


def batch(graphs) -> GraphBatch:
    """Pad a sequence of graphs into a :class:`GraphBatch`.

    Build the batch once and pass it to the engine on every step: the kernels read its
    arrays directly, so nothing is rebuilt per call.

    Parameters
    ----------
    graphs : sequence of Graph, or GraphBatch
        One graph per example. A ``GraphBatch`` is returned unchanged. A graph
        object that repeats is stored once (:attr:`GraphBatch.distinct`,
        :attr:`GraphBatch.graph_index`).

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
