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
score`` (``end_frame`` exclusive), as CSV or JSON. ``--graph star`` aligns partial
transcripts: a wildcard absorbs the untranscribed frames (:func:`append_wildcard`).
"""

from __future__ import annotations

import argparse
import ast
import csv
import inspect
import io
import json
import math
import os
import re
import sys
import unicodedata
from typing import NamedTuple

import numpy as np

from .engine import viterbi
from .registry import UnknownGraphError, build, get_builder

__all__ = [
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

COLUMNS = ("utterance", "token", "symbol", "id", "start_frame", "end_frame", "score")


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

    Examples
    --------
    >>> from lattice.align import AlignedToken
    >>> AlignedToken(0, 0, "a", 1, 3, 5, -0.2).end_frame
    5
    """

    utterance: int
    token: int
    symbol: str
    id: int
    start_frame: int
    end_frame: int
    score: float


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
                 wildcard_column=None, **options):
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
    **options
        Passed to the builder, e.g. ``blank=0`` for ``"ctc"``; ``wildcard=``,
        ``blank=``, ``penalty=``, ``gaps=`` for ``"star"``. Unknown names raise
        ``TypeError`` listing the builder's options.

    Returns
    -------
    list of AlignedToken
        Utterance by utterance, symbols in transcript order (wildcard and blank frames
        have no row).

    Raises
    ------
    AlignmentError
        If a transcript has no alignment (too long for its frames, or only through
        ``-inf`` scores); the message names the utterance.
    TypeError, ValueError
        On bad emissions, a count mismatch, an option the builder does not have (or a
        required one missing), or a transcript the builder rejects (e.g. one
        containing the blank), naming the utterance.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.align import forced_align
    >>> e = np.log(np.array([[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]))
    >>> for row in forced_align(e, [[1, 2]], symbols=["-", "a", "b"]):
    ...     print(row.symbol, row.start_frame, row.end_frame, round(row.score, 3))
    a 0 2 -0.446
    b 3 4 -0.223

    A partial transcript (only ``b``) with the ``star`` graph: the wildcard takes the
    frames of the untranscribed ``a``:

    >>> for row in forced_align(e, [[2]], graph="star", wildcard_column="logsumexp",
    ...                         blank=0, symbols=["-", "a", "b"]):
    ...     print(row.symbol, row.start_frame, row.end_frame)
    b 3 4
    """
    return align_utterances(emissions, targets, lengths, graph, symbols, wildcard_column,
                            options)


def align_utterances(emissions, targets, lengths=None, graph="ctc", symbols=None,
                     wildcard_column=None, options=None, where=None):
    """:func:`forced_align` with the builder options as a dict and named utterances.

    The same alignment, rows and errors as :func:`forced_align`; two differences make
    it fit a caller that reads its inputs from files (``lattice align``): the builder
    options come as one dict (so no option name can clash with a parameter), and
    ``where(b)`` names utterance ``b`` in error messages (e.g. by its file and line).

    Parameters
    ----------
    emissions, targets, lengths, graph, symbols, wildcard_column
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
    rows = []
    for b, target in enumerate(targets):
        if not np.isfinite(ali.score[b]):
            raise AlignmentError(f"{where(b)}: " + _min_frames_message(
                graph, target, int(n_frames[b]), arr[b]))
        for token, start, end in ali.segments(b):
            c = int(target[token])
            score = float(arr[b, start:end, c].sum())
            name = str(symbols[c]) if symbols is not None else str(c)
            rows.append(AlignedToken(b, int(token), name, c, int(start), int(end), score))
    return rows


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
        JSON is a list with one object per row (one row per line).

    Examples
    --------
    >>> from lattice.align import AlignedToken, write_table
    >>> write_table([AlignedToken(0, 0, "a", 1, 0, 2, -0.5)])
    utterance,token,symbol,id,start_frame,end_frame,score
    0,0,a,1,0,2,-0.5
    """
    if fmt not in ("csv", "json"):
        raise ValueError(f"fmt must be 'csv' or 'json', got {fmt!r}")
    buf = io.StringIO()
    if fmt == "csv":
        writer = csv.writer(buf, lineterminator="\n")
        writer.writerow(COLUMNS)
        for row in rows:
            writer.writerow([row.utterance, row.token, row.symbol, row.id,
                             row.start_frame, row.end_frame, repr(round(row.score, 6))])
    else:
        objects = [json.dumps(dict(zip(COLUMNS, (r.utterance, r.token, r.symbol, r.id,
                                                 r.start_frame, r.end_frame,
                                                 round(r.score, 6)))))
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


# ----------------------------------------------------------------------------------
# the command line
# ----------------------------------------------------------------------------------

_WORD = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*")


def _graph_option(text):
    """argparse type of ``--graph-option NAME=VALUE``: ``(name, value)``.

    VALUE is a Python literal (``ast.literal_eval``: ``3``, ``-2.5``, ``'edges'``,
    ``None``, ``[1, 2]``); a bare word such as ``edges`` is taken as a string.
    """
    name, sep, value = text.partition("=")
    name, value = name.strip(), value.strip()
    if not sep or not name.isidentifier():
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE (NAME a builder option), "
                                         f"got {text!r}")
    try:
        return name, ast.literal_eval(value)
    except (ValueError, TypeError, SyntaxError, MemoryError, RecursionError):
        if _WORD.fullmatch(value):
            return name, value
    raise argparse.ArgumentTypeError(
        f"expected NAME=VALUE with VALUE a Python literal (3, -2.5, 'text', True, None, "
        f"[1, 2]) or a bare word, got {text!r}")


def add_arguments(parser):
    """Declare the ``lattice align`` arguments on an argparse parser.

    Examples
    --------
    >>> import argparse
    >>> from lattice.align import add_arguments
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["e.npy", "t.txt", "--format", "json"]).format
    'json'
    >>> p.parse_args(["e.npy", "t.txt", "--graph-option", "gaps=edges",
    ...               "--graph-option", "penalty=-1.5"]).graph_options
    [('gaps', 'edges'), ('penalty', -1.5)]
    """
    parser.add_argument("emissions", help="a .npy array (T, C) or (B, T, C) of per-frame "
                        "scores (log-probabilities), floating point")
    parser.add_argument("transcripts", help="one transcript per line: symbol ids "
                        "separated by spaces, or symbols with --symbols")
    parser.add_argument("--symbols", metavar="FILE",
                        help="symbol table, `symbol id` per line")
    parser.add_argument("--split", choices=("auto", "chars", "space"), default="auto",
                        help="with --symbols: read characters, space-separated symbols, "
                        "or spaces if a line has any (default auto)")
    parser.add_argument("--lengths", metavar="FILE",
                        help="valid frames per utterance: a .npy array or whitespace-"
                        "separated integers (default: all T frames)")
    parser.add_argument("--graph", default="ctc",
                        help="the alignment topology (default ctc; see "
                        "lattice.available_graphs()); star: a partial transcript, with "
                        "a wildcard for the untranscribed frames")
    parser.add_argument("--blank", default=None, metavar="ID",
                        help="graphs with a blank (ctc, star): the blank's id, or its name "
                        "in the symbol table (default: the graph's, 0 for ctc, none for "
                        "star)")
    parser.add_argument("--wildcard", default=None, metavar="ID",
                        help="star: the wildcard's class id, or its name in the symbol "
                        "table; C (the default) is a column appended to the C columns of "
                        "the emissions (--wildcard-column), an id below C a class of the "
                        "model (e.g. a garbage class) and nothing is appended")
    parser.add_argument("--wildcard-column", choices=WILDCARD_COLUMNS, default=None,
                        help="star: how the appended wildcard column is made, per frame, "
                        "from the columns other than the blank: logsumexp (their total "
                        "probability, the star token of STC; the default) or max (the "
                        "best one)")
    parser.add_argument("--wildcard-penalty", type=float, default=None, metavar="LOGW",
                        help="star: log-weight added per wildcard frame (default "
                        f"log(0.1) = {DEFAULT_WILDCARD_PENALTY:.4f} with an appended "
                        "column, 0 for a class of the model)")
    parser.add_argument("--graph-option", dest="graph_options", action="append",
                        type=_graph_option, metavar="NAME=VALUE",
                        help="an option of the graph builder, repeatable, e.g. "
                        "gaps=edges for star, min_frames=2 for segmentation, "
                        "between='required' for ctc; VALUE is a Python literal or a "
                        "bare word")
    parser.add_argument("--log-softmax", action="store_true",
                        help="normalise the emissions with log_softmax first (for logits)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the table (default: standard output)")
    parser.add_argument("--format", choices=("csv", "json"),
                        help="table format (default: from the output's extension, else "
                        "csv)")


class _UsageError(Exception):
    pass


def _size(n):
    """``745.1 GiB``: a byte count as a message shows it."""
    if n < 1024:
        return f"{n} bytes"
    for unit in ("KiB", "MiB", "GiB", "TiB", "PiB"):
        n /= 1024
        if n < 1024 or unit == "PiB":
            return f"{n:.1f} {unit}"


def _check_path(path, what):
    if not os.path.exists(path):
        raise _UsageError(f"{what} file {path!r} does not exist")
    if os.path.isdir(path):
        raise _UsageError(f"{what} file {path!r} is a directory")


def _read_text(path, what, read):
    """``read(path)`` of a text file, with missing files and OS errors as messages."""
    _check_path(path, what)
    try:
        return read(path)
    except OSError as exc:
        raise _UsageError(f"cannot read the {what} file {path!r}: "
                          f"{exc.strerror or exc}") from None


_MAX_HEADER = 10000  # numpy.load's default max_header_size


def _read_npy(path, what, check):
    """A .npy array, memory-mapped, after its header passed ``check(shape, dtype)`` and
    the size it declares was found in the file; never unpickles."""
    _check_path(path, what)
    if not os.path.isfile(path):
        raise _UsageError(f"{what} file {path!r} is not a regular file")
    fmt = np.lib.format
    try:
        with open(path, "rb") as f:
            size = os.fstat(f.fileno()).st_size
            if size == 0:
                raise _UsageError(f"{what} file {path!r} is empty (0 bytes), not a .npy "
                                  "array")
            head = f.read(len(fmt.MAGIC_PREFIX))
            if head.startswith(b"PK\x03\x04"):
                raise _UsageError(f"{what} file {path!r} is an .npz archive; save one "
                                  "array with numpy.save")
            if head != fmt.MAGIC_PREFIX:
                raise _UsageError(f"{what} file {path!r} is not a .npy file (it does "
                                  "not start with the NumPy magic string; save it with "
                                  "numpy.save)")
            f.seek(0)
            try:
                version = fmt.read_magic(f)
            except ValueError:
                raise _UsageError(f"{what} file {path!r}: the .npy header is "
                                  "truncated") from None
            if version not in ((1, 0), (2, 0), (3, 0)):
                raise _UsageError(f"{what} file {path!r}: unsupported .npy format version "
                                  f"{version[0]}.{version[1]}")
            width = 2 if version == (1, 0) else 4
            raw = f.read(width)
            if len(raw) < width:
                raise _UsageError(f"{what} file {path!r}: the .npy header is truncated")
            header = int.from_bytes(raw, "little")
            if header > _MAX_HEADER:
                raise _UsageError(f"{what} file {path!r}: the .npy header is {header} "
                                  "bytes long, more than a plain array needs (corrupt?)")
            f.seek(len(fmt.MAGIC_PREFIX) + 2)
            # version 3.0 differs from 2.0 only in a UTF-8 header, which for any plain
            # numeric array is ASCII: 2.0's reader reads it the same
            reader = (fmt.read_array_header_1_0 if version == (1, 0)
                      else fmt.read_array_header_2_0)
            try:
                shape, fortran_order, dtype = reader(f, max_header_size=_MAX_HEADER)
            except Exception as exc:  # noqa: BLE001 - any failure to parse a hostile header
                raise _UsageError(f"{what} file {path!r}: cannot read the .npy header "
                                  f"({type(exc).__name__}: {exc})") from None
            data = size - f.tell()
    except OSError as exc:
        raise _UsageError(f"cannot read the {what} file {path!r}: "
                          f"{exc.strerror or exc}") from None
    if any(n < 0 for n in shape):
        raise _UsageError(f"{what} file {path!r}: its .npy header declares the shape "
                          f"{shape}, with a negative length")
    if dtype.hasobject:
        raise _UsageError(f"{what} file {path!r} holds Python objects (dtype {dtype}); "
                          "lattice align never unpickles a file: save a numeric array")
    check(shape, dtype)
    declared = math.prod(shape) * dtype.itemsize
    if data < declared:
        raise _UsageError(
            f"{what} file {path!r}: its .npy header declares a {dtype.name} array of shape "
            f"{shape} ({_size(declared)}), but the file holds only {data} bytes after the "
            "header: it is truncated, or not what its header says")
    if declared == 0:
        return np.zeros(shape, dtype)
    try:
        return np.load(path, mmap_mode="r", allow_pickle=False)
    except (ValueError, OSError) as exc:
        raise _UsageError(f"cannot read {path!r} as a .npy array: {exc}") from None


def _load_emissions(path):
    def check(shape, dtype):
        if dtype.kind != "f" or dtype.fields is not None:
            raise _UsageError(f"emissions file {path!r}: emissions must be floating point "
                              f"(float16, float32 or float64), got {dtype}")
        if len(shape) not in (2, 3):
            raise _UsageError(f"emissions file {path!r}: emissions must have shape (T, C) "
                              f"or (B, T, C), got {shape}")
        if shape[-1] == 0:
            raise _UsageError(f"emissions file {path!r} has no classes (shape {shape})")

    arr = _read_npy(path, "emissions", check)
    cube = arr.reshape((1,) + arr.shape) if arr.ndim == 2 else arr
    _, frames, classes = cube.shape
    step = max(1, (1 << 24) // max(1, frames * classes))
    for b0 in range(0, cube.shape[0], step):
        block = cube[b0:b0 + step]
        bad = np.isnan(block) | np.isposinf(block)
        if bad.any():
            b, t, c = (int(i) for i in np.argwhere(bad)[0])
            what = "NaN" if np.isnan(block[b, t, c]) else "+inf"
            raise _UsageError(f"emissions file {path!r}: utterance {b0 + b}, frame {t} "
                              f"holds {what} (class {c}); scores must be finite or -inf")
    return arr


def _load_lengths(path, size, frames):
    def check(shape, dtype):
        if dtype.kind not in "iu":
            raise _UsageError(f"lengths file {path!r}: lengths must be integers, "
                              f"got {dtype}")

    if str(path).endswith(".npy"):
        arr = np.asarray(_read_npy(path, "lengths", check)).reshape(-1)
    else:
        def read(p):
            values = []
            for n, line in enumerate(read_lines(p), 1):
                for m in re.finditer(r"\S+", line):
                    if not is_ascii_digits(m.group()):
                        raise _UsageError(f"{p}, line {n}, position {m.start() + 1}: "
                                          f"{describe_item(m.group())} is not a length (a "
                                          "non-negative integer in ASCII digits)")
                    values.append(int(m.group()))
            return np.array(values, dtype=np.int64)

        arr = _read_text(path, "lengths", read)
    if arr.shape != (size,):
        raise _UsageError(f"{path!r} holds {arr.size} lengths for {size} utterances")
    bad = np.flatnonzero((arr < 0) | (arr > frames))
    if bad.size:
        b = int(bad[0])
        raise _UsageError(f"{path!r}: utterance {b} has length {int(arr[b])}, outside "
                          f"[0, {frames}] (the frames of the emissions)")
    return arr.astype(np.int64)


def main(args):
    """Run ``lattice align`` with parsed arguments; returns the exit status.

    Errors (missing or malformed files, a transcript that cannot fit, a bad option)
    are printed as one line ``lattice align: error: ...`` naming the file (and line)
    and give status 1; malformed command-line syntax is argparse's status 2.

    Examples
    --------
    >>> import argparse, os, tempfile
    >>> import numpy as np
    >>> from lattice.align import add_arguments, main
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "e.npy"), np.log(np.full((4, 3), 1 / 3)))
    >>> _ = open(os.path.join(d, "t.txt"), "w").write("1 2\\n")
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> main(p.parse_args([os.path.join(d, "e.npy"), os.path.join(d, "t.txt")]))
    utterance,token,symbol,id,start_frame,end_frame,score
    0,0,1,1,0,1,-1.098612
    0,1,2,2,1,4,-3.295837
    0
    """
    try:
        rows = _run(args)
    except (_UsageError, ValueError, TypeError, OSError, ImportError) as exc:
        print(f"lattice align: error: {exc}", file=sys.stderr)
        return 1
    fmt = args.format
    if fmt is None:
        fmt = "json" if str(args.output or "").lower().endswith(".json") else "csv"
    try:
        write_table(rows, args.output, fmt)
        if args.output is None:
            sys.stdout.flush()
    except BrokenPipeError:
        # the reader went away (`lattice align ... | head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    except OSError as exc:
        where = "standard output" if args.output is None else repr(args.output)
        print(f"lattice align: error: cannot write {where}: {exc}", file=sys.stderr)
        return 1
    return 0


def _class_id(option, text, table):
    """An option's class id: ASCII digits are an id, anything else a symbol name."""
    if is_ascii_digits(text):  # an integer is an id, even where a symbol has that name
        return int(text)
    if table is not None and text in table:
        return table[text]
    raise _UsageError(f"{option} {text!r} is neither an id nor a symbol in the symbol "
                      "table")


