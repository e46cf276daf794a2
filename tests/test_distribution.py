"""lattice.sample, lattice.kbest, lattice.entropy and lattice.token_posteriors: the
alignment distribution beyond log Z and the best path.

Checked against the brute force of reference.py (every path of small random graphs
with cycles, parallel arcs, -inf weights, variable lengths and weight overrides), by
central finite differences (entropy gradients), by a chi-square test (sampling), and
against each other: the kernel families (banded, ELL, CSR) and thread counts must give
the same bits, and kbest's first path must be viterbi's.
"""

from __future__ import annotations

import math
import re
import statistics
import subprocess
import sys
import textwrap

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lattice
from outputs import assert_same_bits
from reference import assert_scores_close, brute_force, path_score
from strategies import examples, problems

NEG_INF = -math.inf
INF = -np.inf  # as the other test modules spell a forbidden weight


# --------------------------------------------------------------------------------------
# what the brute force says about the distribution


def state_sequences(ref):
    """{state sequence: score} of the paths of nonzero probability, parallel arcs
    merged (the best of them): what kbest enumerates."""
    best = {}
    for p in ref.paths:
        if p.score > best.get(p.states, NEG_INF):
            best[p.states] = p.score
    return best


def arc_sequences(ref):
    """{(s_0, a_1, ..., a_{T-1}): probability} of the paths of nonzero probability
    (parallel arcs distinct): what sample draws from and entropy describes."""
    if ref.log_z == NEG_INF:
        return {}
    return {(p.states[0],) + p.arcs: math.exp(p.score - ref.log_z)
            for p in ref.paths if p.score > NEG_INF}


def enumerated_entropy(ref):
    return -math.fsum(q * math.log(q) for q in arc_sequences(ref).values() if q > 0)


def enumerated_entropy_gradients(ref, graph, frames, num_classes, time_dependent):
    """d H / d input for every input, by enumeration.

    ``H = log Z - E[score]``, so ``dH/dx = E[c] - (E[c] + Cov(c, score)) =
    -Cov(c, score)`` with ``c`` the number of times a path uses ``x``; computed as
    ``-sum_p q_p (score_p - E[score]) c_p`` (the centred form, no cancellation).
    """
    S, A = graph.num_states, graph.num_arcs
    g_em = np.zeros((frames, num_classes))
    g_arc = np.zeros((frames, A) if time_dependent else A)
    g_start = np.zeros(S)
    g_final = np.zeros(S)
    if ref.log_z == NEG_INF:
        return g_em, g_arc, g_start, g_final
    live = [p for p in ref.paths if p.score > NEG_INF]
    probs = [math.exp(p.score - ref.log_z) for p in live]
    mean = math.fsum(q * p.score for q, p in zip(probs, live))
    terms = {}
    for q, p in zip(probs, live):
        v = -q * (p.score - mean)
        terms.setdefault(("start", p.states[0]), []).append(v)
        terms.setdefault(("final", p.states[-1]), []).append(v)
        for t, s in enumerate(p.states):
            terms.setdefault(("em", (t, int(graph.labels[s]))), []).append(v)
        for t, a in enumerate(p.arcs, start=1):
            terms.setdefault(("arc", (t, a) if time_dependent else a), []).append(v)
    out = {"em": g_em, "arc": g_arc, "start": g_start, "final": g_final}
    for (name, key), values in terms.items():
        out[name][key] = math.fsum(values)
    return g_em, g_arc, g_start, g_final


def enumerated_token_marginals(ref, tokens, frames, num_tokens):
    """(occupancy, onsets), (T, K): the probability that frame t lies in token k, and
    that token k starts at frame t (t == 0 or the token at t - 1 differs)."""
    occupancy = {}
    onsets = {}
    if ref.log_z > NEG_INF:
        for p in ref.paths:
            if p.score == NEG_INF:
                continue
            q = math.exp(p.score - ref.log_z)
            toks = [int(tokens[s]) for s in p.states]
            for t, k in enumerate(toks):
                if k < 0:
                    continue
                occupancy.setdefault((t, k), []).append(q)
                if t == 0 or toks[t - 1] != k:
                    onsets.setdefault((t, k), []).append(q)
    arrays = []
    for table in (occupancy, onsets):
        out = np.zeros((frames, num_tokens))
        for key, values in table.items():
            out[key] = math.fsum(values)
        arrays.append(out)
    return tuple(arrays)


def weights_of(problem, b):
    """The arc, start and final weights example b runs with (overrides or the
    graph's), as path_score takes them."""
    g = problem.graphs[b]
    w = None if problem.arc_weights is None else problem.arc_weights[b]
    start = g.start if problem.start_weights is None else problem.start_weights[b]
    final = g.final if problem.final_weights is None else problem.final_weights[b]
    return w, start, final


def assert_is_path(problem, b, emissions, states, labels, arcs, score, rtol, atol,
                   msg=""):
    """``states``/``labels``/``arcs`` (T,) are a path of example b of nonzero
    probability over its length, -1 past it, and ``score`` is its score."""
    g = problem.graphs[b]
    L = problem.length(b)
    w, start, final = weights_of(problem, b)
    assert L > 0, msg
    assert np.all(states[L:] == -1) and np.all(labels[L:] == -1), msg
    assert arcs[0] == -1 and np.all(arcs[L:] == -1), msg
    s = states[:L]
    assert np.all((s >= 0) & (s < g.num_states)), msg
    np.testing.assert_array_equal(labels[:L], g.labels[s], err_msg=msg)
    assert start[s[0]] > NEG_INF and final[s[-1]] > NEG_INF, msg
    # path_score asserts that every arc joins the states it sits between
    recomputed = path_score(g, emissions[b, :L], s.tolist(), arc_weights=w,
                            start_weights=start, final_weights=final,
                            arcs=arcs[:L].tolist())
    assert recomputed > NEG_INF and np.isfinite(score), msg
    np.testing.assert_allclose(score, recomputed, rtol=rtol, atol=atol, err_msg=msg)
    return recomputed


# --------------------------------------------------------------------------------------
# kbest


def check_kbest(problem, k, emissions=None, rtol=1e-12, atol=1e-12):
    """kbest against the sorted enumeration of distinct state sequences."""
    e = problem.emissions if emissions is None else emissions
    B, T, _ = e.shape
    kb = lattice.kbest(e, problem.graphs, k, **problem.kwargs())
    assert kb.scores.shape == (B, k) and kb.scores.dtype == e.dtype
    for name in ("states", "labels", "arcs"):
        arr = getattr(kb, name)
        assert arr.shape == (B, k, T) and arr.dtype == np.int32, name
    assert not np.isnan(kb.scores).any()
    assert np.all(kb.scores[:, :-1] >= kb.scores[:, 1:]), "scores not descending"
    for b, g in enumerate(problem.graphs):
        msg = f"example {b}"
        ref = problem.reference(b, e)
        table = state_sequences(ref)
        expected = sorted(table.values(), reverse=True)[:k]
        n = len(expected)
        assert kb.num_paths[b] == n, msg
        # scores: the n best of the enumeration, then -inf
        assert_scores_close(kb.scores[b], expected + [NEG_INF] * (k - n), rtol=rtol,
                            atol=atol, err_msg=msg)
        for name in ("states", "labels", "arcs"):
            assert np.all(getattr(kb, name)[b, n:] == -1), (name, msg)
        # paths: distinct state sequences, each valid and with the score claimed
        # (so among tied scores any order is accepted) ...
        L = problem.length(b)
        w, _, _ = weights_of(problem, b)
        returned = set()
        for r in range(n):
            states = tuple(kb.states[b, r, :L].tolist())
            assert states not in returned, (msg, r, "path returned twice")
            returned.add(states)
            assert states in table, (msg, r, states)
            np.testing.assert_allclose(table[states], kb.scores[b, r], rtol=rtol,
                                       atol=atol, err_msg=f"{msg} rank {r}")
            assert_is_path(problem, b, e, kb.states[b, r], kb.labels[b, r],
                           kb.arcs[b, r], kb.scores[b, r], rtol, atol, f"{msg} r{r}")
            # ... taking, of parallel arcs, the best weight, the first listed on a
            # tie (the lowest arc id: the CSR order of arcs from one state); weights
            # closer than the rounding of alpha + weight count as tied
            for t in range(1, L):
                joining = [a for a in range(g.num_arcs)
                           if (g.src[a], g.dst[a]) == (states[t - 1], states[t])]
                weight = {a: float(w[t, a] if problem.time_dependent else w[a])
                          if w is not None else float(g.weight[a]) for a in joining}
                best = max(weight.values())
                near = [a for a in joining if weight[a] >= best - 10 * atol]
                arc = int(kb.arcs[b, r, t])
                assert arc in near, (msg, r, t, arc, weight)
                if all(weight[a] == best for a in near):
                    assert arc == near[0], (msg, r, t, arc, weight)
        # ... and every path strictly better than the last one returned is returned
        if n:
            margin = max(atol, rtol * abs(expected[-1])) * 10
            better = {s for s, v in table.items() if v > expected[-1] + margin}
            assert better <= returned, (msg, better - returned)
    return kb


