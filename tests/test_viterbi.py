"""lattice.viterbi: best score, best path, labels and segments."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

import lattice
from reference import assert_scores_close, brute_force, path_score, segments_of
from strategies import examples, problems

NEG_INF = -math.inf


def check_alignment(problem, ali, emissions=None, rtol=1e-9, atol=1e-9):
    """Check an Alignment against the brute force and against the graph itself."""
    e = problem.emissions if emissions is None else emissions
    B, T, _ = e.shape
    assert ali.score.shape == (B,) and ali.score.dtype == e.dtype
    assert ali.states.shape == (B, T) and ali.states.dtype == np.int32
    assert ali.labels.shape == (B, T) and ali.labels.dtype == np.int32
    assert ali.arcs.shape == (B, T) and ali.arcs.dtype == np.int32
    assert ali.num_segments.shape == (B,)
    K = int(ali.num_segments.max(initial=0))
    for name in ("tokens", "starts", "ends"):
        assert getattr(ali, name).shape == (B, K), name
    assert not np.isnan(ali.score).any()
    for b, g in enumerate(problem.graphs):
        msg = f"example {b}"
        ref = problem.reference(b, emissions)
        L = problem.length(b)
        assert_scores_close(ali.score[b : b + 1], [ref.best_score], rtol=rtol,
                            atol=atol, err_msg=msg)
        n = int(ali.num_segments[b])
        # padding of the segment arrays
        for name in ("tokens", "starts", "ends"):
            assert np.all(getattr(ali, name)[b, n:] == -1), (name, msg)
        if ref.best_score == NEG_INF:
            assert np.all(ali.states[b] == -1), msg
            assert np.all(ali.labels[b] == -1), msg
            assert np.all(ali.arcs[b] == -1), msg
            assert n == 0 and ali.segments(b) == [], msg
            continue
        states = ali.states[b, :L]
        assert np.all(ali.states[b, L:] == -1) and np.all(ali.labels[b, L:] == -1), msg
        assert ali.arcs[b, 0] == -1 and np.all(ali.arcs[b, L:] == -1), msg
        assert np.all((states >= 0) & (states < g.num_states)), msg
        np.testing.assert_array_equal(ali.labels[b, :L], g.labels[states], err_msg=msg)
        # a real path: allowed start and end, every step along an arc
        start = g.start if problem.start_weights is None else problem.start_weights[b]
        final = g.final if problem.final_weights is None else problem.final_weights[b]
        assert start[states[0]] > NEG_INF and final[states[-1]] > NEG_INF, msg
        edges = set(zip(g.src.tolist(), g.dst.tolist()))
        for t in range(1, L):
            assert (int(states[t - 1]), int(states[t])) in edges, (msg, t)
        # ... whose own score is the best score, both along the arcs Viterbi reports
        # (each must join the states it sits between) and along the best parallel arcs
        w = None if problem.arc_weights is None else problem.arc_weights[b]
        for arcs in (ali.arcs[b, :L].tolist(), None):
            recomputed = path_score(g, e[b, :L], states.tolist(), arc_weights=w,
                                    start_weights=start, final_weights=final, arcs=arcs)
            np.testing.assert_allclose(recomputed, ref.best_score, rtol=rtol, atol=atol,
                                       err_msg=f"{msg}, arcs={arcs}")
        # segments: maximal runs of one non-negative token
        expected_segments = segments_of(g.tokens, states.tolist())
        assert ali.segments(b) == expected_segments, msg
        assert n == len(expected_segments)
        for i, (tok, s, end) in enumerate(expected_segments):
            assert (ali.tokens[b, i], ali.starts[b, i], ali.ends[b, i]) == (tok, s, end)


@examples(60)
@given(problem=problems(overrides=True))
def test_viterbi_matches_brute_force(problem):
    ali = lattice.viterbi(problem.emissions, problem.graphs, **problem.kwargs())
    check_alignment(problem, ali)
    # the Viterbi score is the forward score under the max semiring, bit for bit
    best = lattice.forward(problem.emissions, problem.graphs, semiring="max",
                           **problem.kwargs())
    np.testing.assert_array_equal(ali.score, best)


@examples(40)
@given(problem=problems(overrides=True, time_dependent=True))
def test_viterbi_time_dependent_arc_weights(problem):
    ali = lattice.viterbi(problem.emissions, problem.graphs, **problem.kwargs())
    check_alignment(problem, ali)


@examples(40)
@given(problem=problems(overrides=True))
def test_viterbi_float32(problem):
    e32 = problem.emissions.astype(np.float32)
    ali = lattice.viterbi(e32, problem.graphs, **problem.kwargs())
    check_alignment(problem, ali, emissions=e32, rtol=1e-5, atol=1e-4)
    best = lattice.forward(e32, problem.graphs, semiring="max", **problem.kwargs())
    np.testing.assert_array_equal(ali.score, best)


def test_docstring_example():
    e = np.log(np.array([[[.1, .8, .1], [.1, .8, .1], [.8, .1, .1], [.1, .1, .8]]]))
    ali = lattice.viterbi(e, [lattice.build("ctc", [1, 2])])
    assert ali.labels[0].tolist() == [1, 1, 0, 2]
    assert ali.states[0].tolist() == [1, 1, 2, 3]
    g = lattice.build("ctc", [1, 2])
    for t in (1, 2, 3):
        a = ali.arcs[0, t]
        assert (g.src[a], g.dst[a]) == (ali.states[0, t - 1], ali.states[0, t])
    assert ali.segments(0) == [(0, 0, 2), (1, 3, 4)]
    np.testing.assert_allclose(ali.score[0], np.log(.8 ** 4), rtol=1e-12)


def test_ctc_repeated_symbol_gives_two_segments():
    # "1 1" must go through a blank; each symbol is its own segment (tokens 0 and 1)
    g = lattice.build("ctc", [1, 1])
    e = np.log(np.array([[[.1, .9], [.1, .9], [.9, .1], [.1, .9], [.1, .9]]]))
    ali = lattice.viterbi(e, [g])
    assert ali.states[0].tolist() == [1, 1, 2, 3, 3]
    assert ali.segments(0) == [(0, 0, 2), (1, 3, 5)]


def test_segmentation_min_frames_segments_cover_chains():
    # all states of a symbol's chain share its token: one segment per symbol
    g = lattice.build("segmentation", [0, 1, 0], min_frames=2)
    e = np.zeros((1, 8, 2))
    e[0, :3, 0] = 1.0  # symbol 0 wants frames 0..2, symbol 1 frames 3..4
    e[0, 3:5, 1] = 1.0
    e[0, 5:, 0] = 1.0
    ali = lattice.viterbi(e, [g])
    assert ali.segments(0) == [(0, 0, 3), (1, 3, 5), (2, 5, 8)]
    assert ali.states[0].tolist() == [0, 1, 1, 2, 3, 4, 5, 5]


def test_lengths_respected():
    rng = np.random.default_rng(20)
    gs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [2, 1]),
          lattice.build("ctc", [1]), lattice.build("ctc", [1, 1])]
    lens = np.array([6, 3, 0, 2])  # the last one is too short for "1 1"
    e = rng.normal(size=(4, 6, 3))
    ali = lattice.viterbi(e, gs, lens)
    for b, g in enumerate(gs):
        L = int(lens[b])
        assert np.all(ali.states[b, L:] == -1) and np.all(ali.labels[b, L:] == -1)
        assert np.all(ali.arcs[b, L:] == -1)
        alone = lattice.viterbi(e[b : b + 1, : max(L, 1)], [g], [L])
        np.testing.assert_array_equal(ali.score[b], alone.score[0])
        np.testing.assert_array_equal(ali.states[b, :L], alone.states[0, :L])
        np.testing.assert_array_equal(ali.arcs[b, :L], alone.arcs[0, :L])
        assert ali.segments(b) == alone.segments(0)
        ref = brute_force(g, e[b], L)
        assert_scores_close(ali.score[b : b + 1], [ref.best_score])
    assert ali.score[2] == NEG_INF and ali.score[3] == NEG_INF
    assert ali.num_segments[2] == 0 and ali.num_segments[3] == 0
    # frames past each length are not read
    junk = e.copy()
    for b, L in enumerate(lens):
        junk[b, L:] = 1e3
    again = lattice.viterbi(junk, gs, lens)
    for name in ("score", "states", "labels", "arcs", "tokens", "starts", "ends",
                 "num_segments"):
        np.testing.assert_array_equal(getattr(again, name), getattr(ali, name), name)


INF = -np.inf


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infeasible(dtype):
    gs = [
        lattice.build("segmentation", [0, 1, 2]),  # 3 symbols, 2 frames
        lattice.Graph([0, 1], [0], [1], None, [0.0, 0.0], [INF, INF]),
        lattice.Graph([0, 1], [0, 0], [1, 1], [INF, INF], [0.0, INF], [INF, 0.0]),
        lattice.Graph([], [], [], None, [], []),
        lattice.build("ctc", [1]),  # feasible
    ]
    e = np.zeros((len(gs), 2, 3), dtype=dtype)
    ali = lattice.viterbi(e, gs)
    assert np.all(np.isneginf(ali.score[:4]))
    assert np.all(ali.states[:4] == -1) and np.all(ali.labels[:4] == -1)
    assert np.all(ali.arcs[:4] == -1)
    assert np.all(ali.num_segments[:4] == 0)
    assert all(ali.segments(b) == [] for b in range(4))
    assert np.all(ali.tokens[:4] == -1) and np.all(ali.starts[:4] == -1)
    assert ali.score[4] == 0.0 and ali.num_segments[4] == 1


def test_zero_frames_and_empty_batch():
    g = lattice.build("ctc", [1])
    ali = lattice.viterbi(np.zeros((2, 0, 2)), [g, g])
    assert np.all(np.isneginf(ali.score)) and ali.states.shape == (2, 0)
    assert np.all(ali.num_segments == 0) and ali.segments(0) == []
    ali = lattice.viterbi(np.zeros((0, 3, 2)), [])
    assert ali.score.shape == (0,) and ali.states.shape == (0, 3)


def test_ties_go_to_the_highest_source_then_the_arc_listed_first():
    # states 0 and 1 both lead to 2 with equal scores: the arc from 1 wins, whatever
    # the listing order
    for arcs, arc_from_1 in (([(1, 2), (0, 2)], 0), ([(0, 2), (1, 2)], 1)):
        g = lattice.Graph([0, 0, 1], [a for a, _ in arcs], [d for _, d in arcs], None,
                          [0.0, 0.0, INF], [INF, INF, 0.0])
        ali = lattice.viterbi(np.zeros((1, 2, 2)), [g])
        assert ali.states[0].tolist() == [1, 2]
        assert ali.arcs[0].tolist() == [-1, arc_from_1]
    # parallel arcs with equal weights: the first-listed one is reported
    g = lattice.Graph([0, 1], [0, 0, 0, 0], [0, 1, 1, 1], [0.0, -1.0, 0.5, 0.5],
                      [0.0, INF], [INF, 0.0])
    ali = lattice.viterbi(np.zeros((1, 3, 2)), [g])
    assert ali.states[0].tolist() == [0, 0, 1]
    assert ali.arcs[0].tolist() == [-1, 0, 2]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_emissions(dtype):
    rng = np.random.default_rng(21)
    gs = [lattice.build("ctc", [1, 2, 1]), lattice.build("segmentation", [2, 0, 1]),
          lattice.build("ctc", [2])]
    tbc = rng.normal(size=(7, len(gs), 3)).astype(dtype)
    view = tbc.transpose(1, 0, 2)
    flipped = np.ascontiguousarray(view[:, ::-1])[:, ::-1]
    lens = [7, 5, 6]
    expected = lattice.viterbi(np.ascontiguousarray(view), gs, lens)
    for v in (view, flipped):
        assert not v.flags.c_contiguous
        out = lattice.viterbi(v, gs, lens)
        for name in ("score", "states", "labels", "arcs", "tokens", "starts", "ends",
                     "num_segments"):
            np.testing.assert_array_equal(getattr(out, name), getattr(expected, name))


# --------------------------------------------------------------------------------------
# many incoming arcs: backpointers wider than one byte


def fan_in_graph(num_sources, best, reverse=False):
    """``num_sources`` states all leading into one sink (which may stay); starting in
    ``best`` is the best choice. With ``reverse`` the arcs are listed backwards, so an
    arc's position among the sink's in-arcs differs from its source id."""
    sources = list(range(num_sources))
    if reverse:
        sources = sources[::-1]
    sink = num_sources
    src = sources + [sink]
    dst = [sink] * num_sources + [sink]
    start = np.full(num_sources + 1, -1.0)
    start[best] = 0.0
    start[sink] = INF
    final = np.full(num_sources + 1, INF)
    final[sink] = 0.0
    labels = [0] * num_sources + [1]
    return lattice.Graph(labels, src, dst, None, start, final)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize(
    "num_sources,best,reverse",
    [(300, 280, False), (300, 3, True), (300, 299, False), (256, 255, False),
     (255, 254, False), (1000, 700, True)],
)
def test_large_in_degree(num_sources, best, reverse, dtype):
    big = fan_in_graph(num_sources, best, reverse)
    small = lattice.build("ctc", [1])
    T = 4
    rng = np.random.default_rng(22)
    e = rng.normal(scale=0.1, size=(2, T, 2)).astype(dtype)
    e[0] = 0.0
    gs = [big, small]
    ali = lattice.viterbi(e, gs)
    assert ali.states[0].tolist() == [best] + [num_sources] * (T - 1)
    # arc into frame 1 is the one from `best`; then the sink's self-loop (listed last)
    assert big.src[ali.arcs[0, 1]] == best and big.dst[ali.arcs[0, 1]] == num_sources
    assert ali.arcs[0].tolist() == [-1, ali.arcs[0, 1]] + [num_sources] * (T - 2)
    assert ali.score[0] == 0.0
    best_fwd = lattice.forward(e, gs, semiring="max")
    np.testing.assert_array_equal(ali.score, best_fwd)
    small_alone = lattice.viterbi(e[1:], [small])
    np.testing.assert_array_equal(ali.states[1], small_alone.states[0])
    np.testing.assert_array_equal(ali.score[1], small_alone.score[0])


def test_large_in_degree_vs_brute_force():
    # random weights on 300 parallel-ish arcs into one state, against enumeration
    rng = np.random.default_rng(23)
    n = 300
    src = rng.integers(0, 3, size=n).tolist() + [3, 3, 4]
    dst = [3] * n + [3, 4, 4]
    weight = rng.normal(size=n + 3)
    # the best arc into state 3 is arc 290 (from state 2); arc 290 - 256 comes from 0,
    # so a backpointer truncated to one byte would show up in the path
    src[290], src[34] = 2, 0
    weight[290] = 5.0
    g = lattice.Graph([0, 1, 2, 0, 1], src, dst, weight,
                      [0.0, -0.5, 0.3, INF, INF], [INF, INF, INF, 0.0, -0.2])
    e = rng.normal(size=(1, 4, 3))
    ref = brute_force(g, e[0])
    ali = lattice.viterbi(e, [g])
    np.testing.assert_allclose(ali.score[0], ref.best_score, rtol=1e-12)
    assert ref.best_path.arcs[0] == 290 and ref.best_path.states[:2] == (2, 3)
    assert ali.states[0].tolist() == list(ref.best_path.states)
    assert ali.arcs[0, 1:].tolist() == list(ref.best_path.arcs)
