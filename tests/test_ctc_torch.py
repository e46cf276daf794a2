"""CTC through the generic engine against ``torch.nn.functional.ctc_loss``.

The CTC log-likelihood of a target is the log-partition of the ``ctc`` graph, so
``lattice.forward_backward(log_probs, [build("ctc", target, blank=...)], lengths)``
must reproduce torch's per-example loss (``loss = -score``) and, through the posteriors
it returns, torch's gradients.

Gradient conventions (reduction="none", grad_output = 1 for every example):

* The true derivative of the loss ``-log Z`` with respect to the log-probabilities is
  ``g = -posterior = -emission_grad``.
* torch's CTC backward returns ``exp(log_probs) - posterior`` on the valid frames
  instead: it assumes the inputs are ``log_softmax`` outputs and folds the softmax
  Jacobian in. Past ``input_length`` it returns 0.
* Through ``x -> log_softmax(x)`` the chain rule gives, per frame,
  ``grad_x[c] = g[c] - softmax(x)[c] * sum_c' g[c']``. On a valid frame the posterior
  sums to 1, so ``grad_x = softmax(x) - posterior``; past the length ``g = 0`` and
  ``grad_x = 0``. torch's autograd through its own log_softmax gives the same value,
  so this is compared exactly (to 1e-9 in float64).
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402
from hypothesis import HealthCheck, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402

import lattice  # noqa: E402

TOL64 = dict(rtol=1e-9, atol=1e-9)


# --------------------------------------------------------------------------------
# helpers
# --------------------------------------------------------------------------------


def log_softmax_np(x):
    m = x.max(axis=-1, keepdims=True)
    z = x - m
    return z - np.log(np.exp(z).sum(axis=-1, keepdims=True))


def softmax_np(x):
    return np.exp(log_softmax_np(x))


def min_frames(target):
    """Frames a CTC path needs: one per symbol plus a blank between equal neighbours."""
    target = list(target)
    return len(target) + sum(a == b for a, b in zip(target, target[1:]))


def padded_targets(targets, blank, num_classes):
    """(B, S) int64 tensor of targets; padding uses a non-blank symbol (never read)."""
    width = max([1] + [len(t) for t in targets])
    pad = (blank + 1) % num_classes
    out = np.full((len(targets), width), pad, dtype=np.int64)
    for b, t in enumerate(targets):
        out[b, : len(t)] = t
    return torch.from_numpy(out)


def torch_ctc(log_probs, targets, lengths, blank, zero_infinity=False):
    """torch's per-example CTC loss and d loss / d log_probs, both in (B, T, C)."""
    lp = torch.tensor(np.ascontiguousarray(log_probs.transpose(1, 0, 2)), requires_grad=True)
    C = log_probs.shape[2]
    loss = F.ctc_loss(
        lp,
        padded_targets(targets, blank, C),
        torch.as_tensor(np.asarray(lengths, dtype=np.int64)),
        torch.as_tensor([len(t) for t in targets], dtype=torch.int64),
        blank=blank,
        reduction="none",
        zero_infinity=zero_infinity,
    )
    loss.backward(torch.ones_like(loss))
    return loss.detach().numpy(), lp.grad.numpy().transpose(1, 0, 2)


def torch_ctc_logits(logits, targets, lengths, blank):
    """d loss / d logits through torch's own log_softmax (zero_infinity=True)."""
    x = torch.tensor(np.ascontiguousarray(logits.transpose(1, 0, 2)), requires_grad=True)
    C = logits.shape[2]
    loss = F.ctc_loss(
        x.log_softmax(-1),
        padded_targets(targets, blank, C),
        torch.as_tensor(np.asarray(lengths, dtype=np.int64)),
        torch.as_tensor([len(t) for t in targets], dtype=torch.int64),
        blank=blank,
        reduction="none",
        zero_infinity=True,
    )
    loss.backward(torch.ones_like(loss))
    return x.grad.numpy().transpose(1, 0, 2)


def ours(log_probs, targets, lengths, blank):
    graphs = [lattice.build("ctc", t, blank=blank) for t in targets]
    return lattice.forward_backward(log_probs, graphs, lengths)


def random_target(rng, length, num_classes, blank, repeats=False):
    symbols = [c for c in range(num_classes) if c != blank]
    if repeats and length:
        # runs of equal symbols, the case where the blank between them is mandatory
        out = []
        while len(out) < length:
            out.extend([int(rng.choice(symbols))] * int(rng.integers(1, 4)))
        return out[:length]
    return [int(v) for v in rng.choice(symbols, size=length)]


