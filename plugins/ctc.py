"""The CTC topology: the target with an optional blank between and around symbols."""

import functools

import numpy as np

from lattice import compose as C

from ._target import check_int_option, check_target

_BETWEEN = ("optional", "required", "none")


@functools.lru_cache(maxsize=64)
def _blank_units(blank):
    unit = C.blank(blank)
    return unit, C.optional(unit)


def ctc(target, blank=0, between="optional"):
    """Blank-augmented CTC alignment graph of ``target``.

    States are ``blank, t1, blank, t2, ..., tK, blank`` (2K + 1). Every state may stay;
    every state may advance to the next; a symbol may skip the blank that follows it
    when the next symbol differs (between two equal symbols the blank is mandatory,
    which is how CTC tells "aa" from "a"). Paths start in the first blank or the first
    symbol and end in the last symbol or the last blank. An empty target gives one
    blank state. Summing this graph under the log semiring gives the CTC
    log-likelihood of ``torch.nn.functional.ctc_loss``.

    Symbol states carry ``tokens`` = their position in the target, blanks ``-1``, so
    Viterbi segments are the frames of each target symbol.

    ``between`` selects a variant by what may separate two symbols (the leading and
    trailing blanks stay optional in all of them):

    * ``"optional"`` (default): standard CTC, as above.
    * ``"required"``: at least one blank frame between *every* two symbols (no skip
      arcs). Use it when symbols must be separated in time, e.g. to keep
      consecutive tokens from touching when their boundaries matter; the target
      needs ``T >= 2K - 1`` frames.
    * ``"none"``: blanks only before the first and after the last symbol
      (``K + 2`` states: leading silence, the symbols back to back, trailing
      silence). Use it for segmentation-style training where only the edges of an
      utterance are unlabelled; consecutive equal symbols are then told apart by
      the path, not by the labels.

    The graph is built with :mod:`lattice.compose` as
    ``chain(target, between=..., leading=optional(blank(blank)),
    trailing=optional(blank(blank)), separate_repeats=...)``.

    Parameters
    ----------
    target : sequence of int
        Symbol ids; must not contain ``blank``.
    blank : int, default 0
        The emission column of the blank.
    between : {"optional", "required", "none"}, default "optional"
        The blank between symbols, see above.

    Returns
    -------
    lattice.Graph

    Examples
    --------
    >>> import lattice
    >>> g = lattice.build("ctc", [1, 2, 2], blank=0)
    >>> g.labels.tolist()
    [0, 1, 0, 2, 0, 2, 0]
    >>> g.num_arcs   # 7 stays + 6 advances + 1 skip (1 -> 2, not 2 -> 2)
    14
    >>> lattice.build("ctc", [1, 2, 2], between="required").num_arcs   # no skip
    13
    >>> lattice.build("ctc", [1, 2, 2], between="none").labels.tolist()
    [0, 1, 2, 2, 0]
    """
    target = check_target(target)
    blank = check_int_option("blank", blank, 0)
    if not isinstance(between, str) or between not in _BETWEEN:
        raise ValueError(
            f"between must be one of {', '.join(map(repr, _BETWEEN))}, got {between!r}"
        )
    if np.any(target == blank):
        pos = int(np.flatnonzero(target == blank)[0])
        raise ValueError(
            f"target contains the blank id {blank} at position {pos}; "
            "the blank cannot be a target symbol"
        )
    unit, optional = _blank_units(blank)
    separator = {"optional": optional, "required": unit, "none": None}[between]
    return C.chain(
        target,
        between=separator,
        leading=optional,
        trailing=optional,
        separate_repeats=between == "optional",
    ).to_graph()
