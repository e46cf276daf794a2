"""The demo in tiny configurations: data, training, determinism, saved files, figure."""

import numpy as np
import pytest

from lattice import decode
from lattice.demo import (
    BLANK,
    FONT,
    STRIDE,
    SYMBOLS,
    DemoConfig,
    render,
    run,
    synthesize,
)

pytest.importorskip("torch")

TINY = dict(epochs=1, steps_per_epoch=3, batch_size=4, eval_size=6, hidden=8, threads=1)


def _collapse_columns(columns):
    out = []
    for c in columns:
        if not out or not np.array_equal(out[-1], c):
            out.append(c)
    return out


def test_render_draws_the_glyphs_in_order():
    rng = np.random.default_rng(0)
    line = render([8, 0, 8], rng, columns=40, noise=0.0)  # glyphs without empty columns
    has_ink = line.sum(axis=1) > 0
    ink = np.flatnonzero(has_ink)
    assert ink[0] <= 4  # a left margin of at most 4 columns
    # split into runs of ink columns: one per glyph, each 5-10 columns wide
    breaks = np.flatnonzero(np.diff(ink) > 1)
    runs = np.split(ink, breaks + 1)
    assert len(runs) == 3
    for digit, run_ in zip([8, 0, 8], runs):
        assert 5 <= len(run_) <= 10
        block = line[run_]
        block = (block / block.max() > 0.5).astype(np.float32)
        rows = np.flatnonzero(block.any(axis=0))
        glyph = block[:, rows[0] : rows[0] + 7]  # undo the vertical shift
        expected = _collapse_columns(list(FONT[digit].T))
        assert len(_collapse_columns(list(glyph))) == len(expected)
        for got, want in zip(_collapse_columns(list(glyph)), expected):
            np.testing.assert_array_equal(got, want)
    with pytest.raises(ValueError, match="need"):
        render([8] * 10, rng, columns=20)


def test_synthesize_is_reproducible_and_in_range():
    cfg = DemoConfig()
    x1, y1 = synthesize(20, np.random.default_rng(5), cfg)
    x2, y2 = synthesize(20, np.random.default_rng(5), cfg)
    np.testing.assert_array_equal(x1, x2)
    assert [t.tolist() for t in y1] == [t.tolist() for t in y2]
    assert x1.shape == (20, cfg.columns, cfg.height) and x1.dtype == np.float32
    assert all(cfg.min_digits <= len(t) <= cfg.max_digits for t in y1)
    assert all(1 <= c < len(SYMBOLS) for t in y1 for c in t)


def test_tiny_run_reports_and_saves(tmp_path):
    out, em, tr, sy = (tmp_path / n for n in ("f.png", "e.npy", "t.txt", "s.txt"))
    lines = []
    result = run(DemoConfig(**TINY), out=out, save_emissions=em, save_transcripts=tr,
                 save_symbols=sy, progress=False, log=lines.append)
    h = result.history
    assert all(len(v) == 1 for v in h.values())
    assert len(result.step_losses) == 3 and np.isfinite(result.step_losses).all()
    assert 0 <= result.cer_greedy and 0 <= result.cer_beam
    assert lines[0].startswith("lattice demo:") and lines[-1].startswith("done in")
    assert any(line.startswith("epoch  1/1") for line in lines)
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and result.figure == str(out)
    lp = np.load(em)
    frames = (DemoConfig().columns - 1) // STRIDE + 1
    assert lp.shape == (6, frames, len(SYMBOLS)) and lp.dtype == np.float32
    np.testing.assert_allclose(np.exp(lp).sum(-1), 1.0, rtol=1e-5)
    texts = tr.read_text().splitlines()
    assert len(texts) == 6 and all(t.isdigit() for t in texts)
    assert [[SYMBOLS.index(ch) for ch in t] for t in texts] == result.eval_targets
    table = dict(line.split() for line in sy.read_text().splitlines())
    assert table["<blank>"] == str(BLANK) and table["0"] == "1" and table["9"] == "10"
    # the reported CER is the greedy decoding of the saved emissions
    assert result.cer_greedy == pytest.approx(
        decode.error_rate(decode.ctc_greedy(lp), result.eval_targets))


def test_runs_are_deterministic_given_the_seed():
    a = run(DemoConfig(**TINY, seed=3), quiet=True)
    b = run(DemoConfig(**TINY, seed=3), quiet=True)
    c = run(DemoConfig(**TINY, seed=4), quiet=True)
    assert a.step_losses == b.step_losses and a.history["eval_loss"] == b.history["eval_loss"]
    assert a.step_losses != c.step_losses