def _resolve_options(args, table, classes):
    """The builder options, the wildcard column and the blank from the command line."""
    graph = args.graph
    accepted = builder_options(graph)

    def has(name):
        return accepted is None or name in accepted

    options = {}
    for name, value in args.graph_options or ():
        if name in options:
            raise _UsageError(f"--graph-option {name} is given twice")
        if not has(name):
            raise _UsageError(f"--graph-option {name}: the {graph!r} graph has no option "
                              f"{name!r}; its options: {describe_options(accepted)}")
        options[name] = value

    def flag(option, name, value):
        if name in options:
            raise _UsageError(f"{option} and --graph-option {name} both set the {name!r} "
                              "option; give one of them")
        options[name] = value

    if args.blank is not None:
        if not has("blank"):
            raise _UsageError(f"--blank: the {graph!r} graph has no blank option; its "
                              f"options: {describe_options(accepted)}")
        flag("--blank", "blank", _class_id("--blank", args.blank, table))
    column = None
    wild = [(o, v) for o, v in (("--wildcard", args.wildcard),
                                ("--wildcard-column", args.wildcard_column),
                                ("--wildcard-penalty", args.wildcard_penalty))
            if v is not None]
    if not has("wildcard"):
        if wild:
            raise _UsageError(f"{wild[0][0]} applies to graphs with a wildcard (star), not "
                              f"{graph!r}")
    else:
        if args.wildcard is not None:
            flag("--wildcard", "wildcard", _class_id("--wildcard", args.wildcard, table))
        if args.wildcard_penalty is not None:
            if not has("penalty"):
                raise _UsageError(f"--wildcard-penalty: the {graph!r} graph has no penalty "
                                  f"option; its options: {describe_options(accepted)}")
            flag("--wildcard-penalty", "penalty", args.wildcard_penalty)
        wildcard = options.get("wildcard")
        if wildcard is None or (isinstance(wildcard, int) and wildcard == classes):
            options.pop("wildcard", None)
            column = args.wildcard_column or "logsumexp"
        else:
            if args.wildcard_column is not None:
                raise _UsageError(f"--wildcard-column makes an appended wildcard column "
                                  f"(class {classes}), but --wildcard {wildcard} names a "
                                  "class of the model: give one of the two")
            if isinstance(wildcard, int) and not 0 <= wildcard < classes:
                raise _UsageError(f"--wildcard {wildcard} is outside 0..{classes} "
                                  f"(0..{classes - 1}: the model's classes, {classes}: the "
                                  "appended column)")
    blank = options.get("blank", (accepted or {}).get("blank"))
    if isinstance(blank, int) and not isinstance(blank, bool) and not 0 <= blank < classes:
        raise _UsageError(f"--blank {blank} is outside the {classes} emission classes")
    return options, column, blank


