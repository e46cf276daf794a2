"""lattice.torch.mmi_loss / MMILoss: the CTC-CRF loss against a shared denominator.

The reference enumerates every labelling of a few frames: the numerator sums the
labellings that collapse to the target, the denominator all of them, each
weighted by its emission scores and (directly computed) n-gram probability.
"""

import itertools
import math

import numpy as np
import pytest

import lattice
import lattice.backends.cpu  # noqa: F401 (monkeypatched below)
from reference import logsumexp
from test_denominator import CORPUS, DirectNGram, collapse

torch = pytest.importorskip("torch")
from lattice.torch import CTCLoss, MMILoss, ctc_loss, mmi_loss  # noqa: E402

C = 4  # blank and the tokens 1..3


def denominator(order=2, corpus=CORPUS, **options):
    return lattice.build("ctc_denominator", corpus, num_tokens=C, order=order, **options)


def brute_force(log_probs, targets, input_lengths, ngram, numerator_lm=True):
    """Per-example losses -(log Z_num - log Z_den) by enumerating labellings."""
    lp = log_probs.detach().double().numpy()
    losses = []
    for b, (target, frames) in enumerate(zip(targets, input_lengths)):
        num, den = [], []
        for lab in itertools.product(range(C), repeat=frames):
            emission = math.fsum(lp[t, b, c] for t, c in enumerate(lab))
            seq = collapse(lab)
            lm = ngram.log_prob(seq)
            den.append(emission + lm)
            if seq == list(target):
                num.append(emission + lm if numerator_lm else emission)
        losses.append(logsumexp(den) - logsumexp(num))
    return torch.tensor(losses, dtype=torch.float64)


def padded(targets):
    out = torch.zeros(len(targets), max(1, max(map(len, targets))), dtype=torch.long)
    for b, t in enumerate(targets):
        out[b, : len(t)] = torch.tensor(t, dtype=torch.long)
    return out


TARGETS = [[1, 2], [3, 3], [2], []]
FRAMES = [5, 4, 3, 2]


def inputs(seed=0, frames=FRAMES, targets=TARGETS, normalised=True):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(max(frames), len(targets), C, generator=g, dtype=torch.float64)
    x = x.log_softmax(-1) if normalised else x
    return (x.requires_grad_(), padded(targets), torch.tensor(frames),
            torch.tensor([len(t) for t in targets]))


# ----------------------------------------------------------------------------------
# values
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("order", [1, 2, 3])
@pytest.mark.parametrize("numerator_lm", [True, False])
def test_matches_brute_force(order, numerator_lm):
    lp, tg, il, tl = inputs(normalised=False)  # any scores, not only log-softmax
    expected = brute_force(lp, TARGETS, FRAMES, DirectNGram(CORPUS, C, order=order),
                           numerator_lm)
    den = denominator(order)
    got = mmi_loss(lp, tg, il, tl, den, reduction="none", numerator_lm=numerator_lm)
    torch.testing.assert_close(got, expected, rtol=1e-10, atol=1e-10)
    # the reductions: "mean" divides by the target lengths (at least 1), as ctc_loss
    total = mmi_loss(lp, tg, il, tl, den, reduction="sum", numerator_lm=numerator_lm)
    torch.testing.assert_close(total, expected.sum(), rtol=1e-10, atol=1e-10)
    mean = mmi_loss(lp, tg, il, tl, den, numerator_lm=numerator_lm)
    torch.testing.assert_close(mean, (expected / tl.clamp(min=1)).mean(), rtol=1e-10,
                               atol=1e-10)


def test_absolute_discounting_denominator_matches_brute_force():
    lp, tg, il, tl = inputs(seed=3)
    ngram = DirectNGram(CORPUS, C, order=2, smoothing="absolute", discount=0.7)
    den = denominator(2, smoothing="absolute", discount=0.7)
    torch.testing.assert_close(mmi_loss(lp, tg, il, tl, den, reduction="none"),
                               brute_force(lp, TARGETS, FRAMES, ngram))


