"""Backends: the code that computes, one per kind of array.

:mod:`lattice.problem` validates the inputs of :func:`lattice.forward`,
:func:`lattice.forward_backward`, :func:`lattice.viterbi` and the alignment
distribution (:func:`lattice.sample`, :func:`lattice.kbest`, :func:`lattice.entropy`,
:func:`lattice.token_posteriors`) into a :class:`~lattice.backends.base.Problem`,
which the front end hands to the backend that owns the emissions' array type: numpy arrays go to the ``cpu`` backend
(:mod:`lattice.backends.cpu`, the compiled kernels). A backend is a
:class:`~lattice.backends.base.Backend`; adding one (a GPU backend for CuPy arrays,
say) is a :func:`register_backend` call, and the engine does not change. Backends
are imported when first used, so registering costs nothing.
"""

from __future__ import annotations

import importlib
import threading

import numpy as np

from .base import (Backend, CTCProblem, Gradients, KBestPaths, Paths, Posteriors,
                   Problem, Samples)

__all__ = [
    "Backend",
    "CTCProblem",
    "Gradients",
    "KBestPaths",
    "Paths",
    "Posteriors",
    "Problem",
    "Samples",
    "available_backends",
    "backend_for",
    "get_backend",
    "register_backend",
    "unregister_backend",
]

# what a GPU user installs (said by the engine for a GPU array it cannot take, and by
# the cupy backend when CuPy is missing)
GPU_INSTALL_HINT = (
    "install CuPy for your CUDA version: pip install 'lattice[cupy]' (which "
    "installs cupy-cuda12x; on CUDA 13: pip install cupy-cuda13x)"
)

# name -> (the backend, or "module:attribute" to import when first used; the
# top-level packages of the array types it owns)
_REGISTRY = {"cpu": ("lattice.backends.cpu:CPUBackend", ("numpy",)),
             "cupy": ("lattice.backends.cupy:CuPyBackend", ("cupy",))}
_LOADED = {}
_LOCK = threading.Lock()
# the backend that owns numpy arrays (kept in step with _REGISTRY by register_backend)
_NUMPY_BACKEND = ["cpu"]


def register_backend(name, backend, array_modules):
    """Register a backend for the arrays of some packages.

    Parameters
    ----------
    name : str
        The backend's name (``get_backend(name)``); registering a name again
        replaces the backend.
    backend : Backend, type or str
        An instance, a class (instantiated when first used, with no arguments), or
        ``"module:attribute"`` naming either, imported when first used.
    array_modules : sequence of str
        The top-level packages whose array types the backend owns (``"cupy"`` for
        ``cupy.ndarray``): the engine hands it every problem whose emissions are
        such an array.

    Examples
    --------
    >>> import lattice
    >>> from lattice.backends import register_backend, get_backend
    >>> class Echo(lattice.backends.Backend):
    ...     name = "echo"
    >>> register_backend("echo", Echo, ["my_arrays"])
    >>> get_backend("echo").name
    'echo'
    >>> lattice.backends.unregister_backend("echo")
    """
    if not isinstance(name, str) or not name:
        raise TypeError(f"name must be a non-empty str, got {name!r}")
    if isinstance(array_modules, str) or not all(
        isinstance(m, str) and m for m in array_modules
    ):
        raise TypeError(
            f"array_modules must be a sequence of package names, got {array_modules!r}"
        )
    with _LOCK:
        _REGISTRY[name] = (backend, tuple(array_modules))
        _LOADED.pop(name, None)
        if "numpy" in array_modules:
            _NUMPY_BACKEND[0] = name


def unregister_backend(name):
    """Remove a backend registered with :func:`register_backend` (not ``cpu``).

    Examples
    --------
    >>> import lattice
    >>> lattice.backends.unregister_backend("cpu")
    Traceback (most recent call last):
    ...
    ValueError: the cpu backend cannot be removed
    """
    if name == "cpu":
        raise ValueError("the cpu backend cannot be removed")
    with _LOCK:
        if name not in _REGISTRY:
            raise KeyError(f"no backend named {name!r}; known: {sorted(_REGISTRY)}")
        del _REGISTRY[name]
        _LOADED.pop(name, None)
        if _NUMPY_BACKEND[0] == name:
            _NUMPY_BACKEND[0] = "cpu"


def available_backends():
    """The names of the registered backends.

    Examples
    --------
    >>> import lattice
    >>> "cpu" in lattice.backends.available_backends()
    True
    """
    return sorted(_REGISTRY)


def get_backend(name) -> Backend:
    """The backend registered as ``name`` (imported and made when first asked for).

    Examples
    --------
    >>> import lattice
    >>> lattice.backends.get_backend("cpu").name
    'cpu'
    """
    backend = _LOADED.get(name)
    if backend is not None:
        return backend
    with _LOCK:
        if name not in _REGISTRY:
            raise KeyError(f"no backend named {name!r}; known: {sorted(_REGISTRY)}")
        if name not in _LOADED:
            target = _REGISTRY[name][0]
            if isinstance(target, str):
                module, _, attribute = target.partition(":")
                target = getattr(importlib.import_module(module), attribute)
            if isinstance(target, type):
                target = target()
            if not isinstance(target, Backend):
                raise TypeError(
                    f"backend {name!r} is a {type(target).__name__}, not a "
                    "lattice.backends.Backend"
                )
            _LOADED[name] = target
        return _LOADED[name]


def backend_for(array):
    """The backend that owns ``array``'s type, or None if none does.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> lattice.backends.backend_for(np.zeros(3)).name
    'cpu'
    >>> lattice.backends.backend_for([1.0]) is None
    True
    """
    if type(array) is np.ndarray:  # the common case, without a lookup
        return get_backend(_NUMPY_BACKEND[0])
    package = type(array).__module__.partition(".")[0]
    for name, (_, modules) in list(_REGISTRY.items()):
        if package in modules:
            return get_backend(name)
    return None
