"""The combinators of :mod:`lattice.compose`: :func:`symbol` and :func:`blank` make
units, :func:`concat`, :func:`union`, :func:`optional`, :func:`weighted` and
:func:`repeat` make bigger units from smaller ones.

Private: import them from :mod:`lattice.compose`.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import check_size, int_value, log_weight, symbol_size
from ._link import check_parts, flat_join, flat_of, link
from ._unit import SYMBOL, Unit, check_label, check_unit, empty_unit, make_unit

_NEG_INF = -math.inf


def _check_int(name, value, minimum):
    # a count: its bound is the size of the graph it makes, not int32
    return int_value(name, value, minimum, int32=False)


def _as_units(name, units):
    one = units[0] if len(units) == 1 else None
    if one is not None and not isinstance(one, Unit) and hasattr(one, "__iter__"):
        units = tuple(units[0])
    for i, u in enumerate(units):
        check_unit(f"{name}[{i}]", u)
    return units


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
        return empty_unit()
    what = f"concat of {len(units)} units"
    check_parts(what, units)
    return link(flat_join([flat_of(u) for u in units]), what)


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
    check_parts(f"union of {len(units)} units", units)
    state_off = 0
    src, dst = [], []
    for u in units:
        src.append(u.src + state_off)
        dst.append(u.dst + state_off)
        state_off += u.num_states
    cat = np.concatenate
    skip = float(np.logaddexp.reduce([u.skip for u in units]))
    return make_unit(cat([u.labels for u in units]), cat([u.tokens for u in units]),
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
    check_unit("unit", unit)
    weight = log_weight("weight", weight)
    return make_unit(unit.labels, unit.tokens, unit.src, unit.dst, unit.weight,
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
    check_unit("unit", unit)
    weight = log_weight("weight", weight)
    return make_unit(unit.labels, unit.tokens, unit.src, unit.dst, unit.weight,
                     unit.entry + weight, unit.exit, unit.skip + weight)


def _loop(unit):
    """The unit with arcs from each exit back to each entry (one or more passes)."""
    ent = np.flatnonzero(unit.entry > _NEG_INF)
    ext = np.flatnonzero(unit.exit > _NEG_INF)
    xi = np.repeat(ext, ent.size)
    ei = np.tile(ent, ext.size)
    cat = np.concatenate
    return make_unit(unit.labels, unit.tokens, cat([unit.src, xi]), cat([unit.dst, ei]),
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
    check_unit("unit", unit)
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
    lab = check_label("label", label)
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
    return make_unit(np.full(num, lab, dtype=np.int64),
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
