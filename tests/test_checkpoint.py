"""Checkpointed forward-backward and Viterbi (issue 18, items 1 and 2) give the bits of
the full tables, for every interval k from 1 to past T, both dtypes, every kernel
family (banded, ELL, CSR, four-byte backpointers), variable lengths, time-dependent
weights, infeasible examples and NaN inputs; the memory budget chooses them; the
``checkpoint`` argument and the budget refuse bad values with clear errors."""

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import lattice
from lattice import memory
from lattice._layout import BAND_PAD
from lattice.backends import get_backend
from outputs import VITERBI_FIELDS
from strategies import problems

FAMILIES = {"banded": {}, "ell": {"banded": False},
            "csr": {"banded": False, "ell_max_degree": 0}}


def _outputs(em, graphs, lengths, checkpoint, **weights):
    fb = lattice.forward_backward(em, graphs, lengths, checkpoint=checkpoint, **weights)
    best = lattice.forward_backward(em, graphs, lengths, "max", checkpoint=checkpoint,
                                    **weights)
    ali = lattice.viterbi(em, graphs, lengths, checkpoint=checkpoint, **weights)
    out = {f"fb_{name}": value for name, value in zip(fb._fields, fb)}
    out.update({f"max_{name}": value for name, value in zip(best._fields, best)})
    out.update({f"viterbi_{name}": getattr(ali, name) for name in VITERBI_FIELDS})
    return out


def _assert_same_bits(actual, expected, k):
    for name, value in expected.items():
        assert actual[name].dtype == value.dtype, (name, k)
        assert actual[name].tobytes() == value.tobytes(), (name, k)


def _intervals(frames):
    return sorted({*range(1, min(frames, 9) + 1), max(frames - 1, 1), frames,
                   frames + 3}) + [True]


def _general_graphs(rng, size, classes):
    """Random general graphs: cycles, parallel and backward arcs, a state with more
    arcs than the ELL layout holds in one of them."""
    graphs = []
    for b in range(size):
        S = int(rng.integers(2, 7))
        A = int(rng.integers(S, 4 * S))
        src = np.concatenate([np.arange(S - 1), rng.integers(0, S, A)])
        dst = np.concatenate([np.arange(1, S), rng.integers(0, S, A)])
        if b == 0:  # 12 arcs into the last state: the CSR loops
            src = np.concatenate([src, rng.integers(0, S, 12)])
            dst = np.concatenate([dst, np.full(12, S - 1)])
        graphs.append(lattice.Graph(rng.integers(0, classes, S), src, dst,
                                    rng.normal(size=src.size), rng.normal(size=S),
                                    rng.normal(size=S)))
    return graphs


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", sorted(FAMILIES))
@pytest.mark.parametrize("frames", [1, 2, 5, 23])
def test_ctc_equals_full_table(dtype, family, frames, cpu_options):
    rng = np.random.default_rng(frames)
    size, classes = 5, 6
    em = (rng.normal(size=(size, frames, classes)) * 3).astype(dtype)
    lengths = rng.integers(0, frames + 1, size)
    lengths[0] = frames
    graphs = [lattice.build("ctc", rng.integers(1, classes, rng.integers(0, 6)))
              for _ in range(size)]
    graphs.append(lattice.build("segmentation", [1, 2, 3]))
    em = np.concatenate([em, em[:1]])
    lengths = np.append(lengths, frames)
    cpu_options(**FAMILIES[family])
    full = _outputs(em, graphs, lengths, False)
    for k in _intervals(frames):
        _assert_same_bits(_outputs(em, graphs, lengths, k), full, k)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("family", ["ell", "csr"])
@pytest.mark.parametrize("time_dependent", [False, True])
def test_general_graphs_equal_full_table(dtype, family, time_dependent, cpu_options):
    rng = np.random.default_rng(7)
    size, frames, classes = 4, 17, 5
    em = rng.normal(size=(size, frames, classes)).astype(dtype)
    lengths = np.array([frames, 9, 1, 14])
    graphs = _general_graphs(rng, size, classes)
    weights = {}
    if time_dependent:
        width = lattice.batch(graphs).max_arcs
        weights["arc_weights"] = rng.normal(size=(size, frames, width)).astype(dtype)
    cpu_options(**FAMILIES[family])
    full = _outputs(em, graphs, lengths, False, **weights)
    for k in _intervals(frames):
        _assert_same_bits(_outputs(em, graphs, lengths, k, **weights), full, k)


