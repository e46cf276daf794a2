"""The graph model: one time-synchronous, state-emitting alignment graph.

A :class:`Graph` describes every alignment of one training example (see
``docs/architecture.rst`` and DESIGN.md section 2). At each frame a path sits in
exactly one state ``s`` and the state emits the column ``labels[s]`` of the emission
matrix; between two frames the path follows one arc. All weights are log-domain
scores: ``0.0`` is neutral and ``-inf`` forbids.

Graphs are immutable and validated on construction, so the kernels can trust them.
"""

from __future__ import annotations

import numbers

import numpy as np

__all__ = ["Graph", "GraphBuilder"]

_INT32_MAX = np.iinfo(np.int32).max


def _as_index_array(name, values, length=None):
    """Validate a 1-D integer array and return it as a read-only int32 copy."""
    arr = np.asarray(values)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size == 0:
        arr = arr.astype(np.int32)
    elif arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integers, got dtype {arr.dtype}")
    if length is not None and arr.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {arr.shape[0]}")
    if arr.size and (arr.max() > _INT32_MAX or arr.min() < -_INT32_MAX):
        raise ValueError(f"{name} holds values outside the int32 range")
    out = arr.astype(np.int32, copy=True)
    out.flags.writeable = False
    return out


def _as_weight_array(name, values, length):
    """Validate a 1-D log-weight array (no NaN, no +inf) and return a float64 copy."""
    arr = np.asarray(values)
    if arr.ndim == 0:
        arr = np.full(length, arr)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be one-dimensional, got shape {arr.shape}")
    if arr.size and not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
    if arr.shape[0] != length:
        raise ValueError(f"{name} must have length {length}, got {arr.shape[0]}")
    out = arr.astype(np.float64, copy=True)
    if np.isnan(out).any():
        raise ValueError(f"{name} contains NaN")
    if np.isposinf(out).any():
        raise ValueError(f"{name} contains +inf (log-weights may be -inf, never +inf)")
    out.flags.writeable = False
    return out


class Graph:
    """A time-synchronous, state-emitting alignment graph.

    Parameters
    ----------
    labels : array_like of int, shape (S,)
        ``labels[s]`` is the emission column state ``s`` scores at every frame it
        occupies. Must be non-negative; the upper bound (the number of classes C) is
        checked when the graph meets emissions.
    src, dst : array_like of int, shape (A,)
        Arc ``a`` leads from state ``src[a]`` at frame ``t - 1`` to state ``dst[a]``
        at frame ``t``. Self-loops, parallel arcs and cycles are allowed.
    weight : array_like of float, shape (A,), or None
        Log-domain arc scores (``0.0`` neutral, ``-inf`` disables the arc). ``None``
        means all zeros.
    start, final : array_like of float, shape (S,)
        Log-weight of starting / ending a path in each state; ``-inf`` forbids it.
        A scalar is broadcast to every state.
    tokens : array_like of int, shape (S,), optional
        Which target position each state stands for (``-1`` for none, e.g. a blank).
        Viterbi segments are the runs of consecutive frames whose state has the same
        non-negative token. Defaults to ``arange(S)``: every state is its own unit.

    Raises
    ------
    TypeError
        If an index array does not hold integers or a weight array is not real.
    ValueError
        If lengths disagree, an arc endpoint or label is out of range, or a weight is
        NaN or ``+inf``.

    Examples
    --------
    A two-state "a then b" graph that may stay in either state:

    >>> import lattice
    >>> g = lattice.Graph(labels=[0, 1], src=[0, 0, 1], dst=[0, 1, 1],
    ...                   weight=None, start=[0.0, -float("inf")],
    ...                   final=[-float("inf"), 0.0])
    >>> g
    Graph(num_states=2, num_arcs=3)
    >>> g.labels.tolist(), g.src.tolist(), g.dst.tolist()
    ([0, 1], [0, 0, 1], [0, 1, 1])
    """

    __slots__ = ("labels", "src", "dst", "weight", "start", "final", "tokens")

    def __init__(self, labels, src, dst, weight, start, final, tokens=None):
        labels = _as_index_array("labels", labels)
        num_states = labels.shape[0]
        if labels.size and labels.min() < 0:
            raise ValueError(f"labels must be non-negative, got {int(labels.min())}")
        src = _as_index_array("src", src)
        num_arcs = src.shape[0]
        dst = _as_index_array("dst", dst, num_arcs)
        for name, ends in (("src", src), ("dst", dst)):
            if ends.size and (ends.min() < 0 or ends.max() >= num_states):
                bad = ends[(ends < 0) | (ends >= num_states)][0]
                raise ValueError(
                    f"{name} refers to state {int(bad)}, but the graph has "
                    f"{num_states} states (valid: 0..{num_states - 1})"
                )
        if weight is None:
            weight = np.zeros(num_arcs)
        weight = _as_weight_array("weight", weight, num_arcs)
        start = _as_weight_array("start", start, num_states)
        final = _as_weight_array("final", final, num_states)
        if tokens is None:
            tokens = np.arange(num_states, dtype=np.int32)
        tokens = _as_index_array("tokens", tokens, num_states)
        if tokens.size and tokens.min() < -1:
            raise ValueError(f"tokens must be >= -1, got {int(tokens.min())}")
        for name, value in (
            ("labels", labels),
            ("src", src),
            ("dst", dst),
            ("weight", weight),
            ("start", start),
            ("final", final),
            ("tokens", tokens),
        ):
            object.__setattr__(self, name, value)

    def __setattr__(self, name, value):
        raise AttributeError("Graph is immutable; build a new one")

    def __delattr__(self, name):
        raise AttributeError("Graph is immutable; build a new one")

    @property
    def num_states(self) -> int:
        """Number of states S."""
        return int(self.labels.shape[0])

    @property
    def num_arcs(self) -> int:
        """Number of arcs A."""
        return int(self.src.shape[0])

    def __repr__(self):
        return f"Graph(num_states={self.num_states}, num_arcs={self.num_arcs})"

    def __eq__(self, other):
        if not isinstance(other, Graph):
            return NotImplemented
        return all(
            np.array_equal(getattr(self, name), getattr(other, name))
            for name in self.__slots__
        )

    __hash__ = None