def assert_first_is_viterbi(kb, ali):
    """kbest's first path is viterbi's, bit for bit: score, states, labels and arcs
    (ties included, broken as viterbi breaks them)."""
    np.testing.assert_array_equal(kb.scores[:, 0], ali.score)
    np.testing.assert_array_equal(kb.states[:, 0], ali.states)
    np.testing.assert_array_equal(kb.labels[:, 0], ali.labels)
    np.testing.assert_array_equal(kb.arcs[:, 0], ali.arcs)


@examples(50)
@given(problem=problems(overrides=True), k=st.integers(1, 8))
def test_kbest_matches_brute_force(problem, k):
    kb = check_kbest(problem, k)
    ali = lattice.viterbi(problem.emissions, problem.graphs, **problem.kwargs())
    assert_first_is_viterbi(kb, ali)


@examples(30)
@given(problem=problems(overrides=True, time_dependent=True), k=st.integers(1, 8))
def test_kbest_time_dependent_arc_weights(problem, k):
    kb = check_kbest(problem, k)
    ali = lattice.viterbi(problem.emissions, problem.graphs, **problem.kwargs())
    assert_first_is_viterbi(kb, ali)


@examples(30)
@given(problem=problems(overrides=True), k=st.integers(1, 6))
def test_kbest_float32(problem, k):
    e32 = problem.emissions.astype(np.float32)
    kb = check_kbest(problem, k, emissions=e32, rtol=1e-5, atol=1e-4)
    ali = lattice.viterbi(e32, problem.graphs, **problem.kwargs())
    assert_first_is_viterbi(kb, ali)


def test_kbest_docstring_example():
    g = lattice.build("segmentation", [0, 1])
    e = np.log([[[0.9, 0.1], [0.6, 0.4], [0.3, 0.7], [0.1, 0.9]]])
    best = lattice.kbest(e, g, 4)
    assert best.states[0, :3].tolist() == [[0, 0, 1, 1], [0, 1, 1, 1], [0, 0, 0, 1]]
    probs = [.9 * .6 * .7 * .9, .9 * .4 * .7 * .9, .9 * .6 * .3 * .9]
    np.testing.assert_allclose(np.exp(best.scores[0, :3]), probs, rtol=1e-12)
    # only C(3, 1) = 3 paths exist: the fourth is -inf with -1 states
    assert best.num_paths.tolist() == [3]
    assert best.scores[0, 3] == NEG_INF
    assert np.all(best.states[0, 3] == -1) and np.all(best.arcs[0, 3] == -1)
    assert np.all(best.labels[0, 3] == -1)


def test_kbest_fewer_paths_than_k_uniform_segmentation():
    # zero scores: all C(T - 1, K - 1) paths tie at 0; k beyond them gives -inf
    g = lattice.build("segmentation", [0, 1, 2])
    kb = lattice.kbest(np.zeros((2, 6, 3)), g, 12, lengths=[6, 4])
    assert kb.num_paths.tolist() == [math.comb(5, 2), math.comb(3, 2)]
    assert np.all(kb.scores[0, :10] == 0) and np.all(np.isneginf(kb.scores[0, 10:]))
    assert np.all(kb.scores[1, :3] == 0) and np.all(np.isneginf(kb.scores[1, 3:]))
    for b, n, L in ((0, 10, 6), (1, 3, 4)):
        paths = {tuple(p) for p in kb.states[b, :n, :L].tolist()}
        assert len(paths) == n  # distinct
        assert all(list(p) == sorted(p) for p in paths)  # monotone segmentations
        assert np.all(kb.states[b, n:] == -1) and np.all(kb.states[b, :, L:] == -1)


def test_kbest_parallel_arcs_count_once():
    # two states with three parallel arcs 0 -> 1 (weights -1, 0.5, 0.5) and a loop
    # on each: over 3 frames the state sequences are 001 and 011, whatever the arcs
    g = lattice.Graph([0, 1], [0, 0, 0, 0, 1], [0, 1, 1, 1, 1],
                      [0.0, -1.0, 0.5, 0.5, 0.0], [0.0, INF], [INF, 0.0])
    kb = lattice.kbest(np.zeros((1, 3, 2)), [g], 5)
    assert kb.num_paths.tolist() == [2]
    assert sorted(map(tuple, kb.states[0, :2].tolist())) == [(0, 0, 1), (0, 1, 1)]
    np.testing.assert_array_equal(kb.scores[0, :2], [0.5, 0.5])
    # the best of the parallel arcs, the first listed on a tie (arc 2, not 3 or 1)
    for r in range(2):
        t = 2 if kb.states[0, r, 1] == 0 else 1
        assert kb.arcs[0, r, t] == 2
    # log Z and the entropy count the three arcs as three paths each
    assert lattice.entropy(np.zeros((1, 3, 2)), [g])[0] > math.log(2)


def test_kbest_ties_are_broken_the_same_way_every_time():
    g = lattice.build("segmentation", [0, 1, 2, 0])
    e = np.zeros((3, 9, 3))
    first = lattice.kbest(e, g, 20)
    for _ in range(3):
        again = lattice.kbest(e, g, 20)
        for name in first._fields:
            np.testing.assert_array_equal(getattr(again, name), getattr(first, name))


@pytest.mark.parametrize("case", ["float64", "float32"])
def test_kbest_first_path_is_viterbis_on_rounding_ties_between_parallel_arcs(case):
    # parallel arcs whose weights differ by less than the rounding of alpha + weight:
    # kbest takes the arc viterbi takes (the first listed), not the larger weight
    if case == "float64":
        # arcs 0 and 1 join 0 -> 1; 1.0 + 1e-17 == 1.0, so viterbi keeps arc 0
        g = lattice.Graph([0, 1], [0, 0], [1, 1], [0.0, 1e-17], [1.0, INF],
                          [INF, 0.0])
        e = np.zeros((1, 2, 2))
    else:
        # float32: -78 + -0.100001 == -78 + -0.1, so viterbi keeps arc 1
        g = lattice.Graph([0, 1], [0, 0, 0], [0, 1, 1], [0.0, -0.100001, -0.1],
                          [0.0, INF], [INF, 0.0])
        e = np.full((1, 40, 2), -2.0, np.float32)
    kb = lattice.kbest(e, [g], 1)
    ali = lattice.viterbi(e, [g])
    assert ali.arcs[0, -1] == (0 if case == "float64" else 1)
    assert_first_is_viterbi(kb, ali)


