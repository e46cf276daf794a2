"""`lattice align --graph star` and builder options from the command line and the API.

The ``star`` graph needs a wildcard (issue 14, item 14): ``--wildcard``,
``--wildcard-penalty``, ``--wildcard-column`` and, for any graph, ``--graph-option``.
"""

import math

import numpy as np
import pytest

import lattice
from lattice.align import DEFAULT_WILDCARD_PENALTY, append_wildcard, forced_align
from lattice.cli import main


@pytest.fixture
def d(tmp_path):
    rng = np.random.default_rng(3)
    lp = np.log(rng.dirichlet(np.ones(5) * 0.3, size=(3, 12)))
    np.save(tmp_path / "e.npy", lp)
    (tmp_path / "t.txt").write_text("1 3\n2\n4 4\n")
    (tmp_path / "sym.txt").write_text("- 0\na 1\nb 2\nc 3\nd 4\n")
    return tmp_path


TARGETS = [[1, 3], [2], [4, 4]]


def _rows(out):
    lines = out.strip().splitlines()
    assert lines[0] == ("utterance,token,symbol,id,start_frame,end_frame,score,"
                        "confidence,onset_confidence")
    return [tuple(int(x) for x in line.split(",")[:2] + line.split(",")[3:6])
            for line in lines[1:]]


def _reference(lp, column, targets=TARGETS, **options):
    """Segments from lattice.viterbi on the emissions with a hand-made wildcard column."""
    e = np.concatenate([lp, column[..., None]], axis=2)
    graphs = [lattice.build("star", t, wildcard=lp.shape[2], **options) for t in targets]
    ali = lattice.viterbi(e, graphs)
    return [(b, tok, targets[b][tok], s, end) for b in range(len(targets))
            for tok, s, end in ali.segments(b)]


def _align(args, capsys):
    status = main(["align", *map(str, args)])
    out, err = capsys.readouterr()
    assert status == 0, err
    return _rows(out)


def test_star_defaults_append_a_logsumexp_column(d, capsys):
    lp = np.load(d / "e.npy")
    rows = _align([d / "e.npy", d / "t.txt", "--graph", "star", "--blank", "0"], capsys)
    column = np.logaddexp.reduce(lp[:, :, 1:], axis=2)
    assert rows == _reference(lp, column, blank=0, penalty=math.log(0.1))
    assert DEFAULT_WILDCARD_PENALTY == pytest.approx(math.log(0.1))
    # without a blank: segmentation-style star; the column spans every class
    rows = _align([d / "e.npy", d / "t.txt", "--graph", "star"], capsys)
    assert rows == _reference(lp, np.logaddexp.reduce(lp, axis=2), penalty=math.log(0.1))


def test_star_max_column_penalty_and_gaps(d, capsys):
    lp = np.load(d / "e.npy")
    rows = _align([d / "e.npy", d / "t.txt", "--graph", "star", "--blank", "0",
                   "--wildcard-column", "max", "--wildcard-penalty", "-1"], capsys)
    assert rows == _reference(lp, lp[:, :, 1:].max(axis=2), blank=0, penalty=-1.0)
    rows = _align([d / "e.npy", d / "t.txt", "--graph", "star", "--blank", "0",
                   "--graph-option", "gaps=edges", "--graph-option", "penalty=-0.5"], capsys)
    assert rows == _reference(lp, np.logaddexp.reduce(lp[:, :, 1:], axis=2), blank=0,
                              penalty=-0.5, gaps="edges")
    # a quoted string literal is the same as a bare word
    assert _align([d / "e.npy", d / "t.txt", "--graph", "star", "--blank", "0",
                   "--graph-option", "gaps='edges'", "--graph-option", "penalty=-0.5"],
                  capsys) == rows


