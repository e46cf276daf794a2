"""Tests of ``lattice.torch``: the autograd ops and losses on top of the engine.

* ``ctc_loss`` / ``CTCLoss`` against ``torch.nn.functional.ctc_loss`` on hundreds of
  seeded random cases covering every input layout, reduction and corner case.
* Gradients: ours are the true derivative with respect to ``log_probs`` for any
  scores, torch's assume ``log_softmax`` inputs. Both agree through ``log_softmax``;
  on raw scores ours pass ``gradcheck`` and torch's do not.
* ``lattice_score`` (gradcheck for every differentiable input, brute-force values, the
  max-semiring sub-gradient, frame weights, dtypes, strides), ``viterbi_align``,
  ``SegmentationLoss``, ``ViterbiLoss`` and input validation.
"""

import math
import warnings

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.nn.functional as F  # noqa: E402

import lattice  # noqa: E402
from lattice.torch import (  # noqa: E402
    CTCLoss,
    LatticeTypeError,
    LatticeValueError,
    SegmentationLoss,
    ViterbiAlignment,
    ViterbiLoss,
    ctc_loss,
    lattice_score,
    viterbi_align,
)

try:  # the brute-force path enumerator, when the suite ships it
    from reference import brute_force
except ImportError:  # pragma: no cover - depends on the checkout
    brute_force = None

