"""`lattice align` on hostile input: one clear line naming the file, status 1, no traceback.

Every case here once printed a Python traceback, or a message naming neither the file
nor the line (issue 14, item 14).
"""

import os
import subprocess
import sys

import numpy as np
import numpy.lib.format as npy_format
import pytest

from lattice.align import read_symbol_table, read_transcripts
from lattice.cli import main


@pytest.fixture
def d(tmp_path):
    np.save(tmp_path / "e.npy", np.log(np.full((2, 5, 4), 0.25)))
    (tmp_path / "t.txt").write_text("1 2\n3\n")
    (tmp_path / "sym.txt").write_text("- 0\na 1\nb 2\nc 3\n")
    return tmp_path


def _fails(args, capsys, *needles):
    """The command exits with status 1 and one `lattice align: error:` line holding needles."""
    status = main(["align", *map(str, args)])
    err = capsys.readouterr().err
    assert status == 1, err
    assert err.startswith("lattice align: error: ") and err.count("\n") == 1, err
    assert "Traceback" not in err
    for needle in needles:
        assert needle in err, (needle, err)
    return err


def _huge_header(path, tail=b"abcd"):
    """A .npy whose header declares a float32 array of 745 GiB, followed by a few bytes."""
    with open(path, "wb") as f:
        npy_format.write_array_header_1_0(
            f, {"descr": "<f4", "fortran_order": False, "shape": (1000, 100000, 2000)})
        f.write(tail)


def _header(path, text, data=b""):
    """A version 1.0 .npy file with the header ``text``, as written, then ``data``."""
    header = text.encode("latin1").ljust(118) + b"\n"
    path.write_bytes(b"\x93NUMPY\x01\x00" + len(header).to_bytes(2, "little") + header + data)


def _savez(path, **arrays):
    with open(path, "wb") as f:  # a .npz archive under a .npy name
        np.savez(f, **arrays)


# ---------------------------------------------------------------------------------
# the emissions file
# ---------------------------------------------------------------------------------


def test_empty_and_huge_npy_in_a_real_process(d):
    """The console script itself: status 1, one line naming the file, no traceback."""
    (d / "empty.npy").write_bytes(b"")
    _huge_header(d / "huge.npy")
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    for name, needle in (("empty.npy", "is empty"), ("huge.npy", "745.1 GiB")):
        done = subprocess.run([sys.executable, "-m", "lattice", "align", name, "t.txt"],
                              cwd=d, capture_output=True, text=True, env=env, timeout=120)
        assert done.returncode == 1, done.stderr
        assert done.stdout == ""
        lines = done.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("lattice align: error: "), lines
        assert name in lines[0] and needle in lines[0], lines[0]


def test_huge_header_is_compared_with_the_file_size(d, capsys):
    _huge_header(d / "huge.npy")
    _fails([d / "huge.npy", d / "t.txt"], capsys, "huge.npy", "float32", "(1000, 100000, 2000)",
           "745.1 GiB", "holds only 4 bytes", "truncated")
    # a plain array that lost its last bytes
    np.save(d / "cut.npy", np.zeros((2, 5, 4)))
    data = (d / "cut.npy").read_bytes()
    (d / "cut.npy").write_bytes(data[:-8])
    _fails([d / "cut.npy", d / "t.txt"], capsys, "cut.npy", "(2, 5, 4)", "320 bytes",
           "holds only 312 bytes")


