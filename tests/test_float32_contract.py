"""Float32 inputs off the probability-space kernels keep the numerical contract.

The contract (docs/theory.rst): for float32 inputs every output is within 1e-6 of
the float64 log-space result (scores relatively, posteriors absolutely). A float32
log-space recursion does not keep it over long inputs: a cell holding a running
total of thousands of nats loses about 6e-8 of it a frame, and a posterior is the
exp of a sum of two such cells. So, with ``probability_space`` on (the default),

* forward-backward of a general (ELL, CSR) graph runs in probability space with a
  double recursion (_graph_prob.pxi.tp; time-dependent weights in float64), and
  the distribution functions (sampling, entropy, token posteriors) run their
  float32 inputs in float64;
* the forward of a banded batch lowers every row by the largest cell of the row
  before (the offsets summed in double) up to 4096 frames, and runs longer batches,
  and general graphs, in float64.

``probability_space=False`` keeps the float32 log-space kernels (the same bits on
every path). Each test below fails on the kernels without these changes: general
graphs gave gradients 1e-3 to 1e-1 off at T = 1000 - 4000, entropies and token
occupancies 2e-3, banded forwards 9e-7 relative at T = 4000.
"""

import numpy as np
import pytest

import lattice

CPU = lattice.backends.get_backend("cpu")


def _log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def _general_graph(num_states, num_classes, rng):
    """A graph off the banded path: a self-loop and an advance into every state and
    one arc from a random state anywhere (backward jumps included)."""
    states = np.arange(num_states)
    src = np.concatenate([states, states[:-1], rng.integers(0, num_states, num_states)])
    dst = np.concatenate([states, states[1:], states])
    start = np.full(num_states, -np.inf)
    start[:2] = 0
    final = np.full(num_states, -np.inf)
    final[-2:] = 0
    return lattice.Graph(rng.integers(0, num_classes, num_states), src, dst,
                         rng.normal(size=src.size) * 0.1, start, final)


def _inputs(T, scale=1.0, B=2, C=16, seed=0):
    """float32 log-probabilities, and the same values in float64 (the reference's
    inputs: the contract is against the float64 result of the rounded inputs)."""
    rng = np.random.default_rng(seed)
    e = _log_softmax(scale * rng.standard_normal((B, T, C))).astype(np.float32)
    return e, e.astype(np.float64), rng


def _relative(got, want):
    return float(np.max(np.abs(got - want) / np.abs(want)))


@pytest.mark.parametrize("T", [1000, 4000])
def test_general_graph_forward_backward_in_float32_is_exact(T):
    e32, e64, rng = _inputs(T)
    graphs = [_general_graph(41, 16, rng) for _ in range(2)]
    assert lattice.batch(graphs).band is None  # the general kernels run
    got = lattice.forward_backward(e32, graphs)
    want = lattice.forward_backward(e64, graphs)
    assert got.emission_grad.dtype == np.float32
    assert _relative(got.score, want.score) < 1e-7
    for name in ("emission_grad", "start_grad", "final_grad"):  # posteriors
        assert np.abs(getattr(got, name) - getattr(want, name)).max() < 1e-6, name
    # arc gradients are sums over frames: relative to max(1, |g|)
    error = np.abs(got.arc_grad - want.arc_grad) / np.maximum(1, np.abs(want.arc_grad))
    assert error.max() < 1e-6
    with CPU.options(probability_space=False):  # the float32 kernels: 1e-3 and more
        plain = lattice.forward_backward(e32, graphs)
    assert np.abs(plain.emission_grad - want.emission_grad).max() > 1e-5


def test_general_graph_forward_in_float32_is_exact():
    e32, e64, rng = _inputs(4000, scale=10)
    graphs = [_general_graph(41, 16, rng) for _ in range(2)]
    assert _relative(lattice.forward(e32, graphs), lattice.forward(e64, graphs)) < 1e-7


