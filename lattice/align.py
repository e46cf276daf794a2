"""Forced alignment: where each symbol of a known transcript sits in the frames.

:func:`forced_align` runs :func:`lattice.viterbi` on the graph of each transcript and
returns one row per transcript symbol: its first and last frame and its score. The
``lattice align`` command (:mod:`lattice.cli.align`) wraps it for files::

    lattice align emissions.npy transcripts.txt --symbols symbols.txt -o table.csv

* ``emissions.npy``: float array (T, C) or (B, T, C) of per-frame scores, usually
  log-probabilities (``--log-softmax`` normalises logits first);
* ``transcripts.txt``: one line per utterance, either symbol ids separated by spaces,
  or, with a symbol table, symbols (characters, or space-separated names);
* ``symbols.txt``: ``symbol id`` per line (the format of Kaldi / k2 symbol tables).

The table has the columns ``utterance, token, symbol, id, start_frame, end_frame,
score, confidence, onset_confidence`` (``end_frame`` exclusive), as CSV or JSON; the two
confidences are posterior probabilities (:class:`AlignedToken`), from
:func:`lattice.token_posteriors`. ``--graph star`` aligns partial transcripts: a
wildcard absorbs the untranscribed frames (:func:`append_wildcard`).
"""

from __future__ import annotations

import csv
import inspect
import io
import json
import math
import re
import sys
import unicodedata
import warnings
from typing import NamedTuple

import numpy as np

from .distribution import token_posteriors
from .engine import viterbi
from .memory import get_memory_budget
from .registry import UnknownGraphError, build, get_builder

__all__ = [
    "CONFIDENCE_CHUNK_BYTES",
    "DEFAULT_WILDCARD_PENALTY",
    "WILDCARD_COLUMNS",
    "AlignedToken",
    "AlignmentError",
    "align_utterances",
    "append_wildcard",
    "builder_options",
    "describe_item",
    "describe_options",
    "forced_align",
    "is_ascii_digits",
    "parse_transcripts",
    "read_lines",
    "read_symbol_table",
    "read_transcripts",
    "write_table",
]

COLUMNS = ("utterance", "token", "symbol", "id", "start_frame", "end_frame", "score",
           "confidence", "onset_confidence")


class AlignmentError(ValueError):
    """A transcript has no alignment to its frames (too long, or impossible scores).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.align import AlignmentError, forced_align
    >>> try:
    ...     forced_align(np.zeros((1, 2, 3)), [[1, 1]])
    ... except AlignmentError as err:
    ...     print(err)
    utterance 0: its 2 symbols cannot be aligned to 2 frames (CTC needs at least 3: one per symbol, plus a blank between each of the 1 repeated pair(s))
    """


class AlignedToken(NamedTuple):
    """One row of a forced-alignment table.

    Attributes
    ----------
    utterance : int
        Index of the utterance (emissions row, transcript line).
    token : int
        Position of the symbol in the transcript.
    symbol : str
        Its name (the id as text without a symbol table).
    id : int
        Its class id (the emission column).
    start_frame, end_frame : int
        The frames it occupies on the best path: ``start_frame <= t < end_frame``.
    score : float
        The sum of its emission scores over those frames.
    confidence : float or None
        How sure the alignment is of those frames: the mean, over them, of the
        posterior probability that the frame lies in this token
        (:attr:`lattice.TokenPosteriors.occupancy`: over all alignments of the same
        transcript, weighted by ``exp(score - log Z)``). Near 1 when the alignments
        that matter all put the token there; lower when the scores leave its place
        open, as they often do around a transcript error. None for a row made
        without it.
    onset_confidence : float or None
        The posterior probability that the token starts within one frame of
        ``start_frame`` (at ``start_frame - 1``, ``start_frame`` or ``start_frame +
        1``, those within the utterance's frames;
        :attr:`lattice.TokenPosteriors.onsets`). None for a row made without it.

    Both are probabilities given the transcript: they say how well its alignment is
    determined, not whether the model would have recognised the symbol (the
    ``score`` tells that). Rank the tokens by them to find the doubtful places of a
    transcript; with a CTC model, whose output is a spike per symbol,
    ``onset_confidence`` is the sharper of the two (:doc:`/tutorial_align`).

    Examples
    --------
    >>> from lattice.align import AlignedToken
    >>> AlignedToken(0, 0, "a", 1, 3, 5, -0.2).end_frame
    5
    >>> AlignedToken(0, 0, "a", 1, 3, 5, -0.2, 0.97, 0.99).confidence
    0.97
    """

    utterance: int
    token: int
    symbol: str
    id: int
    start_frame: int
    end_frame: int
    score: float
    confidence: float | None = None
    onset_confidence: float | None = None


