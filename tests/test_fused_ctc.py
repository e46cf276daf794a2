"""CTC without a graph batch (lattice/fused.py, _ctc.pxi.tp; issue 19's lean path).

The fused kernels write each example's CTC graph inside the kernel and run
probability-space recursions of their own on it (continued in log space where they
cannot), so every result must be within the numerical contract of the float64
log-space result of the graph path: ``lattice.forward`` /
``lattice.forward_backward`` of ``lattice.build_batch("ctc", targets,
blank=blank)``, itself tested against brute-force enumeration and torch's ctc_loss
(test_forward.py, test_ctc_torch.py, test_probability_space.py).
"""

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import lattice
import lattice.torch
from lattice.backends import cpu as cpu_module

CPU = lattice.backends.get_backend("cpu")


def _log_softmax(x):
    return x - np.logaddexp.reduce(x, axis=-1, keepdims=True)


@st.composite
def ctc_batches(draw):
    """Random CTC batches: blanks anywhere in [0, C), targets with runs of repeated
    symbols (no skip between them), empty targets, lengths from 0 (empty input) to
    T, targets too long for their input (no path), peaked scores (some examples
    then fall back to log space)."""
    size = draw(st.integers(1, 6))
    frames = draw(st.integers(1, 40))
    classes = draw(st.integers(2, 7))
    blank = draw(st.integers(0, classes - 1))
    symbols = [c for c in range(classes) if c != blank]
    targets = []
    for _ in range(size):
        target = draw(st.lists(st.sampled_from(symbols), max_size=20))
        if target and draw(st.booleans()):  # runs of one symbol
            target = [target[0]] * len(target)
        targets.append(np.array(target, dtype=np.int64))
    lengths = np.array(draw(st.lists(st.integers(0, frames), min_size=size,
                                     max_size=size)))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([1.0, 5.0, 40.0]))
    rng = np.random.default_rng(seed)
    e = _log_softmax(scale * rng.normal(size=(size, frames, classes)))
    return e, targets, lengths, blank


def _graph_path(e, targets, lengths, blank, checkpoint=None):
    gb = lattice.build_batch("ctc", targets, blank=blank)
    return (lattice.forward(e, gb, lengths),
            lattice.forward_backward(e, gb, lengths, checkpoint=checkpoint))


def _assert_same_bits(got, want):
    assert got.dtype == want.dtype and got.shape == want.shape
    assert got.tobytes() == want.tobytes()


def _assert_within_contract(got, e, targets, lengths, blank):
    """got (a CTCForwardBackward of e in e's dtype) against the float64 log-space
    result of the graph path on the same (rounded) inputs: the same infinities,
    scores within 1e-6 relative (1e-10 in float64, which is about the log-space
    reference's own error at T = 3000) and gradients within 1e-6 absolute
    (1e-10)."""
    tol = 1e-6 if e.dtype == np.float32 else 1e-10
    with CPU.options(probability_space=False):
        want = lattice.forward_backward(e.astype(np.float64),
                                        lattice.build_batch("ctc", targets, blank=blank),
                                        lengths)
    assert got.score.dtype == e.dtype and got.emission_grad.dtype == e.dtype
    score = got.score.astype(np.float64)
    finite = np.isfinite(want.score)
    np.testing.assert_array_equal(score[~finite], want.score[~finite])
    assert np.all(np.abs(score[finite] - want.score[finite])
                  <= tol * np.maximum(1, np.abs(want.score[finite])))
    assert np.abs(got.emission_grad - want.emission_grad).max(initial=0) <= tol


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=60, deadline=None)
@given(batch=ctc_batches(), checkpoint=st.sampled_from([None, False, True, 3, 1]))
def test_against_the_float64_log_space_reference(dtype, batch, checkpoint):
    """The forward and the forward-backward (kernels of their own, blanks and
    symbols apart) are within the numerical contract of the float64 log-space
    result, and checkpoints change no bit of the forward-backward."""
    e, targets, lengths, blank = batch
    e = e.astype(dtype)
    got = lattice.ctc_forward_backward(e, targets, lengths, blank=blank,
                                       checkpoint=checkpoint)
    _assert_within_contract(got, e, targets, lengths, blank)
    score = lattice.ctc_score(e, targets, lengths, blank=blank)
    _assert_within_contract(got._replace(score=score), e, targets, lengths, blank)
    if checkpoint is not None:
        full = lattice.ctc_forward_backward(e, targets, lengths, blank=blank)
        _assert_same_bits(got.score, full.score)
        _assert_same_bits(got.emission_grad, full.emission_grad)


def _poisoned_gradients(monkeypatch):
    """Fill the uninitialised gradients the CPU backend hands the fused kernel with
    NaN: a value the kernel leaves unwritten then shows."""
    real = cpu_module.CPUBackend.empty_like_emissions

    def poisoned(self, emissions, dtype=None):
        out = real(self, emissions, dtype)
        out.fill(np.nan)
        return out

    monkeypatch.setattr(cpu_module.CPUBackend, "empty_like_emissions", poisoned)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@settings(max_examples=40, deadline=None)