REDUCTIONS = ("none", "sum", "mean")


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Run torch's own ops single-threaded while these tiny tests run.

    lattice's kernels link the system libgomp while the torch wheel bundles its own,
    so two OpenMP runtimes busy-wait against each other; on a 2-core machine that makes
    tiny problems ~10x slower (the library's result is the same either way). The
    engine keeps its default thread count.
    """
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


# ----------------------------------------------------------------------------------
# helpers
# ----------------------------------------------------------------------------------


def _random_ctc_case(rng, allow_unbatched=True):
    """One random ctc_loss problem in torch's conventions (log_probs not yet made).

    Returns a dict with T, B, C, blank, targets (tensor), input_lengths and
    target_lengths (tensor or tuple), the per-example target lists, and flags.
    """
    T = int(rng.integers(1, 9))
    B = int(rng.integers(1, 5))
    C = int(rng.integers(2, 7))
    blank = int(rng.choice([0, C - 1, C // 2]))
    symbols = [c for c in range(C) if c != blank]
    if rng.random() < 0.4:  # a tiny alphabet: many repeats
        symbols = symbols[: int(rng.integers(1, 3))]
    input_lengths = rng.integers(0, T + 1, size=B)
    if rng.random() < 0.7:
        input_lengths[int(rng.integers(B))] = T
    target_lengths = rng.integers(0, 6, size=B)
    seqs = [rng.choice(symbols, size=int(n)).astype(np.int64) for n in target_lengths]

    unbatched = allow_unbatched and B == 1 and rng.random() < 0.4
    layout = "concat" if rng.random() < 0.4 else "padded"
    if unbatched:
        targets = torch.from_numpy(seqs[0])
        layout = "unbatched"
    elif layout == "padded":
        width = int(target_lengths.max(initial=0)) + int(rng.integers(0, 3))
        # padding holds arbitrary in-range ids (the blank too): it must be ignored
        padded = rng.integers(0, C, size=(B, width))
        for b, s in enumerate(seqs):
            padded[b, : len(s)] = s
        targets = torch.from_numpy(padded)
    else:
        targets = torch.from_numpy(np.concatenate(seqs).astype(np.int64))

    as_tensor = rng.random() < 0.5
    if unbatched:
        if as_tensor:
            il, tl = torch.tensor(int(input_lengths[0])), torch.tensor(int(target_lengths[0]))
        else:
            il, tl = (int(input_lengths[0]),), (int(target_lengths[0]),)
    elif as_tensor:
        il, tl = torch.from_numpy(input_lengths), torch.from_numpy(target_lengths)
    else:
        il = tuple(int(v) for v in input_lengths)
        tl = tuple(int(v) for v in target_lengths)
    return dict(
        T=T, B=B, C=C, blank=blank, targets=targets, il=il, tl=tl, seqs=seqs,
        input_lengths=input_lengths, target_lengths=target_lengths,
        unbatched=unbatched, layout=layout,
        reduction=REDUCTIONS[int(rng.integers(3))],
        zero_infinity=bool(rng.random() < 0.5),
    )


def _ctc_feasible(seq, length):
    """Can a CTC path emit ``seq`` in ``length`` frames? (symbols + mandatory blanks)"""
    seq = list(seq)
    repeats = sum(1 for a, b in zip(seq, seq[1:]) if a == b)
    return len(seq) + repeats <= length


def _shape(case):
    return (case["T"], case["C"]) if case["unbatched"] else (case["T"], case["B"], case["C"])


def _call(fn, lp, case):
    return fn(lp, case["targets"], case["il"], case["tl"], blank=case["blank"],
              reduction=case["reduction"], zero_infinity=case["zero_infinity"])


def _ctc_graphs(targets, blank=0):
    return [lattice.build("ctc", list(t), blank=blank) for t in targets]


def _random_graph(rng, num_states, num_classes, finite_ends=True):
    """A random graph: a self-loop on every state, extra (parallel) arcs, weights."""
    src = list(range(num_states))
    dst = list(range(num_states))
    extra = int(rng.integers(1, 2 * num_states + 1))
    src += rng.integers(0, num_states, size=extra).tolist()
    dst += rng.integers(0, num_states, size=extra).tolist()
    src.append(0)  # a parallel copy of the first self-loop
    dst.append(0)
    weight = rng.normal(size=len(src))
    if finite_ends:
        start, final = rng.normal(size=num_states), rng.normal(size=num_states)
    else:
        start = np.where(rng.random(num_states) < 0.5, -np.inf, rng.normal(size=num_states))
        final = np.where(rng.random(num_states) < 0.5, -np.inf, rng.normal(size=num_states))
        start[0] = final[-1] = 0.0
    labels = rng.integers(0, num_classes, size=num_states)
    return lattice.Graph(labels, src, dst, weight, start, final)


def _pad_rows(rows, fill=0.0):
    width = max(len(r) for r in rows)
    out = np.full((len(rows), width), fill)
    for i, r in enumerate(rows):
        out[i, : len(r)] = r
    return out


def _gradcheck(fn, inputs):
    return torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# ----------------------------------------------------------------------------------
# ctc_loss against torch
# ----------------------------------------------------------------------------------


def test_ctc_loss_matches_torch_random_float64():
    rng = np.random.default_rng(1234)
    seen = dict(layouts=set(), infeasible=0, zero_input=0, empty=0, grads=0,
                blanks=set(), reductions=set(), repeats=0)
    for i in range(300):
        case = _random_ctc_case(rng)
        x = torch.from_numpy(rng.normal(size=_shape(case)) * 2).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        ours = _call(ctc_loss, x.log_softmax(-1), case)
        ref = _call(F.ctc_loss, x_ref.log_softmax(-1), case)
        msg = f"case {i}: {case}"
        assert ours.dtype == torch.float64
        assert ours.shape == ref.shape, msg
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-9, atol=1e-9, msg=msg)

        feasible = [
            _ctc_feasible(s, n) or (n == 0 and len(s) == 0)
            for s, n in zip(case["seqs"], case["input_lengths"])
        ]
        seen["layouts"].add(case["layout"])
        seen["blanks"].add(
            "first" if case["blank"] == 0 else "last" if case["blank"] == case["C"] - 1
            else "middle"
        )
        seen["reductions"].add((case["reduction"], case["zero_infinity"]))
        seen["infeasible"] += not all(feasible)
        seen["zero_input"] += int((case["input_lengths"] == 0).sum())
        seen["empty"] += int((case["target_lengths"] == 0).sum())
        seen["repeats"] += any(len(s) > 1 and (s[1:] == s[:-1]).any() for s in case["seqs"])
        if not all(feasible):
            bad = [b for b, ok in enumerate(feasible) if not ok]
            if case["zero_infinity"]:
                assert torch.isfinite(ours).all(), msg
            elif case["reduction"] == "none":
                assert torch.isinf(ours.reshape(-1)[bad]).all(), msg
            else:
                assert torch.isinf(ours), msg

        # gradients with respect to the raw x (through log_softmax) must agree
        if all(feasible) or case["zero_infinity"]:
            w = torch.from_numpy(rng.uniform(0.5, 2.0, size=ours.shape))
            (ours * w).sum().backward()
            (ref * w).sum().backward()
            torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-8, atol=1e-8, msg=msg)
            if case["zero_infinity"] and not all(feasible):
                bad = [b for b, ok in enumerate(feasible) if not ok]
                g = x.grad if not case["unbatched"] else x.grad.unsqueeze(1)
                assert (g[:, bad] == 0).all(), msg
            seen["grads"] += 1
    # the random cases really covered the corners they are meant to
    assert seen["layouts"] == {"padded", "concat", "unbatched"}
    assert seen["blanks"] == {"first", "middle", "last"}
    assert len(seen["reductions"]) == 6
    assert seen["infeasible"] > 20 and seen["zero_input"] > 10 and seen["empty"] > 20
    assert seen["repeats"] > 20 and seen["grads"] > 150


def test_ctc_loss_matches_torch_random_float32():
    rng = np.random.default_rng(99)
    for i in range(120):
        case = _random_ctc_case(rng)
        x = torch.from_numpy(rng.normal(size=_shape(case)).astype(np.float32))
        x.requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        ours = _call(ctc_loss, x.log_softmax(-1), case)
        ref = _call(F.ctc_loss, x_ref.log_softmax(-1), case)
        msg = f"case {i}: {case}"
        assert ours.dtype == torch.float32
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-5, atol=1e-4, msg=msg)
        if torch.isfinite(ours).all():
            ours.sum().backward()
            ref.sum().backward()
            torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-4, atol=1e-5, msg=msg)


def test_ctc_loss_matches_torch_longer_sequences():
    """Longer inputs, bigger alphabets, int32 lengths and targets."""
    rng = np.random.default_rng(77)
    for i in range(8):
        T, B, C = int(rng.integers(30, 80)), int(rng.integers(1, 5)), int(rng.integers(3, 30))
        blank = int(rng.integers(C))
        symbols = [c for c in range(C) if c != blank]
        tl = rng.integers(0, T // 2, size=B)
        il = rng.integers(T // 2, T + 1, size=B)
        targets = torch.from_numpy(
            np.concatenate([rng.choice(symbols, size=n) for n in tl]).astype(np.int32))
        il_t, tl_t = torch.from_numpy(il).int(), torch.from_numpy(tl).int()
        x = torch.from_numpy(rng.normal(size=(T, B, C)) * 3).requires_grad_()
        x_ref = x.detach().clone().requires_grad_()
        kw = dict(blank=blank, reduction="sum", zero_infinity=True)
        ours = ctc_loss(x.log_softmax(-1), targets, il_t, tl_t, **kw)
        ref = F.ctc_loss(x_ref.log_softmax(-1), targets, il_t, tl_t, **kw)
        torch.testing.assert_close(ours, ref.detach(), rtol=1e-10, atol=1e-9, msg=f"case {i}")
        ours.backward()
        ref.backward()
        torch.testing.assert_close(x.grad, x_ref.grad, rtol=1e-8, atol=1e-9, msg=f"case {i}")


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_ctc_loss_fixed_corner_cases(reduction, zero_infinity):
    """A batch with a repeat, an empty target, an impossible target and an empty input."""
    torch.manual_seed(0)
    T, C = 5, 4
    x = torch.randn(T, 5, C, dtype=torch.float64)
    lp = x.log_softmax(-1).requires_grad_()
    lp_ref = lp.detach().clone().requires_grad_()
    targets = torch.tensor([[1, 1, 2], [0, 0, 0], [3, 3, 3], [0, 0, 0], [2, 0, 0]])
    input_lengths = torch.tensor([5, 5, 4, 0, 0])
    target_lengths = torch.tensor([3, 0, 3, 0, 1])  # [3,3,3] needs 3 + 2 blanks > 4: inf
    # the blank is 0 but appears only in the padding
    args = (targets, input_lengths, target_lengths)
    ours = ctc_loss(lp, *args, reduction=reduction, zero_infinity=zero_infinity)
    ref = F.ctc_loss(lp_ref, *args, reduction=reduction, zero_infinity=zero_infinity)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-9, atol=1e-9)
    if reduction == "none":
        assert ours[3].item() == 0.0  # empty input explains empty target
        assert math.isinf(ours[4].item()) != zero_infinity
        assert math.isinf(ours[2].item()) != zero_infinity
    if zero_infinity:
        ours.sum().backward()
        assert torch.isfinite(lp.grad).all()
        # impossible examples and empty inputs pass no gradient at all
        assert (lp.grad[:, [2, 3, 4]] == 0).all()
        assert (lp.grad[:, [0, 1]] != 0).any()


def test_ctc_loss_input_length_zero_empty_target_is_zero():
    lp = torch.randn(3, 2, 4, dtype=torch.float64).log_softmax(-1).requires_grad_()
    loss = ctc_loss(lp, torch.zeros(2, 0, dtype=torch.long), (0, 0), (0, 0), reduction="none")
    ref = F.ctc_loss(lp, torch.zeros(2, 0, dtype=torch.long), (0, 0), (0, 0), reduction="none")
    assert loss.tolist() == [0.0, 0.0] == ref.tolist()
    loss.sum().backward()
    assert (lp.grad == 0).all()


def test_ctc_loss_unbatched_forms():
    torch.manual_seed(1)
    lp = torch.randn(7, 5, dtype=torch.float64).log_softmax(-1)
    target = torch.tensor([2, 2, 4])
    ref = F.ctc_loss(lp, target, torch.tensor(7), torch.tensor(3), reduction="none")
    assert ref.dim() == 0
    for il, tl in [(torch.tensor(7), torch.tensor(3)), ((7,), (3,)),
                   (torch.tensor([7]), torch.tensor([3]))]:
        for reduction in REDUCTIONS:
            ours = ctc_loss(lp, target, il, tl, reduction=reduction)
            expected = F.ctc_loss(lp, target, il, tl, reduction=reduction)
            assert ours.shape == expected.shape == torch.Size([])
            torch.testing.assert_close(ours, expected, rtol=1e-12, atol=1e-12)
    # the unbatched loss is the loss of the same example in a batch of one
    batched = ctc_loss(lp.unsqueeze(1), target.unsqueeze(0), (7,), (3,), reduction="none")
    torch.testing.assert_close(batched[0], ref, rtol=1e-12, atol=1e-12)


def test_ctc_loss_blank_not_zero_matches_relabelled_problem():
    """blank = k is the blank-0 problem with columns 0 and k swapped."""
    torch.manual_seed(2)
    T, B, C = 6, 3, 5
    lp = torch.randn(T, B, C, dtype=torch.float64).log_softmax(-1)
    targets = torch.tensor([[1, 2, 2], [3, 1, 0], [4, 4, 0]])
    lengths, target_lengths = (6, 5, 6), (3, 2, 2)
    for blank in (2, 4):
        perm = list(range(C))
        perm[0], perm[blank] = blank, 0
        swapped_targets = torch.tensor(perm)[targets]
        tg = torch.where(targets == 0, targets, swapped_targets)
        tg = torch.where(torch.arange(3) < torch.tensor(target_lengths)[:, None], tg, 1)
        # tg uses blank-k ids: no entry equals k inside the lengths
        loss_k = ctc_loss(lp[..., perm], tg, lengths, target_lengths, blank=blank,
                          reduction="none")
        loss_0 = ctc_loss(lp, targets, lengths, target_lengths, blank=0, reduction="none")
        torch.testing.assert_close(loss_k, loss_0, rtol=1e-12, atol=1e-12)


# ----------------------------------------------------------------------------------
# gradients: the true derivative for any scores
# ----------------------------------------------------------------------------------


def _raw_ctc_problem(seed=3):
    gen = torch.Generator().manual_seed(seed)
    T, B, C = 5, 2, 4
    x = torch.randn(T, B, C, dtype=torch.float64, generator=gen) * 1.5 + 0.7
    targets = torch.tensor([[1, 3], [2, 2]])
    return x, targets, torch.tensor([5, 5]), torch.tensor([2, 2])


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_ctc_loss_gradcheck_on_raw_scores(reduction):
    x, targets, il, tl = _raw_ctc_problem()
    # the scores are far from normalised
    assert not torch.allclose(x.exp().sum(-1), torch.ones((), dtype=x.dtype), atol=1e-2)
    x.requires_grad_()
    assert _gradcheck(lambda v: ctc_loss(v, targets, il, tl, reduction=reduction), (x,))


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_torch_ctc_gradient_is_wrong_on_raw_scores(reduction):
    """torch's backward assumes log_softmax inputs, so it fails gradcheck here."""
    x, targets, il, tl = _raw_ctc_problem()
    x.requires_grad_()
    ok = torch.autograd.gradcheck(
        lambda v: F.ctc_loss(v, targets, il, tl, reduction=reduction), (x,),
        eps=1e-6, atol=1e-6, rtol=1e-4, raise_exception=False,
    )
    assert ok is False


def test_ctc_loss_gradient_is_minus_the_posterior():
    x, targets, il, tl = _raw_ctc_problem(seed=5)
    x.requires_grad_()
    ctc_loss(x, targets, il, tl, reduction="sum").backward()
    em = x.detach().transpose(0, 1).numpy()
    fb = lattice.forward_backward(em, _ctc_graphs(targets.tolist()), il.numpy())
    np.testing.assert_allclose(x.grad.numpy(), -fb.emission_grad.transpose(1, 0, 2),
                               rtol=1e-10, atol=1e-12)


def test_ctc_loss_gradcheck_with_blank_lengths_and_concatenated_targets():
    gen = torch.Generator().manual_seed(7)
    x = torch.randn(6, 3, 4, dtype=torch.float64, generator=gen).requires_grad_()
    targets = torch.tensor([0, 1, 0, 2, 1])  # blank = 3
    il, tl = (6, 4, 3), (2, 2, 1)
    assert _gradcheck(lambda v: ctc_loss(v, targets, il, tl, blank=3), (x,))


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_ctc_loss_half_precision_computed_in_float32(dtype):
    """As torch's ctc_loss under autocast: the loss in float32, the gradient in the
    input's half type."""
    torch.manual_seed(8)
    lp32 = torch.randn(6, 2, 4).log_softmax(-1)
    lp = lp32.to(dtype).requires_grad_()
    ref_in = lp.detach().float().requires_grad_()
    args = (torch.tensor([[1, 2], [3, 3]]), (6, 5), (2, 2))
    loss = ctc_loss(lp, *args, reduction="sum")
    ref = ctc_loss(ref_in, *args, reduction="sum")
    assert loss.dtype == torch.float32
    torch.testing.assert_close(loss, ref.detach(), rtol=0, atol=0)
    loss.backward()
    ref.backward()
    assert lp.grad.dtype == dtype
    torch.testing.assert_close(lp.grad, ref_in.grad.to(dtype))
    # torch's own ctc_loss takes half inputs only under autocast, and returns float32
    with torch.autocast("cpu", dtype=dtype):
        assert F.ctc_loss(lp, *args, reduction="sum").dtype == loss.dtype


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_half_precision_zero_infinity_keeps_a_feasible_loss_beyond_65504(dtype, reduction):
    """A feasible example whose loss exceeds the half type's range is not infinite:
    zero_infinity must keep it, and its gradient. It used to be cast to float16
    inside the op (inf), then zeroed with its gradient."""
    lp = torch.full((40, 2, 3), -2000.0, dtype=dtype)  # every frame costs 2000
    lp[:, 1, :] = torch.randn(40, 3).log_softmax(-1).to(dtype)
    args = (torch.tensor([[1, 2], [1, 1]]), (40, 40), (2, 2))
    x = lp.detach().requires_grad_()
    ref_in = lp.detach().float().requires_grad_()
    per_example = ctc_loss(lp, *args, reduction="none", zero_infinity=True)
    assert per_example[0].item() > 79000 and torch.isfinite(per_example).all()
    loss = ctc_loss(x, *args, reduction=reduction, zero_infinity=True)
    ref = ctc_loss(ref_in, *args, reduction=reduction, zero_infinity=True)
    torch.testing.assert_close(loss, ref.detach())
    loss.sum().backward()
    ref.sum().backward()
    assert x.grad.dtype == dtype and (x.grad[:, 0] != 0).any()
    torch.testing.assert_close(x.grad, ref_in.grad.to(dtype))
    # an infeasible half example is still zeroed
    short = ctc_loss(lp, args[0], (40, 2), (2, 2), reduction="none", zero_infinity=True)
    assert short[1].item() == 0.0 and short[0].item() > 79000


def _double_backward_cases():
    g = [lattice.build("ctc", [1, 2])]

    def plain(em):
        return lattice_score(em, g), em

    def frame_weighted(em):
        w = torch.full(em.shape[:2], 0.7, dtype=em.dtype, requires_grad=True)
        return lattice_score(em, g, frame_weights=w), w

    def ctc(em):
        return ctc_loss(em.transpose(0, 1), torch.tensor([[1, 2]]), (4,), (2,)), em

    return [pytest.param(f, id=f.__name__) for f in (plain, frame_weighted, ctc)]


@pytest.mark.parametrize("make", _double_backward_cases())
def test_double_backward_is_rejected_not_silently_wrong(make):
    """Double backward is documented as unsupported, so asking for it must raise
    (at ``create_graph=True`` or at the second backward, as torch's own ctc_loss
    does), not quietly treat the engine's gradients as constants: a gradient penalty
    would then get no gradient at all, or only part of it."""
    em = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    out, wrt = make(em)
    with pytest.raises(RuntimeError):
        (grad,) = torch.autograd.grad(out.sum(), wrt, create_graph=True)
        penalty = grad.pow(2).sum() + em.sum()  # a penalty on top of a regular term
        penalty.backward()


def test_weights_in_another_dtype_get_gradients_in_their_dtype():
    _, graphs, lengths, em = _score_problem(9)
    gb = lattice.batch(graphs)
    aw = torch.zeros(len(graphs), gb.max_arcs, dtype=torch.float32, requires_grad=True)
    score = lattice_score(em, gb, lengths, arc_weights=aw)
    assert score.dtype == torch.float64
    score.sum().backward()
    assert aw.grad.dtype == torch.float32
    fb = lattice.forward_backward(em.numpy(), gb, lengths, arc_weights=np.zeros(aw.shape))
    np.testing.assert_allclose(aw.grad.numpy(), fb.arc_grad, rtol=1e-6)


# ----------------------------------------------------------------------------------
# CTCLoss module
# ----------------------------------------------------------------------------------


def test_ctc_module_equals_function():
    rng = np.random.default_rng(11)
    for _ in range(30):
        case = _random_ctc_case(rng)
        lp = torch.from_numpy(rng.normal(size=_shape(case))).log_softmax(-1)
        module = CTCLoss(blank=case["blank"], reduction=case["reduction"],
                         zero_infinity=case["zero_infinity"])
        out = module(lp, case["targets"], case["il"], case["tl"])
        expected = _call(ctc_loss, lp, case)
        torch.testing.assert_close(out, expected, rtol=0, atol=0, equal_nan=False)


def test_ctc_module_defaults_match_torch_module():
    torch.manual_seed(4)
    lp = torch.randn(8, 2, 5, dtype=torch.float64).log_softmax(-1)
    args = (torch.tensor([[1, 2, 3], [4, 4, 0]]), (8, 7), (3, 2))
    torch.testing.assert_close(CTCLoss()(lp, *args), torch.nn.CTCLoss()(lp, *args),
                               rtol=1e-10, atol=1e-10)
    assert isinstance(CTCLoss(), torch.nn.Module)


@pytest.mark.parametrize("bad", ["avg", "Mean", None, "elementwise_mean"])
def test_invalid_reduction_raises(bad):
    with pytest.raises(ValueError, match="reduction"):
        CTCLoss(reduction=bad)
    with pytest.raises(ValueError, match="reduction"):
        SegmentationLoss(reduction=bad)
    with pytest.raises(ValueError, match="reduction"):
        ViterbiLoss(reduction=bad)
    lp = torch.zeros(3, 1, 3)
    with pytest.raises(ValueError, match="reduction"):
        ctc_loss(lp, torch.tensor([[1]]), (3,), (1,), reduction=bad)


# ----------------------------------------------------------------------------------
# lattice_score
# ----------------------------------------------------------------------------------


def _score_problem(seed, B=3, T=5, C=4, kinds=("random", "ctc", "segmentation")):
    rng = np.random.default_rng(seed)
    graphs = []
    for b in range(B):
        kind = kinds[b % len(kinds)]
        if kind == "random":
            graphs.append(_random_graph(rng, int(rng.integers(2, 4)), C))
        elif kind == "ctc":
            graphs.append(lattice.build("ctc", [1, 2] if b % 2 else [3], blank=0))
        else:
            graphs.append(lattice.build("segmentation", [2, 1]))
    lengths = [T] + [int(v) for v in rng.integers(3, T + 1, size=B - 1)]
    emissions = torch.from_numpy(rng.normal(size=(B, T, C)))
    return rng, graphs, lengths, emissions


def test_lattice_score_gradcheck_emissions():
    _, graphs, lengths, em = _score_problem(20)
    em.requires_grad_()
    assert _gradcheck(lambda e: lattice_score(e, graphs, lengths), (em,))


def test_lattice_score_gradcheck_arc_weights():
    rng, graphs, lengths, em = _score_problem(21)
    gb = lattice.batch(graphs)
    aw = torch.from_numpy(rng.normal(size=(len(graphs), gb.max_arcs))).requires_grad_()
    em.requires_grad_()
    assert _gradcheck(lambda e, w: lattice_score(e, graphs, lengths, arc_weights=w), (em, aw))


def test_lattice_score_gradcheck_time_dependent_arc_weights():
    rng, graphs, lengths, em = _score_problem(22)
    gb = lattice.batch(graphs)
    B, T, _ = em.shape
    aw = torch.from_numpy(rng.normal(size=(B, T, gb.max_arcs))).requires_grad_()
    assert _gradcheck(lambda w: lattice_score(em, gb, lengths, arc_weights=w), (aw,))


def test_lattice_score_gradcheck_frame_weights():
    rng, graphs, lengths, em = _score_problem(23)
    fw = torch.from_numpy(rng.uniform(0.3, 1.7, size=em.shape[:2])).requires_grad_()
    em.requires_grad_()
    assert _gradcheck(lambda e, w: lattice_score(e, graphs, lengths, frame_weights=w), (em, fw))


def test_lattice_score_gradcheck_start_final_weights():
    rng, graphs, lengths, em = _score_problem(24, kinds=("random",))
    gb = lattice.batch(graphs)
    sw = torch.from_numpy(rng.normal(size=(len(graphs), gb.max_states))).requires_grad_()
    fw = torch.from_numpy(rng.normal(size=(len(graphs), gb.max_states))).requires_grad_()
    assert _gradcheck(
        lambda s, f: lattice_score(em, graphs, lengths, start_weights=s, final_weights=f),
        (sw, fw),
    )


def test_lattice_score_gradcheck_everything_at_once_max_semiring():
    """The max semiring is piecewise linear: away from ties, gradcheck holds too."""
    rng, graphs, lengths, em = _score_problem(25, kinds=("random",))
    gb = lattice.batch(graphs)
    B, T, _ = em.shape
    em.requires_grad_()
    aw = torch.from_numpy(rng.normal(size=(B, T, gb.max_arcs))).requires_grad_()
    sw = torch.from_numpy(rng.normal(size=(B, gb.max_states))).requires_grad_()
    fw = torch.from_numpy(rng.normal(size=(B, gb.max_states))).requires_grad_()
    assert _gradcheck(
        lambda e, a, s, f: lattice_score(e, graphs, lengths, semiring="max", arc_weights=a,
                                         start_weights=s, final_weights=f),
        (em, aw, sw, fw),
    )


def test_lattice_score_grad_output_scaling_per_example():
    _, graphs, lengths, em = _score_problem(26)
    em.requires_grad_()
    scores = lattice_score(em, graphs, lengths)
    w = torch.tensor([0.0, -2.0, 3.5], dtype=torch.float64)
    (scores * w).sum().backward()
    fb = lattice.forward_backward(em.detach().numpy(), graphs, lengths)
    expected = fb.emission_grad * w.numpy()[:, None, None]
    np.testing.assert_allclose(em.grad.numpy(), expected, rtol=1e-12, atol=1e-14)


def _retained_graph_cases():
    """(loss of x, x) makers whose backward hands over or scales its saved gradient
    in place: sum (incoming gradient one) and mean reductions, a large gradient
    (where backward skips a multiply by one) and per-example weights."""
    def ctc(shape, reduction):
        def make():
            T, B, C = shape
            g = torch.Generator().manual_seed(T + C)
            x = torch.randn(T, B, C, generator=g).log_softmax(-1).requires_grad_()
            targets = torch.randint(1, C, (B, 3), generator=g)
            return ctc_loss(x, targets, (T,) * B, (3,) * B, reduction=reduction), x
        make.__name__ = f"ctc_{reduction}_{T * B * C}"
        return make

    def weighted():
        _, graphs, lengths, em = _score_problem(26)
        em.requires_grad_()
        w = torch.tensor([0.5, -2.0, 3.5], dtype=torch.float64)
        return (lattice_score(em, graphs, lengths) * w).sum(), em

    T, B, C = 8, 2, 5
    makers = [ctc((T, B, C), "sum"), ctc((T, B, C), "mean"), weighted]
    T, B, C = 64, 4, 4096  # 2^20 values: backward asks whether the scale is one
    makers += [ctc((T, B, C), "sum"), ctc((T, B, C), "mean")]
    return [pytest.param(m, id=m.__name__) for m in makers]


@pytest.mark.parametrize("make", _retained_graph_cases())
def test_every_backward_of_a_retained_graph_gets_the_same_gradient(make):
    """backward scales the saved gradient in place and hands it over only when the
    graph is freed after it: with retain_graph=True, three backwards accumulate
    three times the gradient, and a gradient changed in place in between (as
    ``zero_grad(set_to_none=False)`` does) does not change the next one."""
    loss, x = make()
    (expected,) = torch.autograd.grad(loss, x, retain_graph=True)
    expected = expected.clone()
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)
    loss.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, 3 * expected, rtol=1e-6, atol=1e-7)
    x.grad.zero_()
    loss.backward(retain_graph=True)
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)
    x.grad.mul_(7)
    x.grad = None
    loss.backward()  # the graph is freed: the saved gradient is handed over
    torch.testing.assert_close(x.grad, expected, rtol=0, atol=0)
    with pytest.raises(RuntimeError, match="backward through the graph a second time"):
        loss.backward()