def test_losses_are_minus_log_posteriors():
    """With the LM in the numerator, exp(-loss) over every token sequence sums to 1
    (sequences that cannot fit the frames have probability 0)."""
    frames = 3
    sequences = [list(s) for n in range(frames + 1)
                 for s in itertools.product(range(1, C), repeat=n)]
    lp = torch.randn(frames, 1, C, dtype=torch.float64).log_softmax(-1)
    den = denominator(3)
    losses = torch.stack([
        mmi_loss(lp, torch.tensor([s or [1]]), (frames,), (len(s),), den,
                 reduction="sum") for s in sequences])
    assert (losses >= 0).all()
    assert torch.exp(-losses).sum().item() == pytest.approx(1.0, abs=1e-12)
    assert torch.isinf(losses[[s == [1, 1, 1] for s in sequences]]).all()


def test_targets_concatenated_and_unbatched():
    lp, tg, il, tl = inputs()
    den = denominator()
    ref = mmi_loss(lp, tg, il, tl, den, reduction="none")
    flat = torch.tensor([c for t in TARGETS for c in t])
    torch.testing.assert_close(mmi_loss(lp, flat, il, tl, den, reduction="none"), ref)
    one = mmi_loss(lp[:, 0], tg[0, :2], (5,), (2,), den, reduction="none")
    assert one.dim() == 0
    torch.testing.assert_close(one, ref[0])


def test_ctc_weight_adds_the_ctc_loss():
    lp, tg, il, tl = inputs(seed=1)
    den = denominator()
    for reduction in ("none", "sum", "mean"):
        mixed = mmi_loss(lp, tg, il, tl, den, reduction=reduction, ctc_weight=0.3)
        (g_mixed,) = torch.autograd.grad(mixed.sum(), lp)
        parts = (mmi_loss(lp, tg, il, tl, den, reduction=reduction)
                 + 0.3 * ctc_loss(lp, tg, il, tl, reduction=reduction))
        (g_parts,) = torch.autograd.grad(parts.sum(), lp)
        torch.testing.assert_close(mixed, parts)
        torch.testing.assert_close(g_mixed, g_parts)
        assert not torch.allclose(mixed, mmi_loss(lp, tg, il, tl, den, reduction=reduction))


def test_the_module_equals_the_function():
    lp, tg, il, tl = inputs(seed=2)
    den = denominator()
    criterion = MMILoss(den, ctc_weight=0.5, reduction="sum")
    expected = mmi_loss(lp, tg, il, tl, den, ctc_weight=0.5, reduction="sum")
    torch.testing.assert_close(criterion(lp, tg, il, tl), expected)
    assert criterion.denominator is den and criterion.ctc_weight == 0.5
    w = torch.tensor(den.weight) * 0.5
    torch.testing.assert_close(
        criterion(lp, tg, il, tl, denominator_weights=w),
        mmi_loss(lp, tg, il, tl, den, ctc_weight=0.5, reduction="sum",
                 denominator_weights=w))
    assert isinstance(criterion, torch.nn.Module) and isinstance(CTCLoss(), torch.nn.Module)


def test_graph_batch_forms_agree():
    lp, tg, il, tl = inputs()
    den = denominator()
    ref = mmi_loss(lp, tg, il, tl, den, reduction="none")
    copies = lattice.batch([den, den, den, denominator()])  # four objects: not shared
    assert copies.shared_graph is None
    for form in (lattice.batch([den]), lattice.batch([den] * 4), copies):
        torch.testing.assert_close(mmi_loss(lp, tg, il, tl, form, reduction="none"), ref)


def test_the_denominator_is_shared_not_copied(monkeypatch):
    """The engine receives one graph for the whole batch (a shared batch), for the
    denominator pass and the numerator's LM pass, with or without weights."""
    seen = []
    real = lattice.engine.forward_backward

    def spy(emissions, graphs, *args, **kwargs):
        seen.append(graphs)
        return real(emissions, graphs, *args, **kwargs)

    monkeypatch.setattr(lattice._torch_ops.engine, "forward_backward", spy)
    lp, tg, il, tl = inputs()
    den = denominator()
    w = torch.tensor(den.weight, requires_grad=True)
    mmi_loss(lp, tg, il, tl, den, denominator_weights=w).backward()
    shared = [gb for gb in seen if getattr(gb, "shared_graph", None) is not None]
    assert len(shared) == 2  # the denominator and the numerator's LM term
    for gb in shared:
        assert gb.shared_graph == den and len(gb) == 4
        assert gb.src.strides[0] == 0  # one graph's arrays, broadcast


