"""The general kernels' ELL layout gives the same bits as their CSR loops.

An example whose states have at most 8 in-arcs runs its forward in ELL layout (K
slots per state, K its largest in-degree rounded up to 1, 2, 3, 4, 6 or 8), and its
backward likewise by out-degree; anything else runs the CSR loops. The tests switch
the ELL layout off (the cpu backend option ``ell_max_degree=0``) and compare every output bit for
bit, on graphs of every width, with empty slots, parallel arcs, backward arcs,
-inf weights, time-dependent weights and batches mixing both layouts.
"""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

import lattice
from outputs import all_outputs, assert_same_bits
from strategies import examples, graphs


def _assert_same_bits(run, cpu_options):
    ell = run()
    cpu_options(ell_max_degree=0)
    assert_same_bits(run(), ell)
    return ell


def _random_graph(rng, num_states, classes, degree):
    """A general graph whose largest in-degree is `degree` (a chain for 1): a
    self-loop and an arc from the previous state (so complete paths exist), then
    arcs from random states (backward and parallel arcs included) into about 60% of
    the states, and always into the last, `degree - 2` times."""
    states = np.arange(num_states)
    if degree == 1:
        src, dst = [states[:-1]], [states[1:]]
    else:
        src, dst = [states, states[:-1]], [states, states[1:]]
        for _ in range(degree - 2):
            into = rng.random(num_states) < 0.6
            into[-1] = True
            src.append(rng.integers(0, num_states, num_states)[into])
            dst.append(states[into])
    src, dst = np.concatenate(src), np.concatenate(dst)
    weight = rng.normal(size=src.size)
    weight[rng.random(src.size) < 0.1] = -np.inf
    start = np.where(rng.random(num_states) < 0.3, rng.normal(size=num_states), -np.inf)
    final = np.where(rng.random(num_states) < 0.3, rng.normal(size=num_states), -np.inf)
    start[0], final[-1] = 0.0, 0.0
    tokens = rng.integers(-1, 3, num_states)
    return lattice.Graph(rng.integers(0, classes, num_states), src, dst, weight, start,
                         final, tokens=tokens)


def _emissions(rng, size, dtype, classes=5, frames=30):
    e = np.log(rng.dirichlet(np.ones(classes), size=(size, frames))).astype(dtype)
    e[rng.random(e.shape) < 0.05] = -np.inf
    return e, rng.integers(0, frames + 1, size=size)


def _problem(rng, degrees, dtype):
    gb = lattice.batch([_random_graph(rng, int(rng.integers(2, 14)), 5, d)
                        for d in degrees])
    return (gb, *_emissions(rng, len(degrees), dtype))


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("degree", [1, 2, 3, 4, 5, 6, 7, 8])
def test_ell_equals_csr_at_every_width(dtype, degree, cpu_options):
    rng = np.random.default_rng(degree)
    gb, e, lengths = _problem(rng, [degree] * 8, dtype)
    assert gb.band is None or degree <= 2
    cpu_options(banded=False)
    out = _assert_same_bits(lambda: all_outputs(e, gb, lengths), cpu_options)
    assert np.isfinite(out["forward_log"]).sum() >= 2


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("seed", range(3))
def test_batch_mixing_ell_and_csr_examples(dtype, seed, cpu_options):
    # degrees past 8 run the CSR loops next to ELL examples of the same batch; a
    # star (one state with many out-arcs) runs its forward in ELL layout and its
    # backward with the CSR loops
    rng = np.random.default_rng(seed)
    star = lattice.Graph([0] * 12, [0] * 12, list(range(12)), None,
                         [0.0] + [-np.inf] * 11, 0.0)
    gb = lattice.batch([_random_graph(rng, 10, 5, d) for d in (1, 3, 6, 9, 12, 2, 8, 4)]
                       + [star])
    e, lengths = _emissions(rng, len(gb), dtype)
    assert gb.max_in_degree > 8 and gb.max_out_degree > 8
    _assert_same_bits(lambda: all_outputs(e, gb, lengths), cpu_options)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("degree", [3, 6])
def test_ell_equals_csr_with_time_dependent_weights(dtype, degree, cpu_options):
    rng = np.random.default_rng(10 + degree)
    gb, e, lengths = _problem(rng, [degree] * 6, dtype)
    weights = rng.normal(size=(len(gb), e.shape[1], gb.max_arcs))
    weights[rng.random(weights.shape) < 0.1] = -np.inf
    out = _assert_same_bits(lambda: all_outputs(e, gb, lengths, arc_weights=weights),
                            cpu_options)
    assert out["fb_arc_grad"].shape == weights.shape
    # and with time-independent overrides
    _assert_same_bits(lambda: all_outputs(e, gb, lengths, arc_weights=weights[:, 0]),
                      cpu_options)


@given(st.lists(graphs(num_classes=3, max_states=6, max_arcs=14), min_size=1,
                max_size=4), st.integers(0, 2**32 - 1))
@examples(60)
def test_ell_equals_csr_on_any_small_graph(graph_list, seed):
    # hypothesis graphs: states with no arcs, cycles, degrees up to 14
    rng = np.random.default_rng(seed)
    gb = lattice.batch(graph_list)
    e = rng.normal(size=(len(gb), 5, 3))
    lengths = rng.integers(0, 6, size=len(gb))
    cpu = lattice.backends.get_backend("cpu")
    with cpu.options(banded=False):
        ell = all_outputs(e, gb, lengths)
        with cpu.options(ell_max_degree=0):
            csr = all_outputs(e, gb, lengths)
    assert_same_bits(csr, ell)


@pytest.mark.parametrize("cap", [8, 0])
def test_nan_emissions_are_reported_by_both_layouts(cap, cpu_options):
    cpu_options(ell_max_degree=cap)
    rng = np.random.default_rng(0)
    g = _random_graph(rng, 6, 3, 4)
    e = np.zeros((1, 5, 3))
    e[0, 2, :] = np.nan
    for fn in (lattice.forward, lattice.forward_backward, lattice.viterbi):
        with pytest.raises(FloatingPointError, match="NaN or \\+inf"):
            fn(e, [g])


def test_ell_workspace_width():
    def width(*graph_list):
        return lattice.backends.get_backend("cpu").ell_cap(lattice.batch(list(graph_list)))

    chain = lattice.Graph([0, 0], [0], [1], None, 0.0, 0.0)
    assert width(chain) == 1
    assert width(lattice.build("ctc", [1, 2])) == 3
    fan_in = lattice.Graph([0] * 6, [0, 1, 2, 3, 4], [5] * 5, None, 0.0, 0.0)
    assert width(fan_in) == 6  # a degree of 5 rounds up to the next width
    fan_out = lattice.Graph([0] * 10, [0] * 9, list(range(1, 10)), None, 0.0, 0.0)
    assert width(fan_out, chain) == 8  # past 8: the workspace holds 8, CSR runs
    empty = lattice.Graph([0, 0], [], [], None, 0.0, 0.0)
    assert width(empty) == 1