def test_a_loss_used_twice_in_one_backward_gets_both_gradients():
    """One backward that reaches the op through two uses of its output gets the sum
    of their gradients (the op's backward runs once, with the summed incoming
    gradient)."""
    T, B, C = 6, 2, 4
    x = torch.randn(T, B, C, dtype=torch.float64).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[1, 2], [3, 3]])
    loss = ctc_loss(x, targets, (T, T), (2, 2), reduction="none")
    (expected,) = torch.autograd.grad(loss.sum(), x, retain_graph=True)
    (2 * loss.sum() + loss[1]).backward()
    torch.testing.assert_close(x.grad[:, 0], 2 * expected[:, 0], rtol=1e-12, atol=0)
    torch.testing.assert_close(x.grad[:, 1], 3 * expected[:, 1], rtol=1e-12, atol=0)


@pytest.mark.skipif(brute_force is None, reason="tests/reference.py not available")
@pytest.mark.parametrize("seed", range(6))
def test_lattice_score_matches_brute_force(seed):
    rng = np.random.default_rng(100 + seed)
    B, T, C = 3, 5, 4
    graphs = [_random_graph(rng, int(rng.integers(1, 4)), C, finite_ends=False)
              for _ in range(B)]
    gb = lattice.batch(graphs)
    lengths = rng.integers(1, T + 1, size=B)
    em = rng.normal(size=(B, T, C))
    em[rng.random(size=em.shape) < 0.1] = -np.inf
    aw = rng.normal(size=(B, T, gb.max_arcs))
    em_t = torch.from_numpy(em).requires_grad_()
    aw_t = torch.from_numpy(aw).requires_grad_()
    log_z = lattice_score(em_t, graphs, torch.from_numpy(lengths), arc_weights=aw_t)
    best = lattice_score(em_t, graphs, lengths, semiring="max", arc_weights=aw_t)
    log_z.sum().backward()
    for b in range(B):
        ref = brute_force(graphs[b], em[b], lengths[b], arc_weights=aw[b])
        for got, want in ((log_z[b].item(), ref.log_z), (best[b].item(), ref.best_score)):
            if want == -math.inf:
                assert got == -math.inf
            else:
                assert got == pytest.approx(want, rel=1e-9, abs=1e-9)
        np.testing.assert_allclose(em_t.grad[b].numpy(), ref.emission_grad, atol=1e-9)
        np.testing.assert_allclose(aw_t.grad[b, :, : graphs[b].num_arcs].numpy(),
                                   ref.arc_grad, atol=1e-9)


