# Design: the padded arrays of a batch of CTC graphs, filled by one compiled pass per
# example. ``ctc_batch`` runs on every training step of ``lattice.torch.ctc_loss``;
# with numpy operations on the whole batch its cost was some forty small array
# operations (about 0.3-0.5 ms here for 16 targets), a tenth of the loss at small
# shapes. The graphs are exactly those of ``ctc`` (the tests compare every array with
# graph-by-graph building), and their band layout comes out directly, so GraphBatch
# does not have to detect it.

from libc.stdint cimport int32_t, int64_t
from libc.math cimport INFINITY


def count_arcs(const int64_t[:] flat, const int64_t[:] lengths, int64_t blank,
               bint skips, int32_t[:] num_arcs):
    """Fill num_arcs[b] = 2 S - 1 + skips of example b (S = 2 K + 1 states).

    Returns the flat position of the first blank id among the targets, or -1.
    """
    cdef Py_ssize_t b, i, off = 0
    cdef int64_t K, n
    cdef Py_ssize_t first_blank = -1
    for b in range(lengths.shape[0]):
        K = lengths[b]
        n = 4 * K + 1
        for i in range(K):
            if flat[off + i] == blank and first_blank < 0:
                first_blank = off + i
            if skips and i + 1 < K and flat[off + i] != flat[off + i + 1]:
                n += 1
        num_arcs[b] = <int32_t>n
        off += K
    return first_blank


def fill(const int64_t[:] flat, const int64_t[:] lengths, int64_t blank, bint skips,
         int32_t[:, :] labels, int32_t[:, :] tokens, double[:, :] start,
         double[:, :] final, int32_t[:, :] src, int32_t[:, :] dst,
         int32_t[:, :] band_slot, int32_t[:, :] band_arc):
    """Fill the padded arrays of the batch (shapes as GraphBatch documents them;
    band_arc (B, D * S_max) with D = 3 if skips else 2, or wider); num_arcs come
    from count_arcs. Arcs: S stays, S - 1 advances, then the skips, each in state
    order; band slot d * S + dst."""
    cdef Py_ssize_t b, s, a, i, off = 0
    cdef Py_ssize_t K, S, A
    cdef Py_ssize_t s_max = labels.shape[1]
    cdef Py_ssize_t a_max = src.shape[1]
    for b in range(lengths.shape[0]):
        K = lengths[b]
        S = 2 * K + 1
        for s in range(s_max):
            if s >= S:
                labels[b, s] = 0
                tokens[b, s] = -1
            elif s % 2 == 0:
                labels[b, s] = <int32_t>blank
                tokens[b, s] = -1
            else:
                labels[b, s] = <int32_t>flat[off + s // 2]
                tokens[b, s] = <int32_t>(s // 2)
            start[b, s] = 0.0 if s < 2 and s < S else -INFINITY
            final[b, s] = 0.0 if S - 2 <= s < S else -INFINITY
        for s in range(band_arc.shape[1]):
            band_arc[b, s] = -1
        for a in range(S):  # stays
            src[b, a] = <int32_t>a
            dst[b, a] = <int32_t>a
            band_slot[b, a] = <int32_t>a
            band_arc[b, a] = <int32_t>a
        for s in range(S - 1):  # advances s -> s + 1
            a = S + s
            src[b, a] = <int32_t>s
            dst[b, a] = <int32_t>(s + 1)
            band_slot[b, a] = <int32_t>(S + s + 1)
            band_arc[b, S + s + 1] = <int32_t>a
        A = 2 * S - 1
        if skips:  # symbol i -> symbol i + 1 when they differ
            for i in range(K - 1):
                if flat[off + i] != flat[off + i + 1]:
                    src[b, A] = <int32_t>(2 * i + 1)
                    dst[b, A] = <int32_t>(2 * i + 3)
                    band_slot[b, A] = <int32_t>(2 * S + 2 * i + 3)
                    band_arc[b, 2 * S + 2 * i + 3] = <int32_t>A
                    A += 1
        for a in range(A, a_max):
            src[b, a] = 0
            dst[b, a] = 0
            band_slot[b, a] = -1
        off += K