#: How :func:`append_wildcard` computes the wildcard column from the other columns.
WILDCARD_COLUMNS = ("logsumexp", "max")

#: Log-weight per wildcard frame when the wildcard column is appended and no
#: ``penalty`` is given: log(0.1). A frame then goes to the wildcard rather than to a
#: transcript symbol only where that symbol has less than a tenth of the probability of
#: "any non-blank class" (with the default ``logsumexp`` column).
DEFAULT_WILDCARD_PENALTY = math.log(0.1)


def _as_emissions(emissions):
    if type(emissions).__module__.split(".")[0] == "torch":
        emissions = emissions.detach().cpu().double().numpy()
    arr = np.asarray(emissions)
    if arr.dtype == np.bool_ or not (
        np.issubdtype(arr.dtype, np.floating) or np.issubdtype(arr.dtype, np.integer)
    ):
        raise TypeError(f"emissions must hold real numbers, got dtype {arr.dtype}")
    if arr.ndim == 2:
        arr = arr[None]
    if arr.ndim != 3:
        raise ValueError(f"emissions must have shape (T, C) or (B, T, C), got {arr.shape}")
    if arr.dtype not in (np.float32, np.float64):
        arr = arr.astype(np.float64)
    if np.isnan(arr).any():
        raise ValueError("emissions contain NaN")
    return arr


def append_wildcard(emissions, blank=None, method="logsumexp"):
    """The emissions with one more column, scoring a *wildcard* (star) token.

    The ``star`` graph absorbs untranscribed frames in a wildcard state, which emits
    one emission column like any state. This makes that column from the model's own
    scores, per frame, over every class except ``blank``:

    * ``"logsumexp"`` (the star token of Star Temporal Classification): the log of the
      total probability of the non-blank classes, "some symbol, whichever";
    * ``"max"``: the score of the best non-blank class.

    The column is appended last, so its class id is ``C``. The star graph adds its
    ``penalty`` per wildcard frame on top; the column itself holds no penalty.

    Parameters
    ----------
    emissions : ndarray or Tensor, shape (B, T, C) or (T, C)
        Per-frame scores (log-probabilities).
    blank : int, optional
        The blank's class id, left out of the column (default: no blank, every class
        counts).
    method : {"logsumexp", "max"}, default "logsumexp"

    Returns
    -------
    ndarray, shape (B, T, C + 1) or (T, C + 1)
        The same dtype (float32 stays float32, others become float64).

    Raises
    ------
    ValueError
        If ``method`` is unknown, ``blank`` is outside the classes, or no class is
        left besides the blank.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.align import append_wildcard
    >>> lp = np.log(np.array([[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]))   # (T, C), blank 0
    >>> np.exp(append_wildcard(lp, blank=0)[:, 3]).round(6)
    array([0.5, 0.9])
    >>> np.exp(append_wildcard(lp, blank=0, method="max")[:, 3]).round(6)
    array([0.3, 0.8])
    """
    if method not in WILDCARD_COLUMNS:
        raise ValueError(
            f"method must be one of {', '.join(map(repr, WILDCARD_COLUMNS))}, "
            f"got {method!r}"
        )
    squeeze = np.ndim(emissions) == 2
    arr = _as_emissions(emissions)
    classes = arr.shape[2]
    if blank is not None:
        if isinstance(blank, bool) or not isinstance(blank, (int, np.integer)):
            raise TypeError(f"blank must be an int or None, got {blank!r}")
        if not 0 <= blank < classes:
            raise ValueError(
                f"blank {blank} is outside the {classes} classes [0, {classes})")
        if classes == 1:
            raise ValueError("the emissions have no class besides the blank to make a "
                             "wildcard column from")
        others = np.delete(arr, int(blank), axis=2)
    else:
        if classes == 0:
            raise ValueError("the emissions have no class to make a wildcard column from")
        others = arr
    if method == "logsumexp":
        column = np.logaddexp.reduce(others, axis=2, keepdims=True)
    else:
        column = others.max(axis=2, keepdims=True)
    out = np.concatenate([arr, column.astype(arr.dtype, copy=False)], axis=2)
    return out[0] if squeeze else out


