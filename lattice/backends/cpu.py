"""The CPU backend: the compiled Cython kernels of ``lattice._core``, on numpy arrays.

It owns everything between a validated :class:`~lattice.backends.base.Problem` and
the numbers: the thread count and the order in which examples are scheduled, the
choice between the three kernel families, the workspace of every kernel (sized in
one table, :data:`WORKSPACES`) and the kernel calls.

Kernel families, in the order they are tried:

* **banded** (``GraphBatch.band``: every arc goes from ``s - d`` to ``s`` with
  ``d < 3``, CTC, segmentation and HMM chains): a dense band table of arc weights,
  vectorised row functions, only the cells a complete path can pass through;
* **ELL** (no state with more than ``ell_max_degree`` in- or out-arcs): the general
  kernels with a fixed number of arc slots per state, vectorised gathers;
* **CSR** loops otherwise.

Log-space kernels of all three give the same bits (the tests switch the first two
off with :meth:`CPUBackend.options` and compare). Forward-backward of a banded batch
runs in probability space instead (``_prob.pxi.tp``: a double recursion rescaled
every frame, exact to the float64 log-space result for float32 inputs too, and
faster), and so does that of general graphs with static weights
(``_graph_prob.pxi.tp``: ELL row functions where the degrees allow, CSR loops
otherwise); an example their consistency check refuses is recomputed with the
float64 log-space kernel (:meth:`CPUBackend._recompute_exactly`). The other float32
paths keep the same contract: forward-backward with time-dependent weights and the
distribution functions run in float64 (:func:`_in_float64`), and log-space forwards
lower every row by its largest cell (the kernels' ``lower``; float64 past
:data:`LOWERED_FORWARD_FRAMES` frames). With ``probability_space=False`` every path
runs the log-space kernels of the input's dtype.
"""

from __future__ import annotations

import contextlib
import functools
import math
import numbers
import sys
import threading

import numpy as np
from numpy.lib.stride_tricks import as_strided

from .. import _core
from .._layout import BAND_PAD, ELL_MAX_DEGREE, ELL_WIDTHS, INT32_MAX, MAX_BAND
from .._threads import check_team, get_num_threads
from ..memory import resolve_checkpoint
from ..batch import GraphBatch
from .base import Backend, Gradients, KBestPaths, Paths, Posteriors, Problem, Samples

__all__ = ["CPUBackend", "WORKSPACES"]

# kernel names end in the dtype's name (dtype.name costs microseconds per call)
_DTYPE_NAME = {np.dtype(np.float32): "float32", np.dtype(np.float64): "float64"}

# A float32 log-space forward lowers its rows (the kernels' ``lower``), which keeps
# its scores within about 1e-7 of float64 up to this many frames; longer batches run
# in float64 (as _ctc.pxi.tp's CTC_FORWARD_DOUBLE_FRAMES).
LOWERED_FORWARD_FRAMES = 4096


def _in_float64(backend, p):
    """Problem ``p`` with its emissions and weights in float64: the emissions in their
    memory order (``zeros_like_emissions``'s: time-major stays time-major, so the
    gradients are too), the weights C-contiguous, as the kernels read rows (a copy
    of a broadcast row with ``astype(order="K")`` would not have unit inner
    strides)."""
    emissions = backend.zeros_like_emissions(p.emissions, np.float64)
    emissions[...] = p.emissions
    return p._replace(
        emissions=emissions, weight=np.ascontiguousarray(p.weight, dtype=np.float64),
        start=np.ascontiguousarray(p.start, dtype=np.float64),
        final=np.ascontiguousarray(p.final, dtype=np.float64),
    )


def _as_dtype(result, dtype, fields=None):
    """A result tuple (:class:`Gradients`, :class:`Samples`, :class:`Posteriors`)
    with its float arrays (``fields``: those named, default all; None stays None) in
    ``dtype``."""
    return result._replace(**{
        name: getattr(result, name).astype(dtype, order="K")
        for name in (fields or result._fields) if getattr(result, name) is not None
    })


def _full_alpha_rows(S, A, K, table):
    """The workspace of _full_alpha_* (the distribution kernels): a stored alpha
    table and the scratch of either general recursion (ELL or CSR)."""
    return {
        "alpha": ("float", table(BAND_PAD), "table"),
        "work": ("float", max(A + 2 * S, K * S)),
        "kwork": ("int32", max(S, K * S + A)),
        "bp_scratch": ("uint8", S),
    }