@given(batch=ctc_batches(), checkpoint=st.sampled_from([None, 2]))
def test_the_kernel_writes_every_gradient_value(dtype, batch, checkpoint):
    """The gradient is allocated without zeroing: the kernel writes every value
    itself (the classes a target does not use, the frames past an input's length,
    empty inputs and empty targets), and the examples it refuses are overwritten
    whole; with NaN where nothing was written, the results are still within the
    contract (a kernel that skips the zeros of one of those cases fails)."""
    e, targets, lengths, blank = batch
    e = e.astype(dtype)
    with pytest.MonkeyPatch.context() as mp:
        _poisoned_gradients(mp)
        got = lattice.ctc_forward_backward(e, targets, lengths, blank=blank,
                                           checkpoint=checkpoint)
    _assert_within_contract(got, e, targets, lengths, blank)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_negate_gives_exactly_the_negated_numbers(dtype, log_space_recomputations):
    """negate=True (what ctc_loss asks for) gives minus the scores, bit for bit,
    and minus the gradients (as numbers: a zero may be -0 or +0), on every path:
    examples the kernel keeps, those it refuses (recomputed in log space), empty
    targets and inputs, targets that do not fit, and the graph path the kernel
    options select."""
    rng = np.random.default_rng(21)
    e = _log_softmax(rng.normal(size=(6, 60, 7)))
    e[1] = _log_softmax(40 * rng.normal(size=(60, 7)))  # refused
    e = e.astype(dtype)
    targets = [[1, 2, 2, 3], rng.integers(1, 7, size=20), [], [4, 5], [6] * 40, [3]]
    lengths = np.array([60, 60, 50, 0, 60, 33])
    backend, p = lattice.fused.ctc_problem(e, targets, lengths)
    graphs = lambda rows: lattice.fused.ctc_graphs(p, rows)  # noqa: E731
    for options in ({}, {"probability_space": False}, {"banded": False}):
        with CPU.options(**options):
            score, grad = backend.ctc_forward_backward(p, None, graphs)
            nll, neg = backend.ctc_forward_backward(p, None, graphs, negate=True)
        _assert_same_bits(nll, -score)
        assert neg.dtype == grad.dtype
        np.testing.assert_array_equal(neg, -grad)  # the same numbers (zeros: any sign)
    assert 1 in log_space_recomputations
    assert np.isposinf(nll[[3, 4]]).all() and not neg[[3, 4]].any()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_weights_scale_each_examples_gradient_and_nothing_else(dtype,
                                                               log_space_recomputations):
    """weights (what ctc_loss's reductions pass) multiply each example's gradient,
    in double before the one rounding, and leave the scores alone, on every path:
    the kernel's, the refused examples' log-space recomputation, empty targets and
    inputs, and the graph path the kernel options select. A weight of 1 gives the
    same bits as none; a weight vector of the wrong size is refused."""
    rng = np.random.default_rng(21)
    e = _log_softmax(rng.normal(size=(5, 60, 7)))
    e[1] = _log_softmax(300 * rng.normal(size=(60, 7)))  # refused: rows span 700 nats
    e = e.astype(dtype)
    targets = [[1, 2, 2, 3], rng.integers(1, 7, size=20), [], [4, 5], [3]]
    lengths = np.array([60, 60, 50, 0, 33])
    weights = np.array([0.5, 3.0, 1 / 3, 2.0, 1 / 7])
    backend, p = lattice.fused.ctc_problem(e, targets, lengths)
    graphs = lambda rows: lattice.fused.ctc_graphs(p, rows)  # noqa: E731
    for options in ({}, {"probability_space": False}, {"banded": False}):
        with CPU.options(**options):
            score, grad = backend.ctc_forward_backward(p, None, graphs, negate=True)
            ones = backend.ctc_forward_backward(p, None, graphs, True, np.ones(5))
            got, wgrad = backend.ctc_forward_backward(p, None, graphs, True, weights)
            with pytest.raises(ValueError, match="one value per example"):
                backend.ctc_forward_backward(p, None, graphs, True, np.ones(4))
        _assert_same_bits(ones[0], score)
        _assert_same_bits(ones[1], grad)
        _assert_same_bits(got, score)
        want = weights[:, None, None] * grad.astype(np.float64)
        tol = 1e-6 if dtype == np.float32 else 1e-14
        np.testing.assert_allclose(wgrad, want, rtol=tol, atol=1e-30)
    assert 1 in log_space_recomputations


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_long_inputs_and_tight_bands(dtype):
    """T = 3000 against T = K + repeats (a single path), one frame, a blank-only
    target (the sum of the blank's scores) and a target too long for its input."""
    rng = np.random.default_rng(11)
    e = _log_softmax(rng.normal(size=(5, 3000, 9))).astype(dtype)
    targets = [rng.integers(1, 9, size=400), [1, 1, 2, 2, 3], [4], [], [1, 2, 3, 4]]
    lengths = np.array([3000, 7, 1, 50, 3])
    got = lattice.ctc_forward_backward(e, targets, lengths)
    _assert_within_contract(got, e, targets, lengths, 0)
    assert got.score[4] == -np.inf and not got.emission_grad[4].any()
    blank = e[3, :50, 0].astype(np.float64)
    assert abs(got.score[3] - blank.sum()) <= 1e-12 * 50 * np.abs(blank).max() + (
        1e-6 * abs(blank.sum()) if dtype == np.float32 else 0)
    np.testing.assert_array_equal(got.emission_grad[3, :50, 0], 1)
    # the single path of [1, 1, 2, 2, 3] in 7 frames: 1 _ 1 2 _ 2 3
    path = [1, 0, 1, 2, 0, 2, 3]
    np.testing.assert_array_equal(got.emission_grad[1, np.arange(7), path], 1)
    assert got.emission_grad[1].sum() == 7


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("classes", [12, 90, 700])
def test_many_classes_and_runs_of_frames(dtype, classes, log_space_recomputations):
    """The forwards compute the emission probabilities of several frames at once
    (16 frames of few classes, fewer of many, one of more than 512): inputs whose
    length is no multiple of those runs, checkpoints that start blocks inside
    them, and a frame the check refuses in the middle of a run (its example alone
    is recomputed, exactly)."""
    rng = np.random.default_rng(classes)
    frames = 61
    e = _log_softmax(rng.normal(size=(4, frames, classes)))
    targets = [rng.integers(1, classes, size=n) for n in (25, 9, 25, 0)]
    lengths = np.array([frames, 37, 50, 20])
    e[2, 21, targets[2][3]] = e[2, 21].max() - 800  # refused: beyond 700 nats
    e = e.astype(dtype)
    full = lattice.ctc_forward_backward(e, targets, lengths)
    assert log_space_recomputations == [1]
    _assert_within_contract(full, e, targets, lengths, 0)
    # the forward alone, whose runs lie in a buffer of their own (the refused
    # frame's block goes on in log space)
    score = lattice.ctc_score(e, targets, lengths)
    _assert_within_contract(full._replace(score=score), e, targets, lengths, 0)
    for checkpoint in (5, 18):
        got = lattice.ctc_forward_backward(e, targets, lengths, checkpoint=checkpoint)
        _assert_same_bits(got.score, full.score)
        _assert_same_bits(got.emission_grad, full.emission_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_clean_inputs_are_never_refused(dtype, log_space_recomputations):
    """Random log-softmax scores, tight and loose bands, repeats, one frame: the
    probability-space check passes every example (a kernel reading a cell it never
    wrote would be refused, and its exact recomputation would hide the bug)."""
    recomputed = log_space_recomputations
    rng = np.random.default_rng(5)
    for frames, checkpoint in ((1, None), (7, None), (40, None), (300, 7)):
        e = _log_softmax(rng.normal(size=(6, frames, 6))).astype(dtype)
        targets = [rng.integers(1, 6, size=n) for n in (0, 1, 3, 8, 20, 30)]
        targets[3] = np.array([2, 2, 2, 4])
        lengths = np.minimum(frames, [frames, 1, 4, 7, 41, frames])
        fb = lattice.ctc_forward_backward(e, targets, lengths, checkpoint=checkpoint)
        # only the examples no path fits are recomputed (to -inf)
        assert np.isfinite(fb.score).sum() + sum(recomputed) == 6
        recomputed.clear()


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_the_forward_continues_in_log_space_after_an_underflow(dtype):
    """100 uniform frames, then confident predictions: the probability-space
    forward's rows soon span more than double holds, it underflows, and the
    forward goes on in log space from the last clean row; the score is the float64
    log-space result's (no example is handed back to the log-space kernel whole).
    With the underflow ignored, the score would be wrong (a mutation of the
    continuation fails this test)."""
    rng = np.random.default_rng(12)
    frames, classes = 400, 8
    e = _log_softmax(25 * rng.normal(size=(3, frames, classes)))
    e[:, :100] = -np.log(classes)
    e = e.astype(dtype)
    targets = [rng.integers(1, classes, size=n) for n in (30, 60, 90)]
    ran = []
    real = CPU.kernel

    def spy(name):
        ran.append(name)
        return real(name)

    CPU.kernel = spy
    try:
        score = lattice.ctc_score(e, targets)
    finally:
        del CPU.kernel
    assert ran == [f"ctc_forward_prob_{np.dtype(dtype).name}"]
    with CPU.options(probability_space=False):
        want = lattice.ctc_score(e.astype(np.float64), targets)
    tol = 1e-6 if dtype == np.float32 else 1e-10
    assert np.all(np.abs(score - want) <= tol * np.abs(want))


@pytest.mark.parametrize("frames, classes, symbols, tol, uniform", [
    (4000, 64, 600, 1e-6, 0),  # the float32 log-space continuation, its rows lowered
    (8000, 32, 800, 1.2e-7, 0),  # past CTC_FORWARD_DOUBLE_FRAMES: in double
    (6000, 32, 600, 1.2e-7, 150),  # the same, from a probability-space row
])
def test_long_confident_float32_forwards_are_within_the_contract(frames, classes, symbols,
                                                                 tol, uniform):
    """Confident predictions (logits x10: refused by the probability-space check,
    so the forward runs in log space from frame 0) over thousands of frames. A
    float32 log-space row holding running totals of 1e4 - 1e5 nats loses about
    6e-8 of them a frame: 2e-6 relative after 4000 frames (the graph path's
    float32 forward), so the rows are lowered by the largest cell of the row
    before (9e-8), and past 4096 frames the continuation runs in double: 2e-8 at
    T = 8000, where the lowered float32 rows were at 3.5e-7. 1.2e-7 is two
    roundings of the float32 score. With uniform frames first, the forward starts
    in probability space and continues from its last clean row."""
    rng = np.random.default_rng(0)
    e = _log_softmax(10 * rng.standard_normal((2, frames, classes)))
    e[:, :uniform] = -np.log(classes)
    targets = list(rng.integers(1, classes, size=(2, symbols)))
    e32 = e.astype(np.float32)
    score = lattice.ctc_score(e32, targets).astype(np.float64)
    with CPU.options(probability_space=False):
        want = lattice.forward(e32.astype(np.float64), lattice.build_batch("ctc", targets))
    assert np.all(np.abs(score - want) <= tol * np.abs(want))


def test_target_layouts_agree():
    """Padded (with and without target_lengths), concatenated and one sequence per
    example: the same problem, the same bits."""
    rng = np.random.default_rng(0)
    e = _log_softmax(rng.normal(size=(3, 30, 6))).astype(np.float32)
    seqs = [[1, 2, 2, 3], [5], []]
    padded = np.array([[1, 2, 2, 3], [5, 0, 0, 0], [4, 4, 4, 4]])
    counts = np.array([4, 1, 0])
    flat = np.array([1, 2, 2, 3, 5])
    want = lattice.ctc_forward_backward(e, seqs)
    for targets, target_lengths in ((padded, counts), (flat, counts),
                                    ([np.array(s) for s in seqs], None),
                                    (padded.astype(np.uint8), counts.astype(np.int32))):
        got = lattice.ctc_forward_backward(e, targets, target_lengths=target_lengths)
        _assert_same_bits(got.score, want.score)
        _assert_same_bits(got.emission_grad, want.emission_grad)
    full = np.array([[1, 2], [5, 5], [4, 3]])  # no target_lengths: every column used
    _assert_same_bits(lattice.ctc_score(e, full), lattice.ctc_score(e, full.tolist()))
    np.testing.assert_allclose(lattice.ctc_score(e, full),
                               lattice.forward(e, lattice.build_batch("ctc", full)),
                               rtol=1e-6)


def test_refused_examples_are_the_exact_log_space_result(log_space_recomputations):
    """Confident but wrong predictions make the probability-space check refuse
    examples; the fused path recomputes exactly those with the float64 log-space
    kernel, as the graph path does: the same bits as the float64 reference."""
    recomputed = log_space_recomputations
    rng = np.random.default_rng(3)
    e = _log_softmax(10 * rng.normal(size=(4, 1000, 16))).astype(np.float32)
    e[3] = _log_softmax(rng.normal(size=(1000, 16)))  # a clean one
    targets = [rng.integers(1, 16, size=50) for _ in range(4)]
    got = lattice.ctc_forward_backward(e, targets)
    assert recomputed == [3]  # examples 0, 1 and 2, in one call
    with CPU.options(probability_space=False):
        want = lattice.forward_backward(e.astype(np.float64),
                                        lattice.build_batch("ctc", targets))
    _assert_same_bits(got.score[:3], want.score[:3].astype(np.float32))
    _assert_same_bits(got.emission_grad[:3], want.emission_grad[:3].astype(np.float32))
    assert np.abs(got.emission_grad[3] - want.emission_grad[3]).max() < 1e-6


@pytest.mark.parametrize("option", ["banded", "probability_space"])
def test_kernel_options_run_the_graph_path(option):
    """With the banded or probability-space kernels switched off, the fused entries
    run the graph kernels those options select, with their results."""
    rng = np.random.default_rng(1)
    e = _log_softmax(rng.normal(size=(3, 25, 5))).astype(np.float32)
    targets = [[1, 2], [3, 3, 4], [4]]
    ran = []
    real = CPU.kernel

    def spy(name):
        ran.append(name)
        return real(name)

    with CPU.options(**{option: False}):
        CPU.kernel = spy
        try:
            got = lattice.ctc_forward_backward(e, targets)
            score = lattice.ctc_score(e, targets)
        finally:
            del CPU.kernel
        gb = lattice.build_batch("ctc", targets)
        want = lattice.forward_backward(e, gb)
        want_score = lattice.forward(e, gb)
    # without banded kernels nothing fused runs; without probability space only
    # the fused forward (log space, banded) does
    fused = [name for name in ran if name.startswith("ctc_")]
    assert fused == ([] if option == "banded" else ["ctc_forward_banded_log_float32"])
    _assert_same_bits(got.score, want.score)
    _assert_same_bits(got.emission_grad, want.emission_grad)
    _assert_same_bits(score, want_score)
    default = lattice.ctc_forward_backward(e, targets)
    if option == "probability_space":  # the float32 log-space kernels: other bits
        assert default.emission_grad.tobytes() != got.emission_grad.tobytes()
    else:  # the general kernels run float32 in float64: both within the contract
        assert np.abs(default.emission_grad - got.emission_grad).max() < 1e-6


def test_a_backend_without_fused_kernels_gets_the_graph_batch(monkeypatch):
    calls = []
    real = cpu_module.CPUBackend.forward_backward

    def spy(self, problem, semiring="log", checkpoint=None):
        calls.append(problem.batch.num_states.tolist())
        return real(self, problem, semiring, checkpoint)

    rng = np.random.default_rng(2)
    e = _log_softmax(rng.normal(size=(2, 20, 4)))
    want = lattice.ctc_forward_backward(e, [[1, 2], [3]])
    want_score = lattice.ctc_score(e, [[1, 2], [3]])
    monkeypatch.setattr(cpu_module.CPUBackend, "fused_ctc", False)
    monkeypatch.setattr(cpu_module.CPUBackend, "forward_backward", spy)
    got = lattice.ctc_forward_backward(e, [[1, 2], [3]])
    assert calls == [[5, 3]]
    np.testing.assert_allclose(got.score, want.score, rtol=1e-12)
    np.testing.assert_allclose(got.emission_grad, want.emission_grad, atol=1e-12)
    _assert_same_bits(lattice.ctc_score(e, np.array([1, 2, 3]), target_lengths=[2, 1]),
                      want_score)


def test_same_bits_at_every_thread_count():
    rng = np.random.default_rng(9)
    e = _log_softmax(rng.normal(size=(7, 200, 12))).astype(np.float32)
    targets = [rng.integers(1, 12, size=n) for n in range(3, 10)]
    with lattice.num_threads(1):
        want = lattice.ctc_forward_backward(e, targets)
        want_score = lattice.ctc_score(e, targets)
    for threads in (2, 3):
        with lattice.num_threads(threads):
            got = lattice.ctc_forward_backward(e, targets)
            _assert_same_bits(lattice.ctc_score(e, targets), want_score)
        _assert_same_bits(got.score, want.score)
        _assert_same_bits(got.emission_grad, want.emission_grad)


def test_time_major_emissions_get_a_time_major_gradient():
    """The (B, T, C) view of a (T, B, C) array (torch's layout) gets its gradient in
    the same layout, so that transposing it back is contiguous."""
    rng = np.random.default_rng(4)
    time_major = _log_softmax(rng.normal(size=(30, 3, 5)))
    fb = lattice.ctc_forward_backward(time_major.transpose(1, 0, 2), [[1], [2, 3], []])
    assert fb.emission_grad.transpose(1, 0, 2).flags.c_contiguous
    want = lattice.ctc_forward_backward(np.ascontiguousarray(time_major.transpose(1, 0, 2)),
                                        [[1], [2, 3], []])
    _assert_same_bits(np.ascontiguousarray(fb.emission_grad), want.emission_grad)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
@pytest.mark.parametrize("shape", [(16, 200, 32), (3, 7, 5), (1, 1, 1)])
def test_the_gradient_rows_start_on_a_cache_line(dtype, shape):
    """The CPU backend's gradient arrays start on a 64-byte boundary (numpy's own
    sit 16 bytes past one, so neighbouring examples' rows, which two threads write
    at once, shared cache lines), zeroed or not, in either layout."""
    cpu = lattice.backends.get_backend("cpu")
    B, T, C = shape
    for emissions in (np.ones((B, T, C), dtype), np.ones((T, B, C), dtype).transpose(1, 0, 2)):
        for grad in (cpu.empty_like_emissions(emissions),
                     cpu.zeros_like_emissions(emissions)):
            assert grad.ctypes.data % 64 == 0
            assert grad.shape == emissions.shape and grad.dtype == dtype
            assert grad.strides == emissions.strides
        assert not cpu.zeros_like_emissions(emissions).any()
    fb = lattice.ctc_forward_backward(np.zeros((2, 9, 4), dtype), [[1, 2], [3]])
    assert fb.emission_grad.ctypes.data % 64 == 0


@pytest.mark.parametrize("size", [1, 2, 5, 8, 16, 33])
def test_examples_run_longest_first_and_neighbours_apart(size):
    """The kernels' schedule: a permutation, in decreasing work, and among equal
    work the examples two threads take at once are not neighbours in memory."""
    from lattice.backends import cpu as cpu_module

    rng = np.random.default_rng(size)
    lengths = np.full(size, 50, dtype=np.int64)
    states = np.full(size, 9, dtype=np.int32)
    run = cpu_module._Run(lengths, states, 2 * states, 9, 27, np.float32,
                          {"serial_work": 0, "workspace_cache": 0})
    assert sorted(run.order.tolist()) == list(range(size))
    if size >= 4:
        assert np.abs(np.diff(run.order)).min() >= 2
    mixed = rng.integers(1, 4, size=size) * 10
    run = cpu_module._Run(mixed, states, 2 * states, 9, 27, np.float32,
                          {"serial_work": 0, "workspace_cache": 0})
    assert sorted(run.order.tolist()) == list(range(size))
    assert (np.diff(mixed[run.order]) <= 0).all()


def test_nan_scores_are_refused_as_on_the_graph_path():
    e = np.zeros((2, 6, 4))
    e[1, 2, 3] = np.nan
    for run in (lattice.ctc_score, lattice.ctc_forward_backward):
        with pytest.raises(FloatingPointError, match=r"example\(s\) \[1\].*frame 2, class 3"):
            run(e, [[1], [3]])
    # a NaN in a class the target never reads changes nothing
    assert np.isfinite(lattice.ctc_score(e, [[1], [2]])).all()


@pytest.mark.parametrize("targets, kwargs, error, match", [
    ([[1, 4]], {}, ValueError, r"targets\[0\] holds the class id 4 at position 1, outside \[0, 4\)"),
    ([[1, -1]], {}, ValueError, r"targets\[0\] holds the class id -1 at position 1"),
    (np.array([[1, 2**64 - 1]], dtype=np.uint64), {}, ValueError,
     r"class id 18446744073709551615 at position 1"),
    ([[1, 0]], {}, ValueError, r"targets\[0\] contains the blank id 0 at position 1"),
    ([[1, 2]], {"blank": 2}, ValueError, r"targets\[0\] contains the blank id 2"),
    ([[1]], {"blank": 4}, ValueError, r"blank is 4, but emissions have only 4 classes"),
    ([[1]], {"blank": -1}, ValueError, r"blank must be >= 0"),
    ([[1]], {"blank": 1.0}, TypeError, r"blank must be an int"),
    ([[1.5]], {}, TypeError, r"targets\[0\] must hold integer class ids"),
    ([[1], [2]], {}, ValueError, r"got 2 targets for a batch of 1 examples"),
    ([[[1]]], {}, ValueError, r"targets\[0\] must be a 1-D sequence"),
    ([[1]], {"target_lengths": [1]}, ValueError, r"target_lengths is only for padded"),
    (np.array([[1, 2]]), {"target_lengths": [3]}, ValueError,
     r"target_lengths must lie in \[0, 2\] \(targets.shape\[1\]\)"),
    (np.array([[1, 2]]), {"target_lengths": [-1]}, ValueError, r"must lie in \[0, 2\]"),
    (np.array([1, 2]), {"target_lengths": [-1]}, ValueError,
     r"target_lengths must be non-negative"),
    (np.array([[1, 2]]), {"target_lengths": [1, 1]}, ValueError, r"shape \(1,\)"),
    (np.array([[1, 2]]), {"target_lengths": [1.0]}, TypeError, r"must hold integers"),
    (np.array([[1, 2], [1, 2]]), {}, ValueError, r"must have 1 rows"),
    (np.array([1, 2]), {}, ValueError, r"need target_lengths"),
    (np.array([1, 2]), {"target_lengths": [3]}, ValueError, r"sum to 3"),
    (np.zeros((1, 1, 1), dtype=int), {}, ValueError, r"got an array of shape"),
    (np.array([[1.0]]), {}, TypeError, r"targets must hold integer class ids"),
    ([[1]], {"lengths": [7]}, ValueError, r"lengths must lie in \[0, 6\]"),
])  # fmt: skip
def test_bad_inputs_are_refused_naming_the_argument(targets, kwargs, error, match):
    e = np.zeros((1, 6, 4))
    for run in (lattice.ctc_score, lattice.ctc_forward_backward):
        with pytest.raises(error, match=match):
            run(e, targets, **kwargs)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), padded=st.booleans(), dtype=st.sampled_from(["int64", "int32"]))