@pytest.mark.parametrize(
    "make, needles",
    [
        (lambda p: p.write_bytes(b""), ("is empty",)),
        (lambda p: p.mkdir(), ("is a directory",)),
        (lambda p: p.write_text("1 2 3\n"), ("is not a .npy file",)),
        (lambda p: p.write_bytes(b"\x93NUMP"), ("is not a .npy file",)),
        (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00"), ("header", "truncated")),
        (lambda p: p.write_bytes(b"\x93NUMPY\x01\x00\x10\x00{'descr': 'x'}    \n"),
         ("header",)),
        (lambda p: p.write_bytes(b"\x93NUMPY\x07\x00\x10\x00"), ("format version 7.0",)),
        (lambda p: _savez(p, a=np.zeros((2, 5, 4))), (".npz archive",)),
        (lambda p: np.save(p, np.array([{"a": 1}, None], dtype=object), allow_pickle=True),
         ("Python objects", "never unpickles")),
        (lambda p: np.save(p, np.zeros(5)), ("shape (T, C) or (B, T, C)", "(5,)")),
        (lambda p: np.save(p, np.zeros((1, 2, 5, 4))), ("(1, 2, 5, 4)",)),
        (lambda p: np.save(p, np.zeros((2, 5, 4), dtype=int)), ("floating point", "int64")),
        (lambda p: np.save(p, np.zeros((2, 5, 4), dtype=bool)), ("floating point", "bool")),
        (lambda p: np.save(p, np.zeros((2, 5, 4), dtype=complex)),
         ("floating point", "complex128")),
        (lambda p: np.save(p, np.zeros((2, 5), dtype=[("a", "f4"), ("b", "f4")])),
         ("floating point",)),
        (lambda p: np.save(p, np.zeros((2, 5, 0))), ("no classes",)),
        (lambda p: _header(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (-1, 5, 4)}",
                           b"x" * 160), ("(-1, 5, 4)", "negative")),
        (lambda p: _header(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2, 5, 4)"),
         ("cannot read the .npy header",)),
        (lambda p: _header(p, "{'descr': '<f8', 'fortran_order': False, 'shape': (2.5, 4)}"),
         ("cannot read the .npy header", "shape")),
    ],
    ids=["empty", "directory", "text", "short-magic", "no-header", "bad-header",
         "version", "npz", "object", "1-d", "4-d", "int", "bool", "complex", "structured",
         "no-classes", "negative-shape", "unclosed-header", "float-shape"],
)
def test_bad_emissions_files(d, capsys, make, needles):
    make(d / "bad.npy")
    _fails([d / "bad.npy", d / "t.txt"], capsys, "bad.npy", *needles)


def test_object_arrays_are_never_unpickled(d, capsys, monkeypatch):
    np.save(d / "obj.npy", np.array([1, 2], dtype=object), allow_pickle=True)
    import pickle

    def no_unpickling(*args, **kwargs):
        raise AssertionError("lattice align unpickled a file")

    monkeypatch.setattr(pickle, "load", no_unpickling)
    monkeypatch.setattr(pickle, "loads", no_unpickling)
    _fails([d / "obj.npy", d / "t.txt"], capsys, "obj.npy", "Python objects")


def test_missing_emissions_file(d, capsys):
    _fails([d / "missing.npy", d / "t.txt"], capsys, "missing.npy", "does not exist")


def test_nan_and_inf_name_the_utterance_and_frame(d, capsys):
    e = np.log(np.full((2, 5, 4), 0.25))
    e[1, 3, 2] = np.nan
    np.save(d / "nan.npy", e)
    _fails([d / "nan.npy", d / "t.txt"], capsys, "nan.npy", "utterance 1, frame 3", "NaN")
    e[1, 3, 2] = np.inf
    np.save(d / "inf.npy", e)
    _fails([d / "inf.npy", d / "t.txt"], capsys, "inf.npy", "utterance 1, frame 3", "+inf")


@pytest.mark.parametrize("variant", ["float32", "float16", "fortran", "big-endian"])
def test_every_float_layout_aligns_like_float64(d, capsys, variant):
    e = np.log(np.random.default_rng(0).dirichlet(np.ones(4), size=(2, 5)))
    other = {"float32": e.astype(np.float32), "float16": e.astype(np.float16),
             "fortran": np.asfortranarray(e), "big-endian": e.astype(">f8")}[variant]
    np.save(d / "ref.npy", e.astype(other.dtype.newbyteorder("=")))
    np.save(d / "other.npy", other)
    assert main(["align", str(d / "ref.npy"), str(d / "t.txt")]) == 0
    ref = capsys.readouterr().out
    assert main(["align", str(d / "other.npy"), str(d / "t.txt")]) == 0
    assert capsys.readouterr().out == ref


