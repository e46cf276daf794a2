// The GPU kernels of lattice's CuPy backend (lattice/backends/cupy.py): forward
// (log and max), forward-backward, Viterbi with its traceback and the best path's
// gradients, each written once as a template over the dtype and the layout of the
// graph (LtCsr: any graph; LtBand: banded graphs, CTC, segmentation, HMM chains).
// The extern "C" entry points that CuPy launches are generated from
// lattice/backends/cuda_source.py's KERNELS table (one per kernel, layout and
// dtype), which also types every launch.
//
// Design:
// - One block per example (blockIdx.x = b), threads over states (and arcs, and
//   classes) in strided loops, a barrier between frames: nothing relies on the
//   warp size or on threads running in lockstep, so the emulation of
//   tests/cuda_emulation (blocks in turn, the threads of a block as host threads,
//   __syncthreads as a real barrier) runs exactly these kernels.
// - Every control flow around a barrier depends only on the example (uniform over
//   the block): early exits come before the first barrier or after a barrier that
//   published their condition in shared memory.
// - Deterministic: no atomics. Each output is written by one thread in a fixed
//   order: the emission gradient of (t, class) sums the posteriors of the class's
//   states in increasing order (the class CSR built by the backend), the gradient
//   of an arc is accumulated over frames by the thread that owns the arc.
// - Example b reads its graph at row graph_index[b] of the distinct graphs and its
//   weights at row weight_index[b] (lattice.backends.Problem); arc weights are
//   w[r * w_rs + t * w_ts + a], w_ts = 0 when they do not depend on time.
// - Template parameters: F, the dtype of the inputs and outputs; A, the dtype of
//   the log-semiring recursions (double for float32 inputs too: the alpha and
//   beta rows of long inputs reach magnitudes where float32 posteriors lose most
//   of their digits). Max-semiring kernels compute in F, as the CPU's do, so that
//   paths and their ties are the CPU's.
// - Workspaces are per example, in global memory: alpha (B, a_bs) with a_bs >= the
//   example's T * S (forward-backward) or 2 * S (forward, a two-row ring); beta
//   (B, 2 * ls) and the posteriors of one frame (B, ls); Viterbi's backpointers
//   (B, a_bs) int32 arc ids.
#pragma once

#include "cells.cuh"

// Layouts: how a kernel walks the arcs of example b's graph g. Each gives the
// in-arcs and out-arcs of a state (k-th one: its weight slot, and the state at its
// other end, -1 when there is none) and the gradient slots (every slot j: its two
// ends). Rows of the distinct graphs: ls = S_max, la = A_max.
struct LtCsr {  // any graph: CSR indexes of in- and out-arcs; slot = arc id
  lt_i32 S, slots;
  const lt_i32 *labels, *src, *dst, *in_ptr, *in_arc, *out_ptr, *out_arc;
  __device__ __forceinline__ lt_i32 in_count(lt_i32 s) const {
    return in_ptr[s + 1] - in_ptr[s];
  }
  __device__ __forceinline__ lt_i32 in_arc_at(lt_i32 s, lt_i32 k, lt_i32* from) const {
    const lt_i32 a = in_arc[in_ptr[s] + k];
    *from = src[a];
    return a;
  }
  __device__ __forceinline__ lt_i32 out_count(lt_i32 s) const {
    return out_ptr[s + 1] - out_ptr[s];
  }
  __device__ __forceinline__ lt_i32 out_arc_at(lt_i32 s, lt_i32 k, lt_i32* to) const {
    const lt_i32 a = out_arc[out_ptr[s] + k];
    *to = dst[a];
    return a;
  }
  __device__ __forceinline__ lt_i32 slot_ends(lt_i32 j, lt_i32* from) const {
    *from = src[j];
    return dst[j];
  }
  __device__ __forceinline__ lt_i32 arc_of(lt_i32 j) const { return j; }
  __device__ __forceinline__ lt_i32 from_of(lt_i32 j, lt_i32) const { return src[j]; }
};

