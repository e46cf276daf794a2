"""lattice bench: the timing table of lattice against torch."""

import argparse

import pytest

pytest.importorskip("torch")

from lattice import bench  # noqa: E402
from lattice.cli import bench as bench_cli  # noqa: E402


def test_run_bench_measures_every_pass_and_implementation():
    rows = bench.run_bench(shapes=[(2, 30, 5, 4)], dtypes=("float32", "float64"), repeat=2)
    assert [(r["dtype"], r["pass"]) for r in rows] == [
        ("float32", "forward"), ("float32", "forward+backward"),
        ("float64", "forward"), ("float64", "forward+backward"),
    ]
    for row in rows:
        assert row["shape"] == (2, 30, 5, 4)
        assert {"lattice", "torch"} <= set(row["ms"])
        assert all(ms > 0 for ms in row["ms"].values())
        assert ("error" in row) == (row["pass"] == "forward+backward")


class _Clock:
    """A fake perf_counter that only the timed function moves: ``step`` seconds a
    call."""

    def __init__(self, step):
        self.now, self.step, self.calls, self.syncs = 0.0, step, 0, 0

    def __call__(self):
        return self.now

    def call(self):
        self.now += self.step
        self.calls += 1

    def sync(self):
        self.syncs += 1


@pytest.mark.parametrize("step_ms, n", [(3.0, 2), (30.0, 1), (0.0011, 5000)])
def test_median_ms_times_loops_of_calls_at_least_min_sample_long(monkeypatch, step_ms, n):
    """After a warm-up call, n grows 1, 2, 5, 10, ... until n calls last 5 ms; then
    each of the 3 samples times n calls and gives their mean."""
    clock = _Clock(step_ms / 1e3)
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    ms = bench.median_ms(clock.call, 3, clock.sync, min_sample_ms=5)
    assert ms == pytest.approx(step_ms)
    tries = [1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000, 10000, 20000]
    calibration = sum(tries[: tries.index(n) + 1])
    assert clock.calls == clock.syncs == 1 + calibration + 3 * n


def test_median_ms_without_min_sample_times_single_calls(monkeypatch):
    clock = _Clock(1e-6)
    monkeypatch.setattr(bench.time, "perf_counter", clock)
    assert bench.median_ms(clock.call, 4, min_sample_ms=0) == pytest.approx(1e-3)
    assert clock.calls == 1 + 1 + 4 and clock.syncs == 0


def test_gradient_errors_against_float64():
    """lattice's float32 gradient is exact to float32 rounding; torch's float32 one
    is not on a long input; in float64 both are the reference's (torch's exactly)."""
    log_probs, targets = bench.ctc_problem((1, 3000, 16, 300), "float32")
    err = bench.gradient_errors(log_probs, targets)
    assert err["lattice"] < 1e-6 < err["torch"]
    err = bench.gradient_errors(log_probs.astype("float64"), targets)
    assert err["lattice"] < 1e-10 and err["torch"] == 0


def test_format_table_gives_ratios_to_lattice():
    rows = [{"shape": (32, 1000, 64, 200), "dtype": "float32", "pass": "forward+backward",
             "ms": {"lattice": 100.0, "torch": 750.0, "optax": 500.0}}]
    text = bench.format_table(rows)
    header, line = text.splitlines()
    assert header.split()[-2:] == ["torch/lattice", "optax/lattice"]
    assert line.split()[-2:] == ["7.50", "5.00"]
    assert bench.format_table([]) == "(no measurements)"
    rows[0]["error"] = {"lattice": 2.9e-8, "torch": 2.5e-3}
    header, line = bench.format_table(rows).splitlines()
    assert header.split()[-4:] == ["lattice", "err", "torch", "err"]
    assert line.split()[-2:] == ["2.9e-08", "2.5e-03"]


def test_main_prints_a_table(monkeypatch, capsys):
    monkeypatch.setattr(bench, "SHAPES", [(2, 20, 4, 3), (1, 10, 3, 2)])
    args = argparse.Namespace(dtype="float64", threads=1, repeat=1, quick=True)
    assert bench_cli.main(args) == 0
    out = capsys.readouterr().out
    assert "torch/lattice" in out and "float64" in out
    table = out[out.index("B "):].splitlines()  # after the progress messages
    assert len(table) == 1 + 4  # header, 2 shapes x (forward, forward+backward)
    assert all(row.split()[0] in ("1", "2") for row in table[1:])


@pytest.mark.parametrize("field", ["threads", "repeat"])
def test_main_rejects_non_positive_counts(field, capsys):
    args = argparse.Namespace(dtype="float32", threads=1, repeat=1, quick=True)
    setattr(args, field, 0)
    assert bench_cli.main(args) == 2
    assert "must be >= 1" in capsys.readouterr().err


def test_main_on_cuda_says_what_is_missing(capsys):
    try:
        import cupy  # noqa: F401
        import torch

        if torch.cuda.is_available():
            pytest.skip("a GPU is here: tests/test_gpu.py measures it")
    except ImportError:
        pass
    args = argparse.Namespace(dtype="float32", threads=1, repeat=1, quick=True,
                              device="cuda")
    assert bench_cli.main(args) == 1
    err = capsys.readouterr().err
    assert "lattice bench --device cuda:" in err
    assert "cupy" in err.lower() or "no CUDA device" in err


def test_alignment_table_format():
    from lattice.bench_cuda import format_alignment

    text = format_alignment({"shape": (64, 1000, 64, 200), "agreement": 0.5,
                             "ms": {"lattice": 2.0, "torchaudio": 30.0}})
    assert "64 utterances" in text and "50.00%" in text and "15.00x" in text


def test_optax_float32_runs_without_64_bit_mode_after_float64():
    """jax's 64-bit mode, switched on for a float64 row, is switched off again for
    the next float32 one (with it optax's float32 CTC runs about 2x slower)."""
    jax = pytest.importorskip("jax")
    pytest.importorskip("optax")
    from lattice.bench import _optax_runners, ctc_problem

    try:
        _optax_runners(*ctc_problem((2, 10, 4, 3), "float64"))
        assert jax.config.jax_enable_x64
        forward, _ = _optax_runners(*ctc_problem((2, 10, 4, 3), "float32"))
        assert not jax.config.jax_enable_x64
        forward()
    finally:
        jax.config.update("jax_enable_x64", False)