def test_lattice_score_log_matches_engine_forward():
    rng, graphs, lengths, em = _score_problem(27)
    gb = lattice.batch(graphs)
    aw = rng.normal(size=(len(graphs), gb.max_arcs))
    ours = lattice_score(em, graphs, lengths, arc_weights=torch.from_numpy(aw))
    want = lattice.forward(em.numpy(), graphs, lengths, arc_weights=aw)
    np.testing.assert_allclose(ours.numpy(), want, rtol=1e-12)
    best = lattice_score(em, gb, torch.tensor(lengths), semiring="max")
    np.testing.assert_allclose(best.numpy(), lattice.forward(em.numpy(), gb, lengths, "max"),
                               rtol=1e-12)


@pytest.mark.parametrize("time_dependent", [False, True])
def test_lattice_score_max_gradient_is_best_path_indicator(time_dependent):
    rng, graphs, lengths, em = _score_problem(28, B=4, T=7, C=5)
    gb = lattice.batch(graphs)
    B, T, C = em.shape
    aw_shape = (B, T, gb.max_arcs) if time_dependent else (B, gb.max_arcs)
    aw = torch.from_numpy(rng.normal(size=aw_shape)).requires_grad_()
    sw = torch.from_numpy(np.where(np.isfinite(gb.start), rng.normal(size=gb.start.shape),
                                   -np.inf)).requires_grad_()
    fw = torch.from_numpy(np.where(np.isfinite(gb.final), rng.normal(size=gb.final.shape),
                                   -np.inf)).requires_grad_()
    em.requires_grad_()
    score = lattice_score(em, gb, lengths, semiring="max", arc_weights=aw,
                          start_weights=sw, final_weights=fw)
    score.sum().backward()
    ali = lattice.viterbi(em.detach().numpy(), gb, lengths, arc_weights=aw.detach().numpy(),
                          start_weights=sw.detach().numpy(), final_weights=fw.detach().numpy())
    np.testing.assert_allclose(score.detach().numpy(), ali.score, rtol=1e-12)
    g = em.grad.numpy()
    assert set(np.unique(g).tolist()) <= {0.0, 1.0}
    for b in range(B):
        n = lengths[b]
        np.testing.assert_array_equal(g[b, :n].sum(axis=1), np.ones(n))
        np.testing.assert_array_equal(g[b, n:], 0)
        np.testing.assert_array_equal(g[b, :n].argmax(axis=1), ali.labels[b, :n])
        expected_arcs = np.zeros(aw_shape[1:])
        for t in range(1, n):
            if time_dependent:
                expected_arcs[t, ali.arcs[b, t]] += 1
            else:
                expected_arcs[ali.arcs[b, t]] += 1
        np.testing.assert_array_equal(aw.grad[b].numpy(), expected_arcs)
        expected_start = np.zeros(gb.max_states)
        expected_start[ali.states[b, 0]] = 1
        expected_final = np.zeros(gb.max_states)
        expected_final[ali.states[b, n - 1]] = 1
        np.testing.assert_array_equal(sw.grad[b].numpy(), expected_start)
        np.testing.assert_array_equal(fw.grad[b].numpy(), expected_final)
        # the path's score is the sum of what it uses
        total = (em.detach()[b].numpy() * g[b]).sum()
        total += (aw.detach()[b].numpy() * expected_arcs).sum()
        total += sw.detach()[b, ali.states[b, 0]].item()
        total += fw.detach()[b, ali.states[b, n - 1]].item()
        assert total == pytest.approx(score[b].item(), rel=1e-12)


def test_lattice_score_max_gradient_of_infeasible_example_is_zero():
    em = torch.randn(2, 2, 3, dtype=torch.float64, requires_grad=True)
    graphs = [lattice.build("ctc", [1, 1]), lattice.build("ctc", [2])]  # [1,1] needs 3
    score = lattice_score(em, graphs, semiring="max")
    assert score[0].item() == -math.inf and math.isfinite(score[1].item())
    score[1].backward()
    assert (em.grad[0] == 0).all() and em.grad[1].sum().item() == 2.0


def test_frame_weight_zero_ignores_impossible_frame():
    rng = np.random.default_rng(30)
    B, T, C = 2, 5, 3
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("segmentation", [2, 1, 2])]
    em = rng.normal(size=(B, T, C))
    em[:, 2, :] = -np.inf  # frame 2 can emit nothing
    em_t = torch.from_numpy(em).requires_grad_()
    w = rng.uniform(0.5, 1.5, size=(B, T))
    w[:, 2] = 0.0
    w_t = torch.from_numpy(w).requires_grad_()
    score = lattice_score(em_t, graphs, frame_weights=w_t)
    # the weighted emissions: frame 2 is all zeros
    with np.errstate(invalid="ignore"):  # -inf * 0 at the ignored frame
        weighted = np.where(w[..., None] == 0, 0.0, em * w[..., None])
    np.testing.assert_allclose(score.detach().numpy(), lattice.forward(weighted, graphs),
                               rtol=1e-12)
    assert torch.isfinite(score).all()
    score.sum().backward()
    assert torch.isfinite(em_t.grad).all() and torch.isfinite(w_t.grad).all()
    assert (em_t.grad[:, 2] == 0).all()
    # elsewhere the emission gradient is the posterior scaled by the weight
    fb = lattice.forward_backward(weighted, graphs)
    np.testing.assert_allclose(em_t.grad.numpy(), fb.emission_grad * w[..., None], atol=1e-12)
    # d score / d w[t] = sum_c posterior[t, c] * E[t, c] (0 at the ignored frame)
    finite_em = np.where(np.isinf(em), 0.0, em)
    np.testing.assert_allclose(w_t.grad.numpy(), (fb.emission_grad * finite_em).sum(-1),
                               atol=1e-12)
    # without the zero weight the frame is impossible
    assert torch.isinf(lattice_score(em_t.detach(), graphs)).all()


def test_frame_weights_keep_impossible_emissions_impossible():
    em = torch.zeros(1, 3, 2, dtype=torch.float64)
    em[0, 1, 1] = -math.inf
    g = lattice.build("segmentation", [0, 1])
    w = torch.full((1, 3), 2.0, dtype=torch.float64)
    # only the path 0,0,1 is possible
    assert lattice_score(em, [g], frame_weights=w).item() == pytest.approx(0.0, abs=1e-12)
    em[0, 2, 1] = 3.0
    assert lattice_score(em, [g], frame_weights=w).item() == pytest.approx(6.0, abs=1e-12)


@pytest.mark.parametrize("value", [-0.5, float("nan"), float("inf"), -float("inf")])
def test_frame_weights_invalid_values_raise(value):
    em = torch.zeros(1, 3, 2)
    w = torch.ones(1, 3)
    w[0, 1] = value
    with pytest.raises(ValueError, match="frame_weights"):
        lattice_score(em, [lattice.build("segmentation", [0, 1])], frame_weights=w)


def test_frame_weights_bad_shape_and_type_raise():
    em = torch.zeros(1, 3, 2)
    g = lattice.build("segmentation", [0, 1])
    with pytest.raises(ValueError, match="frame_weights must have shape"):
        lattice_score(em, [g], frame_weights=torch.ones(1, 4))
    with pytest.raises(TypeError, match="frame_weights"):
        lattice_score(em, [g], frame_weights=np.ones((1, 3)))
    with pytest.raises(TypeError, match="floating"):
        lattice_score(em, [g], frame_weights=torch.ones(1, 3, dtype=torch.long))