def test_the_target_check_in_c_agrees_with_numpys(data, padded, dtype):
    """ctc_problem's check of the ids (_core.ctc_check_targets for int64 targets,
    numpy passes for the other dtypes) finds the same first bad id, in example
    order and then position, and the same skip flag, for padded and concatenated
    targets with ids below 0, at or beyond the classes, or the blank."""
    classes = data.draw(st.integers(1, 6), label="classes")
    blank = data.draw(st.integers(0, classes - 1), label="blank")
    counts = np.array(data.draw(st.lists(st.integers(0, 5), min_size=1, max_size=5),
                                label="counts"), dtype=np.int64)
    width = int(counts.max(initial=0))
    ids = data.draw(st.lists(st.integers(-2, classes + 1), min_size=len(counts) * width,
                             max_size=len(counts) * width), label="ids")
    grid = np.array(ids, dtype=np.int64).reshape(len(counts), width)
    if padded:
        raw, offsets, w = grid.reshape(-1), np.arange(len(counts)) * width, width
    else:
        raw = np.concatenate([row[:n] for row, n in zip(grid, counts)] + [np.zeros(0, np.int64)])
        offsets, w = np.cumsum(counts) - counts, None
    want = lattice.fused._check_targets(raw.astype(dtype), raw, offsets, counts, w,
                                        classes, blank)
    got = lattice._core.ctc_check_targets(raw, offsets, counts, classes, blank)
    assert got[:2] == want[:2]
    if got[0] < 0:  # the skip flag is read only when every id is good
        assert got[2] == want[2]


