"""The ``ctc_denominator`` builder: the CTC topology over a smoothed token n-gram.

The probabilities are checked against a direct computation of the n-gram (written
here from the formulas, independently of the plugin), through the graph itself:
every labelling of a few frames is followed along the graph (it must be exactly
one path) and its weight compared with the n-gram log-probability of the token
sequence it collapses to.
"""

import itertools
import math
from collections import defaultdict

import numpy as np
import pytest

import lattice
from reference import logsumexp

CORPUS = [[1, 2], [2, 2, 1], [1, 3, 2, 1], [3], []]


# ----------------------------------------------------------------------------------
# the n-gram, computed directly
# ----------------------------------------------------------------------------------


class DirectNGram:
    """P(w | h) by the interpolation formulas, from raw counts; ``"</s>"`` is the
    end, ``"<s>"`` the begin of sentence, histories are tuples of full length
    (``order - 1``, fewer at the start of a sentence)."""

    def __init__(self, corpus, num_tokens, blank=0, order=2, smoothing="witten_bell",
                 discount=0.5):
        self.outcomes = [c for c in range(num_tokens) if c != blank] + ["</s>"]
        self.order, self.smoothing, self.discount = order, smoothing, discount
        self.count = defaultdict(lambda: defaultdict(int))
        for sentence in corpus:
            words = ["<s>", *sentence, "</s>"]
            for i in range(1, len(words)):
                full = tuple(words[max(0, i - (order - 1)):i])
                for m in range(len(full) + 1):
                    self.count[full[len(full) - m:]][words[i]] += 1

    def history(self, sentence_prefix):
        words = ["<s>", *sentence_prefix]
        return tuple(words[max(0, len(words) - (self.order - 1)):]) if self.order > 1 \
            else ()

    def prob(self, w, h):
        if h and sum(self.count[h].values()) == 0:  # unseen: the lower order's
            return self.prob(w, h[1:])
        lower = self.prob(w, h[1:]) if h else 1 / len(self.outcomes)
        counts = self.count[h]
        total, distinct = sum(counts.values()), len(counts)
        if self.smoothing == "witten_bell":
            return (counts.get(w, 0) + distinct * lower) / (total + distinct)
        d = self.discount
        return (max(counts.get(w, 0) - d, 0) + d * distinct * lower) / total

    def log_prob(self, sentence):
        total = 0.0
        for i, w in enumerate([*sentence, "</s>"]):
            total += math.log(self.prob(w, self.history(sentence[:i])))
        return total


def collapse(labelling, blank=0):
    out, previous = [], None
    for c in labelling:
        if c != blank and c != previous:
            out.append(c)
        previous = c
    return out


def walk(graph, labelling):
    """The weight of the path emitting ``labelling``; asserts there is exactly one."""
    labels = graph.labels
    starts = np.flatnonzero((graph.start > -np.inf) & (labels == labelling[0]))
    assert len(starts) == 1, (labelling, starts)
    state = int(starts[0])
    score = float(graph.start[state])
    for c in labelling[1:]:
        arcs = np.flatnonzero((graph.src == state) & (labels[graph.dst] == c))
        assert len(arcs) == 1, (labelling, state, arcs)
        score += float(graph.weight[arcs[0]])
        state = int(graph.dst[arcs[0]])
    return score + float(graph.final[state])


def build(corpus=CORPUS, num_tokens=4, **options):
    return lattice.build("ctc_denominator", corpus, num_tokens=num_tokens, **options)


# ----------------------------------------------------------------------------------
# probabilities
# ----------------------------------------------------------------------------------


OPTIONS = [dict(order=1), dict(order=2), dict(order=3), dict(order=4),
           dict(order=2, smoothing="absolute"), dict(order=3, smoothing="absolute",
                                                     discount=0.8),
           dict(order=2, smoothing="absolute", discount=1.0)]


