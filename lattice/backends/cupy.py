"""The GPU backend: lattice's kernels in CUDA, on CuPy arrays (experimental).

:class:`CuPyBackend` computes :func:`lattice.forward` (log and max),
:func:`lattice.forward_backward` and :func:`lattice.viterbi` for emissions that are
``cupy.ndarray``: the results are CuPy arrays on the emissions' device. The kernels
(``lattice/backends/cuda/kernels.cuh``, entry points and signatures in
:mod:`lattice.backends.cuda_source`) run one block per example, over the band of a
banded batch (CTC, segmentation, HMM chains: ``GraphBatch.band``) and over the CSR
indexes of any other (or of time-dependent arc weights); both layouts give the same
results. float32 inputs are recursed in float64, which keeps gradients exact on
long inputs.

The backend talks to the device through a *runtime*: :class:`CuPyRuntime` compiles
the source with CuPy's ``RawModule`` (NVRTC) once per device and launches on CuPy's
current stream. The test suite swaps in a runtime that runs the same kernels on the
CPU (``tests/cuda_emulation``), which is how this module and its kernels are tested
on machines without a GPU.

Design:

* A batch's graph arrays go to the device once and stay with the batch
  (:meth:`lattice.GraphBatch.derived`, one entry per device), with the per-graph
  map of classes to states that makes the emission gradient a deterministic sum.
  Batches made from a list of graphs on every call are uploaded on every call:
  pass a ``GraphBatch`` to keep them there.
* Per call, only lengths, the example-to-row indexes and weight overrides are
  copied to the device; the graphs' own weights are cached like the graphs.
* Memory: forward-backward keeps its alpha rows in float64, 8 T S bytes per
  example, or, past the memory budget of :mod:`lattice.memory` (the tables of
  the whole batch) or when ``checkpoint`` asks, a row every k frames and one block
  recomputed at a time (the same bits). Viterbi keeps int32 backpointers, 4 T S
  bytes per example, whatever ``checkpoint`` says.
* The alignment distribution (:func:`lattice.sample`, :func:`lattice.kbest`,
  :func:`lattice.entropy`, :func:`lattice.token_posteriors`) has no GPU kernels
  yet: it runs on the CPU backend, the emissions copied to the host and the results
  back to the device, so every function of lattice takes CuPy arrays (at the
  CPU's speed for these).
"""

from __future__ import annotations

import numpy as np

from ..checks import INT32_MAX
from ..memory import resolve_checkpoint
from . import GPU_INSTALL_HINT, get_backend
from .base import Backend, Gradients, Paths
from .cuda_source import cuda_source, entry_name, kernel_arguments

__all__ = ["CuPyBackend", "CuPyRuntime", "class_map"]



