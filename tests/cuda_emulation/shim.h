// The host emulation of the CUDA built-ins the GPU kernels use, so that
// lattice/backends/cuda/kernels.cuh compiles with the host C++ compiler and runs
// in the test suite (tests/cuda_emulation/runtime.py builds it).
//
// Design:
// - Blocks run one after another; the threads of a block are real host threads
//   (std::thread), and __syncthreads is a real barrier (std::barrier): a kernel that
//   reads a value another thread writes without a barrier between them races here
//   as on a GPU, and strided loops over threads run with blockDim.x > 1.
// - __shared__ is a static variable: one copy, shared by the threads of the block
//   that is running, as the block's shared memory is.
// - A thread that returns early drops out of the barrier (so that a test fails
//   instead of hanging), and every thread counts its barriers: a block whose
//   threads met different numbers of barriers (undefined behaviour on a GPU) makes
//   the launch return an error.
// - Not emulated: warp-level intrinsics, atomics, dynamic shared memory (the
//   kernels use none of them).
#pragma once

#include <atomic>
#include <barrier>
#include <cstddef>
#include <thread>
#include <type_traits>
#include <utility>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static

struct lt_emu_dim3 {
  unsigned x = 0, y = 0, z = 0;
};

inline thread_local lt_emu_dim3 threadIdx;
inline thread_local lt_emu_dim3 blockIdx;
inline lt_emu_dim3 blockDim;
inline lt_emu_dim3 gridDim;
inline thread_local std::barrier<>* lt_emu_barrier = nullptr;
inline thread_local long lt_emu_barriers_met = 0;

inline void __syncthreads() {
  ++lt_emu_barriers_met;
  lt_emu_barrier->arrive_and_wait();
}

template <class... P, std::size_t... I>
void lt_emu_call(void (*kernel)(P...), void** params, std::index_sequence<I...>) {
  kernel(*static_cast<std::remove_cv_t<std::remove_reference_t<P>>*>(params[I])...);
}

// run kernel on grid blocks of block threads; 0 on success, 1 if the threads of a
// block met different numbers of barriers
template <class... P>
int lt_emu_launch(void (*kernel)(P...), unsigned grid, unsigned block, void** params) {
  gridDim = {grid, 1, 1};
  blockDim = {block, 1, 1};
  int status = 0;
  for (unsigned bx = 0; bx < grid; ++bx) {
    std::barrier<> barrier(block);
    std::vector<long> met(block);
    std::vector<std::thread> threads;
    for (unsigned tx = 0; tx < block; ++tx) {
      threads.emplace_back([&, tx] {
        threadIdx = {tx, 0, 0};
        blockIdx = {bx, 0, 0};
        lt_emu_barrier = &barrier;
        lt_emu_barriers_met = 0;
        lt_emu_call(kernel, params, std::index_sequence_for<P...>{});
        met[tx] = lt_emu_barriers_met;
        barrier.arrive_and_drop();
      });
    }
    for (auto& t : threads) t.join();
    for (unsigned tx = 1; tx < block; ++tx)
      if (met[tx] != met[0]) status = 1;
  }
  return status;
}