class GraphBuilder:
    """Build a :class:`Graph` state by state and arc by arc.

    Examples
    --------
    The CTC graph of the one-symbol target ``[3]`` with blank 0:

    >>> import lattice
    >>> b = lattice.GraphBuilder()
    >>> b0 = b.add_state(0, start=0.0, token=-1)
    >>> s = b.add_state(3, start=0.0, final=0.0, token=0)
    >>> b1 = b.add_state(0, final=0.0, token=-1)
    >>> for state in (b0, s, b1):
    ...     _ = b.add_arc(state, state)
    >>> _ = b.add_arc(b0, s); _ = b.add_arc(s, b1)
    >>> g = b.build()
    >>> g.num_states, g.num_arcs
    (3, 5)
    """

    def __init__(self):
        self._labels = []
        self._start = []
        self._final = []
        self._tokens = []
        self._src = []
        self._dst = []
        self._weight = []

    @property
    def num_states(self) -> int:
        """Number of states added so far."""
        return len(self._labels)

    @property
    def num_arcs(self) -> int:
        """Number of arcs added so far."""
        return len(self._src)

    def add_state(self, label, start=None, final=None, token=None) -> int:
        """Add a state emitting ``label`` and return its id.

        Parameters
        ----------
        label : int
            Emission column of the state (>= 0).
        start, final : float or None
            Log-weight of starting / ending in this state; ``None`` forbids it.
        token : int or None
            Target position the state stands for (``-1``: none). ``None`` means the
            state's own id, as in :class:`Graph`.

        Examples
        --------
        >>> import lattice
        >>> b = lattice.GraphBuilder()
        >>> b.add_state(5, start=0.0), b.add_state(2, final=0.0)
        (0, 1)
        """
        if not isinstance(label, numbers.Integral) or isinstance(label, bool):
            raise TypeError(f"label must be an int, got {label!r}")
        if label < 0:
            raise ValueError(f"label must be non-negative, got {label}")
        if token is not None and (
            not isinstance(token, numbers.Integral) or isinstance(token, bool)
        ):
            raise TypeError(f"token must be an int or None, got {token!r}")
        if token is not None and token < -1:
            raise ValueError(f"token must be >= -1, got {token}")
        state = len(self._labels)
        self._labels.append(int(label))
        self._start.append(-np.inf if start is None else float(start))
        self._final.append(-np.inf if final is None else float(final))
        self._tokens.append(state if token is None else int(token))
        return state

    def add_arc(self, src, dst, weight=0.0) -> int:
        """Add an arc from state ``src`` to state ``dst`` and return its id.

        Examples
        --------
        >>> import lattice
        >>> b = lattice.GraphBuilder()
        >>> s = b.add_state(0, start=0.0, final=0.0)
        >>> b.add_arc(s, s, weight=-0.5)
        0
        """
        for name, state in (("src", src), ("dst", dst)):
            if not isinstance(state, numbers.Integral) or isinstance(state, bool):
                raise TypeError(f"{name} must be an int state id, got {state!r}")
            if not 0 <= state < len(self._labels):
                raise ValueError(
                    f"{name}={state} is not a state (add_state has been called "
                    f"{len(self._labels)} times)"
                )
        self._src.append(int(src))
        self._dst.append(int(dst))
        self._weight.append(float(weight))
        return len(self._src) - 1

    def build(self) -> Graph:
        """Validate and return the :class:`Graph`.

        Examples
        --------
        >>> import lattice
        >>> b = lattice.GraphBuilder()
        >>> _ = b.add_state(1, start=0.0, final=0.0)
        >>> b.build()
        Graph(num_states=1, num_arcs=0)
        """
        return Graph(
            labels=np.asarray(self._labels, dtype=np.int64),
            src=np.asarray(self._src, dtype=np.int64),
            dst=np.asarray(self._dst, dtype=np.int64),
            weight=np.asarray(self._weight, dtype=np.float64),
            start=np.asarray(self._start, dtype=np.float64),
            final=np.asarray(self._final, dtype=np.float64),
            tokens=np.asarray(self._tokens, dtype=np.int64),
        )
