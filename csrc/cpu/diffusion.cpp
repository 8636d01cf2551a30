// CPU kernels of the diffusion operators (docs/operators.md). Drawn noise is made in L1-sized
// pieces and consumed at once, so no eps tensor is ever written: diffusion_noise reads x0 and
// writes x_t, diffusion_loss reads pred, each in one pass; the loss reduces in a fixed order.
#include <ATen/Dispatch.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include <cmath>
#include <cstring>
#include <vector>

#include "common/diffusion.h"
#include "common/philox.h"
#include "cpu/vec_loops.h"

namespace plugkit::cpu {
namespace {

using at::vec::Vectorized;
constexpr int64_t kSpan = 1024;  // normals per piece (with its scratch, fits in L1)

// Eight 64-bit lanes (a GCC/Clang vector extension: AVX-512 holds one, AVX2 two, SSE2 four).
using U64x8 = uint64_t __attribute__((vector_size(64)));
using U32x8 = uint32_t __attribute__((vector_size(32)));
// Philox blocks of a piece: kSpan / 4, one more when it starts mid-block, rounded up to 8s
constexpr int64_t kBlocks = kSpan / 4 + 8;

// Philox4x32-10 (common/philox.h) of the eight blocks first .. first + 7 at once, in 64-bit
// lanes that hold 32-bit words, so each round's 32 x 32 -> 64-bit products are vector
// multiplies. Word j of block first + l goes to words[j][at + l].
inline void philox_x8(uint64_t seed, uint64_t offset, uint64_t first,
                      uint32_t (*words)[kBlocks], int64_t at) {
  constexpr uint64_t kLow = 0xFFFFFFFFu;
  U64x8 counter;
  for (int l = 0; l < 8; ++l) counter[l] = offset + first + l;  // wraps modulo 2^64
  U64x8 c0 = counter & kLow, c1 = counter >> 32, c2 = {}, c3 = {};
  uint64_t k0 = seed & kLow, k1 = seed >> 32;
  for (int round = 0; round < 10; ++round) {
    const U64x8 p0 = c0 * uint64_t{philox_detail::kM0};  // c0, c2 < 2^32: exact in 64 bits
    const U64x8 p1 = c2 * uint64_t{philox_detail::kM1};
    c0 = (p1 >> 32) ^ c1 ^ k0;
    c1 = p1 & kLow;
    c2 = (p0 >> 32) ^ c3 ^ k1;
    c3 = p0 & kLow;
    k0 = (k0 + philox_detail::kW0) & kLow;
    k1 = (k1 + philox_detail::kW1) & kLow;
  }
  const U32x8 out[4] = {__builtin_convertvector(c0, U32x8), __builtin_convertvector(c1, U32x8),
                        __builtin_convertvector(c2, U32x8), __builtin_convertvector(c3, U32x8)};
  for (int j = 0; j < 4; ++j) std::memcpy(words[j] + at, &out[j], sizeof(U32x8));
}

// out[0, count) = the normals at stream positions [start, start + count), count <= kSpan: the
// stream of reparameterize_kl (csrc/cpu/reparam.cpp), drawn here in structure-of-arrays form
// so that every step is a vector loop: Philox eight blocks at a time, then the uniforms, then
// Box-Muller on lanes (x0, x1) and (x2, x3) of every block, then the four normals of each
// block put in stream order.
template <typename S>
void fill_normals(S* out, int64_t start, int64_t count, uint64_t seed, uint64_t offset) {
  using V = Vectorized<S>;
  const int64_t first = start / 4, blocks = (start + count + 3) / 4 - first;
  alignas(64) uint32_t words[4][kBlocks];
  for (int64_t b = 0; b < blocks; b += 8)
    philox_x8(seed, offset, static_cast<uint64_t>(first + b), words, b);
  alignas(64) S lanes[4][kBlocks];  // uniforms, then normals in place
  for (int j = 0; j < 4; ++j)
    for (int64_t b = 0; b < blocks; ++b) lanes[j][b] = uniform_open<S>(words[j][b]);
  const V minus_two(S(-2)), two_pi(static_cast<S>(kTwoPi));
  for (int64_t b = 0; b < blocks; b += V::size()) {
    const int64_t n = std::min<int64_t>(V::size(), blocks - b);
    for (int pair = 0; pair < 4; pair += 2) {  // radius from word 0 (2), angle from word 1 (3)
      const V radius = (minus_two * V::loadu(lanes[pair] + b, n).log()).sqrt();
      const V theta = two_pi * V::loadu(lanes[pair + 1] + b, n);
      (radius * theta.cos()).store(lanes[pair] + b, n);
      (radius * theta.sin()).store(lanes[pair + 1] + b, n);
    }
  }
  alignas(64) S normals[4 * kBlocks];
  for (int64_t b = 0; b < blocks; ++b)
    for (int j = 0; j < 4; ++j) normals[4 * b + j] = lanes[j][b];
  std::memcpy(out, normals + (start - 4 * first), count * sizeof(S));
}

// Calls body(pos, count, e) for consecutive pieces [pos, pos + count) of [begin, end), at most
// kSpan long, with e[0, count) the noise of those elements: read from eps when given, else drawn
// at stream positions start + pos onwards.
template <typename S, typename F>
void for_each_piece(const S* eps, const at::Tensor& key, int64_t start, int64_t begin,
                    int64_t end, const F& body) {
  alignas(64) S noise[kSpan];
  uint64_t seed = 0, offset = 0;
  if (!eps) {
    seed = static_cast<uint64_t>(key.const_data_ptr<int64_t>()[0]);
    offset = static_cast<uint64_t>(key.const_data_ptr<int64_t>()[1]);
  }
  for (int64_t pos = begin; pos < end; pos += kSpan) {
    const int64_t count = std::min(kSpan, end - pos);
    if (eps) {
      body(pos, count, eps + pos);
    } else {
      fill_normals(noise, start + pos, count, seed, offset);
      body(pos, count, static_cast<const S*>(noise));
    }
  }
}

// Calls body(begin, end, row) for the pieces of [pos, pos + count) that lie in one row each.
template <typename F>
void for_each_row_piece(int64_t pos, int64_t count, int64_t width, const F& body) {
  for (int64_t i = pos, stop = pos + count; i < stop;) {
    const int64_t row = i / width, row_end = std::min(stop, (row + 1) * width);
    body(i, row_end, row);
    i = row_end;
  }
}

// --- diffusion_noise ---------------------------------------------------------------------------

at::Tensor noise(const at::Tensor& x0, const at::Tensor& abar, const std::optional<at::Tensor>& eps,
                 const std::optional<at::Tensor>& key, int64_t row_start) {
  const NoiseArgs a = check_noise_args(x0, abar, eps, key, row_start, /*allow_half=*/false);
  at::Tensor out = at::empty_like(a.x0);
  const int64_t n = a.x0.numel();
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(x0.scalar_type(), "plugkit_diffusion_noise_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t* x = a.x0.const_data_ptr<scalar_t>();
    const scalar_t* given = a.eps.defined() ? a.eps.const_data_ptr<scalar_t>() : nullptr;
    const double* ab = a.abar.const_data_ptr<double>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for_each_piece(given, a.key, a.start, begin, end, [&](int64_t pos, int64_t count,
                                                              const scalar_t* e) {
        for_each_row_piece(pos, count, a.width, [&](int64_t i, int64_t row_end, int64_t row) {
          const V keep(static_cast<scalar_t>(std::sqrt(ab[row])));
          const V spread(static_cast<scalar_t>(std::sqrt(1.0 - ab[row])));
          for (; i < row_end; i += V::size()) {
            const int64_t c = std::min<int64_t>(V::size(), row_end - i);
            noised(V::loadu(x + i, c), V::loadu(e + (i - pos), c), keep, spread).store(o + i, c);
          }
        });
      });
    });
  });
  return out;
}