def builder_options(graph):
    """The options a registered graph builder takes, with their defaults.

    Read from the builder's signature: every keyword parameter after the target.

    Parameters
    ----------
    graph : str
        A registered builder name (``lattice.available_graphs()``).

    Returns
    -------
    dict of str to object, or None
        ``{name: default}``, with ``inspect.Parameter.empty`` as the default of a
        required option; None when the options cannot be listed (the builder has no
        signature, or takes ``**kwargs``).

    Raises
    ------
    lattice.UnknownGraphError
        If no builder has that name.

    Examples
    --------
    >>> from lattice.align import builder_options
    >>> builder_options("ctc")["blank"]
    0
    """
    builder = get_builder(graph)
    try:
        params = list(inspect.signature(builder).parameters.values())
    except (TypeError, ValueError):
        return None
    if any(p.kind is p.VAR_KEYWORD for p in params):
        return None
    kind = inspect.Parameter
    if params and params[0].kind in (kind.POSITIONAL_ONLY, kind.POSITIONAL_OR_KEYWORD):
        params = params[1:]  # the target
    return {p.name: p.default for p in params
            if p.kind in (kind.POSITIONAL_OR_KEYWORD, kind.KEYWORD_ONLY)}


def describe_options(accepted):
    """A builder's options as a message lists them.

    Parameters
    ----------
    accepted : dict of str to object or None
        What :func:`builder_options` returns.

    Returns
    -------
    str
        ``name=default`` for each option, ``name (required)`` for a required one,
        ``(none)`` when there are none (or they cannot be listed).

    Examples
    --------
    >>> import inspect
    >>> from lattice.align import describe_options
    >>> describe_options({"wildcard": inspect.Parameter.empty, "penalty": 0.0})
    'wildcard (required), penalty=0.0'
    >>> describe_options({})
    '(none)'
    """
    if not accepted:
        return "(none)"
    return ", ".join(f"{name} (required)" if default is inspect.Parameter.empty
                     else f"{name}={default!r}" for name, default in accepted.items())


def _check_options(graph, accepted, options):
    if accepted is None:
        return
    for name in options:
        if name not in accepted:
            raise TypeError(f"graph {graph!r} has no option {name!r}; its options: "
                            f"{describe_options(accepted)}")
    missing = [n for n, v in accepted.items() if v is inspect.Parameter.empty
               and n not in options]
    if missing:
        hint = ""
        if "wildcard" in missing:
            hint = (" (wildcard: the wildcard's class id, or wildcard_column='logsumexp' "
                    "to append one made from the other columns)")
        plural = "s" if len(missing) > 1 else ""
        raise TypeError(f"graph {graph!r} needs the option{plural} "
                        f"{', '.join(map(repr, missing))}{hint}")


def _min_frames_message(graph_name, target, frames, scores):
    k = len(target)
    if frames == 0:
        what = "an empty transcript" if k == 0 else "one symbol"
        return f"it has no frames, and even {what} needs at least one"
    if graph_name == "ctc":
        repeats = int(sum(a == b for a, b in zip(target, target[1:])))
        need = k + repeats
        if frames < need:
            return (f"its {k} symbols cannot be aligned to {frames} frames (CTC needs at "
                    f"least {need}: one per symbol, plus a blank between each of the "
                    f"{repeats} repeated pair(s))")
    elif graph_name in ("segmentation", "star") and frames < k:
        return f"its {k} symbols cannot be aligned to {frames} frames (one frame each)"
    dead = np.flatnonzero(np.isneginf(scores[:frames]).all(axis=1))
    if dead.size:
        return (f"frame {int(dead[0])} has no finite score (every class is -inf"
                + (f"; {dead.size} such frames" if dead.size > 1 else "")
                + f"), so its {k} symbols have no alignment with a finite score")
    return (f"its {k} symbols have no alignment with a finite score over {frames} "
            "frames (impossible (-inf) emission scores where the symbols must go?)")


