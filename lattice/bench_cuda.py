"""``lattice bench --device cuda``: lattice's GPU backend against torch's CUDA CTC
and torchaudio's forced alignment, on this machine's GPU.

CTC forward and forward + backward of the same seeded batch as :mod:`lattice.bench`
(CUDA tensors in, the summed loss, its gradient with respect to the
log-probabilities), timed with a device synchronisation around each run, and the
largest gradient error of lattice and torch against torch's float64 gradient. Then
forced alignment of a batch of utterances: :func:`lattice.torch.viterbi_align` on
the whole batch (its CTC graphs built once, as a training loop that aligns the same
utterances again would keep them) against :func:`torchaudio.functional.forced_align`,
which aligns one utterance per call, so it runs utterance by utterance; the table
gives both times and how many frames' labels agree. torch, torchaudio and CuPy are
imported only when measuring.
"""

from __future__ import annotations

import numpy as np

from .bench import ctc_problem, median_ms

__all__ = ["ALIGN_SHAPE", "GPU_SHAPES", "format_alignment", "run_alignment_bench",
           "run_cuda_bench"]

# (B, T, C, S) of the CTC timings, and of the alignment batch
GPU_SHAPES = [(32, 1000, 64, 200), (64, 2000, 1000, 400)]
ALIGN_SHAPE = (64, 1000, 64, 200)


def _cuda_torch():
    import torch

    if not torch.cuda.is_available():
        raise RuntimeError("lattice bench --device cuda: torch sees no CUDA device")
    return torch


def run_cuda_bench(shapes=GPU_SHAPES, dtypes=("float32",), repeat=5, progress=None):
    """Time CTC forward and forward + backward on the GPU: lattice and torch.

    Parameters
    ----------
    shapes : sequence of (B, T, C, S)
    dtypes : sequence of {"float32", "float64"}
    repeat : int
        Timed runs per measurement (after one warm-up); the median is reported.
    progress : callable, optional
        Called with a short string before each measurement.

    Returns
    -------
    list of dict
        Rows as :func:`lattice.bench.run_bench` returns them (``"ms"`` per
        implementation, ``"error"`` for forward + backward), for
        :func:`lattice.bench.format_table`.

    Raises
    ------
    RuntimeError
        Without a CUDA device.

    Examples
    --------
    >>> from lattice.bench_cuda import run_cuda_bench
    >>> from lattice.bench import format_table
    >>> rows = run_cuda_bench(shapes=[(2, 30, 5, 4)], repeat=1)  # doctest: +SKIP
    >>> print(format_table(rows))  # doctest: +SKIP
    """
    torch = _cuda_torch()
    from lattice.torch import ctc_loss

    impls = {"lattice": ctc_loss, "torch": torch.nn.functional.ctc_loss}
    rows = []
    for shape in shapes:
        for dtype in dtypes:
            log_probs, targets = ctc_problem(shape, dtype)
            T, B, _ = log_probs.shape
            x = torch.from_numpy(log_probs).cuda()
            args = (torch.from_numpy(targets).cuda(), torch.full((B,), T).cuda(),
                    torch.full((B,), targets.shape[1]).cuda())
            grads = {}
            timings = [{}, {}]
            for impl, loss in impls.items():
                lp = x.clone().requires_grad_()

                def forward():
                    with torch.no_grad():
                        loss(lp, *args, reduction="sum")

                def forward_backward():
                    lp.grad = None
                    loss(lp, *args, reduction="sum").backward()

                for index, fn in enumerate((forward, forward_backward)):
                    if progress is not None:
                        progress(f"{impl} {shape} {dtype}")
                    timings[index][impl] = median_ms(fn, repeat, torch.cuda.synchronize)
                grads[impl] = lp.grad.double()
            reference = x.double().requires_grad_()
            torch.nn.functional.ctc_loss(reference, *args, reduction="sum").backward()
            # lattice's gradient is minus the posterior; torch's adds the softmax
            error = {
                "lattice": float((grads["lattice"] - (reference.grad - x.double().exp()))
                                 .abs().max()),
                "torch": float((grads["torch"] - reference.grad).abs().max()),
            }
            for index, name in enumerate(("forward", "forward+backward")):
                row = {"shape": shape, "dtype": dtype, "pass": name, "ms": timings[index]}
                if index:
                    row["error"] = error
                rows.append(row)
    return rows


def run_alignment_bench(shape=ALIGN_SHAPE, repeat=3):
    """Forced alignment of ``B`` utterances: lattice's batched Viterbi on the GPU
    against torchaudio's ``forced_align`` called once per utterance.

    Returns
    -------
    dict
        ``shape``, ``ms`` (``{"lattice": ..., "torchaudio": ...}``, the whole
        batch) and ``agreement``, the share of frames whose label (blank included)
        both give.

    Raises
    ------
    RuntimeError
        Without a CUDA device.

    Examples
    --------
    >>> from lattice.bench_cuda import run_alignment_bench, format_alignment
    >>> print(format_alignment(run_alignment_bench((4, 50, 6, 5))))  # doctest: +SKIP
    """
    torch = _cuda_torch()
    import torchaudio.functional as taf

    import lattice
    from lattice.torch import viterbi_align

    log_probs, targets = ctc_problem(shape, "float32")
    em = torch.from_numpy(np.ascontiguousarray(log_probs.transpose(1, 0, 2))).cuda()
    tg = torch.from_numpy(targets).to(torch.int32).cuda()
    graphs = lattice.build_batch("ctc", list(targets))

    def ours():
        return viterbi_align(em, graphs).labels

    def theirs():
        return torch.cat([taf.forced_align(em[b : b + 1], tg[b : b + 1], blank=0)[0]
                          for b in range(em.shape[0])])

    ms = {"lattice": median_ms(ours, repeat, torch.cuda.synchronize),
          "torchaudio": median_ms(theirs, repeat, torch.cuda.synchronize)}
    agreement = float((ours() == theirs().to(torch.int64)).double().mean())
    return {"shape": shape, "ms": ms, "agreement": agreement}


def format_alignment(result):
    """One line per implementation for :func:`run_alignment_bench`'s result.

    Examples
    --------
    >>> from lattice.bench_cuda import format_alignment
    >>> print(format_alignment({"shape": (64, 1000, 64, 200), "agreement": 1.0,
    ...                         "ms": {"lattice": 4.0, "torchaudio": 80.0}}))
    forced alignment of 64 utterances (T=1000, C=64, S=200), labels agree on 100.00% of frames
      lattice    (one batched call)       4.0 ms
      torchaudio (one call per utterance) 80.0 ms  (20.00x lattice's time)
    """
    B, T, C, S = result["shape"]
    ms = result["ms"]
    return "\n".join([
        f"forced alignment of {B} utterances (T={T}, C={C}, S={S}), labels agree on "
        f"{100 * result['agreement']:.2f}% of frames",
        f"  lattice    (one batched call)       {ms['lattice']:.1f} ms",
        f"  torchaudio (one call per utterance) {ms['torchaudio']:.1f} ms  "
        f"({ms['torchaudio'] / ms['lattice']:.2f}x lattice's time)",
    ])