__device__ __forceinline__ LtCsr lt_csr(lt_i64 g, lt_i32 ls, lt_i32 la,
                                        const lt_i32* num_states, const lt_i32* labels,
                                        const lt_i32* src, const lt_i32* dst,
                                        const lt_i32* in_ptr, const lt_i32* in_arc,
                                        const lt_i32* out_ptr, const lt_i32* out_arc) {
  LtCsr G;
  G.S = num_states[g];
  G.labels = labels + g * ls;
  G.src = src + g * la;
  G.dst = dst + g * la;
  G.in_ptr = in_ptr + g * (ls + 1);
  G.in_arc = in_arc + g * la;
  G.out_ptr = out_ptr + g * (ls + 1);
  G.out_arc = out_arc + g * la;
  G.slots = G.in_ptr[G.S];
  return G;
}

// banded graphs (GraphBatch.band = D: every arc from s - d to s, d < D; CTC,
// segmentation, HMM chains): slot d * S + s is the arc from s - d to s (its weight
// -inf where there is none), in the order of the CSR in-arcs (increasing d), so
// that sums and Viterbi ties are those of the CSR layout
struct LtBand {
  lt_i32 S, D, slots;
  const lt_i32 *labels, *band_arc;
  __device__ __forceinline__ lt_i32 in_count(lt_i32) const { return D; }
  __device__ __forceinline__ lt_i32 in_arc_at(lt_i32 s, lt_i32 k, lt_i32* from) const {
    *from = s - k;
    return k * S + s;
  }
  __device__ __forceinline__ lt_i32 out_count(lt_i32) const { return D; }
  __device__ __forceinline__ lt_i32 out_arc_at(lt_i32 s, lt_i32 k, lt_i32* to) const {
    *to = s + k < S ? s + k : -1;
    return k * S + s + k;
  }
  __device__ __forceinline__ lt_i32 slot_ends(lt_i32 j, lt_i32* from) const {
    const lt_i32 s = j % S;
    *from = s - j / S;
    return s;
  }
  __device__ __forceinline__ lt_i32 arc_of(lt_i32 j) const { return band_arc[j]; }
  __device__ __forceinline__ lt_i32 from_of(lt_i32 j, lt_i32 s) const { return s - j / S; }
};

__device__ __forceinline__ LtBand lt_band(lt_i64 g, lt_i32 ls, const lt_i32* num_states,
                                          const lt_i32* labels, lt_i32 D,
                                          const lt_i32* band_arc) {
  LtBand G;
  G.S = num_states[g];
  G.D = D;
  G.labels = labels + g * ls;
  G.band_arc = band_arc + g * (lt_i64)D * ls;
  G.slots = D * G.S;
  return G;
}

// the layout arguments of the entry points (cuda_source.py, KERNELS)
#define LT_CSR_LAYOUT                                                              \
  [&](lt_i64 g) {                                                                  \
    return lt_csr(g, ls, la, num_states, labels, src, dst, in_ptr, in_arc, out_ptr, \
                  out_arc);                                                        \
  }
#define LT_BAND_LAYOUT \
  [&](lt_i64 g) { return lt_band(g, ls, num_states, labels, D, band_arc); }

// alpha of frame t from frame t - 1 (prev) for the states of this thread, under
// the log semiring (Log) or max (bp: the slots of the best in-arcs, or nullptr)
template <class F, class A, bool Log, class L>
__device__ __forceinline__ void lt_alpha_row(const L& G, const F* row, const F* wt,
                                             const A* prev, A* cur, lt_i32* bp) {
  for (lt_i32 s = threadIdx.x; s < G.S; s += blockDim.x) {
    const lt_i32 n = G.in_count(s);
    auto term = [&](lt_i32 k) {
      lt_i32 from;
      const lt_i32 j = G.in_arc_at(s, k, &from);
      return from >= 0 ? prev[from] + A(wt[j]) : lt_neg_inf(A(0));
    };
    A m;
    if (Log) {
      m = lt_log_sum<A>(n, term);
    } else {
      lt_i32 arg;
      m = lt_max_sum<A>(n, term, &arg);
      if (bp) {
        lt_i32 from;
        bp[s] = n ? G.in_arc_at(s, arg, &from) : -1;
      }
    }
    cur[s] = m + A(row[G.labels[s]]);
  }
}