def forced_align(emissions, targets, lengths=None, graph="ctc", symbols=None, *,
                 wildcard_column=None, confidence=True, **options):
    """Best alignment of every transcript, as one row per transcript symbol.

    Parameters
    ----------
    emissions : ndarray or Tensor, shape (B, T, C) or (T, C)
        Per-frame scores (log-probabilities).
    targets : sequence of sequences of int
        One transcript (class ids) per utterance.
    lengths : array_like of int, shape (B,), optional
        Valid frames per utterance (default T).
    graph : str, default "ctc"
        The registered topology to align with (``lattice.available_graphs()``).
    symbols : sequence of str, optional
        Name of each class id, for the ``symbol`` column (default: the id).
    wildcard_column : {None, "logsumexp", "max"}, optional
        For a graph with a ``wildcard`` option (``"star"``): append a wildcard column
        made from the other columns (:func:`append_wildcard`, leaving out the graph's
        ``blank``) and use it as the wildcard, class ``C``; ``penalty`` then defaults
        to :data:`DEFAULT_WILDCARD_PENALTY` (log 0.1). Default None: the wildcard is
        ``options["wildcard"]``, a class of the model (e.g. a garbage class).
    confidence : bool, default True
        Compute each row's ``confidence`` and ``onset_confidence`` (one
        :func:`lattice.token_posteriors` pass, see Notes); False leaves them None
        and costs only the Viterbi pass.
    **options
        Passed to the builder, e.g. ``blank=0`` for ``"ctc"``; ``wildcard=``,
        ``blank=``, ``penalty=``, ``gaps=`` for ``"star"``. Unknown names raise
        ``TypeError`` listing the builder's options.

    Returns
    -------
    list of AlignedToken
        Utterance by utterance, symbols in transcript order (wildcard and blank frames
        have no row). Each row has its ``confidence`` (the mean posterior occupancy
        of its frames) and ``onset_confidence`` (the posterior probability of its
        start within one frame), see :class:`AlignedToken`.

    Raises
    ------
    AlignmentError
        If a transcript has no alignment (too long for its frames, or only through
        ``-inf`` scores); the message names the utterance.
    TypeError, ValueError
        On bad emissions, a count mismatch, an option the builder does not have (or a
        required one missing), or a transcript the builder rejects (e.g. one
        containing the blank), naming the utterance.

    Notes
    -----
    The best path is :func:`lattice.viterbi`'s; the confidences come from
    :func:`lattice.token_posteriors` on the same emissions, graphs and lengths (a
    forward-backward pass, which takes several times as long as the Viterbi pass;
    on 32 CTC utterances of 400 frames and 60 symbols, 60 ms against 5). Its two
    (b, T, K) arrays (K the longest transcript of the b utterances) are computed for
    groups of utterances of at most :data:`CONFIDENCE_CHUNK_BYTES` together (one
    utterance at least), so a large corpus needs no more memory than that; the
    results do not depend on the grouping. The Viterbi pass of a long file keeps
    checkpoints instead of every backpointer once they would pass the memory budget
    (:mod:`lattice.memory`): an hour at 50 frames per second against 10,000 tokens
    aligns in about 0.13 GB. The confidences of such an utterance would need its
    whole posterior table and two (T, K) arrays; where those pass the budget its
    confidences are left None, with a ``RuntimeWarning`` naming it.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.align import forced_align
    >>> e = np.log(np.array([[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]))
    >>> for row in forced_align(e, [[1, 2]], symbols=["-", "a", "b"]):
    ...     print(row.symbol, row.start_frame, row.end_frame, round(row.score, 3),
    ...           round(row.confidence, 3), round(row.onset_confidence, 3))
    a 0 2 -0.446 0.895 0.999
    b 3 4 -0.223 0.977 0.979

    Frames 0 and 1 lie in ``a`` with posterior probabilities 0.900 and 0.889 (a
    blank may take either): ``a``'s confidence is their mean.

    A partial transcript (only ``b``) with the ``star`` graph: the wildcard takes the
    frames of the untranscribed ``a``:

    >>> for row in forced_align(e, [[2]], graph="star", wildcard_column="logsumexp",
    ...                         blank=0, symbols=["-", "a", "b"]):
    ...     print(row.symbol, row.start_frame, row.end_frame)
    b 3 4
    """
    return align_utterances(emissions, targets, lengths, graph, symbols, wildcard_column,
                            options, confidence=confidence)


