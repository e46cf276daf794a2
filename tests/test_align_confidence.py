"""The confidence of a forced alignment (issue 17, item 5).

Every row of :func:`lattice.align.forced_align` carries ``confidence`` (the mean, over
its Viterbi frames, of the posterior probability that the frame lies in the token) and
``onset_confidence`` (the posterior probability that the token starts within one frame
of its Viterbi start). Checked against the enumeration of every path
(``tests/reference.py``), on clean alignments (near 1) and on transcripts with a
substituted symbol (the substitute is the least sure).
"""

import csv
import io
import json
import math

import numpy as np
import pytest

import lattice
import lattice.align as align
from lattice.align import (
    DEFAULT_WILDCARD_PENALTY,
    AlignedToken,
    AlignmentError,
    append_wildcard,
    forced_align,
    write_table,
)
from lattice.cli import main

from reference import brute_force, segments_of

BLANK = 0


def _reference_rows(graph, emissions, length, target):
    """(token, start, end, confidence, onset_confidence) from every path of the graph."""
    ref = brute_force(graph, emissions, length)
    tokens = [int(k) for k in graph.tokens]
    size = max(tokens, default=-1) + 1
    occupancy = np.zeros((length, size))
    onsets = np.zeros((length, size))
    for path in ref.paths:
        if path.score == -math.inf:
            continue
        weight = math.exp(path.score - ref.log_z)
        for t, s in enumerate(path.states):
            k = tokens[s]
            if k < 0:
                continue
            occupancy[t, k] += weight
            if t == 0 or tokens[path.states[t - 1]] != k:
                onsets[t, k] += weight
    rows = []
    for k, start, end in segments_of(graph.tokens, ref.best_path.states):
        window = onsets[max(start - 1, 0):min(start + 2, length), k]
        rows.append((k, start, end, occupancy[start:end, k].mean(), window.sum()))
    return rows


def _emissions(rng, shape, concentration=0.5):
    return np.log(rng.dirichlet(np.ones(shape[-1]) * concentration, size=shape[:-1]))


@pytest.mark.parametrize("graph, options", [
    ("ctc", {}),
    ("ctc", {"between": "required"}),
    ("segmentation", {}),
    ("hmm", {"states": 2, "stay": -0.3, "advance": -1.2}),
    ("star", {"blank": 0, "wildcard_column": "logsumexp"}),
])
def test_confidences_equal_the_enumeration_of_every_path(graph, options):
    rng = np.random.default_rng(11)
    # a repeated symbol only where a blank separates the two (no tie between paths)
    targets = [[1, 2], [3, 3] if graph == "ctc" else [3, 1], [2], [1, 3, 2]]
    lengths = [5, 6, 3, 6]
    lp = _emissions(rng, (len(targets), 6, 4))
    rows = forced_align(lp, targets, lengths, graph, **options)
    options = dict(options)
    if options.pop("wildcard_column", None):
        lp = append_wildcard(lp, blank=0)
        options.update(wildcard=4, penalty=DEFAULT_WILDCARD_PENALTY)
    expected = []
    for b, target in enumerate(targets):
        g = lattice.build(graph, target, **options)
        expected += [(b, *row) for row in _reference_rows(g, lp[b], lengths[b], target)]
    got = [(r.utterance, r.token, r.start_frame, r.end_frame, r.confidence,
            r.onset_confidence) for r in rows]
    assert [row[:4] for row in got] == [row[:4] for row in expected]
    np.testing.assert_allclose([row[4:] for row in got], [row[4:] for row in expected],
                               rtol=1e-9, atol=1e-12)
    # float32 emissions: the same confidences, to float32 rounding
    rows32 = forced_align(lp[..., :4].astype(np.float32), targets, lengths, graph,
                          **({"blank": 0, "wildcard_column": "logsumexp"}
                             if graph == "star" else options))
    np.testing.assert_allclose([(r.confidence, r.onset_confidence) for r in rows32],
                               [row[4:] for row in got], atol=2e-5)


