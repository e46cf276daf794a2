"""The :class:`Unit` type of :mod:`lattice.compose`, and what every part of the package
needs to make and check units.

Private: import the public names from :mod:`lattice.compose`. The names here without
an underscore are shared by the package's modules (``_link``, ``_ops``, ``_chain``);
the others are used in this module only.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import index_array, int_value, is_int, log_weight, weight_array
from ..graph import Graph

_NEG_INF = -math.inf
PLACEHOLDER = -1  # the internal label of SYMBOL


class _Symbol:
    """The placeholder label of a template unit (see :data:`SYMBOL`)."""

    __slots__ = ()

    def __repr__(self):
        return "SYMBOL"

    def __reduce__(self):
        return "SYMBOL"


SYMBOL = _Symbol()  # "the target symbol"; documented where lattice.compose exports it


def check_unit(name, unit):
    """``unit``, or a ``TypeError`` naming ``name`` if it is not a :class:`Unit`."""
    if not isinstance(unit, Unit):
        raise TypeError(
            f"{name} must be a lattice.compose.Unit, got {type(unit).__name__}"
        )
    return unit


def check_label(name, label):
    """The label as a unit stores it (``PLACEHOLDER`` for :data:`SYMBOL`), checked."""
    if label is SYMBOL:
        return PLACEHOLDER
    if not is_int(label):
        raise TypeError(f"{name} must be an int or compose.SYMBOL, got {label!r}")
    return int_value(name, label, 0)


def _frozen(arr):
    arr.flags.writeable = False
    return arr


class Unit:
    """A graph fragment: states, arcs, entry and exit states, and a skip weight.

    Units are immutable; the combinators of :mod:`lattice.compose` make new ones.
    Build one by hand when no combinator fits (any state-emitting fragment can be
    written this way), then compose it like any other.

    Parameters
    ----------
    labels : sequence of int or SYMBOL, length S
        Emission column of each state; :data:`SYMBOL` makes the unit a template for
        :func:`chain`.
    src, dst : array_like of int, shape (A,)
        Arcs among the unit's states (each arc consumes one frame).
    weight : array_like of float, shape (A,), or None
        Arc log-weights (``None``: all ``0.0``).
    entry, exit : float or array_like of float, shape (S,)
        Log-weight of entering the unit in (leaving it from) each state; ``-inf``
        forbids. In the finished graph they are the start and final weights.
    skip : float, default -inf
        Log-weight of passing over the unit without using a frame (``-inf``: the unit
        is mandatory).
    tokens : int or array_like of int, shape (S,), default 0
        Target position of each state, counted from 0 within the unit (``-1``: none).
        The default makes the whole unit one target position.

    Attributes
    ----------
    labels, tokens, src, dst : ndarray of int64
        ``labels`` holds ``-1`` where the state emits :data:`SYMBOL`.
    weight, entry, exit : ndarray of float64
        Arc, entry and exit log-weights.
    skip : float
        Log-weight of passing over the unit (``-inf``: it is mandatory).
    num_tokens : int
        Number of target positions the unit spans (``max(tokens) + 1``).

    Raises
    ------
    TypeError, ValueError
        For arrays of the wrong type or length, arc ends that are not states, labels
        below 0, tokens below -1, and NaN or ``+inf`` weights (the message names the
        argument).

    Examples
    --------
    A "gap" of blank (0) and wildcard (9) frames in any order, possibly empty:

    >>> from lattice import compose as C
    >>> gap = C.Unit([0, 9], src=[0, 0, 1, 1], dst=[0, 1, 0, 1], entry=0.0, exit=0.0,
    ...              skip=0.0, tokens=-1)
    >>> gap
    Unit(num_states=2, num_arcs=4, optional)
    >>> (C.symbol(4) + gap + C.symbol(5)).to_graph().labels.tolist()
    [4, 0, 9, 5]
    """

    __slots__ = ("labels", "tokens", "src", "dst", "weight", "entry", "exit", "skip",
                 "num_tokens", "_template", "_single", "_key", "_blocks")

    def __init__(self, labels, src=(), dst=(), weight=None, *, entry, exit,
                 skip=_NEG_INF, tokens=0):
        if isinstance(labels, np.ndarray):
            if labels.ndim != 1:
                raise ValueError(
                    f"labels must be one-dimensional, got shape {labels.shape}"
                )
            items = labels.tolist()
        elif isinstance(labels, (str, bytes)) or not hasattr(labels, "__iter__"):
            raise TypeError(
                f"labels must be a sequence of ints or SYMBOL, got {labels!r}"
            )
        else:
            items = list(labels)
        lab = np.array([check_label(f"labels[{i}]", v) for i, v in enumerate(items)],
                       dtype=np.int64)
        num_states = lab.shape[0]
        src = index_array("src", src).astype(np.int64)
        dst = index_array("dst", dst, src.shape[0]).astype(np.int64)
        for name, ends in (("src", src), ("dst", dst)):
            if ends.size and (ends.min() < 0 or ends.max() >= num_states):
                bad = ends[(ends < 0) | (ends >= num_states)][0]
                raise ValueError(
                    f"{name} refers to state {int(bad)}, but the unit has {num_states} "
                    f"states (valid: 0..{num_states - 1})"
                )
        if weight is None:
            weight = np.zeros(src.shape[0])
        weight = weight_array("weight", weight, src.shape[0])
        entry = weight_array("entry", entry, num_states)
        exit = weight_array("exit", exit, num_states)
        skip = log_weight("skip", skip)
        tok = np.asarray(tokens)
        if tok.ndim == 0:
            tok = np.full(num_states, tok)
        tok = index_array("tokens", tok, num_states, minimum=-1, what="token")
        tok = tok.astype(np.int64)
        _init(self, lab, tok, src, dst, weight, entry, exit, skip)

    def __setattr__(self, name, value):
        raise AttributeError("Unit is immutable; combine units into new ones")

    def __delattr__(self, name):
        raise AttributeError("Unit is immutable; combine units into new ones")

    def __reduce__(self):
        # for pickle and copy: the arrays as they are (SYMBOL stays -1)
        return (make_unit, (self.labels, self.tokens, self.src, self.dst, self.weight,
                        self.entry, self.exit, self.skip, self.num_tokens))

    @property
    def num_states(self) -> int:
        """Number of states."""
        return int(self.labels.shape[0])

    @property
    def num_arcs(self) -> int:
        """Number of arcs inside the unit."""
        return int(self.src.shape[0])

    @property
    def is_optional(self) -> bool:
        """Whether a path may pass over the unit without using a frame."""
        return self.skip > _NEG_INF

    @property
    def is_template(self) -> bool:
        """Whether some state emits the :data:`SYMBOL` placeholder."""
        if self._template is None:
            template = bool((self.labels == PLACEHOLDER).any())
            object.__setattr__(self, "_template", template)
        return self._template

    def __repr__(self):
        extra = ", optional" if self.is_optional else ""
        if self.is_template:
            extra += ", template"
        return f"Unit(num_states={self.num_states}, num_arcs={self.num_arcs}{extra})"

    def __add__(self, other):
        if not isinstance(other, Unit):
            return NotImplemented
        from ._ops import concat  # the combinators import this module

        return concat(self, other)

    def __or__(self, other):
        if not isinstance(other, Unit):
            return NotImplemented
        from ._ops import union

        return union(self, other)

    def to_graph(self, sort_arcs=False) -> Graph:
        """Compile the unit into a validated :class:`lattice.Graph`.

        Entry weights become start weights and exit weights final weights; the skip
        weight is dropped (a path covers at least one frame).

        Parameters
        ----------
        sort_arcs : bool, default False
            Order the arcs by (source, destination) instead of the order of
            construction (the unit's own arcs first, then the arcs that join its
            parts: between neighbours first, then over optional parts). Two units
            describing the same graph with different construction orders then give
            equal graphs. Arc order only matters where Viterbi breaks exact ties
            (the arc listed first wins).

        Returns
        -------
        lattice.Graph

        Raises
        ------
        ValueError
            If a state still emits the :data:`SYMBOL` placeholder.

        Examples
        --------
        >>> from lattice import compose as C
        >>> g = (C.symbol(1) + C.symbol(2)).to_graph()
        >>> g
        Graph(num_states=2, num_arcs=3)
        >>> g.src.tolist(), g.dst.tolist(), g.start.tolist(), g.final.tolist()
        ([0, 1, 0], [0, 1, 1], [0.0, -inf], [-inf, 0.0])
        >>> (C.symbol(1) + C.symbol(2)).to_graph(sort_arcs=True).src.tolist()
        [0, 0, 1]
        """
        if self.is_template:
            raise ValueError(
                "the unit still has SYMBOL placeholder labels; it is a template for "
                "compose.chain(target, unit), not a graph"
            )
        src, dst, weight = self.src, self.dst, self.weight
        if sort_arcs:
            order = np.lexsort((dst, src))
            src, dst, weight = src[order], dst[order], weight[order]
        # the unit's arrays are valid by construction: skip the constructor's checks
        return Graph.from_valid(self.labels, src, dst, weight, self.entry, self.exit,
                              self.tokens)


def _init(unit, labels, tokens, src, dst, weight, entry, exit, skip, num_tokens=None):
    """Fill a Unit's slots from trusted arrays (no validation)."""
    if num_tokens is None:
        num_tokens = int(tokens.max()) + 1 if tokens.size else 0
    for name, value in (("labels", labels), ("tokens", tokens), ("src", src),
                        ("dst", dst), ("weight", weight), ("entry", entry),
                        ("exit", exit)):
        object.__setattr__(unit, name, _frozen(value))
    object.__setattr__(unit, "skip", float(skip))
    object.__setattr__(unit, "num_tokens", max(num_tokens, 0))
    object.__setattr__(unit, "_template", None)
    object.__setattr__(unit, "_single", None)
    object.__setattr__(unit, "_key", None)
    object.__setattr__(unit, "_blocks", None)
    return unit