def align_utterances(emissions, targets, lengths=None, graph="ctc", symbols=None,
                     wildcard_column=None, options=None, where=None, *, confidence=True):
    """:func:`forced_align` with the builder options as a dict and named utterances.

    The same alignment, rows and errors as :func:`forced_align`; two differences make
    it fit a caller that reads its inputs from files (``lattice align``): the builder
    options come as one dict (so no option name can clash with a parameter), and
    ``where(b)`` names utterance ``b`` in error messages (e.g. by its file and line).

    Parameters
    ----------
    emissions, targets, lengths, graph, symbols, wildcard_column, confidence
        As for :func:`forced_align`.
    options : dict of str to object, optional
        The builder's options (:func:`forced_align`'s ``**options``).
    where : callable, optional
        ``where(b) -> str`` names utterance ``b`` at the start of a message (default:
        ``"utterance b"``).

    Returns
    -------
    list of AlignedToken

    Raises
    ------
    AlignmentError, TypeError, ValueError
        As :func:`forced_align` does, the utterance named by ``where``.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.align import align_utterances
    >>> e = np.log(np.full((1, 2, 3), 1 / 3))
    >>> align_utterances(e, [[1, 2]], options={"blank": 0})[1].start_frame
    1
    >>> align_utterances(e, [[1, 2]], confidence=False)[0].confidence is None
    True
    >>> align_utterances(e, [[1, 1]], where=lambda b: f"text.txt, line {b + 1}")
    Traceback (most recent call last):
    ...
    lattice.align.AlignmentError: text.txt, line 1: its 2 symbols cannot be aligned to 2 frames (CTC needs at least 3: one per symbol, plus a blank between each of the 1 repeated pair(s))
    """
    if where is None:
        def where(b):
            return f"utterance {b}"
    arr = _as_emissions(emissions)
    size, frames, classes = arr.shape
    targets = [list(t) for t in targets]
    if len(targets) != size:
        raise ValueError(f"got {len(targets)} transcripts for {size} utterances of emissions")
    if symbols is not None and len(symbols) < classes:
        raise ValueError(f"symbols names {len(symbols)} classes, emissions have {classes}")
    accepted = builder_options(graph)
    options = dict(options or {})
    if wildcard_column is not None:
        if wildcard_column not in WILDCARD_COLUMNS:
            raise ValueError(f"wildcard_column must be None or one of "
                             f"{', '.join(map(repr, WILDCARD_COLUMNS))}, "
                             f"got {wildcard_column!r}")
        if accepted is not None and "wildcard" not in accepted:
            raise TypeError(f"graph {graph!r} has no wildcard option for wildcard_column; "
                            f"its options: {describe_options(accepted)}")
        if options.get("wildcard", classes) != classes:
            raise ValueError(f"wildcard_column appends the wildcard as class {classes}; "
                             f"got wildcard={options['wildcard']!r} too")
        blank = options.get("blank", (accepted or {}).get("blank"))
        if blank is inspect.Parameter.empty:
            blank = None
        arr = append_wildcard(arr, blank, wildcard_column)
        options["wildcard"] = classes
        if accepted is None or "penalty" in accepted:
            options.setdefault("penalty", DEFAULT_WILDCARD_PENALTY)
    _check_options(graph, accepted, options)
    graphs = []
    for b, target in enumerate(targets):
        bad = [c for c in target if not 0 <= int(c) < classes]
        if bad:
            raise ValueError(
                f"{where(b)}: symbol id {bad[0]} is outside the {classes} emission "
                f"classes [0, {classes})"
            )
        try:
            g = build(graph, target, **options)
        except UnknownGraphError:
            raise
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"{where(b)}: {exc}") from None
        labels = g.labels
        if labels.size and int(labels.max()) >= arr.shape[2]:
            raise ValueError(f"{where(b)}: the {graph!r} graph uses class "
                             f"{int(labels.max())}, but the emissions have {classes} "
                             "classes (an option out of range?)")
        graphs.append(g)
    ali = viterbi(arr, graphs, lengths)
    n_frames = np.full(size, frames) if lengths is None else np.asarray(lengths)
    for b, target in enumerate(targets):
        if not np.isfinite(ali.score[b]):
            raise AlignmentError(f"{where(b)}: " + _min_frames_message(
                graph, target, int(n_frames[b]), arr[b]))
    if confidence:
        confidences = _confidences(arr, graphs, n_frames, ali)
    else:
        confidences = [[(None, None)] * int(ali.num_segments[b]) for b in range(size)]
    rows = []
    for b, target in enumerate(targets):
        for (token, start, end), conf in zip(ali.segments(b), confidences[b]):
            c = int(target[token])
            score = float(arr[b, start:end, c].sum())
            name = str(symbols[c]) if symbols is not None else str(c)
            rows.append(AlignedToken(b, int(token), name, c, int(start), int(end), score,
                                     *conf))
    return rows


#: the most bytes of token posteriors (occupancy and onsets) that forced_align
#: computes at once (utterances are grouped to stay under it, one at least)
CONFIDENCE_CHUNK_BYTES = 64 * 2**20


def _posterior_bytes(arr, graph, frames):
    """What token_posteriors of one utterance stores: its alpha table and its two
    (T, K) arrays."""
    itemsize = arr.dtype.itemsize
    tokens = int(graph.tokens.max(initial=-1)) + 1
    return itemsize * frames * (graph.num_states + 2 * tokens)