def test_training_reduces_the_loss_with_every_loss():
    for loss in ("ctc", "viterbi", "mmi"):
        cfg = DemoConfig(epochs=1, steps_per_epoch=40, batch_size=8, eval_size=4,
                         hidden=16, threads=1, loss=loss, viterbi_warmup=0)
        losses = run(cfg, quiet=True).step_losses
        # MMI falls less in these 40 steps (from about 6.1 to 3.4 per symbol)
        factor = 0.65 if loss == "mmi" else 0.5
        assert np.mean(losses[-5:]) < factor * np.mean(losses[:5]), loss


def test_quiet_prints_nothing(capsys):
    run(DemoConfig(**TINY), quiet=True)
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err == ""


@pytest.mark.parametrize(
    "options, match",
    [
        (dict(epochs=0), "epochs must be a positive int"),
        (dict(batch_size=2.0), "batch_size must be a positive int"),
        (dict(loss="mse"), "loss must be 'ctc', 'viterbi' or 'mmi'"),
        (dict(ctc_weight=-0.5), "ctc_weight must be a finite number >= 0"),
        (dict(ctc_weight="0.1"), "ctc_weight must be a finite number >= 0"),
        (dict(mmi_transcripts=0), "mmi_transcripts must be a positive int"),
        (dict(height=5), "height must be >= 7"),
        (dict(min_digits=5, max_digits=3), "max_digits must be >= min_digits"),
        (dict(columns=30), "columns must be >= "),
        (dict(lr=0.0), "lr must be > 0"),
        (dict(threads=0), "threads must be a positive int"),
        (dict(viterbi_warmup=-1), "viterbi_warmup must be a non-negative int"),
        (dict(loss="viterbi", epochs=3), r"viterbi_warmup \(3\) must be below epochs"),
    ],
)
def test_bad_config(options, match):
    with pytest.raises(ValueError, match=match):
        DemoConfig(**options)


def test_run_leaves_the_callers_settings_alone():
    import torch

    import lattice

    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    threads = torch.get_num_threads()
    with lattice.num_threads(2):
        run(DemoConfig(**TINY), quiet=True)
        assert lattice._threads._num_threads == 2
    assert torch.get_num_threads() == threads
    assert torch.equal(torch.rand(3), expected)  # the caller's random stream is untouched


def test_output_problems_are_found_before_training(tmp_path, monkeypatch):
    import sys

    with pytest.raises(FileNotFoundError, match="no folder"):
        run(DemoConfig(**TINY), save_emissions=tmp_path / "missing" / "e.npy", quiet=True)
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    monkeypatch.setitem(sys.modules, "matplotlib.pyplot", None)
    with pytest.raises(ImportError, match=r"lattice\[plot\]"):
        run(DemoConfig(**TINY), out=tmp_path / "f.png", quiet=True)


def test_viterbi_warmup_epochs_train_with_ctc():
    lines = []
    cfg = DemoConfig(**dict(TINY, epochs=3), loss="viterbi", viterbi_warmup=2)
    run(cfg, progress=False, log=lines.append)
    epochs = [line for line in lines if line.startswith("epoch")]
    assert [e.split()[3] for e in epochs] == ["CTC", "CTC", "Viterbi"]
    assert "Viterbi loss after 2 CTC warm-up epoch(s)" in lines[0]


def test_mmi_trains_against_a_bigram_denominator(monkeypatch):
    """--loss mmi: one bigram denominator (21 states, 231 arcs over 10 digits) built
    at the start from mmi_transcripts transcripts, shared by every step's MMILoss;
    the ctc and viterbi runs are unchanged by its random stream."""
    import lattice.torch

    built, calls = [], []
    real_build, real_loss = lattice.demo.build, lattice.torch.mmi_loss

    def spy_build(name, transcripts, **options):
        built.append((name, len(transcripts), options))
        return real_build(name, transcripts, **options)

    def spy_loss(*args, **kwargs):
        calls.append(args[4])
        return real_loss(*args, **kwargs)

    monkeypatch.setattr(lattice.demo, "build", spy_build)
    monkeypatch.setattr(lattice.torch, "mmi_loss", spy_loss)
    lines = []
    cfg = DemoConfig(**dict(TINY, epochs=2), loss="mmi", ctc_weight=0.2,
                     mmi_transcripts=50)
    result = run(cfg, progress=False, log=lines.append)
    assert built == [("ctc_denominator", 50, dict(num_tokens=11, blank=0, order=2))]
    assert "MMI loss (+ 0.2 x CTC) against a bigram denominator of 50 transcripts " \
        "(21 states, 231 arcs)" in lines[0]
    assert [e.split()[3] for e in lines if e.startswith("epoch")] == ["MMI", "MMI"]
    assert len(calls) == 6 and all(c is calls[0] for c in calls)  # one denominator
    assert np.isfinite(result.step_losses).all() and min(result.step_losses) >= 0
    ctc = DemoConfig(**TINY)
    assert run(ctc, quiet=True).step_losses == run(DemoConfig(**TINY, ctc_weight=0.7,
                                                              mmi_transcripts=7),
                                                   quiet=True).step_losses
