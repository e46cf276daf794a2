"""The built-in builders ``ctc`` and ``segmentation``: structure, semantics, validation."""

import itertools
import math

import numpy as np
import pytest

import lattice

NEG = -np.inf


# --------------------------------------------------------------------------------
# brute force helpers
# --------------------------------------------------------------------------------


def enumerate_paths(g, T):
    """Every complete path of T frames through ``g``: list of (states, log-weight).

    Log-weight covers start, arcs and final (no emissions). Parallel arcs give
    separate paths.
    """
    out_arcs = {s: [] for s in range(g.num_states)}
    for a in range(g.num_arcs):
        if g.weight[a] > NEG:
            out_arcs[int(g.src[a])].append((int(g.dst[a]), float(g.weight[a])))
    paths = []

    def walk(states, score):
        s = states[-1]
        if len(states) == T:
            if g.final[s] > NEG:
                paths.append((tuple(states), score + float(g.final[s])))
            return
        for d, w in out_arcs[s]:
            walk(states + [d], score + w)

    if T > 0:
        for s in range(g.num_states):
            if g.start[s] > NEG:
                walk([s], float(g.start[s]))
    return paths


def path_score(g, states, score, emissions):
    return score + sum(emissions[t, g.labels[s]] for t, s in enumerate(states))


def logsumexp(values):
    values = np.asarray(values, dtype=np.float64)
    if values.size == 0:
        return NEG
    m = values.max()
    return m + np.log(np.exp(values - m).sum())


def ctc_collapse(seq, blank):
    out = []
    prev = None
    for c in seq:
        if c != prev and c != blank:
            out.append(c)
        prev = c
    return out


# --------------------------------------------------------------------------------
# ctc: structure
# --------------------------------------------------------------------------------

CTC_TARGETS = [
    [1],
    [1, 2],
    [2, 2],
    [3, 3, 3],
    [1, 2, 2, 3],
    [4, 1, 4, 1, 1],
    [5, 5, 2, 2, 5, 1, 1, 1],
]


def expected_ctc_arcs(K, target):
    S = 2 * K + 1
    stays = [(s, s) for s in range(S)]
    advances = [(s, s + 1) for s in range(S - 1)]
    skips = [(2 * i + 1, 2 * i + 3) for i in range(K - 1) if target[i] != target[i + 1]]
    return stays, advances, skips


@pytest.mark.parametrize("target", CTC_TARGETS)
@pytest.mark.parametrize("blank", [0, 6, 9])
def test_ctc_structure(target, blank):
    g = lattice.build("ctc", target, blank=blank)
    K = len(target)
    S = 2 * K + 1
    assert isinstance(g, lattice.Graph)
    assert g.num_states == S
    # labels: blank, t1, blank, t2, ..., tK, blank
    expected_labels = [blank] * S
    expected_labels[1::2] = target
    assert g.labels.tolist() == expected_labels
    # tokens: target position for symbols, -1 for blanks
    expected_tokens = [-1] * S
    expected_tokens[1::2] = list(range(K))
    assert g.tokens.tolist() == expected_tokens
    # arcs: 2K+1 stays, 2K advances, one skip per pair of different neighbours
    stays, advances, skips = expected_ctc_arcs(K, target)
    n_diff = sum(a != b for a, b in zip(target, target[1:]))
    assert len(skips) == n_diff
    assert g.num_arcs == (2 * K + 1) + 2 * K + n_diff
    arcs = sorted(zip(g.src.tolist(), g.dst.tolist()))
    assert arcs == sorted(stays + advances + skips)
    assert len(set(arcs)) == len(arcs)
    assert np.all(g.weight == 0.0)
    # no skip over a blank between equal symbols
    for i in range(K - 1):
        if target[i] == target[i + 1]:
            assert (2 * i + 1, 2 * i + 3) not in arcs
    # start in the first blank or the first symbol; end in the last symbol or blank
    assert np.flatnonzero(g.start == 0.0).tolist() == [0, 1]
    assert np.isneginf(g.start[2:]).all()
    assert np.flatnonzero(g.final == 0.0).tolist() == [S - 2, S - 1]
    assert np.isneginf(g.final[: S - 2]).all()


def test_ctc_docstring_example():
    g = lattice.build("ctc", [1, 2, 2], blank=0)
    assert g.labels.tolist() == [0, 1, 0, 2, 0, 2, 0]
    assert g.num_arcs == 14