// dx0 = sqrt(abar) * grad, row by row.
at::Tensor noise_backward(const at::Tensor& grad_in, const at::Tensor& abar_in) {
  check_noise_backward_args(grad_in, abar_in, /*allow_half=*/false);
  const at::Tensor grad = grad_in.contiguous(), abar = abar_in.to(at::kDouble).contiguous();
  at::Tensor out = at::empty_like(grad);
  const int64_t n = grad.numel(), width = row_width(grad);
  if (n == 0) return out;
  AT_DISPATCH_FLOATING_TYPES(grad.scalar_type(), "plugkit_diffusion_noise_backward_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const scalar_t* g = grad.const_data_ptr<scalar_t>();
    const double* ab = abar.const_data_ptr<double>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for_each_row_piece(begin, end - begin, width, [&](int64_t i, int64_t row_end, int64_t row) {
        const V keep(static_cast<scalar_t>(std::sqrt(ab[row])));
        for (; i < row_end; i += V::size()) {
          const int64_t c = std::min<int64_t>(V::size(), row_end - i);
          (keep * V::loadu(g + i, c)).store(o + i, c);
        }
      });
    });
  });
  return out;
}

// --- diffusion_loss ----------------------------------------------------------------------------

// sum((pred - eps)^2) in float64, deterministic: fixed chunks summed in a fixed order whatever
// the thread count; SIMD lanes accumulate short blocks before joining the float64 total.
template <typename S>
double squared_error_sum(const LossArgs& a) {
  using V = Vectorized<S>;
  constexpr int64_t kChunk = 1 << 14, kBlock = 256;
  const S* p = a.pred.const_data_ptr<S>();
  const S* given = a.eps.defined() ? a.eps.const_data_ptr<S>() : nullptr;
  auto chunk_sum = [&](int64_t begin, int64_t end) {
    double total = 0;
    for_each_piece(given, a.key, a.start, begin, end, [&](int64_t pos, int64_t count,
                                                            const S* e) {
      for (int64_t b = 0; b < count; b += kBlock) {
        V acc(S(0));
        // padded lanes load pred = eps = 0, whose term is exactly 0
        for (int64_t i = b, stop = std::min(count, b + kBlock); i < stop; i += V::size()) {
          const int64_t c = std::min<int64_t>(V::size(), stop - i);
          acc += squared_error(V::loadu(p + pos + i, c), V::loadu(e + i, c));
        }
        total += lane_sum(acc);
      }
    });
    return total;
  };
  const int64_t n = a.pred.numel(), chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return chunk_sum(0, n);
  std::vector<double> partial(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c)
      partial[c] = chunk_sum(c * kChunk, std::min(n, (c + 1) * kChunk));
  });
  double total = 0;
  for (double s : partial) total += s;
  return total;
}

