// CUDA kernel of the raw philox4x32 operator: the same block function as the CPU, so the
// known-answer tests prove both devices produce the Random123 stream.
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/philox.h"
#include "common/philox_checks.h"
#include "cuda/launch.h"

namespace plugkit::cuda {
namespace {

__global__ void philox_kernel(const int64_t* counters, const int64_t* key, int64_t n, int64_t* out) {
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads) {
    U32x4 ctr;
    for (int j = 0; j < 4; ++j) ctr.v[j] = static_cast<uint32_t>(counters[4 * i + j]);
    const U32x4 w = philox4x32_10(ctr, static_cast<uint32_t>(key[0]), static_cast<uint32_t>(key[1]));
    for (int j = 0; j < 4; ++j) out[4 * i + j] = w.v[j];
  }
}

at::Tensor philox4x32(const at::Tensor& counters_in, const at::Tensor& key_in) {
  check_philox_args(counters_in, key_in);
  const c10::cuda::CUDAGuard guard(counters_in.device());
  const at::Tensor counters = counters_in.contiguous(), key = key_in.contiguous();
  at::Tensor out = at::empty_like(counters);
  const int64_t n = counters.size(0);
  if (n == 0) return out;
  philox_kernel<<<grid_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
      counters.const_data_ptr<int64_t>(), key.const_data_ptr<int64_t>(), n,
      out.mutable_data_ptr<int64_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CUDA, m) { m.impl("philox4x32", &philox4x32); }

}  // namespace plugkit::cuda
