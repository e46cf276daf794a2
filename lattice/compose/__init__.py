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

# The package holds one private module per job: _unit (the Unit type and what every
# module needs to make and check units), _link (the linker: parts side by side, then
# concatenated in one pass), _ops (the combinators) and _chain (chain, tiled with
# numpy). Only the names of __all__ are public.

from . import _unit
from ._chain import chain
from ._ops import blank, concat, optional, repeat, symbol, union, weighted
from ._unit import Unit
from ._unit import make_unit as _make  # Units pickled before the split name it

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

SYMBOL = _unit.SYMBOL
"""Placeholder label: "the target symbol". A unit whose states emit ``SYMBOL`` is a
*template*; :func:`chain` makes one copy per target symbol with the placeholder
replaced by that symbol. A template cannot be turned into a graph by itself."""
