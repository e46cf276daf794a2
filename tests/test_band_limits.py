"""The banded kernels visit only the cells a complete path can pass through.

In a banded graph a path advances at most D - 1 states per frame, so at frame t only
the states lo(t) <= s < end(t) can lie on a path from a start state to a final state
(see ``_band_lo``/``_band_end`` in ``_core.pyx.tp``). Skipping the others must not
change a single bit of any output, must leave their posteriors exactly zero, and
must still report a NaN or +inf emission there, as computing them would have.
"""

import numpy as np
import pytest

import lattice

FUNCS = {
    "forward_log": lambda e, g, n=None: lattice.forward(e, g, n),
    "forward_max": lambda e, g, n=None: lattice.forward(e, g, n, semiring="max"),
    "forward_backward": lambda e, g, n=None: lattice.forward_backward(e, g, n).score,
    "viterbi": lambda e, g, n=None: lattice.viterbi(e, g, n).score,
}


@pytest.fixture(params=list(FUNCS))
def fn(request):
    return FUNCS[request.param]


@pytest.fixture(params=["banded", "general"])
def path(request, cpu_options):
    cpu_options(banded=request.param == "banded")
    return request.param


def _band(T, S, step, h, f):
    """Brute-force band: (t, s) is on the band if s is reachable from a start state
    <= h in t frames and a final state >= f is reachable from s in T - 1 - t."""
    on = np.zeros((T, S), dtype=bool)
    for t in range(T):
        for s in range(S):
            on[t, s] = s <= h + step * t and s + step * (T - 1 - t) >= f
    return on


def _ctc_off_band_cells(target, T):
    """(frame, state) cells of the CTC graph of target that no complete path visits."""
    S = 2 * len(target) + 1
    return np.argwhere(~_band(T, S, 2, 1, S - 2))


@pytest.mark.parametrize("T", [4, 5, 9])
def test_off_band_cells_have_zero_posterior(T):
    """Posteriors off the band are exactly 0; each frame's still sum to 1."""
    target = [1, 2, 3]
    g = lattice.build("ctc", target)
    rng = np.random.default_rng(T)
    e = rng.standard_normal((1, T, 4))
    fb = lattice.forward_backward(e, [g])
    # the emission gradient of a class is the sum of its states' posteriors; the
    # classes of off-band cells whose frame has no on-band state of that class get 0
    on = _band(T, g.num_states, 2, 1, g.num_states - 2)
    labels = np.asarray(g.labels)
    for t in range(T):
        for c in range(4):
            if not (on[t] & (labels == c)).any():
                assert fb.emission_grad[0, t, c] == 0.0, (t, c)
    # and the posteriors of a frame still sum to 1
    np.testing.assert_allclose(fb.emission_grad[0].sum(axis=1), 1.0, rtol=1e-12)


@pytest.mark.parametrize("T", [3, 4, 7, 12])
@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_trimmed_equals_general_on_tight_bands(T, dtype):
    """T just long enough (the band is a thin diagonal) up to roomy: every output of
    the banded path equals the general path's bit for bit (the log-space kernels;
    in probability space within the contract, test_probability_space.py)."""
    rng = np.random.default_rng(T)
    graphs = [lattice.build("ctc", [1, 2, 3]), lattice.build("ctc", [1, 1]),
              lattice.build("segmentation", [0, 2, 1], min_frames=1),
              lattice.build("ctc", [2, 3, 1, 2, 3])]  # fmt: skip
    e = rng.standard_normal((len(graphs), T, 4)).astype(dtype)
    out = {}
    for use in (True, False):
        with lattice.backends.get_backend("cpu").options(banded=use,
                                                         probability_space=False):
            fb = lattice.forward_backward(e, graphs)
            ali = lattice.viterbi(e, graphs)
            out[use] = [lattice.forward(e, graphs),
                        lattice.forward(e, graphs, semiring="max"),
                        *fb, ali.score, ali.states, ali.arcs]  # fmt: skip
    for fast, slow in zip(out[True], out[False]):
        assert fast.tobytes() == slow.tobytes()


@pytest.mark.parametrize("bad", [np.nan, np.inf])
def test_bad_emission_off_every_path_is_still_reported(fn, path, bad):
    """NaN or +inf at a cell no complete path visits (unreachable from the start, or
    unable to reach a final state in time) raises, as elsewhere in a used class."""
    target, T = [1, 2, 3], 6
    g = lattice.build("ctc", target)
    labels = np.asarray(g.labels)
    cells = _ctc_off_band_cells(target, T)
    assert len(cells) > 0
    silent = []
    for t, s in cells:
        e = np.zeros((1, T, 4))
        e[0, t, labels[s]] = bad
        try:
            score = fn(e, [g])
        except FloatingPointError:
            continue
        silent.append(f"frame {t} state {s}: score {score}")
    assert not silent, "\n".join(silent)


def test_bad_emission_off_band_of_segmentation_is_reported(fn, path):
    g = lattice.build("segmentation", [0, 1, 2])  # band D = 2
    # frame 0, class 2: state 2 is unreachable; frame 3, class 0: state 0 cannot
    # reach the final state 2 in the one frame left
    for t, c in [(0, 2), (3, 0)]:
        e = np.zeros((1, 4, 3))
        e[0, t, c] = np.nan
        with pytest.raises(FloatingPointError):
            fn(e, [g])


@pytest.mark.parametrize("T", [1, 2, 3])
def test_too_few_frames_score_neg_inf_and_zero_gradient(fn, path, T):
    """No complete path (the target needs more frames): -inf, no error, and the
    whole row is computed so a NaN anywhere in a used class is still reported."""
    g = lattice.build("ctc", [1, 1, 2])  # needs 4 frames (a blank between the 1s)
    e = np.random.default_rng(0).standard_normal((1, T, 3))
    assert np.isneginf(fn(e, [g])).all()
    fb = lattice.forward_backward(e, [g])
    assert not fb.emission_grad.any()
    e[0, T - 1, 2] = np.nan
    with pytest.raises(FloatingPointError):
        fn(e, [g])


def test_start_and_final_states_set_the_band():
    """A graph whose start and final states are not at the ends: the band follows
    the last start state and the first final state, and the score matches brute
    force over all paths."""
    S, T = 6, 5
    src = [s for s in range(S) for d in range(2) if s + d < S]
    dst = [s + d for s in range(S) for d in range(2) if s + d < S]
    rng = np.random.default_rng(1)
    weight = rng.normal(size=len(src))
    start = np.full(S, -np.inf)
    start[[1, 2]] = [0.3, -0.2]
    final = np.full(S, -np.inf)
    final[[3, 4]] = [0.1, 0.5]
    labels = np.arange(S) % 3
    g = lattice.Graph(labels, src, dst, weight, start, final)
    assert lattice.batch([g]).band == 2
    e = rng.standard_normal((1, T, 3))
    arcs = {(a, b): w for a, b, w in zip(src, dst, weight)}
    total = []

    def walk(t, s, acc):
        if t == T - 1:
            total.append(acc + final[s])
            return
        for d in range(2):
            if (s, s + d) in arcs:
                walk(t + 1, s + d, acc + arcs[s, s + d] + e[0, t + 1, labels[s + d]])

    for s in range(S):
        walk(0, s, start[s] + e[0, 0, labels[s]])
    expected = np.logaddexp.reduce(total)
    np.testing.assert_allclose(lattice.forward(e, [g]), [expected], rtol=1e-12)
    np.testing.assert_allclose(lattice.viterbi(e, [g]).score, [np.max(total)],
                               rtol=1e-12)
