"""chain: one unit per target symbol, tiled with numpy and linked in one pass.

A template unit (its labels use :data:`~lattice.compose.SYMBOL`) and the separator
between its copies make one *period* of the chain, a :class:`_Block` of arrays; the
chain repeats the period once per target symbol, fills in the symbols and hands the
parts to ``link``. The blocks of a template are kept in the template's own cache
(``tiling_cache``), keyed by the separator's contents (``content_key``), so they die
with it.

Private: import :func:`chain` from :mod:`lattice.compose`.
"""

from __future__ import annotations

import math
from collections.abc import Mapping

import numpy as np

from ..checks import check_size, target_ids
from ._link import Flat, check_parts, flat_join, flat_of, link
from ._ops import symbol
from ._unit import (PLACEHOLDER, SYMBOL, Unit, check_unit, content_key, empty_unit,
                    is_single, tiling_cache)

_NEG_INF = -math.inf


def _check_separator(name, unit):
    if unit is None:
        return None
    check_unit(name, unit)
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
    return link(_chain_flat(target, unit, between, leading, trailing, separate_repeats),
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
    return empty_unit()


def _chain_units(target, units, between, leading, trailing, separate_repeats):
    if not units:
        return _empty_chain(leading, trailing)
    parts = [] if leading is None else [flat_of(leading)]
    sep = None if between is None else flat_of(between)
    forced = None
    if separate_repeats and between.is_optional:
        forced = flat_of(between, skip=_NEG_INF)
    for i, u in enumerate(units):
        if i and sep is not None:
            parts.append(forced if forced is not None and target[i] == target[i - 1]
                         else sep)
        parts.append(flat_of(u))
    if trailing is not None:
        parts.append(flat_of(trailing))
    what = f"chain of a target of length {len(units)}"
    check_parts(what, parts)
    return link(flat_join(parts), what)


class _Block:
    """The arrays of one period of a chain: the symbol's template, then ``between``.

    It refers to neither unit: the template's cache holds it, and nothing else.
    """

    def __init__(self, unit, between):
        blk = [unit] if between is None else [unit, between]
        self.S_u = unit.num_states
        self.P = sum(u.num_states for u in blk)
        self.A = sum(u.num_arcs for u in blk)
        self.nt = sum(u.num_tokens for u in blk)
        cat = np.concatenate
        tokens = cat([unit.tokens] + [np.where(u.tokens >= 0, u.tokens + unit.num_tokens,
                                               -1) for u in blk[1:]])
        self.ints = np.stack([cat([u.labels for u in blk]), tokens])
        self.has_token = (tokens >= 0).astype(np.int64)
        self.holes = np.flatnonzero(self.ints[0] == PLACEHOLDER)
        self.floats = np.stack([cat([u.entry for u in blk]), cat([u.exit for u in blk])])
        self.arcs = np.stack([cat([unit.src] + [u.src + self.S_u for u in blk[1:]]),
                              cat([unit.dst] + [u.dst + self.S_u for u in blk[1:]])])
        self.weight = cat([u.weight for u in blk])
        self.sizes = np.array([u.num_states for u in blk])
        self.skip = np.array([u.skip for u in blk])
        self.single = all(is_single(u) for u in blk)


_MAX_BLOCKS = 8  # blocks a template keeps: one per separator it is chained with


def _block(unit, between):
    """The block of ``unit`` then ``between``, from the cache of ``unit``.

    The cache belongs to the template and dies with it (units are immutable, so a
    block stays valid). It is keyed by the contents of ``between``, not by the
    object: a separator made afresh for every call (as the ``star`` builder does)
    finds the block of an equal one, and the cache keeps no separator alive. It
    holds at most ``_MAX_BLOCKS`` blocks and starts afresh when full.
    """
    cache = tiling_cache(unit)
    key = None if between is None else content_key(between)
    blk = cache.get(key)
    if blk is None:
        if len(cache) >= _MAX_BLOCKS:
            cache.clear()
        blk = cache[key] = _Block(unit, between)
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
    middle = Flat(sizes, labels, tokens, K * nt - (nt - unit.num_tokens),
                  arcs[0, :A_cut], arcs[1, :A_cut], weight, floats[0, :S_cut],
                  floats[1, :S_cut], skip, blk.single)
    if leading is None and trailing is None:
        return middle
    flats = [] if leading is None else [flat_of(leading)]
    flats.append(middle)
    if trailing is not None:
        flats.append(flat_of(trailing))
    return flat_join(flats)


_DEFAULT_TEMPLATE = symbol(SYMBOL)
