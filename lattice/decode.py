"""Decoding: from per-frame scores to symbol sequences.

* :func:`ctc_greedy` — best class per frame, merge repeats, drop blanks (batched).
* :func:`ctc_beam_search` — CTC prefix beam search with length normalisation, a blank
  penalty and n-best output.
* :func:`segmentation_greedy` — best class per frame, merge repeats (no blank): the
  best path when every frame belongs to some symbol.
* :func:`edit_distance`, :func:`error_rate` — scoring decoded sequences.

Inputs are numpy arrays or torch tensors (converted at the edge; torch is never
imported here) of shape ``(B, T, C)`` — the engine's layout — or ``(T, C)`` for one
example. Scores are usually log-probabilities (``log_softmax`` outputs); a torch
``(T, B, C)`` tensor from a CTC model is passed as ``log_probs.transpose(0, 1)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

from .checks import int_value, is_int, real_value
from .checks import lengths as check_lengths

__all__ = [
    "Hypothesis",
    "ctc_beam_search",
    "ctc_greedy",
    "edit_distance",
    "error_rate",
    "segmentation_greedy",
]


# ----------------------------------------------------------------------------------
# input checks
# ----------------------------------------------------------------------------------


def _as_scores(emissions, name="emissions"):
    """Return (array (B, T, C) float, unbatched flag) from a numpy array or tensor."""
    if type(emissions).__module__.split(".")[0] == "torch":
        t = emissions.detach()
        if t.device.type != "cpu":
            t = t.cpu()
        if not t.is_floating_point():
            raise TypeError(f"{name} must be floating point, got {t.dtype}")
        if str(t.dtype) not in ("torch.float32", "torch.float64"):
            t = t.float()
        arr = t.numpy()
    else:
        arr = np.asarray(emissions)
        if arr.dtype == np.bool_ or not (
            np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
        ):
            raise TypeError(f"{name} must hold real numbers, got dtype {arr.dtype}")
        if not np.issubdtype(arr.dtype, np.floating) or arr.dtype.itemsize < 4:
            arr = arr.astype(np.float64)
    if arr.ndim not in (2, 3):
        raise ValueError(
            f"{name} must have shape (B, T, C) or (T, C), got shape {arr.shape}"
        )
    if arr.shape[-1] == 0:
        raise ValueError(f"{name} must have at least one class (last axis is empty)")
    if np.isnan(arr).any():
        raise ValueError(f"{name} contains NaN")
    unbatched = arr.ndim == 2
    return (arr[None] if unbatched else arr), unbatched


def _as_lengths(lengths, size, frames):
    if type(lengths).__module__.split(".")[0] == "torch":
        lengths = lengths.detach().cpu().numpy()
    return check_lengths("lengths", lengths, size, frames)


def _check_blank(blank, classes):
    if not is_int(blank):
        raise TypeError(f"blank must be an int, got {blank!r}")
    blank = int(blank)
    if not 0 <= blank < classes:
        raise ValueError(f"blank must lie in [0, {classes}) (the classes), got {blank}")
    return int(blank)


# ----------------------------------------------------------------------------------
# greedy decoding
# ----------------------------------------------------------------------------------


def _best_per_frame(arr, lengths, blank=None, blank_penalty=0.0):
    if blank is not None and blank_penalty:
        arr = arr.copy()
        arr[..., blank] -= blank_penalty
    best = arr.argmax(axis=-1)  # (B, T)
    valid = np.arange(arr.shape[1])[None, :] < lengths[:, None]
    return best, valid


def ctc_greedy(emissions, lengths=None, blank=0, blank_penalty=0.0):
    """Greedy (best path) CTC decoding: best class per frame, merge repeats, drop blanks.

    Parameters
    ----------
    emissions : ndarray or Tensor, shape (B, T, C) or (T, C)
        Per-frame scores (log-probabilities or logits: only the argmax matters).
    lengths : array_like of int, shape (B,), optional
        Valid frames per example (default T); frames past the length are ignored.
    blank : int, default 0
        The blank class.
    blank_penalty : float, default 0.0
        Subtracted from the blank's score at every frame before the argmax: positive
        values emit more symbols (fewer deletions, more insertions).

    Returns
    -------
    list of list of int
        The decoded symbols of every example; a single list for a (T, C) input.

    Raises
    ------
    TypeError, ValueError
        On a non-real or NaN input, a bad shape, lengths or blank.

    Examples
    --------
    Frames ``a a _ a b b`` decode to ``a a b`` (the blank separates the two ``a``):

    >>> import numpy as np
    >>> from lattice.decode import ctc_greedy
    >>> frames = [1, 1, 0, 1, 2, 2]
    >>> e = np.log(np.eye(3)[frames] * 0.9 + 0.05)          # (T=6, C=3)
    >>> ctc_greedy(e)
    [1, 1, 2]
    >>> ctc_greedy(np.stack([e, e]), lengths=[6, 2])        # batched, with lengths
    [[1, 1, 2], [1]]
    """
    arr, unbatched = _as_scores(emissions)
    size, frames, classes = arr.shape
    blank = _check_blank(blank, classes)
    blank_penalty = real_value("blank_penalty", blank_penalty)
    lengths = _as_lengths(lengths, size, frames)
    best, valid = _best_per_frame(arr, lengths, blank, blank_penalty)
    keep = valid & (best != blank)
    keep[:, 1:] &= best[:, 1:] != best[:, :-1]
    out = [best[b, keep[b]].tolist() for b in range(size)]
    return out[0] if unbatched else out


def segmentation_greedy(emissions, lengths=None, return_segments=False):
    """Greedy decoding for the ``segmentation`` topology: best class per frame, merge runs.

    Every frame belongs to some symbol and there is no blank, so the best path with
    free symbol changes is the per-frame argmax, and the symbols are its runs.

    Parameters
    ----------
    emissions : ndarray or Tensor, shape (B, T, C) or (T, C)
    lengths : array_like of int, shape (B,), optional
        Valid frames per example (default T).
    return_segments : bool, default False
        Return ``(symbol, start, end)`` triples (``end`` exclusive) instead of symbols.

    Returns
    -------
    list of list of int, or list of list of tuple
        Per example; a single list for a (T, C) input.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.decode import segmentation_greedy
    >>> e = np.log(np.eye(4)[[3, 3, 1, 1, 1, 3]] * 0.9 + 0.025)
    >>> segmentation_greedy(e)
    [3, 1, 3]
    >>> segmentation_greedy(e, return_segments=True)
    [(3, 0, 2), (1, 2, 5), (3, 5, 6)]
    """
    arr, unbatched = _as_scores(emissions)
    size, frames, _ = arr.shape
    lengths = _as_lengths(lengths, size, frames)
    best, _ = _best_per_frame(arr, lengths)
    out = []
    for b in range(size):
        seq = best[b, : lengths[b]]
        if seq.size == 0:
            out.append([])
            continue
        starts = np.flatnonzero(np.r_[True, seq[1:] != seq[:-1]])
        ends = np.r_[starts[1:], seq.size]
        if return_segments:
            out.append([(int(seq[s]), int(s), int(e)) for s, e in zip(starts, ends)])
        else:
            out.append(seq[starts].tolist())
    return out[0] if unbatched else out


# ----------------------------------------------------------------------------------
# prefix beam search
# ----------------------------------------------------------------------------------


class Hypothesis(NamedTuple):
    """One decoded sequence of :func:`ctc_beam_search`.

    Attributes
    ----------
    tokens : list of int
        The symbols (no blanks).
    score : float
        The ranking score: ``log_prob / max(len(tokens), 1) ** length_norm``.
    log_prob : float
        log P(tokens | emissions) summed over the CTC alignments the beam kept (exact
        when nothing was pruned), with the blank penalty applied.

    Examples
    --------
    >>> from lattice.decode import Hypothesis
    >>> Hypothesis([1, 2], -0.5, -1.0).tokens
    [1, 2]
    """

    tokens: list
    score: float
    log_prob: float


_NEG_INF = -np.inf


def _select(scores, k):
    """Indices of the k largest finite scores, best first, ties by lower index."""
    finite = np.flatnonzero(scores > _NEG_INF)
    if finite.size > 4 * k:
        part = np.argpartition(-scores[finite], k - 1)[:k]
        finite = np.sort(finite[part])
    order = np.argsort(-scores[finite], kind="stable")
    return finite[order[:k]]


def _beam_search_one(lp, blank, beam_width, blank_penalty):
    """Prefix beam search over one (T, C) float64 array; returns [(prefix, logp)]."""
    frames, classes = lp.shape
    prefixes = [()]
    pb = np.zeros(1)  # log P(prefix, path ends in blank)
    pnb = np.full(1, _NEG_INF)  # log P(prefix, path ends in a symbol)
    last = np.full(1, -1, dtype=np.int64)
    symbol = np.ones(classes, dtype=bool)
    symbol[blank] = False
    with np.errstate(invalid="ignore"):
        for t in range(frames):
            row = lp[t]
            n = len(prefixes)
            total = np.logaddexp(pb, pnb)
            stay_b = total + (row[blank] - blank_penalty)
            stay_nb = np.where(last >= 0, pnb + row[np.maximum(last, 0)], _NEG_INF)
            ext = total[:, None] + row[None, :]  # extend prefix i by symbol c
            has_last = np.flatnonzero(last >= 0)
            # repeating the last symbol needs a blank in between
            ext[has_last, last[has_last]] = pb[has_last] + row[last[has_last]]
            ext[:, ~symbol] = _NEG_INF
            # an extension that equals a prefix already in the beam merges into it
            index = {p: i for i, p in enumerate(prefixes)}
            for j in range(n):
                p = prefixes[j]
                if p:
                    i = index.get(p[:-1])
                    if i is not None:
                        c = p[-1]
                        stay_nb[j] = np.logaddexp(stay_nb[j], ext[i, c])
                        ext[i, c] = _NEG_INF
            cand = np.concatenate([np.logaddexp(stay_b, stay_nb), ext.ravel()])
            chosen = _select(cand, beam_width)
            new_prefixes, new_pb, new_pnb, new_last = [], [], [], []
            for k in chosen.tolist():
                if k < n:
                    new_prefixes.append(prefixes[k])
                    new_pb.append(stay_b[k])
                    new_pnb.append(stay_nb[k])
                    new_last.append(last[k])
                else:
                    i, c = divmod(k - n, classes)
                    new_prefixes.append(prefixes[i] + (c,))
                    new_pb.append(_NEG_INF)
                    new_pnb.append(ext[i, c])
                    new_last.append(c)
            if not new_prefixes:  # every path is impossible (-inf scores)
                return []
            prefixes = new_prefixes
            pb, pnb = np.array(new_pb), np.array(new_pnb)
            last = np.array(new_last, dtype=np.int64)
    total = np.logaddexp(pb, pnb)
    return [(p, float(s)) for p, s in zip(prefixes, total) if s > _NEG_INF]


def ctc_beam_search(
    emissions,
    lengths=None,
    beam_width=10,
    blank=0,
    nbest=1,
    length_norm=0.0,
    blank_penalty=0.0,
):
    """CTC prefix beam search: the most probable symbol sequences, summing alignments.

    Keeps the ``beam_width`` most probable prefixes at every frame, each with the
    probability of its alignments ending in a blank and in a symbol, so that the
    alignments of one sequence are summed (unlike greedy decoding, which follows the
    single best alignment). With a beam wide enough to hold every prefix the result is
    exact: the top hypothesis is the argmax of the CTC probability over all sequences.

    Parameters
    ----------
    emissions : ndarray or Tensor, shape (B, T, C) or (T, C)
        Per-frame log-probabilities (``log_softmax`` outputs).
    lengths : array_like of int, shape (B,), optional
        Valid frames per example (default T).
    beam_width : int, default 10
        Prefixes kept per frame.
    blank : int, default 0
    nbest : int, default 1
        Hypotheses returned per example (at most ``beam_width``; fewer if fewer
        sequences have a non-zero probability).
    length_norm : float, default 0.0
        The final ranking uses ``log_prob / max(len, 1) ** length_norm``; 0 ranks by
        probability. The search itself (pruning) always uses the probability.
    blank_penalty : float, default 0.0
        Subtracted from the blank's log-probability at every frame: positive values
        favour emitting symbols (fewer deletions, more insertions).

    Returns
    -------
    list of list of Hypothesis
        Per example, the best ``nbest`` hypotheses, best first; a single list for a
        (T, C) input. An example of length 0 yields the empty sequence with
        ``log_prob`` 0.

    Raises
    ------
    TypeError, ValueError
        On a non-real or NaN input, a bad shape, lengths, blank, or option.

    Examples
    --------
    Two frames, each half blank: greedy decoding reads nothing, but the sequence
    ``[1]`` has probability 0.3*0.3 + 2*0.5*0.3 = 0.39 (three alignments: ``1 1``,
    ``_ 1``, ``1 _``), more than the 0.5*0.5 = 0.25 of the empty sequence:

    >>> import numpy as np
    >>> from lattice.decode import ctc_beam_search, ctc_greedy
    >>> e = np.log([[0.5, 0.3, 0.2], [0.5, 0.3, 0.2]])
    >>> ctc_greedy(e)
    []
    >>> best = ctc_beam_search(e, beam_width=8, nbest=2)
    >>> [(h.tokens, round(float(np.exp(h.log_prob)), 2)) for h in best]
    [([1], 0.39), ([], 0.25)]
    """
    arr, unbatched = _as_scores(emissions)
    size, frames, classes = arr.shape
    blank = _check_blank(blank, classes)
    beam_width = int_value("beam_width", beam_width, 1)
    nbest = int_value("nbest", nbest, 1)
    if nbest > beam_width:
        raise ValueError(f"nbest ({nbest}) must be <= beam_width ({beam_width})")
    length_norm = real_value("length_norm", length_norm, minimum=0.0)
    blank_penalty = real_value("blank_penalty", blank_penalty)
    lengths = _as_lengths(lengths, size, frames)
    if np.isposinf(arr).any():
        raise ValueError("emissions contain +inf")
    out = []
    for b in range(size):
        lp = arr[b, : lengths[b]].astype(np.float64)
        found = _beam_search_one(lp, blank, beam_width, blank_penalty)
        hyps = []
        for prefix, logp in found:
            score = logp / max(len(prefix), 1) ** length_norm if length_norm else logp
            hyps.append(Hypothesis(list(prefix), float(score), logp))
        hyps.sort(key=lambda h: -h.score)  # stable: ties keep the beam's order
        out.append(hyps[:nbest])
    return out[0] if unbatched else out


# ----------------------------------------------------------------------------------
# scoring
# ----------------------------------------------------------------------------------


def edit_distance(hypothesis, reference):
    """Levenshtein distance (insertions, deletions, substitutions cost 1).

    Parameters
    ----------
    hypothesis, reference : sequence
        Any sequences of comparable items (lists of ids, strings).

    Returns
    -------
    int

    Examples
    --------
    >>> from lattice.decode import edit_distance
    >>> edit_distance([1, 2, 3], [1, 3]), edit_distance("kitten", "sitting")
    (1, 3)
    """
    hyp, ref = list(hypothesis), list(reference)
    previous = list(range(len(ref) + 1))
    for i, h in enumerate(hyp, 1):
        current = [i]
        for j, r in enumerate(ref, 1):
            current.append(min(previous[j] + 1, current[j - 1] + 1,
                               previous[j - 1] + (h != r)))
        previous = current
    return previous[-1]


def error_rate(hypotheses, references):
    """Total edit distance over total reference length (the CER or WER of a corpus).

    Parameters
    ----------
    hypotheses, references : sequence of sequences
        Decoded and true sequences, in the same order.

    Returns
    -------
    float
        0.0 when the references are all empty and so are the hypotheses.

    Raises
    ------
    ValueError
        If the two lists differ in length, or the references are all empty but some
        hypothesis is not (the rate is undefined).

    Examples
    --------
    >>> from lattice.decode import error_rate
    >>> error_rate([[1, 2], [3]], [[1, 2, 2], [3]])
    0.25
    """
    hypotheses, references = list(hypotheses), list(references)
    if len(hypotheses) != len(references):
        raise ValueError(
            f"got {len(hypotheses)} hypotheses for {len(references)} references"
        )
    errors = sum(edit_distance(h, r) for h, r in zip(hypotheses, references))
    total = sum(len(r) for r in references)
    if total == 0:
        if errors:
            raise ValueError("the references are all empty: the error rate is undefined")
        return 0.0
    return errors / total
