"""``lattice bench``: lattice's CTC against torch's (and optax's) on this machine.

The command line of :mod:`lattice.bench` (and, with ``--device cuda``, of
:mod:`lattice.bench_cuda`): its options, and the table of
:func:`lattice.bench.run_bench` printed, with a progress line on a terminal.
"""

from __future__ import annotations

import sys

from .. import bench

__all__ = ["add_arguments", "main"]


def add_arguments(parser):
    """Declare the ``lattice bench`` options on an argparse parser.

    Examples
    --------
    >>> import argparse
    >>> from lattice.cli.bench import add_arguments
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> args = p.parse_args(["--dtype", "both", "--quick"])
    >>> args.dtype, args.quick, args.threads, args.device
    ('both', True, 2, 'cpu')
    """
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="float32",
                        help="precision to measure (default: float32)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for lattice and torch (default: 2)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed samples per measurement, each a loop of calls of at "
                             "least 20 ms; the median is shown (default: 5)")
    parser.add_argument("--quick", action="store_true",
                        help="only the two smallest shapes (with --device cuda: the first "
                             "shape, no alignment)")
    parser.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                        help="cpu (default): lattice's CPU engine against torch and optax "
                             "on the CPU; cuda: its GPU backend against torch's CUDA "
                             "ctc_loss and torchaudio's forced_align")


def main(args):
    """Run ``lattice bench`` on parsed arguments; returns the exit status.

    Status 2 for a count below 1, 1 when torch is not installed (both with a message
    on standard error), else 0 after printing the table of
    :func:`lattice.bench.run_bench` over :data:`lattice.bench.SHAPES` (the two smallest
    with ``--quick``).

    Examples
    --------
    >>> import argparse
    >>> from lattice.cli.bench import main
    >>> main(argparse.Namespace(dtype="float32", threads=0, repeat=1, quick=True,
    ...                         device="cpu"))
    2
    """
    if args.threads < 1 or args.repeat < 1:
        print("lattice bench: --threads and --repeat must be >= 1", file=sys.stderr)
        return 2
    try:
        available = bench.available_implementations()
    except Exception:  # pragma: no cover - a broken optional install
        available = []
    if not available:
        print("lattice bench: torch is not installed (pip install 'lattice[torch]')",
              file=sys.stderr)
        return 1
    dtypes = ("float32", "float64") if args.dtype == "both" else (args.dtype,)
    if getattr(args, "device", "cpu") == "cuda":
        return _main_cuda(args, dtypes)
    shapes = bench.SHAPES[:2] if args.quick else bench.SHAPES
    print(f"CTC loss, {args.threads} thread(s), median of {args.repeat} samples; "
          f"implementations: {', '.join(available)}", flush=True)
    # progress overwrites one line on a terminal; captured output gets none of it
    # (carriage returns would run every message into one long line)
    interactive = sys.stdout.isatty()

    def progress(msg):
        if interactive:
            print(f"  measuring {msg} ...".ljust(72), end="\r", flush=True)

    rows = bench.run_bench(shapes, dtypes, args.threads, args.repeat, progress=progress)
    if interactive:
        print(" " * 72, end="\r")
    print(bench.format_table(rows))
    return 0


def _main_cuda(args, dtypes):
    """``lattice bench --device cuda``: the tables of :mod:`lattice.bench_cuda`."""
    from .. import bench_cuda

    try:
        import cupy  # noqa: F401
        import torch
    except ImportError as error:
        print(f"lattice bench --device cuda: {error} (the GPU backend needs torch "
              "and CuPy: pip install 'lattice[torch,cupy]')", file=sys.stderr)
        return 1
    if not torch.cuda.is_available():
        print("lattice bench --device cuda: torch sees no CUDA device", file=sys.stderr)
        return 1
    shapes = bench_cuda.GPU_SHAPES[:1] if args.quick else bench_cuda.GPU_SHAPES
    print(f"CTC loss on {torch.cuda.get_device_name()}, median of {args.repeat} samples; "
          "implementations: lattice (GPU backend), torch (CUDA)", flush=True)
    print(bench.format_table(bench_cuda.run_cuda_bench(shapes, dtypes, args.repeat)),
          flush=True)
    if not args.quick:
        try:
            import torchaudio  # noqa: F401
        except ImportError:
            print("(forced alignment not measured: torchaudio is not installed)")
        else:
            print(bench_cuda.format_alignment(bench_cuda.run_alignment_bench(
                repeat=args.repeat)))
    return 0