template <class F, class A, class L>
__device__ __forceinline__ void lt_alpha_start(const L& G, const F* row, const F* start,
                                               A* cur) {
  for (lt_i32 s = threadIdx.x; s < G.S; s += blockDim.x)
    cur[s] = A(start[s]) + A(row[G.labels[s]]);
}

// (+)_s last[s] (x) final[s], computed by thread 0 and returned to every thread
template <class A, bool Log, class F>
__device__ __forceinline__ A lt_total(lt_i32 S, const A* last, const F* final,
                                      lt_i32* best_state) {
  __shared__ A total;
  __shared__ lt_i32 state;
  if (threadIdx.x == 0) {
    auto term = [&](lt_i32 s) { return last[s] + A(final[s]); };
    if (Log) {
      total = lt_log_sum<A>(S, term);
    } else {
      lt_i32 arg;
      total = lt_max_sum<A>(S, term, &arg);
      state = (total > lt_neg_inf(A(0)) || total != total) ? arg : -1;
    }
  }
  __syncthreads();
  A value = total;
  if (best_state) *best_state = state;
  __syncthreads();  // total and state are read before another call rewrites them
  return value;
}

// forward: scores[b] = the total score under the semiring (Log or max)
template <class F, class A, bool Log, class Layout>
__device__ void lt_forward(const Layout& layout, const F* em, lt_i64 e_bs, lt_i64 e_ts,
                           const lt_i64* lengths, const lt_i64* graph_index,
                           const lt_i64* weight_index, lt_i32 ls, const F* weight,
                           lt_i64 w_rs, lt_i64 w_ts, const F* start, const F* final,
                           A* ring, F* scores) {
  const lt_i64 b = blockIdx.x;
  const lt_i64 r = weight_index[b];
  const auto G = layout(graph_index[b]);
  const lt_i64 T = lengths[b];
  if (T <= 0 || G.S == 0) {  // uniform over the block: no barrier is skipped
    if (threadIdx.x == 0) scores[b] = lt_neg_inf(F(0));
    return;
  }
  const F* E = em + b * e_bs;
  const F* w = weight + r * w_rs;
  A* rows = ring + b * 2 * (lt_i64)ls;  // frame t at rows + (t & 1) * ls
  lt_alpha_start<F, A>(G, E, start + r * ls, rows);
  __syncthreads();
  for (lt_i64 t = 1; t < T; ++t) {
    lt_alpha_row<F, A, Log>(G, E + t * e_ts, w + t * w_ts, rows + ((t - 1) & 1) * ls,
                            rows + (t & 1) * ls, nullptr);
    __syncthreads();
  }
  const A total =
      lt_total<A, Log>(G.S, rows + ((T - 1) & 1) * ls, final + r * ls, nullptr);
  if (threadIdx.x == 0) scores[b] = F(total);
}

// the alpha rows of frames t0 .. t1 - 1 of one block into blk (frame t at blk +
// (t - t0) * S), from the row of frame t0 (row0, copied to the block's first row)
template <class F, class A, class L>
__device__ __forceinline__ void lt_alpha_block(const L& G, const F* E, lt_i64 e_ts,
                                               const F* w, lt_i64 w_ts, lt_i64 t0,
                                               lt_i64 t1, const A* row0, A* blk) {
  const lt_i32 S = G.S;
  for (lt_i32 s = threadIdx.x; s < S; s += blockDim.x) blk[s] = row0[s];
  __syncthreads();
  for (lt_i64 t = t0 + 1; t < t1; ++t) {
    lt_alpha_row<F, A, true>(G, E + t * e_ts, w + t * w_ts, blk + (t - 1 - t0) * S,
                             blk + (t - t0) * S, nullptr);
    __syncthreads();
  }
}

