"""Partially transcribed data: a wildcard that absorbs the untranscribed stretches."""

import functools
import math

import numpy as np

from lattice import compose as C
from lattice.checks import int_value, is_real, target_ids

_GAPS = ("everywhere", "edges")


@functools.lru_cache(maxsize=64)
def _gap(wildcard, blank, penalty):
    if blank is None:
        # one wildcard state; every frame in it costs the penalty
        return C.Unit([wildcard], src=[0], dst=[0], weight=[penalty], entry=penalty,
                      exit=0.0, skip=0.0, tokens=-1)
    # blank and wildcard frames in any order
    return C.Unit([blank, wildcard], src=[0, 0, 1, 1], dst=[0, 1, 0, 1],
                  weight=[0.0, penalty, 0.0, penalty], entry=[0.0, penalty], exit=0.0,
                  skip=0.0, tokens=-1)


def star(target, wildcard, blank=None, penalty=0.0, gaps="everywhere"):
    """Target symbols in order, with wildcard stretches anywhere between and around.

    For partially transcribed data: the transcript lists some of what was said, in
    order, and the frames of everything untranscribed (before, between and after the
    listed symbols) are absorbed by a *wildcard* state. Without ``blank`` the graph is
    the ``segmentation`` grid with an optional wildcard stretch in every gap; with
    ``blank`` it is the CTC graph whose blanks may be interleaved with wildcard frames
    (between two equal symbols at least one blank or wildcard frame is required, as in
    CTC). Each wildcard frame adds ``penalty`` to the path score.

    **How the wildcard scores a frame.** A state emits exactly one emission column,
    so the wildcard is a column too, chosen by ``wildcard``:

    * an *extra column* appended to the model's scores, which is the usual choice.
      A column of zeros makes wildcard frames free: for log-probabilities that is the
      logsumexp over all classes ("any class", probability 1), so absorbed frames get
      no gradient and training ignores them. A column holding the maximum over the
      classes scores them as the best class instead.
    * a *garbage class* the model is trained to emit for untranscribed material.

    With free wildcard frames, use a negative ``penalty`` (e.g. ``log(0.1)`` per frame)
    so the target symbols are not squeezed into a few frames.

    Parameters
    ----------
    target : sequence of int
        The transcribed symbol ids, in order; must not contain ``wildcard`` or
        ``blank``.
    wildcard : int
        Emission column scoring wildcard frames.
    blank : int, optional
        CTC blank id (default: no blank, segmentation-style).
    penalty : float, default 0.0
        Log-weight added per wildcard frame (finite).
    gaps : {"everywhere", "edges"}, default "everywhere"
        Where wildcard stretches may be: before, between and after the symbols, or
        only before the first and after the last (a transcript of a middle part).

    Returns
    -------
    lattice.Graph
        Wildcard and blank states have ``tokens = -1``; symbol ``i`` has token ``i``.

    Examples
    --------
    Append a free wildcard column (index C) to log-probabilities of shape (B, T, C):

    >>> import numpy as np, lattice
    >>> log_probs = np.log(np.full((1, 6, 3), 1 / 3))
    >>> emissions = np.concatenate([log_probs, np.zeros((1, 6, 1))], axis=2)
    >>> g = lattice.build("star", [1, 2], wildcard=3, penalty=np.log(0.5))
    >>> g.labels.tolist()
    [3, 1, 3, 2, 3]
    >>> float(lattice.forward(emissions, [g])[0]) > float(
    ...     lattice.forward(log_probs, [lattice.build("segmentation", [1, 2])])[0])
    True
    """
    target = target_ids(target)
    wildcard = int_value("wildcard", wildcard, 0)
    if blank is not None:
        blank = int_value("blank", blank, 0)
        if blank == wildcard:
            raise ValueError(f"blank and wildcard must differ, both are {blank}")
    if not is_real(penalty):
        raise TypeError(f"penalty must be a real number (a log-weight), got {penalty!r}")
    penalty = float(penalty)
    if not math.isfinite(penalty):
        raise ValueError(f"penalty must be finite, got {penalty}")
    if not isinstance(gaps, str) or gaps not in _GAPS:
        raise ValueError(
            f"gaps must be one of {', '.join(map(repr, _GAPS))}, got {gaps!r}"
        )
    for name, value in (("wildcard", wildcard), ("blank", blank)):
        if value is not None and np.any(target == value):
            pos = int(np.flatnonzero(target == value)[0])
            raise ValueError(
                f"target contains the {name} id {value} at position {pos}; "
                f"the {name} cannot be a target symbol"
            )
    gap = _gap(wildcard, blank, penalty)
    if gaps == "everywhere":
        between = gap
    elif blank is not None:
        between = C.optional(C.blank(blank))
    else:
        between = None
    return C.chain(
        target,
        between=between,
        leading=gap,
        trailing=gap,
        separate_repeats=blank is not None,
    ).to_graph()
