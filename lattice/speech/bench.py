"""Word-boundary accuracy of lattice's topologies on synthetic speech.

One small acoustic model (a convolution, a bidirectional LSTM, a linear layer over
:data:`~lattice.speech.corpus.SYMBOLS`, on 10 ms log-mel frames) is trained with
CTC for a warm-up, then a copy of it is trained further with each topology:

* ``ctc``: CTC (blank between letters; the alignment's letters are 1-frame spikes);
* ``ctc+delay``: CTC with a delay penalty (:func:`lattice.weights.delay_penalty`:
  every entry into a new letter at frame t costs ``penalty * t``);
* ``hmm``: Viterbi training on an HMM chain of two states per letter with a
  minimum duration (the align-and-train loop of the seeds, after the CTC warm-up);
* ``segmentation``: every frame belongs to a letter or a silence, summed over all
  segmentations.

Each model force-aligns the held-out utterances with its own topology
(:func:`lattice.torch.viterbi_align`); a word's onset is the first frame of its
first letter, its offset the end of its last, and both are compared with the times
espeak-ng reported. :func:`run_speech_bench` returns the table;
:func:`plot_alignments` draws one utterance's boundaries per topology.
"""

from __future__ import annotations

import copy
import dataclasses
import time

import numpy as np

from .corpus import BLANK, SILENCE, SYMBOLS, CorpusConfig, make_corpus
from .features import frame_times

__all__ = ["TOPOLOGIES", "SpeechBenchConfig", "format_results", "plot_alignments",
           "run_speech_bench"]

TOPOLOGIES = ("ctc", "ctc+delay", "hmm", "segmentation")


@dataclasses.dataclass(frozen=True)
class SpeechBenchConfig:
    """Sizes of the benchmark (:meth:`quick` for CI)."""

    corpus: CorpusConfig = CorpusConfig()
    warmup_steps: int = 1200
    steps: int = 300  # per topology, after the warm-up
    batch_size: int = 16
    hidden: int = 96
    lr: float = 3e-3
    seed: int = 0
    delay_penalty: float = 0.02  # nats per frame of delay
    hmm_states: int = 2
    hmm_min_frames: int = 3  # per letter
    topologies: tuple = TOPOLOGIES

    @classmethod
    def quick(cls):
        """A configuration that runs in under a minute on two cores (CI's)."""
        return cls(corpus=CorpusConfig(train=300, test=40), warmup_steps=500, steps=100,
                   hidden=64)


def _model(config, torch):
    class Aligner(torch.nn.Module):
        """Conv1d front end, one bidirectional LSTM layer, linear, log_softmax."""

        def __init__(self):
            super().__init__()
            self.conv = torch.nn.Conv1d(40, config.hidden, 5, padding=2)
            self.lstm = torch.nn.LSTM(config.hidden, config.hidden, bidirectional=True)
            self.out = torch.nn.Linear(2 * config.hidden, len(SYMBOLS))

        def forward(self, x):  # (B, T, 40) -> (T, B, C) log-probabilities
            h = torch.relu(self.conv(x.transpose(1, 2)))
            h, _ = self.lstm(h.permute(2, 0, 1))
            return self.out(h).log_softmax(-1)

    return Aligner()


def _batch(corpus, index, torch):
    feats = [corpus.features[i] for i in index]
    lengths = np.array([f.shape[0] for f in feats])
    x = np.zeros((len(feats), lengths.max(), feats[0].shape[1]), np.float32)
    for b, f in enumerate(feats):
        x[b, : f.shape[0]] = f
    targets = [corpus.targets[i] for i in index]
    return (torch.from_numpy(x), torch.from_numpy(lengths),
            torch.cat([torch.from_numpy(t) for t in targets]),
            torch.tensor([len(t) for t in targets]), targets)


def _criterion(topology, config, torch):
    """loss(log_probs, targets, lengths, target_lengths, target_list) for training."""
    import lattice
    from lattice.torch import CTCLoss, SegmentationLoss, ViterbiLoss, lattice_score

    if topology == "ctc":
        ctc = CTCLoss(blank=BLANK)
        return lambda lp, tg, il, tl, seqs: ctc(lp, tg, il, tl)
    if topology == "ctc+delay":
        def delayed(lp, tg, il, tl, seqs):
            gb = lattice.build_batch("ctc", seqs, blank=BLANK)
            w = lattice.weights.delay_penalty(gb, lp.shape[0], config.delay_penalty)
            base = np.broadcast_to(np.asarray(gb.weight)[:, None, :], w.shape)
            score = lattice_score(lp.transpose(0, 1), gb, il,
                                  arc_weights=torch.from_numpy(w + base).to(lp.dtype))
            return -(score / tl.to(score.dtype)).mean()
        return delayed
    if topology == "hmm":
        viterbi = ViterbiLoss("hmm", states=config.hmm_states,
                              min_frames=config.hmm_min_frames)
        return lambda lp, tg, il, tl, seqs: viterbi(lp, tg, il, tl)
    if topology == "segmentation":
        seg = SegmentationLoss()
        return lambda lp, tg, il, tl, seqs: seg(lp, tg, il, tl)
    raise ValueError(f"unknown topology {topology!r}; known: {TOPOLOGIES}")


