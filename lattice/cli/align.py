"""Forced alignment: where each symbol of a known transcript sits in the frames.

The ``lattice align`` command: the files in, :func:`lattice.align.align_utterances`,
the table out::

    lattice align emissions.npy transcripts.txt --symbols symbols.txt -o table.csv

* ``emissions.npy``: float array (T, C) or (B, T, C) of per-frame scores, usually
  log-probabilities (``--log-softmax`` normalises logits first);
* ``transcripts.txt``: one line per utterance, either symbol ids separated by spaces,
  or, with a symbol table, symbols (characters, or space-separated names);
* ``symbols.txt``: ``symbol id`` per line (the format of Kaldi / k2 symbol tables).

The table has the columns ``utterance, token, symbol, id, start_frame, end_frame,
score, confidence, onset_confidence`` (``end_frame`` exclusive; the confidences are
posterior probabilities, :class:`lattice.align.AlignedToken`), as CSV or JSON.
``--graph star`` aligns partial transcripts: a wildcard absorbs the untranscribed
frames.

This module holds only what the command line needs on top of :mod:`lattice.align`:
the options, a reader of ``.npy`` files that never trusts them (it checks the header
against the file before mapping it, and never unpickles), and the turning of every
error into one line naming the file, the line and the position.
"""

from __future__ import annotations

import argparse
import ast
import math
import os
import re
import sys

import numpy as np

from ..align import (
    DEFAULT_WILDCARD_PENALTY,
    WILDCARD_COLUMNS,
    align_utterances,
    builder_options,
    describe_item,
    describe_options,
    is_ascii_digits,
    parse_transcripts,
    read_lines,
    read_symbol_table,
    write_table,
)

__all__ = ["add_arguments", "main"]

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
    >>> from lattice.cli.align import add_arguments
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
    parser.add_argument("--no-confidence", dest="confidence", action="store_false",
                        help="leave the confidence columns empty and skip the "
                        "posterior pass that computes them (the Viterbi pass alone)")
    parser.add_argument("-o", "--output", metavar="FILE",
                        help="where to write the table (default: standard output)")
    parser.add_argument("--format", choices=("csv", "json"),
                        help="table format (default: from the output's extension, else "
                        "csv); columns: utterance, token, symbol, id, start_frame, "
                        "end_frame (exclusive), score, confidence (mean posterior "
                        "probability of the token on its frames), onset_confidence "
                        "(posterior probability that it starts within one frame of "
                        "start_frame)")


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
    >>> from lattice.cli.align import add_arguments, main
    >>> d = tempfile.mkdtemp()
    >>> np.save(os.path.join(d, "e.npy"), np.log(np.full((4, 3), 1 / 3)))
    >>> _ = open(os.path.join(d, "t.txt"), "w").write("1 2\\n")
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> main(p.parse_args([os.path.join(d, "e.npy"), os.path.join(d, "t.txt")]))
    utterance,token,symbol,id,start_frame,end_frame,score,confidence,onset_confidence
    0,0,1,1,0,1,-1.098612,0.666667,0.933333
    0,1,2,2,1,4,-3.295837,0.466667,0.6
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
                            where=lambda b: f"{args.transcripts}, line {b + 1}",
                            confidence=args.confidence)
