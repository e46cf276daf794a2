"""lattice.forward_backward: log Z and every gradient, against brute force and
finite differences."""

from __future__ import annotations

import math

import numpy as np
import pytest
from hypothesis import given

import lattice
from reference import assert_scores_close, brute_force
from strategies import examples, problems

NEG_INF = -math.inf
TOL = dict(rtol=1e-9, atol=1e-9)


def check_against_reference(problem, fb, dtype=np.float64, rtol=1e-9, atol=1e-9,
                            emissions=None):
    """Compare every output of forward_backward with the brute force, example by
    example, including the exact zeros in padding and past each length."""
    B, T, C = problem.emissions.shape
    gb = lattice.batch(problem.graphs)
    S_max, A_max = gb.max_states, gb.max_arcs
    assert fb.score.shape == (B,) and fb.score.dtype == dtype
    assert fb.emission_grad.shape == (B, T, C) and fb.emission_grad.dtype == dtype
    arc_shape = (B, T, A_max) if problem.time_dependent else (B, A_max)
    assert fb.arc_grad.shape == arc_shape and fb.arc_grad.dtype == dtype
    assert fb.start_grad.shape == (B, S_max) and fb.start_grad.dtype == dtype
    assert fb.final_grad.shape == (B, S_max) and fb.final_grad.dtype == dtype
    for b, g in enumerate(problem.graphs):
        ref = problem.reference(b, emissions)
        S, A, L = g.num_states, g.num_arcs, problem.length(b)
        msg = f"example {b}"
        assert_scores_close(fb.score[b : b + 1], [ref.log_z], rtol=rtol, atol=atol,
                            err_msg=msg)
        close = dict(rtol=rtol, atol=atol, err_msg=msg)
        np.testing.assert_allclose(fb.emission_grad[b], ref.emission_grad, **close)
        np.testing.assert_allclose(fb.start_grad[b, :S], ref.start_grad, **close)
        np.testing.assert_allclose(fb.final_grad[b, :S], ref.final_grad, **close)
        if problem.time_dependent:
            np.testing.assert_allclose(fb.arc_grad[b, :, :A], ref.arc_grad, **close)
            assert np.all(fb.arc_grad[b, :, A:] == 0), msg
            assert np.all(fb.arc_grad[b, 0] == 0), msg  # no arc enters frame 0
            assert np.all(fb.arc_grad[b, L:] == 0), msg
        else:
            np.testing.assert_allclose(fb.arc_grad[b, :A], ref.arc_grad, **close)
            assert np.all(fb.arc_grad[b, A:] == 0), msg
        # padding and frames past the length hold exact zeros
        assert np.all(fb.start_grad[b, S:] == 0) and np.all(fb.final_grad[b, S:] == 0)
        assert np.all(fb.emission_grad[b, L:] == 0), msg
        if ref.log_z == NEG_INF:
            assert np.all(fb.emission_grad[b] == 0), msg
            assert np.all(fb.arc_grad[b] == 0), msg
            assert np.all(fb.start_grad[b] == 0) and np.all(fb.final_grad[b] == 0)
        else:
            # posteriors: one class per frame, one start, one end, L - 1 arcs
            sums = dict(rtol=0, atol=max(atol, 1e-12) * 10, err_msg=msg)
            np.testing.assert_allclose(fb.emission_grad[b, :L].sum(axis=1), 1.0, **sums)
            np.testing.assert_allclose(fb.start_grad[b].sum(), 1.0, **sums)
            np.testing.assert_allclose(fb.final_grad[b].sum(), 1.0, **sums)
            np.testing.assert_allclose(fb.arc_grad[b].sum(), L - 1, **sums)
    for name in ("score", "emission_grad", "arc_grad", "start_grad", "final_grad"):
        assert not np.isnan(getattr(fb, name)).any(), name


@examples(60)
@given(problem=problems(overrides=True))
def test_gradients_match_brute_force(problem):
    fb = lattice.forward_backward(problem.emissions, problem.graphs, **problem.kwargs())
    check_against_reference(problem, fb)
    # the score is the forward (log) score: bit for bit from the log-space kernels,
    # within the numerical contract from the probability-space ones (banded graphs)
    fwd = lattice.forward(problem.emissions, problem.graphs, semiring="log",
                          **problem.kwargs())
    assert_scores_close(fb.score, fwd, rtol=1e-12, atol=1e-12)
    with lattice.backends.get_backend("cpu").options(probability_space=False):
        fb = lattice.forward_backward(problem.emissions, problem.graphs,
                                      **problem.kwargs())
    np.testing.assert_array_equal(fb.score, fwd)


