"""Combinators for custom topologies: build an alignment graph from small pieces.

A :class:`Unit` is a graph *fragment*: states (each emitting a label), the arcs among
them, and which states a path may enter the fragment by (``entry`` log-weights) and
leave it from (``exit`` log-weights). A unit may also be *optional*: passed over
without using a frame, with log-weight ``skip``. Combinators build bigger units from
smaller ones, and :meth:`Unit.to_graph` turns the finished unit into a validated
:class:`lattice.Graph` (entries become start weights, exits final weights).

==========================  ==========================================================
piece                       what it is
==========================  ==========================================================
:func:`symbol`              one target symbol: ``states`` left-to-right states, with a
                            minimum and maximum number of frames
:func:`blank`               the same without a target position (a blank, silence)
:func:`concat`, ``a + b``   ``a`` then ``b``: arcs from every exit of ``a`` to every
                            entry of ``b`` (and past ``b`` when ``b`` is optional)
:func:`union`, ``a | b``    ``a`` or ``b`` (alternatives, e.g. pronunciations)
:func:`optional`            the unit, or nothing
:func:`repeat`              the unit ``min_count`` to ``max_count`` times
:func:`weighted`            the unit, with a log-weight for using it
:func:`chain`               one unit per symbol of a target, with optional units
                            between and around them (CTC's blanks); vectorised
:class:`Unit`               a hand-written fragment (arrays), and the base of all
==========================  ==========================================================

Every combinator computes the size of its result first and refuses, with a
``ValueError`` naming its options, one of more than ``2**31 - 1`` states or arcs (the
kernels index them with int32) before allocating it.

Target positions (``Graph.tokens``, which Viterbi reports as segments) come out of
the composition: a unit made by :func:`symbol` is one position; concatenation numbers
the positions of its parts one after another; alternatives of a :func:`union` share
their numbering; blanks have none (``-1``).

Examples
--------
CTC with a two-state model per symbol, in one expression:

>>> from lattice import compose as C
>>> b = C.optional(C.blank(0))
>>> unit = C.chain([3, 5], C.symbol(C.SYMBOL, states=2), between=b, leading=b,
...                trailing=b, separate_repeats=True)
>>> g = unit.to_graph()
>>> g.labels.tolist(), g.tokens.tolist()
([0, 3, 3, 0, 5, 5, 0], [-1, 0, 0, -1, 1, 1, -1])
>>> g.num_paths(6)
28
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ._checks import (beyond_size, check_size, index_array, int_value, is_int,
                      log_weight, symbol_size, target_ids, weight_array)
from .graph import Graph

__all__ = [
    "SYMBOL",
    "Unit",
    "blank",
    "chain",
    "concat",
    "optional",
    "repeat",
    "symbol",
    "union",
    "weighted",
]

_NEG_INF = -math.inf
_PLACEHOLDER = -1  # the internal label of SYMBOL


class _Symbol:
    """The placeholder label of a template unit (see :data:`SYMBOL`)."""

    __slots__ = ()

    def __repr__(self):
        return "SYMBOL"

    def __reduce__(self):
        return "SYMBOL"


SYMBOL = _Symbol()
"""Placeholder label: "the target symbol". A unit whose states emit ``SYMBOL`` is a
*template*; :func:`chain` makes one copy per target symbol with the placeholder
replaced by that symbol. A template cannot be turned into a graph by itself."""


def _check_int(name, value, minimum):
    # a count: its bound is the size of the graph it makes, not int32
    return int_value(name, value, minimum, int32=False)


def _check_unit(name, unit):
    if not isinstance(unit, Unit):
        raise TypeError(
            f"{name} must be a lattice.compose.Unit, got {type(unit).__name__}"
        )
    return unit


def _check_label(name, label):
    if label is SYMBOL:
        return _PLACEHOLDER
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
                 "num_tokens", "_template", "_single")

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
        lab = np.array([_check_label(f"labels[{i}]", v) for i, v in enumerate(items)],
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
        return (_make, (self.labels, self.tokens, self.src, self.dst, self.weight,
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
            template = bool((self.labels == _PLACEHOLDER).any())
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
        return concat(self, other)

    def __or__(self, other):
        if not isinstance(other, Unit):
            return NotImplemented
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
        return Graph._trusted(self.labels, src, dst, weight, self.entry, self.exit,
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
    return unit


def _make(labels, tokens, src, dst, weight, entry, exit, skip, num_tokens=None):
    return _init(object.__new__(Unit), labels, tokens, src, dst, weight, entry, exit,
                 skip, num_tokens)


# ------------------------------------------------------------------------------------
# flat parts: many units laid side by side, joined by _link
# ------------------------------------------------------------------------------------


class _Flat:
    """Parts laid side by side: states and arcs renumbered, tokens shifted.

    ``single`` says that every part has exactly one entry and one exit state, which
    lets :func:`_link` skip the bookkeeping of the general case.
    """

    __slots__ = ("sizes", "labels", "tokens", "num_tokens", "src", "dst", "weight",
                 "entry", "exit", "skip", "single")

    def __init__(self, sizes, labels, tokens, num_tokens, src, dst, weight, entry,
                 exit, skip, single):
        self.sizes = sizes  # (n,) states per part
        self.labels = labels
        self.tokens = tokens
        self.num_tokens = num_tokens
        self.src = src
        self.dst = dst
        self.weight = weight
        self.entry = entry
        self.exit = exit
        self.skip = skip  # (n,) skip weight per part
        self.single = single


def _flat_of(unit, skip=None):
    return _Flat(np.array([unit.num_states]), unit.labels, unit.tokens, unit.num_tokens,
                 unit.src, unit.dst, unit.weight, unit.entry, unit.exit,
                 np.array([unit.skip if skip is None else skip]), _single(unit))


def _single(unit):
    """Whether the unit has exactly one entry state and one exit state (cached)."""
    if unit._single is None:
        one = (int((unit.entry > _NEG_INF).sum()) == 1
               and int((unit.exit > _NEG_INF).sum()) == 1)
        object.__setattr__(unit, "_single", one)
    return unit._single


def _flat_join(flats):
    """Lay flat records side by side (states renumbered, tokens shifted)."""
    if len(flats) == 1:
        return flats[0]
    state_off = 0
    token_off = 0
    src, dst, tokens = [], [], []
    for f in flats:
        src.append(f.src + state_off if state_off else f.src)
        dst.append(f.dst + state_off if state_off else f.dst)
        tokens.append(np.where(f.tokens >= 0, f.tokens + token_off, -1)
                      if token_off and f.num_tokens else f.tokens)
        state_off += f.labels.shape[0]
        token_off += f.num_tokens
    cat = np.concatenate
    return _Flat(
        cat([f.sizes for f in flats]), cat([f.labels for f in flats]), cat(tokens),
        token_off, cat(src), cat(dst), cat([f.weight for f in flats]),
        cat([f.entry for f in flats]), cat([f.exit for f in flats]),
        cat([f.skip for f in flats]), all(f.single for f in flats),
    )


def _empty():
    """The unit with no state, passed over with weight 0 (the identity of concat)."""
    i, f = np.zeros(0, np.int64), np.zeros(0)
    return _make(i, i.copy(), i.copy(), i.copy(), f, f.copy(), f.copy(), 0.0)


def _check_parts(what, parts):
    """Refuse parts (units or flat records) whose states or own arcs are too many for
    one graph, before they are laid side by side."""
    check_size(what, sum(p.labels.shape[0] for p in parts),
               sum(p.src.shape[0] for p in parts))


def _num_links(nullable, ent_count, ext_count):
    """The number of arcs :func:`_link` adds, as a Python int: ``ext_count[p] *
    ent_count[q]`` for every ``p < q`` whose parts strictly between are optional."""
    n = nullable.shape[0]
    idx = np.arange(n)
    # the last part q that part p - 1 links to: the first mandatory part from p on
    stop = np.minimum.accumulate(np.where(nullable, n - 1, idx)[::-1])[::-1]
    ent_cum = np.concatenate([[0], np.cumsum(ent_count)])
    return int((ext_count[:-1] * (ent_cum[stop[1:] + 1] - ent_cum[idx[1:]])).sum())


def _link(flat, what):
    """Concatenate the parts of ``flat`` in order and return the resulting Unit.

    Arcs join every exit of part ``p`` to every entry of part ``q > p`` when all the
    parts strictly between are optional (weight: exit + their skips + entry). They
    come after the parts' own arcs, ordered by ``q - p``, then ``p``, then exit and
    entry state. ``what`` names the combinator in the error for a result with more
    arcs than a graph may have (refused before they are made).
    """
    sizes, skip = flat.sizes, flat.skip
    n = sizes.shape[0]
    if n == 0:
        return _empty()
    entry, exit_ = flat.entry, flat.exit
    num_states = flat.labels.shape[0]
    nullable = skip > _NEG_INF
    ent = np.flatnonzero(entry > _NEG_INF)
    ext = np.flatnonzero(exit_ > _NEG_INF)
    if flat.single:
        # part p has exactly one entry state ent[p] and one exit state ext[p]
        part_of = ent_ptr = ext_ptr = ent_count = ext_count = None
    else:
        part_of = np.repeat(np.arange(n), sizes)
        ent_count = np.bincount(part_of[ent], minlength=n)
        ext_count = np.bincount(part_of[ext], minlength=n)
        ent_ptr = np.cumsum(ent_count) - ent_count
        ext_ptr = np.cumsum(ext_count) - ext_count
    own = flat.src.shape[0]
    if beyond_size(own + ent.size * ext.size):  # at most one link per (exit, entry)
        ones = np.ones(n, dtype=np.int64)
        counts = (ones, ones) if flat.single else (ent_count, ext_count)
        check_size(what, num_states, own + _num_links(nullable, *counts))

    srcs, dsts, weights = [flat.src], [flat.dst], [flat.weight]
    ok = np.ones(n - 1, dtype=bool)
    all_ok = True
    acc = np.zeros(n - 1)  # sum of the skips of the parts strictly between p and p + d
    d = 1
    while ok.size:
        if flat.single:
            if all_ok:
                xi, ei = ext[: n - d], ent[d:]
                w = exit_[xi] + entry[ei]
                if d > 1:
                    w += acc
            else:
                p = np.flatnonzero(ok)
                xi, ei = ext[p], ent[p + d]
                w = exit_[xi] + acc[p] + entry[ei]
        else:
            p = np.flatnonzero(ok)
            q = p + d
            counts = ext_count[p] * ent_count[q]
            total = int(counts.sum())
            pair = np.repeat(np.arange(p.size), counts)
            r = np.arange(total) - np.repeat(np.cumsum(counts) - counts, counts)
            p, q = p[pair], q[pair]
            ne = ent_count[q]
            xi = ext[ext_ptr[p] + r // ne]
            ei = ent[ent_ptr[q] + r % ne]
            w = exit_[xi] + acc[p] + entry[ei]
        srcs.append(xi)
        dsts.append(ei)
        weights.append(w)
        # pairs one further apart need the part in between to be optional too
        step = nullable[d : n - 1]
        ok = ok[:-1] & step
        all_ok = all_ok and bool(step.all())
        if not all_ok and not ok.any():
            break
        between = skip[d : n - 1]
        acc = acc[:-1] + (between if all_ok else np.where(ok, between, 0.0))
        d += 1

    # entries of the whole: entries of part q if every part before q is optional;
    # exits of the whole: exits of part q if every part after q is optional
    new_entry = np.full(num_states, _NEG_INF)
    new_exit = np.full(num_states, _NEG_INF)
    everything = bool(nullable.all())
    first = n - 1 if everything else int(np.argmin(nullable))
    last = 0 if everything else n - 1 - int(np.argmin(nullable[::-1]))
    pre = np.zeros(first + 1)
    np.cumsum(skip[:first], out=pre[1:])  # skips before part q <= first
    post = np.zeros(n - last)
    post[:-1] = np.cumsum(skip[last + 1 :][::-1])[::-1]  # skips after part q >= last
    if flat.single:
        e, x = ent[: first + 1], ext[last:]
        new_entry[e] = entry[e] + pre
        new_exit[x] = exit_[x] + post
    else:
        stop = int(sizes[: first + 1].sum())
        new_entry[:stop] = entry[:stop] + pre[part_of[:stop]]
        begin = int(sizes[:last].sum())
        new_exit[begin:] = exit_[begin:] + post[part_of[begin:] - last]
    total_skip = float(skip.sum()) if everything else _NEG_INF

    cat = np.concatenate
    return _make(flat.labels, flat.tokens, cat(srcs), cat(dsts), cat(weights),
                 new_entry, new_exit, total_skip, flat.num_tokens)


def _as_units(name, units):
    one = units[0] if len(units) == 1 else None
    if one is not None and not isinstance(one, Unit) and hasattr(one, "__iter__"):
        units = tuple(units[0])
    for i, u in enumerate(units):
        _check_unit(f"{name}[{i}]", u)
    return units


# ------------------------------------------------------------------------------------
# combinators
# ------------------------------------------------------------------------------------


def concat(*units) -> Unit:
    """The units one after another (also ``a + b``).

    Every exit of a unit is joined to every entry of the next by an arc weighted
    ``exit + entry``; when a unit is optional, its neighbours are also joined past it
    (adding its ``skip``). Target positions are numbered on: the positions of the
    second unit come after those of the first. ``concat()`` with no unit is the empty
    unit (no state, optional with weight 0).

    Parameters
    ----------
    *units : Unit, or one iterable of Units

    Returns
    -------
    Unit

    Examples
    --------
    >>> from lattice import compose as C
    >>> g = C.concat(C.symbol(1), C.optional(C.symbol(2)), C.symbol(3)).to_graph()
    >>> list(zip(g.src.tolist(), g.dst.tolist()))
    [(0, 0), (1, 1), (2, 2), (0, 1), (1, 2), (0, 2)]
    >>> g.tokens.tolist()
    [0, 1, 2]
    """
    units = _as_units("units", units)
    if len(units) == 1:
        return units[0]
    if not units:
        return _empty()
    what = f"concat of {len(units)} units"
    _check_parts(what, units)
    return _link(_flat_join([_flat_of(u) for u in units]), what)


def union(*units) -> Unit:
    """Any one of the units: alternatives (also ``a | b``).

    The states and arcs of all units side by side, nothing joining them; a path goes
    through exactly one. The alternatives share their target positions (each counts
    from 0), so ``union`` of two pronunciations of a word is one position wide. The
    union is optional if any alternative is. A graph has one way to pass over a unit,
    so the skip weights of optional alternatives are log-added into one: scores under
    the log semiring are unchanged, while the max semiring and ``num_paths`` see a
    single way to skip.

    Parameters
    ----------
    *units : Unit, or one iterable of Units
        At least one. Use :func:`weighted` to give alternatives different weights.

    Returns
    -------
    Unit

    Examples
    --------
    Two pronunciations, the second less likely:

    >>> import math
    >>> from lattice import compose as C
    >>> word = C.union(C.symbol(1) + C.symbol(2),
    ...                C.weighted(C.symbol(3), math.log(0.25)))
    >>> g = word.to_graph()
    >>> g.labels.tolist(), g.tokens.tolist()
    ([1, 2, 3], [0, 1, 0])
    >>> g.start.round(3).tolist()
    [0.0, -inf, -1.386]
    """
    units = _as_units("units", units)
    if not units:
        raise ValueError("union needs at least one unit")
    if len(units) == 1:
        return units[0]
    _check_parts(f"union of {len(units)} units", units)
    state_off = 0
    src, dst = [], []
    for u in units:
        src.append(u.src + state_off)
        dst.append(u.dst + state_off)
        state_off += u.num_states
    cat = np.concatenate
    skip = float(np.logaddexp.reduce([u.skip for u in units]))
    return _make(cat([u.labels for u in units]), cat([u.tokens for u in units]),
                 cat(src), cat(dst), cat([u.weight for u in units]),
                 cat([u.entry for u in units]), cat([u.exit for u in units]), skip)


def optional(unit, weight=0.0) -> Unit:
    """The unit, or nothing (passed over with log-weight ``weight``).

    Parameters
    ----------
    unit : Unit
    weight : float, default 0.0
        Log-weight of skipping the unit. Taking it keeps its own weights.

    Returns
    -------
    Unit

    Examples
    --------
    >>> from lattice import compose as C
    >>> C.optional(C.blank(0)).skip, C.optional(C.blank(0), -1.5).skip
    (0.0, -1.5)
    """
    _check_unit("unit", unit)
    weight = log_weight("weight", weight)
    return _make(unit.labels, unit.tokens, unit.src, unit.dst, unit.weight,
                 unit.entry, unit.exit, float(np.logaddexp(unit.skip, weight)))


def weighted(unit, weight) -> Unit:
    """The unit with ``weight`` added to every way of using it (entries and skip).

    Use it to weight the alternatives of a :func:`union` (e.g. pronunciation
    probabilities) or to penalise an optional unit.

    Parameters
    ----------
    unit : Unit
    weight : float
        Log-weight added once per use of the unit.

    Returns
    -------
    Unit

    Examples
    --------
    >>> from lattice import compose as C
    >>> C.weighted(C.symbol(2), -0.5).entry.tolist()
    [-0.5]
    """
    _check_unit("unit", unit)
    weight = log_weight("weight", weight)
    return _make(unit.labels, unit.tokens, unit.src, unit.dst, unit.weight,
                 unit.entry + weight, unit.exit, unit.skip + weight)


def _loop(unit):
    """The unit with arcs from each exit back to each entry (one or more passes)."""
    ent = np.flatnonzero(unit.entry > _NEG_INF)
    ext = np.flatnonzero(unit.exit > _NEG_INF)
    xi = np.repeat(ext, ent.size)
    ei = np.tile(ent, ext.size)
    cat = np.concatenate
    return _make(unit.labels, unit.tokens, cat([unit.src, xi]), cat([unit.dst, ei]),
                 cat([unit.weight, unit.exit[xi] + unit.entry[ei]]), unit.entry,
                 unit.exit, unit.skip)


def repeat(unit, min_count=1, max_count=None) -> Unit:
    """The unit ``min_count`` to ``max_count`` times in a row.

    With a finite ``max_count`` the copies are concatenated (the optional ones nested,
    ``u u (u (u)?)?``, so every number of repetitions is one path) and each copy is
    its own target position(s). With ``max_count=None`` the last copy loops: arcs from
    its exits back to its entries, and every pass shares that copy's positions.

    Parameters
    ----------
    unit : Unit
        Must not be optional when ``max_count`` is None (``optional(repeat(u))``
        says "zero or more" without ambiguity).
    min_count : int, default 1
        At least 0.
    max_count : int or None, default None
        At least ``max(min_count, 1)``; ``None``: no upper bound.

    Returns
    -------
    Unit

    Examples
    --------
    >>> from lattice import compose as C
    >>> g = C.repeat(C.symbol(4, min_frames=2, max_frames=2), 1, 3).to_graph()
    >>> [g.num_paths(T) for T in range(1, 8)]   # 2, 4 or 6 frames
    [0, 1, 0, 1, 0, 1, 0]
    >>> C.repeat(C.blank(0), min_count=0)
    Unit(num_states=1, num_arcs=2, optional)
    """
    _check_unit("unit", unit)
    min_count = _check_int("min_count", min_count, 0)
    if max_count is not None:
        max_count = _check_int("max_count", max_count, max(min_count, 1))
    if unit.num_states == 0:
        raise ValueError("unit has no states; there is nothing to repeat")
    if max_count is None and unit.is_optional:
        raise ValueError(
            "unit is optional, so repeating it without bound is ambiguous; "
            "use optional(repeat(unit)) instead"
        )
    # copies and arcs of the result: every copy's exits join the next one's entries
    # (all later ones' when the unit is optional), and the loop joins them once more
    copies = max(min_count, 1) if max_count is None else max_count
    pairs = int((unit.exit > _NEG_INF).sum()) * int((unit.entry > _NEG_INF).sum())
    if max_count is None:
        links = copies * pairs
    elif unit.is_optional:
        links = copies * (copies - 1) // 2 * pairs
    else:
        links = (copies - 1) * pairs
    check_size(f"repeat(min_count={min_count}, max_count={max_count}) of a unit of "
               f"{unit.num_states} states and {unit.num_arcs} arcs",
               copies * unit.num_states, copies * unit.num_arcs + links)
    if max_count is None:
        looped = _loop(unit)
        if min_count == 0:
            return optional(looped)
        return concat(*([unit] * (min_count - 1) + [looped]))
    tail = None
    for _ in range(max_count - min_count):
        tail = optional(unit if tail is None else concat(unit, tail))
    parts = [unit] * min_count + ([tail] if tail is not None else [])
    return concat(*parts)


def symbol(label, states=1, *, min_frames=1, max_frames=None, stay=0.0, advance=0.0,
           token=True) -> Unit:
    """One target symbol: ``states`` left-to-right states, each used for >= 1 frame.

    The states emit ``label``; a path enters at the first, stays in each for one or
    more frames and advances to the next, and leaves from the last. ``min_frames`` and
    ``max_frames`` bound the frames of the whole symbol; the unit then has one state
    per (state, frames so far) that matters, all emitting ``label``, so the bounds
    are exact and no alignment is counted twice. Stay arcs carry ``stay``, advance
    arcs (and leaving the symbol) carry ``advance``: with ``stay = log p`` and
    ``advance = log(1 - p)`` this is a classic HMM with self-loop probability ``p``.

    Parameters
    ----------
    label : int or SYMBOL
        The emission column (:data:`SYMBOL`: the target symbol, in a :func:`chain`).
    states : int, default 1
        Number of left-to-right states (>= 1).
    min_frames : int, default 1
        Minimum frames of the symbol (values below ``states`` change nothing).
    max_frames : int or None, default None
        Maximum frames (>= ``max(min_frames, states)``); ``None``: no bound.
    stay, advance : float, default 0.0
        Log-weights of staying in a state and of advancing (also out of the symbol).
    token : bool, default True
        Whether the symbol is a target position (``False``: a blank, see
        :func:`blank`).

    Returns
    -------
    Unit

    Examples
    --------
    >>> from lattice import compose as C
    >>> C.symbol(7, states=3).to_graph().labels.tolist()
    [7, 7, 7]
    >>> g = C.symbol(7, min_frames=2, max_frames=3).to_graph()
    >>> [g.num_paths(T) for T in range(1, 5)]
    [0, 1, 1, 0]
    """
    lab = _check_label("label", label)
    k = _check_int("states", states, 1)
    m = _check_int("min_frames", min_frames, 1)
    if max_frames is not None:
        max_frames = _check_int("max_frames", max_frames, 1)
        if max_frames < max(m, k):
            raise ValueError(
                f"max_frames={max_frames} is below "
                + (f"min_frames={m}" if m >= k else f"states={k}")
                + "; the symbol could never end"
            )
    stay = log_weight("stay", stay)
    advance = log_weight("advance", advance)
    if not isinstance(token, bool):
        raise TypeError(f"token must be True or False, got {token!r}")
    check_size(f"symbol(states={k}, min_frames={m}, max_frames={max_frames})",
               *symbol_size(k, m, max_frames))
    nodes = {}  # (state j, frames counted) -> id, j-major

    if max_frames is None:
        def frames(j):  # frames so far, capped at m: min(j + 1, m) .. m
            return range(min(j + 1, m), m + 1)

        def step(c):
            return min(c + 1, m)
    else:
        def frames(j):
            return range(j + 1, max_frames - (k - 1 - j) + 1)

        def step(c):
            return c + 1

    for j in range(k):
        for c in frames(j):
            nodes[j, c] = len(nodes)
    src, dst, weight = [], [], []
    for (j, c), s in nodes.items():
        for jj, w in ((j, stay), (j + 1, advance)):
            d = nodes.get((jj, step(c)))
            if d is not None:
                src.append(s)
                dst.append(d)
                weight.append(w)
    num = len(nodes)
    entry = np.full(num, _NEG_INF)
    entry[nodes[0, 1]] = 0.0
    exit_ = np.full(num, _NEG_INF)
    for (j, c), s in nodes.items():
        if j == k - 1 and c >= m:
            exit_[s] = advance
    return _make(np.full(num, lab, dtype=np.int64),
                 np.full(num, 0 if token else -1, dtype=np.int64),
                 np.array(src, dtype=np.int64), np.array(dst, dtype=np.int64),
                 np.array(weight, dtype=np.float64), entry, exit_, _NEG_INF)


def blank(label, **options) -> Unit:
    """A symbol that is no target position: a blank, silence or garbage unit.

    Exactly :func:`symbol` with ``token=False``: its states get ``tokens = -1``, so
    Viterbi segments skip them and concatenation does not count them.

    Parameters
    ----------
    label : int
        The emission column.
    **options
        ``states``, ``min_frames``, ``max_frames``, ``stay``, ``advance`` as for
        :func:`symbol`.

    Returns
    -------
    Unit

    Examples
    --------
    >>> from lattice import compose as C
    >>> (C.symbol(3) + C.blank(0) + C.symbol(4)).to_graph().tokens.tolist()
    [0, -1, 1]
    """
    if "token" in options:
        raise TypeError("blank() takes no token option (a blank has no target position)")
    if label is SYMBOL:
        raise TypeError("label of a blank must be an int, not SYMBOL")
    return symbol(label, token=False, **options)


def _check_separator(name, unit):
    if unit is None:
        return None
    _check_unit(name, unit)
    if unit.is_template:
        raise ValueError(f"{name} must not contain SYMBOL placeholders")
    return unit


def chain(target, unit=None, *, between=None, leading=None, trailing=None,
          separate_repeats=False) -> Unit:
    """One unit per target symbol, in order, with optional units between and around.

    The result is ``concat(leading, u(t1), between, u(t2), between, ..., u(tK),
    trailing)`` (``None`` parts left out), computed in one vectorised step when
    ``unit`` is a template, so it is cheap enough to call for every training example.
    With an empty target it is ``leading`` (or else ``trailing``, or else the empty
    unit): both would stand for the same frames.

    Parameters
    ----------
    target : sequence of int
        Symbol ids (>= 0).
    unit : Unit, callable or mapping, optional
        What each symbol becomes. A *template* unit (its labels use :data:`SYMBOL`)
        is copied per symbol with the placeholder replaced; a callable
        ``unit(symbol) -> Unit`` or a mapping ``symbol -> Unit`` gives each symbol
        its own unit (e.g. a lexicon of pronunciations). Default:
        ``symbol(SYMBOL)``, one state per symbol.
    between, leading, trailing : Unit, optional
        Units placed between consecutive symbols, before the first and after the
        last (e.g. ``optional(blank(0))`` for CTC).
    separate_repeats : bool, default False
        Make ``between`` mandatory between two equal consecutive symbols even when it
        is optional: CTC's rule, without which "a a" could not be told from "a".

    Returns
    -------
    Unit

    Raises
    ------
    ValueError
        For a bad target, ``separate_repeats`` without ``between``, ``SYMBOL``
        in ``between`` / ``leading`` / ``trailing``, or a result of more than
        ``2**31 - 1`` states or arcs (refused before it is built).
    TypeError
        If a part is not a Unit, or ``unit`` is neither a Unit, a callable nor a
        mapping.

    Examples
    --------
    The CTC topology of ``[1, 1, 2]`` (blank 0):

    >>> from lattice import compose as C
    >>> b = C.optional(C.blank(0))
    >>> g = C.chain([1, 1, 2], between=b, leading=b, trailing=b,
    ...             separate_repeats=True).to_graph()
    >>> g.labels.tolist()
    [0, 1, 0, 1, 0, 2, 0]
    >>> sorted(zip(g.src.tolist(), g.dst.tolist()))[-4:]   # skip 3 -> 5, not 1 -> 3
    [(4, 5), (5, 5), (5, 6), (6, 6)]

    A lexicon: each word becomes one of its pronunciations:

    >>> lexicon = {7: C.symbol(1) + C.symbol(2), 8: C.symbol(3) | C.symbol(4)}
    >>> C.chain([7, 8], lexicon).to_graph().labels.tolist()
    [1, 2, 3, 4]
    """
    target = target_ids(target)
    if unit is None:
        unit = _DEFAULT_TEMPLATE
    between = _check_separator("between", between)
    leading = _check_separator("leading", leading)
    trailing = _check_separator("trailing", trailing)
    if not isinstance(separate_repeats, (bool, np.bool_)):
        raise TypeError(
            f"separate_repeats must be True or False, got {separate_repeats!r}"
        )
    if separate_repeats and between is None:
        raise ValueError("separate_repeats needs a between unit to put between repeats")
    if not isinstance(unit, Unit):
        units = _per_symbol_units(unit, target)
        return _chain_units(target, units, between, leading, trailing, separate_repeats)
    if target.shape[0] == 0:
        return _empty_chain(leading, trailing)
    return _link(_chain_flat(target, unit, between, leading, trailing, separate_repeats),
                 f"chain of a target of length {target.shape[0]}")


def _per_symbol_units(unit, target):
    """The units of each target symbol from a mapping or a callable."""
    if isinstance(unit, Mapping):
        def lookup(i, sym):
            if sym not in unit:
                raise ValueError(f"unit has no entry for target[{i}] = {sym}")
            return unit[sym]
    elif callable(unit):
        def lookup(i, sym):
            return unit(sym)
    else:
        raise TypeError(
            f"unit must be a Unit, a callable or a mapping, got {type(unit).__name__}"
        )
    units = []
    for i, sym in enumerate(target.tolist()):
        u = lookup(i, sym)
        if not isinstance(u, Unit):
            raise TypeError(
                f"unit({sym}) (for target[{i}]) returned {type(u).__name__}, not a Unit"
            )
        if u.is_template:
            raise ValueError(f"unit({sym}) (for target[{i}]) contains SYMBOL")
        units.append(u)
    return units


def _empty_chain(leading, trailing):
    if leading is not None:
        return leading
    if trailing is not None:
        return trailing
    return _empty()


def _chain_units(target, units, between, leading, trailing, separate_repeats):
    if not units:
        return _empty_chain(leading, trailing)
    parts = [] if leading is None else [_flat_of(leading)]
    sep = None if between is None else _flat_of(between)
    forced = None
    if separate_repeats and between.is_optional:
        forced = _flat_of(between, skip=_NEG_INF)
    for i, u in enumerate(units):
        if i and sep is not None:
            parts.append(forced if forced is not None and target[i] == target[i - 1]
                         else sep)
        parts.append(_flat_of(u))
    if trailing is not None:
        parts.append(_flat_of(trailing))
    what = f"chain of a target of length {len(units)}"
    _check_parts(what, parts)
    return _link(_flat_join(parts), what)


class _Block:
    """The arrays of one period of a chain: the symbol's template, then ``between``."""

    def __init__(self, unit, between):
        blk = [unit] if between is None else [unit, between]
        self.unit, self.between = unit, between
        self.S_u = unit.num_states
        self.P = sum(u.num_states for u in blk)
        self.A = sum(u.num_arcs for u in blk)
        self.nt = sum(u.num_tokens for u in blk)
        cat = np.concatenate
        tokens = cat([unit.tokens] + [np.where(u.tokens >= 0, u.tokens + unit.num_tokens,
                                               -1) for u in blk[1:]])
        self.ints = np.stack([cat([u.labels for u in blk]), tokens])
        self.has_token = (tokens >= 0).astype(np.int64)
        self.holes = np.flatnonzero(self.ints[0] == _PLACEHOLDER)
        self.floats = np.stack([cat([u.entry for u in blk]), cat([u.exit for u in blk])])
        self.arcs = np.stack([cat([unit.src] + [u.src + self.S_u for u in blk[1:]]),
                              cat([unit.dst] + [u.dst + self.S_u for u in blk[1:]])])
        self.weight = cat([u.weight for u in blk])
        self.sizes = np.array([u.num_states for u in blk])
        self.skip = np.array([u.skip for u in blk])
        self.single = all(_single(u) for u in blk)


