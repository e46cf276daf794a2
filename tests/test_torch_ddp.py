"""``lattice.torch.CTCLoss`` under two-process DistributedDataParallel (gloo, CPU).

Each rank takes half of a batch, computes ``CTCLoss(reduction="sum")`` on it through a
DDP-wrapped model and runs one backward. DDP all-reduces the parameter gradients and
divides them by the world size, so each rank ends up with

    (grad of sum-loss on half 0 + grad of sum-loss on half 1) / world_size
        = grad of the sum-loss over the full batch / world_size.

Multiplied by the world size they must equal the gradients of one process computing
the loss on the full batch; the two ranks' losses must sum to the full-batch loss.
"""

import os
import socket
import time

import numpy as np
import pytest

torch = pytest.importorskip("torch")
import torch.distributed as dist  # noqa: E402
import torch.multiprocessing as mp  # noqa: E402

from lattice.torch import CTCLoss  # noqa: E402

WORLD_SIZE = 2
TIMEOUT_S = 60
FEATURES, CLASSES, FRAMES, BATCH = 8, 5, 9, 6


def _data():
    """The full batch, identical in every process (seeded numpy, no torch RNG)."""
    rng = np.random.default_rng(2024)
    x = torch.from_numpy(rng.normal(size=(FRAMES, BATCH, FEATURES)))
    targets = torch.tensor(
        [[1, 2, 2], [3, 0, 0], [4, 1, 0], [2, 2, 2], [1, 3, 4], [4, 0, 0]]
    )
    target_lengths = torch.tensor([3, 1, 2, 3, 3, 1])
    input_lengths = torch.tensor([9, 5, 7, 9, 6, 3])
    return x, targets, input_lengths, target_lengths


def _model():
    torch.manual_seed(0)
    return torch.nn.Linear(FEATURES, CLASSES).double()


def _loss(model, x, targets, input_lengths, target_lengths):
    log_probs = model(x).log_softmax(-1)  # (T, B, C)
    return CTCLoss(reduction="sum")(log_probs, targets, input_lengths, target_lengths)


def _worker(rank, world_size, port, out_dir):
    torch.set_num_threads(1)
    dist.init_process_group(
        "gloo", init_method=f"tcp://127.0.0.1:{port}", rank=rank, world_size=world_size
    )
    try:
        x, targets, input_lengths, target_lengths = _data()
        half = slice(rank * BATCH // world_size, (rank + 1) * BATCH // world_size)
        model = torch.nn.parallel.DistributedDataParallel(_model())
        loss = _loss(model, x[:, half], targets[half], input_lengths[half],
                     target_lengths[half])
        loss.backward()
        grads = {name: p.grad.detach().clone() for name, p in model.module.named_parameters()}
        torch.save({"loss": loss.detach(), "grads": grads},
                   os.path.join(out_dir, f"rank{rank}.pt"))
        dist.barrier()
    finally:
        dist.destroy_process_group()


def _free_port():
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.skipif(
    not dist.is_available() or not dist.is_gloo_available(),
    reason="torch.distributed with the gloo backend is not available",
)
def test_ddp_ctc_gradients_match_single_process(tmp_path):
    ctx = mp.start_processes(
        _worker, args=(WORLD_SIZE, _free_port(), str(tmp_path)), nprocs=WORLD_SIZE,
        join=False, start_method="spawn",
    )
    deadline = time.monotonic() + TIMEOUT_S
    try:
        while not ctx.join(timeout=max(0.1, deadline - time.monotonic())):
            if time.monotonic() > deadline:
                pytest.fail(f"DDP workers did not finish within {TIMEOUT_S} s")
    finally:
        for p in ctx.processes:
            if p.is_alive():
                p.terminate()
                p.join(5)

    results = [torch.load(tmp_path / f"rank{r}.pt") for r in range(WORLD_SIZE)]

    # the same computation in one process, on the full batch
    model = _model()
    full_loss = _loss(model, *_data())
    full_loss.backward()
    assert torch.isfinite(full_loss)

    torch.testing.assert_close(sum(r["loss"] for r in results), full_loss.detach(),
                               rtol=1e-12, atol=1e-12)
    # the halves are genuinely different: each half alone does not give the full loss
    assert not torch.allclose(results[0]["loss"], full_loss.detach())
    for r in results:
        for name, p in model.named_parameters():
            ddp_grad = r["grads"][name]
            assert ddp_grad.abs().sum() > 0
            # DDP averages over ranks; the sum semantics of the full batch need * world
            torch.testing.assert_close(ddp_grad * WORLD_SIZE, p.grad, rtol=1e-10, atol=1e-12)