def test_star_with_a_wildcard_class_of_the_model(d, capsys):
    lp = np.load(d / "e.npy")
    (d / "t2.txt").write_text("1 3\n2\n3 3\n")
    targets = [[1, 3], [2], [3, 3]]
    graphs = [lattice.build("star", t, wildcard=4, blank=0) for t in targets]
    ali = lattice.viterbi(lp, graphs)
    expect = [(b, tok, targets[b][tok], s, e) for b in range(3) for tok, s, e in ali.segments(b)]
    # by id and by name; no column is appended and the penalty defaults to 0
    assert _align([d / "e.npy", d / "t2.txt", "--graph", "star", "--blank", "0",
                   "--wildcard", "4"], capsys) == expect
    (d / "t2s.txt").write_text("a c\nb\nc c\n")
    assert _align([d / "e.npy", d / "t2s.txt", "--graph", "star", "--blank", "-",
                   "--wildcard", "d", "--symbols", d / "sym.txt", "--split", "space"],
                  capsys) == expect
    assert _align([d / "e.npy", d / "t2.txt", "--graph", "star", "--graph-option",
                   "blank=0", "--graph-option", "wildcard=4"], capsys) == expect
    # --wildcard C names the appended column: the same as the default
    assert _align([d / "e.npy", d / "t.txt", "--graph", "star", "--wildcard", "5"], capsys) \
        == _align([d / "e.npy", d / "t.txt", "--graph", "star"], capsys)


def _fails(args, capsys, *needles, status=1):
    assert main(["align", *map(str, args)]) == status
    err = capsys.readouterr().err
    assert err.startswith("lattice align: error: ") and err.count("\n") == 1, err
    for needle in needles:
        assert needle in err, (needle, err)


@pytest.mark.parametrize(
    "extra, needles",
    [
        (["--wildcard", "6"], ("--wildcard 6", "outside", "0..5")),
        (["--wildcard", "x"], ("--wildcard 'x'", "neither an id nor a symbol")),
        (["--wildcard", "3", "--wildcard-column", "max"], ("--wildcard-column",
                                                         "--wildcard 3")),
        (["--wildcard", "0", "--blank", "0"], ("blank and wildcard must differ",)),
        (["--wildcard", "4"], ("t.txt, line 3, position 1", "the wildcard")),
        (["--wildcard-penalty", "nan"], ("penalty must be finite",)),
        (["--graph-option", "nope=1"], ("--graph-option nope", "'star' graph has no option",
                                        "wildcard", "blank=None", "penalty=0.0",
                                        "gaps='everywhere'")),
        (["--graph-option", "gaps=sideways"], ("gaps must be one of",)),
        (["--graph-option", "penalty=-1", "--wildcard-penalty", "-2"],
         ("--wildcard-penalty", "--graph-option penalty")),
        (["--graph-option", "blank=0", "--blank", "0"], ("--blank", "--graph-option blank")),
        (["--graph-option", "blank=0", "--graph-option", "blank=1"],
         ("--graph-option blank", "twice")),
    ],
)
def test_star_option_errors(d, capsys, extra, needles):
    _fails([d / "e.npy", d / "t.txt", "--graph", "star", *extra], capsys, *needles)


def test_options_for_other_graphs(d, capsys):
    lp = np.load(d / "e.npy")
    _fails([d / "e.npy", d / "t.txt", "--wildcard", "4"], capsys,
           "--wildcard applies to graphs with a wildcard", "'ctc'")
    _fails([d / "e.npy", d / "t.txt", "--wildcard-column", "max"], capsys, "--wildcard-column")
    _fails([d / "e.npy", d / "t.txt", "--graph", "segmentation", "--blank", "0"], capsys,
           "--blank", "'segmentation' graph has no blank", "min_frames=1")
    _fails([d / "e.npy", d / "t.txt", "--graph-option", "blanc=0"], capsys,
           "'ctc' graph has no option 'blanc'", "blank=0", "between='optional'")
    # a builder option of segmentation and of ctc
    rows = _align([d / "e.npy", d / "t.txt", "--graph", "segmentation", "--graph-option",
                   "min_frames=3"], capsys)
    graphs = [lattice.build("segmentation", t, min_frames=3) for t in TARGETS]
    ali = lattice.viterbi(lp, graphs)
    assert rows == [(b, k, TARGETS[b][k], s, e) for b in range(3) for k, s, e in ali.segments(b)]
    assert all(e - s >= 3 for *_, s, e in rows)
    rows = _align([d / "e.npy", d / "t.txt", "--graph-option", "between='required'"], capsys)
    ali = lattice.viterbi(lp, [lattice.build("ctc", t, between="required") for t in TARGETS])
    assert rows == [(b, k, TARGETS[b][k], s, e) for b in range(3) for k, s, e in ali.segments(b)]


