// CUDA kernels of the diffusion operators (docs/operators.md). A thread takes one Philox block
// at a time: the four consecutive elements whose normals that block yields, so the noise is
// drawn once per element and never stored. The loss sums per-block partials over a grid that
// depends on the size only, then adds them in one block: bit-identical run to run. Keys, the
// schedule and the incoming gradient are read on the device, so nothing syncs with the host.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/diffusion.h"
#include "common/philox.h"
#include "cuda/launch.h"

namespace plugkit::cuda {
namespace {

constexpr int kMaxPartials = 1024;

__device__ __forceinline__ void sincos_(float x, float* s, float* c) { sincosf(x, s, c); }
__device__ __forceinline__ void sincos_(double x, double* s, double* c) { sincos(x, s, c); }

// The four normals of Philox block `block` (stream positions 4 block .. 4 block + 3), as
// reparameterize_kl's kernel draws them.
template <typename A>
__device__ __forceinline__ void normals4(uint64_t seed, uint64_t offset, int64_t block,
                                         A out[4]) {
  const U32x4 w = philox_block(seed, offset, static_cast<uint64_t>(block));
#pragma unroll
  for (int pair = 0; pair < 2; ++pair) {
    const A radius = sqrt(A(-2) * Ops<A>::log(uniform_open<A>(w.v[2 * pair])));
    A s, c;
    sincos_(static_cast<A>(kTwoPi) * uniform_open<A>(w.v[2 * pair + 1]), &s, &c);
    out[2 * pair] = radius * c;
    out[2 * pair + 1] = radius * s;
  }
}

// Local elements [0, n) sit at stream positions [start, start + n); group g holds the elements
// of Philox block first + g that fall in that range (up to four).
struct Groups {
  int64_t start, n, first, count;

  Groups(int64_t start_, int64_t n_)
      : start(start_), n(n_), first(start_ / 4),
        count(n_ == 0 ? 0 : (start_ + n_ + 3) / 4 - start_ / 4) {}

  // The local index of lane k (0..3) of group g; outside [0, n) when the lane is not ours.
  __device__ int64_t index(int64_t g, int k) const { return 4 * (first + g) + k - start; }
};

// sqrt(abar) and sqrt(1 - abar) of the row of element i, for consecutive i: recomputed (in
// double, so 1 - abar keeps its digits near abar = 1) only when a row boundary is crossed.
template <typename A>
struct RowCoefficients {
  const double* abar;
  int64_t width, row = -1, col = 0;
  A keep = 0, spread = 0;

  __device__ RowCoefficients(const double* abar_, int64_t width_) : abar(abar_), width(width_) {}

  __device__ void at(int64_t i) {
    if (row >= 0 && ++col < width) return;
    if (row < 0) {
      row = i / width;
      col = i - row * width;
    } else {
      col = 0;
      ++row;
    }
    const double a = abar[row];
    keep = static_cast<A>(::sqrt(a));
    spread = static_cast<A>(::sqrt(1.0 - a));
  }
};

inline unsigned group_blocks(const Groups& groups) { return grid_for(groups.count); }

template <typename scalar_t>
__global__ void noise_kernel(const scalar_t* __restrict__ x0, const double* __restrict__ abar,
                             const scalar_t* __restrict__ eps, const int64_t* __restrict__ key,
                             Groups groups, int64_t width, scalar_t* __restrict__ out) {
  using A = at::opmath_type<scalar_t>;
  const uint64_t seed = eps ? 0 : static_cast<uint64_t>(key[0]);
  const uint64_t offset = eps ? 0 : static_cast<uint64_t>(key[1]);
  for (int64_t g = blockIdx.x * int64_t(kThreads) + threadIdx.x; g < groups.count;
       g += int64_t(gridDim.x) * kThreads) {
    A noise[4];
    if (!eps) normals4<A>(seed, offset, groups.first + g, noise);
    RowCoefficients<A> rows(abar, width);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = groups.index(g, k);
      if (i < 0 || i >= groups.n) continue;
      rows.at(i);
      const A e = eps ? static_cast<A>(eps[i]) : noise[k];
      out[i] = static_cast<scalar_t>(noised(static_cast<A>(x0[i]), e, rows.keep, rows.spread));
    }
  }
}

template <typename scalar_t>
__global__ void noise_backward_kernel(const scalar_t* __restrict__ grad,
                                      const double* __restrict__ abar, Groups groups,
                                      int64_t width, scalar_t* __restrict__ out) {
  using A = at::opmath_type<scalar_t>;
  for (int64_t g = blockIdx.x * int64_t(kThreads) + threadIdx.x; g < groups.count;
       g += int64_t(gridDim.x) * kThreads) {
    RowCoefficients<A> rows(abar, width);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = groups.index(g, k);
      if (i < 0 || i >= groups.n) continue;
      rows.at(i);
      out[i] = static_cast<scalar_t>(rows.keep * static_cast<A>(grad[i]));
    }
  }
}

