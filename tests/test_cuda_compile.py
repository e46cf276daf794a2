"""The GPU backend's CUDA source compiles: with nvcc (for sm_90 and as PTX) without
warnings and without spilling to local memory, where nvcc is on the PATH (here and
in CI); and with NVRTC, the compiler CuPy's RawModule calls at run time (no headers,
no host code), where its library is installed (``pip install
nvidia-cuda-nvrtc-cu12``, which CI does). Neither needs a GPU."""

import ctypes
import ctypes.util
import glob
import importlib.util
import os
import re
import shutil
import subprocess

import pytest

from lattice.backends.cuda_source import DTYPES, KERNELS, cuda_source

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.cuda_emulation
needs_nvcc = pytest.mark.skipif(NVCC is None, reason="nvcc is not on the PATH")


def _nvrtc_library():
    """libnvrtc from the nvidia-cuda-nvrtc wheel, or the system's, or None."""
    spec = importlib.util.find_spec("nvidia")
    for root in (spec.submodule_search_locations if spec else []):
        found = sorted(glob.glob(os.path.join(root, "cuda_nvrtc", "lib", "libnvrtc.so*")))
        found = [f for f in found if ".alt." not in f and "builtins" not in f]
        if found:
            return found[0]
    return ctypes.util.find_library("nvrtc")


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


@needs_nvcc
def test_compiles_for_sm_90_without_spills(source, tmp_path):
    report = nvcc("-arch=sm_90", "--resource-usage", "-c", str(source),
                  "-o", str(tmp_path / "lattice.o"))
    frames = re.findall(r"(\d+) bytes stack frame, (\d+) bytes spill stores", report)
    assert len(frames) == len(KERNELS) * len(DTYPES)
    assert all(stack == "0" and spills == "0" for stack, spills in frames), report


@needs_nvcc
def test_compiles_to_ptx_with_every_entry_point(source, tmp_path):
    ptx = tmp_path / "lattice.ptx"
    nvcc("-arch=compute_90", "--ptx", str(source), "-o", str(ptx))
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx.read_text()))
    assert entries == {f"lt_{k}_{s}" for k in KERNELS for s in DTYPES}


@pytest.mark.skipif(_nvrtc_library() is None, reason="NVRTC is not installed")
def test_nvrtc_compiles_the_source_as_cupy_does():
    lib = ctypes.CDLL(_nvrtc_library())
    program = ctypes.c_void_p()
    assert lib.nvrtcCreateProgram(ctypes.byref(program), cuda_source().encode(),
                                  b"lattice.cu", 0, None, None) == 0
    options = [b"-std=c++17", b"--gpu-architecture=compute_90"]  # CuPyRuntime's, and
    status = lib.nvrtcCompileProgram(program, len(options),  # an architecture
                                     (ctypes.c_char_p * len(options))(*options))
    size = ctypes.c_size_t()
    lib.nvrtcGetProgramLogSize(program, ctypes.byref(size))
    log = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetProgramLog(program, log)
    assert status == 0, log.value.decode()
    assert not log.value.decode().strip(), log.value.decode()  # no warnings either
    lib.nvrtcGetPTXSize(program, ctypes.byref(size))
    ptx = ctypes.create_string_buffer(size.value)
    lib.nvrtcGetPTX(program, ptx)
    entries = set(re.findall(r"\.entry\s+(\w+)\(", ptx.value.decode()))
    assert entries == {f"lt_{k}_{s}" for k in KERNELS for s in DTYPES}
    lib.nvrtcDestroyProgram(ctypes.byref(program))
