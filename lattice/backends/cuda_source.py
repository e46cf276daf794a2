"""The CUDA source of the GPU backend and the signature of every kernel in it.

The kernel bodies are templates in ``lattice/backends/cuda/kernels.cuh`` (the cell
maths in ``cells.cuh``); :data:`KERNELS` names each kernel's template, the layout
it walks the graph in (:data:`LAYOUTS`: CSR for any graph, the band of CTC,
segmentation and HMM chains) and its parameters, and :func:`cuda_source` turns both
into one source text with an ``extern "C"`` entry point per kernel and dtype
(``lt_<kernel>_<f32|f64>``, e.g. ``lt_forward_log_band_f32``), the names CuPy's
``RawModule`` looks up. Every launch is typed by the same table
(:func:`kernel_arguments`), so an argument of the wrong dtype or an integer that
does not fit its C type is refused before it reaches a kernel, on the GPU as in the
emulation that runs these kernels on the CPU (``tests/cuda_emulation``). Nothing
here imports CuPy.
"""

from __future__ import annotations

import numbers
from importlib import resources

import numpy as np

from ..checks import INT32_MAX

__all__ = ["DTYPES", "KERNELS", "LAYOUTS", "cuda_source", "entry_name",
           "kernel_arguments"]

# suffix -> (C type of the inputs and outputs F, C type of the log recursions A)
DTYPES = {"f32": ("float", "double"), "f64": ("double", "double")}
_SUFFIX = {np.dtype(np.float32): "f32", np.dtype(np.float64): "f64"}
_C_TYPES = {"double": np.dtype(np.float64), "float": np.dtype(np.float32)}

# Parameter kinds: a pointer ("*", "c" in front for const) to F, A, lt_i32 or lt_i64,
# or an lt_i32 / lt_i64 value.
_EMISSIONS = [("em", "cF*"), ("e_bs", "i64"), ("e_ts", "i64")]
_EXAMPLES = [("lengths", "ci64*"), ("graph_index", "ci64*"), ("weight_index", "ci64*"),
             ("ls", "i32")]
_WEIGHTS = [("weight", "cF*"), ("w_rs", "i64"), ("w_ts", "i64"), ("start", "cF*"),
            ("final", "cF*")]
_GRADIENTS = [("g_em", "F*"), ("g_bs", "i64"), ("g_ts", "i64")]
_ARC_GRADIENTS = [("ga_bs", "i64"), ("ga_ts", "i64"), ("g_start", "F*"),
                  ("g_final", "F*")]
_PATHS = [("path", "i32*"), ("path_labels", "i32*"), ("path_arcs", "i32*"),
          ("p_bs", "i64")]

# layout -> (the macro of kernels.cuh that builds it, its own parameters)
LAYOUTS = {
    "csr": ("LT_CSR_LAYOUT",
            [("la", "i32"), ("num_states", "ci32*"), ("labels", "ci32*"),
             ("src", "ci32*"), ("dst", "ci32*"), ("in_ptr", "ci32*"),
             ("in_arc", "ci32*"), ("out_ptr", "ci32*"), ("out_arc", "ci32*")]),
    "band": ("LT_BAND_LAYOUT",
             [("num_states", "ci32*"), ("labels", "ci32*"), ("D", "i32"),
              ("band_arc", "ci32*")]),
}

# kernel -> (the template it instantiates, {F} and {A} standing for the C types of
# DTYPES; the parameters of the template after the layout; whether it takes one)
_BODIES = {
    "forward_log": ("lt_forward<{F}, {A}, true>",
                    _EMISSIONS + _EXAMPLES + _WEIGHTS
                    + [("ring", "A*"), ("scores", "F*")], True),
    "forward_max": ("lt_forward<{F}, {F}, false>",
                    _EMISSIONS + _EXAMPLES + _WEIGHTS
                    + [("ring", "F*"), ("scores", "F*")], True),
    "forward_backward": (
        "lt_forward_backward<{F}, {A}>",
        _EMISSIONS + _EXAMPLES
        + [("num_classes", "ci32*"), ("classes", "ci32*"), ("class_ptr", "ci32*"),
           ("class_states", "ci32*")]
        + _WEIGHTS
        + [("alpha", "A*"), ("a_bs", "i64"), ("checkpoint", "i64"), ("beta", "A*"),
           ("post", "A*"), ("scores", "F*")]
        + _GRADIENTS + [("g_arc", "A*")] + _ARC_GRADIENTS, True),
    "viterbi": ("lt_viterbi<{F}>",
                _EMISSIONS + _EXAMPLES + [("tokens", "ci32*")] + _WEIGHTS
                + [("ring", "F*"), ("backpointers", "i32*"), ("a_bs", "i64")] + _PATHS
                + [("seg_token", "i32*"), ("seg_start", "i32*"), ("seg_end", "i32*"),
                   ("num_segments", "i32*"), ("scores", "F*")], True),
    "best_path_gradients": ("lt_best_path_gradients<{F}>",
                            [("B", "i32"), ("lengths", "ci64*"), ("path", "ci32*"),
                             ("path_labels", "ci32*"), ("path_arcs", "ci32*"),
                             ("p_bs", "i64"), ("ls", "i32")] + _GRADIENTS
                            + [("g_arc", "F*")] + _ARC_GRADIENTS, False),
}  # fmt: skip