def test_bad_emissions_and_checkpoint_are_refused():
    with pytest.raises(TypeError, match="float32 or float64"):
        lattice.ctc_score(np.zeros((1, 3, 2), dtype=np.int64), [[1]])
    with pytest.raises(ValueError, match="shape"):
        lattice.ctc_score(np.zeros((3, 2)), [[1]])
    with pytest.raises(ValueError, match="checkpoint"):
        lattice.ctc_forward_backward(np.zeros((1, 3, 2)), [[1]], checkpoint=0)


def test_empty_batch():
    got = lattice.ctc_forward_backward(np.zeros((0, 5, 3)), [])
    assert got.score.shape == (0,) and got.emission_grad.shape == (0, 5, 3)
    assert lattice.ctc_score(np.zeros((0, 5, 3), np.float32), []).dtype == np.float32


def test_ctc_loss_runs_the_fused_kernels(monkeypatch):
    """lattice.torch.ctc_loss takes the fused path (and its gradient equals the graph
    path's, bit for bit); under no_grad it runs the fused forward."""
    used = []
    for name in ("ctc_forward", "ctc_forward_backward"):
        real = getattr(cpu_module.CPUBackend, name)

        def spy(self, *args, _real=real, _name=name, **kwargs):
            used.append(_name)
            return _real(self, *args, **kwargs)

        monkeypatch.setattr(cpu_module.CPUBackend, name, spy)
    g = torch.Generator().manual_seed(0)
    lp = torch.randn(40, 3, 6, generator=g).log_softmax(-1).requires_grad_()
    targets, lengths, target_lengths = torch.tensor([[1, 2, 2], [3, 0, 0], [5, 4, 1]]), \
        torch.tensor([40, 31, 12]), torch.tensor([3, 1, 3])
    loss = lattice.torch.ctc_loss(lp, targets, lengths, target_lengths, reduction="sum")
    loss.backward()
    with torch.no_grad():
        lattice.torch.ctc_loss(lp, targets, lengths, target_lengths)
    assert used == ["ctc_forward_backward", "ctc_forward"]
    seqs = [[1, 2, 2], [3], [5, 4, 1]]
    fb = lattice.forward_backward(lp.detach().transpose(0, 1).numpy(),
                                  lattice.build_batch("ctc", seqs), lengths.numpy())
    assert loss.item() == pytest.approx(-float(fb.score.sum()), rel=1e-6)
    assert torch.equal(lp.grad, -torch.from_numpy(fb.emission_grad).transpose(0, 1))
    assert lp.grad.is_contiguous()  # the engine's gradient, no copy to torch's layout