def make_unit(labels, tokens, src, dst, weight, entry, exit, skip, num_tokens=None):
    """A Unit of trusted arrays (no validation; ``num_tokens`` from ``tokens`` when
    None). Every combinator makes its result with it."""
    return _init(object.__new__(Unit), labels, tokens, src, dst, weight, entry, exit,
                 skip, num_tokens)


def is_single(unit):
    """Whether the unit has exactly one entry state and one exit state (cached)."""
    if unit._single is None:
        one = (int((unit.entry > _NEG_INF).sum()) == 1
               and int((unit.exit > _NEG_INF).sum()) == 1)
        object.__setattr__(unit, "_single", one)
    return unit._single


def empty_unit():
    """The unit with no state, passed over with weight 0 (the identity of concat)."""
    i, f = np.zeros(0, np.int64), np.zeros(0)
    return make_unit(i, i.copy(), i.copy(), i.copy(), f, f.copy(), f.copy(), 0.0)


def content_key(unit):
    """A hashable key, equal for two units exactly when their sizes, their numbers of
    target positions and the dtypes and bits of all their arrays and weights are
    (cached).

    Units of equal keys give the same bits wherever :mod:`lattice.compose` uses them.
    """
    key = unit._key
    if key is None:
        arrays = (unit.labels, unit.tokens, unit.src, unit.dst, unit.weight,
                  unit.entry, unit.exit)
        key = (unit.num_states, unit.num_arcs, unit.num_tokens,
               "".join(a.dtype.str for a in arrays),
               b"".join([np.float64(unit.skip).tobytes()]
                        + [a.tobytes() for a in arrays]))
        object.__setattr__(unit, "_key", key)
    return key


def tiling_cache(unit):
    """The dict in which :func:`lattice.compose.chain` keeps the tiling blocks of
    ``unit`` as a template (made on first use).

    It belongs to the unit and dies with it. A unit is immutable (its attributes
    cannot be set or deleted, its arrays are flagged read-only), so what is derived
    from it stays valid.
    """
    cache = unit._blocks
    if cache is None:
        cache = {}
        object.__setattr__(unit, "_blocks", cache)
    return cache
