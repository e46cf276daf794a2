"""The performance gate: a kernel change lands only if this passes.

Benchmarks two commits side by side with ``asv continuous``: each commit is built and
installed in its own virtual environment (asv.conf.json), and the benchmark rounds of
the two alternate (``--interleave-rounds``), so that a slow spell of this shared
machine hits both. Only the focused subset of the gate runs (``LATTICE_ASV_GATE=1``
in benchmarks/common.py): CTC forward and forward+backward through
``lattice.torch.ctc_loss`` at the headline shape (B=32, T=1000, C=64, S=200,
float32, two threads), and the engine's forward-backward and Viterbi on that CTC
batch (banded path) and on a random general graph of the same size (ELL path).

A benchmark fails the gate when asv finds it slower by more than ``--factor`` and
the difference is statistically significant over the recorded samples (asv's own
test; ``--no-stats`` judges the medians alone). The exit status is asv's: 0 if
nothing got slower, 1 otherwise.

Usage, from the repository root::

    python asv_benchmarks/gate.py                  # merge base with main vs HEAD
    python asv_benchmarks/gate.py 977c666 HEAD     # any two commits
    python asv_benchmarks/gate.py --factor 1.25 --rounds 4

Commit the change first: asv benchmarks commits, not the working tree.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).resolve().parent
CONFIG = HERE / "asv.conf.json"

#: the benchmarks of the gate (asv --bench regular expressions)
BENCHMARKS = [
    r"^bench_ctc\.CTCForward\.time_ctc_forward",
    r"^bench_ctc\.CTCForwardBackward\.time_ctc_forward_backward",
    r"^bench_engine\.Engine\.time_forward_backward",
    r"^bench_engine\.Engine\.time_viterbi",
]

#: on this 2-core shared machine an A/A comparison (a commit against one that only
#: changed docs) moves by up to about 10%; a real regression must clear that
DEFAULT_FACTOR = 1.15


def _git(*args):
    return subprocess.run(["git", *args], cwd=HERE.parent, check=True,
                          capture_output=True, text=True).stdout.strip()


def default_base(head="HEAD", branch="main"):
    """The merge base of ``head`` with ``branch``; its parent when ``head`` is on
    ``branch`` already (then the gate compares the last commit with the one before).
    """
    head_sha = _git("rev-parse", head)
    base = _git("merge-base", branch, head)
    return _git("rev-parse", f"{head_sha}~1") if base == head_sha else base


def command(base, head, factor=DEFAULT_FACTOR, rounds=3, stats=True):
    """The ``asv continuous`` command line of the gate."""
    cmd = [sys.executable, "-m", "asv", "continuous", "--config", str(CONFIG),
           "--interleave-rounds", "-a", f"rounds={rounds}", "--factor", str(factor),
           "--split", "--show-stderr"]  # fmt: skip
    if not stats:
        cmd.append("--no-stats")
    for pattern in BENCHMARKS:
        cmd += ["--bench", pattern]
    return cmd + [base, head]


def main(argv=None):
    parser = argparse.ArgumentParser(
        description=__doc__.split("\n\n")[0],
        epilog="The rest of the story is in docs/benchmarks.rst.",
    )
    parser.add_argument("base", nargs="?", help="the reference commit (default: the "
                        "merge base with main, or HEAD~1 on main)")
    parser.add_argument("head", nargs="?", default="HEAD", help="the commit under test")
    parser.add_argument("--factor", type=float, default=DEFAULT_FACTOR,
                        help=f"the slow-down that fails the gate (default "
                        f"{DEFAULT_FACTOR})")
    parser.add_argument("--rounds", type=int, default=3,
                        help="interleaved rounds of samples per commit (default 3)")
    parser.add_argument("--no-stats", action="store_true",
                        help="judge medians alone, without asv's significance test")
    parser.add_argument("--dry-run", action="store_true", help="print the command only")
    args = parser.parse_args(argv)
    if args.factor <= 1:
        parser.error(f"--factor must be above 1, got {args.factor}")
    if args.rounds < 1:
        parser.error(f"--rounds must be at least 1, got {args.rounds}")
    base = args.base or default_base(args.head)
    cmd = command(base, args.head, args.factor, args.rounds, not args.no_stats)
    print("+ LATTICE_ASV_GATE=1 " + " ".join(cmd[1:]), flush=True)
    if args.dry_run:
        return 0
    env = dict(os.environ, LATTICE_ASV_GATE="1")
    env.pop("LATTICE_ASV_SMOKE", None)
    env.pop("LATTICE_ASV_SHAPES", None)
    return subprocess.run(cmd, cwd=HERE, env=env).returncode


if __name__ == "__main__":
    sys.exit(main())
