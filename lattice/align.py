"""Forced alignment: where each symbol of a known transcript sits in the frames.

:func:`forced_align` runs :func:`lattice.viterbi` on the graph of each transcript and
returns one row per transcript symbol: its first and last frame and its score. The
``lattice align`` command wraps it for files::

    lattice align emissions.npy transcripts.txt --symbols symbols.txt -o table.csv

* ``emissions.npy``: float array (T, C) or (B, T, C) of per-frame scores, usually
  log-probabilities (``--log-softmax`` normalises logits first);
* ``transcripts.txt``: one line per utterance, either symbol ids separated by spaces,
  or, with a symbol table, symbols (characters, or space-separated names);
* ``symbols.txt``: ``symbol id`` per line (the format of Kaldi / k2 symbol tables).

The table has the columns ``utterance, token, symbol, id, start_frame, end_frame,
score`` (``end_frame`` exclusive), as CSV or JSON.
"""

from __future__ import annotations

import csv
import io
import json
import sys
from typing import NamedTuple

import numpy as np

from .engine import viterbi
from .registry import UnknownGraphError, build

__all__ = [
    "AlignedToken",
    "AlignmentError",
    "forced_align",
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


def _min_frames_message(graph_name, target, frames):
    k = len(target)
    if graph_name == "ctc":
        repeats = int(sum(a == b for a, b in zip(target, target[1:])))
        need = k + repeats
        if frames < need:
            return (f"its {k} symbols cannot be aligned to {frames} frames (CTC needs at "
                    f"least {need}: one per symbol, plus a blank between each of the "
                    f"{repeats} repeated pair(s))")
    elif graph_name == "segmentation" and frames < k:
        return f"its {k} symbols cannot be aligned to {frames} frames (one frame each)"
    return (f"its {k} symbols have no alignment with a finite score over {frames} "
            "frames (impossible (-inf) emission scores where the symbols must go?)")


def forced_align(emissions, targets, lengths=None, graph="ctc", symbols=None, **options):
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
    **options
        Passed to the builder, e.g. ``blank=0`` for ``"ctc"``.

    Returns
    -------
    list of AlignedToken
        Utterance by utterance, symbols in transcript order.

    Raises
    ------
    AlignmentError
        If a transcript has no alignment (too long for its frames, or only through
        ``-inf`` scores); the message names the utterance.
    TypeError, ValueError
        On bad emissions, a count mismatch, or a transcript the builder rejects
        (e.g. one containing the blank), naming the utterance.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.align import forced_align
    >>> e = np.log(np.array([[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]))
    >>> for row in forced_align(e, [[1, 2]], symbols=["-", "a", "b"]):
    ...     print(row.symbol, row.start_frame, row.end_frame, round(row.score, 3))
    a 0 2 -0.446
    b 3 4 -0.223
    """
    arr = _as_emissions(emissions)
    size, frames, classes = arr.shape
    targets = [list(t) for t in targets]
    if len(targets) != size:
        raise ValueError(f"got {len(targets)} transcripts for {size} utterances of emissions")
    if symbols is not None and len(symbols) < classes:
        raise ValueError(f"symbols names {len(symbols)} classes, emissions have {classes}")
    graphs = []
    for b, target in enumerate(targets):
        bad = [c for c in target if not 0 <= int(c) < classes]
        if bad:
            raise ValueError(
                f"utterance {b}: symbol id {bad[0]} is outside the {classes} emission "
                f"classes [0, {classes})"
            )
        try:
            graphs.append(build(graph, target, **options))
        except UnknownGraphError:
            raise
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"utterance {b}: {exc}") from None
    ali = viterbi(arr, graphs, lengths)
    n_frames = (ali.states >= 0).sum(axis=1) if lengths is None else np.asarray(lengths)
    rows = []
    for b, target in enumerate(targets):
        if not np.isfinite(ali.score[b]):
            raise AlignmentError(
                f"utterance {b}: " + _min_frames_message(graph, target, int(
                    frames if lengths is None else n_frames[b]))
            )
        for token, start, end in ali.segments(b):
            c = int(target[token])
            score = float(arr[b, start:end, c].sum())
            name = str(symbols[c]) if symbols is not None else str(c)
            rows.append(AlignedToken(b, int(token), name, c, int(start), int(end), score))
    return rows


def read_symbol_table(path):
    """Read a symbol table: one ``symbol id`` pair per line.

    Parameters
    ----------
    path : str or path

    Returns
    -------
    dict of str to int

    Raises
    ------
    ValueError
        On a malformed line, or a symbol or id listed twice (naming the line).
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
    with open(path, encoding="utf-8") as f:
        for n, line in enumerate(f, 1):
            if not line.strip():
                continue
            parts = line.split()
            if len(parts) != 2 or not parts[1].lstrip("-").isdigit():
                raise ValueError(f"{path}, line {n}: expected `symbol id`, got {line.strip()!r}")
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


def read_transcripts(path, symbols=None, split="auto"):
    """Read transcripts, one utterance per line, as lists of class ids.

    Parameters
    ----------
    path : str or path
    symbols : dict of str to int, optional
        A symbol table (:func:`read_symbol_table`). Without one, every line holds
        whitespace-separated integer ids.
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
        On an unknown symbol or a non-integer id, naming the line.

    Examples
    --------
    >>> import tempfile, os
    >>> from lattice.align import read_transcripts
    >>> path = os.path.join(tempfile.mkdtemp(), "text.txt")
    >>> _ = open(path, "w").write("abba\\nb a\\n")
    >>> read_transcripts(path, {"a": 1, "b": 2})
    [[1, 2, 2, 1], [2, 1]]
    """
    if split not in ("auto", "chars", "space"):
        raise ValueError(f"split must be 'auto', 'chars' or 'space', got {split!r}")
    out = []
    with open(path, encoding="utf-8") as f:
        lines = f.read().splitlines()
    for n, line in enumerate(lines, 1):
        line = line.strip()
        if symbols is None:
            ids = []
            for item in line.split():
                if not item.isdigit():
                    raise ValueError(
                        f"{path}, line {n}: {item!r} is not a symbol id (a non-negative "
                        "integer); pass a symbol table (--symbols) to read symbols"
                    )
                ids.append(int(item))
            out.append(ids)
            continue
        by_space = split == "space" or (split == "auto" and any(ch.isspace() for ch in line))
        items = line.split() if by_space else list(line)
        ids = []
        for item in items:
            if item not in symbols:
                raise ValueError(
                    f"{path}, line {n}: symbol {item!r} is not in the symbol table"
                )
            ids.append(symbols[item])
        out.append(ids)
    return out


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


def add_arguments(parser):
    """Declare the ``lattice align`` arguments on an argparse parser.

    Examples
    --------
    >>> import argparse
    >>> from lattice.align import add_arguments
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["e.npy", "t.txt", "--format", "json"]).format
    'json'
    """
    parser.add_argument("emissions", help="a .npy array (T, C) or (B, T, C) of per-frame "
                        "scores (log-probabilities)")
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
                        "lattice.available_graphs())")
    parser.add_argument("--blank", default=None,
                        help="ctc: the blank's id (an integer), or its name in the "
                        "symbol table (default: id 0)")
    parser.add_argument("--log-softmax", action="store_true",
                        help="normalise the emissions with log_softmax first (for logits)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the table (default: standard output)")
    parser.add_argument("--format", choices=("csv", "json"),
                        help="table format (default: from the output's extension, else csv)")


class _UsageError(Exception):
    pass


def _load_emissions(path):
    try:
        arr = np.load(path, allow_pickle=False)
    except FileNotFoundError:
        raise _UsageError(f"emissions file {path!r} does not exist") from None
    except (ValueError, OSError) as exc:
        raise _UsageError(f"cannot read {path!r} as a .npy array: {exc}") from None
    if isinstance(arr, np.lib.npyio.NpzFile):
        raise _UsageError(f"{path!r} is an .npz archive; save one array with numpy.save")
    if arr.ndim not in (2, 3):
        raise _UsageError(f"{path!r}: emissions must have shape (T, C) or (B, T, C), "
                          f"got {arr.shape}")
    if not np.issubdtype(arr.dtype, np.floating):
        raise _UsageError(f"{path!r}: emissions must be floating point, got {arr.dtype}")
    if np.isnan(arr).any() or np.isposinf(arr).any():
        raise _UsageError(f"{path!r}: emissions contain NaN or +inf")
    return arr


def _load_lengths(path):
    try:
        if str(path).endswith(".npy"):
            arr = np.load(path, allow_pickle=False)
        else:
            with open(path, encoding="utf-8") as f:
                arr = np.array([int(x) for x in f.read().split()])
    except FileNotFoundError:
        raise _UsageError(f"lengths file {path!r} does not exist") from None
    except (ValueError, OSError) as exc:
        raise _UsageError(f"cannot read lengths from {path!r}: {exc}") from None
    return arr.reshape(-1)


def main(args):
    """Run ``lattice align`` with parsed arguments; returns the exit status.

    Errors (missing or malformed files, a transcript that cannot fit) are printed as
    ``lattice align: error: ...`` and give status 1.

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
    except (_UsageError, ValueError, TypeError, OSError) as exc:
        print(f"lattice align: error: {exc}", file=sys.stderr)
        return 1
    fmt = args.format
    if fmt is None:
        fmt = "json" if str(args.output or "").lower().endswith(".json") else "csv"
    try:
        write_table(rows, args.output, fmt)
    except OSError as exc:
        print(f"lattice align: error: cannot write {args.output!r}: {exc}", file=sys.stderr)
        return 1
    return 0


def _run(args):
    emissions = _load_emissions(args.emissions)
    if emissions.ndim == 2:
        emissions = emissions[None]
    if args.log_softmax:
        with np.errstate(invalid="ignore"):
            emissions = emissions - np.logaddexp.reduce(emissions, axis=-1, keepdims=True)
    table = read_symbol_table(args.symbols) if args.symbols else None
    try:
        targets = read_transcripts(args.transcripts, table, args.split)
    except FileNotFoundError:
        raise _UsageError(f"transcripts file {args.transcripts!r} does not exist") from None
    size, frames, classes = emissions.shape
    if len(targets) != size:
        raise _UsageError(
            f"{args.transcripts!r} has {len(targets)} transcript line(s), but the "
            f"emissions hold {size} utterance(s)"
        )
    names = None
    if table is not None:
        names = [str(i) for i in range(classes)]
        for symbol, i in table.items():
            if i < classes:
                names[i] = symbol
    options = {}
    if args.graph == "ctc":
        blank = "0" if args.blank is None else args.blank
        if blank.isdigit():  # an integer is an id, even where a symbol has that name
            blank = int(blank)
        elif table is not None and blank in table:
            blank = table[blank]
        else:
            raise _UsageError(f"--blank {blank!r} is neither an id nor a symbol in the "
                              "symbol table")
        if not 0 <= blank < classes:
            raise _UsageError(f"--blank {blank} is outside the {classes} emission classes")
        options["blank"] = blank
    elif args.blank is not None:
        raise _UsageError(f"--blank applies to the ctc graph, not {args.graph!r}")
    lengths = None
    if args.lengths:
        lengths = _load_lengths(args.lengths)
        if lengths.shape != (size,):
            raise _UsageError(f"{args.lengths!r} holds {lengths.size} lengths for {size} "
                              "utterances")
        if lengths.min(initial=0) < 0 or lengths.max(initial=0) > frames:
            raise _UsageError(f"{args.lengths!r}: lengths must lie in [0, {frames}]")
    return forced_align(emissions, targets, lengths, graph=args.graph, symbols=names,
                        **options)

