"""Forward-backward of general graphs in probability space (_graph_prob.pxi.tp).

The contract of tests/test_probability_space.py, for graphs off the banded path
(the ELL and CSR layouts, backward jumps, loops, MMI-style dense graphs): every
output within 1e-6 of the float64 log-space result for float32 inputs, much closer
for float64 ones; the same bits at every thread count and with checkpoints; and
the examples the kernel's checks refuse are the float64 log-space kernel's result,
bit for bit. The float64 log-space kernels the reference runs are themselves
checked against brute-force enumeration in tests/test_forward_backward.py.
"""

import numpy as np
import pytest

import lattice
from lattice.backends import cpu as cpu_module
from test_probability_space import (  # noqa: F401 (refused: a fixture)
    _assert_only_refused, _assert_within_contract, _log_softmax, _reference, refused)

CPU = lattice.backends.get_backend("cpu")


def _random_graph(rng, classes, forward_only=False):
    """A general graph of 1 - 14 states: arcs between random pairs of states (only
    from a lower or the same state with ``forward_only``), some of them -inf,
    random start and final weights, states of random classes."""
    S = int(rng.integers(1, 15))
    A = int(rng.integers(0, 4 * S + 1))
    src, dst = rng.integers(0, S, size=A), rng.integers(0, S, size=A)
    if forward_only:
        src, dst = np.minimum(src, dst), np.maximum(src, dst)
    weight = rng.normal(size=A)
    weight[rng.random(A) < 0.1] = -np.inf
    start = np.where(rng.random(S) < 0.4, rng.normal(size=S), -np.inf)
    final = np.where(rng.random(S) < 0.4, rng.normal(size=S), -np.inf)
    start[0], final[-1] = 0.0, 0.0
    return lattice.Graph(rng.integers(0, classes, size=S), src, dst,
                         _float32_exact(weight), _float32_exact(start),
                         _float32_exact(final))


def _left_to_right(rng, num_states, classes, jump=4):
    """A left-to-right graph off the banded path: a self-loop and an advance into
    every state, and skips of ``jump`` states (wider than any band); it starts in
    state 0 and ends in the last state."""
    s = np.arange(num_states)
    src = np.concatenate([s, s[:-1], s[:-jump]])
    dst = np.concatenate([s, s[1:], s[jump:]])
    start = np.full(num_states, -np.inf)
    final = np.full(num_states, -np.inf)
    start[0], final[-1] = 0.0, 0.0
    return lattice.Graph(rng.integers(0, classes, size=num_states), src, dst,
                         _float32_exact(0.1 * rng.normal(size=src.size)), start, final)


def _with_jumps_back(rng, num_states, classes):
    """A graph that is not left-to-right: a self-loop and an advance into every
    state, and an arc into it from a random state anywhere (as the asv suite's
    random general graph)."""
    s = np.arange(num_states)
    src = np.concatenate([s, s[:-1], rng.integers(0, num_states, num_states)])
    dst = np.concatenate([s, s[1:], s])
    start = np.full(num_states, -np.inf)
    final = np.full(num_states, -np.inf)
    start[:2], final[-2:] = 0.0, 0.0
    return lattice.Graph(rng.integers(0, classes, size=num_states), src, dst,
                         _float32_exact(0.1 * rng.normal(size=src.size)), start, final)


def _float32_exact(x):
    """Weights that float32 holds exactly: the contract is against the float64
    result of the inputs as the float32 problem holds them (its weights in float32,
    as its emissions)."""
    return np.asarray(x, np.float32).astype(np.float64)


