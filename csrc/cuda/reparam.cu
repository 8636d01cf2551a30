// CUDA kernels of reparameterize_kl (docs/operators.md). Forward: one warp per row draws the
// Philox normals, writes z and reduces the row's KL with shuffles in a fixed order. The
// (seed, offset) key is read from device memory, so nothing syncs with the host and the kernel
// is safe to capture in a CUDA graph.
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include "common/philox.h"
#include "common/pointwise.h"
#include "common/reparam.h"
#include "cuda/launch.h"

namespace plugkit::cuda {
namespace {

constexpr int kWarp = 32;

__device__ __forceinline__ void sincos_(float x, float* s, float* c) { sincosf(x, s, c); }
__device__ __forceinline__ void sincos_(double x, double* s, double* c) { sincos(x, s, c); }

// Normals at consecutive stream positions; remembers the last Philox block, so a run of up to
// four neighbours costs at most two block evaluations.
template <typename A>
struct NormalStream {
  uint64_t seed, offset;
  int64_t block = -1;
  A values[4];

  __device__ A at(int64_t n) {
    if (n / 4 != block) {
      block = n / 4;
      const U32x4 w = philox_block(seed, offset, static_cast<uint64_t>(block));
      for (int pair = 0; pair < 2; ++pair) {
        const A radius = sqrt(A(-2) * Ops<A>::log(uniform_open<A>(w.v[2 * pair])));
        A s, c;
        sincos_(static_cast<A>(kTwoPi) * uniform_open<A>(w.v[2 * pair + 1]), &s, &c);
        values[2 * pair] = radius * c;
        values[2 * pair + 1] = radius * s;
      }
    }
    return values[n % 4];
  }
};

template <typename scalar_t>
__global__ void forward_kernel(const scalar_t* __restrict__ mu, const scalar_t* __restrict__ lv,
                               const scalar_t* __restrict__ eps, const int64_t* __restrict__ key,
                               int64_t rows, int64_t dim, scalar_t* __restrict__ z,
                               scalar_t* __restrict__ kl) {
  using A = at::opmath_type<scalar_t>;
  const int lane = threadIdx.x % kWarp;
  NormalStream<A> noise{eps ? 0 : static_cast<uint64_t>(key[0]),
                        eps ? 0 : static_cast<uint64_t>(key[1])};
  // Warp-stride loop over rows (the grid is capped, see row_blocks). `row` is uniform across the
  // warp, so every lane runs the same iterations and the shuffles below stay full-warp.
  const int64_t warps = int64_t(gridDim.x) * (blockDim.x / kWarp);
  for (int64_t row = (blockIdx.x * int64_t(blockDim.x) + threadIdx.x) / kWarp; row < rows;
       row += warps) {
    A kl_sum = 0;
    for (int64_t d = 4 * lane; d < dim; d += 4 * kWarp) {  // each lane takes 4 neighbours
      for (int64_t n = row * dim + d, end = row * dim + min(d + 4, dim); n < end; ++n) {
        const A m = static_cast<A>(mu[n]), l = static_cast<A>(lv[n]);
        const A e = eps ? static_cast<A>(eps[n]) : noise.at(n);
        z[n] = static_cast<scalar_t>(m + Ops<A>::exp(A(0.5) * l) * e);
        kl_sum += kl_term(m, l);
      }
    }
    for (int shift = kWarp / 2; shift > 0; shift /= 2)
      kl_sum += __shfl_down_sync(0xffffffffu, kl_sum, shift);
    if (lane == 0) kl[row] = static_cast<scalar_t>(A(0.5) * kl_sum);
  }
}

// Blocks for one warp per row, capped like grid_for: rows * kWarp / kThreads blocks would pass
// gridDim.x's 2^31 - 1 (and wrap in the unsigned cast) once rows exceeds about 1.7e10.
unsigned row_blocks(int64_t rows) {
  return grid_for(rows * kWarp);
}

template <typename scalar_t>
__global__ void backward_kernel(const scalar_t* __restrict__ dz, const scalar_t* __restrict__ dkl,
                                const scalar_t* __restrict__ mu, const scalar_t* __restrict__ lv,
                                const scalar_t* __restrict__ z, int64_t n, int64_t dim,
                                scalar_t* __restrict__ d_mu, scalar_t* __restrict__ d_lv) {
  using A = at::opmath_type<scalar_t>;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads) {
    const A g = static_cast<A>(dz[i]), g_kl = static_cast<A>(dkl[i / dim]);
    const A m = static_cast<A>(mu[i]), l = static_cast<A>(lv[i]);
    d_mu[i] = static_cast<scalar_t>(g + m * g_kl);
    d_lv[i] = static_cast<scalar_t>(A(0.5) * (g * (static_cast<A>(z[i]) - m) +
                                              (Ops<A>::exp(l) - A(1)) * g_kl));
  }
}

std::tuple<at::Tensor, at::Tensor> reparameterize_kl(const at::Tensor& mu, const at::Tensor& logvar,
                                                     const std::optional<at::Tensor>& eps,
                                                     const std::optional<at::Tensor>& key) {
  const ReparamArgs a = check_reparam_args(mu, logvar, eps, key, /*allow_half=*/true);
  const c10::cuda::CUDAGuard guard(mu.device());
  at::Tensor z = at::empty_like(a.mu);
  at::Tensor kl = at::zeros(kl_shape(mu), mu.options());
  if (a.rows == 0) return {z, kl};
  const unsigned blocks = row_blocks(a.rows);
  PLUGKIT_DISPATCH_CUDA_FLOATS(mu.scalar_type(), "plugkit_reparameterize_kl_cuda", [&] {
    forward_kernel<scalar_t><<<blocks, kThreads, 0, c10::cuda::getCurrentCUDAStream()>>>(
        a.mu.const_data_ptr<scalar_t>(), a.logvar.const_data_ptr<scalar_t>(),
        a.eps.defined() ? a.eps.const_data_ptr<scalar_t>() : nullptr,
        a.key.defined() ? a.key.const_data_ptr<int64_t>() : nullptr, a.rows, a.dim,
        z.mutable_data_ptr<scalar_t>(), kl.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {z, kl};
}

std::tuple<at::Tensor, at::Tensor> reparameterize_kl_backward(
    const at::Tensor& grad_z, const at::Tensor& grad_kl, const at::Tensor& mu_in,
    const at::Tensor& logvar_in, const at::Tensor& z_in) {
  check_reparam_backward_args(grad_z, grad_kl, mu_in, logvar_in, z_in, /*allow_half=*/true);
  const c10::cuda::CUDAGuard guard(mu_in.device());
  const at::Tensor dz = grad_z.contiguous(), dkl = grad_kl.contiguous(), mu = mu_in.contiguous(),
                   lv = logvar_in.contiguous(), z = z_in.contiguous();
  at::Tensor d_mu = at::empty_like(mu), d_lv = at::empty_like(lv);
  const int64_t dim = mu.dim() == 0 ? 0 : mu.size(-1);
  if (mu.numel() == 0) return {d_mu, d_lv};
  PLUGKIT_DISPATCH_CUDA_FLOATS(mu.scalar_type(), "plugkit_reparameterize_kl_backward_cuda", [&] {
    backward_kernel<scalar_t><<<grid_for(mu.numel()), kThreads, 0,
                                c10::cuda::getCurrentCUDAStream()>>>(
        dz.const_data_ptr<scalar_t>(), dkl.const_data_ptr<scalar_t>(),
        mu.const_data_ptr<scalar_t>(), lv.const_data_ptr<scalar_t>(),
        z.const_data_ptr<scalar_t>(), mu.numel(), dim, d_mu.mutable_data_ptr<scalar_t>(),
        d_lv.mutable_data_ptr<scalar_t>());
    C10_CUDA_KERNEL_LAUNCH_CHECK();
  });
  return {d_mu, d_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CUDA, m) {
  m.impl("reparameterize_kl", &reparameterize_kl);
  m.impl("reparameterize_kl_backward", &reparameterize_kl_backward);
}

}  // namespace plugkit::cuda