@pytest.mark.parametrize("semiring", ["log", "max"])
def test_lattice_score_without_grad(semiring):
    _, graphs, lengths, em = _score_problem(31)
    aw = torch.zeros(len(graphs), lattice.batch(graphs).max_arcs, dtype=torch.float64)
    out = lattice_score(em, graphs, lengths, semiring=semiring, arc_weights=aw)
    assert not out.requires_grad
    want = lattice.forward(em.numpy(), graphs, lengths, semiring, arc_weights=aw.numpy())
    np.testing.assert_allclose(out.numpy(), want, rtol=1e-12)
    em.requires_grad_()
    with torch.no_grad():
        out2 = lattice_score(em, graphs, lengths, semiring=semiring)
    assert not out2.requires_grad
    want2 = lattice.forward(em.detach().numpy(), graphs, lengths, semiring)
    assert not np.allclose(want, want2)  # the graphs' own arc weights are not zero
    np.testing.assert_allclose(out2.numpy(), want2, rtol=1e-12)
    # only one input requiring grad: the others get none
    aw.requires_grad_()
    em.requires_grad_(False)
    lattice_score(em, graphs, lengths, semiring=semiring, arc_weights=aw).sum().backward()
    assert aw.grad is not None and em.grad is None


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16])
def test_lattice_score_half_precision(dtype):
    _, graphs, lengths, em64 = _score_problem(32)
    em = em64.to(dtype).requires_grad_()
    score = lattice_score(em, graphs, lengths)
    assert score.dtype == torch.float32  # a half type cannot hold scores beyond 65504
    ref_em = em.detach().float().requires_grad_()
    ref = lattice_score(ref_em, graphs, lengths)
    assert ref.dtype == torch.float32
    torch.testing.assert_close(score, ref.detach(), rtol=0, atol=0)
    big = lattice_score(torch.full((1, 40, 3), 2000.0, dtype=dtype), [graphs[2]])
    assert big.dtype == torch.float32 and 80000 < big.item() < 81000
    assert viterbi_align(em.detach(), graphs, lengths).scores.dtype == torch.float32
    score.sum().backward()
    ref.sum().backward()
    assert em.grad.dtype == dtype
    torch.testing.assert_close(em.grad, ref_em.grad.to(dtype))
    # time-dependent arc weights in the half type get half gradients
    aw = torch.zeros(len(graphs), em.shape[1], lattice.batch(graphs).max_arcs, dtype=dtype,
                     requires_grad=True)
    lattice_score(em.detach(), graphs, lengths, arc_weights=aw).sum().backward()
    assert aw.grad.dtype == dtype and torch.isfinite(aw.grad.float()).all()


def test_lattice_score_float32():
    _, graphs, lengths, em64 = _score_problem(33)
    em = em64.float().requires_grad_()
    score = lattice_score(em, graphs, lengths)
    assert score.dtype == torch.float32
    score.sum().backward()
    assert em.grad.dtype == torch.float32
    np.testing.assert_allclose(score.detach().numpy(),
                               lattice.forward(em64.numpy(), graphs, lengths), rtol=1e-5)


def test_lattice_score_non_contiguous_emissions():
    rng, graphs, lengths, em = _score_problem(34)
    B, T, C = em.shape
    base_tbc = em.transpose(0, 1).contiguous()  # (T, B, C) storage
    views = [
        base_tbc.transpose(0, 1),  # batch/time swapped, class axis contiguous
        em.transpose(1, 2).contiguous().transpose(1, 2),  # class axis strided
        torch.from_numpy(np.repeat(em.numpy(), 2, axis=2))[..., ::2],  # step-2 slice
    ]
    ref_em = em.clone().requires_grad_()
    ref = lattice_score(ref_em, graphs, lengths)
    ref.sum().backward()
    for v in views:
        assert not v.is_contiguous()
        torch.testing.assert_close(v, em, rtol=0, atol=0)
        v = v.detach().requires_grad_()
        out = lattice_score(v, graphs, lengths)
        torch.testing.assert_close(out, ref, rtol=1e-13, atol=1e-13)
        out.sum().backward()
        torch.testing.assert_close(v.grad, ref_em.grad, rtol=1e-13, atol=1e-13)


def test_lattice_score_single_graph_is_broadcast_and_count_checked():
    em = torch.randn(3, 4, 3, dtype=torch.float64)
    g = lattice.build("ctc", [1, 2])
    torch.testing.assert_close(lattice_score(em, g), lattice_score(em, [g, g, g]))
    with pytest.raises(ValueError, match="graphs"):
        lattice_score(em, [g, g])


def test_lattice_score_bad_inputs():
    g = lattice.build("segmentation", [0, 1])
    with pytest.raises(TypeError, match="torch.Tensor"):
        lattice_score(np.zeros((1, 3, 2)), [g])
    with pytest.raises(ValueError, match=r"\(B, T, C\)"):
        lattice_score(torch.zeros(3, 2), [g])
    with pytest.raises(TypeError, match="floating"):
        lattice_score(torch.zeros(1, 3, 2, dtype=torch.int64), [g])
    with pytest.raises(TypeError, match="integers"):
        lattice_score(torch.zeros(1, 3, 2), [g], lengths=torch.tensor([2.0]))
    with pytest.raises(ValueError, match="lengths"):
        lattice_score(torch.zeros(1, 3, 2), [g], lengths=[4])
    with pytest.raises(ValueError, match="lengths"):
        lattice_score(torch.zeros(1, 3, 2), [g], lengths=[3, 3])
    with pytest.raises(ValueError):
        lattice_score(torch.zeros(1, 3, 2), [g], semiring="tropical-ish")
    with pytest.raises(TypeError, match="arc_weights"):
        lattice_score(torch.zeros(1, 3, 2), [g], arc_weights=np.zeros((1, 3)))
    with pytest.raises(ValueError, match="arc_weights"):
        lattice_score(torch.zeros(1, 3, 2), [g], arc_weights=torch.zeros(1, 5))


def test_meta_device_raises_not_implemented():
    g = lattice.build("ctc", [1])
    meta = torch.empty(1, 3, 3, device="meta")
    with pytest.raises(NotImplementedError, match="CPU"):
        lattice_score(meta, [g])
    with pytest.raises(NotImplementedError, match="CPU"):
        viterbi_align(meta, [g])
    em = torch.zeros(1, 3, 3)
    with pytest.raises(NotImplementedError, match="CPU"):
        lattice_score(em, [g], arc_weights=torch.empty(1, 5, device="meta"))
    with pytest.raises(NotImplementedError, match="CPU"):
        lattice_score(em, [g], frame_weights=torch.empty(1, 3, device="meta"))
    with pytest.raises(NotImplementedError, match="CPU"):
        ctc_loss(torch.empty(3, 1, 3, device="meta"), torch.tensor([[1]]), (3,), (1,))
    with pytest.raises(NotImplementedError, match="CPU"):
        ctc_loss(torch.zeros(3, 1, 3), torch.tensor([[1]], device="meta"), (3,), (1,))
    with pytest.raises(NotImplementedError, match="CPU"):
        SegmentationLoss()(torch.empty(3, 1, 3, device="meta"), torch.tensor([[1]]), (3,), (1,))


# ----------------------------------------------------------------------------------
# viterbi_align
# ----------------------------------------------------------------------------------


def test_viterbi_align_matches_engine():
    rng = np.random.default_rng(40)
    B, T, C = 4, 9, 5
    targets = [[1, 2, 2], [3], [4, 1, 4, 1], [2] * 6]  # the last needs 11 frames: infeasible
    graphs = _ctc_graphs(targets)
    lengths = [9, 6, 9, 9]
    em = torch.from_numpy(rng.normal(size=(B, T, C))).log_softmax(-1).requires_grad_()
    ali = viterbi_align(em, graphs, torch.tensor(lengths))
    assert isinstance(ali, ViterbiAlignment)
    ref = lattice.viterbi(em.detach().numpy(), graphs, lengths)
    assert ali.scores.dtype == torch.float64 and not ali.scores.requires_grad
    np.testing.assert_array_equal(ali.scores.numpy(), ref.score)
    assert math.isinf(ali.scores[3].item())
    for name, want in [("states", ref.states), ("labels", ref.labels), ("tokens", ref.tokens),
                       ("starts", ref.starts), ("ends", ref.ends),
                       ("num_segments", ref.num_segments)]:
        got = getattr(ali, name)
        assert got.dtype == torch.int64, name
        np.testing.assert_array_equal(got.numpy(), want, err_msg=name)
    assert (ali.labels[1, 6:] == -1).all()
    # each feasible segment list spells its target
    for b in range(3):
        n = int(ali.num_segments[b])
        assert ali.tokens[b, :n].tolist() == list(range(len(targets[b])))
        assert [int(ali.labels[b, s]) for s in ali.starts[b, :n]] == targets[b]
    # float32 scores stay float32; arc weights are honoured
    ali32 = viterbi_align(em.detach().float(), graphs, lengths)
    assert ali32.scores.dtype == torch.float32
    gb = lattice.batch(graphs)
    aw = rng.normal(size=(B, gb.max_arcs))
    ali_w = viterbi_align(em.detach(), gb, lengths, arc_weights=torch.from_numpy(aw))
    ref_w = lattice.viterbi(em.detach().numpy(), gb, lengths, arc_weights=aw)
    np.testing.assert_array_equal(ali_w.states.numpy(), ref_w.states)
    np.testing.assert_allclose(ali_w.scores.numpy(), ref_w.score)


def test_viterbi_align_has_no_gradient():
    em = torch.randn(1, 4, 3, dtype=torch.float64, requires_grad=True)
    ali = viterbi_align(em, [lattice.build("ctc", [1, 2])])
    for t in ali:
        assert not t.requires_grad and t.grad_fn is None


# ----------------------------------------------------------------------------------
# SegmentationLoss
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("min_frames", [1, 2])
def test_segmentation_loss_equals_minus_log_z(min_frames):
    rng = np.random.default_rng(50 + min_frames)
    T, B, C = 9, 4, 5
    lp = torch.from_numpy(rng.normal(size=(T, B, C))).log_softmax(-1)
    targets = [[1, 2, 1], [3], [4, 4], [2, 3, 0, 1]]
    lengths = [9, 7, 4, 9]
    padded = torch.from_numpy(_pad_rows(targets).astype(np.int64))
    tl = torch.tensor([len(t) for t in targets])
    graphs = [lattice.build("segmentation", t, min_frames=min_frames) for t in targets]
    log_z = lattice.forward(lp.transpose(0, 1).numpy(), graphs, lengths)
    loss = SegmentationLoss(min_frames=min_frames, reduction="none")(lp, padded, lengths, tl)
    np.testing.assert_allclose(loss.numpy(), -log_z, rtol=1e-12)
    if min_frames == 2:  # [2, 3, 0, 1] needs 8 frames: fine; [4, 4] in 4: one path
        assert loss[2].item() == pytest.approx(-lp[:, 2].gather(1, torch.tensor(
            [[4], [4], [4], [4]])).sum().item(), rel=1e-12)
    for reduction, expected in [("sum", (-log_z).sum()),
                                ("mean", (-log_z / tl.numpy()).mean())]:
        got = SegmentationLoss(min_frames=min_frames, reduction=reduction)(lp, padded, lengths, tl)
        assert got.item() == pytest.approx(expected, rel=1e-12)
    # concatenated targets give the same
    concat = torch.tensor(sum(targets, []))
    again = SegmentationLoss(min_frames=min_frames, reduction="none")(lp, concat, lengths, tl)
    torch.testing.assert_close(again, loss, rtol=0, atol=0)


