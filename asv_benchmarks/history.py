"""The speed of lattice over its history: benchmark milestone commits, draw the figure.

The milestones are listed in ``history.txt`` (a commit and a label per line). Two
steps, from the repository root::

    python asv_benchmarks/history.py run      # asv run over the milestones (gate subset)
    python asv_benchmarks/history.py plot     # docs/_static/benchmark_history.png + table

``run`` builds every milestone in its own environment (about a minute each here) and
benchmarks the gate's subset (``LATTICE_ASV_GATE=1``: the headline CTC shape, float32,
two threads). ``plot`` reads asv's results for this machine and writes the figure
that docs/benchmarks.rst shows, and prints the table of medians (ms) it is drawn
from. A commit asv could not build or benchmark (an older API) is left out of its
line, and says so in the table.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
CONFIG = HERE / "asv.conf.json"
MILESTONES = HERE / "history.txt"
FIGURE = ROOT / "docs" / "_static" / "benchmark_history.png"

#: (label, benchmark name, parameter values as asv writes them)
SERIES = [
    ("CTC loss forward+backward (lattice.torch)",
     "bench_ctc.CTCForwardBackward.time_ctc_forward_backward",
     ("'B32-T1000-C64-S200'", "'float32'", "2", "'lattice'")),
    ("CTC loss forward (lattice.torch)",
     "bench_ctc.CTCForward.time_ctc_forward",
     ("'B32-T1000-C64-S200'", "'float32'", "2", "'lattice'")),
    ("engine forward-backward, CTC graphs",
     "bench_engine.Engine.time_forward_backward",
     ("'B32-T1000-C64-S200'", "'ctc'", "'float32'", "2")),
    ("engine Viterbi, CTC graphs",
     "bench_engine.Engine.time_viterbi",
     ("'B32-T1000-C64-S200'", "'ctc'", "'float32'", "2")),
    ("engine forward-backward, random general graphs",
     "bench_engine.Engine.time_forward_backward",
     ("'B32-T1000-C64-S200'", "'random-general'", "'float32'", "2")),
    ("engine Viterbi, random general graphs",
     "bench_engine.Engine.time_viterbi",
     ("'B32-T1000-C64-S200'", "'random-general'", "'float32'", "2")),
]
_BENCH = sorted({name for _, name, _ in SERIES})


def milestones():
    """``[(full commit hash, label), ...]`` from history.txt, oldest first."""
    out = []
    for number, line in enumerate(MILESTONES.read_text().splitlines(), 1):
        line = line.split("#", 1)[0].strip()
        if not line:
            continue
        commit, _, label = line.partition(" ")
        if not label.strip():
            raise ValueError(f"{MILESTONES}:{number}: expected 'COMMIT LABEL', got {line!r}")
        sha = subprocess.run(["git", "rev-parse", commit], cwd=ROOT, check=True,
                             capture_output=True, text=True).stdout.strip()
        out.append((sha, label.strip()))
    return out


def run(rounds=2):
    """``asv run`` over the milestones, gate subset."""
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        # newest first: asv discovers the benchmarks with the first commit it builds,
        # and the suite imports on the newest
        f.write("\n".join(sha for sha, _ in reversed(milestones())) + "\n")
        hashes = f.name
    env = dict(os.environ, LATTICE_ASV_GATE="1")
    env.pop("LATTICE_ASV_SMOKE", None)
    cmd = [sys.executable, "-m", "asv", "run", "--config", str(CONFIG),
           f"HASHFILE:{hashes}", "-a", f"rounds={rounds}", "--skip-existing-successful"]
    for name in _BENCH:
        cmd += ["--bench", "^" + name.replace(".", r"\.")]
    print("+ LATTICE_ASV_GATE=1 " + " ".join(cmd[1:]), flush=True)
    try:
        return subprocess.run(cmd, cwd=HERE, env=env).returncode
    finally:
        os.unlink(hashes)


def _results_dir():
    config = json.loads(CONFIG.read_text())
    return (HERE / config["results_dir"]).resolve()


def collect():
    """``{commit: {series label: median seconds}}`` for the milestones, from the asv
    results of this machine (the most recent result file of each commit)."""
    machine_dirs = [d for d in _results_dir().iterdir() if d.is_dir()]
    wanted = {sha for sha, _ in milestones()}
    found = {}
    for machine in machine_dirs:
        for path in sorted(machine.glob("*.json"), key=lambda p: p.stat().st_mtime):
            if path.name == "machine.json":
                continue
            data = json.loads(path.read_text())
            sha = data.get("commit_hash")
            if sha not in wanted:
                continue
            columns = data.get("result_columns", [])
            values = found.setdefault(sha, {})
            for label, name, params in SERIES:
                entry = data.get("results", {}).get(name)
                if entry is None:
                    continue
                row = dict(zip(columns, entry))
                grid = row.get("params") or []
                result = row.get("result") or []
                for combo, value in zip(itertools.product(*grid), result):
                    if tuple(combo) == params and value is not None:
                        values[label] = float(value)
    return found


def plot(path=FIGURE):
    """Draw the history figure and print its table; returns the table's rows."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    stones = milestones()
    found = collect()
    rows = []
    for sha, label in stones:
        values = found.get(sha, {})
        rows.append((sha[:7], label, [values.get(s[0]) for s in SERIES]))
    width = max(len(r[1]) for r in rows)
    print(f"{'commit':8} {'milestone':{width}}  " + "  ".join(
        f"{i + 1:>8}" for i in range(len(SERIES))))
    for sha, label, values in rows:
        cells = "  ".join(f"{v * 1e3:8.1f}" if v is not None else f"{'--':>8}"
                          for v in values)
        print(f"{sha:8} {label:{width}}  {cells}")
    for i, (label, _, _) in enumerate(SERIES):
        print(f"  {i + 1}: {label} (ms, median)")

    fig, axes = plt.subplots(2, 1, figsize=(9, 7.5), sharex=True, layout="constrained")
    x = range(len(rows))
    groups = [(axes[0], SERIES[:2], "CTC loss, B=32 T=1000 C=64 S=200"),
              (axes[1], SERIES[2:], "engine, same batch")]
    for ax, series, title in groups:
        for label, _, _ in series:
            i = [s[0] for s in SERIES].index(label)
            ys = [r[2][i] * 1e3 if r[2][i] is not None else float("nan") for r in rows]
            ax.plot(x, ys, marker="o", label=label)
        ax.set_ylabel("ms (median, 2 threads)")
        ax.set_yscale("log")
        ax.set_title(title, fontsize=10)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    axes[1].set_xticks(list(x))
    axes[1].set_xticklabels([f"{r[0]}\n{r[1]}" for r in rows], rotation=60,
                            ha="right", fontsize=7)
    fig.suptitle("lattice over its milestones (float32, this machine)", fontsize=11)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    print(f"wrote {path}")
    return rows


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="step", required=True)
    p_run = sub.add_parser("run", help="asv run over the milestones")
    p_run.add_argument("--rounds", type=int, default=2)
    p_plot = sub.add_parser("plot", help="draw the figure from asv's results")
    p_plot.add_argument("--out", type=Path, default=FIGURE)
    args = parser.parse_args(argv)
    if args.step == "run":
        return run(args.rounds)
    plot(args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