# ----------------------------------------------------------------------------------
# gradients
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("numerator_lm", [True, False])
def test_gradcheck_log_probs(numerator_lm):
    lp, tg, il, tl = inputs(seed=4, normalised=False)
    den = denominator(3)
    assert torch.autograd.gradcheck(
        lambda x: mmi_loss(x, tg, il, tl, den, reduction="none",
                           numerator_lm=numerator_lm, ctc_weight=0.25), (lp,))


@pytest.mark.parametrize("numerator_lm", [True, False])
def test_gradcheck_denominator_weights(numerator_lm):
    lp, tg, il, tl = inputs(seed=5)
    den = denominator(2)
    w = torch.tensor(den.weight, requires_grad=True)
    start = torch.tensor(np.where(np.isfinite(den.start), den.start, -30.0),
                         requires_grad=True)
    final = torch.tensor(den.final, requires_grad=True)

    def loss(lp, w, start, final):
        return mmi_loss(lp, tg, il, tl, den, reduction="none", denominator_weights=w,
                        denominator_start_weights=start,
                        denominator_final_weights=final, numerator_lm=numerator_lm)

    assert torch.autograd.gradcheck(loss, (lp, w, start, final))


def test_weight_gradient_is_summed_over_the_batch():
    lp, tg, il, tl = inputs(seed=6)
    den = denominator()
    w = torch.tensor(den.weight, requires_grad=True)
    (total,) = torch.autograd.grad(
        mmi_loss(lp, tg, il, tl, den, reduction="sum", denominator_weights=w), w)
    parts = sum(torch.autograd.grad(
        mmi_loss(lp[:, b], tg[b, : tl[b]], il[b : b + 1], tl[b : b + 1], den,
                 reduction="sum", denominator_weights=w), w)[0] for b in range(4))
    torch.testing.assert_close(total, parts)
    # with the LM in the numerator: the target path's arc counts minus the expected
    # ones; a batch of per-example weights (B, A) gets per-example gradients
    wb = w.detach().expand(4, -1).clone().requires_grad_()
    (per,) = torch.autograd.grad(
        mmi_loss(lp, tg, il, tl, den, reduction="sum", denominator_weights=wb), wb)
    torch.testing.assert_close(per.sum(0), total)
    # the weights are the graph's: replacing them by the graph's own changes nothing
    torch.testing.assert_close(
        mmi_loss(lp, tg, il, tl, den, denominator_weights=w),
        mmi_loss(lp, tg, il, tl, den))


def test_the_numerator_lm_term_makes_the_weight_gradient_a_count_difference():
    """d log Z_den / d w is the expected arc counts (T - 1 arcs per path of T
    frames); with the numerator's LM term the gradient of the loss subtracts the
    arcs of the target's labelling (K' - 1 of them). Without it, the gradient only
    pushes every weight down."""
    lp, tg, il, tl = inputs(seed=7)
    den = denominator()
    w = torch.tensor(den.weight, requires_grad=True)
    (with_lm,) = torch.autograd.grad(
        mmi_loss(lp, tg, il, tl, den, reduction="sum", denominator_weights=w), w)
    (without,) = torch.autograd.grad(
        mmi_loss(lp, tg, il, tl, den, reduction="sum", denominator_weights=w,
                 numerator_lm=False), w)
    assert (without >= 0).all()  # d/dw of log Z_den: expected counts
    assert (with_lm < 0).any()   # the arcs of the targets' labellings
    # expected arc counts: frames - 1 per example; the targets' paths: K' - 1
    lab_lengths = torch.tensor([2, 3, 1, 1])  # [1 2], [3 _ 3], [2], [_]
    assert without.sum().item() == pytest.approx(float((il - 1).sum()))
    assert with_lm.sum().item() == pytest.approx(float((il - lab_lengths).sum()))