def check_against_torch(logits, targets, lengths, blank):
    """All float64 comparisons for one batch; returns the feasibility mask."""
    logits = np.asarray(logits, dtype=np.float64)
    B, T, C = logits.shape
    lengths = np.asarray(lengths, dtype=np.int64)
    log_probs = log_softmax_np(logits)
    fb = ours(log_probs, targets, lengths, blank)
    assert fb.score.dtype == np.float64
    assert fb.emission_grad.shape == (B, T, C)

    feasible = np.array([min_frames(t) <= L for t, L in zip(targets, lengths)])

    # --- the loss -------------------------------------------------------------------
    loss, _ = torch_ctc(log_probs, targets, lengths, blank, zero_infinity=False)
    assert np.array_equal(np.isposinf(loss), ~feasible)  # sanity of the reference
    assert np.array_equal(np.isneginf(fb.score), ~feasible)
    assert not np.isnan(fb.score).any()
    np.testing.assert_allclose(-fb.score[feasible], loss[feasible], **TOL64)

    # zero_infinity=True: infeasible losses are 0 in torch; ours are -inf
    loss0, tgrad = torch_ctc(log_probs, targets, lengths, blank, zero_infinity=True)
    assert np.all(loss0[~feasible] == 0)

    post = fb.emission_grad
    valid = np.arange(T)[None, :] < lengths[:, None]  # (B, T)

    # posteriors past the length, and of infeasible examples, are exactly zero
    assert np.all(post[~valid] == 0)
    assert np.all(post[~feasible] == 0)
    assert np.all(tgrad[~feasible] == 0)
    assert np.all(tgrad[~valid] == 0)
    # posteriors sum to one on every valid frame of a feasible example
    sums = post.sum(axis=2)
    np.testing.assert_allclose(sums[valid & feasible[:, None]], 1.0, rtol=0, atol=1e-9)

    # --- torch's gradient w.r.t. log_probs: exp(log_probs) - posterior ----------------
    expected = np.where(valid[:, :, None], np.exp(log_probs) - post, 0.0)
    np.testing.assert_allclose(tgrad[feasible], expected[feasible], **TOL64)

    # --- autograd through log_softmax: chain rule applied to g = -posterior -----------
    g = -post
    grad_x = g - softmax_np(logits) * g.sum(axis=2, keepdims=True)
    grad_x[~feasible] = 0.0  # zero_infinity=True on the torch side
    torch_grad_x = torch_ctc_logits(logits, targets, lengths, blank)
    np.testing.assert_allclose(torch_grad_x, grad_x, **TOL64)
    return feasible


# --------------------------------------------------------------------------------
# fixed cases
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(6))
def test_random_batches_blank0(seed):
    rng = np.random.default_rng(seed)
    B, T, C = int(rng.integers(1, 6)), int(rng.integers(1, 25)), int(rng.integers(2, 9))
    lengths = rng.integers(1, T + 1, size=B)
    targets = [
        random_target(rng, int(rng.integers(0, T + 2)), C, 0, repeats=bool(rng.integers(2)))
        for _ in range(B)
    ]
    check_against_torch(rng.standard_normal((B, T, C)) * 2, targets, lengths, 0)


@pytest.mark.parametrize("where", ["last", "middle"])
def test_blank_not_zero(where):
    rng = np.random.default_rng(11)
    B, T, C = 5, 18, 7
    blank = C - 1 if where == "last" else 3
    targets = [
        [1, 2, 5],
        [4, 4, 4],
        [],
        [0, 0, 1, 1, 2, 2],
        random_target(rng, 8, C, blank, repeats=True),
    ]
    assert all(blank not in t for t in targets)
    lengths = np.array([18, 5, 7, 12, 18])
    feasible = check_against_torch(rng.standard_normal((B, T, C)), targets, lengths, blank)
    assert feasible.all()


