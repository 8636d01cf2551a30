// CUDA kernels of the GAN losses (docs/operators.md). Forward: per-block partial sums in a fixed
// grid, then one block adds them in a fixed order, so results are bit-identical run to run.
// Backward: one elementwise pass; the incoming gradient is read on the device (no host sync).
#include <ATen/Dispatch.h>
#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/gan.h"
#include "cuda/launch.h"

namespace plugkit::cuda {
namespace {

constexpr int kMaxPartials = 1024;

template <GanKind K, typename A>
struct RealTerm {
  A s;
  __device__ A operator()(A x) const { return d_real_term<K>(x, s); }
};
template <GanKind K, typename A>
struct RealGrad {
  A s;
  __device__ A operator()(A x) const { return d_real_grad<K>(x, s); }
};
template <GanKind K, typename A>
struct FakeTerm {
  __device__ A operator()(A x) const { return d_fake_term<K>(x); }
};
template <GanKind K, typename A>
struct FakeGrad {
  __device__ A operator()(A x) const { return d_fake_grad<K>(x); }
};
template <GanKind K, typename A>
struct GenTerm {
  __device__ A operator()(A x) const { return g_term<K>(x); }
};
template <GanKind K, typename A>
struct GenGrad {
  __device__ A operator()(A x) const { return g_grad<K>(x); }
};

template <typename scalar_t, typename A, typename Term>
__global__ void partial_sums(const scalar_t* __restrict__ x, int64_t n, Term term, A* partial) {
  A acc = 0;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads)
    acc += term(static_cast<A>(x[i]));
  const A total = block_sum(acc);
  if (threadIdx.x == 0) partial[blockIdx.x] = total;
}

// out = scale_a * sum(partial_a) + scale_b * sum(partial_b), one block.
template <typename scalar_t, typename A>
__global__ void finish(const A* partial_a, int count_a, A scale_a, const A* partial_b, int count_b,
                       A scale_b, scalar_t* out) {
  A a = 0, b = 0;
  for (int i = threadIdx.x; i < count_a; i += kThreads) a += partial_a[i];
  for (int i = threadIdx.x; i < count_b; i += kThreads) b += partial_b[i];
  a = block_sum(a);
  b = block_sum(b);
  if (threadIdx.x == 0) *out = static_cast<scalar_t>(a * scale_a + b * scale_b);
}

template <typename scalar_t, typename A, typename Grad>
__global__ void scaled_grad(const scalar_t* __restrict__ x, int64_t n, const scalar_t* grad,
                            A scale, Grad fn, scalar_t* __restrict__ out) {
  const A g = static_cast<A>(*grad) * scale;
  for (int64_t i = blockIdx.x * int64_t(kThreads) + threadIdx.x; i < n;
       i += int64_t(gridDim.x) * kThreads)
    out[i] = static_cast<scalar_t>(g * fn(static_cast<A>(x[i])));
}

int partial_count(int64_t n) {
  return static_cast<int>(std::min<int64_t>(kMaxPartials, (n + 4 * kThreads - 1) / (4 * kThreads)));
}

// Launches partial_sums for x into a fresh buffer of per-block sums, which it returns.
template <typename scalar_t, typename A, typename Term>
at::Tensor launch_partials(const at::Tensor& x, Term term, cudaStream_t stream) {
  const int count = partial_count(x.numel());
  at::Tensor partial = at::empty({count}, x.options().dtype(c10::CppTypeToScalarType<A>::value));
  partial_sums<scalar_t, A><<<count, kThreads, 0, stream>>>(
      x.const_data_ptr<scalar_t>(), x.numel(), term, partial.mutable_data_ptr<A>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return partial;
}

template <typename scalar_t, typename A, typename Grad>
at::Tensor launch_grad(const at::Tensor& x, const at::Tensor& grad, Grad fn, cudaStream_t stream) {
  at::Tensor out = at::empty_like(x);
  scaled_grad<scalar_t, A><<<grid_for(x.numel()), kThreads, 0, stream>>>(
      x.const_data_ptr<scalar_t>(), x.numel(), grad.const_data_ptr<scalar_t>(),
      A(1) / static_cast<A>(x.numel()), fn, out.mutable_data_ptr<scalar_t>());
  C10_CUDA_KERNEL_LAUNCH_CHECK();
  return out;
}

// The incoming gradient is dereferenced on the device by every thread of scaled_grad, so it must
// be one value of the logits' dtype on their device (the CPU kernel checks the same): otherwise a
// direct call would read out of bounds or through a host pointer and poison the CUDA context.
void check_loss_grad(const at::Tensor& grad, const at::Tensor& logits) {
  TORCH_CHECK_VALUE(grad.numel() == 1 && grad.scalar_type() == logits.scalar_type() &&
                        grad.device() == logits.device(),
                    "grad must be a single ", logits.scalar_type(), " value on ", logits.device(),
                    ", got ", grad.scalar_type(), " of shape ", grad.sizes(), " on ", grad.device());
}

at::Tensor d_loss(const at::Tensor& real, const at::Tensor& fake, c10::string_view kind_name,
                  double smoothing) {
  const GanKind kind = parse_gan_kind(kind_name);
  check_gan_args(kind, smoothing);
  check_floating(real, "real_logits", true);
  check_like(fake, real, "fake_logits", "real_logits");
  check_nonempty(real, "real_logits");
  check_nonempty(fake, "fake_logits");
  const c10::cuda::CUDAGuard guard(real.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor r = real.contiguous(), f = fake.contiguous();
  at::Tensor loss = at::empty({}, real.options());
  PLUGKIT_DISPATCH_CUDA_FLOATS(real.scalar_type(), "plugkit_gan_d_loss_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      const at::Tensor pr = launch_partials<scalar_t, A>(r, RealTerm<K, A>{A(smoothing)}, stream);
      const at::Tensor pf = launch_partials<scalar_t, A>(f, FakeTerm<K, A>{}, stream);
      finish<scalar_t, A><<<1, kThreads, 0, stream>>>(
          pr.const_data_ptr<A>(), pr.numel(), A(1) / A(r.numel()), pf.const_data_ptr<A>(),
          pf.numel(), A(1) / A(f.numel()), loss.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return loss;
}

std::tuple<at::Tensor, at::Tensor> d_loss_backward(const at::Tensor& grad, const at::Tensor& real,
                                                   const at::Tensor& fake,
                                                   c10::string_view kind_name, double smoothing) {
  const GanKind kind = parse_gan_kind(kind_name);
  check_like(fake, real, "fake_logits", "real_logits");  // both run under real's device guard
  check_loss_grad(grad, real);
  const c10::cuda::CUDAGuard guard(real.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor r = real.contiguous(), f = fake.contiguous(), g = grad.contiguous();
  at::Tensor d_real, d_fake;
  PLUGKIT_DISPATCH_CUDA_FLOATS(real.scalar_type(), "plugkit_gan_d_loss_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      d_real = launch_grad<scalar_t, A>(r, g, RealGrad<K, A>{A(smoothing)}, stream);
      d_fake = launch_grad<scalar_t, A>(f, g, FakeGrad<K, A>{}, stream);
    });
  });
  return {d_real.view(real.sizes()), d_fake.view(fake.sizes())};
}

at::Tensor g_loss(const at::Tensor& fake, c10::string_view kind_name) {
  const GanKind kind = parse_gan_kind(kind_name);
  check_floating(fake, "fake_logits", true);
  check_nonempty(fake, "fake_logits");
  const c10::cuda::CUDAGuard guard(fake.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor f = fake.contiguous();
  at::Tensor loss = at::empty({}, fake.options());
  PLUGKIT_DISPATCH_CUDA_FLOATS(fake.scalar_type(), "plugkit_gan_g_loss_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      const at::Tensor pf = launch_partials<scalar_t, A>(f, GenTerm<K, A>{}, stream);
      finish<scalar_t, A><<<1, kThreads, 0, stream>>>(pf.const_data_ptr<A>(), pf.numel(),
                                                      A(1) / A(f.numel()), nullptr, 0, A(0),
                                                      loss.mutable_data_ptr<scalar_t>());
      C10_CUDA_KERNEL_LAUNCH_CHECK();
    });
  });
  return loss;
}

at::Tensor g_loss_backward(const at::Tensor& grad, const at::Tensor& fake,
                           c10::string_view kind_name) {
  const GanKind kind = parse_gan_kind(kind_name);
  check_loss_grad(grad, fake);
  const c10::cuda::CUDAGuard guard(fake.device());
  const cudaStream_t stream = c10::cuda::getCurrentCUDAStream();
  const at::Tensor f = fake.contiguous(), g = grad.contiguous();
  at::Tensor d_fake;
  PLUGKIT_DISPATCH_CUDA_FLOATS(fake.scalar_type(), "plugkit_gan_g_loss_backward_cuda", [&] {
    using A = at::opmath_type<scalar_t>;
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      d_fake = launch_grad<scalar_t, A>(f, g, GenGrad<K, A>{}, stream);
    });
  });
  return d_fake.view(fake.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CUDA, m) {
  m.impl("gan_d_loss", &d_loss);
  m.impl("gan_d_loss_backward", &d_loss_backward);
  m.impl("gan_g_loss", &g_loss);
  m.impl("gan_g_loss_backward", &g_loss_backward);
}

}  // namespace plugkit::cuda