@pytest.fixture
def in_place_multiplies(monkeypatch):
    """The sizes of the tensors ``Tensor.mul_`` scales for the rest of one test."""
    scaled = []
    real = torch.Tensor.mul_

    def spy(self, other):
        scaled.append(self.numel())
        return real(self, other)

    monkeypatch.setattr(torch.Tensor, "mul_", spy)
    return scaled


def test_ctc_loss_never_multiplies_its_gradient_to_reduce(in_place_multiplies):
    """The fused kernel writes the reduced loss's gradient (negated and weighted in
    the kernel): with reduction="sum" and "mean" the backward hands it over
    unscaled (no pass over 2^20 values to negate or weigh it), and it equals the
    kernel's gradient weighted as torch's reductions weigh it."""
    scaled = in_place_multiplies
    g = torch.Generator().manual_seed(3)
    lp = torch.randn(1024, 2, 512, generator=g).log_softmax(-1).requires_grad_()
    targets = torch.randint(1, 512, (2, 30), generator=g)
    lengths, target_lengths = torch.tensor([1024, 700]), torch.tensor([30, 21])
    fb = lattice.ctc_forward_backward(lp.detach().transpose(0, 1).numpy(),
                                      targets.numpy(), lengths.numpy(),
                                      target_lengths.numpy())
    want = -torch.from_numpy(fb.emission_grad).transpose(0, 1)
    for reduction in ("sum", "mean"):
        lp.grad = None
        scaled.clear()
        lattice.torch.ctc_loss(lp, targets, lengths, target_lengths,
                               reduction=reduction).backward()
        assert scaled == []
        if reduction == "sum":
            assert torch.equal(lp.grad, want)
        else:  # the weight of example b: 1 / (B target_lengths[b])
            weight = 1.0 / (2 * target_lengths.double())
            torch.testing.assert_close(lp.grad, want * weight.float()[None, :, None],
                                       rtol=1e-6, atol=1e-12)


