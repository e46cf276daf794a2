"""lattice in one page: CTC log-likelihood, its gradient, and a forced alignment.

Run it with ``python examples/quickstart.py``. It builds the CTC alignment graphs of a
few random targets, scores random log-probabilities with lattice, checks the result
against ``torch.nn.functional.ctc_loss`` when torch is installed, and prints the best
alignment of the first example.
"""

import time

import numpy as np

import lattice


def main(batch=8, frames=200, classes=20, target_len=40, seed=0):
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((batch, frames, classes))
    log_probs = logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)
    targets = [rng.integers(1, classes, size=target_len) for _ in range(batch)]
    graphs = lattice.batch([lattice.build("ctc", t, blank=0) for t in targets])

    t0 = time.perf_counter()
    fb = lattice.forward_backward(log_probs, graphs)
    elapsed = time.perf_counter() - t0
    print(f"lattice {lattice.__version__}: OpenMP={lattice.openmp_enabled()}, "
          f"threads={lattice.get_num_threads()}")
    print(f"CTC negative log-likelihood of {batch} examples "
          f"(T={frames}, C={classes}, S={target_len}): {-fb.score.round(3)}")
    print(f"forward+backward took {elapsed * 1e3:.1f} ms; gradient shape "
          f"{fb.emission_grad.shape}, each frame's posteriors sum to "
          f"{fb.emission_grad[0].sum(-1).min():.6f}..{fb.emission_grad[0].sum(-1).max():.6f}")

    try:
        import torch
    except ImportError:
        print("torch is not installed: skipping the comparison with torch's ctc_loss")
    else:
        lp = torch.from_numpy(log_probs).transpose(0, 1)
        ref = torch.nn.functional.ctc_loss(
            lp, torch.from_numpy(np.stack(targets)),
            torch.full((batch,), frames), torch.full((batch,), target_len),
            reduction="none",
        )
        gap = np.abs(ref.numpy() + fb.score).max()
        print(f"largest difference to torch.nn.functional.ctc_loss: {gap:.2e}")

    ali = lattice.viterbi(log_probs[:1], graphs.graphs[:1])
    print(f"best alignment of example 0 (score {ali.score[0]:.3f}); "
          "first five (token, start frame, end frame):")
    for token, start, end in ali.segments(0)[:5]:
        print(f"  symbol {targets[0][token]:2d} (position {token}): frames {start}..{end - 1}")


if __name__ == "__main__":
    main()
