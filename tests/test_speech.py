"""lattice speech-bench: espeak-ng's word times, the features, the cached corpus,
the benchmark's pipeline on a tiny configuration, and its sanity check. Tests that
need espeak-ng skip without it (apt-get install espeak-ng)."""

import argparse
import dataclasses

import numpy as np
import pytest

from lattice.cli import speech_bench as cli
from lattice.speech import espeak
from lattice.speech.corpus import SILENCE, SYMBOLS, CorpusConfig, _target, make_corpus
from lattice.speech.features import frame_times, log_mel, mel_filters

needs_espeak = pytest.mark.skipif(not espeak.available(),
                                  reason="espeak-ng is not installed")


def test_log_mel_frames_every_hop():
    rate = 16000
    x = np.random.default_rng(0).standard_normal(rate // 2)
    feats = log_mel(x, rate, hop=160)
    assert feats.shape == (1 + rate // 2 // 160, 40) and feats.dtype == np.float32
    # a louder signal has more energy in every band
    assert (log_mel(4 * x, rate, hop=160) > feats).all()
    f = mel_filters(rate, 512, 40)
    assert f.shape == (40, 257) and (f >= 0).all() and (f.max(axis=1) > 0.5).all()


def test_frame_times_are_boundaries_between_frames():
    np.testing.assert_allclose(frame_times([0, 1, 3], 22050, hop=220),
                               [0.0, 0.5 * 220 / 22050, 2.5 * 220 / 22050])


def test_targets_and_word_spans():
    target, spans = _target(["oh", "six"])
    letters = [SYMBOLS[i] for i in target]
    assert letters == ["|", "o", "h", "s", "i", "x", "|"]
    assert target[0] == target[-1] == SILENCE
    assert spans.tolist() == [[1, 2], [3, 5]]


@needs_espeak
def test_espeak_word_times():
    u = espeak.synthesize(["three", "seven", "two"], voice="en+m3", speed=160)
    assert u.rate > 8000 and u.audio.dtype == np.float32
    assert np.abs(u.audio).max() <= 1.0
    assert u.words == ("three", "seven", "two")
    assert (np.diff(u.onsets) > 0).all() and (u.offsets > u.onsets).all()
    assert (u.offsets[:-1] <= u.onsets[1:] + 1e-9).all()  # words do not overlap
    assert u.offsets[-1] <= u.audio.shape[0] / u.rate + 1e-9
    slow = espeak.synthesize(["three", "seven", "two"], voice="en+m3", speed=100)
    assert slow.offsets[-1] > 1.3 * u.offsets[-1]  # slower speech: later words


@needs_espeak
def test_espeak_refuses_bad_input():
    with pytest.raises(ValueError, match="lower-case ASCII"):
        espeak.synthesize(["Three"])
    with pytest.raises(ValueError, match="lower-case ASCII"):
        espeak.synthesize([])
    with pytest.raises(ValueError, match="no voice"):
        espeak.synthesize(["two"], voice="no-such-voice")


def test_missing_espeak_says_how_to_install(monkeypatch):
    monkeypatch.setattr(espeak, "_STATE", {})

    def refuse(name):
        raise OSError(f"{name}: cannot open shared object file")

    monkeypatch.setattr(espeak.ctypes, "CDLL", refuse)
    with pytest.raises(espeak.EspeakMissing, match="apt-get install espeak-ng"):
        espeak.synthesize(["two"])
    assert espeak.available() is False


@needs_espeak
def test_corpus_is_cached_by_its_parameters(tmp_path, monkeypatch):
    monkeypatch.setenv("LATTICE_CACHE", str(tmp_path))
    config = CorpusConfig(train=4, test=2, seed=3)
    first = make_corpus(config)
    assert len(list((tmp_path / "speech").glob("corpus-*.npz"))) == 1
    again = make_corpus(config)
    for a, b in zip(first.features + first.targets, again.features + again.targets):
        np.testing.assert_array_equal(a, b)
    assert again.words == first.words and again.rate == first.rate
    assert all(f.shape[1] == 40 for f in first.features)
    for i in range(6):  # the true times lie inside the audio, words in order
        assert 0 < first.onsets[i][0] and first.offsets[i][-1] < first.seconds[i]
        assert len(first.spans[i]) == len(first.words[i].split())
    other = make_corpus(dataclasses.replace(config, seed=4))
    assert other.words != first.words
    assert len(list((tmp_path / "speech").glob("corpus-*.npz"))) == 2


@needs_espeak
def test_the_benchmark_runs_on_a_tiny_configuration(tmp_path, monkeypatch):
    pytest.importorskip("torch")
    pytest.importorskip("matplotlib")
    from lattice.speech.bench import (SpeechBenchConfig, format_results, plot_alignments,
                                      run_speech_bench)

    monkeypatch.setenv("LATTICE_CACHE", str(tmp_path))
    config = SpeechBenchConfig(corpus=CorpusConfig(train=16, test=4), warmup_steps=20,
                               steps=5, batch_size=8, hidden=16)
    out = run_speech_bench(config)
    results = out["results"]
    assert [r["topology"] for r in results] == ["ctc", "ctc+delay", "hmm", "segmentation"]
    for r in results:
        assert np.isfinite([r["onset_mean"], r["offset_median"], r["cer"]]).all()
        assert 0 <= r["within_20"] <= r["within_50"] <= 1
        assert len(r["aligned"]) == 4
    assert "segmentation" in format_results(results)
    plot_alignments(out, tmp_path / "speech.png")
    assert (tmp_path / "speech.png").stat().st_size > 10_000


def _results(shift):
    return [{"topology": "hmm", "onset_median": 10.0 + shift, "offset_median": 12.0 + shift,
             "within_50": 0.9 if shift < 40 else 0.1}]


def test_check_passes_a_working_aligner_and_fails_a_shifted_one():
    assert cli.check(_results(0)) == []
    failed = cli.check(_results(150))
    assert len(failed) == 3 and "onset_median = 160.0" in failed[0]


def test_cli_without_espeak_says_how_to_install(monkeypatch, capsys):
    pytest.importorskip("torch")
    from lattice.speech import corpus

    def missing(*args, **kwargs):
        raise espeak.EspeakMissing(f"espeak-ng's library was not found; {espeak.INSTALL_HINT}")

    monkeypatch.setattr(corpus, "make_corpus", missing)
    args = argparse.Namespace(quick=True, seed=0, figure="", no_cache=False, check=True)
    assert cli.main(args) == 3
    assert "apt-get install espeak-ng" in capsys.readouterr().err
