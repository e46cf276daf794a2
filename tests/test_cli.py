"""The command line: `lattice align` on the demo model's output, errors, `python -m lattice`."""

import csv
import json
import os
import subprocess
import sys

import numpy as np
import pytest

import lattice
from lattice.align import AlignmentError, forced_align, read_symbol_table, read_transcripts
from lattice.cli import SUBCOMMANDS, build_parser, main


@pytest.fixture(scope="module")
def demo_output(tmp_path_factory):
    """Emissions, transcripts and symbols saved by a (tiny) demo run."""
    pytest.importorskip("torch")
    from lattice.demo import DemoConfig, run

    d = tmp_path_factory.mktemp("demo")
    paths = {n: d / f for n, f in (("em", "em.npy"), ("tr", "tr.txt"), ("sy", "sy.txt"))}
    cfg = DemoConfig(epochs=1, steps_per_epoch=25, batch_size=8, eval_size=12, hidden=16,
                     threads=1, seed=1)
    run(cfg, save_emissions=paths["em"], save_transcripts=paths["tr"],
        save_symbols=paths["sy"], quiet=True)
    return {k: str(v) for k, v in paths.items()}


def _read_csv(path):
    with open(path, newline="") as f:
        rows = list(csv.DictReader(f))
    for r in rows:
        for k in ("utterance", "token", "id", "start_frame", "end_frame"):
            r[k] = int(r[k])
        for k in ("score", "confidence", "onset_confidence"):
            r[k] = float(r[k])
    return rows


def _check_table(rows, emissions, targets, symbols=None, graph="ctc", lengths=None):
    """Tokens in order, segments non-overlapping inside the frames, equal to viterbi."""
    B, T, _ = emissions.shape
    assert sorted({r["utterance"] for r in rows}) == [b for b in range(B) if targets[b]]
    graphs = [lattice.build(graph, t) for t in targets]
    ali = lattice.viterbi(emissions, graphs, lengths)
    for b in range(B):
        mine = [r for r in rows if r["utterance"] == b]
        n = T if lengths is None else lengths[b]
        assert [r["token"] for r in mine] == list(range(len(targets[b])))
        assert [r["id"] for r in mine] == list(targets[b])
        if symbols is not None:
            assert [r["symbol"] for r in mine] == [symbols[c] for c in targets[b]]
        for r, nxt in zip(mine, mine[1:] + [None]):
            assert 0 <= r["start_frame"] < r["end_frame"] <= n
            if nxt is not None:
                assert r["end_frame"] <= nxt["start_frame"]
            seg = emissions[b, r["start_frame"] : r["end_frame"], r["id"]]
            assert r["score"] == pytest.approx(float(seg.sum()), abs=2e-6)
        assert [(r["token"], r["start_frame"], r["end_frame"]) for r in mine] == ali.segments(b)


def test_align_the_demo_models_output(demo_output, tmp_path):
    out = tmp_path / "table.csv"
    assert main(["align", demo_output["em"], demo_output["tr"], "--symbols",
                 demo_output["sy"], "-o", str(out)]) == 0
    emissions = np.load(demo_output["em"])
    table = read_symbol_table(demo_output["sy"])
    targets = read_transcripts(demo_output["tr"], table)
    names = {i: s for s, i in table.items()}
    rows = _read_csv(out)
    assert len(rows) == sum(len(t) for t in targets)
    _check_table(rows, emissions, targets, names)
    # JSON holds the same rows; the format follows the extension
    assert main(["align", demo_output["em"], demo_output["tr"], "--symbols",
                 demo_output["sy"], "-o", str(tmp_path / "t.json")]) == 0
    as_json = json.loads((tmp_path / "t.json").read_text())
    assert [dict(r, **{k: pytest.approx(r[k], abs=1e-6)
                       for k in ("score", "confidence", "onset_confidence")})
            for r in rows] == as_json
    # the blank by name gives the same table
    assert main(["align", demo_output["em"], demo_output["tr"], "--symbols",
                 demo_output["sy"], "--blank", "<blank>", "-o", str(tmp_path / "b.csv")]) == 0
    assert (tmp_path / "b.csv").read_text() == out.read_text()


