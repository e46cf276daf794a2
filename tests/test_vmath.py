"""The kernels' own exp and log (lattice/_vmath.h) against numpy."""

import numpy as np
import pytest

from lattice import _core


def _apply(x):
    exp_out, log_out = np.empty_like(x), np.empty_like(x)
    getattr(_core, f"vmath_{x.dtype.name}")(x, exp_out, log_out)
    return exp_out, log_out


def _ulp_error(got, want):
    """|got - want| in units of the spacing of ``want`` (exact values are exact)."""
    want_cast = want.astype(got.dtype)
    spacing = np.spacing(np.abs(want_cast))
    return np.abs(got.astype(np.float64) - want) / spacing


@pytest.mark.parametrize(
    "dtype, lo, hi, tiny, max_ulp",
    [(np.float32, -87.0, 88.0, 1.2e-38, 2.0), (np.float64, -708.0, 709.0, 2.3e-308, 2.0)],
)
def test_exp_and_log_are_accurate(dtype, lo, hi, tiny, max_ulp):
    rng = np.random.default_rng(0)
    x = np.concatenate([rng.uniform(lo, hi, 200_000), rng.uniform(-1, 1, 100_000),
                        rng.uniform(-1e-6, 1e-6, 10_000)]).astype(dtype)
    exp_out, _ = _apply(x)
    want = np.exp(x.astype(np.longdouble)).astype(np.float64)
    normal = want > tiny
    assert _ulp_error(exp_out[normal], want[normal]).max() <= max_ulp
    y = np.exp(rng.uniform(np.log(tiny), np.log(np.finfo(dtype).max) * 0.99, 300_000))
    y = np.concatenate([y, 1 + rng.uniform(-1e-3, 1e-3, 10_000)]).astype(dtype)
    _, log_out = _apply(y)
    want = np.log(y.astype(np.longdouble)).astype(np.float64)
    nonzero = want != 0
    assert _ulp_error(log_out[nonzero], want[nonzero]).max() <= max_ulp
    assert np.all(log_out[~nonzero] == 0)


@pytest.mark.parametrize("dtype", [np.float32, np.float64])
def test_special_values(dtype):
    inf, nan = np.inf, np.nan
    x = np.array([-inf, -1e6, 0.0, 1.0, 1e6, inf, nan, -0.0, -1.0], dtype=dtype)
    exp_out, log_out = _apply(x)
    assert exp_out[0] == 0 and exp_out[1] == 0  # no denormals, no NaN from -inf
    assert exp_out[2] == 1 and exp_out[7] == 1  # exp(0) is exactly 1
    assert exp_out[4] == inf and exp_out[5] == inf and np.isnan(exp_out[6])
    assert log_out[2] == -inf and log_out[7] == -inf  # log(0) = -inf
    assert log_out[3] == 0 and log_out[5] == inf
    assert np.isnan(log_out[6]) and np.isnan(log_out[8]) and np.isnan(log_out[0])