def _confidences(arr, graphs, n_frames, ali):
    """Per utterance, the (confidence, onset_confidence) of each Viterbi segment,
    from token_posteriors over groups of utterances of at most
    CONFIDENCE_CHUNK_BYTES of posteriors; (None, None) for an utterance whose
    posteriors alone would pass the memory budget."""
    size, frames, _ = arr.shape
    per_frame = 2 * arr.dtype.itemsize * frames
    out = []
    b0 = 0
    while b0 < size:
        need = _posterior_bytes(arr, graphs[b0], int(n_frames[b0]))
        if need > get_memory_budget():
            warnings.warn(
                f"utterance {b0}: its confidences would need {need / 2**30:.1f} GiB "
                f"of posteriors, beyond the memory budget of "
                f"{get_memory_budget() / 2**30:.1f} GiB (lattice.set_memory_budget); "
                "they are left empty (its alignment is complete). Pass "
                "confidence=False (--no-confidence) to skip them without this warning",
                RuntimeWarning, stacklevel=3)
            out.append([(None, None)] * int(ali.num_segments[b0]))
            b0 += 1
            continue
        b1, widest = b0 + 1, graphs[b0].tokens.max(initial=-1) + 1
        while b1 < size:
            wider = max(widest, graphs[b1].tokens.max(initial=-1) + 1)
            if ((b1 + 1 - b0) * wider * per_frame > CONFIDENCE_CHUNK_BYTES
                    or _posterior_bytes(arr, graphs[b1], int(n_frames[b1]))
                    > get_memory_budget()):
                break
            widest, b1 = wider, b1 + 1
        post = token_posteriors(arr[b0:b1], graphs[b0:b1], n_frames[b0:b1], onsets=True)
        for b in range(b0, b1):
            i, n = b - b0, int(n_frames[b])
            row = []
            for token, start, end in ali.segments(b):
                occupancy = post.occupancy[i, start:end, token].mean(dtype=np.float64)
                onset = post.onsets[i, max(start - 1, 0):min(start + 2, n), token].sum(
                    dtype=np.float64)
                row.append((_probability(occupancy), _probability(onset)))
            out.append(row)
        b0 = b1
    return out


def _probability(value):
    """A posterior as a float in [0, 1] (the kernels' rounding can step past 1)."""
    return min(max(float(value), 0.0), 1.0)


def read_lines(path):
    """The lines of a UTF-8 text file (``\\n``, ``\\r\\n`` or ``\\r`` line ends).

    Only line ends split lines (not the other characters ``str.splitlines`` takes,
    such as U+2028), so line numbers are those of an editor. A leading byte-order mark
    is dropped.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    list of str
        Without their line ends; a final line end adds no empty line.

    Raises
    ------
    ValueError
        If the bytes are not UTF-8, naming the file, the line and the byte.
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> import os, tempfile
    >>> from lattice.align import read_lines
    >>> path = os.path.join(tempfile.mkdtemp(), "text.txt")
    >>> _ = open(path, "wb").write(b"ab\\r\\nc\\rd\\xe2\\x80\\xa8e\\n")  # U+2028 in UTF-8
    >>> read_lines(path)
    ['ab', 'c', 'd\\u2028e']
    """
    with open(path, "rb") as f:
        data = f.read()
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        line = data.count(b"\n", 0, exc.start) + 1
        column = exc.start - (data.rfind(b"\n", 0, exc.start) + 1) + 1
        raise ValueError(f"{path}, line {line}: not UTF-8 text (byte "
                         f"0x{data[exc.start]:02x} at byte {column} of the line)") from None
    if text.startswith("\ufeff"):
        text = text[1:]
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    if lines[-1] == "":
        lines.pop()
    return lines


def _codepoint(ch):
    name = unicodedata.name(ch, "")
    return f"U+{ord(ch):04X}{' ' + name if name else ''}"


def _char(ch):
    """``'²' (U+00B2 SUPERSCRIPT TWO)``: a character as a message shows it."""
    return f"{ch!r} ({_codepoint(ch)})"


