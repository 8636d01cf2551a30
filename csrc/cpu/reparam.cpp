// CPU kernels of reparameterize_kl (docs/operators.md): Philox normals, z and the per-row KL in
// one pass over each row; the backward in one pass too.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <cstring>

#include "common/philox.h"
#include "common/reparam.h"
#include "cpu/vec_loops.h"

namespace plugkit::cpu {
namespace {

using at::vec::Vectorized;
constexpr int64_t kSpan = 1024;  // normals generated per step (fits in L1 with its scratch)

// out[0, count) = the normals at stream positions [start, start + count), count <= kSpan.
template <typename S>
void fill_normals(S* out, int64_t start, int64_t count, uint64_t seed, uint64_t offset) {
  using V = Vectorized<S>;
  const int64_t first = start / 4, blocks = (start + count + 3) / 4 - first;
  // normals: Box-Muller writes whole vectors, 2 * V::size() past the last pair at most (a span
  // of kSpan that starts mid-block has 2 * 257 pairs): kSpan + 64 covers any vector width
  alignas(64) S u_radius[kSpan / 2 + 4], u_angle[kSpan / 2 + 4], normals[kSpan + 64];
  for (int64_t b = 0; b < blocks; ++b) {  // Philox: scalar, 4 words per block
    const U32x4 w = philox_block(seed, offset, static_cast<uint64_t>(first + b));
    u_radius[2 * b] = uniform_open<S>(w.v[0]);
    u_angle[2 * b] = uniform_open<S>(w.v[1]);
    u_radius[2 * b + 1] = uniform_open<S>(w.v[2]);
    u_angle[2 * b + 1] = uniform_open<S>(w.v[3]);
  }
  const int64_t pairs = 2 * blocks;
  const V minus_two(S(-2)), two_pi(static_cast<S>(kTwoPi));
  for (int64_t p = 0; p < pairs; p += V::size()) {  // Box-Muller: SIMD log, sqrt, cos, sin
    const int64_t n = std::min<int64_t>(V::size(), pairs - p);
    const V radius = (minus_two * V::loadu(u_radius + p, n).log()).sqrt();
    const V theta = two_pi * V::loadu(u_angle + p, n);
    auto [lo, hi] = at::vec::interleave2(radius * theta.cos(), radius * theta.sin());
    lo.store(normals + 2 * p);
    hi.store(normals + 2 * p + V::size());
  }
  std::memcpy(out, normals + (start - 4 * first), count * sizeof(S));
}

template <typename S>
void forward_rows(const ReparamArgs& a, S* z, S* kl, int64_t row_begin, int64_t row_end) {
  using V = Vectorized<S>;
  const S* mu = a.mu.const_data_ptr<S>();
  const S* lv = a.logvar.const_data_ptr<S>();
  const S* eps = a.eps.defined() ? a.eps.const_data_ptr<S>() : nullptr;
  uint64_t seed = 0, offset = 0;
  if (!eps) {
    seed = static_cast<uint64_t>(a.key.const_data_ptr<int64_t>()[0]);
    offset = static_cast<uint64_t>(a.key.const_data_ptr<int64_t>()[1]);
  }
  alignas(64) S noise[kSpan];
  const V half(S(0.5));
  for (int64_t row = row_begin; row < row_end; ++row) {
    double kl_sum = 0;
    for (int64_t d0 = 0; d0 < a.dim; d0 += kSpan) {
      const int64_t base = row * a.dim + d0, span = std::min(kSpan, a.dim - d0);
      const S* e = eps ? eps + base : noise;
      if (!eps) fill_normals(noise, base, span, seed, offset);
      V kl_acc(S(0));
      for (int64_t i = 0; i < span; i += V::size()) {
        const int64_t n = std::min<int64_t>(V::size(), span - i);
        const V m = V::loadu(mu + base + i, n), l = V::loadu(lv + base + i, n);
        (m + (half * l).exp() * V::loadu(e + i, n)).store(z + base + i, n);
        // padded lanes hold m = l = 0, whose KL term exp(0) + 0 - 1 - 0 is exactly 0
        kl_acc += kl_term(m, l);
      }
      kl_sum += lane_sum(kl_acc);
    }
    kl[row] = static_cast<S>(0.5 * kl_sum);
  }
}

std::tuple<at::Tensor, at::Tensor> reparameterize_kl(const at::Tensor& mu, const at::Tensor& logvar,
                                                     const std::optional<at::Tensor>& eps,
                                                     const std::optional<at::Tensor>& key) {
  const ReparamArgs args = check_reparam_args(mu, logvar, eps, key, /*allow_half=*/false);
  at::Tensor z = at::empty_like(args.mu);
  at::Tensor kl = at::zeros(kl_shape(mu), mu.options());
  if (args.rows == 0) return {z, kl};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "plugkit_reparameterize_kl_cpu", [&] {
    scalar_t* zp = z.mutable_data_ptr<scalar_t>();
    scalar_t* klp = kl.mutable_data_ptr<scalar_t>();
    const int64_t grain = std::max<int64_t>(1, kGrain / args.dim);
    at::parallel_for(0, args.rows, grain, [&](int64_t r0, int64_t r1) {
      forward_rows<scalar_t>(args, zp, klp, r0, r1);
    });
  });
  return {z, kl};
}

// d_mu = dz + mu * dkl;  d_logvar = 0.5 * dz * (z - mu) + 0.5 * (exp(logvar) - 1) * dkl
std::tuple<at::Tensor, at::Tensor> reparameterize_kl_backward(
    const at::Tensor& grad_z, const at::Tensor& grad_kl, const at::Tensor& mu_in,
    const at::Tensor& logvar_in, const at::Tensor& z_in) {
  check_reparam_backward_args(grad_z, grad_kl, mu_in, logvar_in, z_in, /*allow_half=*/false);
  const at::Tensor dz = grad_z.contiguous(), dkl = grad_kl.contiguous(), mu = mu_in.contiguous(),
                   lv = logvar_in.contiguous(), z = z_in.contiguous();
  at::Tensor d_mu = at::empty_like(mu), d_lv = at::empty_like(lv);
  const int64_t dim = mu.dim() == 0 ? 0 : mu.size(-1);
  const int64_t rows = dim == 0 ? 0 : mu.numel() / dim;
  if (rows == 0) return {d_mu, d_lv};
  AT_DISPATCH_FLOATING_TYPES(mu.scalar_type(), "plugkit_reparameterize_kl_backward_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t *dzp = dz.const_data_ptr<scalar_t>(), *dklp = dkl.const_data_ptr<scalar_t>(),
                   *mp = mu.const_data_ptr<scalar_t>(), *lp = lv.const_data_ptr<scalar_t>(),
                   *zp = z.const_data_ptr<scalar_t>();
    scalar_t *dmp = d_mu.mutable_data_ptr<scalar_t>(), *dlp = d_lv.mutable_data_ptr<scalar_t>();
    const V half(scalar_t(0.5)), one(scalar_t(1));
    const int64_t grain = std::max<int64_t>(1, kGrain / dim);
    at::parallel_for(0, rows, grain, [&](int64_t r0, int64_t r1) {
      for (int64_t row = r0; row < r1; ++row) {
        const V g_kl(dklp[row]);
        for (int64_t i = row * dim, end = (row + 1) * dim; i < end; i += V::size()) {
          const int64_t n = std::min<int64_t>(V::size(), end - i);
          const V g = V::loadu(dzp + i, n), m = V::loadu(mp + i, n), l = V::loadu(lp + i, n);
          (g + m * g_kl).store(dmp + i, n);
          (half * (g * (V::loadu(zp + i, n) - m) + (l.exp() - one) * g_kl)).store(dlp + i, n);
        }
      }
    });
  });
  return {d_mu, d_lv};
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CPU, m) {
  m.impl("reparameterize_kl", &reparameterize_kl);
  m.impl("reparameterize_kl_backward", &reparameterize_kl_backward);
}

}  // namespace plugkit::cpu