def test_segmentation_loss_min_frames_counts_paths():
    # zero scores: log Z = log(number of segmentations)
    lp = torch.zeros(7, 1, 3, dtype=torch.float64)
    for m, count in [(1, math.comb(6, 2)), (2, math.comb(3, 2)), (3, 0)]:
        loss = SegmentationLoss(min_frames=m, reduction="none")(lp, torch.tensor([[1, 2, 1]]),
                                                                (7,), (3,))
        if count:
            assert -loss.item() == pytest.approx(math.log(count), rel=1e-12)
        else:
            assert math.isinf(loss.item())
    loss = SegmentationLoss(min_frames=3, zero_infinity=True)(lp, torch.tensor([[1, 2, 1]]),
                                                            (7,), (3,))
    assert loss.item() == 0.0


@pytest.mark.parametrize("reduction, min_frames", [("none", 1), ("sum", 2), ("mean", 1)])
def test_segmentation_loss_gradcheck(reduction, min_frames):
    gen = torch.Generator().manual_seed(51)
    x = torch.randn(5, 3, 4, dtype=torch.float64, generator=gen).requires_grad_()
    targets = torch.tensor([[1, 2], [3, 0], [2, 2]])
    il, tl = (5, 4, 4), (2, 1, 2)
    loss = SegmentationLoss(min_frames=min_frames, reduction=reduction)
    assert _gradcheck(lambda v: loss(v, targets, il, tl), (x,))


def test_segmentation_loss_infeasible_and_empty():
    lp = torch.randn(4, 3, 3, dtype=torch.float64).log_softmax(-1).requires_grad_()
    targets = torch.tensor([[1, 2, 1, 2, 1], [1, 0, 0, 0, 0], [0, 0, 0, 0, 0]])
    il, tl = (4, 4, 0), (5, 1, 0)  # too long; fine; empty input and target
    loss = SegmentationLoss(reduction="none")(lp, targets, il, tl)
    assert math.isinf(loss[0].item()) and math.isfinite(loss[1].item())
    assert loss[2].item() == 0.0
    loss_z = SegmentationLoss(reduction="none", zero_infinity=True)(lp, targets, il, tl)
    assert loss_z[0].item() == 0.0
    loss_z.sum().backward()
    assert (lp.grad[:, [0, 2]] == 0).all() and torch.isfinite(lp.grad).all()
    # an empty target cannot explain frames
    assert math.isinf(SegmentationLoss(reduction="sum")(lp.detach(), targets, (4, 4, 3),
                                                        (5, 1, 0)).item())


# ----------------------------------------------------------------------------------
# ViterbiLoss
# ----------------------------------------------------------------------------------


def _viterbi_problem(seed):
    rng = np.random.default_rng(seed)
    T, B, C = 10, 4, 5
    lp = torch.from_numpy(rng.normal(size=(T, B, C)) * 2).log_softmax(-1)
    targets = [[1, 2, 2], [3, 4], [4], [1, 3, 1, 2]]
    lengths = [10, 8, 5, 10]
    return lp, targets, lengths


@pytest.mark.parametrize("reduction", REDUCTIONS)
def test_viterbi_loss_is_best_path_nll(reduction):
    lp, targets, lengths = _viterbi_problem(60)
    T, B, C = lp.shape
    ali = lattice.viterbi(lp.transpose(0, 1).numpy(), _ctc_graphs(targets), lengths)
    indicator = np.zeros((T, B, C))
    for b in range(B):
        for t in range(lengths[b]):
            indicator[t, b, ali.labels[b, t]] = 1.0
        assert (ali.labels[b, lengths[b]:] == -1).all()
    per_example = -(lp.numpy() * indicator).sum(axis=(0, 2))
    np.testing.assert_allclose(per_example, -ali.score, rtol=1e-12)
    tl = np.array([len(t) for t in targets])
    x = lp.clone().requires_grad_()
    loss = ViterbiLoss(reduction=reduction)(x, torch.from_numpy(_pad_rows(targets).astype(
        np.int64)), torch.tensor(lengths), torch.from_numpy(tl))
    if reduction == "none":
        np.testing.assert_allclose(loss.detach().numpy(), per_example, rtol=1e-12)
        w = torch.tensor([1.0, -0.5, 2.0, 3.0], dtype=torch.float64)
        (loss * w).sum().backward()
        expected_grad = -indicator * w.numpy()[None, :, None]
    elif reduction == "sum":
        assert loss.item() == pytest.approx(per_example.sum(), rel=1e-12)
        loss.backward()
        expected_grad = -indicator
    else:
        assert loss.item() == pytest.approx((per_example / tl).mean(), rel=1e-12)
        loss.backward()
        expected_grad = -indicator / (tl[None, :, None] * B)
    np.testing.assert_allclose(x.grad.numpy(), expected_grad, rtol=1e-12, atol=1e-15)


def test_viterbi_loss_gradient_is_fixed_path_not_softmax():
    """The gradient of the Viterbi loss ignores every path but the best one."""
    lp, targets, lengths = _viterbi_problem(61)
    x = lp.clone().requires_grad_()
    ViterbiLoss(reduction="sum")(x, torch.tensor(sum(targets, [])), lengths,
                                 [len(t) for t in targets]).backward()
    g = x.grad.numpy()
    assert set(np.unique(g).tolist()) <= {0.0, -1.0}
    np.testing.assert_array_equal(-g.sum(axis=2), (np.arange(10)[:, None] < np.array(lengths)))


def test_viterbi_loss_topology_option_and_zero_infinity():
    lp, _, _ = _viterbi_problem(62)
    targets = torch.tensor([[1, 2, 3], [2, 2, 0], [1, 0, 0], [4, 4, 4]])
    il, tl = (10, 10, 10, 2), (3, 2, 1, 3)
    seg = ViterbiLoss(topology="segmentation", min_frames=2, reduction="none")(lp, targets, il, tl)
    graphs = [lattice.build("segmentation", t[:n], min_frames=2)
              for t, n in zip(targets.tolist(), tl)]
    best = lattice.forward(lp.transpose(0, 1).numpy(), graphs, il, "max")
    np.testing.assert_allclose(seg.numpy(), -best, rtol=1e-12)
    assert math.isinf(seg[3].item())
    x = lp.clone().requires_grad_()
    z = ViterbiLoss(reduction="mean", zero_infinity=True)(x, targets, il, tl)
    assert math.isfinite(z.item())
    z.backward()
    assert (x.grad[:, 3] == 0).all() and torch.isfinite(x.grad).all()


# ----------------------------------------------------------------------------------
# bad inputs to the sequence losses
# ----------------------------------------------------------------------------------


def _ok_args():
    lp = torch.randn(6, 2, 4).log_softmax(-1)
    return lp, torch.tensor([[1, 2], [3, 3]]), torch.tensor([6, 6]), torch.tensor([2, 2])


LOSSES = [
    pytest.param(lambda *a, **k: ctc_loss(*a, **k), id="ctc_loss"),
    pytest.param(lambda *a, **k: CTCLoss(**k)(*a), id="CTCLoss"),
    pytest.param(lambda *a, **k: SegmentationLoss(**k)(*a), id="SegmentationLoss"),
    pytest.param(lambda *a, **k: ViterbiLoss(**k)(*a), id="ViterbiLoss"),
]


@pytest.mark.parametrize("loss", LOSSES)
def test_bad_sequence_inputs(loss):
    lp, targets, il, tl = _ok_args()
    assert torch.isfinite(loss(lp, targets, il, tl))
    with pytest.raises(TypeError, match="floating-point"):
        loss(lp.to(torch.int64), targets, il, tl)
    with pytest.raises(TypeError, match="log_probs must be a torch.Tensor"):
        loss(lp.numpy(), targets, il, tl)
    with pytest.raises(ValueError, match=r"\(T, B, C\)"):
        loss(lp.unsqueeze(0), targets, il, tl)
    with pytest.raises(ValueError, match=r"\(T, B, C\)"):
        loss(lp[0, 0], targets, il, tl)
    with pytest.raises(ValueError, match="outside"):
        loss(lp, torch.tensor([[1, 4], [3, 3]]), il, tl)
    with pytest.raises(ValueError, match="outside"):
        loss(lp, torch.tensor([[1, -1], [3, 3]]), il, tl)
    with pytest.raises(ValueError, match="example 1 hold class ids outside"):
        loss(lp, torch.tensor([[1, 2], [3, 9]]), il, tl)
    with pytest.raises(ValueError, match="example 1 hold class ids outside"):
        loss(lp, torch.tensor([1, 2, 3, 9]), il, tl)  # concatenated
    # ids past a target's length are padding: never checked, never read
    short = torch.tensor([2, 1])
    assert torch.allclose(loss(lp, torch.tensor([[1, 2], [3, -9]]), il, short),
                          loss(lp, torch.tensor([[1, 2], [3, 1]]), il, short))
    with pytest.raises(TypeError, match="integer"):
        loss(lp, targets.double(), il, tl)
    with pytest.raises(ValueError, match="sum to"):
        loss(lp, torch.tensor([1, 2, 3]), il, tl)
    with pytest.raises(ValueError, match="exceed the padded"):
        loss(lp, targets, il, torch.tensor([3, 2]))
    with pytest.raises(ValueError, match="input_lengths"):
        loss(lp, targets, torch.tensor([7, 6]), tl)
    with pytest.raises(ValueError, match="input_lengths"):
        loss(lp, targets, torch.tensor([-1, 6]), tl)
    with pytest.raises(ValueError, match="target_lengths"):
        loss(lp, targets, il, torch.tensor([-1, 2]))
    with pytest.raises(TypeError, match="integers"):
        loss(lp, targets, torch.tensor([6.0, 6.0]), tl)
    with pytest.raises(TypeError, match="integers"):
        loss(lp, targets, il, (2.0, 2.0))
    with pytest.raises(ValueError, match="2 entries"):
        loss(lp, targets, torch.tensor([6, 6, 6]), tl)
    with pytest.raises(ValueError, match="padded"):
        loss(lp, targets.unsqueeze(0), il, tl)
    with pytest.raises(NotImplementedError, match="CPU"):
        loss(lp.to("meta"), targets, il, tl)