@pytest.mark.parametrize("options", OPTIONS)
def test_every_labelling_is_one_path_weighted_by_the_ngram(options):
    """Every labelling of up to 5 frames (blank included, 4 classes; token 4 never
    seen in the corpus) is exactly one path, of the n-gram log-probability of its
    collapsed sequence."""
    ref = DirectNGram(CORPUS, 5, **options)
    g = build(num_tokens=5, **options)
    for frames in range(1, 6):
        for labelling in itertools.product(range(5), repeat=frames):
            expected = ref.log_prob(collapse(labelling))
            assert walk(g, labelling) == pytest.approx(expected, abs=1e-12), labelling


@pytest.mark.parametrize("options", OPTIONS)
def test_the_training_transcripts_and_unseen_sequences(options):
    """Longer sequences: the transcripts themselves, and sequences through unseen
    histories (the longest seen suffix stands for them) and unseen tokens."""
    ref = DirectNGram(CORPUS, 6, **options)
    g = build(num_tokens=6, **options)
    for sentence in CORPUS + [[3, 1, 2, 2, 3, 3, 1], [5, 5, 4, 1, 5], [2, 1, 3, 1, 3]]:
        labelling = []
        for c in sentence:  # one frame per token, a blank between repeats
            if labelling and labelling[-1] == c:
                labelling.append(0)
            labelling.append(c)
        expected = ref.log_prob(sentence)
        assert walk(g, labelling or [0]) == pytest.approx(expected, abs=1e-12)
        # more frames, and leading / trailing blanks: the same weight
        stretched = [0] + [c for c in labelling for _ in range(2)] + [0, 0]
        assert walk(g, stretched) == pytest.approx(expected, abs=1e-12)


def test_hand_computed_probabilities():
    """Bigram of [[1, 2], [2, 2, 1]] over 2 tokens + end (uniform 1/3 below the
    unigram). Unigram counts 1: 2, 2: 3, </s>: 2 (7, 3 distinct)."""
    g = build([[1, 2], [2, 2, 1]], num_tokens=3)
    first = (g.src == 0) & (g.dst != 0)  # state 0: the blank state of <s>
    # Witten-Bell: P(w) = (c + 3 / 3) / 10; P(w | <s>) = (c(<s> w) + 2 P(w)) / 4
    np.testing.assert_allclose(np.exp(g.weight[first]), [1.6 / 4, 1.8 / 4])
    assert np.exp(g.final[0]) == pytest.approx(0.6 / 4)
    # absolute, D = 0.5: P(w) = (c - 0.5 + 0.5 * 3 / 3) / 7 = c / 7, and
    # P(w | <s>) = (c(<s> w) - 0.5 + 0.5 * 2 P(w)) / 2
    g = build([[1, 2], [2, 2, 1]], num_tokens=3, smoothing="absolute")
    np.testing.assert_allclose(np.exp(g.weight[first]),
                               [(0.5 + 2 / 7) / 2, (0.5 + 3 / 7) / 2])
    assert np.exp(g.final[0]) == pytest.approx((2 / 7) / 2)


@pytest.mark.parametrize("options", OPTIONS)
def test_each_history_sums_to_one(options):
    """Out of every blank state: the arcs into the tokens and the final weight (the
    end) are one distribution; a token state has the same arcs but into its own
    token, which it reaches through its blank. The start weights are the
    distribution after <s> (with the blank state of <s> standing for the end)."""
    g = build(num_tokens=6, **options)
    blank_states = np.flatnonzero(g.labels == 0)
    token_states = np.flatnonzero(g.labels != 0)
    assert len(blank_states) and len(token_states)
    p = np.exp(g.weight)
    for s in blank_states:
        out = (g.src == s) & (g.dst != s)
        assert out.sum() == 5  # every token
        assert p[out].sum() + np.exp(g.final[s]) == pytest.approx(1.0, abs=1e-12)
    for s in token_states:
        others = (g.src == s) & (g.dst != s) & (g.labels[g.dst] != 0)
        (to_blank,) = np.flatnonzero((g.src == s) & (g.labels[g.dst] == 0))
        assert g.weight[to_blank] == 0.0
        b = g.dst[to_blank]
        own = (g.src == b) & (g.labels[g.dst] == g.labels[s])
        assert others.sum() == 4 and own.sum() == 1
        assert g.final[s] == g.final[b]
        total = p[others].sum() + p[own].sum() + np.exp(g.final[s])
        assert total == pytest.approx(1.0, abs=1e-12)
    start = g.start > -np.inf
    assert start.sum() == 6 and g.start[g.labels == 0].max() == 0.0
    first = np.flatnonzero(start & (g.labels == 0))[0]
    total = np.exp(g.start[start & (g.labels != 0)]).sum() + np.exp(g.final[first])
    assert total == pytest.approx(1.0, abs=1e-12)


