"""Decoding against exhaustive search over every label sequence on tiny inputs."""

import itertools

import numpy as np
import pytest

import lattice
from lattice.decode import (
    Hypothesis,
    ctc_beam_search,
    ctc_greedy,
    edit_distance,
    error_rate,
    segmentation_greedy,
)


def _log_probs(rng, frames, classes, sharp=1.0):
    logits = rng.standard_normal((frames, classes)) * sharp
    return logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)


def _exhaustive(lp, blank):
    """Exact CTC log-probability of every label sequence that fits, from the engine."""
    frames, classes = lp.shape
    symbols = [c for c in range(classes) if c != blank]
    seqs = [
        list(s)
        for k in range(frames + 1)
        for s in itertools.product(symbols, repeat=k)
        if k + sum(a == b for a, b in zip(s, s[1:])) <= frames
    ]
    graphs = [lattice.build("ctc", s, blank=blank) for s in seqs]
    scores = lattice.forward(np.repeat(lp[None], len(seqs), axis=0), graphs)
    return seqs, scores


def _collapse(path, blank):
    out = []
    for i, c in enumerate(path):
        if c != blank and (i == 0 or path[i - 1] != c):
            out.append(int(c))
    return out


@pytest.mark.parametrize("seed", range(25))
@pytest.mark.parametrize("blank", [0, 2])
def test_beam_search_with_a_wide_beam_is_exact(seed, blank):
    rng = np.random.default_rng(seed)
    frames = int(rng.integers(1, 5))
    lp = _log_probs(rng, frames, 3, sharp=2.0)
    seqs, exact = _exhaustive(lp, blank)
    hyps = ctc_beam_search(lp, beam_width=64, blank=blank, nbest=5)
    order = np.argsort(-exact, kind="stable")
    assert hyps[0].tokens == seqs[order[0]]
    # every hypothesis carries its exact probability, and the n best are the n best
    lookup = {tuple(s): v for s, v in zip(seqs, exact)}
    for h in hyps:
        assert h.log_prob == pytest.approx(lookup[tuple(h.tokens)], abs=1e-9)
        assert h.score == h.log_prob
    n = len(hyps)
    np.testing.assert_allclose([h.log_prob for h in hyps], exact[order[:n]], atol=1e-9)
    # the probabilities of all sequences sum to one
    assert np.logaddexp.reduce(exact) == pytest.approx(0.0, abs=1e-9)


@pytest.mark.parametrize("seed", range(15))
def test_length_norm_and_blank_penalty_rank_like_the_exhaustive_search(seed):
    rng = np.random.default_rng(100 + seed)
    frames = int(rng.integers(2, 5))
    lp = _log_probs(rng, frames, 3, sharp=2.0)
    penalty = float(rng.uniform(-1, 1))
    alpha = float(rng.uniform(0, 1.5))
    shifted = lp.copy()
    shifted[:, 0] -= penalty
    seqs, exact = _exhaustive(shifted, 0)
    ranked = exact / np.maximum([len(s) for s in seqs], 1) ** alpha
    best = int(np.argmax(ranked))
    (h,) = ctc_beam_search(lp, beam_width=64, length_norm=alpha, blank_penalty=penalty)
    assert h.tokens == seqs[best]
    assert h.score == pytest.approx(ranked[best], abs=1e-9)
    assert h.log_prob == pytest.approx(exact[best], abs=1e-9)


def test_narrow_beam_finds_a_valid_lower_bound():
    rng = np.random.default_rng(7)
    lp = _log_probs(rng, 4, 4)
    seqs, exact = _exhaustive(lp, 0)
    lookup = {tuple(s): v for s, v in zip(seqs, exact)}
    for width in (1, 2, 3):
        hyps = ctc_beam_search(lp, beam_width=width, nbest=width)
        assert 1 <= len(hyps) <= width
        for h in hyps:
            assert h.log_prob <= lookup[tuple(h.tokens)] + 1e-9


def test_beam_search_beats_greedy_where_alignments_add_up():
    lp = np.log(np.array([[0.5, 0.3, 0.2]] * 2))
    assert ctc_greedy(lp) == []
    assert ctc_beam_search(lp, beam_width=4)[0].tokens == [1]


def test_beam_search_batched_lengths_and_torch():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(3)
    lp = np.stack([_log_probs(rng, 5, 4) for _ in range(3)])
    lengths = [5, 3, 0]
    out = ctc_beam_search(lp, lengths=lengths, beam_width=32, nbest=2)
    assert len(out) == 3
    for b, n in enumerate(lengths[:2]):
        seqs, exact = _exhaustive(lp[b, :n], 0)
        assert out[b][0].tokens == seqs[int(np.argmax(exact))]
    assert out[2] == [Hypothesis([], 0.0, 0.0)]
    t_out = ctc_beam_search(torch.from_numpy(lp).float(), lengths=torch.tensor(lengths),
                            beam_width=32, nbest=2)
    assert [[h.tokens for h in hs] for hs in t_out] == [[h.tokens for h in hs] for hs in out]


def test_beam_search_impossible_frames():
    lp = np.full((2, 3), -np.inf)
    assert ctc_beam_search(lp) == []