# ----------------------------------------------------------------------------------
# edge cases
# ----------------------------------------------------------------------------------


def test_impossible_targets_and_zero_infinity():
    lp, tg, il, tl = inputs(targets=[[1, 2, 3, 1], [3, 3], [2], []], frames=[3, 3, 3, 2])
    den = denominator()
    loss = mmi_loss(lp, tg, il, tl, den, reduction="none")
    assert torch.isinf(loss[0]) and torch.isfinite(loss[1:]).all()
    zeroed = mmi_loss(lp, tg, il, tl, den, reduction="none", zero_infinity=True)
    assert zeroed[0] == 0 and torch.equal(zeroed[1:], loss[1:])
    zeroed.sum().backward()
    assert torch.equal(lp.grad[:, 0], torch.zeros_like(lp.grad[:, 0]))
    assert lp.grad[:, 1:].abs().sum() > 0


def test_examples_without_frames():
    lp, tg, il, tl = inputs(targets=[[1], [], [2, 1]], frames=[0, 0, 4])
    loss = mmi_loss(lp, tg, il, tl, denominator(), reduction="none")
    assert torch.isinf(loss[0]) and loss[1] == 0 and torch.isfinite(loss[2])


def test_nan_log_probs_propagate_to_their_example():
    lp, tg, il, tl = inputs()
    bad = lp.detach().clone()
    bad[1, 0, 1] = float("nan")
    loss = mmi_loss(bad, tg, il, tl, denominator(), reduction="none")
    assert torch.isnan(loss[0]) and torch.isfinite(loss[1:]).all()
    with pytest.raises(FloatingPointError):
        mmi_loss(bad, tg, il, tl, denominator(), nan="raise")


def test_float32():
    lp, tg, il, tl = inputs()
    den = denominator()
    single = mmi_loss(lp.detach().float(), tg, il, tl, den, reduction="none")
    assert single.dtype == torch.float32
    torch.testing.assert_close(single.double(), mmi_loss(lp, tg, il, tl, den,
                                                         reduction="none"),
                               rtol=1e-5, atol=1e-5)


# ----------------------------------------------------------------------------------
# errors
# ----------------------------------------------------------------------------------


@pytest.mark.parametrize("change, exc, match", [
    (dict(denominator=[1, 2]), TypeError, "denominator must be a lattice.Graph"),
    (dict(denominator="ctc_denominator"), TypeError, "denominator must be a lattice.Graph"),
    (dict(denominator="batch of 3"), ValueError,
     r"denominator must be one Graph, or a GraphBatch of 1 or B = 4 graphs"),
    (dict(denominator_weights="short"), ValueError,
     r"denominator_weights must have shape \(A,\) = \(\d+,\)"),
    (dict(denominator_weights="3-D"), ValueError, "denominator_weights must have shape"),
    (dict(denominator_weights=[0.0]), TypeError, "denominator_weights must be a torch.Tensor"),
    (dict(denominator_start_weights="short"), ValueError,
     r"denominator_start_weights must have shape \(S,\)"),
    (dict(denominator_weights="per-example 1-D"), ValueError,
     r"denominator_weights of shape \(A,\) needs one denominator graph"),
    (dict(ctc_weight=-0.1), ValueError, "ctc_weight must be finite and >= 0"),
    (dict(ctc_weight=float("nan")), ValueError, "ctc_weight must be finite and >= 0"),
    (dict(ctc_weight="0.1"), TypeError, "ctc_weight must be a real number"),
    (dict(numerator_lm=1), TypeError, "numerator_lm must be a bool"),
    (dict(reduction="avg"), ValueError, "reduction must be one of"),
    (dict(blank=-1), ValueError, "blank must be >= 0"),
    (dict(nan="ignore"), ValueError, "nan must be one of"),
    (dict(targets="with blank"), ValueError, "blank"),
    (dict(denominator="too many labels"), ValueError, "label"),
])
def test_bad_input(change, exc, match):
    lp, tg, il, tl = inputs()
    den = denominator()
    args = dict(log_probs=lp, targets=tg, input_lengths=il, target_lengths=tl,
                denominator=den)
    special = {
        "batch of 3": lattice.batch([den] * 3),
        "short": torch.zeros(3),
        "3-D": torch.zeros(1, 1, den.num_arcs),
        "per-example 1-D": torch.zeros(den.num_arcs),
        "with blank": torch.tensor([[1, 0], [3, 3], [2, 0], [0, 0]]),
        "too many labels": lattice.build("ctc_denominator", [[5]], num_tokens=6),
    }
    for key, value in change.items():
        value = special.get(value, value) if isinstance(value, str) else value
        if change.get(key) == "per-example 1-D":
            args["denominator"] = lattice.batch([den, den, den, denominator(3)])
        args[key] = value
    with pytest.raises(exc, match=match) as info:
        mmi_loss(**args)
    assert isinstance(info.value, RuntimeError)  # as torch's errors