# entry kernel name -> (the call of its body, {F} and {A} standing for the C types:
# the template, the layout macro, the template's parameters; every parameter of
# the entry point in order: the template's, then the layout's)
KERNELS = {}
for _name, (_template, _params, _layered) in _BODIES.items():
    _names = [n for n, _ in _params]
    _layouts = LAYOUTS.items() if _layered else [(None, (None, []))]
    for _layout, (_macro, _layout_params) in _layouts:
        _args = ", ".join(([_macro] if _macro else []) + _names)
        KERNELS[f"{_name}_{_layout}" if _layout else _name] = (
            f"{_template}({_args})",
            _params + [p for p in _layout_params if p[0] not in _names])


def entry_name(kernel, dtype):
    """The entry point of ``kernel`` for emissions of ``dtype``.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.backends.cuda_source import entry_name
    >>> entry_name("forward_log_csr", np.float32)
    'lt_forward_log_csr_f32'
    """
    if kernel not in KERNELS:
        raise KeyError(f"no GPU kernel named {kernel!r}; known: {sorted(KERNELS)}")
    return f"lt_{kernel}_{_SUFFIX[np.dtype(dtype)]}"


def _c_type(kind, F, A):
    const = kind.startswith("c")
    base = kind[1:] if const else kind
    pointer = base.endswith("*")
    base = base.rstrip("*")
    name = {"F": F, "A": A, "i32": "lt_i32", "i64": "lt_i64"}[base]
    return ("const " if const else "") + name + ("*" if pointer else "")


def _entry_points():
    lines = []
    for suffix, (F, A) in DTYPES.items():
        for kernel, (call, params) in KERNELS.items():
            decl = ", ".join(f"{_c_type(kind, F, A)} {name}" for name, kind in params)
            lines.append(f'extern "C" __global__ void lt_{kernel}_{suffix}({decl}) '
                         f"{{ {call.format(F=F, A=A)}; }}")
    return "\n".join(lines)


def _header(name):
    text = resources.files("lattice.backends").joinpath("cuda", name).read_text()
    return "\n".join(line for line in text.splitlines()
                     if line.strip() not in ('#pragma once', '#include "cells.cuh"'))


def cuda_source():
    """The whole CUDA source: the cell maths, the kernel templates and one
    ``extern "C"`` entry point per kernel and dtype, in one text (NVRTC compiles it
    without include paths, and CuPy's cache keys on the text alone).

    Examples
    --------
    >>> from lattice.backends.cuda_source import cuda_source
    >>> source = cuda_source()
    >>> 'extern "C" __global__ void lt_viterbi_band_f64(' in source
    True
    """
    return "\n".join([_header("cells.cuh"), _header("kernels.cuh"), _entry_points(), ""])


def kernel_arguments(kernel, dtype, values):
    """The arguments of one launch of ``kernel``, in order and typed.

    Parameters
    ----------
    kernel : str
        A key of :data:`KERNELS`.
    dtype : numpy dtype
        The emissions' dtype (float32 or float64): the ``F`` of the template.
    values : mapping
        Every parameter by name: arrays for pointers (checked for their dtype),
        integers for values (checked to fit, and made ``numpy.int32`` /
        ``numpy.int64``).

    Returns
    -------
    list of (name, kind, value)

    Raises
    ------
    ValueError
        For a missing or unknown parameter, an array of another dtype, or an
        integer out of its C type's range.

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.backends.cuda_source import kernel_arguments
    >>> args = kernel_arguments("best_path_gradients", np.float32, dict(
    ...     B=2, lengths=np.zeros(2, np.int64), path=np.zeros(1, np.int32),
    ...     path_labels=np.zeros(1, np.int32), path_arcs=np.zeros(1, np.int32),
    ...     p_bs=1, ls=1, g_em=np.zeros(1, np.float32), g_bs=1, g_ts=1,
    ...     g_arc=np.zeros(1, np.float32), ga_bs=1, ga_ts=0,
    ...     g_start=np.zeros(1, np.float32), g_final=np.zeros(1, np.float32)))
    >>> [(name, type(v).__name__) for name, _, v in args[:2]]
    [('B', 'int32'), ('lengths', 'ndarray')]
    """
    _, params = KERNELS[kernel]
    F, A = DTYPES[_SUFFIX[np.dtype(dtype)]]
    unknown = set(values) - {name for name, _ in params}
    if unknown:
        raise ValueError(f"kernel {kernel!r} has no parameter(s) {sorted(unknown)}")
    out = []
    for name, kind in params:
        if name not in values:
            raise ValueError(f"kernel {kernel!r}: parameter {name!r} is missing")
        value = values[name]
        base = kind.lstrip("c").rstrip("*")
        if kind.endswith("*"):
            want = {"F": _C_TYPES[F], "A": _C_TYPES[A], "i32": np.dtype(np.int32),
                    "i64": np.dtype(np.int64)}[base]
            if getattr(value, "dtype", None) != want:
                raise ValueError(
                    f"kernel {kernel!r}: {name} must be an array of {want}, got "
                    f"{getattr(value, 'dtype', type(value).__name__)}"
                )
        else:
            if not isinstance(value, numbers.Integral):
                raise ValueError(f"kernel {kernel!r}: {name} must be an integer")
            limit = INT32_MAX if base == "i32" else np.iinfo(np.int64).max
            if not -limit - 1 <= int(value) <= limit:
                raise ValueError(
                    f"kernel {kernel!r}: {name} = {int(value)} does not fit {base}"
                )
            value = np.int32(value) if base == "i32" else np.int64(value)
        out.append((name, kind, value))
    return out
