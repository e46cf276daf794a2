"""The sizes the engine promises: C up to 10^4, S up to 10^4, T up to 10^5."""

import math

import numpy as np
import pytest

import lattice


def _log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


def test_long_input_t_100000():
    rng = np.random.default_rng(0)
    frames, classes = 100_000, 5
    em = _log_softmax(rng.standard_normal((1, frames, classes)))
    graph = lattice.build("ctc", rng.integers(1, classes, size=50))
    fb = lattice.forward_backward(em, [graph])
    assert np.isfinite(fb.score[0])
    assert fb.score[0] == lattice.forward(em, [graph])[0]
    # posteriors: one unit of mass per frame, every frame. alpha + beta - log Z
    # cancels numbers of magnitude ~1.6e5 whose float64 rounding (ulp ~3e-11)
    # random-walks over 1e5 frames to ~1e-8: that, not 1e-9, is the honest bound
    np.testing.assert_allclose(fb.emission_grad[0].sum(axis=1), 1.0, rtol=5e-8)
    torch = pytest.importorskip("torch")
    ref = torch.nn.functional.ctc_loss(
        torch.from_numpy(em).transpose(0, 1),
        torch.from_numpy(graph.labels[1::2].astype(np.int64))[None],
        (frames,), (50,), reduction="none",
    )
    assert math.isclose(-fb.score[0], ref.item(), rel_tol=1e-9)
    best = lattice.viterbi(em, [graph])
    assert best.num_segments[0] == 50 and best.states[0, -1] >= graph.num_states - 2


def test_wide_graph_s_10000():
    # segmentation of K symbols over T frames: C(T - 1, K - 1) paths
    symbols, frames = 10_000, 10_010
    graph = lattice.build("segmentation", np.arange(symbols) % 7)
    assert graph.num_states == symbols
    score = lattice.forward(np.zeros((1, frames, 7), dtype=np.float64), [graph])[0]
    expected = math.log(math.comb(frames - 1, symbols - 1))
    assert math.isclose(score, expected, rel_tol=1e-9)
    best = lattice.viterbi(np.zeros((1, frames, 7)), [graph])
    assert best.num_segments[0] == symbols


def test_many_classes_c_10000():
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(1)
    classes, frames = 10_000, 40
    em = _log_softmax(rng.standard_normal((2, frames, classes)))
    targets = rng.integers(1, classes, size=(2, 12))
    graphs = [lattice.build("ctc", t) for t in targets]
    fb = lattice.forward_backward(em, graphs)
    ref = torch.nn.functional.ctc_loss(
        torch.from_numpy(em).transpose(0, 1), torch.from_numpy(targets),
        (frames, frames), (12, 12), reduction="none",
    )
    np.testing.assert_allclose(-fb.score, ref.numpy(), rtol=1e-9)
    # only the blank and the target columns receive posterior mass
    used = np.flatnonzero(fb.emission_grad[0].sum(axis=0))
    assert set(used) <= {0, *targets[0].tolist()}
