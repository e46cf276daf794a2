"""Forward-backward of banded graphs in probability space (_prob.pxi.tp, issue 19).

The numerical contract: every output within 1e-6 of the float64 log-space result
for float32 inputs (scores relative, posteriors -- emission, start and final
gradients -- absolute, arc gradients, sums over frames, relative to
max(1, |value|)), much closer for float64 inputs; the same bits at every thread
count and with checkpoints. Examples the kernel's checks refuse are recomputed by
the float64 log-space kernel, whose result they then are, bit for bit.
"""

import numpy as np
import pytest
import torch

import lattice
import lattice.torch
from lattice.backends import cpu as cpu_module
from test_banded import _banded_batch

CPU = lattice.backends.get_backend("cpu")
TOLERANCE = {np.float32: 1e-6, np.float64: 1e-11}


def _reference(e, graphs, lengths=None, **weights):
    """The float64 log-space result (the contract's reference)."""
    weights = {k: None if v is None else np.asarray(v, np.float64)
               for k, v in weights.items()}
    with CPU.options(probability_space=False):
        return lattice.forward_backward(np.asarray(e, np.float64), graphs, lengths,
                                        **weights)


def _assert_within_contract(got, want, dtype):
    tol = TOLERANCE[dtype]
    finite = np.isfinite(want.score)
    np.testing.assert_array_equal(got.score[~finite], want.score[~finite])
    np.testing.assert_allclose(got.score[finite], want.score[finite], rtol=tol,
                               atol=tol)
    for name in ("emission_grad", "start_grad", "final_grad"):
        np.testing.assert_allclose(getattr(got, name), getattr(want, name), rtol=0,
                                   atol=tol, err_msg=name)
    scale = np.maximum(1.0, np.abs(want.arc_grad))
    assert np.all(np.abs(got.arc_grad - want.arc_grad) <= tol * scale)


def _log_softmax(x):
    x = x - x.max(axis=-1, keepdims=True)
    return x - np.log(np.exp(x).sum(axis=-1, keepdims=True))


def _assert_only_refused(e, graphs, reference_graphs, b, refused, weights):
    """Example b alone is refused, and its result is the float64 log-space one (on
    reference_graphs) bit for bit; the others are within the contract."""
    got = lattice.forward_backward(e, graphs, **weights)
    assert refused == [[b]]
    want = _reference(e, reference_graphs, **weights)
    for name in got._fields:
        np.testing.assert_array_equal(getattr(got, name)[b], getattr(want, name)[b],
                                      err_msg=name)
    _assert_within_contract(got, want, np.float64)


@pytest.fixture
def refused(monkeypatch):
    """The examples the probability-space kernel hands to the exact recomputation,
    call by call."""
    calls = []
    real = cpu_module.CPUBackend._recompute_exactly

    def spy(self, p, rows, checkpoint, result):
        calls.append(rows.tolist())
        return real(self, p, rows, checkpoint, result)

    monkeypatch.setattr(cpu_module.CPUBackend, "_recompute_exactly", spy)
    return calls


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_random_banded_graphs_within_contract(dtype, width, seed, refused):
    """Random banded graphs (weights, -inf weights, start and final weights spread
    over states), -inf emissions, lengths 0 .. T, infeasible examples."""
    rng = np.random.default_rng(seed)
    classes, frames = 6, 40
    gb = _banded_batch(rng, 12, classes, width)
    e = np.log(rng.dirichlet(np.ones(classes), size=(12, frames))).astype(dtype)
    e[rng.random(e.shape) < 0.05] = -np.inf
    lengths = rng.integers(0, frames + 1, size=12)
    got = lattice.forward_backward(e, gb, lengths)
    assert got.score.dtype == dtype and got.emission_grad.dtype == dtype
    _assert_within_contract(got, _reference(e, gb, lengths), dtype)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weight_overrides_within_contract(dtype):
    rng = np.random.default_rng(7)
    graphs = [lattice.build("ctc", rng.integers(1, 5, size=n)) for n in (3, 6, 1, 8)]
    gb = lattice.batch(graphs)
    e = _log_softmax(rng.normal(size=(4, 30, 5))).astype(dtype)
    weights = {"arc_weights": rng.normal(size=(4, gb.max_arcs)).astype(dtype),
               "start_weights": rng.normal(size=(4, gb.max_states)).astype(dtype),
               "final_weights": rng.normal(size=(4, gb.max_states)).astype(dtype)}
    got = lattice.forward_backward(e, gb, **weights)
    _assert_within_contract(got, _reference(e, gb, **weights), dtype)