template <typename scalar_t, typename A>
__global__ void loss_partials(const scalar_t* __restrict__ pred, const scalar_t* __restrict__ eps,
                              const int64_t* __restrict__ key, Groups groups, A* partial) {
  const uint64_t seed = eps ? 0 : static_cast<uint64_t>(key[0]);
  const uint64_t offset = eps ? 0 : static_cast<uint64_t>(key[1]);
  A acc = 0;
  for (int64_t g = blockIdx.x * int64_t(kThreads) + threadIdx.x; g < groups.count;
       g += int64_t(gridDim.x) * kThreads) {
    A noise[4];
    if (!eps) normals4<A>(seed, offset, groups.first + g, noise);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = groups.index(g, k);
      if (i < 0 || i >= groups.n) continue;
      acc += squared_error(static_cast<A>(pred[i]), eps ? static_cast<A>(eps[i]) : noise[k]);
    }
  }
  const A total = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

template <typename scalar_t, typename A>
__global__ void loss_finish(const A* __restrict__ partial, int count, A scale,
                            scalar_t* __restrict__ out) {
  A total = 0;
  for (int i = threadIdx.x; i < count; i += kThreads) total += partial[i];
  total = block_sum(total);
  if (threadIdx.x == 0) *out = static_cast<scalar_t>(total * scale);
}

template <typename scalar_t>
__global__ void loss_backward_kernel(const scalar_t* __restrict__ grad,
                                     const scalar_t* __restrict__ pred,
                                     const scalar_t* __restrict__ eps,
                                     const int64_t* __restrict__ key, Groups groups,
                                     scalar_t* __restrict__ out) {
  using A = at::opmath_type<scalar_t>;
  const uint64_t seed = eps ? 0 : static_cast<uint64_t>(key[0]);
  const uint64_t offset = eps ? 0 : static_cast<uint64_t>(key[1]);
  const A scale = static_cast<A>(2.0 * static_cast<double>(*grad) / static_cast<double>(groups.n));
  for (int64_t g = blockIdx.x * int64_t(kThreads) + threadIdx.x; g < groups.count;
       g += int64_t(gridDim.x) * kThreads) {
    A noise[4];
    if (!eps) normals4<A>(seed, offset, groups.first + g, noise);
#pragma unroll
    for (int k = 0; k < 4; ++k) {
      const int64_t i = groups.index(g, k);
      if (i < 0 || i >= groups.n) continue;
      const A e = eps ? static_cast<A>(eps[i]) : noise[k];
      out[i] = static_cast<scalar_t>(squared_error_grad(static_cast<A>(pred[i]), e, scale));
    }
  }
}

template <typename scalar_t, bool Clip>
__global__ void ddim_kernel(const scalar_t* __restrict__ x_t, const scalar_t* __restrict__ eps,
                            const double* __restrict__ abar_t, const double* __restrict__ abar_s,
                            double clip, int64_t n, scalar_t* __restrict__ out) {
  using A = at::opmath_type<scalar_t>;
  const DdimStep<A> step(ddim_coefficients(*abar_t, *abar_s));
  const A bound = static_cast<A>(clip);
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads) {
    const A x = static_cast<A>(x_t[i]), e = static_cast<A>(eps[i]);
    out[i] = static_cast<scalar_t>(Clip ? step.clipped(x, e, bound) : step(x, e));
  }
}

// --- entry points ------------------------------------------------------------------------------