@pytest.mark.parametrize("blank", [0, 3])
def test_ctc_empty_target(blank):
    g = lattice.build("ctc", [], blank=blank)
    assert g.num_states == 1
    assert g.labels.tolist() == [blank]
    assert g.tokens.tolist() == [-1]
    assert list(zip(g.src.tolist(), g.dst.tolist())) == [(0, 0)]
    assert g.start.tolist() == [0.0] and g.final.tolist() == [0.0]
    # the all-blank path only
    e = np.random.default_rng(0).standard_normal((1, 5, 4))
    score = lattice.forward(e, [g])[0]
    assert score == pytest.approx(e[0, :, blank].sum(), rel=1e-12)


def test_ctc_empty_target_as_numpy_array():
    g = lattice.build("ctc", np.array([], dtype=np.int64))
    assert g == lattice.build("ctc", [])
    # an empty float array is still an empty target
    assert lattice.build("ctc", np.array([])) == g


def test_ctc_target_types():
    ref = lattice.build("ctc", [1, 2, 3])
    assert lattice.build("ctc", (1, 2, 3)) == ref
    assert lattice.build("ctc", np.array([1, 2, 3], dtype=np.int32)) == ref
    assert lattice.build("ctc", np.array([1, 2, 3], dtype=np.uint8)) == ref
    assert lattice.build("ctc", range(1, 4)) == ref
    assert lattice.build("ctc", [1, 2, 3], blank=np.int64(0)) == ref


def test_ctc_default_blank_is_zero():
    assert lattice.build("ctc", [1, 2]) == lattice.build("ctc", [1, 2], blank=0)
    with pytest.raises(ValueError, match="blank"):
        lattice.build("ctc", [1, 0])


@pytest.mark.parametrize(
    "target, blank",
    [([0], 0), ([1, 0, 2], 0), ([3], 3), ([1, 2, 5, 5], 5), ([7, 7], 7)],
)
def test_ctc_blank_in_target_rejected(target, blank):
    with pytest.raises(ValueError, match="blank"):
        lattice.build("ctc", target, blank=blank)


@pytest.mark.parametrize(
    "target, exc",
    [
        ([1, -1], ValueError),
        ([-3], ValueError),
        ([1.0, 2.0], TypeError),
        ([1.5], TypeError),
        ([True, False], TypeError),
        (["a"], TypeError),
        ([[1, 2]], ValueError),
        (5, ValueError),
    ],
)
@pytest.mark.parametrize("name", ["ctc", "segmentation"])
def test_bad_target_rejected(name, target, exc):
    with pytest.raises(exc, match="target"):
        lattice.build(name, target)


@pytest.mark.parametrize(
    "blank, exc",
    [(-1, ValueError), (1.5, TypeError), (1.0, TypeError), (True, TypeError),
     ("0", TypeError), (None, TypeError)],
)
def test_ctc_bad_blank_option(blank, exc):
    with pytest.raises(exc, match="blank"):
        lattice.build("ctc", [1, 2], blank=blank)


U64_MAX = 2**64 - 1


BUILDERS = [("ctc", {}), ("segmentation", {}), ("hmm", {"states": 2}),
            ("star", {"wildcard": 9}), ("star", {"wildcard": 9, "blank": 0})]


@pytest.mark.parametrize("name, options", BUILDERS)
def test_big_unsigned_target_ids_are_reported_with_their_true_value(name, options):
    """numpy casts uint64 2**64 - 1 to int64 -1: the id is beyond int32, not negative."""
    target = np.array([1, U64_MAX], dtype=np.uint64)
    with pytest.raises(ValueError, match=rf"target .*{U64_MAX}.*int32") as info:
        lattice.build(name, target, **options)
    assert "negative" not in str(info.value)
    with pytest.raises(ValueError, match=rf"target .*{2**31}.*int32"):
        lattice.build(name, [1, 2**31], **options)
    with pytest.raises(ValueError, match=rf"target .*{2**70}.*int32"):
        lattice.build(name, [1, 2**70], **options)  # an object array of Python ints


@pytest.mark.parametrize("name, options", BUILDERS)
@pytest.mark.parametrize("dtype", ["m8[s]", "M8[s]"])
def test_timedelta_targets_are_refused(name, options, dtype):
    with pytest.raises(TypeError, match="target must hold integer"):
        lattice.build(name, np.array([1, 2]).astype(dtype), **options)


