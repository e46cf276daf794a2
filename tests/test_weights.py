"""Weighted-time variants (lattice.weights) against brute-force path enumeration."""

import math

import numpy as np
import pytest

import lattice
from reference import enumerate_paths, logsumexp


def _delay_cost(graph, states, penalty):
    """penalty * t for every frame t at which the path enters a new target symbol."""
    tokens = graph.tokens
    cost = 0.0
    for t in range(1, len(states)):
        prev, cur = tokens[states[t - 1]], tokens[states[t]]
        if cur >= 0 and cur != prev:
            cost += penalty * t
    return cost


def _brute_force_log_z(graph, emissions, penalty):
    scores = []
    for states, arcs in enumerate_paths(graph, emissions.shape[0]):
        score = graph.start[states[0]] + graph.final[states[-1]]
        score += sum(emissions[t, graph.labels[s]] for t, s in enumerate(states))
        score += sum(graph.weight[a] for a in arcs)
        scores.append(score - _delay_cost(graph, states, penalty))
    return logsumexp(scores)


@pytest.mark.parametrize(
    "name, target, options",
    [
        ("ctc", [1, 2], {}),
        ("ctc", [2, 2, 1], {}),
        ("ctc", [1], {"blank": 3}),
        ("segmentation", [0, 1, 2], {}),
        ("segmentation", [1, 1], {"min_frames": 2}),
    ],
)
@pytest.mark.parametrize("penalty", [0.0, 0.3, 2.0])
def test_delay_penalty_matches_brute_force(name, target, options, penalty):
    rng = np.random.default_rng(len(target) * 7 + int(penalty * 10))
    graph = lattice.build(name, target, **options)
    frames = 6
    emissions = rng.standard_normal((1, frames, 4))
    weights = lattice.weights.delay_penalty([graph], frames, penalty)
    assert weights.shape == (1, frames, graph.num_arcs)
    got = lattice.forward(emissions, [graph], arc_weights=weights)[0]
    expected = _brute_force_log_z(graph, emissions[0], penalty)
    assert math.isclose(got, expected, rel_tol=1e-9, abs_tol=1e-9)


def test_delay_penalty_moves_the_best_path_earlier():
    graph = lattice.build("ctc", [1])
    emissions = np.zeros((1, 5, 2))  # every alignment scores the same without penalty
    weights = lattice.weights.delay_penalty([graph], 5, 1.0)
    best = lattice.viterbi(emissions, [graph], arc_weights=weights)
    assert best.segments(0)[0][1] == 0  # the symbol starts at the first frame
    assert best.score[0] == 0.0


def test_delay_penalty_keeps_the_graph_weights():
    b = lattice.GraphBuilder()
    s0 = b.add_state(0, start=0.0, token=0)
    s1 = b.add_state(1, final=0.0, token=1)
    b.add_arc(s0, s0, -0.25)
    b.add_arc(s0, s1, -0.5)
    b.add_arc(s1, s1, -0.75)
    weights = lattice.weights.delay_penalty([b.build()], 3, 0.1)
    np.testing.assert_allclose(
        weights[0], [[-0.25, -0.5, -0.75], [-0.25, -0.6, -0.75], [-0.25, -0.7, -0.75]]
    )


def test_entering_arcs_ignores_padding():
    short, long = lattice.build("ctc", [1]), lattice.build("ctc", [1, 2])
    mask = lattice.weights.entering_arcs([short, long])
    assert mask.shape == (2, long.num_arcs)
    assert not mask[0, short.num_arcs :].any()
    assert mask[0].sum() == 1 and mask[1].sum() == 3  # blank->1 ; blank->2, 1->2 skip


@pytest.mark.parametrize(
    "kwargs, match",
    [
        ({"num_frames": -1, "penalty": 0.1}, "num_frames"),
        ({"num_frames": 2.5, "penalty": 0.1}, "num_frames"),
        ({"num_frames": 3, "penalty": -0.1}, "penalty"),
        ({"num_frames": 3, "penalty": float("nan")}, "penalty"),
        ({"num_frames": 3, "penalty": "0.1"}, "penalty"),
    ],
)
def test_delay_penalty_bad_arguments(kwargs, match):
    with pytest.raises(ValueError, match=match):
        lattice.weights.delay_penalty([lattice.build("ctc", [1])], **kwargs)


@pytest.mark.parametrize("seed", range(4))
def test_frame_weights_match_brute_force(seed):
    torch = pytest.importorskip("torch")
    from reference import brute_force

    from lattice.torch import lattice_score

    rng = np.random.default_rng(seed)
    graph = lattice.build("ctc", [1, 2]) if seed % 2 else lattice.build("segmentation", [0, 2, 1])
    frames = 6
    em = rng.standard_normal((frames, 3))
    em[rng.random(em.shape) < 0.15] = -np.inf
    w = rng.uniform(0.2, 2.0, size=frames)
    w[seed % frames] = 0.0  # an ignored frame, whatever its emissions
    em[seed % frames, :] = -np.inf
    weighted = np.where(w[:, None] == 0, 0.0, em * np.where(w == 0, 1.0, w)[:, None])
    ref = brute_force(graph, weighted)
    em_t = torch.from_numpy(em[None]).requires_grad_()
    w_t = torch.from_numpy(w[None]).requires_grad_()
    score = lattice_score(em_t, [graph], frame_weights=w_t)
    assert score.item() == pytest.approx(ref.log_z, rel=1e-9, abs=1e-9)
    score.backward()
    # d logZ / d w_t = sum_c posterior[t, c] * E[t, c]  (0 where E = -inf: no mass there)
    finite = np.where(np.isfinite(em), em, 0.0)
    np.testing.assert_allclose(w_t.grad[0].numpy(), (ref.emission_grad * finite).sum(1), atol=1e-9)
    np.testing.assert_allclose(em_t.grad[0].numpy(), ref.emission_grad * w[:, None], atol=1e-9)
