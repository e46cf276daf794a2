"""The CTC topology: the target with an optional blank between and around symbols."""

import functools

import numpy as np

import lattice
from lattice import compose as C
from lattice.checks import INT32_MAX, beyond_size, check_size, int_value, target_ids

from . import _ctc_fill

_BETWEEN = ("optional", "required", "none")


@functools.lru_cache(maxsize=64)
def _blank_units(blank):
    unit = C.blank(blank)
    return unit, C.optional(unit)


def _check_options(blank, between):
    blank = int_value("blank", blank, 0)
    if not isinstance(between, str) or between not in _BETWEEN:
        raise ValueError(
            f"between must be one of {', '.join(map(repr, _BETWEEN))}, got {between!r}"
        )
    return blank


def _check_targets(targets):
    """``targets`` as a list of 1-D int64 arrays of ids in ``[0, INT32_MAX]``.

    Targets that already are 1-D int64 arrays (as ``lattice.torch`` passes them on
    every training step) are checked together in one pass; anything else, or a bad
    id, goes through ``target_ids`` one by one (which names the culprit).
    """
    targets = list(targets)
    if all(type(t) is np.ndarray and t.ndim == 1 and t.dtype == np.int64
           for t in targets):
        flat = np.concatenate(targets) if targets else np.zeros(0, dtype=np.int64)
        if flat.min(initial=0) >= 0 and flat.max(initial=0) <= INT32_MAX:
            return targets
    return [target_ids(t, name=f"targets[{b}]") for b, t in enumerate(targets)]


def _check_no_blank(target, blank, where="target"):
    if np.any(target == blank):
        pos = int(np.flatnonzero(target == blank)[0])
        raise ValueError(
            f"{where} contains the blank id {blank} at position {pos}; "
            "the blank cannot be a target symbol"
        )


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
    target = target_ids(target)
    blank = _check_options(blank, between)
    _check_no_blank(target, blank)
    unit, optional = _blank_units(blank)
    separator = {"optional": optional, "required": unit, "none": None}[between]
    return C.chain(
        target,
        between=separator,
        leading=optional,
        trailing=optional,
        separate_repeats=between == "optional",
    ).to_graph()


def ctc_batch(targets, blank=0, between="optional"):
    """The CTC graphs of many targets as one :class:`lattice.GraphBatch`, vectorised.

    The same graphs as :func:`ctc`, state for state and arc for arc (stays, then
    advances, then skips, each in state order), built for the whole batch with a few
    numpy operations instead of one composition per target: this runs on every
    training step of ``lattice.torch.ctc_loss``. ``between="none"`` goes through
    :func:`ctc` target by target. Reached as ``lattice.build_batch("ctc", ...)``.

    Parameters
    ----------
    targets : sequence of sequences of int
        One target per example.
    blank, between
        As in :func:`ctc`.

    Returns
    -------
    lattice.GraphBatch

    Examples
    --------
    >>> import lattice
    >>> gb = lattice.build_batch("ctc", [[1, 2, 2], [3]])
    >>> gb.labels.tolist()
    [[0, 1, 0, 2, 0, 2, 0], [0, 3, 0, 0, 0, 0, 0]]
    >>> gb.num_arcs.tolist()   # [7 stays + 6 advances + 1 skip, 3 + 2]
    [14, 5]
    """
    blank = _check_options(blank, between)
    arrays = _check_targets(targets)
    if between == "none":
        return lattice.batch([ctc(t, blank, between) for t in arrays])
    size = len(arrays)
    k = np.array([a.shape[0] for a in arrays], dtype=np.int64)
    # ids and blank are within int32 (checked above): the int32 arrays cannot wrap
    flat = np.concatenate(arrays) if size else np.zeros(0, dtype=np.int64)
    skips = between == "optional"
    # 2 K + 1 states and 4 K + 1 arcs plus a skip per change of symbol, at most 5 K;
    # count_arcs counts into int32, so a graph beyond the limit is refused first
    if beyond_size(5 * int(k.max(initial=0))):
        for b, a in enumerate(arrays):
            n_skips = int(np.count_nonzero(a[1:] != a[:-1])) if skips else 0
            check_size(f"targets[{b}] of {a.shape[0]} symbols", 2 * a.shape[0] + 1,
                       4 * a.shape[0] + 1 + n_skips)
    num_arcs = np.empty(size, dtype=np.int32)
    first_blank = _ctc_fill.count_arcs(flat, k, blank, skips, num_arcs)
    if first_blank >= 0:  # the message names the example and the position in it
        b = int(np.searchsorted(np.cumsum(k), first_blank, side="right"))
        _check_no_blank(arrays[b], blank, where=f"targets[{b}]")
    num_states = 2 * k + 1
    s_max = int(num_states.max(initial=0))
    a_max = int(num_arcs.max(initial=0))
    # D = 3 if some example has a skip arc (it has more than 2 S - 1 arcs)
    band = 3 if bool((num_arcs > 2 * num_states - 1).any()) else 2
    labels, tokens, src, dst, band_slot = (
        np.empty((size, n), dtype=np.int32) for n in (s_max, s_max, a_max, a_max, a_max)
    )
    start, final = np.empty((size, s_max)), np.empty((size, s_max))
    band_arc = np.empty((size, band * s_max), dtype=np.int32)
    _ctc_fill.fill(flat, k, blank, skips, labels, tokens, start, final, src, dst,
                   band_slot, band_arc)  # fmt: skip
    # valid and padded as GraphBatch documents by construction (the tests compare
    # every array with graph-by-graph building), so no second validation pass
    return lattice.GraphBatch.from_valid(
        num_states, num_arcs, (band, band_slot, band_arc) if size else None,
        labels=labels, tokens=tokens, start=start, final=final, src=src, dst=dst,
        weight=np.zeros((size, a_max)),
    )  # fmt: skip


ctc.build_batch = ctc_batch
