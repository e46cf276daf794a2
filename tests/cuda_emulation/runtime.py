"""The GPU backend's kernels run on the CPU: a runtime for
:class:`lattice.backends.cupy.CuPyBackend` whose arrays are numpy arrays and whose
launches call the kernels compiled for the host with ``shim.h``.

The source compiled is :func:`lattice.backends.cuda_source.cuda_source`, the text
CuPy compiles on a GPU, after the shim; every launch is typed by the same table
(:func:`lattice.backends.cuda_source.kernel_arguments`). It lives with the tests,
outside the installed package.
"""

from __future__ import annotations

import ctypes
import hashlib
import os
import shutil
import subprocess
import tempfile
import threading
from pathlib import Path

import numpy as np

from lattice.backends.cuda_source import DTYPES, KERNELS, cuda_source

__all__ = ["EmulatedRuntime", "compiler", "emulation_source"]

_SHIM = Path(__file__).with_name("shim.h")
_LOCK = threading.Lock()
_LIBRARY = {}


def compiler():
    """The host C++ compiler (``$CXX``, else ``g++`` or ``c++``), or None."""
    for name in (os.environ.get("CXX"), "g++", "c++"):
        if name and shutil.which(name):
            return shutil.which(name)
    return None


def emulation_source():
    """The shim, the GPU source, and one C entry point per kernel that launches it."""
    entries = [
        f'extern "C" int lt_emulate_lt_{kernel}_{suffix}(unsigned grid, '
        f"unsigned block, void** params) {{ return lt_emu_launch(lt_{kernel}_{suffix}, "
        "grid, block, params); }"
        for suffix in DTYPES for kernel in KERNELS
    ]
    shim = _SHIM.read_text().replace("#pragma once\n", "")
    return "\n".join([shim, cuda_source(), *entries, ""])


def _library():
    """The compiled emulation (built once per source text, kept in the temp dir)."""
    source = emulation_source()
    digest = hashlib.sha256(source.encode()).hexdigest()[:16]
    with _LOCK:
        if digest in _LIBRARY:
            return _LIBRARY[digest]
        cxx = compiler()
        if cxx is None:
            raise RuntimeError("no C++ compiler (g++) to build the CUDA emulation")
        out = Path(tempfile.gettempdir()) / f"lattice-cuda-emulation-{digest}.so"
        if not out.exists():
            with tempfile.TemporaryDirectory() as tmp:
                src = Path(tmp) / "emulation.cpp"
                src.write_text(source)
                lib = Path(tmp) / out.name
                done = subprocess.run(
                    [cxx, "-std=c++20", "-O1", "-g", "-fPIC", "-shared", "-pthread",
                     "-Wall", "-Werror", "-Wno-unused-function", "-o", str(lib),
                     str(src)],
                    capture_output=True, text=True,
                )
                if done.returncode:
                    raise RuntimeError(
                        f"the CUDA emulation does not compile:\n{done.stderr[-4000:]}"
                    )
                shutil.move(lib, out)
        _LIBRARY[digest] = ctypes.CDLL(str(out))
        return _LIBRARY[digest]


_SCALARS = {"i32": ctypes.c_int32, "i64": ctypes.c_int64}


class EmulatedRuntime:
    """Arrays in host memory (numpy), kernels launched through the host emulation.

    Parameters
    ----------
    threads : int
        Threads per block (default 3: more than one, and not a divisor of the
        usual state counts, so strided loops end mid-stride).
    """

    name = "cuda-emulation"
    xp = np
    device_key = "cuda-emulation"

    def __init__(self, threads=3):
        self.block = int(threads)
        self.launches = []  # (entry, grid, block) of every launch, for the tests
        _library()  # build now: a compile error shows up as the fixture's

    def threads(self, width):
        return self.block

    def asarray(self, array, dtype=None):
        return np.ascontiguousarray(array, dtype=dtype)

    def to_numpy(self, array):
        return np.asarray(array)

    def launch(self, entry, grid, block, arguments):
        lib = _library()
        storage = []
        for name, kind, value in arguments:
            if kind.endswith("*"):
                if not value.flags.writeable and not kind.startswith("c"):
                    raise ValueError(f"{entry}: {name} is read-only but written")
                storage.append(ctypes.c_void_p(value.ctypes.data))
            else:
                storage.append(_SCALARS[kind](int(value)))
        params = (ctypes.c_void_p * len(storage))(
            *[ctypes.addressof(v) for v in storage])
        function = getattr(lib, f"lt_emulate_{entry}")
        function.restype = ctypes.c_int
        function.argtypes = [ctypes.c_uint, ctypes.c_uint, ctypes.c_void_p]
        self.launches.append((entry, grid, block))
        if function(grid, block, params):
            raise RuntimeError(
                f"{entry}: the threads of a block met different numbers of "
                "__syncthreads (undefined behaviour on a GPU)"
            )