def describe_item(item):
    """An item of a line as a message shows it, spelling out an odd character in it.

    Parameters
    ----------
    item : str
        A word or character read from a text file.

    Returns
    -------
    str
        Its ``repr``, followed by the code point and Unicode name of its first
        character that is not printable ASCII, if any.

    Examples
    --------
    >>> from lattice.align import describe_item
    >>> print(describe_item("ab"))
    'ab'
    >>> print(describe_item("²"))
    '²' (U+00B2 SUPERSCRIPT TWO)
    >>> print(describe_item("1\\u00a0"))
    '1\\xa0' (holding '\\xa0', U+00A0 NO-BREAK SPACE)
    """
    odd = next((ch for ch in item if not ch.isascii() or not ch.isprintable()), None)
    if odd is None:
        return repr(item)
    if item == odd:
        return _char(odd)
    return f"{item!r} (holding {odd!r}, {_codepoint(odd)})"


def is_ascii_digits(item):
    """Whether a text is a non-negative integer in ASCII digits.

    How the readers tell a class id (or a length) from a symbol: ``int()`` would also
    read other scripts' digits, such as '３', and ``str.isdigit`` accepts '²', which
    ``int()`` cannot read.

    Parameters
    ----------
    item : str

    Returns
    -------
    bool

    Examples
    --------
    >>> from lattice.align import is_ascii_digits
    >>> [is_ascii_digits(text) for text in ("12", "-1", "1.5", "３", "²")]
    [True, False, False, False, False]
    """
    return item.isascii() and item.isdigit()


def read_symbol_table(path):
    """Read a symbol table: one ``symbol id`` pair per line.

    Parameters
    ----------
    path : str or path
        A UTF-8 text file; empty lines are skipped.

    Returns
    -------
    dict of str to int

    Raises
    ------
    ValueError
        On a malformed line (not two fields, or an id that is not a non-negative
        integer in ASCII digits), a symbol or id listed twice, text that is not UTF-8,
        or an empty table; the message names the file and line.
    OSError
        If the file cannot be read.

    Examples
    --------
    >>> import tempfile, os
    >>> from lattice.align import read_symbol_table
    >>> path = os.path.join(tempfile.mkdtemp(), "symbols.txt")
    >>> _ = open(path, "w").write("<blank> 0\\na 1\\nb 2\\n")
    >>> read_symbol_table(path)
    {'<blank>': 0, 'a': 1, 'b': 2}
    """
    table, seen = {}, {}
    for n, line in enumerate(read_lines(path), 1):
        if not line.strip():
            continue
        parts = line.split()
        if len(parts) != 2 or not is_ascii_digits(parts[1].removeprefix("-")):
            raise ValueError(f"{path}, line {n}: expected `symbol id` (an id in ASCII "
                             f"digits), got {line.strip()!r}")
        symbol, i = parts[0], int(parts[1])
        if i < 0:
            raise ValueError(f"{path}, line {n}: negative id {i}")
        if symbol in table:
            raise ValueError(f"{path}, line {n}: symbol {symbol!r} is listed twice")
        if i in seen:
            raise ValueError(
                f"{path}, line {n}: id {i} is listed twice ({seen[i]!r} and {symbol!r})"
            )
        table[symbol], seen[i] = i, symbol
    if not table:
        raise ValueError(f"{path}: the symbol table is empty")
    return table


def parse_transcripts(path, symbols=None, split="auto", table="the symbol table"):
    """Read transcripts like :func:`read_transcripts`, with where each symbol stands.

    Parameters
    ----------
    path, symbols, split
        As for :func:`read_transcripts`.
    table : str, default "the symbol table"
        How a message names the symbol table (e.g. by its file).

    Returns
    -------
    list of (list of int, list of int)
        Per line, the class ids and the position of each in the line (in characters,
        from 1), for messages about a symbol found wrong later.

    Raises
    ------
    ValueError
        As :func:`read_transcripts` does.

    Examples
    --------
    >>> import os, tempfile
    >>> from lattice.align import parse_transcripts
    >>> path = os.path.join(tempfile.mkdtemp(), "text.txt")
    >>> _ = open(path, "w").write("ab\\n b  a\\n")
    >>> parse_transcripts(path, {"a": 1, "b": 2})
    [([1, 2], [1, 2]), ([2, 1], [2, 5])]
    """
    if split not in ("auto", "chars", "space"):
        raise ValueError(f"split must be 'auto', 'chars' or 'space', got {split!r}")
    out = []
    for n, line in enumerate(read_lines(path), 1):
        by_space = symbols is None or split == "space" or (
            split == "auto" and any(ch.isspace() for ch in line.strip()))
        if by_space:
            items = [(m.start() + 1, m.group()) for m in re.finditer(r"\S+", line)]
        else:
            lead = len(line) - len(line.lstrip())
            items = [(lead + i + 1, ch) for i, ch in enumerate(line.strip())]
        ids, positions = [], []
        for pos, item in items:
            where = f"{path}, line {n}, position {pos}"
            if symbols is None:
                if not is_ascii_digits(item):
                    raise ValueError(
                        f"{where}: {describe_item(item)} is not a symbol id (a "
                        "non-negative integer in ASCII digits); pass a symbol table "
                        "(--symbols) to read symbols"
                    )
                ids.append(int(item))
            elif item not in symbols:
                what = f"character {_char(item)}" if len(item) == 1 else f"symbol {item!r}"
                raise ValueError(f"{where}: {what} is not in {table}")
            else:
                ids.append(symbols[item])
            positions.append(pos)
        out.append((ids, positions))
    return out