def test_the_direct_ngram_sums_to_one():
    """The reference itself: over the tokens and the end, for seen, unseen and
    partial histories."""
    for options in OPTIONS:
        ref = DirectNGram(CORPUS, 6, **options)
        for h in [(), ("<s>",), (1,), (2, 2), (5,), (4, 5, 1), ("<s>", 3), (3, 3)]:
            h = h[len(h) - (ref.order - 1):] if ref.order > 1 else ()
            assert math.fsum(ref.prob(w, h) for w in ref.outcomes) == pytest.approx(1)


def test_unseen_tokens_get_probability_and_states():
    g = build([[1, 1, 2]], num_tokens=5)  # 3 and 4 never occur
    assert set(g.labels.tolist()) == {0, 1, 2, 3, 4}
    assert np.isfinite(g.weight).all() and np.isfinite(g.final).all()
    ref = DirectNGram([[1, 1, 2]], 5)
    assert walk(g, [3, 0, 3, 4]) == pytest.approx(ref.log_prob([3, 3, 4]))
    # an unseen token's state backs off to the unigram: the same weights after 3 or 4
    s3, s4 = (int(np.flatnonzero((g.labels == c) & (g.start > -np.inf))[0]) for c in (3, 4))
    to1 = [g.weight[(g.src == s) & (g.labels[g.dst] == 1)][0] for s in (s3, s4)]
    assert to1[0] == to1[1] == pytest.approx(math.log(ref.prob(1, ())))


def test_blank_elsewhere_than_zero():
    g = build([[0, 1], [3, 0]], num_tokens=4, blank=2)
    assert (g.labels == 2).sum() > 0 and (g.tokens[g.labels == 2] == -1).all()
    ref = DirectNGram([[0, 1], [3, 0]], 4, blank=2)
    assert walk(g, [0, 2, 0, 1, 1]) == pytest.approx(ref.log_prob([0, 0, 1]))


def test_forward_equals_the_sum_over_labellings():
    """log Z of random emissions: logsumexp over every labelling of its emission
    score plus the n-gram log-probability of what it collapses to."""
    rng = np.random.default_rng(0)
    ref = DirectNGram(CORPUS, 4, order=3)
    g = build(order=3)
    em = rng.normal(size=(2, 4, 4))
    z = lattice.forward(em, g, lengths=[4, 3])
    for b, frames in enumerate((4, 3)):
        expected = logsumexp(
            sum(em[b, t, c] for t, c in enumerate(lab)) + ref.log_prob(collapse(lab))
            for lab in itertools.product(range(4), repeat=frames))
        assert z[b] == pytest.approx(expected, abs=1e-10)


def test_viterbi_segments_are_the_tokens():
    g = build()
    labelling = [1, 1, 0, 1, 2, 2, 0, 0, 3]
    em = np.full((1, len(labelling), 4), -30.0)
    em[0, np.arange(len(labelling)), labelling] = 0.0
    ali = lattice.viterbi(em, g)
    assert ali.labels[0].tolist() == labelling
    k = int(ali.num_segments[0])
    assert ali.tokens[0, :k].tolist() == [1, 1, 2, 3]
    assert ali.starts[0, :k].tolist() == [0, 3, 4, 8]
    assert ali.ends[0, :k].tolist() == [2, 4, 6, 9]