@pytest.mark.parametrize("name, option, options", [
    ("ctc", "blank", {}), ("star", "wildcard", {"wildcard": 9}),
    ("star", "blank", {"wildcard": 9}), ("hmm", "states", {}),
    ("hmm", "min_frames", {}), ("hmm", "max_frames", {}),
    ("segmentation", "min_frames", {}),
])
def test_int_options_refuse_timedelta_and_report_big_unsigned(name, option, options):
    for bad in (np.timedelta64(1), np.datetime64(1, "s"), np.bool_(True)):
        with pytest.raises(TypeError, match=option):
            lattice.build(name, [1, 2], **{**options, option: bad})
    if option in ("blank", "wildcard"):  # ids: the true value, beyond int32
        with pytest.raises(ValueError, match=rf"{option} .*{U64_MAX}.*int32"):
            lattice.build(name, [1, 2], **{**options, option: np.uint64(U64_MAX)})


@pytest.mark.parametrize("name, option", [("hmm", "stay"), ("hmm", "advance"),
                                          ("star", "penalty")])
def test_log_weight_options_refuse_timedelta(name, option):
    options = {"wildcard": 9} if name == "star" else {}
    with pytest.raises(TypeError, match=option):
        lattice.build(name, [1, 2], **options, **{option: np.timedelta64(-1)})


def test_ctc_unknown_option():
    with pytest.raises(TypeError):
        lattice.build("ctc", [1, 2], min_frames=2)


# --------------------------------------------------------------------------------
# ctc: semantics (brute force over label sequences)
# --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "target, blank",
    [([1], 0), ([1, 2], 0), ([2, 2], 0), ([1, 1, 2], 3), ([2, 1], 3), ([3], 1), ([], 2)],
)
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6])
def test_ctc_equals_sum_over_collapsing_label_sequences(target, blank, T):
    """log Z of the ctc graph = logsumexp over every frame labelling collapsing to target."""
    C = 4
    rng = np.random.default_rng(T * 31 + blank)
    e = rng.standard_normal((T, C))
    g = lattice.build("ctc", target, blank=blank)
    alphabet = sorted({blank, *target})
    scores = [
        sum(e[t, c] for t, c in enumerate(seq))
        for seq in itertools.product(alphabet, repeat=T)
        if ctc_collapse(seq, blank) == list(target)
    ]
    expected = logsumexp(scores)
    got = lattice.forward(e[None], [g])[0]
    if np.isneginf(expected):
        assert np.isneginf(got)
    else:
        assert got == pytest.approx(expected, rel=1e-12, abs=1e-12)
    # zero emissions count the alignments; state paths and labellings correspond 1:1
    paths = enumerate_paths(g, T)
    assert len(paths) == len(scores)
    labellings = {tuple(g.labels[s] for s in states) for states, _ in paths}
    assert len(labellings) == len(paths)
    assert all(ctc_collapse(lab, blank) == list(target) for lab in labellings)


def test_ctc_viterbi_segments_are_target_symbols():
    target = [1, 2, 2, 3]
    g = lattice.build("ctc", target)
    e = np.random.default_rng(1).standard_normal((1, 12, 4))
    ali = lattice.viterbi(e, [g])
    segs = ali.segments(0)
    assert [tok for tok, _, _ in segs] == [0, 1, 2, 3]
    for tok, s, t in segs:
        assert np.all(ali.labels[0, s:t] == target[tok])


# --------------------------------------------------------------------------------
# segmentation: structure
# --------------------------------------------------------------------------------

SEG_TARGETS = [[4], [4, 2], [2, 2], [1, 3, 1, 0], [0, 0, 0]]


@pytest.mark.parametrize("target", SEG_TARGETS)
def test_segmentation_structure_default(target):
    g = lattice.build("segmentation", target)
    K = len(target)
    assert g.num_states == K
    assert g.labels.tolist() == list(target)
    assert g.tokens.tolist() == list(range(K))
    arcs = sorted(zip(g.src.tolist(), g.dst.tolist()))
    expected = sorted([(i, i) for i in range(K)] + [(i, i + 1) for i in range(K - 1)])
    assert arcs == expected
    assert g.num_arcs == 2 * K - 1
    assert np.all(g.weight == 0.0)
    assert g.start[0] == 0.0 and np.isneginf(g.start[1:]).all()
    assert g.final[K - 1] == 0.0 and np.isneginf(g.final[: K - 1]).all()


