// The cell maths of the GPU kernels (kernels.cuh), written once for every compiler
// that builds them: NVRTC (CuPy's RawModule, at run time), nvcc (the compile tests)
// and the host C++ compiler (the emulation of tests/cuda_emulation, which runs the
// same kernels on the CPU in the test suite).
//
// Design:
// - No standard header under NVRTC, which has none: the integer types are lattice's
//   own (lt_i32, lt_i64) and infinity comes from its bit pattern on the device.
// - A semiring "sum" over a state's incoming terms is computed as the CPU kernels
//   compute it (lattice/_core.pyx.tp, _alpha_log_*): the first largest term m (NaN
//   wins), then m + log(1 + sum of exp(term - m) over the other terms), where the
//   largest term contributes exactly 1. Under max: that first largest term, whose
//   position is the Viterbi backpointer (ties go to the first in CSR order).
// - Terms are given as a functor of their position, so that a cell reads its
//   inputs twice (max, then sum) instead of staging them in memory.
#pragma once

#if defined(__CUDACC__)
#define LT_HD __host__ __device__ __forceinline__
#else
#include <math.h>
#define LT_HD inline
#endif

typedef int lt_i32;
typedef long long lt_i64;

LT_HD float lt_neg_inf(float) {
#if defined(__CUDA_ARCH__)
  return __int_as_float(0xff800000u);
#else
  return -INFINITY;
#endif
}

LT_HD double lt_neg_inf(double) {
#if defined(__CUDA_ARCH__)
  return __longlong_as_double(0xfff0000000000000ull);
#else
  return -(double)INFINITY;
#endif
}

LT_HD float lt_exp(float x) { return expf(x); }
LT_HD double lt_exp(double x) { return exp(x); }
LT_HD float lt_log(float x) { return logf(x); }
LT_HD double lt_log(double x) { return log(x); }

// whether v replaces m as the running best: larger, or NaN (which then stays)
template <class F>
LT_HD bool lt_better(F v, F m) {
  return v > m || v != v;
}

// log-semiring sum of n terms term(0) .. term(n - 1); -inf when n == 0 or every
// term is -inf; NaN when a term is NaN
template <class F, class Term>
LT_HD F lt_log_sum(lt_i32 n, const Term& term) {
  const F neg_inf = lt_neg_inf(F(0));
  F m = neg_inf;
  lt_i32 km = -1;
  for (lt_i32 k = 0; k < n; ++k) {
    F v = term(k);
    if (lt_better(v, m)) {
      m = v;
      km = k;
    }
  }
  if (km < 0) return neg_inf;
  if (m != m) return m;
  F acc = F(1);
  for (lt_i32 k = 0; k < n; ++k) {
    if (k != km) acc += lt_exp(term(k) - m);
  }
  return m + lt_log(acc);
}

// max-semiring sum of n terms, and in *arg the position of the first best one (0
// when n == 0 or every term is -inf: never traced back, the cell is -inf)
template <class F, class Term>
LT_HD F lt_max_sum(lt_i32 n, const Term& term, lt_i32* arg) {
  F m = lt_neg_inf(F(0));
  lt_i32 km = 0;
  for (lt_i32 k = 0; k < n; ++k) {
    F v = term(k);
    if (lt_better(v, m)) {
      m = v;
      km = k;
    }
  }
  *arg = km;
  return m;
}