def _ctc_prob_rows(S, T, C):
    """The per-thread rows both probability-space CTC kernels (_ctc.pxi.tp) use, for
    graphs of at most S states (K = (S - 1) / 2 symbols), T frames and C classes:
    CA_t, m_t, c_t and N_t per frame, the per-example rows, the class map and the
    class tables of the emission gradient."""
    return {"frames": ("double", 4 * T), "work": ("double", 11 * ((S - 1) // 2 + 2)),
            "iwork": ("int32", 4 * S + C)}


def _ctc_graph_rows(kind, S):
    """The per-thread rows of one CTC graph of S states (_ctc.pxi.tp): the band table,
    start and final weights in ``kind``, and the labels."""
    return {"graph": (kind, (MAX_BAND + 2) * S + MAX_BAND - 1),
            "graph_labels": ("int32", S)}


def _blocks(T, k):
    """ceil(T / k) for an array of lengths T."""
    return -(-T // k)


def _fb_rows(k):
    """The alpha rows of forward_backward_* per example with checkpoint interval k:
    the full table of T rows, or ceil(T / k) - 1 checkpoints and a block of
    max(k, 2) rows (None, which ``table`` reads as T, for no checkpoints: its
    numpy passes were a tenth of a small CTC call's preparation)."""
    if k >= INT32_MAX:
        return None
    return lambda T: np.where(T <= k, T, _blocks(T, k) - 1 + max(k, 2))


def _block_rows(k):
    """The emission-table rows of the probability-space kernels per example with
    checkpoint interval k: min(T, k) (None, read as T, for no checkpoints)."""
    if k >= INT32_MAX:
        return None
    return lambda T: np.minimum(T, k)


# Per-thread workspace rows of each kernel, in values of the given kind ("float":
# the emissions' dtype, "double", "int32", "uint8", "bp": the backpointer dtype), as
# functions of S = S_max, A = A_max, K = the ELL cap (0: CSR loops), table(pad,
# rows) = the largest rows(lengths)[b] * (num_states[b] + pad) of the batch (rows:
# the lengths themselves by default), and the keyword sizes a kernel takes besides
# (checkpoint: the interval, k >= T_max for none; kbest: k, T and the in-degree;
# posteriors: whether the entropy's table is needed). Rows marked "table" are
# indexed with int64 in the kernels; every other row must be int32-indexable. The
# kernel docstrings in _core.pyx.tp and _dist.pxi.tp describe the same rows.
WORKSPACES = {
    "forward_banded": lambda S, A, K, table: {
        "scratch": ("float", 2 * (S + BAND_PAD)),
        "bp_scratch": ("uint8", S),
    },
    "forward": lambda S, A, K, table: {
        "scratch": ("float", 2 * (S + BAND_PAD)),
        "work": ("float", max(A + 2 * S, K * S)),
        "kwork": ("int32", max(S, K * S + A)),
        "bp_scratch": ("uint8", S),
    },
    "forward_backward_banded": lambda S, A, K, table, checkpoint=INT32_MAX: {
        "alpha": ("float", table(BAND_PAD, _fb_rows(checkpoint)), "table"),
        "scratch": ("float", 4 * S + BAND_PAD),
    },
    # probability space (_prob.pxi.tp): the alpha table in double, the emission
    # probabilities of a block's frames, CA_t, m_t and N_t per frame, the per-example
    # rows of _prob_forward_backward_one_* and the class map
    "forward_backward_prob": lambda S, A, K, table, checkpoint=INT32_MAX, T=1, C=1: {
        "alpha": ("double", table(BAND_PAD, _fb_rows(checkpoint)), "table"),
        "emission_table": ("double", table(0, _block_rows(checkpoint)),
                           "table"),
        "frames": ("double", 3 * T),
        "work": ("double", 2 * (MAX_BAND * S + MAX_BAND) + 8 * S + 5 * BAND_PAD),
        "iwork": ("int32", 7 * S + 1 + C),
    },
    # general graphs in probability space (_graph_prob.pxi.tp): the rows of
    # forward_backward_prob, and the per-example rows of
    # _graph_prob_forward_backward_one_* (its weights in in- and out-arc order)
    "forward_backward_graph_prob": lambda S, A, K, table, checkpoint=INT32_MAX, T=1,
    C=1: {
        "alpha": ("double", table(BAND_PAD, _fb_rows(checkpoint)), "table"),
        "emission_table": ("double", table(0, _block_rows(checkpoint)),
                           "table"),
        "frames": ("double", 3 * T),
        "work": ("double", A + 4 * max(A, K * S) + 9 * S + 1),
        "iwork": ("int32", 2 * max(A, K * S) + A + 7 * S + 1 + C),
    },
    # CTC straight from the targets (_ctc.pxi.tp): the banded kernels' rows, and one
    # CTC graph per thread (its band table, start and final weights; its labels)
    "ctc_forward_banded": lambda S, A, K, table: {
        **WORKSPACES["forward_banded"](S, A, K, table),
        **_ctc_graph_rows("float", S),
    },
    # its forward half on a ring (and a copy of a clean row), with the rows of the
    # log-space forward it continues in after an underflow
    "ctc_forward_prob": lambda S, A, K, table, T=1, C=1: {
        **WORKSPACES["ctc_forward_banded"](S, A, K, table),
        **_ctc_prob_rows(S, T, C),
        "ring": ("double", 2 * (S + BAND_PAD) + BAND_PAD),
        "backup": ("double", S + 1),
        # a float32 example's long continuation, in double: its graph, one frame's
        # emissions of the classes its target uses
        "graph64": ("double", (MAX_BAND + 2) * S + MAX_BAND - 1),
        "row64": ("double", (S - 1) // 2 + 1),
        # the emission probabilities of a run of frames, computed at once
        "runs": ("double", max(_core.EXP_RUN_VALUES, (S - 1) // 2 + 1)),
    },
    "ctc_forward_backward_prob": lambda S, A, K, table, checkpoint=INT32_MAX, T=1, C=1: {
        "alpha": ("double", table(BAND_PAD, _fb_rows(checkpoint)), "table"),
        "emission_table": ("double", table(0, _block_rows(checkpoint)),
                           "table"),
        **_ctc_prob_rows(S, T, C),
    },
    "forward_backward": lambda S, A, K, table, checkpoint=INT32_MAX: {
        "alpha": ("float", table(BAND_PAD, _fb_rows(checkpoint)), "table"),
        "beta": ("float", 2 * S),
        "work": ("float", max(A + 4 * S, 2 * K * S + 2 * S + BAND_PAD)),
        "kwork": ("int32", max(S, K * S + A)),
        # the forward recursion's own scratch (as forward's work and kwork), which
        # only recomputing blocks reads: np.empty leaves its pages untouched otherwise
        "fwork": ("float", max(A + 2 * S, K * S)),
        "fkwork": ("int32", max(S, K * S + A)),
    },
    # checkpoints and a ring; the backpointers of one block
    "viterbi_banded": lambda S, A, K, table, checkpoint=INT32_MAX: {
        "scratch": ("float", table(BAND_PAD, lambda T: _blocks(T, checkpoint) + 1),
                    "table"),
        "backpointers": ("uint8", table(0, lambda T: np.minimum(T - 1, checkpoint) + 1),
                         "table"),
    },
    "viterbi": lambda S, A, K, table, checkpoint=INT32_MAX: {
        "scratch": ("float", table(BAND_PAD, lambda T: _blocks(T, checkpoint) + 1),
                    "table"),
        "backpointers": ("bp", table(0, lambda T: np.minimum(T - 1, checkpoint) + 1),
                         "table"),
        "work": ("float", K * S),
        "kwork": ("int32", K * S + A),
    },
    # the alignment distribution (_dist.pxi.tp): a full alpha table, then a walk
    "sample": lambda S, A, K, table: {
        **_full_alpha_rows(S, A, K, table),
        "draws": ("double", max(S, A)),
    },
    # k paths of frames T; the arenas of the recursive enumeration (sizes as the
    # kernel's docstring gives them: at most one new node and path per frame and
    # path, path lists in doubling blocks, one candidate per predecessor group)
    "kbest": lambda S, A, K, table, k=1, T=1, degree=1: {
        **_full_alpha_rows(S, A, K, table),
        "node_of": ("int32", table(0), "table"),
        "nodes": ("int32", 8 * (1 + (k - 1) * T)),
        "path_scores": ("float", k + 2 + 8 * (k - 1) * (T + 1)),
        "path_info": ("int32", 2 * (k + 2 + 8 * (k - 1) * (T + 1))),
        "cand_scores": ("float", S + (k - 1) * T * degree),
        "cand_info": ("int32", 2 * (S + (k - 1) * T * degree)),
        "stack": ("int32", T + 2),
    },
    "posteriors": lambda S, A, K, table, entropy=True: {
        **_full_alpha_rows(S, A, K, table),
        "prefix_entropy": ("double", table(BAND_PAD) + BAND_PAD if entropy else 1,
                           "table"),
        "rows": ("double", max(10 * S + 2 * A, 2 * MAX_BAND * S + 11 * S + 5 * BAND_PAD)),
    },
}


def _oversized(rows):
    """The size of the first int-indexed row of a WORKSPACES entry that int32 cannot
    index, or None (rows marked "table" are int64-indexed)."""
    for kind, size, *table_indexed in rows.values():
        if not table_indexed and size > INT32_MAX:
            return size
    return None


def _fits_int32(kernel, S, A, K):
    """Whether every int-indexed workspace row of ``kernel`` fits int32."""
    return _oversized(WORKSPACES[kernel](S, A, K, lambda pad, rows=None: 0)) is None


def _every_frame(array, frames, writeable=True):
    """A (B, max(frames, 1), A) view of a (B, A) array with a zero time stride: the
    general kernels index arc weights and their gradients as [b, t, a], and
    time-independent ones read (or add to) row b on every frame."""
    return as_strided(
        array,
        shape=(array.shape[0], max(frames, 1), array.shape[1]),
        strides=(array.strides[0], 0, array.strides[1]),
        writeable=writeable,
    )


def _zero_gradients(backend, problem):
    """Zero gradients of every input, as the kernels add to them: (emissions, arc
    weights as returned, arc weights as the general kernels index them [b, t, a],
    start, final)."""
    size, frames, classes = problem.emissions.shape
    dtype = problem.emissions.dtype
    gb = problem.batch
    emissions = backend.zeros_like_emissions(problem.emissions)
    start = np.zeros((size, gb.max_states), dtype=dtype)
    final = np.zeros((size, gb.max_states), dtype=dtype)
    if problem.time_dependent:
        arcs = indexed = np.zeros((size, frames, gb.max_arcs), dtype=dtype)
    else:
        arcs = np.zeros((size, gb.max_arcs), dtype=dtype)
        indexed = _every_frame(arcs, frames)
    return emissions, arcs, indexed, start, final


def _with_columns(array):
    """A 2-D array, or a (rows, 1) placeholder of it if it has no columns: kernels
    take the address of a row's first value even where they read none."""
    if array.shape[1]:
        return array
    return np.zeros((array.shape[0], 1), dtype=array.dtype)


def _zero_strides(size, width, dtype, ndim=2):
    """A writeable placeholder of shape (size, width) (or (size, 1, width)) whose
    every element is one value: for the arrays a kernel takes but is told not to
    touch."""
    shape = (size, width) if ndim == 2 else (size, 1, width)
    return as_strided(np.zeros(1, dtype=dtype), shape=shape, strides=(0,) * ndim)


class _WorkspacePool(threading.local):
    """The workspace buffers of the kernels, kept between calls: one pool per Python
    thread, one buffer per (kernel, workspace) name.

    A fresh workspace of megabytes came from the operating system at every call (the
    allocator maps a large block anew when it is as large as the last one freed),
    and every page of it faulted in again when the kernel first wrote it: about 5 us
    a page here, 4.4 of the 6.4 ms of a CTC forward-backward of one utterance of
    1000 frames (target of 200). A buffer is handed out again only when no view of
    it is alive (so two uses can never share one), and kept only while the pool
    stays within ``limit`` bytes (the ``workspace_cache`` option; 0 empties it)."""

    def __init__(self):
        self.buffers = {}

    def take(self, key, nbytes, limit):
        """A uint8 buffer of at least ``nbytes`` bytes for ``key``."""
        if limit <= 0:
            self.buffers.clear()
            return np.empty(nbytes, dtype=np.uint8)
        buf = self.buffers.get(key)
        # three references when no view is alive: the pool's, buf and the argument
        if buf is not None and buf.nbytes >= nbytes and sys.getrefcount(buf) == 3:
            return buf
        self.buffers.pop(key, None)  # released before a larger one is allocated
        buf = np.empty(nbytes, dtype=np.uint8)
        if sum(b.nbytes for b in self.buffers.values()) + nbytes <= limit:
            self.buffers[key] = buf
        return buf


_POOL = _WorkspacePool()


# The byte alignment of the arrays this backend allocates for the kernels to write
# (emission gradients): a cache line. numpy's allocations are 16-byte aligned, and a
# large one sits 16 bytes past a page boundary, so in torch's (T, B, C) layout the
# gradient rows of neighbouring examples, which two threads write at once, shared
# their boundary cache lines: the CTC forward-backward ran 8% slower at B = 16,
# T = 200, C = 32 (4.5% at B = 32, T = 1000, C = 64) than into aligned rows.
ALIGNMENT = 64


def _aligned_array(shape, dtype, zero):
    """A C-ordered array of ``shape`` whose first value lies on an ALIGNMENT-byte
    boundary: zeros or, not ``zero``, uninitialised."""
    dtype = np.dtype(dtype)
    nbytes = math.prod(shape) * dtype.itemsize  # not np.prod: 3 us a call
    raw = (np.zeros if zero else np.empty)(nbytes + ALIGNMENT, dtype=np.uint8)
    start = -raw.ctypes.data % ALIGNMENT
    return raw[start:start + nbytes].view(dtype).reshape(shape)


@functools.lru_cache(maxsize=64)
def _spread_order(n):
    """0 .. n - 1, the odd ones first (for n = 7: 1, 3, 5, 0, 2, 4, 6), read-only: for
    n >= 4 no two consecutive entries are neighbours."""
    order = np.concatenate([np.arange(1, n, 2), np.arange(0, n, 2)])
    order.flags.writeable = False
    return order


class _Run:
    """One kernel call's scheduling: thread count, example order, the longest
    length (``longest``, at least 1), workspaces.

    Made from the batch the kernel runs on: the valid frames, the states and the
    arcs of every example (arrays of B), the largest numbers of states and arcs and
    the emissions' dtype (:meth:`of` reads them from a problem and its graph
    batch), and the backend's options (``serial_work``, ``workspace_cache``)."""

    def __init__(self, lengths, num_states, num_arcs, max_states, max_arcs, dtype,
                 settings):
        serial_work = settings["serial_work"]
        self._cache_limit = settings["workspace_cache"]
        states = np.asarray(num_states, dtype=np.int64)
        work = lengths * (states + num_arcs)
        # longest work first, so that the dynamic schedule ends evenly; among equal
        # work, spread (_spread_order), so that the examples the threads run at once
        # are not neighbours in memory: in torch's (T, B, C) layout neighbours'
        # emission and gradient rows lie side by side, and two threads writing them
        # at once ran 3-4% slower (the results do not depend on the order)
        spread = _spread_order(len(lengths))
        self.order = spread[np.argsort(-work[spread], kind="stable")]
        threads = max(1, min(get_num_threads(), len(lengths)))
        if work.sum() < serial_work:
            # waking a thread team costs more than it saves on tiny batches, and idle
            # OpenMP workers spinning on an oversubscribed machine slow everyone down
            threads = 1
        self.num_threads = check_team(threads)
        self._lengths, self._states, self._dtype = lengths, states, dtype
        self._max = (max_states, max_arcs)
        self.longest = int(lengths.max(initial=1))
        self._cache = {}

    @classmethod
    def of(cls, problem, settings):
        """The scheduling of ``problem``'s batch."""
        gb = problem.batch
        return cls(problem.lengths, gb.num_states, gb.num_arcs, gb.max_states,
                   gb.max_arcs, problem.emissions.dtype, settings)

    def _rows(self, kernel, cap, extra):
        """WORKSPACES[kernel] of this batch, computed once per kernel and sizes."""
        if extra.get("checkpoint", -1) >= self.longest:
            # an interval past the longest input keeps every row: the workspace of
            # no checkpoints, which checkpoint() has already sized
            extra = {**extra, "checkpoint": INT32_MAX}
        key = (kernel, cap, tuple(sorted(extra.items())))
        rows = self._cache.get(key)
        if rows is None:
            lengths, states = self._lengths, self._states

            def table(pad, rows=None):
                frames = lengths if rows is None else rows(lengths)
                return int((frames * (states + pad)).max(initial=0))

            rows = self._cache[key] = WORKSPACES[kernel](*self._max, cap, table, **extra)
        return rows

    def _dtypes(self, bp_dtype):
        return {"float": self._dtype, "double": np.float64,
                "int32": np.int32, "uint8": np.uint8, "bp": bp_dtype}  # fmt: skip

    def checkpoint(self, kernel, checkpoint, cap=0, bp_dtype=np.uint8, ratio=1.0,
                   **extra):
        """The checkpoint interval of ``kernel`` (lattice.memory.resolve_checkpoint):
        the longest length when its full tables ("table" rows, all threads) fit the
        memory budget or ``checkpoint`` is False. ``ratio`` is the size of a
        checkpoint row over that of a block row; ``extra`` the sizes
        :meth:`workspaces` will be given besides the interval (so that, with no
        checkpoints, the rows are computed once)."""
        dtypes = self._dtypes(bp_dtype)
        rows = self._rows(kernel, cap, {**extra, "checkpoint": INT32_MAX})
        full = sum(size * np.dtype(dtypes[kind]).itemsize
                   for kind, size, *table in rows.values() if table) * self.num_threads
        return resolve_checkpoint(checkpoint, self.longest, full, ratio)

    def workspaces(self, kernel, cap=0, bp_dtype=np.uint8, **extra):
        """The workspaces of ``kernel`` (WORKSPACES, given ``extra`` sizes), one row
        per thread; a row the kernels index with C ints that int32 cannot index is
        refused first."""
        dtypes = self._dtypes(bp_dtype)
        rows = self._rows(kernel, cap, extra)
        size = _oversized(rows)
        if size is not None:
            raise ValueError(
                f"these graphs are too large for the kernels: the largest has "
                f"{self._max[0]} states and {self._max[1]} arcs, and a workspace "
                f"of {size} values would have to be indexed with int32 (at most "
                f"{INT32_MAX}); split the graphs"
            )
        out = {}
        for name, (kind, size, *_) in rows.items():
            dtype = np.dtype(dtypes[kind])
            shape = (self.num_threads, max(int(size), 1))
            nbytes = shape[0] * shape[1] * dtype.itemsize
            buf = _POOL.take((kernel, name), nbytes, self._cache_limit)
            out[name] = buf[:nbytes].view(dtype).reshape(shape)
        return out


class CPUBackend(Backend):
    """The compiled kernels on numpy arrays (the default backend).

    Options (process-wide, see :meth:`options`):

    * ``banded`` (default True): use the banded kernels where the batch is banded;
    * ``ell_max_degree`` (default 8): run a general graph in the ELL layout when no
      state has more in- (out-) arcs than this; 0 always runs the CSR loops;
    * ``serial_work`` (default 50,000): batches with fewer (frame x (state + arc))
      steps run on the calling thread;
    * ``probability_space`` (default True): float32 inputs keep the numerical
      contract: forward-backward of a banded batch, and the CTC forward from the
      targets, and of general graphs with static weights, in probability space
      with a double recursion (exact, and faster); forward-backward with
      time-dependent weights, sampling, entropies and token posteriors in
      float64; log-space forwards with every row lowered by its largest cell
      (in float64 past 4096 frames). False runs the log-space kernels of the
      input's dtype everywhere (the same bits on every path);
    * ``workspace_cache`` (default 64 MiB): the kernels' workspaces are kept between
      calls, per Python thread, up to this many bytes (a fresh one costs a page
      fault per 4 KiB at its first write: 4.4 of the 6.4 ms of one 1000-frame CTC
      forward-backward); 0 frees them and allocates at every call.

    Only ``probability_space`` changes results (within the numerical contract of
    :doc:`/theory`: every output within 1e-6 of the float64 log-space result); the
    others give the same bits and exist to compare the kernel families and to
    measure them.

    Examples
    --------
    >>> import numpy as np, lattice
    >>> cpu = lattice.backends.get_backend("cpu")
    >>> e, g = np.zeros((1, 4, 3)), [lattice.build("ctc", [1, 2])]
    >>> with cpu.options(banded=False, ell_max_degree=0):   # the CSR loops
    ...     general = lattice.forward(e, g)
    >>> bool(general[0] == lattice.forward(e, g)[0])
    True
    """

    name = "cpu"
    xp = np

    _DEFAULTS = {"banded": True, "ell_max_degree": ELL_MAX_DEGREE, "serial_work": 50_000,
                 "probability_space": True, "workspace_cache": 64 << 20}
    _FLAGS = ("banded", "probability_space")

    def __init__(self):
        self._settings = dict(self._DEFAULTS)
        self._lock = threading.Lock()

    # -- options -------------------------------------------------------------------

    def get_options(self):
        """The current options as a dict.

        Examples
        --------
        >>> import lattice
        >>> sorted(lattice.backends.get_backend("cpu").get_options())  # doctest: +NORMALIZE_WHITESPACE
        ['banded', 'ell_max_degree', 'probability_space', 'serial_work',
         'workspace_cache']
        """
        return dict(self._settings)

    @contextlib.contextmanager
    def options(self, **changes):
        """Change options inside a ``with`` block, then restore them.

        Parameters
        ----------
        banded : bool, optional
        ell_max_degree : int >= 0, optional
        serial_work : int >= 0, optional
        probability_space : bool, optional
        workspace_cache : int >= 0, optional

        Raises
        ------
        TypeError
            For an unknown option or a value of the wrong type.
        ValueError
            For a negative count.

        Examples
        --------
        >>> import lattice
        >>> cpu = lattice.backends.get_backend("cpu")
        >>> with cpu.options(serial_work=0):
        ...     cpu.get_options()["serial_work"]
        0
        """
        for name, value in changes.items():
            if name not in self._DEFAULTS:
                raise TypeError(
                    f"unknown option {name!r} of the cpu backend; it has "
                    f"{sorted(self._DEFAULTS)}"
                )
            if name in self._FLAGS:
                if not isinstance(value, (bool, np.bool_)):
                    raise TypeError(f"{name} must be a bool, got {value!r}")
            elif not isinstance(value, numbers.Integral) or isinstance(value, bool):
                raise TypeError(f"{name} must be an int, got {value!r}")
            elif value < 0:
                raise ValueError(f"{name} must be >= 0, got {value}")
        with self._lock:
            previous = dict(self._settings)
            self._settings.update({k: (bool(v) if k in self._FLAGS else int(v))
                                   for k, v in changes.items()})
        try:
            yield self
        finally:
            with self._lock:
                self._settings = previous

    # -- choices -------------------------------------------------------------------

    def _new_array(self, shape, dtype, zero):
        """As :meth:`Backend._new_array`, on a cache-line boundary (ALIGNMENT)."""
        return _aligned_array(shape, dtype, zero)

    def kernel(self, name):
        """The compiled kernel ``name`` of ``lattice._core`` (every call goes through
        here, so a test can wrap it to see which kernels run).

        Examples
        --------
        >>> import lattice
        >>> lattice.backends.get_backend("cpu").kernel("forward_log_float64").__name__
        'forward_log_float64'
        """
        return getattr(_core, name)

    def _banded(self, problem):
        """Whether the banded kernels run."""
        return (not problem.time_dependent and problem.batch.band is not None
                and self._settings["banded"])

    def _band_weight(self, problem, dtype=None):
        """The band table of arc weights (in ``dtype``, default the emissions') if
        the banded kernels run, else None."""
        if not self._banded(problem):
            return None
        gb = problem.batch
        dtype = problem.emissions.dtype if dtype is None else np.dtype(dtype)
        # rows as the weights' (Problem.weight_index): the distinct graphs', or one
        # per example
        rows = gb.distinct if problem.weight.shape[0] == len(gb.distinct) else gb
        if not problem.custom_weights:
            return rows.band_weights_as(dtype)
        return rows.band_table(problem.weight, -np.inf).astype(dtype, copy=False)

    def ell_cap(self, batch):
        """The most ELL slots per state the general kernels' workspaces hold for
        ``batch``: its largest in- or out-degree rounded up to an ELL width, at most
        ``ell_max_degree``; 0 runs every example with the CSR loops (also when the
        slot tables would not be int32-indexable)."""
        limit = self._settings["ell_max_degree"]
        if limit < 1:
            return 0
        degree = max(batch.max_in_degree, batch.max_out_degree, 1)
        degree = min(degree, limit, ELL_WIDTHS[-1])
        cap = next(width for width in ELL_WIDTHS if width >= degree)
        S, A = batch.max_states, batch.max_arcs
        if not all(_fits_int32(k, S, A, cap) for k in ("forward", "forward_backward",
                                                        "viterbi")):
            return 0
        return cap

    @staticmethod
    def _weight_view(problem):
        """The arc weights as the general kernels index them, weight[b, t, a]."""
        if problem.time_dependent:
            return problem.weight
        return _every_frame(problem.weight, problem.emissions.shape[1], writeable=False)

    # -- the interface ---------------------------------------------------------------

    def _exact_float32(self, p, semiring):
        """Whether the float32 results of ``p`` keep the numerical contract of
        :doc:`/theory` (``probability_space``, the default), so that its log-space
        recursions lower their rows or run in float64."""
        return (semiring == "log" and p.emissions.dtype == np.float32
                and self._settings["probability_space"])

    def forward(self, problem, semiring):
        p = problem
        size = p.emissions.shape[0]
        dtype = p.emissions.dtype
        scores = np.empty(size, dtype=dtype)
        if size == 0:
            return scores
        lower = self._exact_float32(p, semiring)
        if lower and int(p.lengths.max(initial=0)) > LOWERED_FORWARD_FRAMES:
            return self.forward(_in_float64(self, p), semiring).astype(dtype)
        band_weight = self._band_weight(p)
        gb = p.batch
        d = gb.distinct  # the rows the kernels read (GraphBatch.graph_index)
        run = _Run.of(p, self._settings)
        if band_weight is not None:
            w = run.workspaces("forward_banded")
            self.kernel(f"forward_banded_{semiring}_{_DTYPE_NAME[dtype]}")(
                p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                d.num_states, d.labels, gb.band,
                band_weight, p.start, p.final, w["scratch"], w["bp_scratch"], scores,
                run.num_threads, lower,
            )  # fmt: skip
        else:
            cap = self.ell_cap(gb)
            w = run.workspaces("forward", cap)
            self.kernel(f"forward_{semiring}_{_DTYPE_NAME[dtype]}")(
                p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                d.num_states, d.labels, d.src,
                d.dst, d.in_ptr, d.in_arc, self._weight_view(p), p.start, p.final,
                w["scratch"], w["work"], w["kwork"], w["bp_scratch"], cap, scores,
                run.num_threads, lower,
            )  # fmt: skip
        return scores

    def forward_backward(self, problem, semiring="log", checkpoint=None):
        if semiring == "max":
            return self._best_path_gradients(problem, self.viterbi(problem, checkpoint))
        if len(problem.batch) and self._settings["probability_space"]:
            if self._banded(problem):
                return self._forward_backward_prob(problem, checkpoint)
            if not problem.time_dependent:
                return self._forward_backward_graph_prob(problem, checkpoint)
        if self._exact_float32(problem, semiring):  # the general kernels, in float64
            exact = self._forward_backward_log(_in_float64(self, problem), checkpoint)
            return _as_dtype(exact, problem.emissions.dtype)
        return self._forward_backward_log(problem, checkpoint)

    def _forward_backward_prob(self, p, checkpoint):
        """Banded forward-backward in probability space (_prob.pxi.tp); the examples
        its check refuses are recomputed by :meth:`_recompute_exactly`."""
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct
        scores = np.empty(size, dtype=dtype)
        grad_emissions, arc_grad, _, grad_start, grad_final = _zero_gradients(self, p)
        run = _Run.of(p, self._settings)
        band_weight = self._band_weight(p, np.float64)
        start = np.asarray(p.start, dtype=np.float64)
        final = np.asarray(p.final, dtype=np.float64)
        sizes = {"T": run.longest, "C": classes}
        k = run.checkpoint("forward_backward_prob", checkpoint, **sizes)
        w = run.workspaces("forward_backward_prob", checkpoint=k, **sizes)
        grad_band = np.zeros((size, band_weight.shape[1]), dtype=dtype)
        status = np.zeros(size, dtype=np.int8)
        self.kernel(f"forward_backward_prob_{_DTYPE_NAME[dtype]}")(
            p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
            d.num_states, d.labels, gb.band, band_weight, start, final,
            w["alpha"], k, w["emission_table"], w["frames"], w["work"], w["iwork"],
            grad_emissions, grad_band, grad_start, grad_final, scores, status,
            run.num_threads,
        )  # fmt: skip
        arc_grad[...] = gb.arc_values(grad_band)
        result = Gradients(scores, grad_emissions, arc_grad, grad_start, grad_final)
        refused = np.flatnonzero(status)
        if refused.size:
            self._recompute_exactly(p, refused, checkpoint, result)
        return result

    def _forward_backward_graph_prob(self, p, checkpoint):
        """Forward-backward of general graphs in probability space
        (_graph_prob.pxi.tp); the examples its check refuses are recomputed by
        :meth:`_recompute_exactly`."""
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct
        scores = np.empty(size, dtype=dtype)
        grad_emissions, arc_grad, _, grad_start, grad_final = _zero_gradients(self, p)
        run = _Run.of(p, self._settings)
        # the kernels take the address of row r's first value: a batch of graphs
        # without arcs gets a row of one (unread) value
        weight = _with_columns(np.ascontiguousarray(p.weight, dtype=np.float64))
        start = np.ascontiguousarray(p.start, dtype=np.float64)
        final = np.ascontiguousarray(p.final, dtype=np.float64)
        sizes = {"T": run.longest, "C": classes}
        cap = self.ell_cap(gb)
        k = run.checkpoint("forward_backward_graph_prob", checkpoint, cap, **sizes)
        w = run.workspaces("forward_backward_graph_prob", cap, checkpoint=k, **sizes)
        status = np.zeros(size, dtype=np.int8)
        self.kernel(f"forward_backward_graph_prob_{_DTYPE_NAME[dtype]}")(
            p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
            d.num_states, d.labels, _with_columns(d.src), _with_columns(d.dst),
            d.in_ptr, _with_columns(d.in_arc), d.out_ptr, _with_columns(d.out_arc),
            weight, start, final, w["alpha"], k, w["emission_table"], w["frames"],
            w["work"], w["iwork"], grad_emissions, _with_columns(arc_grad),
            grad_start, grad_final, scores, status, cap, run.num_threads,
        )  # fmt: skip
        result = Gradients(scores, grad_emissions, arc_grad, grad_start, grad_final)
        refused = np.flatnonzero(status)
        if refused.size:
            self._recompute_exactly(p, refused, checkpoint, result)
        return result

    def _recompute_exactly(self, p, rows, checkpoint, result):
        """Overwrite the results of examples ``rows`` with those of the float64
        log-space kernels (the fallback of the probability-space path)."""
        gb = p.batch
        d, index = gb.distinct, gb.graph_index[rows]
        states, arcs = d.num_states[index], d.num_arcs[index]
        s_max, a_max = int(states.max(initial=0)), int(arcs.max(initial=0))
        sub = GraphBatch.from_valid(
            states, arcs, labels=d.labels[index, :s_max], tokens=d.tokens[index, :s_max],
            start=d.start[index, :s_max], final=d.final[index, :s_max],
            src=d.src[index, :a_max], dst=d.dst[index, :a_max],
            weight=d.weight[index, :a_max],
        )  # fmt: skip
        weight_rows = p.weight_index[rows]
        problem = Problem(
            np.asarray(p.emissions[rows], dtype=np.float64), sub, p.lengths[rows],
            np.asarray(p.weight[weight_rows, :a_max], dtype=np.float64), False,
            p.custom_weights, np.asarray(p.start[weight_rows, :s_max], dtype=np.float64),
            np.asarray(p.final[weight_rows, :s_max], dtype=np.float64),
            np.arange(len(rows), dtype=np.int64),
        )  # fmt: skip
        exact = self._forward_backward_log(problem, checkpoint)
        result.score[rows] = exact.score
        result.emission_grad[rows] = exact.emission_grad
        for full, part in ((result.arc_grad, exact.arc_grad),
                           (result.start_grad, exact.start_grad),
                           (result.final_grad, exact.final_grad)):
            full[rows] = 0
            full[rows, : part.shape[1]] = part

    # -- CTC without a graph batch (_ctc.pxi.tp) ------------------------------------

    fused_ctc = True

    def _ctc_run(self, p):
        """The scheduling of a CTC problem: 2 K + 1 states and at most 5 K arcs."""
        states = 2 * p.target_lengths + 1  # int64, as _Run counts them
        s_max = int(states.max(initial=1))
        return _Run(p.lengths, states, 2 * states, s_max, 3 * s_max, p.emissions.dtype,
                    self._settings)

    @staticmethod
    def _ctc_graph_problem(p, gb, dtype, rows=None):
        """The graph-path :class:`Problem` of examples ``rows`` (default all) of a
        CTC problem, whose CTC graphs are ``gb``, with the emissions in ``dtype``."""
        emissions = p.emissions if rows is None else p.emissions[rows]
        lengths = p.lengths if rows is None else p.lengths[rows]
        weight, start, final = gb.distinct.weights_as(dtype)
        return Problem(np.asarray(emissions, dtype=dtype), gb, lengths, weight, False,
                       False, start, final, gb.graph_index)

    def ctc_forward(self, problem, graphs=None):
        """As :meth:`Backend.ctc_forward`: in probability space, continued in log
        space from the last clean frame where the recursion underflows or its
        check refuses a frame; the examples it hands back (no complete path, an
        empty target whose score is not finite) with the banded log-space forward,
        as every example with probability space switched off (:meth:`options`);
        with the banded kernels switched off, the graph path on
        ``graphs(rows)``."""
        p = problem
        size, _, classes = p.emissions.shape
        dtype = p.emissions.dtype
        if not self._settings["banded"]:
            gb = graphs(np.arange(size))
            return self.forward(self._ctc_graph_problem(p, gb, dtype), "log")
        scores = np.empty(size, dtype=dtype)
        if size == 0:
            return scores
        run = self._ctc_run(p)
        order = run.order
        if self._settings["probability_space"]:
            w = run.workspaces("ctc_forward_prob", T=run.longest, C=classes)
            status = np.zeros(size, dtype=np.int8)
            self.kernel(f"ctc_forward_prob_{_DTYPE_NAME[dtype]}")(
                p.emissions, p.lengths, order, p.targets, p.offsets, p.target_lengths,
                p.blank, p.band, w["ring"], w["backup"], w["frames"], w["work"],
                w["iwork"], w["graph"], w["graph_labels"], w["scratch"],
                w["bp_scratch"], w["graph64"], w["row64"], w["runs"], scores, status,
                run.num_threads,
            )  # fmt: skip
            order = order[status[order] != 0]  # those handed back, longest first
            if order.size == 0:
                return scores
        w = run.workspaces("ctc_forward_banded")
        self.kernel(f"ctc_forward_banded_log_{_DTYPE_NAME[dtype]}")(
            p.emissions, p.lengths, order, p.targets, p.offsets, p.target_lengths,
            p.blank, p.band, w["graph"], w["graph_labels"], w["scratch"],
            w["bp_scratch"], scores, run.num_threads,
            dtype == np.float32 and self._settings["probability_space"],
        )  # fmt: skip
        return scores

    def ctc_forward_backward(self, problem, checkpoint=None, graphs=None,
                             negate=False, weights=None):
        """As :meth:`Backend.ctc_forward_backward`: in probability space (the
        kernel writes the whole gradient, negated with ``negate`` and weighted by
        ``weights``); the examples its check refuses are recomputed with the
        float64 log-space kernel on ``graphs(rows)``, as :meth:`forward_backward`
        does. With the banded or probability-space kernels switched off
        (:meth:`options`), the whole batch runs on the graph path."""
        p = problem
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        sign = -1 if negate else 1
        if weights is None:
            weights = np.ones(size)
        weights = np.ascontiguousarray(weights, dtype=np.float64)
        if weights.shape != (size,):
            raise ValueError(f"weights must hold one value per example ({size}), got "
                             f"shape {weights.shape}")
        if not (self._settings["banded"] and self._settings["probability_space"]):
            gb = graphs(np.arange(size))
            result = self.forward_backward(self._ctc_graph_problem(p, gb, dtype),
                                           "log", checkpoint)
            grad = result.emission_grad
            grad *= (sign * weights)[:, None, None]
            return sign * result.score, grad
        scores = np.empty(size, dtype=dtype)
        if size == 0:
            return scores, self.zeros_like_emissions(p.emissions)
        grad = self.empty_like_emissions(p.emissions)
        run = self._ctc_run(p)
        sizes = {"T": run.longest, "C": classes}
        k = run.checkpoint("ctc_forward_backward_prob", checkpoint, **sizes)
        w = run.workspaces("ctc_forward_backward_prob", checkpoint=k, **sizes)
        status = np.zeros(size, dtype=np.int8)
        self.kernel(f"ctc_forward_backward_prob_{_DTYPE_NAME[dtype]}")(
            p.emissions, p.lengths, run.order, p.targets, p.offsets, p.target_lengths,
            p.blank, w["alpha"], k, w["emission_table"], w["frames"], w["work"],
            w["iwork"], grad, scores, status, negate, weights, run.num_threads,
        )  # fmt: skip
        refused = np.flatnonzero(status)
        if refused.size:
            exact = self._forward_backward_log(
                self._ctc_graph_problem(p, graphs(refused), np.float64, refused),
                checkpoint,
            )
            scores[refused] = sign * exact.score
            grad[refused] = (sign * weights[refused])[:, None, None] * exact.emission_grad
        return scores, grad

    def _forward_backward_log(self, problem, checkpoint):
        p = problem
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct  # the rows the kernels read (GraphBatch.graph_index)
        scores = np.empty(size, dtype=dtype)
        grad_emissions, arc_grad, grad_weight, grad_start, grad_final = (
            _zero_gradients(self, p))
        if size:
            run = _Run.of(p, self._settings)
            band_weight = self._band_weight(p)
            if band_weight is not None:
                k = run.checkpoint("forward_backward_banded", checkpoint)
                w = run.workspaces("forward_backward_banded", checkpoint=k)
                grad_band = np.zeros((size, band_weight.shape[1]), dtype=dtype)
                self.kernel(f"forward_backward_banded_{_DTYPE_NAME[dtype]}")(
                    p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                    d.num_states, d.labels, gb.band,
                    band_weight, p.start, p.final, w["alpha"], k, w["scratch"],
                    grad_emissions, grad_band, grad_start, grad_final,
                    scores, run.num_threads,
                )  # fmt: skip
                arc_grad[...] = gb.arc_values(grad_band)
            else:
                cap = self.ell_cap(gb)
                k = run.checkpoint("forward_backward", checkpoint, cap)
                w = run.workspaces("forward_backward", cap, checkpoint=k)
                self.kernel(f"forward_backward_{_DTYPE_NAME[dtype]}")(
                    p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                    d.num_states, d.labels, d.src,
                    d.dst, d.in_ptr, d.in_arc, d.out_ptr, d.out_arc,
                    self._weight_view(p), p.start, p.final, w["alpha"], k, w["beta"],
                    w["work"], w["kwork"], w["fwork"], w["fkwork"], cap,
                    grad_emissions, grad_weight, grad_start, grad_final,
                    scores, run.num_threads,
                )  # fmt: skip
        return Gradients(scores, grad_emissions, arc_grad, grad_start, grad_final)

    def viterbi(self, problem, checkpoint=None):
        p = problem
        size, frames, _ = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct  # the rows the kernels read (GraphBatch.graph_index)
        scores = np.full(size, -np.inf, dtype=dtype)
        states = np.full((size, frames), -1, dtype=np.int32)
        labels = np.full((size, frames), -1, dtype=np.int32)
        arcs = np.full((size, frames), -1, dtype=np.int32)
        seg = np.full((3, size, max(frames, 1)), -1, dtype=np.int32)
        num_segments = np.zeros(size, dtype=np.int32)
        if size and frames:
            run = _Run.of(p, self._settings)
            band_weight = self._band_weight(p)
            if band_weight is not None:
                k = run.checkpoint("viterbi_banded", checkpoint,
                                   ratio=dtype.itemsize)  # float rows over byte rows
                w = run.workspaces("viterbi_banded", checkpoint=k)
                self.kernel(f"viterbi_banded_{_DTYPE_NAME[dtype]}")(
                    p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                    d.num_states, d.labels,
                    d.tokens, gb.band, d.band_arc, band_weight, p.start, p.final,
                    w["scratch"], k, w["backpointers"], states, labels, arcs,
                    seg[0], seg[1], seg[2], num_segments, scores, run.num_threads,
                )  # fmt: skip
            else:
                # one-byte backpointers hold the position among a state's in-arcs
                if gb.max_in_degree <= 255:
                    kind, bp_dtype, cap = "u8", np.uint8, self.ell_cap(gb)
                else:
                    kind, bp_dtype, cap = "i32", np.int32, 0
                k = run.checkpoint("viterbi", checkpoint, cap, bp_dtype,
                                   ratio=dtype.itemsize / np.dtype(bp_dtype).itemsize)
                w = run.workspaces("viterbi", cap, bp_dtype, checkpoint=k)
                self.kernel(f"viterbi_{_DTYPE_NAME[dtype]}_{kind}")(
                    p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                    d.num_states, d.labels,
                    d.tokens, d.src, d.in_ptr, d.in_arc, self._weight_view(p),
                    p.start, p.final, w["scratch"], k, w["backpointers"], w["work"],
                    w["kwork"], cap, states, labels, arcs,
                    seg[0], seg[1], seg[2], num_segments, scores, run.num_threads,
                )  # fmt: skip
        k = int(num_segments.max(initial=0))
        return Paths(scores, states, labels, arcs, seg[0, :, :k].copy(),
                     seg[1, :, :k].copy(), seg[2, :, :k].copy(), num_segments)

    def _best_path_gradients(self, problem, paths):
        """The gradients of the best score: 1 on each (frame, class), arc, start and
        final state of the best path (a sub-gradient where paths tie), 0 for
        examples with no path."""
        gb = problem.batch
        size, frames, classes = problem.emissions.shape
        dtype = problem.emissions.dtype
        g_em = self.zeros_like_emissions(problem.emissions)
        arc_shape = (size, frames, gb.max_arcs) if problem.time_dependent else (
            size, gb.max_arcs)
        g_arc = np.zeros(arc_shape, dtype=dtype)
        g_start = np.zeros((size, gb.max_states), dtype=dtype)
        g_final = np.zeros((size, gb.max_states), dtype=dtype)
        b_idx, t_idx = np.nonzero(paths.labels >= 0)
        np.add.at(g_em, (b_idx, t_idx, paths.labels[b_idx, t_idx]), 1)
        b_idx, t_idx = np.nonzero(paths.arcs >= 0)
        if problem.time_dependent:
            np.add.at(g_arc, (b_idx, t_idx, paths.arcs[b_idx, t_idx]), 1)
        else:
            np.add.at(g_arc, (b_idx, paths.arcs[b_idx, t_idx]), 1)
        ok = np.flatnonzero(paths.states[:, 0] >= 0)
        g_start[ok, paths.states[ok, 0]] = 1
        last = (paths.states >= 0).sum(axis=1) - 1
        g_final[ok, paths.states[ok, last[ok]]] = 1
        return Gradients(paths.score, g_em, g_arc, g_start, g_final)

    # -- the alignment distribution ------------------------------------------------

    def _full_alpha_inputs(self, problem):
        """(D, band_weight, ell_cap) for the kernels of _dist.pxi: the banded
        recursion where the forward kernels would take it (D > 0), else D = 0 and a
        placeholder band table."""
        band_weight = self._band_weight(problem)
        if band_weight is not None:
            return problem.batch.band, band_weight, 0
        placeholder = _zero_strides(len(problem.batch), 1, problem.emissions.dtype)
        return 0, placeholder, self.ell_cap(problem.batch)

    def sample(self, problem, num_samples, key):
        if self._exact_float32(problem, "log"):
            return _as_dtype(self.sample(_in_float64(self, problem), num_samples, key),
                             problem.emissions.dtype, ("scores", "log_z"))
        p = problem
        size, frames, _ = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct  # the rows the kernels read (GraphBatch.graph_index)
        scores = np.full((size, num_samples), -np.inf, dtype=dtype)
        paths = np.full((3, size, num_samples, frames), -1, dtype=np.int32)
        log_z = np.full(size, -np.inf, dtype=dtype)
        if size and frames:
            run = _Run.of(p, self._settings)
            D, band_weight, cap = self._full_alpha_inputs(p)
            w = run.workspaces("sample", cap)
            self.kernel(f"sample_{_DTYPE_NAME[dtype]}")(
                p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                d.num_states, d.labels, d.src,
                d.dst, d.in_ptr, d.in_arc, self._weight_view(p), p.start, p.final,
                D, band_weight, w["alpha"], w["work"], w["kwork"], w["bp_scratch"],
                w["draws"], cap, key, paths[0], paths[1], paths[2], scores, log_z,
                run.num_threads,
            )  # fmt: skip
        return Samples(scores, paths[0], paths[1], paths[2], log_z)

    def kbest(self, problem, k):
        p = problem
        size, frames, _ = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct  # the rows the kernels read (GraphBatch.graph_index)
        T = int(p.lengths.max(initial=0))
        D, band_weight, cap = self._full_alpha_inputs(p)
        extra = {"k": k, "T": T, "degree": max(gb.max_in_degree, 1)}
        # checked before the outputs are allocated: they alone take 12 k T bytes per
        # example, so a k beyond the search's int32 indexes must fail at once
        size_ = _oversized(WORKSPACES["kbest"](gb.max_states, gb.max_arcs, cap,
                                                lambda pad, rows=None: 0, **extra))
        if size_ is not None:
            raise ValueError(
                f"k = {k} is too large for these inputs: the k-best search over "
                f"{T} frames would need a workspace of {size_} entries, beyond "
                f"what int32 indexes ({INT32_MAX}); ask for fewer paths"
            )
        scores = np.full((size, k), -np.inf, dtype=dtype)
        paths = np.full((3, size, k, frames), -1, dtype=np.int32)
        if size and frames:
            run = _Run.of(p, self._settings)
            w = run.workspaces("kbest", cap, **extra)
            best = np.empty(size, dtype=dtype)
            self.kernel(f"kbest_{_DTYPE_NAME[dtype]}")(
                p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                d.num_states, d.labels, d.src,
                d.dst, d.in_ptr, d.in_arc, self._weight_view(p), p.start, p.final,
                D, band_weight, w["alpha"], w["work"], w["kwork"], w["bp_scratch"], cap,
                w["node_of"], w["nodes"], w["path_scores"], w["path_info"],
                w["cand_scores"], w["cand_info"], w["stack"],
                paths[0], paths[1], paths[2], scores, best, run.num_threads,
            )  # fmt: skip
            nan = np.isnan(best)
            scores[nan, 0] = np.nan  # NaN inputs: the engine reports them
        return KBestPaths(scores, paths[0], paths[1], paths[2])

    def posteriors(self, problem, entropy, gradients, num_tokens, onsets=True):
        if self._exact_float32(problem, "log"):
            exact = self.posteriors(_in_float64(self, problem), entropy, gradients,
                                    num_tokens, onsets)
            return _as_dtype(exact, problem.emissions.dtype)
        p = problem
        size, frames, classes = p.emissions.shape
        dtype = p.emissions.dtype
        gb = p.batch
        d = gb.distinct  # the rows the kernels read (GraphBatch.graph_index)
        entropy = bool(entropy or gradients)
        scores = np.full(size, -np.inf, dtype=dtype)
        H = np.zeros(size, dtype=dtype)
        grads = [None] * 4
        if gradients:
            g_em, g_arc, g_weight, g_start, g_final = _zero_gradients(self, p)
            grads = [g_em, g_arc, g_start, g_final]
        else:
            g_em = g_weight = _zero_strides(size, 1, dtype, 3)
            g_start = g_final = _zero_strides(size, 1, dtype)
        if num_tokens is not None:
            occupancy = np.zeros((size, frames, num_tokens), dtype=dtype)
        else:
            occupancy = _zero_strides(size, 1, dtype, 3)
        onsets = num_tokens is not None and onsets
        onset = (np.zeros((size, frames, num_tokens), dtype=dtype) if onsets
                 else _zero_strides(size, 1, dtype, 3))
        if size and frames:
            run = _Run.of(p, self._settings)
            D, band_weight, cap = self._full_alpha_inputs(p)
            grad_band = (np.zeros((size, band_weight.shape[1]), dtype=dtype)
                         if gradients and D else _zero_strides(size, 1, dtype))
            w = run.workspaces("posteriors", cap, entropy=entropy)
            self.kernel(f"posteriors_{_DTYPE_NAME[dtype]}")(
                p.emissions, p.lengths, run.order, gb.graph_index, p.weight_index,
                d.num_states, d.labels, d.tokens,
                d.src, d.dst, d.in_ptr, d.in_arc, d.out_ptr, d.out_arc,
                self._weight_view(p), p.start, p.final, D, band_weight,
                w["alpha"], w["work"], w["kwork"], w["bp_scratch"],
                w["prefix_entropy"], w["rows"], cap, entropy, gradients,
                num_tokens is not None, onsets, H, g_em, g_weight, grad_band, g_start,
                g_final, occupancy, onset, scores, run.num_threads,
            )  # fmt: skip
            if gradients and D:
                g_arc[...] = gb.arc_values(grad_band)
        tokens = (occupancy if num_tokens is not None else None,
                  onset if onsets else None)
        return Posteriors(scores, H if entropy else None, *grads, *tokens)