@pytest.mark.parametrize("case", ["random", "long", "slack"])
def test_float32_gradients_are_exact(case, refused):
    """The issue's inputs: random log-softmax scores, a long input (T = 20,000, where
    float32 log space is off by half the posteriors' range) and a long input with
    much more time than tokens (the tilt keeps the forward beside the posterior):
    within 1e-6 of float64, without falling back."""
    rng = np.random.default_rng(11)
    B, T, C, tokens = {"random": (8, 300, 64, 100), "long": (1, 20_000, 32, 1000),
                       "slack": (2, 4000, 16, 400)}[case]
    e = _log_softmax(rng.normal(size=(B, T, C))).astype(np.float32)
    gb = lattice.build_batch("ctc", [rng.integers(1, C, size=tokens) for _ in range(B)])
    got = lattice.forward_backward(e, gb)
    want = _reference(e, gb)
    _assert_within_contract(got, want, np.float32)
    assert refused == []
    if case == "long":  # what the float32 log-space kernels give there
        with CPU.options(probability_space=False):
            old = lattice.forward_backward(e, gb)
        assert np.abs(old.emission_grad - want.emission_grad).max() > 1e-2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_refused_examples_are_the_exact_log_space_result(dtype, refused):
    """Confident but wrong predictions (logits x 10, random targets) make the
    forward and backward rows drift apart beyond double's range: the kernel refuses
    those examples, and their results are then the float64 log-space kernel's, bit
    for bit (cast to the input dtype)."""
    rng = np.random.default_rng(3)
    e = _log_softmax(10 * rng.normal(size=(4, 1000, 16))).astype(dtype)
    gb = lattice.build_batch("ctc", [rng.integers(1, 16, size=50) for _ in range(4)])
    got = lattice.forward_backward(e, gb)
    assert refused == [[0, 1, 2, 3]]
    want = _reference(e, gb)
    for name in got._fields:
        np.testing.assert_array_equal(getattr(got, name),
                                      getattr(want, name).astype(dtype), err_msg=name)


@pytest.mark.parametrize("make", ["emission", "arc", "start"])
def test_inputs_beyond_double_are_refused_up_front(make, refused):
    """A probability the recursion would flush to zero (an emission 800 nats below
    its frame's best, an arc or start weight of -800) refuses the example before
    any recursion; its result is the log-space one. The other examples stay on the
    fast path."""
    rng = np.random.default_rng(5)
    e = _log_softmax(rng.normal(size=(3, 20, 4)))
    graphs = [lattice.build("ctc", [1, 2]) for _ in range(3)]
    gb = lattice.batch(graphs)
    weights = {}
    if make == "emission":
        e[1, 5, 2] = -800.0
    elif make == "arc":
        w = np.zeros((3, gb.max_arcs))
        w[1, 3] = -800.0
        weights["arc_weights"] = w
    else:
        s = np.full((3, gb.max_states), -np.inf)
        s[:, 0] = 0.0
        s[1, 1] = -800.0
        weights["start_weights"] = s
    _assert_only_refused(e, gb, gb, 1, refused, weights)


def test_infeasible_and_nan_examples(refused):
    """No complete path: -inf and zero gradients, as the log-space kernels give;
    NaN emissions: the engine's FloatingPointError."""
    e = np.zeros((2, 3, 4))
    graphs = [lattice.build("ctc", [1, 1, 1]), lattice.build("ctc", [1])]
    got = lattice.forward_backward(e, graphs)
    assert got.score[0] == -np.inf and not got.emission_grad[0].any()
    assert np.isfinite(got.score[1])
    assert refused == [[0]]
    e[1, 1, 1] = np.nan
    with pytest.raises(FloatingPointError, match="NaN"):
        lattice.forward_backward(e, graphs)


def test_same_bits_at_every_thread_count():
    rng = np.random.default_rng(9)
    e = _log_softmax(rng.normal(size=(7, 200, 12))).astype(np.float32)
    gb = lattice.build_batch("ctc", [rng.integers(1, 12, size=n) for n in range(3, 10)])
    with lattice.num_threads(1):
        want = lattice.forward_backward(e, gb)
    for threads in (2, 3):
        with lattice.num_threads(threads):
            got = lattice.forward_backward(e, gb)
        for x, y in zip(got, want, strict=True):
            assert x.tobytes() == y.tobytes()


def test_the_torch_loss_gradient_is_exact():
    """lattice.torch.ctc_loss in float32 against torch's own ctc_loss in float64
    (an independent reference), on a long input."""
    rng = np.random.default_rng(2)
    T, C, S = 5000, 20, 300
    x = torch.tensor(rng.normal(size=(T, 1, C))).log_softmax(-1)
    targets = torch.tensor(rng.integers(1, C, size=(1, S)))
    want_x = x.clone().requires_grad_(True)
    torch.nn.functional.ctc_loss(want_x, targets, [T], [S], reduction="sum").backward()
    got_x = x.float().requires_grad_(True)
    lattice.torch.ctc_loss(got_x, targets, [T], [S], reduction="sum").backward()
    # torch's gradient assumes log_softmax inputs (softmax minus the posterior);
    # lattice's is the true one (minus the posterior)
    want = want_x.grad - x.exp()
    assert (got_x.grad.double() - want).abs().max() < 1e-6


def test_refused_examples_of_shared_graphs(refused):
    """The exact recomputation reads the distinct graphs a batch shares (issue 18)
    and their weights, whether the graphs' own or passed per example."""
    rng = np.random.default_rng(4)
    den, other = lattice.build("ctc", [1, 2, 3, 1]), lattice.build("ctc", [2, 2])
    graphs = [den, other, den, den]
    gb = lattice.batch(graphs)
    assert len(gb.distinct) == 2
    e = _log_softmax(rng.normal(size=(4, 30, 4)))
    e[2, 4, 3] = -800.0  # refuses example 2, which shares den
    for weights in ({}, {"arc_weights": rng.normal(size=(4, gb.max_arcs))}):
        refused.clear()
        _assert_only_refused(e, gb, graphs, 2, refused, weights)