def test_a_broadcast_incoming_gradient_is_looked_at_once(in_place_multiplies):
    """A sum's backward hands the op one value broadcast (every stride 0): the
    backward looks at that value, so a gradient of any size goes out unscaled when
    it is 1 and scaled once, exactly, when it is not; other incoming gradients of a
    small problem are multiplied."""
    scaled = in_place_multiplies
    g = torch.Generator().manual_seed(5)
    lp = torch.randn(40, 3, 6, generator=g).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[1, 2, 3], [4, 4, 0], [5, 0, 0]])
    args = (targets, torch.tensor([40, 31, 12]), torch.tensor([3, 2, 1]))
    lattice.torch.ctc_loss(lp, *args, reduction="sum").backward()
    assert scaled == []
    once = lp.grad.clone()
    lp.grad = None
    (2.5 * lattice.torch.ctc_loss(lp, *args, reduction="sum")).backward()
    assert scaled == [lp.numel()]
    assert torch.equal(lp.grad, once * 2.5)
    scaled.clear()
    lp.grad = None
    lattice.torch.ctc_loss(lp, *args, reduction="none").sum().backward()
    assert scaled == [] and torch.equal(lp.grad, once)
    lp.grad = None
    lattice.torch.ctc_loss(lp, *args, reduction="none").backward(torch.ones(3))
    assert scaled == [lp.numel()] and torch.equal(lp.grad, once)