@pytest.mark.parametrize("T", [4000, 5000])  # lowered rows; past 4096, float64
def test_banded_forward_in_float32_is_exact(T):
    e32, e64, rng = _inputs(T, scale=10, C=32)
    targets = rng.integers(1, 32, size=(2, 50))
    gb = lattice.build_batch("ctc", targets)
    assert gb.band is not None
    got = lattice.forward(e32, gb)
    assert got.dtype == np.float32
    want = lattice.forward(e64, gb)
    assert _relative(got, want) < 1.5e-7
    assert _relative(lattice.ctc_score(e32, targets), want) < 1.5e-7  # no graph batch
    with CPU.options(probability_space=False):  # the float32 kernel's running totals
        assert _relative(lattice.forward(e32, gb), want) > 3e-7


def test_banded_and_general_forwards_agree_in_float32():
    """The same CTC graphs on the banded path (lowered) and forced off it (float64
    inside) give the same scores to the contract; without probability space, the
    same bits."""
    e32, _, rng = _inputs(1500, scale=5, C=32)
    gb = lattice.build_batch("ctc", rng.integers(1, 32, size=(2, 40)))
    banded = lattice.forward(e32, gb)
    with CPU.options(banded=False):
        general = lattice.forward(e32, gb)
    assert _relative(banded, general) < 1e-7
    with CPU.options(probability_space=False):
        plain = lattice.forward(e32, gb)
        with CPU.options(banded=False):
            np.testing.assert_array_equal(lattice.forward(e32, gb), plain)


def test_float32_entropy_and_token_posteriors_are_exact():
    e32, e64, rng = _inputs(1000, C=32)
    gb = lattice.build_batch("ctc", rng.integers(1, 32, size=(2, 50)))
    got = lattice.entropy(e32, gb, return_gradients=True)
    want = lattice.entropy(e64, gb, return_gradients=True)
    assert got.entropy.dtype == got.emission_grad.dtype == np.float32
    assert _relative(got.entropy, want.entropy) < 1e-7
    assert np.abs(got.emission_grad - want.emission_grad).max() < 1e-6
    got = lattice.token_posteriors(e32, gb, onsets=True)
    want = lattice.token_posteriors(e64, gb, onsets=True)
    assert got.occupancy.dtype == np.float32
    assert np.abs(got.occupancy - want.occupancy).max() < 1e-6
    assert np.abs(got.onsets - want.onsets).max() < 1e-6
    assert _relative(got.log_z, want.log_z) < 1e-7


def test_float32_samples_follow_the_float64_distribution():
    """Samples of float32 inputs are drawn from the float64 recursion of the same
    values: the same paths, their scores rounded to float32."""
    e32, e64, rng = _inputs(300, C=8)
    gb = lattice.build_batch("ctc", rng.integers(1, 8, size=(2, 20)))
    got = lattice.sample(e32, gb, 16, seed=5)
    want = lattice.sample(e64, gb, 16, seed=5)
    assert got.scores.dtype == got.log_z.dtype == np.float32
    np.testing.assert_array_equal(got.arcs, want.arcs)
    np.testing.assert_array_equal(got.scores, want.scores.astype(np.float32))
    np.testing.assert_array_equal(got.log_z, want.log_z.astype(np.float32))


def test_time_major_float32_inputs_keep_their_layout():
    """The float64 copy of (T, B, C) emissions viewed as (B, T, C) is time-major
    too, so the gradient comes back in the input's memory order (what the torch
    layer hands over without a copy)."""
    e32, e64, rng = _inputs(200)
    graphs = [_general_graph(21, 16, rng) for _ in range(2)]
    time_major = np.ascontiguousarray(e32.transpose(1, 0, 2)).transpose(1, 0, 2)
    got = lattice.forward_backward(time_major, graphs)
    assert got.emission_grad.transpose(1, 0, 2).flags.c_contiguous
    want = lattice.forward_backward(e64, graphs)
    assert np.abs(got.emission_grad - want.emission_grad).max() < 1e-6