def test_repeated_symbols():
    """[3, 3, 3] needs 5 frames; with exactly 5 there is a single path."""
    rng = np.random.default_rng(2)
    T, C = 9, 5
    targets = [[3, 3, 3]] * 6
    lengths = np.array([3, 4, 5, 6, 8, 9])
    feasible = check_against_torch(rng.standard_normal((6, T, C)), targets, lengths, 0)
    assert feasible.tolist() == [False, False, True, True, True, True]
    # with 5 frames the only path is 3 _ 3 _ 3: log-likelihood = sum of those entries
    lp = log_softmax_np(rng.standard_normal((1, 5, C)))
    score = ours(lp, [[3, 3, 3]], [5], 0).score[0]
    expected = lp[0, 0, 3] + lp[0, 1, 0] + lp[0, 2, 3] + lp[0, 3, 0] + lp[0, 4, 3]
    assert score == pytest.approx(expected, rel=1e-12, abs=1e-12)


def test_empty_targets():
    rng = np.random.default_rng(3)
    B, T, C = 4, 10, 6
    targets = [[], [], [2], []]
    lengths = np.array([10, 1, 4, 7])
    logits = rng.standard_normal((B, T, C))
    check_against_torch(logits, targets, lengths, 0)
    # empty target: the all-blank path only
    lp = log_softmax_np(logits)
    fb = ours(lp, targets, lengths, 0)
    assert fb.score[0] == pytest.approx(lp[0, :, 0].sum(), rel=1e-12)
    assert fb.score[1] == pytest.approx(lp[1, 0, 0], rel=1e-12)


def test_empty_targets_all_empty_blank_last():
    rng = np.random.default_rng(4)
    B, T, C = 3, 6, 4
    check_against_torch(rng.standard_normal((B, T, C)), [[], [], []], [6, 3, 1], C - 1)


def test_infeasible_targets():
    rng = np.random.default_rng(5)
    B, T, C = 5, 8, 5
    targets = [[1, 2, 3, 4, 1, 2, 3, 4, 1], [1, 1, 1, 1, 1], [1, 2], [2, 2], [4] * 4]
    lengths = np.array([8, 8, 1, 2, 8])
    feasible = check_against_torch(rng.standard_normal((B, T, C)), targets, lengths, 0)
    assert feasible.tolist() == [False, False, False, False, True]
    fb = ours(log_softmax_np(rng.standard_normal((B, T, C))), targets, lengths, 0)
    assert np.isneginf(fb.score[:4]).all()
    assert np.all(fb.emission_grad[:4] == 0)
    assert np.all(fb.arc_grad[:4] == 0)
    assert np.all(fb.start_grad[:4] == 0) and np.all(fb.final_grad[:4] == 0)


def test_exact_minimum_length():
    """Targets whose input length is exactly the minimum number of frames."""
    rng = np.random.default_rng(6)
    C = 6
    targets = [[1], [1, 2], [2, 2], [1, 2, 2, 3], [5, 5, 5, 5]]
    lengths = np.array([min_frames(t) for t in targets])
    T = int(lengths.max())
    feasible = check_against_torch(rng.standard_normal((5, T, C)), targets, lengths, 0)
    assert feasible.all()
    # one frame fewer is infeasible (except for [1], which keeps its single frame)
    check_against_torch(rng.standard_normal((5, T, C)), targets, lengths - 1 + (lengths == 1), 0)


def test_peaked_distributions():
    """Very confident (nearly one-hot) outputs still agree to 1e-9."""
    rng = np.random.default_rng(7)
    B, T, C = 3, 15, 5
    logits = rng.standard_normal((B, T, C)) * 12
    targets = [[1, 2, 3], [4, 4], [2, 1, 2, 1]]
    check_against_torch(logits, targets, [15, 15, 11], 0)


def test_non_contiguous_emissions():
    """A (T, B, C) array viewed as (B, T, C) gives the same result as a copy."""
    rng = np.random.default_rng(8)
    T, B, C = 12, 3, 5
    lp_tbc = log_softmax_np(rng.standard_normal((T, B, C)))
    view = lp_tbc.transpose(1, 0, 2)
    assert not view.flags.c_contiguous
    targets = [[1, 2], [3, 3, 4], []]
    a = ours(view, targets, [12, 9, 5], 0)
    b = ours(np.ascontiguousarray(view), targets, [12, 9, 5], 0)
    np.testing.assert_array_equal(a.score, b.score)
    np.testing.assert_array_equal(a.emission_grad, b.emission_grad)
    loss, _ = torch_ctc(np.ascontiguousarray(view), targets, [12, 9, 5], 0)
    np.testing.assert_allclose(-a.score, loss, **TOL64)