at::Tensor loss(const at::Tensor& pred, const std::optional<at::Tensor>& eps,
                const std::optional<at::Tensor>& key, int64_t row_start) {
  const LossArgs a = check_loss_args(pred, eps, key, row_start, /*allow_half=*/false);
  at::Tensor out = at::empty({}, pred.options());
  AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "plugkit_diffusion_loss_cpu", [&] {
    *out.mutable_data_ptr<scalar_t>() =
        static_cast<scalar_t>(squared_error_sum<scalar_t>(a) / a.pred.numel());
  });
  return out;
}

// dpred = 2 * grad * (pred - eps) / N, the noise drawn again from the key.
at::Tensor loss_backward(const at::Tensor& grad, const at::Tensor& pred,
                         const std::optional<at::Tensor>& eps,
                         const std::optional<at::Tensor>& key, int64_t row_start) {
  const LossArgs a = check_loss_args(pred, eps, key, row_start, /*allow_half=*/false);
  TORCH_CHECK_VALUE(grad.numel() == 1 && grad.scalar_type() == pred.scalar_type() &&
                        grad.device() == pred.device(),
                    "grad must be a single ", pred.scalar_type(), " value on ", pred.device(),
                    ", got ", grad.scalar_type(), " of shape ", grad.sizes(), " on ",
                    grad.device());
  at::Tensor out = at::empty_like(a.pred);
  const int64_t n = a.pred.numel();
  AT_DISPATCH_FLOATING_TYPES(pred.scalar_type(), "plugkit_diffusion_loss_backward_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const double g = static_cast<double>(*grad.const_data_ptr<scalar_t>());
    const V scale(static_cast<scalar_t>(2.0 * g / n));
    const scalar_t* p = a.pred.const_data_ptr<scalar_t>();
    const scalar_t* given = a.eps.defined() ? a.eps.const_data_ptr<scalar_t>() : nullptr;
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    at::parallel_for(0, n, kGrain, [&](int64_t begin, int64_t end) {
      for_each_piece(given, a.key, a.start, begin, end, [&](int64_t pos, int64_t count,
                                                              const scalar_t* e) {
        for (int64_t i = 0; i < count; i += V::size()) {
          const int64_t c = std::min<int64_t>(V::size(), count - i);
          squared_error_grad(V::loadu(p + pos + i, c), V::loadu(e + i, c), scale)
              .store(o + pos + i, c);
        }
      });
    });
  });
  return out;
}

// --- ddim_step ---------------------------------------------------------------------------------

at::Tensor ddim(const at::Tensor& x_t_in, const at::Tensor& eps_in, const at::Tensor& abar_t,
                const at::Tensor& abar_s, std::optional<double> clip) {
  check_ddim_args(x_t_in, eps_in, abar_t, abar_s, clip, /*allow_half=*/false);
  const double at_value = *abar_t.to(at::kDouble).const_data_ptr<double>();
  const double as_value = *abar_s.to(at::kDouble).const_data_ptr<double>();
  check_ddim_values(at_value, as_value);
  const DdimCoefficients coefficients = ddim_coefficients(at_value, as_value);
  const at::Tensor x_t = x_t_in.contiguous(), eps = eps_in.contiguous();
  at::Tensor out = at::empty_like(x_t);
  AT_DISPATCH_FLOATING_TYPES(x_t.scalar_type(), "plugkit_ddim_step_cpu", [&] {
    using V = Vectorized<scalar_t>;
    const DdimStep<V, scalar_t> step(coefficients);
    const scalar_t* x = x_t.const_data_ptr<scalar_t>();
    const scalar_t* e = eps.const_data_ptr<scalar_t>();
    scalar_t* o = out.mutable_data_ptr<scalar_t>();
    if (clip.has_value()) {
      const V bound(static_cast<scalar_t>(*clip));
      parallel_vec_for<scalar_t>(x_t.numel(), [&](int64_t i, int64_t c) {
        step.clipped(V::loadu(x + i, c), V::loadu(e + i, c), bound).store(o + i, c);
      });
    } else {
      parallel_vec_for<scalar_t>(x_t.numel(), [&](int64_t i, int64_t c) {
        step(V::loadu(x + i, c), V::loadu(e + i, c)).store(o + i, c);
      });
    }
  });
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CPU, m) {
  m.impl("diffusion_noise", &noise);
  m.impl("diffusion_noise_backward", &noise_backward);
  m.impl("diffusion_loss", &loss);
  m.impl("diffusion_loss_backward", &loss_backward);
  m.impl("ddim_step", &ddim);
}

}  // namespace plugkit::cpu