@pytest.mark.parametrize("blank", [0, 3])
def test_target_containing_blank_raises(blank):
    lp, _, il, tl = _ok_args()
    targets = torch.tensor([[1, 2], [blank, 1]]) if blank else torch.tensor([[1, 2], [2, 0]])
    with pytest.raises(ValueError, match="blank"):
        ctc_loss(lp, targets, il, tl, blank=blank)
    with pytest.raises(ValueError, match="blank"):
        CTCLoss(blank=blank)(lp, targets, il, tl)
    # the blank in the padding is fine
    padded = torch.tensor([[1, 2, blank], [2, 1, blank]])
    assert torch.isfinite(ctc_loss(lp, padded, il, tl, blank=blank))


def test_blank_outside_classes_raises():
    lp, targets, il, tl = _ok_args()
    with pytest.raises(ValueError):
        ctc_loss(lp, targets, il, tl, blank=4)


def test_no_grad_mode_skips_the_backward_pass(monkeypatch):
    calls = []
    original = lattice.engine.forward_backward

    def spy(*args, **kwargs):
        calls.append("forward_backward")
        return original(*args, **kwargs)

    monkeypatch.setattr(lattice.engine, "forward_backward", spy)
    em = torch.randn(2, 6, 3, requires_grad=True)
    graphs = [lattice.build("ctc", [1, 2])] * 2
    with torch.no_grad():
        expected = lattice_score(em, graphs)
    assert calls == []
    score = lattice_score(em, graphs)
    assert calls == ["forward_backward"]
    assert torch.equal(score.detach(), expected)


# ----------------------------------------------------------------------------------
# empty inputs, as torch (issue 14, item 7)
# ----------------------------------------------------------------------------------


def _empty_case(shape):
    """ctc_loss arguments for an empty log_probs of ``shape`` ((T, B, C) or (T, C))."""
    frames = shape[0]
    if len(shape) == 2:
        return torch.zeros(shape), torch.tensor([1]), (frames,), (1,)
    size = shape[1]
    targets = torch.ones(size, 1, dtype=torch.long)
    lengths = torch.full((size,), frames, dtype=torch.long)
    return torch.zeros(shape), targets, lengths, torch.ones(size, dtype=torch.long)


@pytest.mark.parametrize("shape", [(5, 0, 4), (0, 2, 4), (3, 2, 0), (0, 4), (3, 0)])
@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("loss", LOSSES)
def test_empty_log_probs_are_refused_as_torch_refuses_them(shape, reduction, loss):
    """torch 2.13 refuses an empty log_probs (no example, no frame or no class) with
    every reduction, with the RuntimeError "log_probs tensor must not be empty"; an
    empty batch used to give NaN with the mean reduction (and 0 or an empty tensor
    with the others), T = 0 an infinite loss."""
    lp, targets, il, tl = _empty_case(shape)
    with pytest.raises(RuntimeError, match="must not be empty"):
        F.ctc_loss(lp, targets, il, tl, reduction=reduction)
    with pytest.raises(RuntimeError, match="must not be empty") as error:
        loss(lp.requires_grad_(), targets, il, tl, reduction=reduction)
    assert isinstance(error.value, ValueError)


# ----------------------------------------------------------------------------------
# integer inputs: no bool, float or complex values (issue 14, item 9)
# ----------------------------------------------------------------------------------


def _integer_inputs():
    """(name, call) for every integer input of lattice.torch: call(value) passes
    ``value`` as that input, the others valid."""
    lp, targets, il, tl = _ok_args()
    em = lp.transpose(0, 1)
    graphs = [lattice.build("ctc", [1, 2]), lattice.build("ctc", [3, 3])]
    return [
        ("input_lengths", lambda v: ctc_loss(lp, targets, v, tl)),
        ("target_lengths", lambda v: ctc_loss(lp, targets, il, v)),
        ("targets", lambda v: ctc_loss(lp, v, il, tl)),
        ("input_lengths", lambda v: SegmentationLoss()(lp, targets, v, tl)),
        ("target_lengths", lambda v: ViterbiLoss()(lp, targets, il, v)),
        ("targets", lambda v: CTCLoss()(lp, v, il, tl)),
        ("lengths", lambda v: lattice_score(em, graphs, v)),
        ("lengths", lambda v: viterbi_align(em, graphs, v)),
    ]


@pytest.mark.parametrize("dtype", [torch.complex64, torch.complex128, torch.float64,
                                   torch.float16, torch.bool])
def test_non_integer_tensors_are_refused_naming_the_argument(dtype):
    """Complex lengths were accepted: their imaginary part was dropped with a
    ComplexWarning. bool, floating and complex tensors are all refused."""
    lp, targets, il, tl = _ok_args()
    values = {"input_lengths": il, "target_lengths": tl, "targets": targets,
              "lengths": il}
    for name, call in _integer_inputs():
        with warnings.catch_warnings():
            warnings.simplefilter("error")  # no ComplexWarning on the way
            with pytest.raises(TypeError, match=f"^{name} must hold") as error:
                call(values[name].to(dtype))
        assert isinstance(error.value, RuntimeError), name


@pytest.mark.parametrize("dtype", [np.complex128, np.float32, np.bool_])
def test_non_integer_sequences_are_refused_naming_the_argument(dtype):
    lp, targets, il, tl = _ok_args()
    values = {"input_lengths": il, "target_lengths": tl, "targets": targets,
              "lengths": il}
    for name, call in _integer_inputs():
        array = values[name].numpy().astype(dtype)
        for value in (array, array.tolist()):
            with warnings.catch_warnings():
                warnings.simplefilter("error")
                with pytest.raises(TypeError, match=f"^{name} must hold"):
                    call(value)


@pytest.mark.parametrize("blank", [True, 0.0, 1j, "0", None, np.float64(0)])
def test_blank_must_be_an_int(blank):
    lp, targets, il, tl = _ok_args()
    with pytest.raises(TypeError, match="blank"):
        ctc_loss(lp, targets, il, tl, blank=blank)
    with pytest.raises(TypeError, match="blank"):
        CTCLoss(blank=blank)
    # numpy integers are ints
    torch.testing.assert_close(ctc_loss(lp, targets, il, tl, blank=np.int64(0)),
                               ctc_loss(lp, targets, il, tl, blank=0))


# ----------------------------------------------------------------------------------
# errors torch code can catch (issue 14, item 6)
# ----------------------------------------------------------------------------------