@pytest.mark.parametrize("seed", range(20))
def test_greedy_is_the_collapsed_best_path(seed):
    rng = np.random.default_rng(seed)
    lp = np.stack([_log_probs(rng, 8, 4, sharp=3.0) for _ in range(4)])
    lengths = rng.integers(0, 9, size=4)
    blank = int(rng.integers(0, 4))
    out = ctc_greedy(lp, lengths=lengths, blank=blank)
    for b in range(4):
        path = lp[b, : lengths[b]].argmax(-1)
        assert out[b] == _collapse(path, blank)
        # and it is the labelling of the single best CTC path: the Viterbi score of
        # its graph equals the best frame-wise score when it is non-empty
        if lengths[b]:
            best = lp[b, : lengths[b]].max(-1).sum()
            g = lattice.build("ctc", out[b], blank=blank)
            v = lattice.viterbi(lp[b : b + 1, : lengths[b]], [g])
            assert v.score[0] == pytest.approx(best)


def test_greedy_blank_penalty_and_torch():
    torch = pytest.importorskip("torch")
    lp = np.log(np.array([[0.6, 0.4, 0.0 + 1e-9], [0.6, 0.0 + 1e-9, 0.4]]))
    assert ctc_greedy(lp) == []
    assert ctc_greedy(lp, blank_penalty=1.0) == [1, 2]
    assert ctc_greedy(torch.from_numpy(lp).to(torch.bfloat16), blank_penalty=1.0) == [1, 2]
    assert ctc_greedy(torch.from_numpy(lp)[None]) == [[]]


def test_segmentation_greedy_matches_an_unconstrained_best_path():
    rng = np.random.default_rng(0)
    lp = np.stack([_log_probs(rng, 10, 3, sharp=2.0) for _ in range(3)])
    lengths = [10, 4, 0]
    symbols = segmentation_greedy(lp, lengths=lengths)
    segments = segmentation_greedy(lp, lengths=lengths, return_segments=True)
    assert symbols[2] == [] and segments[2] == []
    for b in range(2):
        n = lengths[b]
        assert [s for s, _, _ in segments[b]] == symbols[b]
        # segments tile the frames, and the segmentation graph of the decoded symbols
        # scores exactly the best frame-wise path
        assert segments[b][0][1] == 0 and segments[b][-1][2] == n
        assert all(a[2] == c[1] for a, c in zip(segments[b], segments[b][1:]))
        g = lattice.build("segmentation", symbols[b])
        ali = lattice.viterbi(lp[b : b + 1, :n], [g])
        assert ali.score[0] == pytest.approx(lp[b, :n].max(-1).sum())
        assert ali.segments(0) == [(k, s, e) for k, (_, s, e) in enumerate(segments[b])]


def test_edit_distance_and_error_rate():
    assert edit_distance([], [1, 2]) == 2
    assert edit_distance([1, 2], []) == 2
    assert edit_distance([1, 2, 3], [1, 2, 3]) == 0
    assert edit_distance([1, 2, 3], [3, 2, 1]) == 2
    assert error_rate([[1], []], [[1, 2], [3]]) == pytest.approx(2 / 3)
    assert error_rate([[]], [[]]) == 0.0
    with pytest.raises(ValueError, match="2 hypotheses for 1 references"):
        error_rate([[1], [2]], [[1]])
    with pytest.raises(ValueError, match="undefined"):
        error_rate([[1]], [[]])


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda e: ctc_greedy(e, blank=3), ValueError, "blank must lie in"),
        (lambda e: ctc_greedy(e, blank=1.0), TypeError, "blank must be an int"),
        (lambda e: ctc_greedy(e[0, 0]), ValueError, r"shape \(B, T, C\) or \(T, C\)"),
        (lambda e: ctc_greedy(e.astype(complex)), TypeError, "real numbers"),
        (lambda e: ctc_greedy(np.where(e > -1, np.nan, e)), ValueError, "NaN"),
        (lambda e: ctc_greedy(e, lengths=[9, 1]), ValueError, r"lengths must lie in"),
        (lambda e: ctc_greedy(e, lengths=[1]), ValueError, r"lengths must have shape"),
        (lambda e: ctc_greedy(e, lengths=[1.0, 2.0]), TypeError, "lengths must hold int"),
        (lambda e: ctc_greedy(e, blank_penalty=np.inf), ValueError, "blank_penalty must be finite"),
        (lambda e: ctc_greedy(e[..., :0]), ValueError, "at least one class"),
        (lambda e: ctc_beam_search(e, beam_width=0), ValueError, "beam_width must be >= 1"),
        (lambda e: ctc_beam_search(e, beam_width=2.5), TypeError, "beam_width must be an int"),
        (lambda e: ctc_beam_search(e, nbest=0), ValueError, "nbest must be >= 1"),
        (lambda e: ctc_beam_search(e, beam_width=2, nbest=3), ValueError, "nbest"),
        (lambda e: ctc_beam_search(e, length_norm=-1), ValueError, "length_norm must be >= 0"),
        (lambda e: ctc_beam_search(e, length_norm="1"), TypeError, "length_norm must be a real"),
        (lambda e: ctc_beam_search(np.where(e > -1, np.inf, e)), ValueError, r"\+inf"),
        (lambda e: segmentation_greedy(e, lengths=[-1, 2]), ValueError, "lengths must lie"),
    ],
)
def test_bad_inputs_raise_clear_errors(call, error, match):
    e = _log_probs(np.random.default_rng(0), 6, 3)[None].repeat(2, axis=0)
    with pytest.raises(error, match=match):
        call(e)
