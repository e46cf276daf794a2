"""A corpus of synthetic speech with true word times, made with espeak-ng.

Each utterance is a random string of 2 to 5 words (digits and a few dozen short
words) spoken by a random ``+variant`` voice at a random speed and pitch, padded
with 0.1 to 0.3 s of silence at both ends and mixed with white noise at a random
signal-to-noise ratio; its features are 40 log-mel energies every 10 ms, normalised
per utterance. Targets are characters: a silence token at both ends and the
letters of the words between (:data:`SYMBOLS`). A corpus is a pure function of its
:class:`CorpusConfig` (the seed included) and is cached on disk under a name made
from it.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import os
from pathlib import Path

import numpy as np

from . import espeak
from .features import log_mel

__all__ = ["SYMBOLS", "VOCABULARY", "Corpus", "CorpusConfig", "cache_dir", "make_corpus"]

#: The words utterances are made of.
VOCABULARY = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight",
              "nine", "oh", "yes", "no", "up", "down", "left", "right", "on", "off",
              "stop", "go", "red", "green", "blue", "cat", "dog", "sun", "map", "big",
              "small", "hot", "cold", "fast", "slow", "open", "close", "day", "night",
              "tree", "bird")
#: Output classes of the models: blank (CTC only), silence, then the letters.
SYMBOLS = ("_", "|") + tuple("abcdefghijklmnopqrstuvwxyz")
BLANK, SILENCE = 0, 1
VOICES = ("en", "en+m1", "en+m3", "en+m5", "en+m7", "en+f1", "en+f2", "en+f4",
          "en+croak", "en+klatt")


@dataclasses.dataclass(frozen=True)
class CorpusConfig:
    """What a corpus is made of (every field enters its cache name)."""

    train: int = 600
    test: int = 80
    seed: int = 0
    speeds: tuple = (140, 220)  # words per minute, drawn uniformly
    pitches: tuple = (30, 70)
    snrs: tuple = (None, 30.0, 20.0, 10.0)  # dB; None: clean
    voices: tuple = VOICES
    hop_ms: int = 10


@dataclasses.dataclass
class Corpus:
    """Features, targets and true word times of every utterance.

    ``features[i]`` is (frames, 40) float32; ``targets[i]`` the class ids;
    ``spans[i]`` (words, 2) the first and last target position of each word;
    ``onsets[i]`` / ``offsets[i]`` the true word times in seconds; ``seconds[i]``
    the duration. The first ``config.train`` utterances are for training, the rest
    held out; ``example`` is the waveform of the first held-out one (for plots).
    """

    config: CorpusConfig
    features: list
    targets: list
    spans: list
    onsets: list
    offsets: list
    seconds: np.ndarray
    words: list
    example: np.ndarray
    rate: int

    @property
    def hop(self):
        """Samples per frame."""
        return int(round(self.rate * self.config.hop_ms / 1000))

    def split(self, part):
        """The indices of the ``"train"`` or ``"test"`` utterances."""
        n = self.config.train
        return range(n) if part == "train" else range(n, n + self.config.test)


def cache_dir():
    """Where corpora are kept: ``$LATTICE_CACHE``, else ``~/.cache/lattice``."""
    root = os.environ.get("LATTICE_CACHE") or Path.home() / ".cache" / "lattice"
    return Path(root) / "speech"


def _name(config):
    fields = json.dumps(dataclasses.asdict(config), sort_keys=True)
    return "corpus-" + hashlib.sha256(fields.encode()).hexdigest()[:16] + ".npz"


def _target(words):
    letters = [[SYMBOLS.index(c) for c in w] for w in words]
    target, spans, position = [SILENCE], [], 1
    for ids in letters:
        spans.append((position, position + len(ids) - 1))
        target += ids
        position += len(ids)
    return np.array(target + [SILENCE], np.int64), np.array(spans, np.int64)


def _speak(rng, config):
    """A random word string spoken; drawn again when espeak-ng runs two words into
    one (it then reports no phonemes of the second: no true times for it)."""
    for _ in range(100):
        words = [str(w) for w in rng.choice(VOCABULARY, size=int(rng.integers(2, 6)))]
        try:
            return words, espeak.synthesize(
                words, voice=str(rng.choice(config.voices)),
                speed=int(rng.integers(*config.speeds)),
                pitch=int(rng.integers(*config.pitches)))
        except ValueError:
            continue
    raise RuntimeError("espeak-ng merged the words of 100 random strings in a row")


def _utterance(rng, config):
    words, u = _speak(rng, config)
    lead, tail = (int(rng.uniform(0.1, 0.3) * u.rate) for _ in range(2))
    audio = np.concatenate([np.zeros(lead, np.float32), u.audio, np.zeros(tail, np.float32)])
    snr = config.snrs[int(rng.integers(len(config.snrs)))]
    power = float(np.mean(u.audio.astype(np.float64) ** 2)) if u.audio.size else 0.0
    noise_power = power / 10 ** (snr / 10) if snr is not None else power * 1e-6
    audio = audio + rng.normal(0.0, np.sqrt(noise_power + 1e-12), audio.shape)
    return words, audio.astype(np.float32), u.rate, u.onsets + lead / u.rate, \
        u.offsets + lead / u.rate


def make_corpus(config=None, cache=True, progress=None):
    """Synthesise (or read from the cache) the corpus of ``config``.

    Parameters
    ----------
    config : CorpusConfig, optional
    cache : bool
        Read and write the cache (:func:`cache_dir`).
    progress : callable, optional
        Called with a short message while synthesising.

    Returns
    -------
    Corpus

    Raises
    ------
    lattice.speech.espeak.EspeakMissing
        Without espeak-ng (and no cached corpus).

    Examples
    --------
    >>> from lattice.speech.corpus import CorpusConfig, make_corpus
    >>> corpus = make_corpus(CorpusConfig(train=2, test=1), cache=False)  # doctest: +SKIP
    >>> len(corpus.features), corpus.features[0].shape[1]  # doctest: +SKIP
    (3, 40)
    """
    config = CorpusConfig() if config is None else config
    path = cache_dir() / _name(config)
    if cache and path.exists():
        return _load(path, config)
    rng = np.random.default_rng(config.seed)
    total = config.train + config.test
    out = {k: [] for k in ("features", "targets", "spans", "onsets", "offsets",
                           "seconds", "words")}
    example, rate = None, 0
    for i in range(total):
        if progress is not None and i % 50 == 0:
            progress(f"synthesising utterance {i + 1} of {total}")
        words, audio, rate, onsets, offsets = _utterance(rng, config)
        hop = int(round(rate * config.hop_ms / 1000))
        feats = log_mel(audio, rate, hop=hop)
        feats = (feats - feats.mean(axis=0)) / (feats.std(axis=0) + 1e-5)
        target, spans = _target(words)
        for key, value in (("features", feats.astype(np.float32)), ("targets", target),
                           ("spans", spans), ("onsets", onsets), ("offsets", offsets),
                           ("seconds", audio.shape[0] / rate), ("words", " ".join(words))):
            out[key].append(value)
        if i == config.train:
            example = audio
    corpus = Corpus(config, out["features"], out["targets"], out["spans"], out["onsets"],
                    out["offsets"], np.asarray(out["seconds"]), out["words"], example, rate)
    if cache:
        _save(path, corpus)
    return corpus


def _save(path, corpus):
    path.parent.mkdir(parents=True, exist_ok=True)
    ragged = {}
    for key in ("features", "targets", "spans", "onsets", "offsets"):
        values = getattr(corpus, key)
        ragged[key] = np.concatenate(values)
        ragged[key + "_sizes"] = np.array([len(v) for v in values])
    tmp = path.with_suffix(".tmp.npz")
    np.savez(tmp, seconds=corpus.seconds, words=np.array(corpus.words),
             example=corpus.example, rate=corpus.rate, **ragged)
    os.replace(tmp, path)


def _load(path, config):
    data = np.load(path)

    def ragged(key):
        return np.split(data[key], np.cumsum(data[key + "_sizes"])[:-1])

    return Corpus(config, ragged("features"), ragged("targets"), ragged("spans"),
                  ragged("onsets"), ragged("offsets"), data["seconds"],
                  [str(w) for w in data["words"]], data["example"], int(data["rate"]))
