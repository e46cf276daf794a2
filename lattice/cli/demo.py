"""The ``lattice demo``: read synthetic handwritten digit strings with a CTC-trained BiLSTM.

The command line of :mod:`lattice.demo`: its options, and :func:`lattice.demo.run`
with their values. torch is imported only when the command runs.
"""

from __future__ import annotations

import sys

from ..demo import DemoConfig, run

__all__ = ["add_arguments", "main"]


def add_arguments(parser):
    """Declare the ``lattice demo`` options on an argparse parser.

    Examples
    --------
    >>> import argparse
    >>> from lattice.cli.demo import add_arguments
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> p.parse_args(["--epochs", "3", "--loss", "viterbi"]).epochs
    3
    """
    d = DemoConfig()
    parser.add_argument("--epochs", type=int, default=d.epochs,
                        help=f"training epochs (default {d.epochs})")
    parser.add_argument("--steps", type=int, default=d.steps_per_epoch,
                        help=f"steps per epoch (default {d.steps_per_epoch})")
    parser.add_argument("--batch-size", type=int, default=d.batch_size,
                        help=f"lines per step (default {d.batch_size})")
    parser.add_argument("--eval-size", type=int, default=d.eval_size,
                        help=f"held-out lines (default {d.eval_size})")
    parser.add_argument("--hidden", type=int, default=d.hidden,
                        help=f"LSTM units per direction (default {d.hidden})")
    parser.add_argument("--loss", choices=("ctc", "viterbi", "mmi"), default=d.loss,
                        help="ctc: sum over all alignments (CTCLoss); viterbi: train "
                        "along the best alignment (ViterbiLoss); mmi: MMI / CTC-CRF "
                        "against a bigram denominator shared by every line "
                        "(MMILoss) (default ctc)")
    parser.add_argument("--ctc-weight", type=float, default=d.ctc_weight,
                        metavar="WEIGHT",
                        help="with --loss mmi: weight of the CTC loss added to the "
                        f"MMI loss (default {d.ctc_weight:g})")
    parser.add_argument("--mmi-transcripts", type=int, default=d.mmi_transcripts,
                        metavar="N",
                        help="with --loss mmi: the bigram denominator is estimated "
                        "at the start from N transcripts drawn like the training "
                        f"lines (default {d.mmi_transcripts})")
    parser.add_argument("--viterbi-warmup", type=int, default=d.viterbi_warmup,
                        metavar="EPOCHS",
                        help="with --loss viterbi: train the first EPOCHS epochs with "
                        f"CTC, so alignments start from a model that has found the "
                        f"symbols (default {d.viterbi_warmup}; 0 = from scratch)")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help=f"seeds data, weights and batches (default {d.seed})")
    parser.add_argument("--threads", type=int, default=None,
                        help="torch threads (default 1, fastest for this small model "
                        "on a busy machine)")
    parser.add_argument("--out", default="lattice_demo.png",
                        help="the PNG figure to write (default lattice_demo.png); "
                        "'none' skips it")
    parser.add_argument("--save-emissions", metavar="NPY",
                        help="save the model's held-out log-probabilities (B, T, C) "
                        "for `lattice align`")
    parser.add_argument("--save-transcripts", metavar="TXT",
                        help="save the held-out digit strings, one per line")
    parser.add_argument("--save-symbols", metavar="TXT",
                        help="save the symbol table (`symbol id` per line)")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the final line")
    parser.add_argument("--max-cer", type=float, metavar="PERCENT",
                        help="exit with status 1 if the final greedy CER is above this "
                        "(a check for CI)")


def main(args):
    """Run ``lattice demo`` with parsed arguments; returns the exit status.

    A missing torch or matplotlib, or a missing output folder, is reported as
    ``lattice demo: error: ...`` with status 1 before any training.

    Examples
    --------
    >>> import argparse
    >>> from lattice.cli.demo import add_arguments, main
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> main(p.parse_args(["--epochs", "1", "--steps", "1", "--batch-size", "2",
    ...                    "--eval-size", "2", "--hidden", "4", "--threads", "1",
    ...                    "--out", "none", "--quiet"]))   # doctest: +ELLIPSIS
    done in ... s: CER greedy ...%, beam ...%
    0
    """
    try:
        config = DemoConfig(epochs=args.epochs, steps_per_epoch=args.steps,
                            batch_size=args.batch_size, eval_size=args.eval_size,
                            hidden=args.hidden, loss=args.loss, seed=args.seed,
                            threads=args.threads, viterbi_warmup=args.viterbi_warmup,
                            ctc_weight=args.ctc_weight,
                            mmi_transcripts=args.mmi_transcripts)
    except ValueError as exc:
        raise SystemExit(f"lattice demo: error: {exc}") from None
    out = None if str(args.out).lower() == "none" else args.out
    try:
        result = run(config, out=out, save_emissions=args.save_emissions,
                     save_transcripts=args.save_transcripts,
                     save_symbols=args.save_symbols, progress=not args.quiet,
                     log=_final_line_only if args.quiet else None)
    except (ImportError, FileNotFoundError) as exc:  # found before training starts
        print(f"lattice demo: error: {exc}", file=sys.stderr)
        return 1
    if args.max_cer is not None and 100 * result.cer_greedy > args.max_cer:
        print(f"lattice demo: error: the greedy CER {100 * result.cer_greedy:.2f}% is "
              f"above --max-cer {args.max_cer:g}%", file=sys.stderr)
        return 1
    return 0


def _final_line_only(line):
    if line.startswith("done in"):
        print(line)