@pytest.mark.parametrize("reduction", ["sum", "mean"])
@pytest.mark.parametrize("option", [{}, {"probability_space": False}, {"banded": False}])
def test_reductions_in_the_op_match_torchs(reduction, option, log_space_recomputations):
    """ctc_loss's "sum" and "mean", reduced by the op (its kernel writes the
    weighted gradient), equal torch's float64 ctc_loss and its gradient, on the
    kernel's path, the refused examples' log-space path and the graph path; with
    zero_infinity the losses are reduced by torch ops as before, to the same
    numbers. (Gradients with respect to the logits, where torch's and the true
    derivative agree.)"""
    g = torch.Generator().manual_seed(12)
    logits = torch.randn(60, 4, 7, generator=g, dtype=torch.float64)
    logits[:, 1] *= 300  # refused by the probability-space check
    logits.requires_grad_()
    targets = torch.tensor([[1, 2, 2, 3], [4, 5, 6, 1], [3, 0, 0, 0], [2, 2, 0, 0]])
    args = (targets, torch.tensor([60, 55, 20, 9]), torch.tensor([4, 4, 1, 2]))
    want = torch.nn.functional.ctc_loss(logits.log_softmax(-1), *args,
                                        reduction=reduction)
    want_grad, = torch.autograd.grad(want, logits)
    for zero_infinity in (False, True):
        with CPU.options(**option):
            got = lattice.torch.ctc_loss(logits.log_softmax(-1), *args,
                                         reduction=reduction,
                                         zero_infinity=zero_infinity)
        assert got.shape == () and got.dtype == torch.float64
        got_grad, = torch.autograd.grad(got, logits)
        torch.testing.assert_close(got, want, rtol=1e-12, atol=0)
        torch.testing.assert_close(got_grad, want_grad, rtol=1e-9, atol=1e-12)
    if not option:
        assert 1 in log_space_recomputations