def _graph(topology, target, config):
    import lattice

    if topology in ("ctc", "ctc+delay"):
        return lattice.build("ctc", target, blank=BLANK)
    if topology == "hmm":
        return lattice.build("hmm", target, states=config.hmm_states,
                             min_frames=config.hmm_min_frames)
    return lattice.build("segmentation", target)


def _train(model, corpus, criterion, steps, config, rng, torch):
    optimizer = torch.optim.Adam(model.parameters(), lr=config.lr)
    train = np.asarray(corpus.split("train"))
    model.train()
    for _ in range(steps):
        x, il, tg, tl, seqs = _batch(corpus, rng.choice(train, config.batch_size,
                                                        replace=False), torch)
        loss = criterion(model(x), tg, il, tl, seqs)
        optimizer.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        optimizer.step()


def _letters(ids):
    return [int(i) for i in ids if i not in (BLANK, SILENCE)]


def _evaluate(model, topology, corpus, config, torch):
    """Boundary errors (ms), alignment seconds per hour of audio, held-out CER, and
    the aligned (onsets, offsets) of every held-out utterance."""
    from lattice.decode import ctc_greedy, error_rate, segmentation_greedy
    from lattice.torch import viterbi_align

    test = list(corpus.split("test"))
    model.eval()
    with torch.no_grad():
        x, il, _, _, seqs = _batch(corpus, test, torch)
        log_probs = model(x)
    graphs = [_graph(topology, t, config) for t in seqs]
    emissions = log_probs.transpose(0, 1).contiguous()
    start = time.perf_counter()
    ali = viterbi_align(emissions, graphs, il)
    seconds = time.perf_counter() - start
    hyps = (ctc_greedy(log_probs.transpose(0, 1), il, blank=BLANK)
            if topology.startswith("ctc") else segmentation_greedy(log_probs.transpose(0, 1), il))
    cer = error_rate([_letters(h) for h in hyps], [_letters(t) for t in seqs])
    onset_err, offset_err, aligned = [], [], []
    for b, i in enumerate(test):
        n = int(ali.num_segments[b])
        tokens, starts, ends = (a[b, :n].numpy() for a in (ali.tokens, ali.starts, ali.ends))
        first = {int(k): int(s) for k, s in zip(tokens[::-1], starts[::-1])}
        last = {int(k): int(e) for k, e in zip(tokens, ends)}
        spans = corpus.spans[i]
        on = frame_times([first.get(int(s), 0) for s in spans[:, 0]], corpus.rate, corpus.hop)
        off = frame_times([last.get(int(e), 0) for e in spans[:, 1]], corpus.rate, corpus.hop)
        aligned.append((on, off))
        onset_err.append(np.abs(on - corpus.onsets[i]))
        offset_err.append(np.abs(off - corpus.offsets[i]))
    onset_err = np.concatenate(onset_err) * 1e3
    offset_err = np.concatenate(offset_err) * 1e3
    both = np.concatenate([onset_err, offset_err])
    audio_hours = float(corpus.seconds[test].sum()) / 3600
    return {
        "topology": topology,
        "onset_mean": float(onset_err.mean()), "onset_median": float(np.median(onset_err)),
        "offset_mean": float(offset_err.mean()),
        "offset_median": float(np.median(offset_err)),
        "within_20": float((both <= 20).mean()), "within_50": float((both <= 50).mean()),
        "align_s_per_hour": seconds / audio_hours, "cer": float(cer),
        "aligned": aligned,
    }  # fmt: skip