def test_four_byte_backpointers_equal_full_table():
    """A state with 300 in-arcs: Viterbi's int32 backpointers, recomputed by block."""
    rng = np.random.default_rng(2)
    n, frames = 300, 12
    src = np.concatenate([np.arange(n), np.arange(n + 1)])
    dst = np.concatenate([np.full(n, n), np.arange(n + 1)])
    g = lattice.Graph(rng.integers(0, 4, n + 1), src, dst, rng.normal(size=src.size),
                      np.zeros(n + 1), np.zeros(n + 1))
    em = rng.normal(size=(2, frames, 4))
    full = lattice.viterbi(em, [g, g], [frames, 7], checkpoint=False)
    for k in _intervals(frames):
        ali = lattice.viterbi(em, [g, g], [frames, 7], checkpoint=k)
        for name in VITERBI_FIELDS:
            assert np.array_equal(getattr(ali, name), getattr(full, name)), (name, k)


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_infeasible_and_nan_inputs_as_full_table(family, cpu_options):
    cpu_options(**FAMILIES[family])
    em = np.zeros((2, 20, 4))
    g = [lattice.build("ctc", [1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]),  # needs 21 frames
         lattice.build("ctc", [2, 3])]
    for k in (1, 3, True):
        fb = lattice.forward_backward(em, g, checkpoint=k)
        assert fb.score[0] == -np.inf and not fb.emission_grad[0].any()
        ali = lattice.viterbi(em, g, checkpoint=k)
        assert ali.score[0] == -np.inf and (ali.states[0] == -1).all()
    bad = em.copy()
    bad[1, 13, 2] = np.nan
    for k in (False, 1, 4):
        with pytest.raises(FloatingPointError):
            lattice.forward_backward(bad, g, checkpoint=k)
        with pytest.raises(FloatingPointError):
            lattice.viterbi(bad, g, checkpoint=k)


@settings(max_examples=60, deadline=None)
@given(problems(max_frames=9), st.integers(1, 10))
def test_random_problems_equal_full_table(problem, k):
    args = (problem.emissions, problem.graphs, problem.lengths)
    weights = {"arc_weights": problem.arc_weights, "start_weights": problem.start_weights,
               "final_weights": problem.final_weights}
    try:
        full = _outputs(*args, False, **weights)
    except FloatingPointError:
        with pytest.raises(FloatingPointError):
            _outputs(*args, k, **weights)
        return
    _assert_same_bits(_outputs(*args, k, **weights), full, k)


# --- what the engine chooses ----------------------------------------------------------