def test_graph_batch_reused():
    """A prebuilt GraphBatch gives the same numbers as a list of graphs."""
    rng = np.random.default_rng(9)
    B, T, C = 4, 10, 6
    targets = [[1, 2, 3], [2], [5, 5], [1, 3, 1, 3]]
    lp = log_softmax_np(rng.standard_normal((B, T, C)))
    gb = lattice.batch([lattice.build("ctc", t) for t in targets])
    loss, _ = torch_ctc(lp, targets, [10] * B, 0)
    for _ in range(2):
        fb = lattice.forward_backward(lp, gb)
        np.testing.assert_allclose(-fb.score, loss, **TOL64)


# --------------------------------------------------------------------------------
# float32
# --------------------------------------------------------------------------------


@pytest.mark.parametrize("blank", [0, 2, 5])
def test_float32(blank):
    rng = np.random.default_rng(100 + blank)
    B, T, C = 4, 40, 6
    targets = [random_target(rng, k, C, blank, repeats=True) for k in (5, 10, 0, 15)]
    lengths = np.array([40, 33, 20, 40])
    lp64 = log_softmax_np(rng.standard_normal((B, T, C)) * 2)
    lp32 = lp64.astype(np.float32)
    fb = ours(lp32, targets, lengths, blank)
    assert fb.score.dtype == np.float32
    assert fb.emission_grad.dtype == np.float32

    # reference: torch in float64 on the same (float32-rounded) inputs
    loss64, grad64 = torch_ctc(lp32.astype(np.float64), targets, lengths, blank)
    np.testing.assert_allclose(-fb.score, loss64, rtol=1e-5, atol=1e-4)
    valid = np.arange(T)[None, :] < lengths[:, None]
    expected = np.where(valid[:, :, None], np.exp(lp32.astype(np.float64)) - grad64, 0.0)
    np.testing.assert_allclose(fb.emission_grad, expected, rtol=0, atol=2e-4)

    # and torch's own float32 kernel
    loss32, _ = torch_ctc(lp32, targets, lengths, blank)
    assert loss32.dtype == np.float32
    np.testing.assert_allclose(-fb.score, loss32, rtol=1e-4, atol=1e-3)


def test_float32_infeasible_is_neg_inf():
    lp = log_softmax_np(np.random.default_rng(0).standard_normal((2, 3, 4))).astype(np.float32)
    fb = ours(lp, [[1, 1, 1], [1, 2]], [3, 3], 0)
    assert np.isneginf(fb.score[0]) and np.isfinite(fb.score[1])
    assert np.all(fb.emission_grad[0] == 0)


# --------------------------------------------------------------------------------
# hypothesis
# --------------------------------------------------------------------------------


@st.composite
def ctc_cases(draw):
    B = draw(st.integers(1, 4))
    T = draw(st.integers(1, 16))
    C = draw(st.integers(2, 7))
    blank = draw(st.integers(0, C - 1))
    symbols = [c for c in range(C) if c != blank]
    targets = [
        draw(st.lists(st.sampled_from(symbols), min_size=0, max_size=T + 1)) for _ in range(B)
    ]
    lengths = draw(st.lists(st.integers(1, T), min_size=B, max_size=B))
    seed = draw(st.integers(0, 2**32 - 1))
    scale = draw(st.sampled_from([0.1, 1.0, 4.0]))
    logits = np.random.default_rng(seed).standard_normal((B, T, C)) * scale
    return logits, targets, lengths, blank


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(ctc_cases())
def test_hypothesis_against_torch(case):
    logits, targets, lengths, blank = case
    check_against_torch(logits, targets, lengths, blank)


@settings(max_examples=30, deadline=None)
@given(
    st.lists(st.sampled_from([1, 2]), min_size=1, max_size=6),
    st.integers(1, 14),
    st.integers(0, 2**32 - 1),
)
def test_hypothesis_two_symbols_many_repeats(target, T, seed):
    """Small alphabets make equal neighbours (mandatory blanks) frequent."""
    logits = np.random.default_rng(seed).standard_normal((1, T, 3))
    check_against_torch(logits, [target], [T], 0)


# --------------------------------------------------------------------------------
# a bigger case
# --------------------------------------------------------------------------------


@pytest.mark.slow
def test_bigger_case():
    rng = np.random.default_rng(1234)
    B, T, C, S = 4, 300, 30, 60
    targets = [random_target(rng, S, C, 0, repeats=bool(b % 2)) for b in range(B)]
    lengths = np.array([300, 280, 250, 300])
    feasible = check_against_torch(rng.standard_normal((B, T, C)) * 3, targets, lengths, 0)
    assert feasible.all()