def test_kbest_first_path_is_viterbis_on_rounding_ties_between_states():
    # start in 0 (score 1e-17) or 1 (score 0), both lead to 2 (emission 1.0):
    # viterbi compares alpha + weight before adding the emission, so it goes through
    # 0, although both totals round to 1.0; kbest must do the same
    g = lattice.Graph([0, 0, 1], [0, 1], [2, 2], None, [1e-17, 0.0, INF],
                      [INF, INF, 0.0])
    e = np.array([[[0.0, 1.0], [0.0, 1.0]]])
    kb = lattice.kbest(e, [g], 2)
    ali = lattice.viterbi(e, [g])
    assert ali.states[0].tolist() == [0, 2]
    assert_first_is_viterbi(kb, ali)
    assert kb.states[0, 1].tolist() == [1, 2] and kb.scores[0, 1] == 1.0


# --------------------------------------------------------------------------------------
# entropy


def check_entropy(problem, emissions=None, rtol=1e-9, atol=1e-9):
    """The entropy and its gradients against the enumeration."""
    e = problem.emissions if emissions is None else emissions
    B, T, C = e.shape
    kw = problem.kwargs()
    h = lattice.entropy(e, problem.graphs, **kw)
    res = lattice.entropy(e, problem.graphs, return_gradients=True, **kw)
    assert isinstance(res, lattice.EntropyGradients)
    assert h.shape == (B,) and h.dtype == e.dtype
    np.testing.assert_array_equal(res.entropy, h)
    gb = lattice.batch(problem.graphs)
    S_max, A_max = gb.max_states, gb.max_arcs
    arc_shape = (B, T, A_max) if problem.time_dependent else (B, A_max)
    assert res.emission_grad.shape == (B, T, C)
    assert res.arc_grad.shape == arc_shape
    assert res.start_grad.shape == res.final_grad.shape == (B, S_max)
    for arr in res:
        assert arr.dtype == e.dtype and not np.isnan(arr).any()
    for b, g in enumerate(problem.graphs):
        msg = f"example {b}"
        ref = problem.reference(b, e)
        S, A, L = g.num_states, g.num_arcs, problem.length(b)
        np.testing.assert_allclose(h[b], enumerated_entropy(ref), rtol=rtol, atol=atol,
                                   err_msg=msg)
        num_paths = len(arc_sequences(ref))
        if num_paths == 0:
            assert h[b] == 0, msg
        else:  # 0 <= H <= log(number of paths)
            assert -atol <= h[b] <= math.log(num_paths) + atol, msg
        want = enumerated_entropy_gradients(ref, g, T, C, problem.time_dependent)
        close = dict(rtol=rtol * 10, atol=atol * 10, err_msg=msg)
        np.testing.assert_allclose(res.emission_grad[b], want[0], **close)
        if problem.time_dependent:
            np.testing.assert_allclose(res.arc_grad[b, :, :A], want[1], **close)
            assert np.all(res.arc_grad[b, :, A:] == 0), msg
            assert np.all(res.arc_grad[b, 0] == 0) and np.all(res.arc_grad[b, L:] == 0)
        else:
            np.testing.assert_allclose(res.arc_grad[b, :A], want[1], **close)
            assert np.all(res.arc_grad[b, A:] == 0), msg
        np.testing.assert_allclose(res.start_grad[b, :S], want[2], **close)
        np.testing.assert_allclose(res.final_grad[b, :S], want[3], **close)
        # exact zeros in padding, past the length and without a path
        assert np.all(res.start_grad[b, S:] == 0) and np.all(res.final_grad[b, S:] == 0)
        assert np.all(res.emission_grad[b, L:] == 0), msg
        if num_paths == 0:
            for arr in res[1:]:
                assert np.all(arr[b] == 0), msg
    return res


@examples(50)
@given(problem=problems(overrides=True))
def test_entropy_matches_brute_force(problem):
    check_entropy(problem)


@examples(30)
@given(problem=problems(overrides=True, time_dependent=True))
def test_entropy_time_dependent_arc_weights(problem):
    check_entropy(problem)


@examples(40)
@given(problem=problems(overrides=True))
def test_entropy_float32_close_to_float64(problem):
    e32 = problem.emissions.astype(np.float32)
    kw = problem.kwargs()
    r32 = lattice.entropy(e32, problem.graphs, return_gradients=True, **kw)
    r64 = lattice.entropy(e32.astype(np.float64), problem.graphs, return_gradients=True,
                          **kw)
    assert r32.entropy.dtype == np.float32
    np.testing.assert_allclose(r32.entropy, r64.entropy, rtol=1e-4, atol=1e-6)
    for name in r32._fields[1:]:
        assert getattr(r32, name).dtype == np.float32, name
        np.testing.assert_allclose(getattr(r32, name), getattr(r64, name), rtol=1e-4,
                                   atol=1e-4, err_msg=name)


def test_entropy_docstring_examples():
    g = lattice.build("segmentation", [0, 1])
    np.testing.assert_allclose(lattice.entropy(np.zeros((1, 4, 2)), g), [math.log(3)],
                               rtol=1e-14)
    res = lattice.entropy(np.zeros((1, 3, 2)), g, return_gradients=True)
    np.testing.assert_allclose(res.entropy, [math.log(2)], rtol=1e-14)


@pytest.mark.parametrize("T,K", [(50, 10), (200, 40)])
def test_entropy_uniform_segmentation_closed_form(T, K):
    # zero scores: the C(T - 1, K - 1) paths are equally likely
    g = lattice.build("segmentation", list(range(K)))
    for dtype, rtol in ((np.float64, 1e-12), (np.float32, 1e-5)):
        h = lattice.entropy(np.zeros((1, T, K), dtype), [g])
        np.testing.assert_allclose(h, [math.log(math.comb(T - 1, K - 1))], rtol=rtol)


def _fd_graphs():
    """A cycle with parallel arcs and forbidden starts and ends, a CTC graph and a
    segmentation: each with a different entropy gradient everywhere."""
    cyclic = lattice.Graph(
        labels=[0, 1, 2, 1],
        src=[0, 0, 0, 1, 1, 2, 2, 3, 3, 1, 0],
        dst=[0, 1, 1, 2, 3, 0, 3, 3, 1, 1, 1],
        weight=[0.1, -0.3, 0.2, 0.0, -1.0, 0.5, -0.2, 0.3, -0.7, 0.4, 0.6],
        start=[0.0, -0.5, INF, 0.3],
        final=[INF, 0.2, 0.1, 0.0],
        tokens=[0, -1, 1, 1],
    )
    return [cyclic, lattice.build("ctc", [1, 2, 1]),
            lattice.build("segmentation", [2, 0])]


def _central_difference(f, x, h=1e-6, mask=None):
    """d f(x) / dx for every entry of x (entries outside ``mask`` left 0); all
    perturbed copies go to ``f`` in one batch (first axis), ``f`` returns (2n,)."""
    idx = np.argwhere(np.ones(x.shape, bool) if mask is None else mask)
    xs = np.repeat(x[None], 2 * len(idx), axis=0)
    for i, j in enumerate(idx):
        xs[(2 * i,) + tuple(j)] += h
        xs[(2 * i + 1,) + tuple(j)] -= h
    vals = f(xs)
    grad = np.zeros(x.shape)
    for i, j in enumerate(idx):
        grad[tuple(j)] = (vals[2 * i] - vals[2 * i + 1]) / (2 * h)
    return grad


FD_TOL = dict(rtol=1e-6, atol=1e-7)


