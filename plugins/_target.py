"""Validation of the target sequence shared by the built-in builders."""

import numpy as np


def check_target(target, name="target"):
    """Return ``target`` as a 1-D int64 array of non-negative symbol ids."""
    arr = np.asarray(target)
    if arr.ndim != 1:
        raise ValueError(f"{name} must be a 1-D sequence of symbol ids, got shape {arr.shape}")
    if arr.size == 0:
        return arr.astype(np.int64)
    if arr.dtype == np.bool_ or not np.issubdtype(arr.dtype, np.integer):
        raise TypeError(f"{name} must hold integer symbol ids, got dtype {arr.dtype}")
    if arr.min() < 0:
        raise ValueError(f"{name} holds a negative symbol id ({int(arr.min())})")
    return arr.astype(np.int64)


def check_targets(targets):
    """Return ``targets`` as a list of 1-D int64 arrays, as :func:`check_target` would.

    Targets that already are 1-D int64 arrays (as ``lattice.torch`` passes them on
    every training step) are checked together in one pass; anything else, or a bad
    id, goes through :func:`check_target` one by one (which names the culprit).
    """
    targets = list(targets)
    if all(type(t) is np.ndarray and t.ndim == 1 and t.dtype == np.int64 for t in targets):
        if not targets or np.concatenate(targets).min(initial=0) >= 0:
            return targets
    return [check_target(t, name=f"targets[{b}]") for b, t in enumerate(targets)]


def check_int_option(name, value, minimum):
    """Validate an integer option that must be at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        raise TypeError(f"{name} must be an int, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be >= {minimum}, got {value}")
    return int(value)
