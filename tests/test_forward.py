"""lattice.forward (log and max semirings) against the brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lattice
from reference import assert_scores_close, brute_force
from strategies import examples, graphs, problems

NEG_INF = -math.inf
SETTINGS = examples(60)


def ref_scores(problem, semiring, emissions=None):
    refs = [problem.reference(b, emissions) for b in range(problem.batch_size)]
    if semiring == "log":
        return np.array([r.log_z for r in refs])
    return np.array([r.best_score for r in refs])


# --------------------------------------------------------------------------------------
# random graphs vs brute force


@SETTINGS
@given(problem=problems(overrides=False))
def test_forward_matches_brute_force(problem):
    refs = [problem.reference(b) for b in range(problem.batch_size)]
    log_z = np.array([r.log_z for r in refs])
    best = np.array([r.best_score for r in refs])
    for semiring, expected in (("log", log_z), ("max", best)):
        out = lattice.forward(problem.emissions, problem.graphs, problem.lengths,
                              semiring)
        assert out.dtype == np.float64 and out.shape == (problem.batch_size,)
        assert_scores_close(out, expected, rtol=1e-9, atol=1e-9, err_msg=semiring)
    # max never exceeds log, and both are -inf for the same examples
    finite = ~np.isneginf(log_z)
    assert np.all(best[finite] <= log_z[finite] + 1e-12)


@examples(40)
@given(problem=problems(overrides=False))
def test_forward_matches_brute_force_float32(problem):
    e32 = problem.emissions.astype(np.float32)
    for semiring in ("log", "max"):
        out = lattice.forward(e32, problem.graphs, problem.lengths, semiring)
        assert out.dtype == np.float32 and out.shape == (problem.batch_size,)
        assert_scores_close(out, ref_scores(problem, semiring, e32), rtol=1e-5,
                            atol=1e-4, err_msg=semiring)


@SETTINGS
@given(problem=problems(overrides=True))
def test_forward_with_weight_overrides(problem):
    # override arrays carry junk in their padding and in row t = 0 (time-dependent):
    # the reference ignores both, so must the engine
    refs = [problem.reference(b) for b in range(problem.batch_size)]
    for semiring, attr in (("log", "log_z"), ("max", "best_score")):
        out = lattice.forward(problem.emissions, problem.graphs, semiring=semiring,
                              **problem.kwargs())
        expected = [getattr(r, attr) for r in refs]
        assert_scores_close(out, expected, rtol=1e-9, atol=1e-9, err_msg=semiring)


@examples(50)
@given(problem=problems(overrides=True, time_dependent=True))
def test_forward_time_dependent_arc_weights(problem):
    assert problem.arc_weights.ndim == 3
    refs = [problem.reference(b) for b in range(problem.batch_size)]
    for semiring, attr in (("log", "log_z"), ("max", "best_score")):
        out = lattice.forward(problem.emissions, problem.graphs, semiring=semiring,
                              **problem.kwargs())
        expected = [getattr(r, attr) for r in refs]
        assert_scores_close(out, expected, rtol=1e-9, atol=1e-9, err_msg=semiring)


@examples(30)
@given(problem=problems(overrides=False, allow_neg_inf_emissions=False))
def test_constant_time_dependent_weights_equal_static(problem):
    gb = lattice.batch(problem.graphs)
    static = np.array(gb.weight)
    tiled = np.repeat(static[:, None, :], problem.frames, axis=1)
    for semiring in ("log", "max"):
        a = lattice.forward(problem.emissions, gb, problem.lengths, semiring)
        b = lattice.forward(problem.emissions, gb, problem.lengths, semiring,
                            arc_weights=static)
        c = lattice.forward(problem.emissions, gb, problem.lengths, semiring,
                            arc_weights=tiled)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(a, c)


# --------------------------------------------------------------------------------------
# infeasible graphs and lengths


def _graph(labels, arcs, start, final, weight=None):
    src = [a[0] for a in arcs]
    dst = [a[1] for a in arcs]
    return lattice.Graph(labels, src, dst, weight, start, final)


INFEASIBLE = {
    # name: (graph, frames) with no complete path
    "no_start": (_graph([0, 1], [(0, 1), (1, 1)], [NEG_INF, NEG_INF], [0.0, 0.0]), 3),
    "no_final": (_graph([0, 1], [(0, 1), (1, 1)], [0.0, 0.0], [NEG_INF, NEG_INF]), 3),
    "final_unreachable": (
        _graph([0, 1, 0], [(0, 0), (0, 1), (1, 1)], [0.0, NEG_INF, NEG_INF],
               [NEG_INF, NEG_INF, 0.0]),
        4,
    ),
    "no_arcs_two_frames": (_graph([0, 1], [], [0.0, 0.0], [0.0, 0.0]), 2),
    "dead_end": (_graph([0, 1], [(0, 1)], [0.0, NEG_INF], [0.0, 0.0]), 3),
    "too_short": (lattice.build("segmentation", [0, 1, 2]), 2),
    "too_short_min_frames": (lattice.build("segmentation", [0, 1], min_frames=3), 5),
    "ctc_repeat_too_short": (lattice.build("ctc", [1, 1], blank=0), 2),
    "all_arcs_neg_inf": (
        _graph([0, 1], [(0, 1), (0, 1)], [0.0, NEG_INF], [NEG_INF, 0.0],
               weight=[NEG_INF, NEG_INF]),
        2,
    ),
    "empty_graph": (lattice.Graph([], [], [], None, [], []), 3),
    "empty_segmentation": (lattice.build("segmentation", []), 3),
}


@pytest.mark.parametrize("name", sorted(INFEASIBLE))
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("semiring", ["log", "max"])
def test_infeasible_is_neg_inf(name, dtype, semiring):
    graph, frames = INFEASIBLE[name]
    e = np.random.default_rng(0).normal(size=(1, frames, 3)).astype(dtype)
    assert brute_force(graph, e[0]).log_z == NEG_INF
    out = lattice.forward(e, [graph], semiring=semiring)
    assert out.dtype == dtype
    assert out[0] == NEG_INF


@pytest.mark.parametrize("semiring", ["log", "max"])
def test_neg_inf_emissions_block_every_path(semiring):
    g = lattice.build("segmentation", [0, 1])
    e = np.zeros((1, 3, 2))
    e[0, 1, :] = NEG_INF
    assert lattice.forward(e, [g], semiring=semiring)[0] == NEG_INF
    e[0, 1, 0] = 0.0  # frame 1 may emit symbol 0 again: the path 0 0 1 survives
    assert lattice.forward(e, [g], semiring=semiring)[0] == 0.0


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("semiring", ["log", "max"])
def test_length_zero_scores_neg_inf(dtype, semiring):
    g = _graph([0], [(0, 0)], [0.0], [0.0])
    e = np.zeros((3, 4, 1), dtype=dtype)
    out = lattice.forward(e, [g] * 3, lengths=[0, 1, 4], semiring=semiring)
    assert out[0] == NEG_INF
    assert out[1] == 0.0 and out[2] == 0.0


def test_zero_frames():
    g = _graph([0], [(0, 0)], [0.0], [0.0])
    out = lattice.forward(np.zeros((2, 0, 1)), [g, g])
    assert out.shape == (2,) and np.all(out == NEG_INF)


def test_empty_batch():
    out = lattice.forward(np.zeros((0, 3, 2)), [])
    assert out.shape == (0,)


@pytest.mark.parametrize("semiring", ["log", "max"])
def test_variable_lengths_match_truncated_emissions(semiring):
    rng = np.random.default_rng(1)
    gs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [2, 1, 2]),
          lattice.build("ctc", [3]), lattice.build("segmentation", [1])]
    lens = np.array([7, 3, 0, 1])
    e = rng.normal(size=(4, 7, 4))
    out = lattice.forward(e, gs, lens, semiring)
    for b, g in enumerate(gs):
        alone = lattice.forward(e[b : b + 1, : max(lens[b], 1)], [g],
                                [lens[b]], semiring)[0]
        assert out[b] == alone
    # frames past each length must not be read: junk there changes nothing
    junk = e.copy()
    for b, n in enumerate(lens):
        junk[b, n:] = 1e3
    np.testing.assert_array_equal(lattice.forward(junk, gs, lens, semiring), out)


def test_unused_classes_may_hold_nan():
    g = lattice.build("ctc", [1, 2])
    e = np.log(np.full((1, 5, 4), 0.25))
    expected = lattice.forward(e, [g])
    e[0, :, 3] = np.nan  # class 3 is not used by the graph
    np.testing.assert_array_equal(lattice.forward(e, [g]), expected)


# --------------------------------------------------------------------------------------
# batches of mixed graphs, GraphBatch reuse, memory layouts


@pytest.mark.parametrize("semiring", ["log", "max"])
def test_mixed_batch_equals_one_by_one(semiring):
    rng = np.random.default_rng(2)
    gs = [
        lattice.build("ctc", [1, 2, 2]),
        lattice.build("segmentation", [3, 1]),
        lattice.build("segmentation", [1, 2], min_frames=2),
        lattice.Graph([], [], [], None, [], []),
        _graph([0, 1, 2], [(0, 1), (1, 2), (2, 0), (0, 0), (0, 1)],
               [0.0, -1.0, NEG_INF], [0.5, 0.0, 0.0],
               weight=[0.1, -0.2, 0.3, NEG_INF, -1.0]),
        lattice.build("ctc", [], blank=0),
    ]
    e = rng.normal(size=(len(gs), 6, 4))
    lens = np.array([6, 5, 6, 6, 4, 2])
    out = lattice.forward(e, gs, lens, semiring)
    out_gb = lattice.forward(e, lattice.batch(gs), lens, semiring)
    np.testing.assert_array_equal(out, out_gb)
    for b, g in enumerate(gs):
        ref = brute_force(g, e[b], lens[b])
        expected = ref.log_z if semiring == "log" else ref.best_score
        assert_scores_close(out[b : b + 1], [expected])
        alone = lattice.forward(e[b : b + 1], [g], lens[b : b + 1], semiring)
        np.testing.assert_array_equal(out[b : b + 1], alone)


def test_single_graph_broadcasts_over_batch():
    g = lattice.build("ctc", [1, 2])
    e = np.random.default_rng(3).normal(size=(3, 5, 3))
    np.testing.assert_array_equal(lattice.forward(e, g), lattice.forward(e, [g] * 3))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("semiring", ["log", "max"])
def test_non_contiguous_emissions(dtype, semiring):
    rng = np.random.default_rng(4)
    gs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [0, 2, 1]),
          lattice.build("ctc", [2, 2, 1]), lattice.build("segmentation", [1])]
    B, T, C = len(gs), 7, 3
    lens = np.array([7, 6, 7, 2])
    tbc = rng.normal(size=(T, B, C)).astype(dtype)
    views = {
        "transposed": tbc.transpose(1, 0, 2),
        "reversed_time": np.ascontiguousarray(tbc.transpose(1, 0, 2)[:, ::-1])[:, ::-1],
        "reversed_batch": np.ascontiguousarray(tbc.transpose(1, 0, 2)[::-1])[::-1],
        "strided_classes": np.repeat(tbc.transpose(1, 0, 2), 2, axis=2)[:, :, ::2],
        "fortran": np.asfortranarray(tbc.transpose(1, 0, 2)),
    }
    expected = lattice.forward(np.ascontiguousarray(tbc.transpose(1, 0, 2)), gs, lens,
                               semiring)
    for name, view in views.items():
        assert not view.flags.c_contiguous, name
        np.testing.assert_array_equal(view, tbc.transpose(1, 0, 2))
        out = lattice.forward(view, gs, lens, semiring)
        np.testing.assert_array_equal(out, expected, err_msg=name)


# --------------------------------------------------------------------------------------
# closed-form path counts: with zero emissions and weights, exp(log Z) = number of paths


def log_comb(n, k):
    return math.lgamma(n + 1) - math.lgamma(k + 1) - math.lgamma(n - k + 1)


SEGMENTATION_CASES = [(1, 1), (5, 1), (5, 5), (6, 2), (10, 3), (30, 7), (64, 64),
                      (100, 10), (200, 50), (300, 150)]


@pytest.mark.parametrize("T,K", SEGMENTATION_CASES)
def test_segmentation_path_count(T, K):
    g = lattice.build("segmentation", list(range(K)))
    e = np.zeros((1, T, K))
    log_z = lattice.forward(e, [g])[0]
    count = math.comb(T - 1, K - 1)
    np.testing.assert_allclose(log_z, math.log(count), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(log_z, log_comb(T - 1, K - 1), rtol=1e-11, atol=1e-11)
    assert lattice.forward(e, [g], semiring="max")[0] == 0.0
    # float32: the count is still right to float32 precision
    log_z32 = lattice.forward(e.astype(np.float32), [g])[0]
    np.testing.assert_allclose(log_z32, math.log(count), rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("T,K", [(1, 2), (3, 4), (49, 50)])
def test_segmentation_fewer_frames_than_symbols(T, K):
    g = lattice.build("segmentation", list(range(K)))
    assert lattice.forward(np.zeros((1, T, K)), [g])[0] == NEG_INF


def test_segmentation_counts_in_one_batch():
    # many lengths of the same graph in one call: C(t - 1, K - 1) for every t
    K, T = 4, 40
    g = lattice.build("segmentation", [0, 1, 2, 3])
    lens = np.arange(T + 1)
    out = lattice.forward(np.zeros((T + 1, T, K)), [g] * (T + 1), lens)
    for t in range(T + 1):
        if t < K:
            assert out[t] == NEG_INF
        else:
            np.testing.assert_allclose(out[t], math.log(math.comb(t - 1, K - 1)),
                                       rtol=1e-12)


@pytest.mark.parametrize("target", [[], [1], [1, 2], [1, 1], [2, 1, 2], [1, 1, 1],
                                    [1, 2, 3]])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6])
def test_ctc_path_count_vs_brute_force(target, T):
    g = lattice.build("ctc", target, blank=0)
    e = np.zeros((1, T, 4))
    ref = brute_force(g, e[0])
    log_z = lattice.forward(e, [g])[0]
    if ref.num_finite_paths == 0:
        assert log_z == NEG_INF
    else:
        np.testing.assert_allclose(log_z, math.log(ref.num_finite_paths), rtol=1e-12,
                                   atol=1e-12)


def test_ctc_known_counts():
    # target "a": paths over T frames are  _*a+_*  -> T(T+1)/2 of them
    g = lattice.build("ctc", [1])
    for T in range(1, 30):
        out = lattice.forward(np.zeros((1, T, 2)), [g])[0]
        np.testing.assert_allclose(out, math.log(T * (T + 1) // 2), rtol=1e-12)


@pytest.mark.parametrize("K,m", [(1, 1), (1, 2), (2, 2), (2, 3), (3, 2)])
@pytest.mark.parametrize("T", [1, 2, 3, 4, 5, 6, 7])
def test_min_frames_path_count(K, m, T):
    g = lattice.build("segmentation", list(range(K)), min_frames=m)
    e = np.zeros((1, T, K))
    ref = brute_force(g, e[0])
    # compositions of T into K parts of at least m frames each
    n = T - K * m
    expected = math.comb(n + K - 1, K - 1) if n >= 0 else 0
    assert ref.num_finite_paths == expected
    log_z = lattice.forward(e, [g])[0]
    if expected == 0:
        assert log_z == NEG_INF
    else:
        np.testing.assert_allclose(log_z, math.log(expected), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("T,K,m", [(100, 10, 5), (200, 20, 3), (150, 50, 2)])
def test_min_frames_path_count_large(T, K, m):
    g = lattice.build("segmentation", list(range(K)), min_frames=m)
    log_z = lattice.forward(np.zeros((1, T, K)), [g])[0]
    n = T - K * m
    np.testing.assert_allclose(log_z, math.log(math.comb(n + K - 1, K - 1)), rtol=1e-11)


@examples(40)
@given(graph=graphs(num_classes=2), frames=st.integers(1, 5))
def test_zero_scores_count_paths(graph, frames):
    # with zero emissions, weights, start and final: log Z = log(#paths), max = 0
    g = lattice.Graph(graph.labels, graph.src, graph.dst, None,
                      np.zeros(graph.num_states), np.zeros(graph.num_states))
    e = np.zeros((1, frames, 2))
    ref = brute_force(g, e[0])
    log_z = lattice.forward(e, [g])[0]
    best = lattice.forward(e, [g], semiring="max")[0]
    if ref.num_finite_paths == 0:
        assert log_z == NEG_INF and best == NEG_INF
    else:
        np.testing.assert_allclose(log_z, math.log(ref.num_finite_paths), rtol=1e-12,
                                   atol=1e-12)
        assert best == 0.0