def test_segmentation_docstring_example():
    g = lattice.build("segmentation", [4, 2])
    assert (g.labels.tolist(), g.src.tolist(), g.dst.tolist()) == ([4, 2], [0, 0, 1], [0, 1, 1])


@pytest.mark.parametrize("target", SEG_TARGETS)
@pytest.mark.parametrize("m", [1, 2, 3, 5])
def test_segmentation_structure_min_frames(target, m):
    g = lattice.build("segmentation", target, min_frames=m)
    K = len(target)
    S = K * m
    assert g.num_states == S
    assert g.labels.tolist() == [c for c in target for _ in range(m)]
    assert g.tokens.tolist() == [i for i in range(K) for _ in range(m)]
    arcs = sorted(zip(g.src.tolist(), g.dst.tolist()))
    stays = [(i * m + m - 1,) * 2 for i in range(K)]  # only the last state of a chain
    advances = [(s, s + 1) for s in range(S - 1)]
    assert arcs == sorted(stays + advances)
    assert g.num_arcs == K + S - 1
    assert np.flatnonzero(np.isfinite(g.start)).tolist() == [0]
    assert np.flatnonzero(np.isfinite(g.final)).tolist() == [S - 1]


@pytest.mark.parametrize("m", [1, 3])
def test_segmentation_empty_target(m):
    g = lattice.build("segmentation", [], min_frames=m)
    assert g.num_states == 0 and g.num_arcs == 0
    assert np.isneginf(lattice.forward(np.zeros((1, 4, 2)), [g])[0])


@pytest.mark.parametrize(
    "m, exc",
    [(0, ValueError), (-1, ValueError), (1.5, TypeError), (2.0, TypeError),
     (True, TypeError), (False, TypeError), ("2", TypeError), (None, TypeError)],
)
def test_segmentation_bad_min_frames(m, exc):
    with pytest.raises(exc, match="min_frames"):
        lattice.build("segmentation", [1, 2], min_frames=m)


def test_segmentation_min_frames_numpy_int():
    assert lattice.build("segmentation", [1, 2], min_frames=np.int64(2)) == lattice.build(
        "segmentation", [1, 2], min_frames=2
    )


# --------------------------------------------------------------------------------
# segmentation: semantics
# --------------------------------------------------------------------------------


def n_segmentations(T, K, m):
    """Compositions of T into K parts of at least m frames."""
    if K == 0 or T < K * m:
        return 0
    return math.comb(T - K * m + K - 1, K - 1)


@pytest.mark.parametrize("K", [1, 2, 3, 4])
@pytest.mark.parametrize("m", [1, 2, 3])
def test_segmentation_path_count_formula(K, m):
    """exp(forward(zero emissions)) = C(T - K m + K - 1, K - 1), checked for T = 1..14."""
    g = lattice.build("segmentation", list(range(K)), min_frames=m)
    Ts = np.arange(1, 15)
    e = np.zeros((len(Ts), 14, K))
    scores = lattice.forward(e, g, lengths=Ts)
    for T, score in zip(Ts, scores):
        n = n_segmentations(int(T), K, m)
        if n == 0:
            assert np.isneginf(score), (T, K, m)
        else:
            assert score == pytest.approx(math.log(n), rel=1e-12, abs=1e-12), (T, K, m)