def _synthetic(labels, classes=8, peak=0.9, seed=0):
    """Log-probabilities peaked (``peak``) on a known frame labelling, the rest of the
    mass spread at random over the other classes."""
    rng = np.random.default_rng(seed)
    frames = len(labels)
    rest = rng.dirichlet(np.ones(classes - 1) * 20, size=frames) * (1 - peak)
    probs = np.empty((frames, classes))
    for t, label in enumerate(labels):
        probs[t, label] = peak
        probs[t, np.arange(classes) != label] = rest[t]
    return np.log(probs)


def _labelling(words, width=3, gap=2):
    """Blank gaps around runs of ``width`` frames per word: the true frame labels."""
    labels = [BLANK] * gap
    for w in words:
        labels += [w] * width + [BLANK] * gap
    return labels


WORDS = [1, 2, 3, 4, 5, 6]


def test_a_clean_peaked_alignment_is_confident():
    lp = _synthetic(_labelling(WORDS))
    rows = forced_align(lp, [WORDS])
    assert [(r.start_frame, r.end_frame) for r in rows] == [(2 + 5 * i, 5 + 5 * i)
                                                           for i in range(len(WORDS))]
    for r in rows:
        assert r.confidence > 0.95, r
        assert r.onset_confidence > 0.99, r
    # the sharper the scores, the closer to 1
    sharp = forced_align(_synthetic(_labelling(WORDS), peak=0.999), [WORDS])
    assert min(r.confidence for r in sharp) > 0.999
    assert min(r.onset_confidence for r in sharp) > 0.999


@pytest.mark.parametrize("seed", range(4))
@pytest.mark.parametrize("position", range(len(WORDS)))
def test_a_substituted_word_is_the_least_confident(position, seed):
    lp = _synthetic(_labelling(WORDS), seed=seed)
    wrong = list(WORDS)
    wrong[position] = 7  # a class the frames never show
    clean = forced_align(lp, [WORDS])
    rows = forced_align(lp, [wrong])
    bad = rows[position]
    others = [r for r in rows if r.token != position]
    assert bad.confidence < 0.85, bad
    assert bad.confidence < min(r.confidence for r in others) - 0.1, rows
    assert bad.confidence < clean[position].confidence - 0.15
    assert bad.onset_confidence <= clean[position].onset_confidence
    # the ranking finds it
    assert min(rows, key=lambda r: r.confidence).token == position


def test_confidences_are_probabilities_and_columns_of_the_table(tmp_path, capsys):
    rng = np.random.default_rng(5)
    lp = _emissions(rng, (3, 9, 5))
    targets = [[1, 2, 2], [4], [3, 1]]
    rows = forced_align(lp, targets, [9, 4, 7])
    for r in rows:
        assert 0 <= r.confidence <= 1 and 0 <= r.onset_confidence <= 1
    buf = io.StringIO()
    write_table(rows, buf)
    table = list(csv.DictReader(io.StringIO(buf.getvalue())))
    assert list(table[0]) == list(AlignedToken._fields)
    for r, line in zip(rows, table):
        assert float(line["confidence"]) == pytest.approx(r.confidence, abs=1e-6)
        assert float(line["onset_confidence"]) == pytest.approx(r.onset_confidence,
                                                                abs=1e-6)
    buf = io.StringIO()
    write_table(rows, buf, "json")
    objects = json.loads(buf.getvalue())
    assert [o["confidence"] for o in objects] == pytest.approx(
        [r.confidence for r in rows], abs=1e-6)
    # the command writes the same numbers
    np.save(tmp_path / "e.npy", lp)
    (tmp_path / "t.txt").write_text("1 2 2\n4\n3 1\n")
    (tmp_path / "len.txt").write_text("9 4 7\n")
    assert main(["align", str(tmp_path / "e.npy"), str(tmp_path / "t.txt"), "--lengths",
                 str(tmp_path / "len.txt"), "--format", "json"]) == 0
    printed = json.loads(capsys.readouterr().out)
    assert printed == objects
    # rows made by hand, without confidences: empty CSV fields, JSON null
    hand = [AlignedToken(0, 0, "a", 1, 0, 2, -0.5)]
    assert hand[0].confidence is None and hand[0].onset_confidence is None
    buf = io.StringIO()
    write_table(hand, buf)
    assert buf.getvalue().splitlines()[1] == "0,0,a,1,0,2,-0.5,,"
    buf = io.StringIO()
    write_table(hand, buf, "json")
    assert json.loads(buf.getvalue())[0]["onset_confidence"] is None


