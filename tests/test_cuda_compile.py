"""The GPU backend's CUDA source compiles with nvcc (for sm_90 and as PTX), without
warnings and without spilling to local memory: the check that runs wherever nvcc
is on the PATH (here and in CI), with or without a GPU. On a GPU, CuPy compiles
the same text with NVRTC (tests/test_gpu.py)."""

import re
import shutil
import subprocess

import pytest

from lattice.backends.cuda_source import DTYPES, KERNELS, cuda_source

NVCC = shutil.which("nvcc")
pytestmark = [pytest.mark.cuda_emulation,
              pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")]


@pytest.fixture(scope="module")
def source(tmp_path_factory):
    path = tmp_path_factory.mktemp("cuda") / "lattice.cu"
    path.write_text(cuda_source())
    return path


def nvcc(*args):
    done = subprocess.run([NVCC, "-std=c++17", "--Werror", "all-warnings", *args],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr[-4000:]
    return done.stdout + done.stderr


def test_compiles_for_sm_90_without_spills(source, tmp_path):
    report = nvcc("-arch=sm_90", "--resource-usage", "-c", str(source),
                  "-o", str(tmp_path / "lattice.o"))
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores", report)
    assert len(frames) == len(KERNELS) * len(DTYPES)
    assert all(stack == "0" and spills == "0" for stack, spills in frames), report


def test_compiles_to_ptx_with_every_entry_point(source, tmp_path):
    ptx = tmp_path / "lattice.ptx"
    nvcc("-arch=compute_90", "--ptx", str(source), "-o", str(ptx))
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx.read_text()))
    assert entries == {f"lt_{k}_{s}" for k in KERNELS for s in DTYPES}
