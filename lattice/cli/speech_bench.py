"""``lattice speech-bench``: word-boundary errors of lattice's topologies on
synthetic speech with true word times (espeak-ng).

The command line of :mod:`lattice.speech.bench`: its options, the table printed,
the figure written, and with ``--check`` the sanity bounds CI applies. torch and
espeak-ng are needed only when the command runs.
"""

from __future__ import annotations

import dataclasses
import sys
import time

__all__ = ["CHECKS", "add_arguments", "check", "main"]

#: The sanity bounds of ``--check``: what any working aligner meets on this corpus
#: (median word-onset and word-offset errors in ms, the share of boundaries within
#: 50 ms). An aligner that is broken (boundaries in the wrong place, frames off by
#: more than a few) fails them.
CHECKS = {"onset_median": 100.0, "offset_median": 100.0, "within_50": 0.4}


def add_arguments(parser):
    """Declare the ``lattice speech-bench`` options on an argparse parser.

    Examples
    --------
    >>> import argparse
    >>> from lattice.cli.speech_bench import add_arguments
    >>> p = argparse.ArgumentParser(); add_arguments(p)
    >>> args = p.parse_args(["--quick", "--check"])
    >>> args.quick, args.check, args.figure
    (True, True, 'lattice_speech.png')
    """
    parser.add_argument("--quick", action="store_true",
                        help="a smaller corpus and fewer steps (under 90 s; CI's run)")
    parser.add_argument("--seed", type=int, default=0,
                        help="seed of the corpus and of training (default 0)")
    parser.add_argument("--figure", default="lattice_speech.png",
                        help="where to write the figure ('' for none; default "
                             "lattice_speech.png)")
    parser.add_argument("--no-cache", action="store_true",
                        help="synthesise the corpus again instead of reading the cache")
    parser.add_argument("--check", action="store_true",
                        help="exit 1 unless every topology meets the sanity bounds "
                             "(median onset and offset errors < 100 ms, >= 40%% of "
                             "boundaries within 50 ms)")


def check(results, bounds=None):
    """The sanity bounds ``results`` violate, as messages (empty: all met).

    Examples
    --------
    >>> from lattice.cli.speech_bench import check
    >>> check([{"topology": "ctc", "onset_median": 20.0, "offset_median": 30.0,
    ...         "within_50": 0.8}])
    []
    >>> check([{"topology": "ctc", "onset_median": 250.0, "offset_median": 30.0,
    ...         "within_50": 0.8}])
    ['ctc: onset_median = 250.0 (bound 100.0)']
    """
    bounds = CHECKS if bounds is None else bounds
    failed = []
    for r in results:
        for key, bound in bounds.items():
            bad = r[key] < bound if key.startswith("within") else r[key] >= bound
            if bad:
                failed.append(f"{r['topology']}: {key} = {r[key]:.1f} (bound {bound})")
    return failed


def main(args):
    """Run ``lattice speech-bench`` on parsed arguments; returns the exit status.

    Status 0 after printing the table (and writing the figure), 1 when a
    ``--check`` bound fails, 3 without espeak-ng or torch (with a message saying
    how to install them).

    Examples
    --------
    >>> import argparse
    >>> from lattice.cli.speech_bench import main
    >>> main(argparse.Namespace(quick=True, seed=0, figure="", no_cache=False,
    ...                         check=True))  # doctest: +SKIP
    0
    """
    from ..speech import espeak
    from ..speech.bench import SpeechBenchConfig, format_results, plot_alignments

    try:
        import torch  # noqa: F401
    except ImportError:
        print("lattice speech-bench: torch is not installed (pip install "
              "'lattice[torch]')", file=sys.stderr)
        return 3
    config = SpeechBenchConfig.quick() if args.quick else SpeechBenchConfig()
    config = dataclasses.replace(
        config, seed=args.seed, corpus=dataclasses.replace(config.corpus, seed=args.seed))
    from ..speech.corpus import make_corpus

    started = time.perf_counter()

    def say(message):
        print(f"  [{time.perf_counter() - started:5.1f} s] {message}", flush=True)

    try:
        corpus = make_corpus(config.corpus, cache=not args.no_cache, progress=say)
    except espeak.EspeakMissing as error:
        print(f"lattice speech-bench: {error}", file=sys.stderr)
        return 3
    from ..speech.bench import run_speech_bench

    c = config.corpus
    print(f"lattice speech-bench: {c.train} training and {c.test} held-out utterances "
          f"({float(corpus.seconds.sum()) / 60:.1f} min of audio), CTC warm-up "
          f"{config.warmup_steps} steps, then {config.steps} steps per topology",
          flush=True)
    out = run_speech_bench(config, progress=say, corpus=corpus)
    print(format_results(out["results"]))
    print(f"({out['seconds']:.0f} s; boundary errors over "
          f"{sum(len(corpus.spans[i]) for i in corpus.split('test'))} held-out words; "
          "align s/h: seconds of forced alignment per hour of audio)")
    if args.figure:
        plot_alignments(out, args.figure)
        print(f"figure: {args.figure}")
    if args.check:
        failed = check(out["results"])
        for message in failed:
            print(f"lattice speech-bench: check failed: {message}", file=sys.stderr)
        return 1 if failed else 0
    return 0