// the emission gradient of one frame: for each class u the graph uses, the sum of
// the posteriors p of its states, in increasing state order (one thread per class)
template <class F, class A>
__device__ __forceinline__ void lt_class_sums(lt_i32 U, const lt_i32* ucls,
                                              const lt_i32* cptr, const lt_i32* cstates,
                                              const A* p, F* g_row) {
  for (lt_i32 u = threadIdx.x; u < U; u += blockDim.x) {
    A acc = 0;
    for (lt_i32 k = cptr[u]; k < cptr[u + 1]; ++k) acc += p[cstates[k]];
    g_row[ucls[u]] = F(acc);
  }
}

// forward-backward under the log semiring: scores[b] = log Z and the posteriors:
// g_em (B, T, C) per (frame, class) (the caller zeroes it; frames past the length
// and classes the graph lacks stay 0), g_arc (B, Tg, slots) per weight slot in A,
// summed over frames when ga_ts = 0, g_start and g_final (B, ls)
template <class F, class A, class Layout>
__device__ void lt_forward_backward(
    const Layout& layout, const F* em, lt_i64 e_bs, lt_i64 e_ts, const lt_i64* lengths,
    const lt_i64* graph_index, const lt_i64* weight_index, lt_i32 ls,
    const lt_i32* num_classes, const lt_i32* classes, const lt_i32* class_ptr,
    const lt_i32* class_states, const F* weight, lt_i64 w_rs, lt_i64 w_ts,
    const F* start, const F* final, A* alpha, lt_i64 a_bs, lt_i64 checkpoint, A* beta,
    A* post, F* scores,
    F* g_em, lt_i64 g_bs, lt_i64 g_ts, A* g_arc, lt_i64 ga_bs, lt_i64 ga_ts, F* g_start,
    F* g_final) {
  const lt_i64 b = blockIdx.x;
  const lt_i64 g = graph_index[b];
  const lt_i64 r = weight_index[b];
  const auto G = layout(g);
  const lt_i64 T = lengths[b];
  if (T <= 0 || G.S == 0) {
    if (threadIdx.x == 0) scores[b] = lt_neg_inf(F(0));
    return;
  }
  const lt_i32 S = G.S;
  const F* E = em + b * e_bs;
  const F* w = weight + r * w_rs;
  const F* fin = final + r * ls;
  // alpha: a checkpoint row per block of k frames (frame j k), then the rows of
  // one block (frame t of block j at blk + (t - j k) * S); k >= T keeps them all
  const lt_i64 k = checkpoint < T ? checkpoint : T;
  const lt_i64 nb = (T + k - 1) / k;
  A* cp = alpha + b * a_bs;
  A* blk = cp + nb * S;
  for (lt_i64 j = 0; j < nb; ++j) {  // the forward pass: every block in turn
    if (j == 0) {
      lt_alpha_start<F, A>(G, E, start + r * ls, cp);
    } else {
      const lt_i64 t = j * k;  // from the last row of the previous block
      lt_alpha_row<F, A, true>(G, E + t * e_ts, w + t * w_ts, blk + (k - 1) * S,
                               cp + j * S, nullptr);
    }
    __syncthreads();
    lt_alpha_block<F, A>(G, E, e_ts, w, w_ts, j * k, (j + 1) * k < T ? (j + 1) * k : T,
                         cp + j * S, blk);
  }
  const A logz = lt_total<A, true>(S, blk + (T - 1 - (nb - 1) * k) * S, fin, nullptr);
  if (threadIdx.x == 0) scores[b] = F(logz);
  if (logz == lt_neg_inf(A(0))) return;  // no path: the gradients stay 0

  const lt_i32 U = num_classes[g];
  const lt_i32* ucls = classes + g * ls;
  const lt_i32* cptr = class_ptr + g * (ls + 1);
  const lt_i32* cstates = class_states + g * ls;
  A* b_next = beta + b * 2 * (lt_i64)ls;  // beta of frame t
  A* b_cur = b_next + ls;                 // beta of frame t - 1
  A* p = post + b * (lt_i64)ls;           // the state posteriors of one frame
  F* gE = g_em + b * g_bs;
  A* gA = g_arc + b * ga_bs;
  for (lt_i32 s = threadIdx.x; s < S; s += blockDim.x) {
    const A v = blk[(T - 1 - (nb - 1) * k) * S + s] + A(fin[s]);
    b_next[s] = A(fin[s]);
    p[s] = lt_exp(v - logz);
    g_final[b * ls + s] = F(p[s]);
  }
  __syncthreads();
  lt_class_sums(U, ucls, cptr, cstates, p, gE + (T - 1) * g_ts);
  __syncthreads();
  for (lt_i64 j = nb - 1; j >= 0; --j) {  // the backward pass, block by block
  const lt_i64 t0 = j * k;
  if (j < nb - 1)  // the block's rows again, from its checkpoint: the same bits
    lt_alpha_block<F, A>(G, E, e_ts, w, w_ts, t0, t0 + k, cp + j * S, blk);
  for (lt_i64 t = (t0 + k < T - 1 ? t0 + k : T - 1); t > t0; --t) {  // t -> t - 1
    const F* row = E + t * e_ts;
    const F* wt = w + t * w_ts;
    const A* a_prev = blk + (t - 1 - t0) * S;
    for (lt_i32 s = threadIdx.x; s < S; s += blockDim.x) {
      auto term = [&](lt_i32 k) {
        lt_i32 to;
        const lt_i32 j = G.out_arc_at(s, k, &to);
        return to >= 0 ? A(wt[j]) + A(row[G.labels[to]]) + b_next[to]
                       : lt_neg_inf(A(0));
      };
      const A v = lt_log_sum<A>(G.out_count(s), term);
      b_cur[s] = v;
      p[s] = lt_exp(a_prev[s] + v - logz);
    }
    for (lt_i32 j = threadIdx.x; j < G.slots; j += blockDim.x) {  // arcs into frame t
      lt_i32 from;
      const lt_i32 to = G.slot_ends(j, &from);
      if (from < 0) continue;
      const A v = a_prev[from] + A(wt[j]) + A(row[G.labels[to]]) + b_next[to];
      gA[t * ga_ts + j] += lt_exp(v - logz);
    }
    __syncthreads();
    lt_class_sums(U, ucls, cptr, cstates, p, gE + (t - 1) * g_ts);
    __syncthreads();
    A* tmp = b_next;
    b_next = b_cur;
    b_cur = tmp;
  }
  }
  for (lt_i32 s = threadIdx.x; s < S; s += blockDim.x)
    g_start[b * ls + s] = F(lt_exp(cp[s] + b_next[s] - logz));
}

