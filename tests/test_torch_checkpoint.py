"""The ``checkpoint`` option of the torch ops and losses (issue 18): the losses, scores,
gradients and alignments are the bits of the full table, and bad values are refused
as the engine refuses them."""

import numpy as np
import pytest
import torch

import lattice
from lattice.torch import (
    CTCLoss,
    SegmentationLoss,
    ViterbiLoss,
    ctc_loss,
    lattice_score,
    viterbi_align,
)


def _ctc_inputs(dtype=torch.float64):
    g = torch.Generator().manual_seed(0)
    frames, size, classes = 40, 3, 6
    lp = torch.randn(frames, size, classes, generator=g, dtype=dtype).log_softmax(-1)
    targets = torch.randint(1, classes, (size, 7), generator=g)
    return lp, targets, torch.tensor([40, 33, 21]), torch.tensor([7, 5, 2])


def _loss_and_grad(fn, lp, *args, **kw):
    lp = lp.detach().requires_grad_()
    loss = fn(lp, *args, **kw)
    loss.sum().backward()
    return loss.detach(), lp.grad


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("checkpoint", [1, 3, 39, True])
def test_ctc_loss_checkpointed_equals_full(dtype, checkpoint):
    lp, targets, il, tl = _ctc_inputs(dtype)
    full = _loss_and_grad(ctc_loss, lp, targets, il, tl, reduction="none",
                          checkpoint=False)
    ck = _loss_and_grad(ctc_loss, lp, targets, il, tl, reduction="none",
                        checkpoint=checkpoint)
    assert torch.equal(ck[0], full[0]) and torch.equal(ck[1], full[1])
    module = _loss_and_grad(CTCLoss(reduction="none", checkpoint=checkpoint), lp,
                            targets, il, tl)
    assert torch.equal(module[0], full[0]) and torch.equal(module[1], full[1])


@pytest.mark.parametrize("loss", [SegmentationLoss, ViterbiLoss])
def test_sequence_losses_checkpointed_equal_full(loss):
    lp, targets, il, tl = _ctc_inputs()
    full = _loss_and_grad(loss(reduction="none", checkpoint=False), lp, targets, il, tl)
    for k in (2, True):
        ck = _loss_and_grad(loss(reduction="none", checkpoint=k), lp, targets, il, tl)
        assert torch.equal(ck[0], full[0]) and torch.equal(ck[1], full[1])


@pytest.mark.parametrize("semiring", ["log", "max"])
def test_lattice_score_checkpointed_equals_full(semiring):
    rng = np.random.default_rng(1)
    graphs = [lattice.build("ctc", [1, 2, 2]), lattice.build("hmm", [3, 1], min_frames=2)]
    em = torch.from_numpy(rng.normal(size=(2, 30, 4)))
    width = lattice.batch(graphs).max_arcs
    arcs = torch.from_numpy(rng.normal(size=(2, 30, width)))  # time-dependent

    def run(k):
        e, a = em.clone().requires_grad_(), arcs.clone().requires_grad_()
        score = lattice_score(e, graphs, [30, 17], semiring, arc_weights=a, checkpoint=k)
        score.sum().backward()
        return score.detach(), e.grad, a.grad

    full = run(False)
    for k in (1, 4, True):
        for got, want in zip(run(k), full):
            assert torch.equal(got, want)


def test_viterbi_align_checkpointed_equals_full():
    rng = np.random.default_rng(2)
    em = torch.from_numpy(rng.normal(size=(2, 50, 5)))
    graphs = [lattice.build("ctc", [1, 2, 3, 4]), lattice.build("ctc", [4, 4])]
    full = viterbi_align(em, graphs, checkpoint=False)
    for k in (1, 7, True):
        for got, want in zip(viterbi_align(em, graphs, checkpoint=k), full):
            assert torch.equal(got, want)


@pytest.mark.parametrize("bad, error", [(0, ValueError), (-1, ValueError),
                                        (1.5, TypeError), ("auto", TypeError)])
def test_bad_checkpoint_is_refused(bad, error):
    lp, targets, il, tl = _ctc_inputs()
    with pytest.raises(error, match="checkpoint"):
        ctc_loss(lp, targets, il, tl, checkpoint=bad)
    with pytest.raises(error, match="checkpoint"):
        CTCLoss(checkpoint=bad)
    with pytest.raises(error, match="checkpoint"):
        ViterbiLoss(checkpoint=bad)
    with pytest.raises(error, match="checkpoint"):
        SegmentationLoss(checkpoint=bad)
    with pytest.raises(error, match="checkpoint"):
        lattice_score(lp.transpose(0, 1), [lattice.build("ctc", [1])] * 3, checkpoint=bad)
    with pytest.raises(error, match="checkpoint"):
        viterbi_align(lp.transpose(0, 1), [lattice.build("ctc", [1])] * 3, checkpoint=bad)


def test_compiled_ctc_loss_with_checkpoints():
    lp, targets, il, tl = _ctc_inputs()

    def loss(x):
        return ctc_loss(x, targets, il, tl, checkpoint=5)

    compiled = torch.compile(loss, fullgraph=True, backend="eager")
    got = _loss_and_grad(compiled, lp)
    want = _loss_and_grad(ctc_loss, lp, targets, il, tl, checkpoint=False)
    assert torch.equal(got[0], want[0]) and torch.equal(got[1], want[1])