class CuPyRuntime:
    """CuPy arrays, kernels compiled by NVRTC and launched on CuPy's current stream.

    Raises
    ------
    ImportError
        If CuPy is not installed (the message says which package to install).
    """

    name = "cupy"

    def __init__(self):
        try:
            import cupy
        except ImportError as error:
            raise ImportError(f"the GPU backend needs CuPy; {GPU_INSTALL_HINT}") from error
        self.xp = cupy
        self._modules = {}

    @property
    def device_key(self):
        return ("cupy", self.xp.cuda.runtime.getDevice())

    def threads(self, width):
        """Threads per block for rows of ``width`` states: whole warps, 32 to 512."""
        return int(min(512, max(32, -(-int(width) // 32) * 32)))

    def asarray(self, array, dtype=None):
        return self.xp.ascontiguousarray(self.xp.asarray(array, dtype=dtype))

    def to_numpy(self, array):
        return self.xp.asnumpy(array)

    def _module(self):
        device = self.xp.cuda.runtime.getDevice()
        module = self._modules.get(device)
        if module is None:
            module = self._modules[device] = self.xp.RawModule(
                code=cuda_source(), options=("-std=c++17",))
        return module

    def launch(self, entry, grid, block, arguments):
        function = self._module().get_function(entry)
        function((grid,), (block,), tuple(value for _, _, value in arguments))


def _at_least_one(n):
    return max(int(n), 1)


def class_map(num_states, labels, ls):
    """Per graph, the classes its states emit and the states of each class, in
    increasing order: what makes the GPU's emission gradient a sum in a fixed order.

    Parameters
    ----------
    num_states : ndarray of int32, shape (G,)
    labels : ndarray of int32, shape (G, ls)
    ls : int
        The padded state count.

    Returns
    -------
    (num_classes (G,), classes (G, ls), class_ptr (G, ls + 1), class_states (G, ls))
        int32: graph ``g`` emits ``classes[g, :num_classes[g]]`` (increasing), and
        the states of its ``u``-th class are ``class_states[g, class_ptr[g, u]:
        class_ptr[g, u + 1]]`` (increasing).

    Examples
    --------
    >>> import numpy as np
    >>> from lattice.backends.cupy import class_map
    >>> n, classes, ptr, states = class_map(np.array([3], np.int32),
    ...                                     np.array([[2, 0, 2]], np.int32), 3)
    >>> n.tolist(), classes[0, :2].tolist(), ptr[0, :3].tolist(), states[0].tolist()
    ([2], [0, 2], [0, 1, 3], [1, 0, 2])
    """
    G = labels.shape[0]
    valid = np.arange(ls) < num_states[:, None]
    lab = np.where(valid, labels, INT32_MAX).astype(np.int64)
    order = np.argsort(lab, axis=1, kind="stable")
    sorted_lab = np.take_along_axis(lab, order, axis=1)
    k = np.arange(ls)
    inside = k < num_states[:, None]
    first = inside & np.concatenate(
        [np.ones((G, 1), bool), sorted_lab[:, 1:] != sorted_lab[:, :-1]], axis=1)
    num_classes = first.sum(axis=1).astype(np.int32)
    u = np.cumsum(first, axis=1) - 1
    rows, cols = np.nonzero(first)
    classes = np.zeros((G, ls), np.int32)
    class_ptr = np.zeros((G, ls + 1), np.int32)
    classes[rows, u[rows, cols]] = sorted_lab[rows, cols]
    class_ptr[rows, u[rows, cols]] = cols
    class_ptr[np.arange(G), num_classes] = num_states
    return num_classes, classes, class_ptr, order.astype(np.int32)


def _padded(array, rows, width, fill, dtype):
    out = np.full((rows, width), fill, dtype=dtype)
    out[:, : array.shape[1]] = array
    return out


class _DeviceGraphs:
    """The distinct graphs of a batch on one device, padded to (ls, la) >= 1."""

    def __init__(self, runtime, d):
        G = len(d)
        self.ls = ls = _at_least_one(d.max_states)
        self.la = la = _at_least_one(d.max_arcs)
        num_states = np.asarray(d.num_states, np.int32)
        host = {
            "num_states": num_states,
            "labels": _padded(d.labels, G, ls, 0, np.int32),
            "tokens": _padded(d.tokens, G, ls, -1, np.int32),
            "src": _padded(d.src, G, la, 0, np.int32),
            "dst": _padded(d.dst, G, la, 0, np.int32),
            "in_ptr": _padded(d.in_ptr, G, ls + 1, 0, np.int32),
            "in_arc": _padded(d.in_arc, G, la, 0, np.int32),
            "out_ptr": _padded(d.out_ptr, G, ls + 1, 0, np.int32),
            "out_arc": _padded(d.out_arc, G, la, 0, np.int32),
        }
        host["num_classes"], host["classes"], host["class_ptr"], host["class_states"] = (
            class_map(num_states, host["labels"], ls))
        self.band = d.band
        if d.band is not None:  # the slot -> arc map of the band, and its inverse
            host["band_arc"] = _padded(d.band_arc, G, d.band * ls, -1, np.int32)
            host["band_slot"] = _padded(d.band_slot, G, la, -1, np.int32)
        self.arrays = {name: runtime.asarray(a) for name, a in host.items()}
        self.weights = {}  # dtype -> the graphs' own (weight, start, final) there


class CuPyBackend(Backend):
    """Forward, forward-backward and Viterbi on the GPU (see the module docstring).

    Parameters
    ----------
    runtime : optional
        What allocates arrays and launches kernels; :class:`CuPyRuntime` (made
        when first needed) by default.
    banded : bool
        Run banded batches on the band kernels (default); False runs every batch
        on the CSR ones, for comparisons.

    Examples
    --------
    Without a GPU the backend is still registered; it is chosen for CuPy arrays:

    >>> import lattice
    >>> "cupy" in lattice.backends.available_backends()
    True
    """

    name = "cupy"

    def __init__(self, runtime=None, banded=True):
        self._runtime = runtime
        self.banded = bool(banded)  # False: every batch on the CSR kernels (tests)

    @property
    def runtime(self):
        if self._runtime is None:
            self._runtime = CuPyRuntime()
        return self._runtime

    @property
    def xp(self):
        return self.runtime.xp

    def to_numpy(self, array):
        return self.runtime.to_numpy(array)

    # -- inputs on the device ----------------------------------------------------------

    def _graphs(self, gb):
        rt = self.runtime
        return gb.distinct.derived(("device-graphs", rt.device_key),
                                   lambda d: _DeviceGraphs(rt, d))

    def _inputs(self, p):
        """The launch arguments every kernel shares (its layout's included), the
        layout ("band" or "csr") and the device graphs."""
        rt = self.runtime
        gb = p.batch
        dev = self._graphs(gb)
        ls, la = dev.ls, dev.la
        dtype = p.emissions.dtype
        band = self.banded and dev.band is not None and not p.time_dependent
        own = p.weight_index is gb.graph_index and not p.custom_weights
        key = (dtype, band)
        cached = dev.weights.get(key) if own else None
        if cached is None:
            rows = p.weight.shape[0]
            if band:  # the band table of the rows the weights have (Problem)
                table = gb.distinct if rows == len(gb.distinct) else gb
                weight = (table.band_weights_as(dtype) if not p.custom_weights else
                          table.band_table(p.weight, -np.inf).astype(dtype, copy=False))
            elif p.time_dependent:
                weight = np.zeros((rows, p.weight.shape[1], la), dtype)
                weight[:, :, : p.weight.shape[2]] = p.weight
            else:
                weight = _padded(p.weight, rows, la, 0, dtype)
            cached = (rt.asarray(weight),
                      rt.asarray(_padded(p.start, rows, ls, -np.inf, dtype)),
                      rt.asarray(_padded(p.final, rows, ls, -np.inf, dtype)))
            if own:
                dev.weights[key] = cached
        weight, start, final = cached
        em = p.emissions
        item = em.dtype.itemsize
        a = dev.arrays
        args = {
            "em": em, "e_bs": em.strides[0] // item, "e_ts": em.strides[1] // item,
            "lengths": rt.asarray(p.lengths, np.int64),
            "graph_index": rt.asarray(gb.graph_index, np.int64),
            "weight_index": rt.asarray(p.weight_index, np.int64),
            "ls": ls, "num_states": a["num_states"], "labels": a["labels"],
            "weight": weight, "w_rs": int(np.prod(weight.shape[1:])),
            "w_ts": la if p.time_dependent else 0, "start": start, "final": final,
        }  # fmt: skip
        if band:
            args.update(D=int(dev.band), band_arc=a["band_arc"])
        else:
            args.update({"la": la, **{name: a[name] for name in (
                "src", "dst", "in_ptr", "in_arc", "out_ptr", "out_arc")}})
        return args, ("band" if band else "csr"), dev

    def _table_rows(self, p):
        """The largest T_b * S_b of the batch (at least 1): one example's table."""
        states = p.batch.num_states.astype(np.int64)
        return max(int((p.lengths * states).max(initial=0)), 1)

    def alpha_rows(self, p, checkpoint):
        """(k, a_bs): the checkpoint interval of forward-backward (the longest
        length: the full table) as :mod:`lattice.memory` resolves it for the
        float64 tables of the whole batch, and one example's alpha workspace: a
        checkpoint row per block of k frames and the rows of one block.

        Examples
        --------
        >>> import numpy as np, lattice
        >>> from lattice.backends.cupy import CuPyBackend
        >>> from lattice.problem import make_problem
        >>> _, p = make_problem(np.zeros((1, 100, 3)), lattice.build("ctc", [1]),
        ...                     None, None, None, None)
        >>> CuPyBackend().alpha_rows(p, None), CuPyBackend().alpha_rows(p, 10)
        ((100, 303), (10, 60))
        """
        states = p.batch.num_states.astype(np.int64)
        frames = int(p.lengths.max(initial=1))
        k = resolve_checkpoint(checkpoint, frames, int((p.lengths * states).sum()) * 8)
        k_b = np.minimum(k, np.maximum(p.lengths, 1))
        rows = -(-np.maximum(p.lengths, 1) // k_b) + k_b
        return int(k), max(int((rows * states).max(initial=0)), 1)

    def _launch(self, kernel, dtype, blocks, threads, values):
        if blocks == 0:
            return
        rt = self.runtime
        rt.launch(entry_name(kernel, dtype), int(blocks), int(threads),
                  kernel_arguments(kernel, dtype, values))

    # -- the interface -------------------------------------------------------------

    def forward(self, problem, semiring):
        p = problem
        xp = self.xp
        size = p.emissions.shape[0]
        dtype = p.emissions.dtype
        scores = xp.empty(size, dtype=dtype)
        if size == 0:
            return scores
        args, layout, dev = self._inputs(p)
        log = semiring == "log"
        ring = xp.empty((size, 2 * dev.ls), dtype=np.float64 if log else dtype)
        self._launch(f"forward_{semiring}_{layout}", dtype, size,
                     self.runtime.threads(dev.ls), {**args, "ring": ring, "scores": scores})
        return scores

    def forward_backward(self, problem, semiring="log", checkpoint=None):
        if semiring == "max":
            return self._best_path_gradients(problem, self.viterbi(problem, checkpoint))
        p = problem
        xp = self.xp
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        scores = xp.empty(size, dtype=dtype)
        g_em = self.zeros_like_emissions(p.emissions)
        arc_frames = frames if p.time_dependent else 1
        if size == 0:
            return Gradients(scores, g_em, *self._arc_start_final(p, dtype))
        args, layout, dev = self._inputs(p)
        ls = dev.ls
        slots = args["w_rs"] if layout == "band" else dev.la  # weight slots per row
        k, a_bs = self.alpha_rows(p, checkpoint)
        g_arc = xp.zeros((size, max(arc_frames, 1), slots), dtype=np.float64)
        g_start = xp.zeros((size, ls), dtype=dtype)
        g_final = xp.zeros((size, ls), dtype=dtype)
        a = dev.arrays
        item = dtype.itemsize
        self._launch(f"forward_backward_{layout}", dtype, size, self.runtime.threads(ls), {
            **args, "num_classes": a["num_classes"], "classes": a["classes"],
            "class_ptr": a["class_ptr"], "class_states": a["class_states"],
            "alpha": xp.empty((size, a_bs), dtype=np.float64), "a_bs": a_bs,
            "checkpoint": k,
            "beta": xp.empty((size, 2 * ls), dtype=np.float64),
            "post": xp.empty((size, ls), dtype=np.float64), "scores": scores,
            "g_em": g_em, "g_bs": g_em.strides[0] // item, "g_ts": g_em.strides[1] // item,
            "g_arc": g_arc, "ga_bs": g_arc.shape[1] * slots,
            "ga_ts": slots if p.time_dependent else 0,
            "g_start": g_start, "g_final": g_final,
        })  # fmt: skip
        if layout == "band":  # band slots -> arcs (GraphBatch.band_slot)
            slot = a["band_slot"][args["graph_index"]][:, : gb.max_arcs]
            values = xp.take_along_axis(g_arc[:, 0], xp.maximum(slot, 0), axis=1)
            arc = xp.where(slot >= 0, values, 0).astype(dtype)
        else:
            arc = g_arc[:, :, : gb.max_arcs].astype(dtype)
            if not p.time_dependent:
                arc = arc[:, 0]
        return Gradients(scores, g_em, xp.ascontiguousarray(arc),
                         xp.ascontiguousarray(g_start[:, : gb.max_states]),
                         xp.ascontiguousarray(g_final[:, : gb.max_states]))

    def _arc_start_final(self, p, dtype):
        xp, gb = self.xp, p.batch
        size, frames = p.emissions.shape[:2]
        arc_shape = (size, frames, gb.max_arcs) if p.time_dependent else (
            size, gb.max_arcs)
        return (xp.zeros(arc_shape, dtype=dtype),
                xp.zeros((size, gb.max_states), dtype=dtype),
                xp.zeros((size, gb.max_states), dtype=dtype))

    def viterbi(self, problem, checkpoint=None):
        p = problem
        xp = self.xp
        size, frames, _ = p.emissions.shape
        dtype = p.emissions.dtype
        scores = xp.full(size, -np.inf, dtype=dtype)
        width = max(frames, 1)
        paths = xp.full((6, size, width), -1, dtype=np.int32)
        num_segments = xp.zeros(size, dtype=np.int32)
        if size and frames:
            args, layout, dev = self._inputs(p)
            a_bs = self._table_rows(p)
            self._launch(f"viterbi_{layout}", dtype, size, self.runtime.threads(dev.ls), {
                **args, "tokens": dev.arrays["tokens"],
                "ring": xp.empty((size, 2 * dev.ls), dtype=dtype),
                "backpointers": xp.empty((size, a_bs), dtype=np.int32), "a_bs": a_bs,
                "path": paths[0], "path_labels": paths[1], "path_arcs": paths[2],
                "p_bs": width, "seg_token": paths[3], "seg_start": paths[4],
                "seg_end": paths[5], "num_segments": num_segments, "scores": scores,
            })  # fmt: skip
        k = int(num_segments.max()) if size else 0
        return Paths(scores, paths[0, :, :frames], paths[1, :, :frames],
                     paths[2, :, :frames],
                     *(xp.ascontiguousarray(paths[i, :, :k]) for i in (3, 4, 5)),
                     num_segments)

    def _best_path_gradients(self, p, paths):
        """The indicators of the best paths (as the CPU backend's)."""
        xp = self.xp
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        g_em = self.zeros_like_emissions(p.emissions)
        if not (size and frames):
            return Gradients(paths.score, g_em, *self._arc_start_final(p, dtype))
        rt = self.runtime
        states, labels, arcs = (xp.ascontiguousarray(a) for a in paths[1:4])
        item = dtype.itemsize
        arc_width = max(p.batch.max_arcs, 1)
        arc_buf = xp.zeros((size, frames if p.time_dependent else 1, arc_width),
                           dtype=dtype)
        ls = max(p.batch.max_states, 1)
        start_buf = xp.zeros((size, ls), dtype=dtype)
        final_buf = xp.zeros((size, ls), dtype=dtype)
        threads = 128
        self._launch("best_path_gradients", dtype, -(-size // threads), threads, {
            "B": size, "lengths": rt.asarray(p.lengths, np.int64), "path": states,
            "path_labels": labels, "path_arcs": arcs, "p_bs": frames, "ls": ls,
            "g_em": g_em, "g_bs": g_em.strides[0] // item,
            "g_ts": g_em.strides[1] // item, "g_arc": arc_buf,
            "ga_bs": arc_buf.shape[1] * arc_width,
            "ga_ts": arc_width if p.time_dependent else 0,
            "g_start": start_buf, "g_final": final_buf,
        })  # fmt: skip
        arc = arc_buf[:, :, : p.batch.max_arcs]
        g_arc = xp.ascontiguousarray(arc if p.time_dependent else arc[:, 0])
        g_start = xp.ascontiguousarray(start_buf[:, : p.batch.max_states])
        g_final = xp.ascontiguousarray(final_buf[:, : p.batch.max_states])
        return Gradients(paths.score, g_em, g_arc, g_start, g_final)

    # -- the alignment distribution: on the CPU, results back on the device --------

    def _on_host(self, problem):
        """``problem`` with its emissions on the host (its other arrays are)."""
        return problem._replace(emissions=self.to_numpy(problem.emissions))

    def _on_device(self, result):
        rt = self.runtime
        return type(result)(*(None if v is None else rt.asarray(v) for v in result))

    def sample(self, problem, num_samples, key):
        cpu = get_backend("cpu")
        return self._on_device(cpu.sample(self._on_host(problem), num_samples, key))

    def kbest(self, problem, k):
        return self._on_device(get_backend("cpu").kbest(self._on_host(problem), k))

    def posteriors(self, problem, entropy, gradients, num_tokens, onsets=True):
        cpu = get_backend("cpu")
        return self._on_device(cpu.posteriors(self._on_host(problem), entropy, gradients,
                                              num_tokens, onsets))
