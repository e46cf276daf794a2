"""``lattice bench``: lattice's CTC against torch's (and optax's) on this machine.

The command line of :mod:`lattice.bench`: its options, and the table of
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
    >>> args.dtype, args.quick, args.threads
    ('both', True, 2)
    """
    parser.add_argument("--dtype", choices=["float32", "float64", "both"], default="float32",
                        help="precision to measure (default: float32)")
    parser.add_argument("--threads", type=int, default=2,
                        help="threads for lattice and torch (default: 2)")
    parser.add_argument("--repeat", type=int, default=5,
                        help="timed runs per measurement; the median is shown (default: 5)")
    parser.add_argument("--quick", action="store_true",
                        help="only the two smallest shapes")


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
    >>> main(argparse.Namespace(dtype="float32", threads=0, repeat=1, quick=True))
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
    shapes = bench.SHAPES[:2] if args.quick else bench.SHAPES
    print(f"CTC loss, {args.threads} thread(s), median of {args.repeat}; "
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