# ----------------------------------------------------------------------------------
# size
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3])
def test_size_does_not_grow_with_the_utterances(order):
    """The same histories from 5 or 5,000 utterances: the same graph size; more
    distinct histories (longer, varied utterances) add states, never per utterance."""
    rng = np.random.default_rng(1)
    few = build(CORPUS, num_tokens=6, order=order)
    many = build(CORPUS * 1000, num_tokens=6, order=order)
    assert (few.num_states, few.num_arcs) == (many.num_states, many.num_arcs)
    assert few.num_arcs == few.num_states * 6  # S (V + 1)
    corpus = [rng.integers(1, 6, size=rng.integers(0, 12)).tolist() for _ in range(3000)]
    big = build(corpus, num_tokens=6, order=order)
    bigger = build(corpus * 3 + corpus[:100], num_tokens=6, order=order)
    assert (big.num_states, big.num_arcs) == (bigger.num_states, bigger.num_arcs)
    # at most one token and one blank state per n-gram history (5 tokens, <s>)
    histories = sum(6 ** m for m in range(order))  # (<s> or a token) then tokens
    assert big.num_states <= 2 * histories + 5
    assert big.num_arcs == big.num_states * 6


def test_size_formulas():
    """Unigram: V + 1 states; bigram over every token: 2 V + 1; arcs S (V + 1)."""
    v = 7
    corpus = [list(range(1, v + 1))]
    uni, bi = (build(corpus, num_tokens=v + 1, order=n) for n in (1, 2))
    assert (uni.num_states, uni.num_arcs) == (v + 1, (v + 1) ** 2)
    assert (bi.num_states, bi.num_arcs) == (2 * v + 1, (2 * v + 1) * (v + 1))
    # two tokens unseen: each gets a token state of the empty history, which gets
    # a blank state of its own
    part = build([[1, 2, 3, 4, 5]], num_tokens=v + 1, order=2)
    assert part.num_states == (1 + 5 + 1) + (5 + 2)


# ----------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("transcripts, options, exc, match", [
    ([], {}, ValueError, "transcripts must hold at least one transcript"),
    ("12", {}, TypeError, "transcripts must be a sequence of token sequences"),
    (5, {}, TypeError, "transcripts must be a sequence of token sequences"),
    ([[1, 2], [1, 4]], {}, ValueError,
     r"transcripts\[1\] holds the id 4 at position 1: beyond num_tokens - 1 = 3"),
    ([[1, 0]], {}, ValueError, r"transcripts\[0\] holds the id 0 at position 1: the blank"),
    ([[2], [3, 1, 2]], {"blank": 1}, ValueError, r"transcripts\[1\] .* the blank"),
    ([[1, -1]], {}, ValueError, r"transcripts\[0\] holds a negative symbol id -1"),
    ([[[1]]], {}, ValueError, r"transcripts\[0\] must be a 1-D sequence"),
    ([[1.5]], {}, TypeError, r"transcripts\[0\] must hold integer"),
    ([[1]], {"order": 0}, ValueError, "order must be >= 1"),
    ([[1]], {"order": 1.5}, TypeError, "order must be an int"),
    ([[1]], {"order": True}, TypeError, "order must be an int"),
    ([[1]], {"num_tokens": 1}, ValueError, "num_tokens must be >= 2"),
    ([[1]], {"num_tokens": "4"}, TypeError, "num_tokens must be an int"),
    ([[1]], {"blank": 4}, ValueError, r"blank \(4\) must be < num_tokens \(4\)"),
    ([[1]], {"blank": -1}, ValueError, "blank must be >= 0"),
    ([[1]], {"smoothing": "kneser_ney"}, ValueError, "smoothing must be one of"),
    ([[1]], {"discount": 0.0}, ValueError, r"discount must lie in \(0, 1\]"),
    ([[1]], {"discount": 1.5}, ValueError, r"discount must lie in \(0, 1\]"),
    ([[1]], {"discount": "0.5"}, TypeError, "discount must be a real number"),
])
def test_bad_input(transcripts, options, exc, match):
    options = {"num_tokens": 4, **options}
    with pytest.raises(exc, match=match):
        lattice.build("ctc_denominator", transcripts, **options)


def test_num_tokens_is_required():
    with pytest.raises(TypeError, match="num_tokens"):
        lattice.build("ctc_denominator", [[1]])


def test_registered_through_the_entry_point():
    assert "ctc_denominator" in lattice.available_graphs()
    assert (lattice.registry.registered()["ctc_denominator"]
            == "lattice_plugins.denominator:ctc_denominator")
