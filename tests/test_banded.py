"""The banded fast path gives the same bits as the general CSR path (its log-space
kernels; forward-backward in probability space is compared with the float64
log-space result in test_probability_space.py)."""

import numpy as np
import pytest

import lattice
from outputs import all_outputs, assert_same_bits


def _banded_batch(rng, size, classes, width):
    graphs = []
    for _ in range(size):
        kind = rng.integers(3)
        if kind == 0 and width == 3:
            target = rng.integers(1, classes, size=rng.integers(0, 12))
            graphs.append(lattice.build("ctc", target))
        elif kind == 1:
            target = rng.integers(0, classes, size=rng.integers(1, 12))
            graphs.append(lattice.build("segmentation", target,
                                        min_frames=int(rng.integers(1, 3))))
        else:  # a random banded graph: random subset of the band, random weights
            S = int(rng.integers(1, 15))
            src, dst = [], []
            for s in range(S):
                for d in range(width):
                    if s - d >= 0 and rng.random() < 0.7:
                        src.append(s - d)
                        dst.append(s)
            order = rng.permutation(len(src))  # any listing order
            src, dst = np.array(src, dtype=int)[order], np.array(dst, dtype=int)[order]
            weight = rng.normal(size=len(src))
            weight[rng.random(len(src)) < 0.1] = -np.inf
            start = np.where(rng.random(S) < 0.4, rng.normal(size=S), -np.inf)
            final = np.where(rng.random(S) < 0.4, rng.normal(size=S), -np.inf)
            start[0], final[-1] = 0.0, 0.0
            graphs.append(lattice.Graph(rng.integers(0, classes, size=S), src, dst,
                                        weight, start, final))
    return lattice.batch(graphs)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("width", [2, 3])
@pytest.mark.parametrize("seed", range(4))
def test_banded_equals_general_bit_for_bit(dtype, width, seed, cpu_options):
    cpu_options(probability_space=False)
    rng = np.random.default_rng(seed)
    classes, frames = 6, 40
    gb = _banded_batch(rng, 12, classes, width)
    assert gb.band is not None
    e = np.log(rng.dirichlet(np.ones(classes), size=(12, frames))).astype(dtype)
    e[rng.random(e.shape) < 0.05] = -np.inf
    lengths = rng.integers(0, frames + 1, size=12)
    fast = all_outputs(e, gb, lengths)
    cpu_options(banded=False)
    slow = all_outputs(e, gb, lengths)
    assert np.isfinite(fast["forward_log"]).sum() >= 3
    assert_same_bits(slow, fast)


def test_band_detection():
    assert lattice.batch([lattice.build("ctc", [1, 2])]).band == 3
    assert lattice.batch([lattice.build("ctc", [1, 1])]).band == 2  # no skip arc
    assert lattice.batch([lattice.build("segmentation", [1, 2])]).band == 2
    assert lattice.batch([lattice.build("segmentation", [1])]).band == 2
    # a backward arc, a long skip and parallel arcs each disable the fast path
    for src, dst in (([0, 1], [1, 0]), ([0, 0], [0, 3]), ([0, 0], [1, 1])):
        g = lattice.Graph([0] * 4, src, dst, None, 0.0, 0.0)
        assert lattice.batch([g]).band is None
    # one general graph makes the whole batch general
    g = lattice.Graph([0, 0], [1], [0], None, 0.0, 0.0)
    assert lattice.batch([lattice.build("ctc", [1]), g]).band is None


def test_banded_path_is_used_and_time_dependent_weights_fall_back(monkeypatch):
    calls = []
    cpu = lattice.backends.get_backend("cpu")
    original = cpu.kernel

    def spy(name):
        calls.append(name)
        return original(name)

    monkeypatch.setattr(cpu, "kernel", spy)
    g = lattice.build("ctc", [1, 2])
    e = np.zeros((1, 6, 3))
    lattice.forward_backward(e, [g])
    lattice.forward_backward(e, [g], arc_weights=np.zeros((1, 6, g.num_arcs)))
    with cpu.options(probability_space=False):
        lattice.forward_backward(e, [g])
    assert calls == ["forward_backward_prob_float64", "forward_backward_float64",
                     "forward_backward_banded_float64"]