def test_one_token_posteriors_call_on_the_viterbi_problem(monkeypatch):
    calls = []
    real = align.token_posteriors

    def spy(*args, **kwargs):
        calls.append((args, kwargs))
        return real(*args, **kwargs)

    monkeypatch.setattr(align, "token_posteriors", spy)
    lp = _emissions(np.random.default_rng(2), (2, 7, 4))
    forced_align(lp, [[1, 2], [3]], [7, 5])
    assert len(calls) == 1
    (emissions, graphs, lengths), kwargs = calls[0]
    assert emissions.shape == (2, 7, 4) and len(graphs) == 2 and list(lengths) == [7, 5]
    assert kwargs == {"onsets": True}
    # a transcript that cannot fit fails as before, without the posteriors
    calls.clear()
    with pytest.raises(AlignmentError, match="utterance 1: its 3 symbols cannot be"):
        forced_align(lp, [[1, 2], [3, 3, 3]], [7, 4])
    assert calls == []
    # empty transcripts: no rows, no tokens
    assert forced_align(lp, [[], []]) == []


def test_confidence_false_skips_the_posterior_pass(monkeypatch):
    align_module = align
    e = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]]))
    with_conf = align_module.forced_align(e, [[1, 2]])
    calls = []
    monkeypatch.setattr(align_module, "token_posteriors",
                        lambda *a, **k: calls.append(1))
    rows = align_module.forced_align(e, [[1, 2]], confidence=False)
    assert not calls
    assert [r.confidence for r in rows] == [None, None]
    assert [r.onset_confidence for r in rows] == [None, None]
    assert [r[:7] for r in rows] == [r[:7] for r in with_conf]


def test_cli_no_confidence_leaves_the_columns_empty(tmp_path):
    import subprocess
    import sys

    e = np.log(np.array([[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]))
    np.save(tmp_path / "e.npy", e)
    (tmp_path / "t.txt").write_text("1 2\n")
    out = subprocess.run([sys.executable, "-m", "lattice", "align", "e.npy", "t.txt",
                          "--no-confidence"], cwd=tmp_path, capture_output=True,
                         text=True, check=True).stdout
    rows = list(csv.DictReader(out.splitlines()))
    assert [r["confidence"] for r in rows] == ["", ""]
    assert [r["onset_confidence"] for r in rows] == ["", ""]


def test_confidences_do_not_depend_on_how_utterances_are_grouped(monkeypatch):
    rng = np.random.default_rng(11)
    e = np.log(rng.dirichlet(np.ones(6), size=(7, 30)))
    targets = [list(rng.integers(1, 6, size=rng.integers(1, 8))) for _ in range(7)]
    lengths = [30, 25, 30, 18, 29, 30, 22]
    whole = align.forced_align(e, targets, lengths)
    calls = []
    real = align.token_posteriors

    def counted(*args, **kwargs):
        calls.append(len(args[1]))
        return real(*args, **kwargs)

    monkeypatch.setattr(align, "token_posteriors", counted)
    monkeypatch.setattr(align, "CONFIDENCE_CHUNK_BYTES", 1)  # one utterance a call
    one_by_one = align.forced_align(e, targets, lengths)
    assert calls == [1] * 7
    assert one_by_one == whole
    calls.clear()
    monkeypatch.setattr(align, "CONFIDENCE_CHUNK_BYTES", 2 * 8 * 30 * 7 * 3)
    grouped = align.forced_align(e, targets, lengths)
    assert len(calls) > 1 and sum(calls) == 7
    assert grouped == whole