def test_align_ids_single_utterance_lengths_and_segmentation(tmp_path, capsys):
    rng = np.random.default_rng(0)
    logits = rng.standard_normal((3, 10, 4))
    lp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    targets = [[1, 2, 2], [], [3]]
    np.save(tmp_path / "lp.npy", lp)
    (tmp_path / "ids.txt").write_text("1 2 2\n\n3\n")
    assert main(["align", str(tmp_path / "lp.npy"), str(tmp_path / "ids.txt")]) == 0
    printed = capsys.readouterr().out
    (tmp_path / "printed.csv").write_text(printed)
    _check_table(_read_csv(tmp_path / "printed.csv"), lp, targets)
    # lengths as text
    (tmp_path / "len.txt").write_text("7 3 10\n")
    out = tmp_path / "l.csv"
    assert main(["align", str(tmp_path / "lp.npy"), str(tmp_path / "ids.txt"), "--lengths",
                 str(tmp_path / "len.txt"), "-o", str(out)]) == 0
    _check_table(_read_csv(out), lp, targets, lengths=[7, 3, 10])
    # segmentation graph (every frame belongs to a symbol) and a (T, C) array
    np.save(tmp_path / "one.npy", lp[0])
    (tmp_path / "one.txt").write_text("2 1 3\n")
    out = tmp_path / "s.csv"
    assert main(["align", str(tmp_path / "one.npy"), str(tmp_path / "one.txt"), "--graph",
                 "segmentation", "-o", str(out)]) == 0
    rows = _read_csv(out)
    _check_table(rows, lp[:1], [[2, 1, 3]], graph="segmentation")
    assert rows[0]["start_frame"] == 0 and rows[-1]["end_frame"] == 10


def test_log_softmax_option_matches_normalised_input(tmp_path, capsys):
    logits = np.random.default_rng(1).standard_normal((2, 8, 3)) * 3
    lp = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    np.save(tmp_path / "a.npy", logits)
    np.save(tmp_path / "b.npy", lp)
    (tmp_path / "t.txt").write_text("1 2\n2 2 1\n")
    main(["align", str(tmp_path / "a.npy"), str(tmp_path / "t.txt"), "--log-softmax"])
    a = capsys.readouterr().out
    main(["align", str(tmp_path / "b.npy"), str(tmp_path / "t.txt")])
    assert a == capsys.readouterr().out


@pytest.fixture
def files(tmp_path):
    np.save(tmp_path / "e.npy", np.log(np.full((2, 5, 4), 0.25)))
    (tmp_path / "t.txt").write_text("1 2\n3\n")
    (tmp_path / "sym.txt").write_text("- 0\na 1\nb 2\nc 3\n")
    return tmp_path