def test_the_op_refuses_an_unknown_reduction():
    lp = torch.zeros(3, 5, 4).log_softmax(-1)
    with pytest.raises(ValueError, match="reduction must be 'none', 'sum' or 'mean'"):
        lattice._torch_ops.ctc_score(lp, torch.tensor([[1]] * 3), torch.tensor([5] * 3),
                                     torch.tensor([1] * 3), 0, False, "propagate", -1,
                                     True, "max")


def test_ctc_loss_falls_back_on_nan_and_bad_input():
    """A NaN input goes to the graph path, which propagates it (nan="propagate") or
    raises; a bad input gets the torch layer's own message."""
    lp = torch.zeros(5, 2, 4).log_softmax(-1)
    lp[2, 1, 1] = float("nan")
    targets = torch.tensor([[1, 2], [1, 3]])
    loss = lattice.torch.ctc_loss(lp, targets, [5, 5], [2, 2], reduction="none")
    assert torch.isfinite(loss[0]) and torch.isnan(loss[1])
    with pytest.raises(FloatingPointError):
        lattice.torch.ctc_loss(lp, targets, [5, 5], [2, 2], nan="raise")
    with pytest.raises(ValueError, match=r"log_probs.shape\[2\]"):
        lattice.torch.ctc_loss(lp, torch.tensor([[1, 9], [1, 3]]), [5, 5], [2, 2])


def test_a_target_too_long_for_any_kernel_is_refused_by_the_builder(monkeypatch):
    """Past the size limit the fused path hands over to the graph path, whose
    builder names the target (the limit is lowered here to test it cheaply)."""
    monkeypatch.setattr(lattice.checks, "SIZE_LIMIT", 40)
    monkeypatch.setattr(lattice.fused, "beyond_size", lambda n: n > 40)
    e = np.zeros((1, 30, 4))
    with pytest.raises(ValueError, match=r"targets\[0\] of 9 symbols"):
        lattice.ctc_forward_backward(e, [[1, 2] * 4 + [1]])
    with pytest.raises(ValueError, match=r"targets\[0\] of 9 symbols"):
        lattice.ctc_score(e, np.array([[1, 2] * 4 + [1]]))


def test_concurrent_calls_from_python_threads():
    """The kernels release the GIL and every call has its own workspaces: four
    Python threads at once get the results of one thread alone."""
    from concurrent.futures import ThreadPoolExecutor

    rng = np.random.default_rng(6)
    inputs = []
    for n in range(4):
        e = _log_softmax(rng.normal(size=(5, 120, 9))).astype(np.float32)
        inputs.append((e, [rng.integers(1, 9, size=k) for k in range(2 + n, 7 + n)]))
    want = [lattice.ctc_forward_backward(e, t) for e, t in inputs]
    with ThreadPoolExecutor(4) as pool:
        for _ in range(3):
            got = list(pool.map(lambda args: lattice.ctc_forward_backward(*args),
                                inputs))
            for g, w in zip(got, want):
                _assert_same_bits(g.score, w.score)
                _assert_same_bits(g.emission_grad, w.emission_grad)
