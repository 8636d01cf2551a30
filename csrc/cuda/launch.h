// Launch helpers shared by the CUDA kernels. Kept free of ATen/cuda/CUDAContext.h (it needs
// cusparse.h, which minimal CUDA toolkits lack) so each .cu compiles quickly.
#pragma once

#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>

#include <algorithm>
#include <cstdint>

// The CUDA kernels' dtypes: float32/float64, and float16/bfloat16 storage with float32 math.
#define PLUGKIT_DISPATCH_CUDA_FLOATS(TYPE, NAME, ...) \
  AT_DISPATCH_FLOATING_TYPES_AND2(at::kHalf, at::kBFloat16, TYPE, NAME, __VA_ARGS__)

namespace plugkit::cuda {

constexpr int kThreads = 256;

// Grid for a grid-stride loop over n elements: enough blocks to fill any current GPU.
inline unsigned grid_for(int64_t n) {
  return static_cast<unsigned>(std::max<int64_t>(1, std::min<int64_t>((n + kThreads - 1) / kThreads, 1 << 16)));
}

// Sum over the block in a fixed tree order (deterministic). All threads get the total.
template <typename A>
__device__ A block_sum(A value) {
  __shared__ A shared[kThreads];
  __syncthreads();  // a previous call's readers are done with shared[0]
  shared[threadIdx.x] = value;
  __syncthreads();
  for (int stride = kThreads / 2; stride > 0; stride >>= 1) {
    if (threadIdx.x < stride) shared[threadIdx.x] += shared[threadIdx.x + stride];
    __syncthreads();
  }
  return shared[0];
}

}  // namespace plugkit::cuda
