"""The linker of :mod:`lattice.compose`: parts laid side by side, then concatenated.

:class:`Flat` holds many parts side by side (states and arcs renumbered, tokens
shifted); :func:`link` joins them in order in one vectorised pass and returns the
:class:`~lattice.compose.Unit`. :func:`lattice.compose.concat` and
:func:`lattice.compose.chain` are both a :class:`Flat` of their parts and one
:func:`link`.

Private: the names without an underscore are shared by the package's modules.
"""

from __future__ import annotations

import math

import numpy as np

from ..checks import beyond_size, check_size
from ._unit import empty_unit, is_single, make_unit

_NEG_INF = -math.inf


class Flat:
    """Parts laid side by side: states and arcs renumbered, tokens shifted.

    ``single`` says that every part has exactly one entry and one exit state, which
    lets :func:`link` skip the bookkeeping of the general case.
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


def flat_of(unit, skip=None):
    """One unit as a flat record of one part (``skip`` replaces its skip weight)."""
    return Flat(np.array([unit.num_states]), unit.labels, unit.tokens, unit.num_tokens,
                unit.src, unit.dst, unit.weight, unit.entry, unit.exit,
                np.array([unit.skip if skip is None else skip]), is_single(unit))


def flat_join(flats):
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
    return Flat(
        cat([f.sizes for f in flats]), cat([f.labels for f in flats]), cat(tokens),
        token_off, cat(src), cat(dst), cat([f.weight for f in flats]),
        cat([f.entry for f in flats]), cat([f.exit for f in flats]),
        cat([f.skip for f in flats]), all(f.single for f in flats),
    )


def check_parts(what, parts):
    """Refuse parts (units or flat records) whose states or own arcs are too many for
    one graph, before they are laid side by side."""
    check_size(what, sum(p.labels.shape[0] for p in parts),
               sum(p.src.shape[0] for p in parts))


def _num_links(nullable, ent_count, ext_count):
    """The number of arcs :func:`link` adds, as a Python int: ``ext_count[p] *
    ent_count[q]`` for every ``p < q`` whose parts strictly between are optional."""
    n = nullable.shape[0]
    idx = np.arange(n)
    # the last part q that part p - 1 links to: the first mandatory part from p on
    stop = np.minimum.accumulate(np.where(nullable, n - 1, idx)[::-1])[::-1]
    ent_cum = np.concatenate([[0], np.cumsum(ent_count)])
    return int((ext_count[:-1] * (ent_cum[stop[1:] + 1] - ent_cum[idx[1:]])).sum())


def link(flat, what):
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
        return empty_unit()
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
    return make_unit(flat.labels, flat.tokens, cat(srcs), cat(dsts), cat(weights),
                     new_entry, new_exit, total_skip, flat.num_tokens)