def _log_softmax(arr, lengths, path):
    """``arr - logsumexp(arr)``; a frame with no finite score is an error unless it is
    padding past its utterance's length (it stays -inf)."""
    with np.errstate(invalid="ignore", divide="ignore"):
        lse = np.logaddexp.reduce(arr, axis=-1, keepdims=True)
    dead = np.isneginf(lse[..., 0])
    if lengths is not None:
        dead &= np.arange(arr.shape[1])[None, :] < lengths[:, None]
    if dead.any():
        b, t = (int(i) for i in np.argwhere(dead)[0])
        more = int(dead.sum()) - 1
        raise _UsageError(
            f"--log-softmax: utterance {b}, frame {t} of {path!r} has no finite score (all "
            f"{arr.shape[2]} classes are -inf), so it cannot be normalised"
            + (f"; {more} more such frame(s)" if more else ""))
    with np.errstate(invalid="ignore"):
        return np.where(np.isneginf(lse), arr, arr - lse)


def _run(args):
    loaded = _load_emissions(args.emissions)
    emissions = loaded[None] if loaded.ndim == 2 else loaded
    size, frames, classes = emissions.shape
    lengths = _load_lengths(args.lengths, size, frames) if args.lengths else None
    if args.log_softmax:
        emissions = _log_softmax(emissions, lengths, args.emissions)
    table = None
    if args.symbols:
        table = _read_text(args.symbols, "symbol table", read_symbol_table)
    parsed = _read_text(args.transcripts, "transcripts", lambda p: parse_transcripts(
        p, table, args.split, f"the symbol table {args.symbols}"))
    if len(parsed) != size:
        n = len(parsed)
        empty = next((k for k in range(n) if parsed[n - 1 - k][0]), n)
        hint = ""
        if n > size and empty:
            hint = (f"; its last {empty} line(s) are empty (an empty line is an empty "
                    "transcript)")
        raise _UsageError(
            f"{args.transcripts!r} has {n} transcript line{'' if n == 1 else 's'}, but "
            f"{args.emissions!r} holds {size} utterance{'' if size == 1 else 's'} (shape "
            f"{loaded.shape}){hint}")
    names = None
    if table is not None:
        names = [str(i) for i in range(classes)]
        for symbol, i in table.items():
            if i < classes:
                names[i] = symbol
    options, column, blank = _resolve_options(args, table, classes)
    wildcard = options.get("wildcard")
    by_id = {i: s for s, i in table.items()} if table is not None else {}
    for n, (ids, positions) in enumerate(parsed, 1):
        for c, pos in zip(ids, positions):
            what = f"symbol {by_id[c]!r} (id {c})" if c in by_id else f"symbol id {c}"
            where = f"{args.transcripts}, line {n}, position {pos}"
            if not c < classes:
                raise _UsageError(f"{where}: {what} is outside the {classes} emission "
                                  f"classes [0, {classes}) of {args.emissions!r}")
            for role, value in (("blank", blank), ("wildcard", wildcard)):
                if c == value:
                    raise _UsageError(f"{where}: {what} is the {role} of the "
                                      f"{args.graph!r} graph; a transcript cannot contain "
                                      "it")
    return align_utterances(emissions, [ids for ids, _ in parsed], lengths, args.graph,
                            names, column, options,
                            where=lambda b: f"{args.transcripts}, line {b + 1}")