@pytest.fixture
def general_kernel(monkeypatch):
    """How many times the general probability-space kernel ran."""
    calls = []
    real = cpu_module.CPUBackend._forward_backward_graph_prob

    def spy(self, p, checkpoint):
        calls.append(len(p.lengths))
        return real(self, p, checkpoint)

    monkeypatch.setattr(cpu_module.CPUBackend, "_forward_backward_graph_prob", spy)
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("forward_only", [False, True])
@pytest.mark.parametrize("seed", range(4))
def test_random_general_graphs_within_contract(dtype, forward_only, seed,
                                               general_kernel):
    """Random graphs (loops, jumps back, -inf weights, start and final weights spread
    over states, states without arcs), -inf emissions, lengths 0 .. T, examples no
    path fits."""
    rng = np.random.default_rng(seed)
    classes, frames, size = 6, 30, 12
    graphs = [_random_graph(rng, classes, forward_only) for _ in range(size)]
    gb = lattice.batch(graphs)
    assert gb.band is None
    e = np.log(rng.dirichlet(np.ones(classes), size=(size, frames))).astype(dtype)
    e[rng.random(e.shape) < 0.05] = -np.inf
    lengths = rng.integers(0, frames + 1, size=size)
    got = lattice.forward_backward(e, gb, lengths)
    assert general_kernel == [size]
    assert got.score.dtype == dtype and got.emission_grad.dtype == dtype
    _assert_within_contract(got, _reference(e, gb, lengths), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_overrides_and_shared_graphs_within_contract(dtype, refused):
    """Arc, start and final weights per example, on a batch whose examples share
    two distinct graphs (the kernel reads weight row weight_index[b])."""
    rng = np.random.default_rng(7)
    one, two = _left_to_right(rng, 9, 5), _random_graph(rng, 5)
    graphs = [one, two, one, one, two]
    gb = lattice.batch(graphs)
    assert len(gb.distinct) == 2
    e = _log_softmax(rng.normal(size=(5, 25, 5))).astype(dtype)
    per_example = {"arc_weights": (5, gb.max_arcs), "start_weights": (5, gb.max_states),
                   "final_weights": (5, gb.max_states)}
    per_example = {k: rng.normal(size=v).astype(dtype) for k, v in per_example.items()}
    for weights in ({}, per_example):
        got = lattice.forward_backward(e, gb, **weights)
        _assert_within_contract(got, _reference(e, graphs, **weights), dtype)
    assert refused == []


@pytest.mark.parametrize("case", ["random", "long", "slack", "ergodic"])
def test_float32_gradients_are_exact(case, refused):
    """Long inputs, where float32 log space loses the posteriors: a graph with jumps
    back (untilted), a long left-to-right graph with few frames to spare (the tilt
    speeds the forward up) and one with many (the tilt slows it down), and a dense
    ergodic graph as MMI's denominators are; within 1e-6 of float64, without
    falling back."""
    rng = np.random.default_rng(11)
    C = 16
    if case == "random":
        T, graphs = 1000, [_with_jumps_back(rng, 200, C) for _ in range(4)]
    elif case == "long":
        T, graphs = 4000, [_left_to_right(rng, 3000, C, jump=3)]
    elif case == "slack":
        T, graphs = 4000, [_left_to_right(rng, 300, C)]
    else:
        S = 12
        src, dst = np.divmod(np.arange(S * S), S)
        graphs = [lattice.Graph(rng.integers(0, C, size=S), src, dst,
                                _float32_exact(rng.normal(size=S * S)), np.zeros(S),
                                np.zeros(S))]
        T = 3000
    e = _log_softmax(rng.normal(size=(len(graphs), T, C))).astype(np.float32)
    got = lattice.forward_backward(e, graphs)
    want = _reference(e, graphs)
    _assert_within_contract(got, want, np.float32)
    assert refused == []
    # what the float32 log-space kernels give there
    with CPU.options(probability_space=False):
        old = lattice.forward_backward(e, graphs)
    assert np.abs(old.emission_grad - want.emission_grad).max() > 1e-5


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_refused_examples_are_the_exact_log_space_result(dtype, refused):
    """Confident but wrong predictions (logits x 30 on a long left-to-right graph)
    drive the forward and backward rows apart beyond double's range: the kernel
    refuses those examples, and their results are the float64 log-space kernel's,
    bit for bit (cast to the input dtype)."""
    rng = np.random.default_rng(3)
    graphs = [_left_to_right(rng, 200, 16) for _ in range(3)]
    e = _log_softmax(30 * rng.normal(size=(3, 1000, 16))).astype(dtype)
    got = lattice.forward_backward(e, graphs)
    assert refused == [[0, 1, 2]]
    want = _reference(e, graphs)
    for name in got._fields:
        np.testing.assert_array_equal(getattr(got, name),
                                      getattr(want, name).astype(dtype), err_msg=name)


@pytest.mark.parametrize("make", ["emission", "arc", "start", "final"])
def test_inputs_beyond_double_are_refused_up_front(make, refused):
    """A probability the recursion would flush to zero (an emission 800 nats below
    its frame's best, an arc, start or final weight of -800) refuses the example
    before any recursion; its result is the log-space one, and the other examples
    stay on the fast path."""
    rng = np.random.default_rng(5)
    graphs = [_left_to_right(rng, 8, 4, jump=3) for _ in range(3)]
    gb = lattice.batch(graphs)
    e = _log_softmax(rng.normal(size=(3, 20, 4)))
    weights = {}
    if make == "emission":
        e[1, 5, gb.labels[1, 2]] = -800.0
    elif make == "arc":
        w = np.zeros((3, gb.max_arcs))
        w[1, 3] = -800.0
        weights["arc_weights"] = w
    else:
        x = np.full((3, gb.max_states), -np.inf)
        x[:, 0 if make == "start" else -1] = 0.0
        x[1, 1 if make == "start" else -2] = -800.0
        weights[f"{make}_weights"] = x
    _assert_only_refused(e, gb, gb, 1, refused, weights)


def test_infeasible_nan_and_arcless_examples(refused):
    """No complete path: -inf and zero gradients, as the log-space kernels give (the
    exact recomputation says so); a batch of graphs without any arc; NaN emissions:
    the engine's FloatingPointError."""
    e = np.log(np.full((3, 4, 3), 1 / 3))
    no_path = lattice.Graph([1, 2], [0], [1], [0.0], [0.0, -np.inf], [0.0, -np.inf])
    two = lattice.Graph([1, 2], [0], [1], [0.0], [0.0, -np.inf], [-np.inf, 0.0])
    alone = lattice.Graph([1], [], [], [], [0.0], [0.0])
    got = lattice.forward_backward(e, [no_path, two, alone], [4, 2, 1])
    assert got.score[0] == -np.inf and not got.emission_grad[0].any()
    np.testing.assert_allclose(got.score[1:], 2 * np.log(1 / 3) * np.array([1, 0.5]))
    assert refused == [[0]]
    arcless = lattice.forward_backward(e[:1, :1], [alone])
    np.testing.assert_allclose(arcless.score, [np.log(1 / 3)])
    np.testing.assert_allclose(arcless.emission_grad[0, 0], [0, 1, 0])
    assert arcless.arc_grad.shape == (1, 0)
    e[1, 1, 2] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        lattice.forward_backward(e, [no_path, two, alone])


def test_same_bits_at_every_thread_count_and_with_checkpoints():
    rng = np.random.default_rng(9)
    graphs = [_random_graph(rng, 12) for _ in range(5)] + [_left_to_right(rng, 40, 12)]
    e = _log_softmax(rng.normal(size=(6, 300, 12))).astype(np.float32)
    with lattice.num_threads(1):
        want = lattice.forward_backward(e, graphs)
    for threads, checkpoint in ((2, None), (3, None), (2, True)):
        with lattice.num_threads(threads):
            got = lattice.forward_backward(e, graphs, checkpoint=checkpoint)
        for x, y in zip(got, want, strict=True):
            assert x.tobytes() == y.tobytes()


def test_the_tilt_keeps_long_left_to_right_graphs_on_the_fast_path(refused):
    """A left-to-right graph of 300 states over 4,000 frames: untilted, its
    forward's mass runs to the end of the graph long before the posterior's (each
    state's three arcs advance 1.7 states a frame on average, the alignment 0.075),
    beyond double's range, and the kernel refuses it. Tilted, it stays on the fast
    path. (A graph that is not left-to-right runs untilted: the same graph plus an
    arc back of weight -inf, which changes no path, is refused.)"""
    rng = np.random.default_rng(1)
    graph = _left_to_right(rng, 300, 8)
    e = _log_softmax(rng.normal(size=(1, 4000, 8))).astype(np.float32)
    got = lattice.forward_backward(e, [graph])
    assert refused == []
    _assert_within_contract(got, _reference(e, [graph]), np.float32)
    back = lattice.Graph(graph.labels, np.append(graph.src, 5), np.append(graph.dst, 2),
                         np.append(graph.weight, -np.inf), graph.start, graph.final)
    again = lattice.forward_backward(e, [back])
    assert refused == [[0]]
    np.testing.assert_allclose(again.score, got.score, rtol=1e-6)


def test_ell_and_csr_layouts_give_the_same_bits():
    """Each direction runs in ELL layout where the degrees allow, with the CSR loops
    otherwise (``ell_max_degree=0``: always); both sum a state's arcs in the same
    order, so the results are the same to the last bit. A graph whose in-degrees
    fit the ELL widths but out-degrees do not runs one direction of each."""
    rng = np.random.default_rng(6)
    hub = 12  # state 0 has arcs to every state: out-degree 12 > 8
    s = np.arange(hub)
    src, dst = np.concatenate([s, np.zeros(hub - 1, int)]), np.concatenate([s, s[1:]])
    mixed = lattice.Graph(rng.integers(0, 5, size=hub), src, dst,
                          rng.normal(size=src.size), np.zeros(hub), np.zeros(hub))
    graphs = [_random_graph(rng, 5) for _ in range(4)] + [_left_to_right(rng, 30, 5),
                                                          mixed]
    e = _log_softmax(rng.normal(size=(6, 50, 5))).astype(np.float32)
    want = lattice.forward_backward(e, graphs)
    with CPU.options(ell_max_degree=0):
        got = lattice.forward_backward(e, graphs)
    for x, y in zip(got, want, strict=True):
        assert x.tobytes() == y.tobytes()
    _assert_within_contract(want, _reference(e, graphs), np.float32)