def test_module_bad_input():
    with pytest.raises(TypeError, match="denominator must be a lattice.Graph"):
        MMILoss([[1, 2]])
    with pytest.raises(ValueError, match="ctc_weight"):
        MMILoss(denominator(), ctc_weight=-1)
    with pytest.raises(ValueError, match="reduction"):
        MMILoss(denominator(), reduction="avg")


@pytest.mark.parametrize("checkpoint", [2, True])
def test_checkpointed_equals_full(checkpoint, monkeypatch):
    """checkpoint= as in ctc_loss: it reaches the numerator's and the denominator's
    passes, with the same bits as the full tables."""
    asked = []
    real = lattice.engine.forward_backward
    real_ctc = lattice.backends.cpu.CPUBackend.ctc_forward_backward

    def spy(*args, **kwargs):
        asked.append(kwargs.get("checkpoint"))
        return real(*args, **kwargs)

    def spy_ctc(self, problem, checkpoint=None, graphs=None, negate=False,
                weights=None):  # fused CTC
        asked.append(checkpoint)
        return real_ctc(self, problem, checkpoint, graphs, negate, weights)

    monkeypatch.setattr(lattice._torch_ops.engine, "forward_backward", spy)
    monkeypatch.setattr(lattice.backends.cpu.CPUBackend, "ctc_forward_backward", spy_ctc)
    g = torch.Generator().manual_seed(8)
    lp = torch.randn(30, 3, C, generator=g, dtype=torch.float64).log_softmax(-1)
    tg, il, tl = padded([[1, 2, 3], [3, 3], [2, 1]]), torch.tensor([30, 24, 9]), (3, 2, 2)
    den = denominator(3)
    w = torch.tensor(den.weight)

    def run(**kw):
        x, wr = lp.detach().requires_grad_(), w.detach().requires_grad_()
        loss = mmi_loss(x, tg, il, tl, den, reduction="none", ctc_weight=0.1,
                        denominator_weights=wr, **kw)
        loss.sum().backward()
        return loss.detach(), x.grad, wr.grad

    full = run(checkpoint=False)
    asked.clear()
    for got, want in zip(run(checkpoint=checkpoint), full):
        assert torch.equal(got, want)
    assert asked[:2] == [checkpoint] * 2  # the CTC numerator, the denominator
    module = MMILoss(den, reduction="none", checkpoint=checkpoint)
    assert torch.equal(module(lp, tg, il, tl), mmi_loss(lp, tg, il, tl, den,
                                                        reduction="none"))
    with pytest.raises(ValueError, match="checkpoint"):
        mmi_loss(lp, tg, il, tl, den, checkpoint=0)
    with pytest.raises(ValueError, match="checkpoint"):
        MMILoss(den, checkpoint=-3)


def test_torch_compile_runs_it_eagerly():
    lp, tg, il, tl = inputs(seed=9)
    criterion = MMILoss(denominator(), ctc_weight=0.2)
    eager = criterion(lp, tg, il, tl)
    (g_eager,) = torch.autograd.grad(eager, lp)
    compiled = torch.compile(lambda x: criterion(x, tg, il, tl))(lp)
    (g_compiled,) = torch.autograd.grad(compiled, lp)
    assert torch.equal(compiled, eager) and torch.equal(g_compiled, g_eager)