// the maximal runs of frames whose states share a token >= 0 (as _segments of
// lattice/_core.pyx.tp); returns their number
__device__ __forceinline__ lt_i32 lt_segments(lt_i64 T, const lt_i32* path,
                                              const lt_i32* tokens, lt_i32* seg_token,
                                              lt_i32* seg_start, lt_i32* seg_end) {
  lt_i32 n = 0, prev_tok = -1;
  for (lt_i64 t = 0; t < T; ++t) {
    const lt_i32 tok = tokens[path[t]];
    if (tok >= 0 && tok == prev_tok) {
      seg_end[n - 1] = (lt_i32)(t + 1);
    } else if (tok >= 0) {
      seg_token[n] = tok;
      seg_start[n] = (lt_i32)t;
      seg_end[n] = (lt_i32)(t + 1);
      ++n;
    }
    prev_tok = tok;
  }
  return n;
}

// Viterbi: the best path of every example. Outputs (B, p_bs) int32 must be -1 on
// entry (path, path_labels, path_arcs, seg_token, seg_start, seg_end);
// num_segments (B,) and scores (B,) are written. ring (B, 2 * ls) in F,
// backpointers (B, a_bs) with a_bs >= T * S: the slot of the best in-arc.
template <class F, class Layout>
__device__ void lt_viterbi(const Layout& layout, const F* em, lt_i64 e_bs, lt_i64 e_ts,
                           const lt_i64* lengths, const lt_i64* graph_index,
                           const lt_i64* weight_index, lt_i32 ls, const lt_i32* tokens,
                           const F* weight, lt_i64 w_rs, lt_i64 w_ts, const F* start,
                           const F* final, F* ring, lt_i32* backpointers, lt_i64 a_bs,
                           lt_i32* path, lt_i32* path_labels, lt_i32* path_arcs,
                           lt_i64 p_bs, lt_i32* seg_token, lt_i32* seg_start,
                           lt_i32* seg_end, lt_i32* num_segments, F* scores) {
  const lt_i64 b = blockIdx.x;
  const lt_i64 g = graph_index[b];
  const lt_i64 r = weight_index[b];
  const auto G = layout(g);
  const lt_i64 T = lengths[b];
  if (T <= 0 || G.S == 0) {
    if (threadIdx.x == 0) {
      scores[b] = lt_neg_inf(F(0));
      num_segments[b] = 0;
    }
    return;
  }
  const lt_i32 S = G.S;
  const F* E = em + b * e_bs;
  const F* w = weight + r * w_rs;
  F* rows = ring + b * 2 * (lt_i64)ls;  // frame t at rows + (t & 1) * ls
  lt_i32* bp = backpointers + b * a_bs;  // frame t at bp + t * S (t >= 1)
  lt_alpha_start<F, F>(G, E, start + r * ls, rows);
  __syncthreads();
  for (lt_i64 t = 1; t < T; ++t) {
    lt_alpha_row<F, F, false>(G, E + t * e_ts, w + t * w_ts, rows + ((t - 1) & 1) * ls,
                              rows + (t & 1) * ls, bp + t * S);
    __syncthreads();
  }
  lt_i32 s;
  const F best = lt_total<F, false>(S, rows + ((T - 1) & 1) * ls, final + r * ls, &s);
  if (threadIdx.x != 0) return;
  scores[b] = best;
  num_segments[b] = 0;
  if (s < 0 || best != best) return;  // no path, or NaN inputs: no traceback
  lt_i32* pb = path + b * p_bs;
  lt_i32* lb = path_labels + b * p_bs;
  lt_i32* ab = path_arcs + b * p_bs;
  for (lt_i64 t = T - 1; t > 0; --t) {
    pb[t] = s;
    lb[t] = G.labels[s];
    const lt_i32 j = bp[t * S + s];
    ab[t] = G.arc_of(j);
    s = G.from_of(j, s);
  }
  pb[0] = s;
  lb[0] = G.labels[s];
  num_segments[b] = lt_segments(T, pb, tokens + g * ls, seg_token + b * p_bs,
                                seg_start + b * p_bs, seg_end + b * p_bs);
}