@pytest.mark.parametrize("bad", ["blank", "=3", "1x=2", "penalty=-", "gaps=a b"])
def test_malformed_graph_option_is_a_usage_error(d, capsys, bad):
    with pytest.raises(SystemExit) as exc:
        main(["align", str(d / "e.npy"), str(d / "t.txt"), "--graph-option", bad])
    assert exc.value.code == 2
    err = capsys.readouterr().err
    assert "argument --graph-option" in err and "NAME=VALUE" in err, err


# ---------------------------------------------------------------------------------
# the Python API
# ---------------------------------------------------------------------------------


def test_forced_align_star_api(d):
    lp = np.load(d / "e.npy")
    rows = forced_align(lp, TARGETS, graph="star", wildcard_column="logsumexp", blank=0)
    column = np.logaddexp.reduce(lp[:, :, 1:], axis=2)
    expect = _reference(lp, column, blank=0, penalty=DEFAULT_WILDCARD_PENALTY)
    assert [(r.utterance, r.token, r.id, r.start_frame, r.end_frame) for r in rows] == expect
    # scores are sums of the model's own columns
    for r in rows:
        assert r.score == pytest.approx(lp[r.utterance, r.start_frame:r.end_frame, r.id].sum())
    rows = forced_align(lp, TARGETS, graph="star", wildcard_column="max", penalty=-1.0, blank=0)
    expect = _reference(lp, lp[:, :, 1:].max(axis=2), blank=0, penalty=-1.0)
    assert [(r.utterance, r.token, r.id, r.start_frame, r.end_frame) for r in rows] == expect
    # the wildcard as a class of the model: no column, the builder's penalty
    rows = forced_align(lp, [[1], [2], [3]], graph="star", wildcard=4)
    ali = lattice.viterbi(lp, [lattice.build("star", [c], wildcard=4) for c in (1, 2, 3)])
    assert [(r.start_frame, r.end_frame) for r in rows] == [
        ali.segments(b)[0][1:] for b in range(3)]


def test_forced_align_option_errors_and_backward_compatibility():
    e = np.log(np.full((1, 6, 3), 1 / 3))
    with pytest.raises(TypeError, match=r"graph 'star' needs the option 'wildcard'.*"
                       r"wildcard_column='logsumexp'"):
        forced_align(e, [[1]], graph="star")
    with pytest.raises(TypeError, match=r"graph 'star' has no option 'wildcrad'; its "
                       r"options: wildcard \(required\), blank=None, penalty=0.0"):
        forced_align(e, [[1]], graph="star", wildcrad=3)
    with pytest.raises(ValueError, match="wildcard_column must be"):
        forced_align(e, [[1]], graph="star", wildcard_column="mean")
    with pytest.raises(ValueError, match=r"wildcard_column appends the wildcard as class 3"):
        forced_align(e, [[1]], graph="star", wildcard_column="max", wildcard=1)
    with pytest.raises(TypeError, match="'ctc' has no wildcard option"):
        forced_align(e, [[1]], wildcard_column="max")
    with pytest.raises(ValueError, match=r"utterance 0: the 'ctc' graph uses class 7, "
                       "but the emissions have 3"):
        forced_align(e, [[1]], blank=7)
    # the old positional form still works
    old = forced_align(e, [[1, 2]], None, "ctc", ["-", "a", "b"], blank=0)
    assert [r.symbol for r in old] == ["a", "b"]


def test_append_wildcard():
    lp = np.log(np.array([[[0.5, 0.3, 0.2], [0.1, 0.1, 0.8]]]))
    out = append_wildcard(lp, blank=0)
    assert out.shape == (1, 2, 4)
    np.testing.assert_allclose(np.exp(out[0, :, 3]), [0.5, 0.9])
    np.testing.assert_array_equal(out[..., :3], lp)
    np.testing.assert_allclose(np.exp(append_wildcard(lp[0], method="max")[:, 3]), [0.5, 0.8])
    np.testing.assert_allclose(append_wildcard(lp)[..., 3], 0.0, atol=1e-12)
    assert append_wildcard(lp.astype(np.float32), blank=2).dtype == np.float32
    with pytest.raises(ValueError, match="blank 3 is outside the 3 classes"):
        append_wildcard(lp, blank=3)
    with pytest.raises(ValueError, match="method must be"):
        append_wildcard(lp, method="mean")
    with pytest.raises(ValueError, match="no class besides the blank"):
        append_wildcard(lp[..., :1], blank=0)
