"""Build the Cython kernels of lattice.

Metadata lives in pyproject.toml; this file only knows how to build the extension:

1. render the Tempita templates (``*.pyx.tp``) into ``.pyx`` files, one kernel per
   semiring and dtype;
2. detect whether the C compiler supports OpenMP by compiling a tiny program; if it
   does, build with ``-fopenmp``, otherwise build a serial extension and say so loudly;
3. compile with ``-O3`` (never ``-ffast-math``: the kernels rely on IEEE ``-inf``),
   ``-fno-trapping-math`` (the kernels never test floating-point exception flags;
   without it gcc will not turn the selects of the row functions into vector blends)
   ``-ffp-contract=off`` (no fused multiply-add, so the vectorised and the scalar
   code round identically and both kernel paths give the same bits) and
   ``-fno-wrapv``: CPython's own CFLAGS carry ``-fwrapv``, which setuptools passes
   on to every extension; with wrapping ``int`` indices gcc re-extends each index
   to 64 bits inside the vectorised loops, and the banded row functions run about
   30% slower. Nothing here relies on signed overflow (meson-built Cython projects
   such as numpy and scipy never get ``-fwrapv`` either).

Set ``LATTICE_DISABLE_OPENMP=1`` to force the serial build.
"""

import os
import shutil
import subprocess
import sys
import sysconfig
import tempfile
import textwrap
from pathlib import Path

from setuptools import Extension, setup

HERE = Path(__file__).resolve().parent
TEMPLATES = ["lattice/_core.pyx.tp", "lattice/_dist.pxi.tp", "lattice/_prob.pxi.tp",
             "lattice/_graph_prob.pxi.tp", "lattice/_ctc.pxi.tp", "lattice/_rows.h.tp"]

OPENMP_PROBE = textwrap.dedent(
    """
    #include <omp.h>
    #include <stdio.h>
    int main(void) {
        int n = 0;
        #pragma omp parallel reduction(+:n)
        n += 1;
        printf("%d", n > 0 && omp_get_max_threads() > 0);
        return 0;
    }
    """
)


def layout_constants():
    """The kernels' layout constants (lattice/_layout.py), which the Python side
    imports too: loaded by path, as the package cannot be imported before it is
    built."""
    import runpy

    layout = runpy.run_path(str(HERE / "lattice" / "_layout.py"))
    return {name: layout[name] for name in layout["TEMPLATE_NAMES"]}


def render_templates():
    from Cython import Tempita

    constants = layout_constants()
    for template in TEMPLATES:
        source = HERE / template
        target = source.with_suffix("")  # drop ".tp"
        text = Tempita.sub(source.read_text(), name=str(source), **constants)
        if not target.exists() or target.read_text() != text:
            target.write_text(text)


def _compiler_command():
    cc = os.environ.get("CC") or sysconfig.get_config_var("CC") or "cc"
    return cc.split()


def openmp_flags():
    """Return (compile_args, link_args) for OpenMP, or None if the compiler lacks it."""
    if os.environ.get("LATTICE_DISABLE_OPENMP", "0") not in ("", "0"):
        return None
    flags = ["-fopenmp"]
    with tempfile.TemporaryDirectory() as tmp:
        src = Path(tmp) / "probe.c"
        exe = Path(tmp) / "probe"
        src.write_text(OPENMP_PROBE)
        try:
            subprocess.run(
                [*_compiler_command(), *flags, str(src), "-o", str(exe)],
                check=True,
                capture_output=True,
            )
            out = subprocess.run([str(exe)], check=True, capture_output=True, text=True)
        except (OSError, subprocess.CalledProcessError):
            return None
        if out.stdout.strip() != "1":
            return None
    return flags, flags


def extensions():
    from Cython.Build import cythonize

    render_templates()
    compile_args = ["-O3", "-fno-trapping-math", "-ffp-contract=off", "-fno-wrapv"]
    link_args = []
    omp = openmp_flags()
    if omp is None:
        banner = "=" * 72
        print(
            f"\n{banner}\n"
            "lattice: the C compiler does not support OpenMP (or it was disabled).\n"
            "Building the SERIAL kernels: results are identical, but only one core\n"
            "is used. Install a compiler with OpenMP support (gcc, or clang with\n"
            "libomp) and reinstall to get the batch-parallel kernels.\n"
            f"{banner}\n",
            file=sys.stderr,
        )
    else:
        compile_args += omp[0]
        link_args += omp[1]
    ext = Extension(
        "lattice._core",
        ["lattice/_core.pyx"],
        include_dirs=["lattice"],
        depends=["lattice/_vmath.h", "lattice/_rows.h", "lattice/_dist.pxi",
                 "lattice/_prob.pxi", "lattice/_graph_prob.pxi",
                 "lattice/_ctc.pxi", "lattice/_layout.py"],
        extra_compile_args=compile_args,
        extra_link_args=link_args,
    )
    # the compiled half of the ctc batch builder: plain loops, no OpenMP needed
    ctc_fill = Extension(
        "lattice_plugins._ctc_fill",
        ["plugins/_ctc_fill.pyx"],
        extra_compile_args=["-O2", "-fno-wrapv"],
    )
    return cythonize(
        [ext, ctc_fill],
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
    )


if shutil.which(_compiler_command()[0]) is None:
    print("lattice: no C compiler found; the build will fail.", file=sys.stderr)

setup(ext_modules=extensions())
