// CPU kernels of the GAN losses (docs/operators.md): one SIMD pass forward, one backward, with a
// deterministic reduction.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/checks.h"
#include "common/gan.h"
#include "cpu/vec_loops.h"

namespace plugkit::cpu {
namespace {

using at::vec::Vectorized;

at::Tensor d_loss(const at::Tensor& real, const at::Tensor& fake, c10::string_view kind_name,
                  double smoothing) {
  const GanKind kind = parse_gan_kind(kind_name);
  check_gan_args(kind, smoothing);
  check_floating(real, "real_logits", false);
  check_like(fake, real, "fake_logits", "real_logits");
  check_nonempty(real, "real_logits");
  check_nonempty(fake, "fake_logits");
  const at::Tensor r = real.contiguous(), f = fake.contiguous();
  at::Tensor loss = at::empty({}, real.options());
  AT_DISPATCH_FLOATING_TYPES(real.scalar_type(), "plugkit_gan_d_loss_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const V s(static_cast<scalar_t>(smoothing));
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      const double real_sum = deterministic_sum(
          r.const_data_ptr<scalar_t>(), r.numel(), [&](V x) { return d_real_term<K>(x, s); });
      const double fake_sum = deterministic_sum(
          f.const_data_ptr<scalar_t>(), f.numel(), [](V x) { return d_fake_term<K>(x); });
      *loss.mutable_data_ptr<scalar_t>() =
          static_cast<scalar_t>(real_sum / r.numel() + fake_sum / f.numel());
    });
  });
  return loss;
}

// The incoming gradient of a scalar loss, read directly (item() costs a dispatch).
template <typename scalar_t>
double loss_grad(const at::Tensor& grad) {
  TORCH_CHECK_VALUE(grad.numel() == 1 && grad.scalar_type() == c10::CppTypeToScalarType<scalar_t>::value,
                    "grad must be a single ", c10::CppTypeToScalarType<scalar_t>::value,
                    " value, got ", grad.scalar_type(), " of shape ", grad.sizes());
  return static_cast<double>(*grad.const_data_ptr<scalar_t>());
}

// out[i] = scale * grad(x[i]) over a contiguous tensor.
template <typename scalar_t, typename G>
at::Tensor scaled_grad(const at::Tensor& x, double scale, const G& grad) {
  using V = Vectorized<scalar_t>;
  at::Tensor out = at::empty_like(x);
  const scalar_t* in = x.const_data_ptr<scalar_t>();
  scalar_t* o = out.mutable_data_ptr<scalar_t>();
  const V vscale(static_cast<scalar_t>(scale));
  parallel_vec_for<scalar_t>(x.numel(), [&](int64_t i, int64_t count) {
    (vscale * grad(V::loadu(in + i, count))).store(o + i, count);
  });
  return out;
}

std::tuple<at::Tensor, at::Tensor> d_loss_backward(const at::Tensor& grad, const at::Tensor& real,
                                                   const at::Tensor& fake,
                                                   c10::string_view kind_name, double smoothing) {
  const GanKind kind = parse_gan_kind(kind_name);
  const at::Tensor r = real.contiguous(), f = fake.contiguous();
  at::Tensor d_real, d_fake;
  AT_DISPATCH_FLOATING_TYPES(real.scalar_type(), "plugkit_gan_d_loss_backward_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const double g = loss_grad<scalar_t>(grad);
    const V s(static_cast<scalar_t>(smoothing));
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      d_real = scaled_grad<scalar_t>(r, g / r.numel(), [&](V x) { return d_real_grad<K>(x, s); });
      d_fake = scaled_grad<scalar_t>(f, g / f.numel(), [](V x) { return d_fake_grad<K>(x); });
    });
  });
  return {d_real.view(real.sizes()), d_fake.view(fake.sizes())};
}

at::Tensor g_loss(const at::Tensor& fake, c10::string_view kind_name) {
  const GanKind kind = parse_gan_kind(kind_name);
  check_floating(fake, "fake_logits", false);
  check_nonempty(fake, "fake_logits");
  const at::Tensor f = fake.contiguous();
  at::Tensor loss = at::empty({}, fake.options());
  AT_DISPATCH_FLOATING_TYPES(fake.scalar_type(), "plugkit_gan_g_loss_cpu", [&] {
    using V = Vectorized<scalar_t>;
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      const double sum = deterministic_sum(f.const_data_ptr<scalar_t>(), f.numel(),
                                           [](V x) { return g_term<K>(x); });
      *loss.mutable_data_ptr<scalar_t>() = static_cast<scalar_t>(sum / f.numel());
    });
  });
  return loss;
}

at::Tensor g_loss_backward(const at::Tensor& grad, const at::Tensor& fake,
                           c10::string_view kind_name) {
  const GanKind kind = parse_gan_kind(kind_name);
  const at::Tensor f = fake.contiguous();
  at::Tensor d_fake;
  AT_DISPATCH_FLOATING_TYPES(fake.scalar_type(), "plugkit_gan_g_loss_backward_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const double g = loss_grad<scalar_t>(grad);
    dispatch_gan_kind(kind, [&](auto k) {
      constexpr GanKind K = decltype(k)::value;
      d_fake = scaled_grad<scalar_t>(f, g / f.numel(), [](V x) { return g_grad<K>(x); });
    });
  });
  return d_fake.view(fake.sizes());
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CPU, m) {
  m.impl("gan_d_loss", &d_loss);
  m.impl("gan_d_loss_backward", &d_loss_backward);
  m.impl("gan_g_loss", &g_loss);
  m.impl("gan_g_loss_backward", &g_loss_backward);
}

}  // namespace plugkit::cpu