def test_bad_values_raise_value_errors_that_are_runtime_errors():
    """torch's ctc_loss raises RuntimeError for bad lengths, lattice ValueError:
    lattice.torch raises a type that is both, message unchanged, chained from the
    engine's error."""
    lp, targets, il, tl = _ok_args()
    too_long = torch.tensor([7, 6])
    with pytest.raises(RuntimeError):
        F.ctc_loss(lp, targets, too_long, tl)
    em, graphs = lp.transpose(0, 1), [lattice.build("ctc", [1, 2])] * 2
    calls = [
        lambda: ctc_loss(lp, targets, too_long, tl),
        lambda: CTCLoss()(lp, targets, too_long, tl),
        lambda: SegmentationLoss()(lp, targets, too_long, tl),
        lambda: ViterbiLoss()(lp, targets, too_long, tl),
        lambda: lattice_score(em, graphs, too_long),
        lambda: viterbi_align(em, graphs, too_long),
        lambda: lattice_score(em, graphs, semiring="tropical"),
        lambda: CTCLoss(reduction="avg"),
        lambda: lattice_score(em, graphs, arc_weights=torch.zeros(2, 99)),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(RuntimeError) as error:
            call()
        assert isinstance(error.value, ValueError), i
        assert isinstance(error.value, LatticeValueError), i
    # the message is the engine's own, and the engine's error is the cause
    with pytest.raises(ValueError) as error:
        lattice_score(em, graphs, too_long)
    with pytest.raises(ValueError) as engine_error:
        lattice.forward(em.numpy(), graphs, too_long.numpy())
    assert str(error.value) == str(engine_error.value)
    assert type(error.value.__cause__) is ValueError
    assert str(error.value.__cause__) == str(error.value)


def test_bad_types_raise_type_errors_that_are_runtime_errors():
    lp, targets, il, tl = _ok_args()
    em, graphs = lp.transpose(0, 1), [lattice.build("ctc", [1, 2])] * 2
    with pytest.raises(RuntimeError, match="integral"):
        F.ctc_loss(lp, targets, il.double(), tl)
    calls = [
        lambda: ctc_loss(lp, targets, il.double(), tl),
        lambda: ctc_loss(lp.numpy(), targets, il, tl),
        lambda: ctc_loss(lp.long(), targets, il, tl),
        lambda: lattice_score(em, graphs, il.double()),
        lambda: lattice_score(em, graphs, arc_weights=np.zeros((2, 5))),
        lambda: viterbi_align(em.numpy(), graphs),
        lambda: lattice_score(em, [graphs[0], "ctc"]),
    ]
    for i, call in enumerate(calls):
        with pytest.raises(RuntimeError) as error:
            call()
        assert isinstance(error.value, TypeError) and isinstance(error.value, LatticeTypeError), i


def test_error_subclasses_keep_their_type():
    """An engine error more specific than ValueError stays catchable as itself."""
    lp, targets, il, tl = _ok_args()
    with pytest.raises(lattice.UnknownGraphError) as error:
        ViterbiLoss(topology="no-such-topology")(lp, targets, il, tl)
    assert isinstance(error.value, RuntimeError) and isinstance(error.value, LatticeValueError)
    assert "no-such-topology" in str(error.value)


def test_other_errors_pass_unchanged():
    with pytest.raises(NotImplementedError):  # already a RuntimeError
        lattice_score(torch.empty(1, 3, 3, device="meta"), [lattice.build("ctc", [1])])
    lp, targets, il, tl = _ok_args()
    bad = lp.clone()
    bad[0, 0] = float("nan")
    with pytest.raises(FloatingPointError):  # not a bad input: a NaN score
        ctc_loss(bad, targets, il, tl, nan="raise")


# ----------------------------------------------------------------------------------
# NaN inputs, as torch (issue 14, item 8)
# ----------------------------------------------------------------------------------


def _nan_batch(seed, dtype=torch.float64):
    """Logits (T, B, C) where NaN logits make whole frames of log_softmax NaN."""
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(9, 4, 5, dtype=dtype, generator=gen)
    x[3, 1, 2] = float("nan")  # example 1: a frame within its length
    x[7, 2, 0] = float("nan")  # example 2: past its length (7), so harmless
    x[0, 3, 4] = float("nan")  # example 3: its first frame
    targets = torch.tensor([[1, 2, 3], [1, 1, 0], [4, 3, 0], [2, 0, 0]])
    return x, targets, torch.tensor([9, 8, 7, 9]), torch.tensor([3, 2, 2, 1])


@pytest.mark.parametrize("reduction", REDUCTIONS)
@pytest.mark.parametrize("zero_infinity", [False, True])
def test_nan_log_probs_give_nan_losses_and_gradients_as_torch(reduction, zero_infinity):
    """A training loop that skips NaN batches needs a NaN loss, not an exception:
    by default the losses propagate NaN exactly where torch's ctc_loss does (the
    examples whose frames hold NaN; zero_infinity keeps a NaN), with NaN gradients
    on those examples' frames and the others' untouched."""
    x, targets, il, tl = _nan_batch(0)
    kw = dict(reduction=reduction, zero_infinity=zero_infinity)
    ours_in, ref_in = x.clone().requires_grad_(), x.clone().requires_grad_()
    ours = ctc_loss(ours_in.log_softmax(-1), targets, il, tl, **kw)
    ref = F.ctc_loss(ref_in.log_softmax(-1), targets, il, tl, **kw)
    torch.testing.assert_close(ours, ref.detach(), rtol=1e-9, atol=1e-9, equal_nan=True)
    if reduction == "none":
        assert torch.isnan(ours).tolist() == [False, True, False, True]
    ours.sum().backward()
    ref.sum().backward()
    torch.testing.assert_close(ours_in.grad, ref_in.grad, rtol=1e-8, atol=1e-9,
                               equal_nan=True)
    if reduction == "none":
        nan_frames = torch.isnan(ours_in.grad).any(-1).T  # (B, T)
        assert nan_frames[1].tolist() == [True] * 8 + [False]  # valid frames only
        assert not nan_frames[0].any()
        # example 2's NaN frame lies past its length: its loss ignores it, only the
        # backward of log_softmax turns 0 * NaN into NaN there
        assert nan_frames[2].tolist() == [False] * 7 + [True, False]


def test_nan_with_a_weighted_gradient_is_nan_as_torch():
    x, targets, il, tl = _nan_batch(1)
    lp = x.log_softmax(-1)
    ours_in, ref_in = lp.detach().clone().requires_grad_(), lp.detach().clone().requires_grad_()
    w = torch.tensor([1.0, 0.0, 2.0, 0.5], dtype=torch.float64)
    (ctc_loss(ours_in, targets, il, tl, reduction="none") * w).sum().backward()
    (F.ctc_loss(ref_in, targets, il, tl, reduction="none") * w).sum().backward()
    # a zero weight on a NaN example still gives NaN (0 * NaN), as in torch
    assert torch.equal(torch.isnan(ours_in.grad), torch.isnan(ref_in.grad))
    assert torch.isnan(ours_in.grad[:8, 1]).all()


def test_nan_does_not_change_the_other_examples():
    x, targets, il, tl = _nan_batch(2)
    lp = x.log_softmax(-1).requires_grad_()
    loss = ctc_loss(lp, targets, il, tl, reduction="none")
    loss.nansum().backward()
    clean = lp.detach()[:, [0, 2]].clone().requires_grad_()
    ref = ctc_loss(clean, targets[[0, 2]], il[[0, 2]], tl[[0, 2]], reduction="none")
    ref.sum().backward()
    # a batch with a NaN runs the graph path (which handles nan=), the clean one the
    # fused CTC forward-backward: the same numbers to the numerical contract (float64
    # here), not the same bits
    torch.testing.assert_close(loss[[0, 2]], ref.detach(), rtol=1e-12, atol=0)
    torch.testing.assert_close(lp.grad[:, [0, 2]], clean.grad, rtol=0, atol=1e-12)


def test_nan_in_an_impossible_example_keeps_its_infinite_loss():
    """No complete path: the loss is +inf (0 with zero_infinity) whatever the
    emissions, as the sum over no path is 0."""
    lp = torch.randn(3, 2, 4, dtype=torch.float64).log_softmax(-1)
    lp[1, 0] = float("nan")
    targets, il, tl = torch.tensor([[1, 1, 1], [1, 2, 0]]), (3, 3), (3, 2)  # [1,1,1] needs 5
    x = lp.clone().requires_grad_()
    loss = ctc_loss(x, targets, il, tl, reduction="none")
    assert math.isinf(loss[0].item()) and math.isfinite(loss[1].item())
    zeroed = ctc_loss(x, targets, il, tl, reduction="none", zero_infinity=True)
    assert zeroed[0].item() == 0
    zeroed.sum().backward()
    assert (x.grad[:, 0] == 0).all()


def test_nan_raise_option_raises_the_engine_error():
    x, targets, il, tl = _nan_batch(3)
    lp = x.log_softmax(-1)
    with pytest.raises(FloatingPointError, match="example"):
        ctc_loss(lp, targets, il, tl, nan="raise")
    with pytest.raises(FloatingPointError):
        CTCLoss(nan="raise")(lp, targets, il, tl)
    with pytest.raises(FloatingPointError):
        SegmentationLoss(nan="raise")(lp, targets, il, tl)
    with pytest.raises(FloatingPointError):
        ViterbiLoss(nan="raise")(lp, targets, il, tl)
    for bad in ("ignore", None, True):
        with pytest.raises(ValueError, match="nan must be one of"):
            ctc_loss(lp, targets, il, tl, nan=bad)
        with pytest.raises(ValueError, match="nan must be one of"):
            CTCLoss(nan=bad)
        with pytest.raises(ValueError, match="nan must be one of"):
            lattice_score(lp.transpose(0, 1), _ctc_graphs(targets[:, :1]), nan=bad)


@pytest.mark.parametrize("make", [lambda: SegmentationLoss(reduction="none"),
                                  lambda: ViterbiLoss(reduction="none")])
def test_nan_in_the_other_losses(make):
    x, targets, il, tl = _nan_batch(4)
    lp = x.log_softmax(-1).requires_grad_()
    loss = make()(lp, targets, il, tl)
    assert torch.isnan(loss).tolist() == [False, True, False, True]
    loss.nansum().backward()
    assert torch.isnan(lp.grad[:8, 1]).all() and not torch.isnan(lp.grad[:, [0, 2]]).any()
    ref = make()(lp.detach()[:, [0, 2]], targets[[0, 2]], il[[0, 2]], tl[[0, 2]])
    torch.testing.assert_close(loss[[0, 2]], ref)


@pytest.mark.parametrize("semiring", ["log", "max"])
def test_lattice_score_raises_on_nan_by_default_or_propagates(semiring):
    rng, graphs, lengths, em = _score_problem(40)
    gb = lattice.batch(graphs)
    aw = torch.zeros(len(graphs), gb.max_arcs, dtype=torch.float64, requires_grad=True)
    bad = em.clone()
    bad[1, 0] = float("nan")
    with pytest.raises(FloatingPointError):
        lattice_score(bad, gb, lengths, semiring=semiring)
    x = bad.clone().requires_grad_()
    score = lattice_score(x, gb, lengths, semiring=semiring, arc_weights=aw, nan="propagate")
    assert torch.isnan(score).tolist() == [False, True, False]
    score.nansum().backward()
    assert torch.isnan(x.grad[1, : lengths[1]]).all() and (x.grad[1, lengths[1]:] == 0).all()
    assert torch.isnan(aw.grad[1]).all() and not torch.isnan(aw.grad[[0, 2]]).any()
    keep = [0, 2]
    sub = lattice.batch([graphs[b] for b in keep])
    ref_x = em[keep].clone().requires_grad_()
    ref_aw = aw.detach()[keep, : sub.max_arcs].clone().requires_grad_()
    ref = lattice_score(ref_x, sub, [lengths[b] for b in keep], semiring=semiring,
                        arc_weights=ref_aw)
    ref.sum().backward()
    torch.testing.assert_close(score[keep], ref, rtol=0, atol=0)
    torch.testing.assert_close(x.grad[keep], ref_x.grad, rtol=0, atol=0)
    torch.testing.assert_close(aw.grad[keep, : sub.max_arcs], ref_aw.grad, rtol=0, atol=0)
    assert (aw.grad[keep, sub.max_arcs :] == 0).all()


def test_plus_inf_where_a_target_reads_it_is_nan():
    """+inf log-probabilities give a NaN loss too (torch's depends on where the
    +inf sits: NaN, +inf or -inf), or the engine's error with nan="raise"."""
    lp = torch.randn(4, 1, 3, dtype=torch.float64).log_softmax(-1)
    lp[2, 0, 1] = float("inf")
    args = (torch.tensor([[1, 2]]), (4,), (2,))
    assert torch.isnan(ctc_loss(lp, *args))
    with pytest.raises(FloatingPointError):
        ctc_loss(lp, *args, nan="raise")


def test_eager_calls_skip_the_dispatcher_and_tracing_sees_the_op(monkeypatch):
    """An eager call runs the op's Python implementation directly (no round trip
    through the dispatcher); make_fx, which intercepts with a dispatch mode, still
    records lattice::ctc_score as one op."""
    from torch.fx.experimental.proxy_tensor import make_fx

    import lattice._torch_ops as ops

    op = torch.ops.lattice.ctc_score.default
    host, cuda = ops._EAGER[op]
    direct = []

    def spy(*args):
        direct.append(len(args))
        return host(*args)

    monkeypatch.setitem(ops._EAGER, op, (spy, cuda))
    lp = torch.randn(20, 2, 5).log_softmax(-1).requires_grad_()
    targets, lengths, target_lengths = (torch.tensor([[1, 2], [3, 3]]),
                                        torch.tensor([20, 17]), torch.tensor([2, 2]))
    loss = ctc_loss(lp, targets, lengths, target_lengths)
    assert direct  # eager: the implementation itself
    ref = F.ctc_loss(lp, targets, lengths, target_lengths)
    assert torch.allclose(loss, ref)
    direct.clear()
    gm = make_fx(lambda x: ctc_loss(x, targets, lengths, target_lengths))(lp.detach())
    assert not direct  # traced: through the dispatcher, recorded as the op
    assert op in [n.target for n in gm.graph.nodes if n.op == "call_function"]
    assert torch.allclose(gm(lp.detach()), ref)