def test_log_softmax_of_a_row_without_a_finite_score(d, capsys):
    logits = np.zeros((2, 5, 4))
    logits[1, 3] = -np.inf
    np.save(d / "minf.npy", logits)
    err = _fails([d / "minf.npy", d / "t.txt", "--log-softmax"], capsys, "minf.npy",
                 "utterance 1, frame 3", "no finite score")
    assert "NaN" not in err
    # padding frames past --lengths may be -inf: they are left alone
    (d / "len.txt").write_text("5 3\n")
    assert main(["align", str(d / "minf.npy"), str(d / "t.txt"), "--log-softmax",
                 "--lengths", str(d / "len.txt")]) == 0
    assert capsys.readouterr().out.count("\n") == 4  # header + 3 symbols


def test_a_frame_without_a_finite_score_is_named_in_the_alignment_error(d, capsys):
    e = np.log(np.full((2, 5, 4), 0.25))
    e[0, 2] = -np.inf
    np.save(d / "dead.npy", e)
    _fails([d / "dead.npy", d / "t.txt"], capsys, "t.txt, line 1", "frame 2",
           "no finite score")


# ---------------------------------------------------------------------------------
# transcripts, symbol tables, lengths
# ---------------------------------------------------------------------------------


def test_a_character_missing_from_the_symbol_table(d, capsys):
    (d / "sq.txt").write_text("ab\nca\u00b2\n", encoding="utf-8")
    _fails([d / "e.npy", d / "sq.txt", "--symbols", d / "sym.txt"], capsys,
           "sq.txt, line 2, position 3", "'\u00b2'", "U+00B2 SUPERSCRIPT TWO",
           "not in the symbol table", "sym.txt")
    (d / "words.txt").write_text("a b\n  c  zz\n")
    _fails([d / "e.npy", d / "words.txt", "--symbols", d / "sym.txt"], capsys,
           "words.txt, line 2, position 6", "'zz'")


@pytest.mark.parametrize(
    "item, shown",
    [("\u00b2", "'\u00b2' (U+00B2 SUPERSCRIPT TWO)"),
     ("3\u00b2", "'3\u00b2' (holding '\u00b2', U+00B2 SUPERSCRIPT TWO)"),
     ("\uff13", "'\uff13' (U+FF13 FULLWIDTH DIGIT THREE)"),
     ("-1", "'-1'"), ("1.0", "'1.0'")],
)
def test_a_non_ascii_or_non_integer_id_in_a_transcript(d, capsys, item, shown):
    (d / "ids.txt").write_text(f"1 2\n3 {item}\n", encoding="utf-8")
    _fails([d / "e.npy", d / "ids.txt"], capsys, "ids.txt, line 2, position 3",
           f"{shown} is not a symbol id")


def test_transcript_ids_and_special_symbols_are_located(d, capsys):
    (d / "big.txt").write_text("1\n2  9\n")
    _fails([d / "e.npy", d / "big.txt"], capsys, "big.txt, line 2, position 4",
           "symbol id 9 is outside the 4 emission classes")
    (d / "blank.txt").write_text("1\n2 0\n")
    _fails([d / "e.npy", d / "blank.txt"], capsys, "blank.txt, line 2, position 3",
           "the blank")
    (d / "blank2.txt").write_text("a\nb-\n")
    _fails([d / "e.npy", d / "blank2.txt", "--symbols", d / "sym.txt"], capsys,
           "blank2.txt, line 2, position 2", "'-'", "the blank")