def _fails(args, match, capsys):
    assert main(["align", *map(str, args)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("lattice align: error: ") and match in err, err


@pytest.mark.parametrize(
    "make, match",
    [
        (lambda d: [d / "e.npy", d / "t.txt", "--blank", "3"],
         "t.txt, line 2, position 1: symbol id 3 is the blank"),
        (lambda d: [d / "missing.npy", d / "t.txt"], "does not exist"),
        (lambda d: [d / "t.txt", d / "t.txt"], "is not a .npy file"),
        (lambda d: [d / "e.npy", d / "missing.txt"], "does not exist"),
        (lambda d: [d / "e.npy", d / "sym.txt"], "'-' is not a symbol id"),
        (lambda d: [d / "e.npy", d / "t.txt", "--symbols", d / "t.txt"], "expected `symbol id`"),
        (lambda d: [d / "e.npy", d / "t.txt", "--blank", "x"], "--blank 'x'"),
        (lambda d: [d / "e.npy", d / "t.txt", "--blank", "7"], "outside the 4 emission"),
        (lambda d: [d / "e.npy", d / "t.txt", "--graph", "segmentation", "--blank", "1"],
         "--blank: the 'segmentation' graph has no blank option"),
        (lambda d: [d / "e.npy", d / "t.txt", "--graph", "nope"], "no graph builder named"),
        (lambda d: [d / "e.npy", d / "t.txt", "--lengths", d / "t.txt"], "holds 3 lengths"),
        (lambda d: [d / "e.npy", d / "t.txt", "--lengths", d / "sym.txt"],
         "sym.txt, line 1, position 1: '-' is not a length"),
    ],
)
def test_align_errors(files, make, match, capsys):
    _fails(make(files), match, capsys)


def test_align_errors_on_content(files, capsys):
    d = files
    (d / "long.txt").write_text("1 1 2 2 3\n3\n")
    _fails([d / "e.npy", d / "long.txt"], "long.txt, line 1: its 5 symbols cannot be aligned "
           "to 5 frames (CTC needs at least 7", capsys)
    (d / "three.txt").write_text("1\n2\n3\n")
    _fails([d / "e.npy", d / "three.txt"], "three.txt' has 3 transcript lines, but", capsys)
    (d / "chars.txt").write_text("ab\nz\n")
    _fails([d / "e.npy", d / "chars.txt", "--symbols", d / "sym.txt"],
           "chars.txt, line 2, position 1: character 'z' (U+007A LATIN SMALL LETTER Z) is "
           "not in the symbol table", capsys)
    (d / "big.txt").write_text("1\n9\n")
    _fails([d / "e.npy", d / "big.txt"], "big.txt, line 2, position 1: symbol id 9 is outside "
           "the 4", capsys)
    np.save(d / "nan.npy", np.full((2, 5, 4), np.nan))
    _fails([d / "nan.npy", d / "t.txt"], "utterance 0, frame 0 holds NaN", capsys)
    np.save(d / "flat.npy", np.zeros(5))
    _fails([d / "flat.npy", d / "t.txt"], "shape (T, C) or (B, T, C)", capsys)
    np.save(d / "int.npy", np.zeros((2, 5, 4), dtype=int))
    _fails([d / "int.npy", d / "t.txt"], "floating point", capsys)
    np.savez(d / "z.npz", a=np.zeros((2, 5, 4)))
    _fails([d / "z.npz", d / "t.txt"], ".npz archive", capsys)
    np.save(d / "minf.npy", np.full((2, 5, 4), -np.inf))
    _fails([d / "minf.npy", d / "t.txt"], "no alignment with a finite score", capsys)
    (d / "dup.txt").write_text("a 1\nb 1\n")
    _fails([d / "e.npy", d / "t.txt", "--symbols", d / "dup.txt"], "id 1 is listed twice",
           capsys)
    _fails([d / "e.npy", d / "t.txt", "-o", d / "no" / "such" / "dir.csv"], "cannot write",
           capsys)


def test_forced_align_api_errors():
    e = np.zeros((2, 4, 3))
    with pytest.raises(ValueError, match="got 1 transcripts for 2 utterances"):
        forced_align(e, [[1]])
    with pytest.raises(AlignmentError, match="utterance 1"):
        forced_align(e, [[1], [1, 1, 1]])
    with pytest.raises(ValueError, match="symbols names 2 classes"):
        forced_align(e, [[1], [2]], symbols=["a", "b"])
    with pytest.raises(TypeError, match="real numbers"):
        forced_align(e.astype(str), [[1], [2]])
    with pytest.raises(ValueError, match="NaN"):
        forced_align(np.full((1, 2, 2), np.nan), [[1]])
    with pytest.raises(ValueError, match="split must be"):
        read_transcripts(os.devnull, {"a": 1}, split="words")


def test_torch_emissions_in_forced_align():
    torch = pytest.importorskip("torch")
    lp = torch.randn(1, 6, 3).log_softmax(-1)
    rows = forced_align(lp, [[1, 2]])
    ali = lattice.viterbi(lp.double().numpy(), [lattice.build("ctc", [1, 2])])
    assert [(r.token, r.start_frame, r.end_frame) for r in rows] == ali.segments(0)


def test_parser_has_every_subcommand_and_no_command_is_an_error(capsys):
    parser = build_parser()
    for name in SUBCOMMANDS:
        args = parser.parse_args([name, "a", "b"] if name == "align" else [name])
        assert args.command == name and callable(args._main)
    assert main([]) == 2
    assert "usage: lattice" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exc:
        main(["demo", "--epochs", "zero"])
    assert exc.value.code == 2


def test_demo_command_quiet_and_bad_values(tmp_path, capsys):
    pytest.importorskip("torch")
    args = ["demo", "--epochs", "1", "--steps", "2", "--batch-size", "2", "--eval-size", "2",
            "--hidden", "4", "--threads", "1", "--quiet", "--out", str(tmp_path / "d.png")]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert len(out) == 1 and out[0].startswith("done in") and "d.png" in out[0]
    assert (tmp_path / "d.png").exists()
    with pytest.raises(SystemExit, match="lattice demo: error: epochs must be a positive int"):
        main(["demo", "--epochs", "0"])
    # output problems are reported before training, as errors
    assert main(["demo", "--save-emissions", str(tmp_path / "no" / "e.npy")]) == 1
    assert "lattice demo: error: cannot write" in capsys.readouterr().err
    # an untrained model misses the --max-cer bar: status 1 and a message
    assert main(args + ["--out", "none", "--max-cer", "5"]) == 1
    assert "above --max-cer 5%" in capsys.readouterr().err


def test_demo_command_mmi(capsys):
    pytest.importorskip("torch")
    args = ["demo", "--epochs", "1", "--steps", "2", "--batch-size", "2", "--eval-size",
            "2", "--hidden", "4", "--threads", "1", "--out", "none", "--loss", "mmi",
            "--ctc-weight", "0.3", "--mmi-transcripts", "40"]
    assert main(args) == 0
    out = capsys.readouterr().out.splitlines()
    assert "MMI loss (+ 0.3 x CTC) against a bigram denominator of 40 transcripts" in out[0]
    assert out[1].startswith("epoch  1/1  train MMI loss") and out[-1].startswith("done in")
    with pytest.raises(SystemExit, match="lattice demo: error: ctc_weight must be"):
        main(args + ["--ctc-weight", "-1"])
    with pytest.raises(SystemExit, match="lattice demo: error: mmi_transcripts must be"):
        main(args + ["--mmi-transcripts", "0"])


def test_python_dash_m_lattice(files):
    # run outside the repository, so the installed package is imported
    env = dict(os.environ, PYTHONWARNINGS="ignore")
    help_ = subprocess.run([sys.executable, "-m", "lattice", "--help"], cwd=files,
                           capture_output=True, text=True, env=env, timeout=120)
    assert help_.returncode == 0 and "align" in help_.stdout and "demo" in help_.stdout
    (files / "chars.txt").write_text("ab\nc\n")
    done = subprocess.run([sys.executable, "-m", "lattice", "align", "e.npy", "chars.txt",
                           "--symbols", "sym.txt", "--format", "json"], cwd=files,
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    rows = json.loads(done.stdout)
    assert [(r["utterance"], r["symbol"]) for r in rows] == [(0, "a"), (0, "b"), (1, "c")]
    bad = subprocess.run([sys.executable, "-m", "lattice", "align", "e.npy", "nope.txt"],
                         cwd=files, capture_output=True, text=True, env=env, timeout=120)
    assert bad.returncode == 1 and "nope.txt" in bad.stderr
