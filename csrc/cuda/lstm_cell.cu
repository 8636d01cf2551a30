// CUDA kernels of the LSTM cell (docs/operators.md): one thread per hidden unit, running the
// formulas of common/pointwise.h in float32 for half/bfloat16 storage (float64 stays float64).
// Headers are kept light on purpose (nvcc compiles each include; this keeps the build short):
// no torch/extension.h, no ATen/cuda/*.
#include <ATen/Dispatch.h>
#include <ATen/OpMathType.h>
#include <ATen/core/Tensor.h>
#include <c10/cuda/CUDAException.h>
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#include <torch/library.h>


#include "common/pointwise.h"
#include "cuda/launch.h"
#include "lstm.h"

namespace plugkit {
namespace {

using cuda::grid_for;
using cuda::kThreads;

// Consecutive threads take consecutive units of a row, so every gate access is coalesced.
template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* gates, const scalar_t* __restrict__ c_prev,
                               const scalar_t* __restrict__ bias,  // [4H] or nullptr
                               scalar_t* __restrict__ h, scalar_t* __restrict__ c,
                               scalar_t* act, int64_t B, int64_t H) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < B * H;
       u += stride) {
    const int64_t off = (u / H) * 4 * H + u % H;  // gate k of unit u at off + k*H
    auto gate = [&](int64_t k) {
      const acc_t pre = gates[off + k * H];
      return bias ? pre + static_cast<acc_t>(bias[k * H + u % H]) : pre;
    };
    // act may alias gates: all four loads happen before the stores.
    const auto out = lstm_cell_forward<acc_t>(gate(0), gate(1), gate(2), gate(3), c_prev[u]);
    act[off] = out.i;
    act[off + H] = out.f;
    act[off + 2 * H] = out.g;
    act[off + 3 * H] = out.o;
    c[u] = out.c;
    h[u] = out.h;
  }
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ grad_h, const scalar_t* grad_c,
                                const scalar_t* __restrict__ act,
                                const scalar_t* __restrict__ c_prev,
                                const scalar_t* __restrict__ c, scalar_t* __restrict__ dgates,
                                scalar_t* dc_prev, int64_t B, int64_t H) {
  using acc_t = at::opmath_type<scalar_t>;
  const int64_t stride = static_cast<int64_t>(gridDim.x) * blockDim.x;
  for (int64_t u = static_cast<int64_t>(blockIdx.x) * blockDim.x + threadIdx.x; u < B * H;
       u += stride) {
    const int64_t off = (u / H) * 4 * H + u % H;
    // dc_prev may alias grad_c: grad_c[u] is read before dc_prev[u] is written.
    const auto grad = lstm_cell_backward<acc_t>(act[off], act[off + H], act[off + 2 * H],
                                                act[off + 3 * H], c_prev[u], c[u], grad_h[u],
                                                grad_c[u]);
    dgates[off] = grad.di;
    dgates[off + H] = grad.df;
    dgates[off + 2 * H] = grad.dg;
    dgates[off + 3 * H] = grad.do_;
    dc_prev[u] = grad.dc_prev;
  }
}

}  // namespace

void lstm_cell_forward_cuda(const at::Tensor& gates, const at::Tensor& c_prev,
                            const at::Tensor& bias, const at::Tensor& h, const at::Tensor& c,
                            const at::Tensor& act) {
  const int64_t B = c_prev.size(0), H = c_prev.size(1);
  if (B * H == 0) return;
  const c10::cuda::CUDAGuard guard(gates.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  PLUGKIT_DISPATCH_CUDA_FLOATS(gates.scalar_type(),
                               "plugkit_lstm_cell_cuda", [&] {
    forward_kernel<scalar_t><<<grid_for(B * H), kThreads, 0, stream>>>(
        gates.const_data_ptr<scalar_t>(), c_prev.const_data_ptr<scalar_t>(),
        bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
        h.mutable_data_ptr<scalar_t>(), c.mutable_data_ptr<scalar_t>(),
        act.mutable_data_ptr<scalar_t>(), B, H);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

void lstm_cell_backward_cuda(const at::Tensor& grad_h, const at::Tensor& grad_c,
                             const at::Tensor& act, const at::Tensor& c_prev, const at::Tensor& c,
                             const at::Tensor& dgates, const at::Tensor& dc_prev) {
  const int64_t B = c_prev.size(0), H = c_prev.size(1);
  if (B * H == 0) return;
  const c10::cuda::CUDAGuard guard(act.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  PLUGKIT_DISPATCH_CUDA_FLOATS(act.scalar_type(),
                               "plugkit_lstm_cell_backward_cuda", [&] {
    backward_kernel<scalar_t><<<grid_for(B * H), kThreads, 0, stream>>>(
        grad_h.const_data_ptr<scalar_t>(), grad_c.const_data_ptr<scalar_t>(),
        act.const_data_ptr<scalar_t>(), c_prev.const_data_ptr<scalar_t>(),
        c.const_data_ptr<scalar_t>(), dgates.mutable_data_ptr<scalar_t>(),
        dc_prev.mutable_data_ptr<scalar_t>(), B, H);
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
}

TORCH_LIBRARY_IMPL(plugkit, CUDA, m) {
  m.impl("lstm_cell", &lstm_cell_op<&lstm_cell_forward_cuda>);
  m.impl("lstm_cell_backward", &lstm_cell_backward_op<&lstm_cell_backward_cuda>);
}

}  // namespace plugkit