def test_budget_chooses_checkpoints(monkeypatch):
    """Within the budget the full table; beyond it, ceil(sqrt(T)) frames between
    checkpoints and a table of about 2 sqrt(T) rows."""
    rng = np.random.default_rng(0)
    frames = 400
    em = rng.normal(size=(1, frames, 5)).astype(np.float32)
    g = lattice.build("ctc", [1, 2, 3, 4])
    S = g.num_states
    sizes = {}
    cpu = get_backend("cpu")
    kernel = cpu.kernel

    def spy(name):
        fn = kernel(name)

        def wrapped(*args):
            if name.startswith("forward_backward_banded"):
                alpha, k = args[11], args[12]
                sizes[name] = (k, alpha.shape[1], 0)
            if name.startswith("forward_backward_prob"):
                alpha, k, table = args[11], args[12], args[13]
                sizes[name] = (k, alpha.shape[1], table.shape[1])
            return fn(*args)

        return wrapped

    monkeypatch.setattr(cpu, "kernel", spy)
    # the log-space kernel (float32 tables) and the probability-space one (double
    # tables, and the emission probabilities of a block's frames)
    for name, probability_space, itemsize, extra in (
            ("forward_backward_banded_float32", False, 4, 0),
            ("forward_backward_prob_float32", True, 8, S)):
        with cpu.options(probability_space=probability_space):
            lattice.forward_backward(em, [g])
            k, full_size, table = sizes[name]
            assert (k, full_size, table) == (frames, frames * (S + BAND_PAD),
                                             frames * extra)
            with lattice.memory_budget((full_size + table) * itemsize - 1):  # one short
                lattice.forward_backward(em, [g])
            k, size, table = sizes[name]
            assert k == 20  # ceil(sqrt(400))
            assert size == (frames // k - 1 + k) * (S + BAND_PAD)  # 19 checkpoints, 20 rows
            assert table == k * extra
            with lattice.memory_budget(0):
                lattice.forward_backward(em, [g], checkpoint=False)
            assert sizes[name][0] == frames
            lattice.forward_backward(em, [g], checkpoint=50)
            assert sizes[name][0] == 50


def test_viterbi_interval_balances_checkpoints_and_backpointers():
    """float32 alpha checkpoints against one-byte backpointers: k near sqrt(4 T)."""
    assert memory.checkpoint_interval(180_000, 4, 1) == 849
    assert memory.resolve_checkpoint(True, 10, 10**12) == 4
    assert memory.resolve_checkpoint(7, 5, 0) == 5
    assert memory.resolve_checkpoint(None, 10, memory.get_memory_budget()) == 10
    assert memory.resolve_checkpoint(None, 10, memory.get_memory_budget() + 1) == 4


# --- bad values -----------------------------------------------------------------------


@pytest.mark.parametrize("bad, error, match", [
    (0, ValueError, "checkpoint must be >= 1"),
    (-3, ValueError, "checkpoint must be >= 1"),
    (2.5, TypeError, "checkpoint must be None"),
    ("yes", TypeError, "checkpoint must be None"),
    (np.int64(0), ValueError, "checkpoint must be >= 1"),
])  # fmt: skip
def test_bad_checkpoint(bad, error, match):
    em, g = np.zeros((1, 5, 3)), [lattice.build("ctc", [1])]
    with pytest.raises(error, match=match):
        lattice.forward_backward(em, g, checkpoint=bad)
    with pytest.raises(error, match=match):
        lattice.viterbi(em, g, checkpoint=bad)


def test_numpy_checkpoint_values_work():
    em, g = np.zeros((1, 5, 3)), [lattice.build("ctc", [1])]
    full = lattice.forward_backward(em, g)
    for k in (np.int32(2), np.bool_(True), np.bool_(False)):
        fb = lattice.forward_backward(em, g, checkpoint=k)
        assert fb.emission_grad.tobytes() == full.emission_grad.tobytes()


@pytest.mark.parametrize("bad, error", [(-1, ValueError), (1.5, TypeError),
                                        ("1GB", TypeError), (True, TypeError)])
def test_bad_budget(bad, error):
    before = lattice.get_memory_budget()
    with pytest.raises(error, match="bytes"):
        lattice.set_memory_budget(bad)
    with pytest.raises(error, match="bytes"):
        with lattice.memory_budget(bad):
            pass
    assert lattice.get_memory_budget() == before


def test_budget_context_restores():
    before = lattice.get_memory_budget()
    with lattice.memory_budget(123) as value:
        assert value == 123 and lattice.get_memory_budget() == 123
    assert lattice.get_memory_budget() == before


def test_budget_from_environment(monkeypatch):
    monkeypatch.setenv("LATTICE_MEMORY_BUDGET", "1048576")
    assert memory._budget_from_environment() == 1 << 20
    monkeypatch.setenv("LATTICE_MEMORY_BUDGET", "")
    assert memory._budget_from_environment() == memory.DEFAULT_MEMORY_BUDGET
    for bad in ("lots", "-5", "1.5"):
        monkeypatch.setenv("LATTICE_MEMORY_BUDGET", bad)
        with pytest.raises(ValueError, match="LATTICE_MEMORY_BUDGET"):
            memory._budget_from_environment()


# --- forced alignment of long files ---------------------------------------------------


def test_forced_align_over_budget_keeps_the_path_and_warns():
    """An utterance whose posteriors would pass the memory budget keeps its
    alignment; its confidences are left None, with a warning naming it, and the
    other utterances keep theirs."""
    from lattice.align import forced_align

    rng = np.random.default_rng(5)
    frames, classes = 300, 6
    x = rng.normal(size=(2, frames, classes))
    em = x - np.log(np.exp(x).sum(-1, keepdims=True))
    targets = [list(rng.integers(1, classes, 40)), [1, 2]]
    within = forced_align(em, targets, lengths=[frames, 40])
    need = frames * (81 + 2 * 40) * 8  # the first utterance's posteriors
    with lattice.memory_budget(need - 1):
        with pytest.warns(RuntimeWarning, match="utterance 0: its confidences"):
            beyond = forced_align(em, targets, lengths=[frames, 40])
    assert [r[:7] for r in beyond] == [r[:7] for r in within]
    assert all(r.confidence is None for r in beyond if r.utterance == 0)
    assert [r.confidence for r in beyond if r.utterance == 1] == [
        r.confidence for r in within if r.utterance == 1]
