"""End-to-end training with the ``lattice.torch`` losses: a small LSTM learns to align.

Synthetic data: every example is a short target sequence over classes 1..5 rendered as
frames (each symbol repeated 2-3 times, sometimes with a blank frame between symbols),
each frame a noisy one-hot feature vector. A one-layer LSTM with a linear output layer
is trained with Adam for 30 steps on CPU; each loss must drop substantially.
"""

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from lattice.torch import CTCLoss, SegmentationLoss, ViterbiLoss  # noqa: E402

FEATURES, HIDDEN, CLASSES = 8, 16, 6
STEPS = 30


@pytest.fixture(autouse=True)
def _single_torch_thread():
    """Tiny tensors: run torch single-threaded (see the note in test_torch_ops.py)."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _make_data(seed, batch=8, with_blanks=True):
    rng = np.random.default_rng(seed)
    targets, frames = [], []
    for _ in range(batch):
        k = int(rng.integers(2, 5))
        target = rng.integers(1, CLASSES, size=k)
        if not with_blanks:  # no repeated neighbours: every segmentation is its own path
            while (target[1:] == target[:-1]).any():
                target = rng.integers(1, CLASSES, size=k)
        seq = []
        for i, sym in enumerate(target):
            if with_blanks and (i == 0 or target[i - 1] == sym or rng.random() < 0.5):
                seq.append(0)
            seq += [int(sym)] * int(rng.integers(2, 4))
        if with_blanks:
            seq.append(0)
        targets.append(target)
        frames.append(seq)
    T = max(len(f) for f in frames)
    x = rng.normal(scale=0.4, size=(T, batch, FEATURES))
    for b, seq in enumerate(frames):
        x[np.arange(len(seq)), b, seq] += 1.0
        x[len(seq):, b] = 0.0
    width = max(len(t) for t in targets)
    padded = np.zeros((batch, width), dtype=np.int64)
    for b, t in enumerate(targets):
        padded[b, : len(t)] = t
    return (
        torch.tensor(x, dtype=torch.float32),
        torch.from_numpy(padded),
        torch.tensor([len(f) for f in frames]),
        torch.tensor([len(t) for t in targets]),
    )


class _Model(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.lstm = torch.nn.LSTM(FEATURES, HIDDEN)
        self.out = torch.nn.Linear(HIDDEN, CLASSES)

    def forward(self, x):
        h, _ = self.lstm(x)
        return self.out(h).log_softmax(-1)  # (T, B, C)


def _train(criterion, with_blanks, seed=0, lr=0.05):
    torch.manual_seed(seed)
    x, targets, input_lengths, target_lengths = _make_data(seed + 1, with_blanks=with_blanks)
    model = _Model()
    opt = torch.optim.Adam(model.parameters(), lr=lr)
    losses = []
    for _ in range(STEPS):
        opt.zero_grad()
        loss = criterion(model(x), targets, input_lengths, target_lengths)
        assert loss.dim() == 0 and torch.isfinite(loss)
        loss.backward()
        for p in model.parameters():
            assert p.grad is not None and torch.isfinite(p.grad).all()
        opt.step()
        losses.append(loss.item())
    return losses


@pytest.mark.parametrize(
    "make_criterion, with_blanks",
    [
        pytest.param(lambda: CTCLoss(), True, id="CTCLoss"),
        pytest.param(lambda: CTCLoss(reduction="sum", zero_infinity=True), True,
                     id="CTCLoss-sum"),
        pytest.param(lambda: SegmentationLoss(), False, id="SegmentationLoss"),
        pytest.param(lambda: ViterbiLoss(), True, id="ViterbiLoss"),
    ],
)
def test_loss_decreases(make_criterion, with_blanks):
    losses = _train(make_criterion(), with_blanks)
    initial, final = losses[0], float(np.mean(losses[-3:]))
    assert final < 0.7 * initial, losses
    # every loss is a negative log-probability of distinct frame labellings: >= 0
    assert min(losses) >= -1e-5, losses


def test_ctc_training_learns_the_alignment():
    """After training, greedy decoding recovers most targets of the training batch."""
    torch.manual_seed(3)
    x, targets, input_lengths, target_lengths = _make_data(4)
    model = _Model()
    opt = torch.optim.Adam(model.parameters(), lr=0.05)
    criterion = CTCLoss()
    for _ in range(150):
        opt.zero_grad()
        criterion(model(x), targets, input_lengths, target_lengths).backward()
        opt.step()
    with torch.no_grad():
        best = model(x).argmax(-1)  # (T, B)
    correct = 0
    for b in range(x.shape[1]):
        path = best[: input_lengths[b], b].tolist()
        decoded = [c for i, c in enumerate(path) if c != 0 and (i == 0 or path[i - 1] != c)]
        correct += decoded == targets[b, : target_lengths[b]].tolist()
    assert correct >= x.shape[1] // 2