_BLOCKS = {}  # (id(unit), id(between)) -> _Block; units are immutable


def _block(unit, between):
    key = (id(unit), id(between))
    blk = _BLOCKS.get(key)
    if blk is None or blk.unit is not unit or blk.between is not between:
        if len(_BLOCKS) >= 64:
            _BLOCKS.clear()
        blk = _BLOCKS[key] = _Block(unit, between)
    return blk


def _chain_flat(target, unit, between, leading, trailing, separate_repeats):
    """The flat parts of ``leading, u(t1), between, ..., u(tK), trailing``, tiled."""
    K = target.shape[0]
    blk = _block(unit, between)
    P, A, nt = blk.P, blk.A, blk.nt
    # the last period has no separator
    S_cut = K * P - (P - blk.S_u)
    A_cut = K * A - (A - unit.num_arcs)
    ends = [u for u in (leading, trailing) if u is not None]
    check_size(f"chain of a target of length {K}",
               S_cut + sum(u.num_states for u in ends),
               A_cut + sum(u.num_arcs for u in ends))

    ints = np.repeat(blk.ints[:, None, :], K, axis=1).reshape(2, K * P)  # a copy
    labels = ints[0, :S_cut]
    if blk.holes.size:
        holes = (blk.holes + (np.arange(K) * P)[:, None]).ravel()
        n_holes = blk.holes.size
        labels[holes] = target if n_holes == 1 else np.repeat(target, n_holes)
    tokens = ints[1, :S_cut]
    if nt:
        tokens += ((np.arange(K) * nt)[:, None] * blk.has_token).ravel()[:S_cut]
    floats = np.repeat(blk.floats[:, None, :], K, axis=1).reshape(2, K * P)
    arcs = (blk.arcs[:, None, :] + (np.arange(K) * P)[:, None]).reshape(2, K * A)
    weight = np.repeat(blk.weight[None], K, axis=0).reshape(K * A)[:A_cut]
    sizes = np.repeat(blk.sizes[None], K, axis=0).reshape(-1)
    skip = np.repeat(blk.skip[None], K, axis=0).reshape(-1)
    if between is not None:
        sizes, skip = sizes[:-1], skip[:-1]
        if separate_repeats and between.is_optional:
            skip[1::2][target[1:] == target[:-1]] = _NEG_INF
    middle = _Flat(sizes, labels, tokens, K * nt - (nt - unit.num_tokens),
                   arcs[0, :A_cut], arcs[1, :A_cut], weight, floats[0, :S_cut],
                   floats[1, :S_cut], skip, blk.single)
    if leading is None and trailing is None:
        return middle
    flats = [] if leading is None else [_flat_of(leading)]
    flats.append(middle)
    if trailing is not None:
        flats.append(_flat_of(trailing))
    return _flat_join(flats)


_DEFAULT_TEMPLATE = symbol(SYMBOL)