// the gradients of the best score (the indicators of the path of lt_viterbi): one
// thread per example walks its path; g_em, g_arc (B, Tg, la) and g_start, g_final
// must be zero on entry
template <class F>
__device__ void lt_best_path_gradients(lt_i32 B, const lt_i64* lengths,
                                       const lt_i32* path, const lt_i32* path_labels,
                                       const lt_i32* path_arcs, lt_i64 p_bs,
                                       lt_i32 ls, F* g_em, lt_i64 g_bs, lt_i64 g_ts,
                                       F* g_arc, lt_i64 ga_bs, lt_i64 ga_ts,
                                       F* g_start, F* g_final) {
  for (lt_i64 b = (lt_i64)blockIdx.x * blockDim.x + threadIdx.x; b < B;
       b += (lt_i64)gridDim.x * blockDim.x) {
    const lt_i32* pb = path + b * p_bs;
    if (lengths[b] <= 0 || pb[0] < 0) continue;
    const lt_i64 T = lengths[b];
    for (lt_i64 t = 0; t < T; ++t) {
      g_em[b * g_bs + t * g_ts + path_labels[b * p_bs + t]] += F(1);
      if (t > 0) g_arc[b * ga_bs + t * ga_ts + path_arcs[b * p_bs + t]] += F(1);
    }
    g_start[b * ls + pb[0]] = F(1);
    g_final[b * ls + pb[T - 1]] = F(1);
  }
}