@pytest.mark.parametrize("target", [[3], [1, 2], [2, 2, 2], [0, 1, 0]])
@pytest.mark.parametrize("m", [1, 2, 3])
@pytest.mark.parametrize("T", [1, 3, 5, 7, 9])
def test_segmentation_paths_brute_force(target, m, T):
    """Every path covers the symbols in order, each for >= m frames, and every such
    segmentation is a path exactly once; forward and viterbi agree with brute force."""
    K = len(target)
    g = lattice.build("segmentation", target, min_frames=m)
    paths = enumerate_paths(g, T)
    runs = set()
    for states, _ in paths:
        toks = [int(g.tokens[s]) for s in states]
        labs = [int(g.labels[s]) for s in states]
        assert toks[0] == 0 and toks[-1] == K - 1
        assert all(b - a in (0, 1) for a, b in zip(toks, toks[1:]))
        counts = [toks.count(k) for k in range(K)]
        assert min(counts) >= m
        assert labs == [target[k] for k in toks]
        runs.add(tuple(counts))
    assert len(runs) == len(paths) == n_segmentations(T, K, m)
    expected_runs = {
        c for c in itertools.product(range(m, T + 1), repeat=K) if sum(c) == T
    }
    assert runs == expected_runs

    e = np.random.default_rng(T + 10 * m).standard_normal((1, T, 4))
    scores = [path_score(g, states, w, e[0]) for states, w in paths]
    fwd = lattice.forward(e, [g])[0]
    ali = lattice.viterbi(e, [g])
    if not paths:
        assert np.isneginf(fwd) and np.isneginf(ali.score[0])
        return
    assert fwd == pytest.approx(logsumexp(scores), rel=1e-12, abs=1e-12)
    assert ali.score[0] == pytest.approx(max(scores), rel=1e-12, abs=1e-12)
    segs = ali.segments(0)
    assert [tok for tok, _, _ in segs] == list(range(K))
    assert all(end - start >= m for _, start, end in segs)
    assert segs[0][1] == 0 and segs[-1][2] == T


def test_segmentation_repeated_symbols_are_distinct_segments():
    g = lattice.build("segmentation", [2, 2])
    assert g.num_states == 2 and g.labels.tolist() == [2, 2]
    # over 3 frames: 2 paths (1+2, 2+1)
    assert lattice.forward(np.zeros((1, 3, 3)), [g])[0] == pytest.approx(math.log(2))


# --------------------------------------------------------------------------------
# sizes beyond int32: refused before anything is allocated
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("name, target, options, match", [
    ("segmentation", [1, 2], {"min_frames": 2**31}, r"min_frames=2147483648 .* 4294967296 states"),
    ("segmentation", [1, 2], {"min_frames": 2**30}, r"min_frames=1073741824 .* 2147483648 states"),
    ("segmentation", [], {"min_frames": 2**31}, r"min_frames=2147483648.* 2147483648 states"),
    ("hmm", [1], {"states": 2**31}, r"states=2147483648.* 2147483648 states"),
    ("hmm", [1], {"states": 2**30 + 1}, r"states=1073741825.* 2147483649 arcs"),
    ("hmm", [1, 2], {"states": 2, "max_frames": 2**31},
     r"states=2, min_frames=1, max_frames=2147483648 .* 8589934588 states"),
    ("hmm", [1, 2], {"min_frames": 2**40}, r"min_frames=1099511627776,.* states"),
])
def test_options_beyond_int32_are_refused_before_allocating(name, target, options, match):
    """lattice.build("segmentation", [1, 2], min_frames=2**31) allocated tens of GB
    before an empty MemoryError; the graph's size is computed first."""
    with pytest.raises(ValueError, match=match + r".*int32.*at most 2147483647"):
        lattice.build(name, target, **options)


AT_THE_LIMIT = [
    ("ctc", [1, 2, 2, 3], {}),
    ("ctc", [1, 2, 2, 3], {"between": "required"}),
    ("ctc", [1, 2, 2, 3], {"between": "none"}),
    ("segmentation", [1, 2, 3], {"min_frames": 3}),
    ("hmm", [1, 2], {"states": 3, "min_frames": 4}),
    ("hmm", [1, 2, 1], {"states": 2, "min_frames": 3, "max_frames": 5}),
    ("star", [1, 2, 2], {"wildcard": 9}),
    ("star", [1, 2, 2], {"wildcard": 9, "blank": 0}),
    ("star", [1, 2, 2], {"wildcard": 9, "blank": 0, "gaps": "edges"}),
]


@pytest.mark.parametrize("name, target, options", AT_THE_LIMIT)
def test_graph_sizes_at_and_just_beyond_the_limit(monkeypatch, name, target, options):
    """A graph of exactly the limit is built, one state or arc more is refused (with a
    lowered limit: the real one needs 2**31 states)."""
    g = lattice.build(name, target, **options)
    n = max(g.num_states, g.num_arcs)
    monkeypatch.setattr(lattice.checks, "SIZE_LIMIT", n)
    assert lattice.build(name, target, **options) == g
    monkeypatch.setattr(lattice.checks, "SIZE_LIMIT", n - 1)
    with pytest.raises(ValueError, match=rf" {n} (states|arcs);.* at most {n - 1}"):
        lattice.build(name, target, **options)
