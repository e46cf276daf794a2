"""lattice.plot with the Agg backend: what is drawn, and the errors."""

import math
import sys

import numpy as np
import pytest

matplotlib = pytest.importorskip("matplotlib")
matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
from matplotlib.collections import PathCollection  # noqa: E402

import lattice  # noqa: E402
from lattice.plot import plot_lattice, plot_losses, plot_paths, plot_posteriors  # noqa: E402
from reference import enumerate_paths  # noqa: E402


@pytest.fixture(autouse=True)
def close_figures():
    yield
    plt.close("all")


def _log_probs(frames, classes, seed=0):
    return np.log(np.random.default_rng(seed).dirichlet(np.ones(classes), size=frames))


def test_posteriors_heat_map_and_path(tmp_path):
    lp = _log_probs(9, 4)
    ali = lattice.viterbi(lp[None], [lattice.build("ctc", [1, 3, 3])])
    ax = plot_posteriors(np.exp(lp), path=ali.labels[0], symbols=["_", "a", "b", "c"],
                         title="t")
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array(), np.exp(lp).T)
    step, dots = ax.get_lines()
    np.testing.assert_array_equal(dots.get_xdata(), np.arange(9))
    np.testing.assert_array_equal(dots.get_ydata(), ali.labels[0])
    assert [t.get_text() for t in ax.get_yticklabels()] == ["_", "a", "b", "c"]
    assert ax.get_title() == "t"
    ax.figure.savefig(tmp_path / "p.png")
    assert (tmp_path / "p.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_posteriors_skip_padding_and_accept_tensors():
    torch = pytest.importorskip("torch")
    post = torch.softmax(torch.randn(6, 3), -1)
    fig, ax = plt.subplots()
    assert plot_posteriors(post, path=[0, 1, 1, 2, -1, -1], ax=ax) is ax
    dots = ax.get_lines()[1]
    np.testing.assert_array_equal(dots.get_xdata(), [0, 1, 2, 3])



def test_paths_draw_each_path_over_the_posteriors(tmp_path):
    lp = _log_probs(8, 3, seed=2)
    graph = lattice.build("ctc", [1, 2])
    best = lattice.kbest(lp[None], [graph], 4)
    ax = plot_paths(np.exp(lp), best.labels[0], symbols="_ab", title="4 best",
                    labels=["1", "2", "3", "4"], spread=0.6)
    (image,) = ax.get_images()
    np.testing.assert_allclose(image.get_array(), np.exp(lp).T)
    lines = ax.get_lines()
    assert [line.get_label() for line in lines] == ["1", "2", "3", "4"]
    offsets = np.linspace(-0.3, 0.3, 4)
    for line, labels, offset in zip(lines, best.labels[0], offsets):
        np.testing.assert_array_equal(line.get_xdata(), np.arange(8))
        np.testing.assert_allclose(line.get_ydata(), labels + offset)
    assert len({tuple(line.get_color()) for line in lines}) == 4
    assert ax.get_legend() is not None and ax.get_title() == "4 best"
    ax.figure.savefig(tmp_path / "paths.png")
    assert (tmp_path / "paths.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_paths_skip_padding_missing_paths_and_take_one_path():
    lp = _log_probs(5, 3)
    # a segmentation of 2 symbols over 3 frames has 2 paths: the 3rd is padding
    best = lattice.kbest(lp[None, :3], [lattice.build("segmentation", [1, 2])], 3)
    paths = np.full((3, 5), -1)
    paths[:, :3] = best.labels[0]
    fig, ax = plt.subplots()
    assert plot_paths(np.exp(lp), paths, ax=ax, spread=0, color="white", alpha=0.5) is ax
    lines = ax.get_lines()
    assert len(lines) == 2 and ax.get_legend() is None
    for line, labels in zip(lines, best.labels[0]):
        np.testing.assert_array_equal(line.get_xdata(), [0, 1, 2])
        np.testing.assert_array_equal(line.get_ydata(), labels)
        assert line.get_color() == "white" and line.get_alpha() == 0.5
    (line,) = plot_paths(np.exp(lp), [0, 1, 1, 2, 0]).get_lines()
    np.testing.assert_array_equal(line.get_ydata(), [0, 1, 1, 2, 0])


def test_paths_of_samples_match_their_labels():
    lp = _log_probs(7, 3, seed=5)
    drawn = lattice.sample(lp[None], [lattice.build("ctc", [2, 1])], 6, seed=0)
    ax = plot_paths(np.exp(lp), drawn.labels[0], spread=0.5)
    ys = np.array([line.get_ydata() for line in ax.get_lines()])
    np.testing.assert_allclose(ys - np.linspace(-0.25, 0.25, 6)[:, None], drawn.labels[0])

def _useful_by_enumeration(graph, frames):
    useful = set()
    for states, _ in enumerate_paths(graph, frames):
        if math.isfinite(graph.start[states[0]]) and math.isfinite(graph.final[states[-1]]):
            useful.update((t, s) for t, s in enumerate(states))
    return useful


@pytest.mark.parametrize("target, frames", [([1, 2], 5), ([1, 1], 4), ([2], 1), ([1, 2, 1], 7)])
def test_lattice_draws_exactly_the_nodes_on_complete_paths(target, frames):
    graph = lattice.build("ctc", target)
    lp = _log_probs(frames, 3, seed=len(target))
    ax = plot_lattice(graph, lp, symbols="_ab", title="ctc")
    (nodes,) = [c for c in ax.collections if isinstance(c, PathCollection)]
    drawn = {(int(t), int(s)) for t, s in nodes.get_offsets()}
    assert drawn == _useful_by_enumeration(graph, frames)
    best = lattice.viterbi(lp[None], [graph]).states[0]
    (path,) = ax.get_lines()
    np.testing.assert_array_equal(path.get_ydata(), best)
    assert ax.get_yticklabels()[0].get_text() == "0: _"


def test_lattice_without_any_path_draws_no_nodes():
    graph = lattice.build("ctc", [1, 1])  # needs 3 frames
    ax = plot_lattice(graph, _log_probs(2, 3))
    assert not ax.get_lines()
    assert all(len(c.get_offsets()) == 0 for c in ax.collections)


def test_losses():
    ax = plot_losses({"train": [3.0, 2.0, 1.0, 0.5], "valid": ([2, 4], [1.5, 0.0])},
                     xlabel="epoch", title="loss", log=True)
    train, valid = ax.get_lines()
    np.testing.assert_array_equal(train.get_xdata(), [1, 2, 3, 4])
    assert np.isnan(valid.get_ydata()[1])  # 0 is masked on a log axis
    assert ax.get_yscale() == "log" and ax.get_xlabel() == "epoch"
    assert ax.get_legend() is not None


@pytest.mark.parametrize(
    "call, error, match",
    [
        (lambda: plot_posteriors(np.ones(4)), ValueError, r"shape \(T, C\)"),
        (lambda: plot_posteriors(np.ones((4, 2)), path=[0, 1]), ValueError, "path must have shape"),
        (lambda: plot_posteriors(np.ones((2, 2)), path=[0, 2]), ValueError, "class 2"),
        (lambda: plot_posteriors(np.ones((2, 2)), symbols="abc"), ValueError, "all 2 classes"),
        (lambda: plot_posteriors(np.array([["a"]])), TypeError, "real numbers"),
        (lambda: plot_paths(np.ones((4, 2)), [[0, 1]]), ValueError, "paths must have shape"),
        (lambda: plot_paths(np.ones((2, 2)), [[0, 2]]), ValueError, "class 2"),
        (lambda: plot_paths(np.ones((2, 2)), [[0.5, 1.0]]), TypeError, "integers"),
        (lambda: plot_paths(np.ones((2, 2)), [[0, 1]], labels=["a", "b"]), ValueError,
         "all 1 paths"),
        (lambda: plot_paths(np.ones((2, 2)), [[0, 1]], spread=-1), ValueError, "spread"),
        (lambda: plot_lattice([1, 2], np.zeros((3, 3))), TypeError, "lattice.Graph"),
        (lambda: plot_lattice(lattice.build("ctc", [4]), np.zeros((3, 3))), ValueError,
         "label 4"),
        (lambda: plot_lattice(lattice.build("ctc", [1]), np.zeros((0, 3))), ValueError,
         "at least one frame"),
        (lambda: plot_losses([1, 2]), TypeError, "dict"),
        (lambda: plot_losses({"a": ([1, 2], [1.0])}), ValueError, "equal length"),
        (lambda: plot_losses({"a": np.ones((2, 2))}), ValueError, "1-D"),
    ],
)
def test_bad_inputs(call, error, match):
    with pytest.raises(error, match=match):
        call()


def test_missing_matplotlib_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"lattice\[plot\]"):
        plot_losses({"a": [1.0]})
    with pytest.raises(ImportError, match=r"lattice\[plot\]"):
        plot_posteriors(np.ones((2, 2)))