def run_speech_bench(config=None, progress=None, corpus=None):
    """Train one model per topology and measure its forced alignments.

    Parameters
    ----------
    config : SpeechBenchConfig, optional
    progress : callable, optional
        Called with a short message at each stage.
    corpus : Corpus, optional
        Made from ``config.corpus`` (and cached) when not given.

    Returns
    -------
    dict
        ``results``: one dict per topology (``onset_mean``, ``onset_median``,
        ``offset_mean``, ``offset_median`` in ms, ``within_20`` and ``within_50``
        the shares of boundaries so close, ``align_s_per_hour``, ``cer``,
        ``aligned`` times); ``corpus``; ``seconds`` (the whole run).

    Raises
    ------
    lattice.speech.espeak.EspeakMissing
        Without espeak-ng (and no cached corpus).

    Examples
    --------
    >>> from lattice.speech.bench import SpeechBenchConfig, run_speech_bench
    >>> out = run_speech_bench(SpeechBenchConfig.quick())  # doctest: +SKIP
    >>> [r["topology"] for r in out["results"]]  # doctest: +SKIP
    ['ctc', 'ctc+delay', 'hmm', 'segmentation']
    """
    import torch

    config = SpeechBenchConfig() if config is None else config
    say = progress or (lambda message: None)
    began = time.perf_counter()
    if corpus is None:
        corpus = make_corpus(config.corpus, progress=say)
    torch.manual_seed(config.seed)
    rng = np.random.default_rng(config.seed)
    model = _model(config, torch)
    say(f"CTC warm-up: {config.warmup_steps} steps")
    _train(model, corpus, _criterion("ctc", config, torch), config.warmup_steps, config,
           rng, torch)
    results = []
    for topology in config.topologies:
        say(f"{topology}: {config.steps} steps, then forced alignment")
        tuned = copy.deepcopy(model)
        _train(tuned, corpus, _criterion(topology, config, torch), config.steps, config,
               np.random.default_rng(config.seed + 1), torch)
        results.append(_evaluate(tuned, topology, corpus, config, torch))
    return {"results": results, "corpus": corpus, "seconds": time.perf_counter() - began}


def format_results(results):
    """The table of :func:`run_speech_bench`'s results, one row per topology.

    Examples
    --------
    >>> from lattice.speech.bench import format_results
    >>> row = dict(topology="ctc", onset_mean=30.0, onset_median=20.0, offset_mean=80.0,
    ...            offset_median=70.0, within_20=0.4, within_50=0.7,
    ...            align_s_per_hour=1.5, cer=0.05)
    >>> print(format_results([row]))
    topology  onset mean  onset median  offset mean  offset median  <=20 ms  <=50 ms  align s/h   CER
    ctc          30.0 ms       20.0 ms      80.0 ms        70.0 ms    40.0%    70.0%        1.5  5.0%
    """
    header = ("topology", "onset mean", "onset median", "offset mean", "offset median",
              "<=20 ms", "<=50 ms", "align s/h", "CER")
    rows = [header]
    for r in results:
        rows.append((r["topology"], f"{r['onset_mean']:.1f} ms", f"{r['onset_median']:.1f} ms",
                     f"{r['offset_mean']:.1f} ms", f"{r['offset_median']:.1f} ms",
                     f"{100 * r['within_20']:.1f}%", f"{100 * r['within_50']:.1f}%",
                     f"{r['align_s_per_hour']:.1f}", f"{100 * r['cer']:.1f}%"))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    return "\n".join(
        "  ".join(c.ljust(w) if i == 0 else c.rjust(w)
                  for i, (c, w) in enumerate(zip(row, widths))).rstrip()
        for row in rows)


def plot_alignments(out, path):
    """One held-out utterance: its waveform and log-mel features, with the true word
    boundaries and those of each topology's alignment; saved to ``path``.

    Examples
    --------
    >>> from lattice.speech.bench import plot_alignments
    >>> plot_alignments(run_speech_bench(), "speech.png")  # doctest: +SKIP
    """
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    corpus, results = out["corpus"], out["results"]
    i = corpus.config.train  # the first held-out utterance (corpus.example)
    audio, rate = corpus.example, corpus.rate
    feats = corpus.features[i]
    seconds = audio.shape[0] / rate
    fig, axes = plt.subplots(1 + len(results), 1, figsize=(10, 1.6 * (1 + len(results))),
                             sharex=True)
    axes[0].plot(np.arange(audio.shape[0]) / rate, audio, lw=0.4, color="0.3")
    axes[0].set_ylabel("waveform")
    axes[0].set_title(f"\u201c{corpus.words[i]}\u201d: true word boundaries (white / "
                      "black dashed) and each topology's (orange)", fontsize=9)
    for t in np.r_[corpus.onsets[i], corpus.offsets[i]]:
        axes[0].axvline(t, color="k", ls="--", lw=0.8)
    for ax, r in zip(axes[1:], results):
        ax.imshow(feats.T, aspect="auto", origin="lower", cmap="viridis",
                  extent=(0, feats.shape[0] * corpus.hop / rate, 0, feats.shape[1]))
        for t in np.r_[corpus.onsets[i], corpus.offsets[i]]:
            ax.axvline(t, color="w", ls="--", lw=0.8)
        on, off = r["aligned"][0]
        for t in np.r_[on, off]:
            ax.axvline(t, color="tab:orange", lw=1.2)
        ax.set_ylabel(r["topology"], fontsize=8)
        ax.set_yticks([])
    axes[-1].set_xlabel("seconds")
    axes[-1].set_xlim(0, seconds)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