@examples(50)
@given(problem=problems(overrides=True, time_dependent=True))
def test_time_dependent_arc_gradients(problem):
    fb = lattice.forward_backward(problem.emissions, problem.graphs, **problem.kwargs())
    check_against_reference(problem, fb)


@examples(40)
@given(problem=problems(overrides=True))
def test_float32_close_to_float64(problem):
    e32 = problem.emissions.astype(np.float32)
    fb32 = lattice.forward_backward(e32, problem.graphs, **problem.kwargs())
    # against the brute force on the same (float32-rounded) emissions ...
    check_against_reference(problem, fb32, dtype=np.float32, rtol=1e-4, atol=1e-4,
                            emissions=e32)
    # ... and against the float64 engine
    fb64 = lattice.forward_backward(e32.astype(np.float64), problem.graphs,
                                    **problem.kwargs())
    assert_scores_close(fb32.score, fb64.score, rtol=1e-5, atol=1e-4)
    for name in ("emission_grad", "arc_grad", "start_grad", "final_grad"):
        np.testing.assert_allclose(getattr(fb32, name), getattr(fb64, name),
                                   rtol=1e-4, atol=1e-4, err_msg=name)


def test_docstring_example_segmentation():
    g = lattice.build("segmentation", [0, 1])
    fb = lattice.forward_backward(np.zeros((1, 3, 2)), [g])
    np.testing.assert_allclose(fb.score, [math.log(2)], rtol=1e-15)
    np.testing.assert_allclose(fb.emission_grad[0],
                               [[1.0, 0.0], [0.5, 0.5], [0.0, 1.0]], atol=1e-15)
    np.testing.assert_allclose(fb.arc_grad[0], [0.5, 1.0, 0.5], atol=1e-15)
    np.testing.assert_allclose(fb.start_grad[0], [1.0, 0.0], atol=1e-15)
    np.testing.assert_allclose(fb.final_grad[0], [0.0, 1.0], atol=1e-15)


# --------------------------------------------------------------------------------------
# central finite differences of lattice.forward


def _fd_graphs():
    cyclic = lattice.Graph(
        labels=[0, 1, 2, 1],
        src=[0, 0, 0, 1, 1, 2, 2, 3, 3, 1],
        dst=[0, 1, 1, 2, 3, 0, 3, 3, 1, 1],
        weight=[0.1, -0.3, 0.2, 0.0, -1.0, 0.5, -0.2, 0.3, -0.7, 0.4],
        start=[0.0, -0.5, -np.inf, -np.inf],
        final=[-np.inf, 0.2, -np.inf, 0.0],
    )
    return [lattice.build("ctc", [1, 2, 1]), cyclic,
            lattice.build("segmentation", [2, 0])]


def _central_difference(f, x, h=1e-6, mask=None):
    """d f(x).sum() / dx for every entry of x (entries outside ``mask`` left 0).

    All perturbed copies are evaluated in one batched call of ``f``.
    """
    idx = np.argwhere(np.ones(x.shape, bool) if mask is None else mask)
    n = len(idx)
    xs = np.repeat(x[None], 2 * n, axis=0)
    for i, j in enumerate(idx):
        xs[(2 * i,) + tuple(j)] += h
        xs[(2 * i + 1,) + tuple(j)] -= h
    vals = f(xs)  # (2n,)
    grad = np.zeros(x.shape)
    for i, j in enumerate(idx):
        grad[tuple(j)] = (vals[2 * i] - vals[2 * i + 1]) / (2 * h)
    return grad


def _logz(emissions, graphs, lengths, **kw):
    return lattice.forward(emissions, graphs, lengths, semiring="log", **kw)


def test_finite_differences_emissions():
    rng = np.random.default_rng(10)
    gs = _fd_graphs()
    B, T, C = len(gs), 6, 3
    e = rng.normal(size=(B, T, C))
    lens = np.array([6, 5, 4])
    fb = lattice.forward_backward(e, gs, lens)
    assert np.all(np.isfinite(fb.score))
    for b, g in enumerate(gs):
        num = _central_difference(
            lambda xs: _logz(xs, [g] * len(xs), [lens[b]] * len(xs)), e[b]
        )
        np.testing.assert_allclose(fb.emission_grad[b], num, rtol=1e-6, atol=1e-7)
        # frames past the length do not influence log Z at all
        assert np.all(num[lens[b]:] == 0)


