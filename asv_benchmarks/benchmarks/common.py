"""Shared inputs for the lattice benchmarks: the same problems for every implementation.

The shapes are those of the performance goals: CTC over (B, T, C, S) with S the
target length (the CTC graph has 2S + 1 states). Every input is seeded, so lattice
and torch (and optax, when installed) see identical numbers.
"""

import os

import numpy as np

import lattice

# LATTICE_ASV_SMOKE=1 shrinks every problem so that CI can run each benchmark once
# in a few seconds (it checks the benchmarks work, not how fast they are)
SMOKE = os.environ.get("LATTICE_ASV_SMOKE", "") not in ("", "0")

# (B, T, C, S)
SHAPES = {
    "B16-T200-C32-S40": (16, 200, 32, 40),
    "B32-T500-C64-S100": (32, 500, 64, 100),
    "B32-T1000-C64-S200": (32, 1000, 64, 200),
    "B8-T2000-C512-S400": (8, 2000, 512, 400),
}
LARGE = ["B32-T1000-C64-S200", "B8-T2000-C512-S400"]
SCALING_FRAMES = [1000, 4000, 16000]
DTYPES = ["float32", "float64"]
THREADS = [1, 2]
if SMOKE:
    SHAPES = {"B4-T40-C8-S8": (4, 40, 8, 8)}
    LARGE = list(SHAPES)
    SCALING_FRAMES = [100, 400]
    DTYPES = ["float32"]
    THREADS = [2]
# LATTICE_ASV_GATE=1 keeps what the regression gate compares (gate.py): the headline
# shape, float32, two threads, lattice only (torch and optax do not change between
# two commits of lattice)
GATE = os.environ.get("LATTICE_ASV_GATE", "") not in ("", "0")
IMPLS = ["lattice", "torch", "optax"]
if GATE and not SMOKE:
    SHAPES = {"B32-T1000-C64-S200": SHAPES["B32-T1000-C64-S200"]}
    LARGE = list(SHAPES)
    SCALING_FRAMES = [4000]
    DTYPES = ["float32"]
    THREADS = [2]
    IMPLS = ["lattice"]
# LATTICE_ASV_SHAPES=B32-T1000-C64-S200[,...] measures only the named shapes (a full
# run of every shape, dtype, thread count and library takes a long while)
_ONLY = [name for name in os.environ.get("LATTICE_ASV_SHAPES", "").split(",") if name]
if _ONLY and not SMOKE:
    unknown = sorted(set(_ONLY) - set(SHAPES))
    if unknown:
        raise ValueError(f"LATTICE_ASV_SHAPES: unknown shapes {unknown}; known: {list(SHAPES)}")
    SHAPES = {name: SHAPES[name] for name in _ONLY}
    LARGE = [name for name in LARGE if name in SHAPES] or list(SHAPES)


def ctc_problem(shape, dtype, seed=0):
    """log-probabilities (T, B, C), padded targets (B, S) and the lengths."""
    B, T, C, S = SHAPES[shape]
    rng = np.random.default_rng(seed)
    logits = rng.standard_normal((T, B, C))
    log_probs = (logits - np.logaddexp.reduce(logits, axis=-1, keepdims=True)).astype(dtype)
    targets = rng.integers(1, C, size=(B, S))
    input_lengths = np.full(B, T)
    target_lengths = np.full(B, S)
    return log_probs, targets, input_lengths, target_lengths


def ctc_graphs(targets):
    return lattice.batch([lattice.build("ctc", t) for t in targets])


def engine_problem(shape, graph, dtype):
    """(emissions (B, T, C), graphs) of the engine benchmarks for a CTC shape:
    ``graph`` is "ctc" (or "ctc-general-path", the same graphs), "segmentation"
    (as many states as the CTC graph) or "random-general" (random_graph_like of
    as many states, in-degree 3)."""
    log_probs, targets, _, _ = ctc_problem(shape, dtype)
    emissions = np.ascontiguousarray(np.transpose(log_probs, (1, 0, 2)))
    if graph.startswith("ctc"):
        return emissions, ctc_graphs(targets)
    if graph == "segmentation":
        return emissions, lattice.batch([lattice.build("segmentation", np.repeat(t, 2))
                                         for t in targets])
    rng = np.random.default_rng(1)
    S = 2 * targets.shape[1] + 1
    return emissions, lattice.batch([random_graph_like(S, log_probs.shape[2], 3, rng)
                                     for _ in range(targets.shape[0])])


def banded_path(enabled):
    """A context in which the engine uses (or not) its banded fast path, whatever
    the version of lattice being measured: a cpu backend option since the backend
    split, an engine global before it (asv runs this suite against old commits)."""
    import contextlib

    backends = getattr(lattice, "backends", None)
    if backends is not None:
        return backends.get_backend("cpu").options(banded=enabled)
    engine = lattice.engine

    @contextlib.contextmanager
    def switched():
        saved = getattr(engine, "_USE_BANDED", True)
        engine._USE_BANDED = enabled
        try:
            yield
        finally:
            engine._USE_BANDED = saved

    return switched()


def random_graph_like(num_states, num_classes, in_degree, rng):
    """A general (non-banded) graph of the given size through which complete paths
    exist: every state has a self-loop, an arc from the previous state and
    ``in_degree - 2`` arcs from random states anywhere (backward jumps included), so
    in-degrees are ``in_degree`` and out-degrees vary around it."""
    states = np.arange(num_states)
    src = [states, states[:-1]]
    dst = [states, states[1:]]
    for _ in range(in_degree - 2):
        src.append(rng.integers(0, num_states, num_states))
        dst.append(states)
    src, dst = np.concatenate(src), np.concatenate(dst)
    start = np.full(num_states, -np.inf)
    start[:2] = 0.0
    final = np.full(num_states, -np.inf)
    final[-2:] = 0.0
    labels = rng.integers(0, num_classes, num_states)
    return lattice.Graph(labels, src, dst, rng.normal(size=src.size) * 0.1, start, final)


def set_threads(threads):
    lattice.set_num_threads(threads)
    try:
        import torch
    except ImportError:
        return
    torch.set_num_threads(threads)