@pytest.mark.parametrize("time_dependent", [False, True])
def test_entropy_gradients_finite_differences(time_dependent):
    rng = np.random.default_rng(30)
    gs = _fd_graphs()
    gb = lattice.batch(gs)
    B, T, C = len(gs), 6, 3
    lens = np.array([6, 5, 4])
    e = rng.normal(size=(B, T, C))
    w_shape = (B, T, gb.max_arcs) if time_dependent else (B, gb.max_arcs)
    w = rng.normal(scale=0.5, size=w_shape)
    start = np.where(np.isfinite(gb.start), rng.normal(size=gb.start.shape), INF)
    final = np.where(np.isfinite(gb.final), rng.normal(size=gb.final.shape), INF)
    res = lattice.entropy(e, gb, lens, arc_weights=w, start_weights=start,
                          final_weights=final, return_gradients=True)
    assert np.all(res.entropy > 0.1)
    for b, g in enumerate(gs):
        S, A, L = g.num_states, g.num_arcs, lens[b]
        inputs = {"e": e[b], "w": w[b][..., :A], "start": start[b, :S],
                  "final": final[b, :S]}

        def entropy_of(name):
            def f(xs):
                n = len(xs)
                args = {key: np.repeat(v[None], n, axis=0) for key, v in inputs.items()}
                args[name] = xs
                return lattice.entropy(args["e"], [g] * n, [L] * n,
                                       arc_weights=args["w"],
                                       start_weights=args["start"],
                                       final_weights=args["final"])
            return f

        num = _central_difference(entropy_of("e"), inputs["e"])
        np.testing.assert_allclose(res.emission_grad[b], num, **FD_TOL)
        assert np.all(num[L:] == 0)  # frames past the length change nothing
        num = _central_difference(entropy_of("w"), inputs["w"])
        np.testing.assert_allclose(res.arc_grad[b][..., :A], num, **FD_TOL)
        if time_dependent:
            assert np.all(num[0] == 0) and np.all(num[L:] == 0)
        for name, grad in (("start", res.start_grad), ("final", res.final_grad)):
            x = inputs[name]
            num = _central_difference(entropy_of(name), x, mask=np.isfinite(x))
            np.testing.assert_allclose(grad[b, :S], num, **FD_TOL, err_msg=name)


# --------------------------------------------------------------------------------------
# sampling: every draw a path, and the right frequencies


def assert_forwards_log_z(log_z, forward):
    """log Z of a distribution function is forward's: bit for bit in float64; for
    float32 inputs both keep the contract (the distribution kernels run them in
    float64, a banded forward lowers its rows in float32), so within 1e-6."""
    if log_z.dtype == np.float64:
        np.testing.assert_array_equal(log_z, forward)
        return
    finite = np.isfinite(forward)
    np.testing.assert_array_equal(np.isfinite(log_z), finite)
    np.testing.assert_array_equal(log_z[~finite], forward[~finite])
    np.testing.assert_allclose(log_z[finite], forward[finite], rtol=1e-6, atol=1e-6)


def check_samples(problem, num_samples, seed, emissions=None, rtol=1e-9, atol=1e-9):
    e = problem.emissions if emissions is None else emissions
    B, T, _ = e.shape
    kw = problem.kwargs()
    s = lattice.sample(e, problem.graphs, num_samples, seed=seed, **kw)
    assert isinstance(s, lattice.Samples)
    assert s.scores.shape == (B, num_samples) and s.scores.dtype == e.dtype
    assert s.log_z.shape == (B,) and s.log_z.dtype == e.dtype
    for name in ("states", "labels", "arcs"):
        arr = getattr(s, name)
        assert arr.shape == (B, num_samples, T) and arr.dtype == np.int32, name
    assert not np.isnan(s.scores).any()
    assert_forwards_log_z(s.log_z, lattice.forward(e, problem.graphs, **kw))
    for b in range(B):
        msg = f"example {b}"
        ref = problem.reference(b, e)
        probs = arc_sequences(ref)
        assert bool(s.feasible[b]) == bool(probs), msg
        if not probs:
            assert s.log_z[b] == NEG_INF and np.all(np.isneginf(s.scores[b])), msg
            for name in ("states", "labels", "arcs"):
                assert np.all(getattr(s, name)[b] == -1), (name, msg)
            continue
        assert_scores_close(s.log_z[b : b + 1], [ref.log_z], rtol=rtol, atol=atol)
        L = problem.length(b)
        for n in range(num_samples):
            assert_is_path(problem, b, e, s.states[b, n], s.labels[b, n], s.arcs[b, n],
                           s.scores[b, n], rtol, atol, f"{msg} sample {n}")
            key = (int(s.states[b, n, 0]),) + tuple(s.arcs[b, n, 1:L].tolist())
            assert probs.get(key, 0) > 0, (msg, n, "drew a path of probability 0")
    return s


@examples(50)
@given(problem=problems(overrides=True), seed=st.integers(0, 2**64 - 1))
def test_samples_are_paths_with_their_scores(problem, seed):
    check_samples(problem, 8, seed)


@examples(30)
@given(problem=problems(overrides=True, time_dependent=True),
       seed=st.integers(0, 2**32))
def test_samples_time_dependent_arc_weights(problem, seed):
    check_samples(problem, 8, seed)


@examples(30)
@given(problem=problems(overrides=True), seed=st.integers(0, 2**32))
def test_samples_float32(problem, seed):
    check_samples(problem, 8, seed, emissions=problem.emissions.astype(np.float32),
                  rtol=1e-5, atol=1e-4)


def chi2_threshold(dof, p=1e-6):
    """The chi-square quantile exceeded with probability ``p`` under the null, by the
    Wilson-Hilferty approximation: (X / k)^(1/3) is nearly normal with mean
    1 - 2 / (9k) and variance 2 / (9k), so the quantile is
    k (1 - 2 / (9k) + z sqrt(2 / (9k)))^3 with z the normal quantile at 1 - p.
    (test_chi2_threshold checks it against the exact tail.)"""
    z = statistics.NormalDist().inv_cdf(1 - p)
    c = 2 / (9 * dof)
    return dof * (1 - c + z * math.sqrt(c)) ** 3