def test_finite_differences_arc_start_final_weights():
    rng = np.random.default_rng(11)
    gs = _fd_graphs()
    gb = lattice.batch(gs)
    B, T, C = len(gs), 5, 3
    e = rng.normal(size=(B, T, C))
    w = rng.normal(size=(B, gb.max_arcs))
    start = np.where(np.isfinite(gb.start), rng.normal(size=gb.start.shape), -np.inf)
    final = np.where(np.isfinite(gb.final), rng.normal(size=gb.final.shape), -np.inf)
    kw = dict(arc_weights=w, start_weights=start, final_weights=final)
    fb = lattice.forward_backward(e, gb, **kw)
    for b, g in enumerate(gs):
        S, A = g.num_states, g.num_arcs
        wb, sb, fb_ = w[b : b + 1, :A], start[b : b + 1, :S], final[b : b + 1, :S]
        eb = e[b : b + 1]

        def logz(ws=wb, ss=sb, fs=fb_):
            n = max(len(ws), len(ss), len(fs))
            rep = lambda x: np.repeat(x, n // len(x), 0)  # noqa: E731
            return _logz(rep(eb), [g] * n, None, arc_weights=rep(ws),
                         start_weights=rep(ss), final_weights=rep(fs))

        tol = dict(rtol=1e-6, atol=1e-7)
        np.testing.assert_allclose(
            fb.arc_grad[b, :A], _central_difference(lambda x: logz(ws=x), wb[0]), **tol)
        np.testing.assert_allclose(
            fb.start_grad[b, :S],
            _central_difference(lambda x: logz(ss=x), sb[0], mask=np.isfinite(sb[0])),
            **tol)
        np.testing.assert_allclose(
            fb.final_grad[b, :S],
            _central_difference(lambda x: logz(fs=x), fb_[0], mask=np.isfinite(fb_[0])),
            **tol)
        assert np.all(fb.arc_grad[b, A:] == 0) and np.all(fb.start_grad[b, S:] == 0)


def test_finite_differences_time_dependent_arc_weights():
    rng = np.random.default_rng(12)
    gs = _fd_graphs()
    gb = lattice.batch(gs)
    B, T, C = len(gs), 5, 3
    e = rng.normal(size=(B, T, C))
    w = rng.normal(size=(B, T, gb.max_arcs))
    lens = np.array([5, 4, 5])
    fb = lattice.forward_backward(e, gb, lens, arc_weights=w)
    assert fb.arc_grad.shape == (B, T, gb.max_arcs)
    for b, g in enumerate(gs):
        A = g.num_arcs

        def f(ws):
            n = len(ws)
            return _logz(np.repeat(e[b : b + 1], n, 0), [g] * n, [lens[b]] * n,
                         arc_weights=ws)

        num = _central_difference(f, w[b, :, :A])  # every entry, row 0 included
        np.testing.assert_allclose(fb.arc_grad[b, :, :A], num, rtol=1e-6, atol=1e-7)
        assert np.all(num[0] == 0) and np.all(num[lens[b]:] == 0)
        assert np.all(fb.arc_grad[b, :, A:] == 0)


# --------------------------------------------------------------------------------------
# consistency and infeasible examples


def test_time_dependent_grads_sum_to_static():
    rng = np.random.default_rng(13)
    gs = _fd_graphs()
    gb = lattice.batch(gs)
    e = rng.normal(size=(len(gs), 7, 3))
    lens = np.array([7, 3, 6])
    w = rng.normal(size=(len(gs), gb.max_arcs))
    static = lattice.forward_backward(e, gb, lens, arc_weights=w)
    tiled = np.repeat(w[:, None, :], 7, axis=1)
    timed = lattice.forward_backward(e, gb, lens, arc_weights=tiled)
    np.testing.assert_allclose(timed.arc_grad.sum(axis=1), static.arc_grad, **TOL)
    # static weights run in probability space, time-dependent ones in log space
    np.testing.assert_allclose(timed.score, static.score, rtol=1e-12, atol=0)
    for name in ("emission_grad", "start_grad", "final_grad"):
        np.testing.assert_allclose(getattr(timed, name), getattr(static, name), **TOL)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infeasible_examples_have_zero_gradients(dtype):
    rng = np.random.default_rng(14)
    inf = -np.inf
    gs = [
        lattice.build("ctc", [1, 2]),  # feasible
        lattice.build("segmentation", [0, 1, 2]),  # needs 3 frames, gets 2
        lattice.build("ctc", [1, 1]),  # needs 3 frames, gets 2
        lattice.Graph([0, 1], [0], [1], None, [0.0, 0.0], [inf, inf]),  # no final
        lattice.Graph([0, 1], [0, 1], [1, 1], [inf, 0.0], [0.0, inf], [inf, 0.0]),
        lattice.build("ctc", [2]),  # length 0
        lattice.Graph([], [], [], None, [], []),  # no states
        lattice.build("segmentation", [1, 2]),  # feasible
    ]
    e = rng.normal(size=(len(gs), 6, 3)).astype(dtype)
    lens = np.array([6, 2, 2, 6, 5, 0, 6, 4])
    fb = lattice.forward_backward(e, gs, lens)
    infeasible = [1, 2, 3, 4, 5, 6]
    assert np.all(np.isneginf(fb.score[infeasible]))
    assert np.all(np.isfinite(fb.score[[0, 7]]))
    for b in infeasible:
        assert np.all(fb.emission_grad[b] == 0), b
        assert np.all(fb.arc_grad[b] == 0), b
        assert np.all(fb.start_grad[b] == 0), b
        assert np.all(fb.final_grad[b] == 0), b
    assert np.all(fb.emission_grad[7, 4:] == 0)
    for arr in fb:
        assert not np.isnan(arr).any()
    # feasible rows equal the same examples run alone
    for b in (0, 7):
        alone = lattice.forward_backward(e[b : b + 1], [gs[b]], lens[b : b + 1])
        np.testing.assert_array_equal(fb.score[b], alone.score[0])
        np.testing.assert_array_equal(fb.emission_grad[b], alone.emission_grad[0])
        A, S = gs[b].num_arcs, gs[b].num_states
        np.testing.assert_array_equal(fb.arc_grad[b, :A], alone.arc_grad[0])
        np.testing.assert_array_equal(fb.start_grad[b, :S], alone.start_grad[0])


def test_neg_inf_emissions_get_zero_gradient():
    g = lattice.build("ctc", [1, 2])
    e = np.log(np.full((1, 5, 3), 1 / 3))
    e[0, 2, 1] = -np.inf
    e[0, 0, 0] = -np.inf
    fb = lattice.forward_backward(e, [g])
    assert np.isfinite(fb.score[0])
    assert fb.emission_grad[0, 2, 1] == 0 and fb.emission_grad[0, 0, 0] == 0
    ref = brute_force(g, e[0])
    np.testing.assert_allclose(fb.emission_grad[0], ref.emission_grad, **TOL)
    np.testing.assert_allclose(fb.arc_grad[0], ref.arc_grad, **TOL)


def test_zero_frames_and_empty_batch():
    g = lattice.build("ctc", [1])
    fb = lattice.forward_backward(np.zeros((2, 0, 2)), [g, g])
    assert np.all(np.isneginf(fb.score))
    assert fb.emission_grad.shape == (2, 0, 2)
    assert np.all(fb.arc_grad == 0) and np.all(fb.start_grad == 0)
    fb = lattice.forward_backward(np.zeros((0, 4, 2)), [])
    assert fb.score.shape == (0,) and fb.emission_grad.shape == (0, 4, 2)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_non_contiguous_emissions(dtype):
    rng = np.random.default_rng(15)
    gs = _fd_graphs()
    tbc = rng.normal(size=(6, len(gs), 3)).astype(dtype)
    view = tbc.transpose(1, 0, 2)
    flipped = np.ascontiguousarray(view[:, ::-1])[:, ::-1]
    lens = [6, 4, 5]
    expected = lattice.forward_backward(np.ascontiguousarray(view), gs, lens)
    for v in (view, flipped):
        assert not v.flags.c_contiguous
        out = lattice.forward_backward(v, gs, lens)
        for name, a, b in zip(out._fields, out, expected):
            np.testing.assert_array_equal(a, b, err_msg=name)


@pytest.mark.parametrize("T,K", [(50, 10), (200, 50)])
def test_segmentation_posteriors_closed_form(T, K):
    # zero scores: every path equally likely. Symbol k occupies frame t in
    # C(t, k) * C(T - 1 - t, K - 1 - k) of the C(T - 1, K - 1) paths.
    g = lattice.build("segmentation", list(range(K)))
    fb = lattice.forward_backward(np.zeros((1, T, K)), [g])
    t = np.arange(T)[:, None]
    k = np.arange(K)[None, :]
    log_post = (log_comb_array(t, k) + log_comb_array(T - 1 - t, K - 1 - k)
                - log_comb_array(T - 1, K - 1))
    np.testing.assert_allclose(fb.emission_grad[0], np.exp(log_post), rtol=1e-9,
                               atol=1e-12)
    np.testing.assert_allclose(fb.score[0], math.log(math.comb(T - 1, K - 1)),
                               rtol=1e-12)


def log_comb_array(n, k):
    """log C(n, k) elementwise for integer arrays, -inf where k < 0 or k > n."""
    n = np.asarray(n, dtype=np.float64)
    k = np.asarray(k, dtype=np.float64)
    out = np.full(np.broadcast(n, k).shape, -np.inf)
    ok = (k >= 0) & (k <= n)
    nn, kk = np.broadcast_arrays(n, k)
    lg = np.vectorize(math.lgamma)
    out[ok] = lg(nn[ok] + 1) - lg(kk[ok] + 1) - lg(nn[ok] - kk[ok] + 1)
    return out