def test_line_counts_of_the_transcripts(d, capsys):
    (d / "one.txt").write_text("1 2\n")
    _fails([d / "e.npy", d / "one.txt"], capsys, "one.txt", "has 1 transcript line",
           "e.npy", "holds 2 utterances")
    (d / "three.txt").write_text("1\n2\n\n")
    _fails([d / "e.npy", d / "three.txt"], capsys, "has 3 transcript lines",
           "an empty line is an empty transcript")
    # a Unicode line separator inside a line does not start a new transcript
    (d / "sep.txt").write_text("ab\u2028c\nc\n", encoding="utf-8")
    _fails([d / "e.npy", d / "sep.txt", "--symbols", d / "sym.txt", "--split", "chars"],
           capsys, "sep.txt, line 1, position 3", "U+2028")
    # Windows line ends and a byte-order mark are read as plain lines
    (d / "crlf.txt").write_bytes("\ufeffab\r\nc\r\n".encode())
    assert main(["align", str(d / "e.npy"), str(d / "crlf.txt"), "--symbols",
                 str(d / "sym.txt")]) == 0
    assert capsys.readouterr().out.count("\n") == 4


@pytest.mark.parametrize("which", ["transcripts", "symbols"])
def test_unreadable_text_files(d, capsys, which):
    args = {"transcripts": lambda p: [d / "e.npy", p, "--symbols", d / "sym.txt"],
            "symbols": lambda p: [d / "e.npy", d / "t.txt", "--symbols", p]}[which]
    (d / "bin.txt").write_bytes(b"ab\nc\xff\n")
    _fails(args(d / "bin.txt"), capsys, "bin.txt, line 2", "not UTF-8", "0xff")
    (d / "dir.txt").mkdir()
    _fails(args(d / "dir.txt"), capsys, "dir.txt", "is a directory")
    _fails(args(d / "nope.txt"), capsys, "nope.txt", "does not exist")


@pytest.mark.parametrize(
    "content, needles",
    [
        ("a 1\nb 1\n", ("sym2.txt, line 2", "id 1 is listed twice")),
        ("a 1\na 2\n", ("sym2.txt, line 2", "symbol 'a' is listed twice")),
        ("a 1\nb 2 3\n", ("sym2.txt, line 2", "expected `symbol id`")),
        ("a 1\nb\n", ("sym2.txt, line 2", "expected `symbol id`")),
        ("a 1\nb \u00b2\n", ("sym2.txt, line 2", "expected `symbol id`")),
        ("a 1\nb -2\n", ("sym2.txt, line 2", "negative id")),
        ("\n\n", ("sym2.txt", "empty")),
    ],
)
def test_bad_symbol_tables(d, capsys, content, needles):
    (d / "sym2.txt").write_text(content, encoding="utf-8")
    _fails([d / "e.npy", d / "t.txt", "--symbols", d / "sym2.txt"], capsys, *needles)


def test_blank_by_a_non_ascii_digit(d, capsys):
    _fails([d / "e.npy", d / "t.txt", "--blank", "\u00b2"], capsys, "--blank '\u00b2'")


def test_bad_lengths_files(d, capsys):
    (d / "len.txt").write_text("5\n3 \u00b2\n", encoding="utf-8")
    _fails([d / "e.npy", d / "t.txt", "--lengths", d / "len.txt"], capsys,
           "len.txt, line 2, position 3", "'\u00b2'")
    np.save(d / "len.npy", np.array([5.0, 3.0]))
    _fails([d / "e.npy", d / "t.txt", "--lengths", d / "len.npy"], capsys, "len.npy",
           "integers", "float64")
    np.save(d / "len.npy", np.array([5, 6]))
    _fails([d / "e.npy", d / "t.txt", "--lengths", d / "len.npy"], capsys, "len.npy",
           "utterance 1", "length 6", "[0, 5]")
    (d / "empty.npy").write_bytes(b"")
    _fails([d / "e.npy", d / "t.txt", "--lengths", d / "empty.npy"], capsys, "empty.npy",
           "is empty")


def test_library_readers_name_the_file_and_position(d):
    (d / "x.txt").write_text("1 \u00b2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"x\.txt, line 1, position 3: '\u00b2' \(U\+00B2 "
                       "SUPERSCRIPT TWO\\) is not a symbol id"):
        read_transcripts(d / "x.txt")
    (d / "s.txt").write_text("a \u00b2\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"s\.txt, line 1: expected `symbol id`"):
        read_symbol_table(d / "s.txt")