def chi2_tail(x, dof):
    """The exact chi-square survival function P(X > x), in closed form (the
    incomplete gamma function at integer and half-integer order)."""
    h = x / 2
    if dof % 2 == 0:
        return math.exp(-h) * math.fsum(h**i / math.factorial(i)
                                        for i in range(dof // 2))
    return math.erfc(math.sqrt(h)) + math.exp(-h) * math.fsum(
        h ** (i - 0.5) / math.gamma(i + 0.5) for i in range(1, (dof + 1) // 2))


def test_chi2_threshold():
    # the approximation is good enough for a 1e-6 test at the degrees of freedom
    # that occur here: the exact tail beyond it is within a factor 3 of 1e-6
    # (conservative at 1 degree of freedom)
    for dof in list(range(1, 10)) + [12, 20, 35, 50, 80, 150]:
        tail = chi2_tail(chi2_threshold(dof), dof)
        assert 1e-7 < tail < 3e-6, (dof, tail)
    assert abs(chi2_tail(3.841458820694124, 1) - 0.05) < 1e-12
    assert abs(chi2_tail(18.307038053275146, 10) - 0.05) < 1e-12


def chi_square(counts, probs, num_samples, min_expected=5.0):
    """Pearson's statistic and degrees of freedom of observed ``counts`` {key: n}
    against ``probs`` {key: p}; cells expected fewer than ``min_expected`` times
    are pooled into one."""
    assert set(counts) <= set(probs), set(counts) - set(probs)
    observed, expected = [], []
    pooled_obs, pooled_exp = 0, 0.0
    for key, p in probs.items():
        if num_samples * p >= min_expected:
            observed.append(counts.get(key, 0))
            expected.append(num_samples * p)
        else:
            pooled_obs += counts.get(key, 0)
            pooled_exp += num_samples * p
    if pooled_exp > 0:
        observed.append(pooled_obs)
        expected.append(pooled_exp)
    stat = math.fsum((o - x) ** 2 / x for o, x in zip(observed, expected))
    return stat, len(expected) - 1


def sampled_counts(s, b, length):
    """{(s_0, a_1, ..., a_{L-1}): count} of the samples of example b."""
    keys = np.concatenate([s.states[b, :, :1], s.arcs[b, :, 1:length]], axis=1)
    rows, counts = np.unique(keys, axis=0, return_counts=True)
    return {tuple(r.tolist()): int(c) for r, c in zip(rows, counts)}


CHI_GRAPH = lattice.Graph(
    labels=[0, 1, 2],
    src=[0, 0, 1, 1, 2, 2, 0],
    dst=[0, 1, 1, 2, 2, 0, 1],  # arcs 1 and 6 are parallel, 2 -> 0 closes a cycle
    weight=[0.3, -0.2, 0.1, 0.0, -0.5, 0.4, 0.7],
    start=[0.0, 0.2, INF],
    final=[INF, 0.0, 0.3],
)


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("weights", ["graph", "overrides", "time"])
def test_sample_frequencies_chi_square(weights, dtype):
    N = 200_000
    rng = np.random.default_rng(31)
    g = CHI_GRAPH
    B, T = 2, 5
    e = rng.normal(scale=0.7, size=(B, T, 3)).astype(dtype)
    lens = np.array([5, 4])
    kw = {}
    if weights == "overrides":
        kw["arc_weights"] = rng.normal(scale=0.5, size=(B, g.num_arcs))
        kw["arc_weights"][1, 2] = INF
        kw["start_weights"] = np.array([[0.0, 0.2, INF], [-0.4, 0.0, 0.5]])
        kw["final_weights"] = np.array([[INF, 0.0, 0.3], [0.5, INF, 0.0]])
    elif weights == "time":
        kw["arc_weights"] = rng.normal(scale=0.5, size=(B, T, g.num_arcs))
        kw["arc_weights"][0, 2, 2] = INF
    s = lattice.sample(e, [g, g], N, lens, seed=2024, **kw)
    assert np.all(s.feasible)
    for b in range(B):
        ref = brute_force(g, e[b].astype(np.float64), lens[b],
                          **{k: v[b] for k, v in kw.items()})
        probs = arc_sequences(ref)
        counts = sampled_counts(s, b, lens[b])
        assert sum(counts.values()) == N
        stat, dof = chi_square(counts, probs, N)
        assert dof >= 10, dof  # enough paths for the test to mean something
        assert stat < chi2_threshold(dof), (b, stat, dof)
        # the test has power: the same draws are far off the distribution in which
        # arc 0 weighs 0.05 more
        w = (kw["arc_weights"][b] if "arc_weights" in kw else g.weight).copy()
        w[..., 0] += 0.05
        shifted = brute_force(g, e[b].astype(np.float64), lens[b], arc_weights=w,
                              start_weights=kw.get("start_weights", [None] * B)[b],
                              final_weights=kw.get("final_weights", [None] * B)[b])
        stat_shifted, dof_shifted = chi_square(counts, arc_sequences(shifted), N)
        assert stat_shifted > chi2_threshold(dof_shifted), stat_shifted


# --------------------------------------------------------------------------------------
# sampling: seeds and determinism


def _seed_problem():
    rng = np.random.default_rng(32)
    gs = [CHI_GRAPH, lattice.build("ctc", [1, 2, 2]), lattice.build("segmentation",
                                                                     [0, 2, 1])]
    e = rng.normal(size=(3, 8, 3))
    return e, gs, np.array([8, 7, 6])


def _sample(seed, n=50):
    e, gs, lens = _seed_problem()
    return lattice.sample(e, gs, n, lens, seed=seed)


def _same(a, b):
    return all(np.array_equal(x, y) for x, y in zip(a, b))


def test_same_seed_same_samples():
    a = _sample(7)
    assert _same(a, _sample(7))
    assert _same(a, _sample(np.int64(7)))
    assert _same(a, _sample(np.uint8(7)))
    # an int seeds a SeedSequence of it
    assert _same(a, _sample(np.random.SeedSequence(7)))


def test_different_seeds_differ():
    a = _sample(7)
    for seed in (8, 0, 2**64 - 1, 2**100, np.random.SeedSequence(8)):
        b = _sample(seed)
        assert not np.array_equal(a.states, b.states), seed
        np.testing.assert_array_equal(a.log_z, b.log_z)


def test_more_samples_keep_the_first_ones():
    # each (example, sample) has its own stream: asking for more samples does not
    # change the first ones
    few, many = _sample(7, n=20), _sample(7, n=50)
    for name in ("scores", "states", "labels", "arcs"):
        np.testing.assert_array_equal(getattr(many, name)[:, :20],
                                      getattr(few, name), err_msg=name)
    np.testing.assert_array_equal(many.log_z, few.log_z)


def test_generator_seed():
    # two generators in the same state give the same samples; the generator
    # advances, so the next call differs
    gen = np.random.default_rng(5)
    a = _sample(gen)
    b = _sample(gen)
    assert not np.array_equal(a.states, b.states)
    assert _same(a, _sample(np.random.default_rng(5)))


def test_no_seed_draws_fresh_entropy():
    a, b = _sample(None), _sample(None)
    assert not np.array_equal(a.states, b.states)
    for s in (a, b):  # still paths of the distribution
        assert np.all(s.feasible)


@pytest.fixture
def parallel(cpu_options):
    """The parallel kernels really run (small batches otherwise run on the calling
    thread); the thread count is restored afterwards."""
    cpu_options(serial_work=0)
    yield
    lattice.set_num_threads(None)


def test_samples_independent_of_thread_count(parallel):
    e, gs, lens = _seed_problem()
    gs = gs * 4  # 12 examples over the threads
    e = np.concatenate([e] * 4)
    lens = np.concatenate([lens] * 4)
    with lattice.num_threads(1):
        one = lattice.sample(e, gs, 40, lens, seed=11)
    with lattice.num_threads(2):
        two = lattice.sample(e, gs, 40, lens, seed=11)
    for name, x, y in zip(one._fields, one, two):
        assert x.tobytes() == y.tobytes(), name
    # each example draws from its own streams: copies of one example differ
    assert not np.array_equal(one.states[0], one.states[3])


# --------------------------------------------------------------------------------------
# token posteriors


def check_token_posteriors(problem, emissions=None, atol=1e-10):
    e = problem.emissions if emissions is None else emissions
    B, T, _ = e.shape
    kw = problem.kwargs()
    K = max((int(g.tokens.max(initial=-1)) for g in problem.graphs), default=-1) + 1
    plain = lattice.token_posteriors(e, problem.graphs, **kw)
    post = lattice.token_posteriors(e, problem.graphs, onsets=True, **kw)
    assert plain.onsets is None
    assert post.occupancy.shape == post.onsets.shape == (B, T, K)
    assert post.occupancy.dtype == post.onsets.dtype == e.dtype
    np.testing.assert_array_equal(plain.occupancy, post.occupancy)
    assert_forwards_log_z(post.log_z, lattice.forward(e, problem.graphs, **kw))
    lengths = np.full(B, T) if problem.lengths is None else problem.lengths
    np.testing.assert_array_equal(post.lengths, lengths)
    non_token = post.non_token
    assert non_token.shape == (B, T) and non_token.dtype == e.dtype
    for b, g in enumerate(problem.graphs):
        msg = f"example {b}"
        ref = problem.reference(b, e)
        L = problem.length(b)
        occupancy, onsets = enumerated_token_marginals(ref, g.tokens, T, K)
        np.testing.assert_allclose(post.occupancy[b], occupancy, rtol=0, atol=atol,
                                   err_msg=msg)
        np.testing.assert_allclose(post.onsets[b], onsets, rtol=0, atol=atol,
                                   err_msg=msg)
        # exact zeros past the length and without a path
        assert np.all(post.occupancy[b, L:] == 0) and np.all(post.onsets[b, L:] == 0)
        assert np.all(non_token[b, L:] == 0), msg
        if ref.log_z == NEG_INF:
            assert np.all(post.occupancy[b] == 0) and np.all(post.onsets[b] == 0), msg
            assert np.all(non_token[b] == 0), msg
        else:
            total = post.occupancy[b, :L].sum(axis=1) + non_token[b, :L]
            np.testing.assert_allclose(total, 1.0, rtol=0, atol=max(atol, 1e-12) * 10,
                                       err_msg=msg)
            # non_token is the occupancy of the states of no token
            blank = np.zeros(T)
            for p in ref.paths:
                if p.score > NEG_INF:
                    q = math.exp(p.score - ref.log_z)
                    for t, s_ in enumerate(p.states):
                        blank[t] += q * (g.tokens[s_] < 0)
            np.testing.assert_allclose(non_token[b], blank, rtol=0,
                                       atol=max(atol, 1e-12) * 10, err_msg=msg)
    return post


@examples(50)
@given(problem=problems(overrides=True))
def test_token_posteriors_match_brute_force(problem):
    check_token_posteriors(problem)


@examples(30)
@given(problem=problems(overrides=True, time_dependent=True))
def test_token_posteriors_time_dependent_arc_weights(problem):
    check_token_posteriors(problem)


@examples(30)
@given(problem=problems(overrides=True))
def test_token_posteriors_float32(problem):
    check_token_posteriors(problem, emissions=problem.emissions.astype(np.float32),
                           atol=1e-5)


def test_token_posteriors_docstring_example():
    g = lattice.build("ctc", [1, 2])
    e = np.log([[[.1, .8, .1], [.6, .2, .2], [.1, .1, .8]]])
    post = lattice.token_posteriors(e, g, onsets=True)
    ref = brute_force(g, e[0])
    occupancy, onsets = enumerated_token_marginals(ref, g.tokens, 3, 2)
    np.testing.assert_allclose(post.occupancy[0], occupancy, atol=1e-14)
    np.testing.assert_allclose(post.onsets[0], onsets, atol=1e-14)
    assert post.occupancy[0].round(2).tolist() == [[0.98, 0.0], [0.21, 0.21],
                                                   [0.0, 0.98]]
    assert post.non_token[0].round(2).tolist() == [0.02, 0.57, 0.02]


def test_token_posteriors_without_tokens():
    # no state has a token: K = 0 and every frame is non-token
    g = lattice.Graph([0, 1], [0, 0, 1], [0, 1, 1], None, [0.0, INF], [INF, 0.0],
                      tokens=[-1, -1])
    post = lattice.token_posteriors(np.zeros((2, 4, 2)), [g, g], [4, 2], onsets=True)
    assert post.occupancy.shape == post.onsets.shape == (2, 4, 0)
    np.testing.assert_array_equal(post.non_token, [[1, 1, 1, 1], [1, 1, 0, 0]])


def test_token_posteriors_num_tokens_is_the_batch_max():
    gs = [lattice.build("ctc", [1]), lattice.build("ctc", [1, 2, 1, 2]),
          lattice.build("segmentation", [0, 1])]
    post = lattice.token_posteriors(np.zeros((3, 9, 3)), gs)
    assert post.occupancy.shape == (3, 9, 4)
    assert np.all(post.occupancy[0, :, 1:] == 0)
    assert np.all(post.occupancy[2, :, 2:] == 0)


# --------------------------------------------------------------------------------------
# examples with no path, zero frames, frames past the length


def _infeasible_batch():
    gs = [
        lattice.build("ctc", [1, 2]),  # feasible
        lattice.build("segmentation", [0, 1, 2]),  # needs 3 frames, gets 2
        lattice.build("ctc", [1, 1]),  # needs 3 frames, gets 2
        lattice.Graph([0, 1], [0], [1], None, [0.0, 0.0], [INF, INF]),  # no final
        lattice.Graph([0, 1], [0, 1], [1, 1], [INF, 0.0], [0.0, INF], [INF, 0.0]),
        lattice.build("ctc", [2]),  # length 0
        lattice.Graph([], [], [], None, [], []),  # no states
        lattice.build("segmentation", [1, 2]),  # feasible
    ]
    lens = np.array([6, 2, 2, 6, 5, 0, 6, 4])
    return gs, lens, [1, 2, 3, 4, 5, 6], [0, 7]


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_infeasible_examples(dtype):
    gs, lens, infeasible, feasible = _infeasible_batch()
    e = np.random.default_rng(33).normal(size=(len(gs), 6, 3)).astype(dtype)
    s = lattice.sample(e, gs, 5, lens, seed=0)
    assert s.feasible.tolist() == [b in feasible for b in range(len(gs))]
    assert np.all(np.isneginf(s.log_z[infeasible]))
    assert np.all(np.isneginf(s.scores[infeasible]))
    kb = lattice.kbest(e, gs, 4, lens)
    assert np.all(np.isneginf(kb.scores[infeasible]))
    assert np.all(kb.num_paths[infeasible] == 0)
    for out in (s, kb):
        for name in ("states", "labels", "arcs"):
            assert np.all(getattr(out, name)[infeasible] == -1), name
    res = lattice.entropy(e, gs, lens, return_gradients=True)
    assert np.all(res.entropy[infeasible] == 0)
    assert np.all(res.entropy[feasible] > 0)
    for arr in res[1:]:
        assert np.all(arr[infeasible] == 0)
    np.testing.assert_array_equal(lattice.entropy(e, gs, lens), res.entropy)
    post = lattice.token_posteriors(e, gs, lens, onsets=True)
    assert np.all(post.occupancy[infeasible] == 0)
    assert np.all(post.onsets[infeasible] == 0)
    assert np.all(post.non_token[infeasible] == 0)
    assert np.all(np.isneginf(post.log_z[infeasible]))
    # the feasible rows are those of the examples run alone
    for b in feasible:
        one = (e[b : b + 1], [gs[b]])
        alone = lattice.kbest(*one, 4, lens[b : b + 1])
        np.testing.assert_array_equal(kb.scores[b], alone.scores[0])
        np.testing.assert_array_equal(kb.states[b], alone.states[0])
        np.testing.assert_array_equal(res.entropy[b],
                                      lattice.entropy(*one, lens[b : b + 1])[0])
        alone = lattice.token_posteriors(*one, lens[b : b + 1]).occupancy[0]
        np.testing.assert_array_equal(post.occupancy[b, :, : alone.shape[1]], alone)
        assert np.all(post.occupancy[b, :, alone.shape[1] :] == 0)


def test_zero_frames_and_empty_batch():
    g = lattice.build("ctc", [1])
    e = np.zeros((2, 0, 2))
    s = lattice.sample(e, [g, g], 3, seed=0)
    assert s.states.shape == (2, 3, 0) and np.all(np.isneginf(s.scores))
    assert not s.feasible.any()
    kb = lattice.kbest(e, [g, g], 3)
    assert kb.states.shape == (2, 3, 0) and np.all(np.isneginf(kb.scores))
    res = lattice.entropy(e, [g, g], return_gradients=True)
    assert np.all(res.entropy == 0) and res.emission_grad.shape == (2, 0, 2)
    post = lattice.token_posteriors(e, [g, g], onsets=True)
    assert post.occupancy.shape == (2, 0, 1) and post.non_token.shape == (2, 0)
    e = np.zeros((0, 4, 2))
    assert lattice.sample(e, [], 3, seed=0).states.shape == (0, 3, 4)
    assert lattice.kbest(e, [], 3).scores.shape == (0, 3)
    assert lattice.entropy(e, []).shape == (0,)
    assert lattice.token_posteriors(e, []).occupancy.shape == (0, 4, 0)


def _all_distribution_outputs(e, graphs, lengths, k=6, num_samples=16, **weights):
    """Every output of the four functions, by name."""
    out = {}
    kb = lattice.kbest(e, graphs, k, lengths, **weights)
    out.update({f"kbest_{n}": v for n, v in zip(kb._fields, kb)})
    s = lattice.sample(e, graphs, num_samples, lengths, seed=5, **weights)
    out.update({f"sample_{n}": v for n, v in zip(s._fields, s)})
    res = lattice.entropy(e, graphs, lengths, return_gradients=True, **weights)
    out.update({f"entropy_{n}": v for n, v in zip(res._fields, res)})
    out["entropy"] = lattice.entropy(e, graphs, lengths, **weights)
    post = lattice.token_posteriors(e, graphs, lengths, onsets=True, **weights)
    out.update(occupancy=post.occupancy, onsets=post.onsets, tp_log_z=post.log_z,
               non_token=post.non_token)
    return out


def test_frames_past_the_length_are_not_read():
    gs, lens, _, _ = _infeasible_batch()
    e = np.random.default_rng(34).normal(size=(len(gs), 6, 3))
    clean = _all_distribution_outputs(e, gs, lens)
    for junk in (1e3, np.nan, np.inf):
        dirty = e.copy()
        for b, L in enumerate(lens):
            dirty[b, L:] = junk
        assert_same_bits(_all_distribution_outputs(dirty, gs, lens), clean)


# --------------------------------------------------------------------------------------
# NaN and +inf emissions


CALLS = {
    "sample": lambda e, gs, lens: lattice.sample(e, gs, 4, lens, seed=0),
    "kbest": lambda e, gs, lens: lattice.kbest(e, gs, 3, lens),
    "entropy": lambda e, gs, lens: lattice.entropy(e, gs, lens),
    "entropy_gradients": lambda e, gs, lens: lattice.entropy(e, gs, lens,
                                                             return_gradients=True),
    "token_posteriors": lambda e, gs, lens: lattice.token_posteriors(e, gs, lens),
    "onsets": lambda e, gs, lens: lattice.token_posteriors(e, gs, lens, onsets=True),
}

_NAN_CYCLIC = lattice.Graph([0, 1, 2], [0, 0, 1, 1, 2, 2, 0], [0, 1, 1, 2, 2, 0, 1],
                            None, [0.0, 0.2, INF], [INF, 0.0, 0.3])
# (graph, frame, class): cells the graph reads on a path of nonzero probability
# (the score of that path is NaN / +inf) ...
NAN_ON_A_PATH = {
    "ctc_banded": (lattice.build("ctc", [1, 2]), 1, 1),
    "ctc_start": (lattice.build("ctc", [1, 2]), 0, 1),
    "cyclic": (_NAN_CYCLIC, 1, 1),
    "cyclic_last_frame": (_NAN_CYCLIC, 3, 0),
}
# ... and cells of the graph's columns no path of nonzero probability reaches
NAN_OFF_THE_PATHS = {
    "ctc_band_skipped": (lattice.build("ctc", [1, 2]), 0, 2),
    "cyclic_forbidden_start": (_NAN_CYCLIC, 0, 2),
}


@pytest.mark.parametrize("dtype", [np.float64, np.float32])
@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("case", list(NAN_ON_A_PATH))
@pytest.mark.parametrize("name", list(CALLS))
def test_nan_on_a_path_raises(name, case, value, dtype):
    g, t, c = NAN_ON_A_PATH[case]
    e = np.zeros((2, 4, 4), dtype)
    e[1, t, c] = value
    gs = [lattice.build("ctc", [1]), g]
    with pytest.raises(FloatingPointError, match=r"example\(s\) \[1\] is NaN or \+inf"):
        CALLS[name](e, gs, [4, 4])
    # as the engine does
    with pytest.raises(FloatingPointError):
        lattice.forward(e, gs, [4, 4])


@pytest.mark.parametrize("value", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("case", list(NAN_OFF_THE_PATHS))
@pytest.mark.parametrize("name", list(CALLS))
def test_nan_off_the_paths_raises(name, case, value):
    # a NaN or +inf the graph reads raises even if no path with a finite score
    # passes through it, as in lattice.forward
    g, t, c = NAN_OFF_THE_PATHS[case]
    e = np.zeros((1, 4, 4))
    e[0, t, c] = value
    with pytest.raises(FloatingPointError, match="NaN or \\+inf"):
        CALLS[name](e, [g], [4])
    with pytest.raises(FloatingPointError):
        lattice.forward(e, [g], [4])


@pytest.mark.parametrize("name", list(CALLS))
def test_nan_where_the_graph_does_not_read(name):
    # a class no state uses, and frames past the length: no error, same results
    g = lattice.build("ctc", [1, 2])
    e = np.random.default_rng(35).normal(size=(1, 5, 4))
    clean = CALLS[name](e, [g], [4])
    dirty = e.copy()
    dirty[0, :, 3] = np.nan
    dirty[0, 4] = np.inf
    again = CALLS[name](dirty, [g], [4])
    if isinstance(clean, np.ndarray):
        clean, again = [clean], [again]
    elif isinstance(clean, lattice.TokenPosteriors):
        clean, again = [clean.occupancy], [again.occupancy]
    for x, y in zip(clean, again):
        np.testing.assert_array_equal(x, y)


# --------------------------------------------------------------------------------------
# bad inputs


def _small():
    return np.zeros((1, 3, 2)), lattice.build("segmentation", [0, 1])


@pytest.mark.parametrize("k", [0, -1, np.int64(0)])
def test_kbest_rejects_k_below_one(k):
    e, g = _small()
    with pytest.raises(ValueError, match="k must be >= 1"):
        lattice.kbest(e, g, k)


@pytest.mark.parametrize("k", [2.0, 1.5, np.float64(3)])
def test_kbest_rejects_float_k(k):
    e, g = _small()
    with pytest.raises(TypeError, match="k must be an int"):
        lattice.kbest(e, g, k)


@pytest.mark.parametrize("k", [True, False, np.True_])
def test_kbest_rejects_bool_k(k):
    e, g = _small()
    with pytest.raises(TypeError, match="k must be an int"):
        lattice.kbest(e, g, k)


@pytest.mark.parametrize("k", ["3", None, [3]])
def test_kbest_rejects_k_of_other_types(k):
    e, g = _small()
    with pytest.raises(TypeError, match="k must be an int"):
        lattice.kbest(e, g, k)


def test_kbest_accepts_numpy_ints():
    e, g = _small()
    for k in (np.int64(2), np.uint8(2), np.int32(2)):
        assert lattice.kbest(e, g, k).scores.shape == (1, 2)


def test_kbest_rejects_k_beyond_int32():
    e, g = _small()
    with pytest.raises(ValueError, match=r"k is 2147483648, beyond int32"):
        lattice.kbest(e, g, 2**31)


def test_kbest_rejects_k_whose_workspace_overflows_int32():
    # 1024 states all lead into one: a candidate per predecessor per frame and
    # path, 2 * 2047 * 1024 * 1025 > 2**31 ints, for outputs of only 25 MB
    n = 1024
    g = lattice.Graph([0] * n + [1], list(range(n)) + [n], [n] * (n + 1), None,
                      [0.0] * n + [INF], [INF] * n + [0.0])
    e = np.zeros((1, 1024, 2))
    with pytest.raises(ValueError, match=r"k = 2048 is too large for these inputs.*"
                                         r"1024 frames.*int32"):
        lattice.kbest(e, [g], 2048)
    assert lattice.kbest(e[:, :4], [g], 2048).num_paths.tolist() == [n]


@pytest.mark.skipif(sys.platform != "linux", reason="caps the address space (Linux)")
def test_kbest_rejects_huge_k_before_allocating(tmp_path):
    # in a child process whose address space is capped at 4 GiB, so that an
    # allocation of the outputs fails at once instead of filling memory
    code = textwrap.dedent("""
        import resource
        resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))
        import numpy as np, lattice
        try:
            lattice.kbest(np.zeros((1, 1000, 2)), lattice.build("ctc", [1]), 2**30)
        except Exception as exc:
            print(type(exc).__name__, exc)
    """)
    out = subprocess.run([sys.executable, "-c", code], cwd=tmp_path, text=True,
                         capture_output=True, timeout=120)
    assert out.returncode == 0, out.stderr
    message = r"ValueError k = 1073741824 is too large.*1000 frames"
    assert re.match(message, out.stdout), out.stdout


@pytest.mark.parametrize("n", [0, -2])
def test_sample_rejects_num_samples_below_one(n):
    e, g = _small()
    with pytest.raises(ValueError, match="num_samples must be >= 1"):
        lattice.sample(e, g, n, seed=0)


@pytest.mark.parametrize("n", [2.0, True, "4", None])
def test_sample_rejects_non_int_num_samples(n):
    e, g = _small()
    with pytest.raises(TypeError, match="num_samples must be an int"):
        lattice.sample(e, g, n, seed=0)


def test_sample_rejects_num_samples_beyond_int32():
    e, g = _small()
    with pytest.raises(ValueError, match="num_samples is 2147483648, beyond int32"):
        lattice.sample(e, g, 2**31, seed=0)


@pytest.mark.parametrize("seed", [-1, np.int64(-5)])
def test_sample_rejects_negative_seed(seed):
    e, g = _small()
    with pytest.raises(ValueError, match=r"seed must be >= 0, got -\d"):
        lattice.sample(e, g, 2, seed=seed)


@pytest.mark.parametrize("seed", [1.0, 0.5, np.float64(3)])
def test_sample_rejects_float_seed(seed):
    e, g = _small()
    with pytest.raises(TypeError, match="seed must be None, a non-negative int.*"
                                        "got float"):
        lattice.sample(e, g, 2, seed=seed)


@pytest.mark.parametrize("seed", ["7", True, [1, 2], np.random.RandomState(0)])
def test_sample_rejects_seed_of_other_types(seed):
    e, g = _small()
    with pytest.raises(TypeError, match="seed must be None, a non-negative int, a "
                                        "numpy SeedSequence or a numpy Generator"):
        lattice.sample(e, g, 2, seed=seed)


@pytest.mark.parametrize("name", list(CALLS))
def test_shared_input_validation(name):
    # the four share lattice.forward's validation (lattice.problem)
    g = lattice.build("ctc", [1, 2])
    f = CALLS[name]
    with pytest.raises(TypeError, match="emissions must be float32 or float64"):
        f(np.zeros((1, 4, 3), np.int64), [g], None)
    with pytest.raises(ValueError, match="got 2 graphs for a batch of 1"):
        f(np.zeros((1, 4, 3)), [g, g], None)
    with pytest.raises(ValueError, match="uses label 2, but emissions have only 2"):
        f(np.zeros((1, 4, 2)), [g], None)
    with pytest.raises(ValueError, match="lengths"):
        f(np.zeros((1, 4, 3)), [g], [5])


# --------------------------------------------------------------------------------------
# CTC graphs at moderate size: the same bits from every kernel family and thread count


def _ctc_problem(dtype, weights):
    rng = np.random.default_rng(36)
    B, T, C = 4, 50, 6
    targets = [rng.integers(1, C, size=n) for n in (8, 3, 10, 1)]
    targets[0][3] = targets[0][2]  # a repeat, which needs a blank between
    gb = lattice.build_batch("ctc", targets)
    e = np.log(rng.dirichlet(np.ones(C), size=(B, T))).astype(dtype)
    lens = np.array([50, 41, 33, 50])
    kw = {}
    if weights == "static":
        kw["arc_weights"] = rng.normal(scale=0.3, size=(B, gb.max_arcs))
        kw["start_weights"] = np.where(np.isfinite(gb.start), -0.2, INF)
        kw["final_weights"] = np.where(np.isfinite(gb.final), rng.normal(
            size=gb.final.shape), INF)
    elif weights == "time":
        kw["arc_weights"] = rng.normal(scale=0.3, size=(B, T, gb.max_arcs))
    return e, gb, lens, targets, kw


@pytest.mark.parametrize("weights", ["graph", "static", "time"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32])
def test_ctc_same_bits_across_kernel_families_and_threads(dtype, weights, parallel,
                                                          cpu_options, monkeypatch):
    e, gb, lens, targets, kw = _ctc_problem(dtype, weights)
    # record which family each call runs: (banded, ELL width)
    cpu = lattice.backends.get_backend("cpu")
    families = []
    full_alpha_inputs = cpu._full_alpha_inputs

    def spy(problem):
        D, band_weight, cap = full_alpha_inputs(problem)
        families.append((D > 0, cap))
        return D, band_weight, cap

    monkeypatch.setattr(cpu, "_full_alpha_inputs", spy)

    def run(threads, **options):
        families.clear()
        with cpu.options(**options), lattice.num_threads(threads):
            out = _all_distribution_outputs(e, gb, lens, k=12, num_samples=64, **kw)
        assert len(set(families)) == 1, families
        return out, families[0]

    banded = weights != "time"  # time-dependent weights leave the band table
    expected, family = run(1)
    assert family[0] == banded and (family[1] > 0) == (not banded), family
    for threads, options, want in (
        (2, {}, family),
        (1, {"banded": False}, (False, True)),  # ELL
        (2, {"banded": False}, (False, True)),
        (1, {"banded": False, "ell_max_degree": 0}, (False, False)),  # CSR
        (2, {"banded": False, "ell_max_degree": 0}, (False, False)),
    ):
        out, used = run(threads, **options)
        assert (used[0], used[1] > 0) == (bool(want[0]), bool(want[1])), (options, used)
        assert_same_bits(out, expected)

    # and the results mean what they should
    kb_scores = expected["kbest_scores"]
    assert np.all(np.isfinite(kb_scores))
    assert np.all(kb_scores[:, :-1] >= kb_scores[:, 1:])
    ali = lattice.viterbi(e, gb, lens, **kw)
    np.testing.assert_array_equal(expected["kbest_scores"][:, 0], ali.score)
    np.testing.assert_array_equal(expected["kbest_states"][:, 0], ali.states)
    np.testing.assert_array_equal(expected["kbest_arcs"][:, 0], ali.arcs)
    assert_forwards_log_z(expected["sample_log_z"], lattice.forward(e, gb, lens, **kw))
    slack = 1e-4 * np.abs(ali.score[:, None]) if dtype == np.float32 else 0
    assert np.all(expected["sample_scores"] <= expected["kbest_scores"][:, :1] + slack)
    assert np.all(expected["entropy"] > 0)
    tol = 1e-4 if dtype == np.float32 else 1e-10
    for b, target in enumerate(targets):
        L = lens[b]
        occupancy = expected["occupancy"][b, :L, : len(target)]
        np.testing.assert_allclose(occupancy.sum(axis=1) + expected["non_token"][b, :L],
                                   1, atol=tol)
        # each token of the target starts exactly once on every path
        onsets = expected["onsets"][b, :, : len(target)]
        np.testing.assert_allclose(onsets.sum(axis=0), 1, atol=tol)
        # sampled paths are CTC paths of the target: the labels, blanks and
        # repeats removed, are the target
        for n in range(0, 64, 7):
            labels = expected["sample_labels"][b, n, :L]
            collapsed = [int(v) for i, v in enumerate(labels)
                         if v != 0 and (i == 0 or v != labels[i - 1])]
            assert collapsed == target.tolist()


def test_the_counter_based_generator_is_uniform_and_its_streams_independent():
    from lattice import _core

    n = 200_000
    draws = np.arange(n, dtype=np.uint64)
    a, b, again = np.empty(n), np.empty(n), np.empty(n)
    _core.uniform_draws(12345, 7, draws, a)
    _core.uniform_draws(12345, 8, draws, b)  # the next sample's stream
    _core.uniform_draws(12345, 7, draws, again)
    np.testing.assert_array_equal(a, again)
    assert a.min() >= 0.0 and a.max() < 1.0
    # mean and variance of U(0, 1) within 5 standard errors
    assert abs(a.mean() - 0.5) < 5 * np.sqrt(1 / 12 / n)
    assert abs(a.var() - 1 / 12) < 5 * np.sqrt(1 / 180 / n)
    # equal-width bins, chi-square against uniform; neighbouring streams and
    # neighbouring draws uncorrelated
    counts = np.bincount((a * 100).astype(int), minlength=100)
    expected = n / 100
    assert ((counts - expected) ** 2 / expected).sum() < chi2_threshold(99)
    assert abs(np.corrcoef(a, b)[0, 1]) < 5 / np.sqrt(n)
    assert abs(np.corrcoef(a[:-1], a[1:])[0, 1]) < 5 / np.sqrt(n)