at::Tensor noise(const at::Tensor& x0, const at::Tensor& abar, const std::optional<at::Tensor>& eps,
                 const std::optional<at::Tensor>& key, int64_t row_start) {
  const NoiseArgs a = check_noise_args(x0, abar, eps, key, row_start, /*allow_half=*/true);
  const c10::cuda::CUDAGuard guard(x0.device());
  at::Tensor out = at::empty_like(a.x0);
  const Groups groups(a.start, a.x0.numel());
  if (groups.count == 0) return out;
  PLUGKIT_DISPATCH_CUDA_FLOATS(x0.scalar_type(), "plugkit_diffusion_noise_cuda", [&] {
    noise_kernel<scalar_t><<<group_blocks(groups), kThreads, 0,
                             c10::cuda::getCurrentCUDAStream()>>>(
        a.x0.const_data_ptr<scalar_t>(), a.abar.const_data_ptr<double>(),
        a.eps.defined() ? a.eps.const_data_ptr<scalar_t>() : nullptr,
        a.key.defined() ? a.key.const_data_ptr<int64_t>() : nullptr, groups, a.width,
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor noise_backward(const at::Tensor& grad_in, const at::Tensor& abar_in) {
  check_noise_backward_args(grad_in, abar_in, /*allow_half=*/true);
  const c10::cuda::CUDAGuard guard(grad_in.device());
  const at::Tensor grad = grad_in.contiguous(), abar = abar_in.to(at::kDouble).contiguous();
  at::Tensor out = at::empty_like(grad);
  const Groups groups(0, grad.numel());
  if (groups.count == 0) return out;
  PLUGKIT_DISPATCH_CUDA_FLOATS(grad.scalar_type(), "plugkit_diffusion_noise_backward_cuda", [&] {
    noise_backward_kernel<scalar_t><<<group_blocks(groups), kThreads, 0,
                                      c10::cuda::getCurrentCUDAStream()>>>(
        grad.const_data_ptr<scalar_t>(), abar.const_data_ptr<double>(), groups,
        row_width(grad), out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor loss(const at::Tensor& pred, const std::optional<at::Tensor>& eps,
                const std::optional<at::Tensor>& key, int64_t row_start) {
  const LossArgs a = check_loss_args(pred, eps, key, row_start, /*allow_half=*/true);
  const c10::cuda::CUDAGuard guard(pred.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const Groups groups(a.start, a.pred.numel());
  at::Tensor out = at::empty({}, pred.options());
  const int count = static_cast<int>(
      std::min<int64_t>(kMaxPartials, (groups.count + kThreads - 1) / kThreads));
  PLUGKIT_DISPATCH_CUDA_FLOATS(pred.scalar_type(), "plugkit_diffusion_loss_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    at::Tensor partial =
        at::empty({count}, pred.options().dtype(c10::CppTypeToScalarType<A>::value));
    loss_partials<scalar_t, A><<<count, kThreads, 0, stream>>>(
        a.pred.const_data_ptr<scalar_t>(),
        a.eps.defined() ? a.eps.const_data_ptr<scalar_t>() : nullptr,
        a.key.defined() ? a.key.const_data_ptr<int64_t>() : nullptr, groups,
        partial.mutable_data_ptr<A>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
    loss_finish<scalar_t, A><<<1, kThreads, 0, stream>>>(
        partial.const_data_ptr<A>(), count, static_cast<A>(1.0 / static_cast<double>(groups.n)),
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor loss_backward(const at::Tensor& grad, const at::Tensor& pred,
                         const std::optional<at::Tensor>& eps,
                         const std::optional<at::Tensor>& key, int64_t row_start) {
  const LossArgs a = check_loss_args(pred, eps, key, row_start, /*allow_half=*/true);
  // read by every thread on the device: one value of pred's dtype on pred's device
  TORCH_CHECK_VALUE(grad.numel() == 1 && grad.scalar_type() == pred.scalar_type() &&
                        grad.device() == pred.device(),
                    "grad must be a single ", pred.scalar_type(), " value on ", pred.device(),
                    ", got ", grad.scalar_type(), " of shape ", grad.sizes(), " on ",
                    grad.device());
  const c10::cuda::CUDAGuard guard(pred.device());
  const at::Tensor g = grad.contiguous();
  at::Tensor out = at::empty_like(a.pred);
  const Groups groups(a.start, a.pred.numel());
  PLUGKIT_DISPATCH_CUDA_FLOATS(pred.scalar_type(), "plugkit_diffusion_loss_backward_cuda", [&] {
    loss_backward_kernel<scalar_t><<<group_blocks(groups), kThreads, 0,
                                     c10::cuda::getCurrentCUDAStream()>>>(
        g.const_data_ptr<scalar_t>(), a.pred.const_data_ptr<scalar_t>(),
        a.eps.defined() ? a.eps.const_data_ptr<scalar_t>() : nullptr,
        a.key.defined() ? a.key.const_data_ptr<int64_t>() : nullptr, groups,
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

at::Tensor ddim(const at::Tensor& x_t_in, const at::Tensor& eps_in, const at::Tensor& abar_t_in,
                const at::Tensor& abar_s_in, std::optional<double> clip) {
  check_ddim_args(x_t_in, eps_in, abar_t_in, abar_s_in, clip, /*allow_half=*/true);
  const c10::cuda::CUDAGuard guard(x_t_in.device());
  // the values stay on the device (no sync); their range is the caller's (docs/operators.md)
  const at::Tensor x_t = x_t_in.contiguous(), eps = eps_in.contiguous();
  const at::Tensor abar_t = abar_t_in.to(at::kDouble), abar_s = abar_s_in.to(at::kDouble);
  at::Tensor out = at::empty_like(x_t);
  const int64_t n = x_t.numel();
  if (n == 0) return out;
  PLUGKIT_DISPATCH_CUDA_FLOATS(x_t.scalar_type(), "plugkit_ddim_step_cuda", [&] {
    auto* const kernel =
        clip.has_value() ? ddim_kernel<scalar_t, true> : ddim_kernel<scalar_t, false>;
    kernel<<<grid_for(n), kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        x_t.const_data_ptr<scalar_t>(), eps.const_data_ptr<scalar_t>(),
        abar_t.const_data_ptr<double>(), abar_s.const_data_ptr<double>(), clip.value_or(0.0), n,
        out.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CUDA, m) {
  m.impl("diffusion_noise", &noise);
  m.impl("diffusion_noise_backward", &noise_backward);
  m.impl("diffusion_loss", &loss);
  m.impl("diffusion_loss_backward", &loss_backward);
  m.impl("ddim_step", &ddim);
}

}  // namespace plugkit::cuda