def read_transcripts(path, symbols=None, split="auto"):
    """Read transcripts, one utterance per line, as lists of class ids.

    Parameters
    ----------
    path : str or path
        A UTF-8 text file. Lines end at ``\\n``, ``\\r\\n`` or ``\\r`` only.
    symbols : dict of str to int, optional
        A symbol table (:func:`read_symbol_table`). Without one, every line holds
        whitespace-separated integer ids (ASCII digits).
    split : {"auto", "chars", "space"}
        With a symbol table: ``"chars"`` reads every character as a symbol,
        ``"space"`` splits on whitespace, ``"auto"`` splits on whitespace when the
        line holds any and reads characters otherwise.

    Returns
    -------
    list of list of int
        An empty line is an empty transcript.

    Raises
    ------
    ValueError
        On an unknown symbol or a non-integer id, naming the file, the line, the
        position (in characters, from 1) and the character; on text that is not UTF-8,
        naming the line.

    Examples
    --------
    >>> import tempfile, os
    >>> from lattice.align import read_transcripts
    >>> path = os.path.join(tempfile.mkdtemp(), "text.txt")
    >>> _ = open(path, "w").write("abba\\nb a\\n")
    >>> read_transcripts(path, {"a": 1, "b": 2})
    [[1, 2, 2, 1], [2, 1]]
    """
    return [ids for ids, _ in parse_transcripts(path, symbols, split)]


def write_table(rows, file=None, fmt="csv"):
    """Write alignment rows as CSV (with a header) or JSON (a list of objects).

    Parameters
    ----------
    rows : sequence of AlignedToken
    file : str, path, file object or None
        Destination (default: standard output).
    fmt : {"csv", "json"}
        JSON is a list with one object per row (one row per line). The columns are
        the fields of :class:`AlignedToken`; floats are rounded to 6 decimals.

    Examples
    --------
    >>> from lattice.align import AlignedToken, write_table
    >>> write_table([AlignedToken(0, 0, "a", 1, 0, 2, -0.5, 0.9731, 1.0)])
    utterance,token,symbol,id,start_frame,end_frame,score,confidence,onset_confidence
    0,0,a,1,0,2,-0.5,0.9731,1.0

    A confidence a row lacks (None) is an empty CSV field, a JSON ``null``:

    >>> write_table([AlignedToken(0, 0, "a", 1, 0, 2, -0.5)], fmt="json")
    [
    {"utterance": 0, "token": 0, "symbol": "a", "id": 1, "start_frame": 0, "end_frame": 2, "score": -0.5, "confidence": null, "onset_confidence": null}
    ]
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"fmt must be 'csv' or 'json', got {fmt!r}")
    buf = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row.utterance, row.token, row.symbol, row.id,
                             row.start_frame, row.end_frame, repr(round(row.score, 6)),
                             _csv_float(row.confidence), _csv_float(row.onset_confidence)])
    else:
        objects = [json.dumps(dict(zip(COLUMNS, (r.utterance, r.token, r.symbol, r.id,
                                                 r.start_frame, r.end_frame,
                                                 round(r.score, 6),
                                                 _json_float(r.confidence),
                                                 _json_float(r.onset_confidence)))))
                   for r in rows]
        buf.write("[\n" + ",\n".join(objects) + ("\n]\n" if objects else "]\n"))
    text = buf.getvalue()
    if file is None:
        sys.stdout.write(text)
    elif hasattr(file, "write"):
        file.write(text)
    else:
        with open(file, "w", encoding="utf-8", newline="") as f:
            f.write(text)


def _json_float(value):
    return None if value is None else round(float(value), 6)


def _csv_float(value):
    return "" if value is None else repr(round(float(value), 6))
