// Diffusion operators shared by the CPU and CUDA kernels (docs/operators.md): the per-element
// formulas (templated on T, so the CPU's SIMD vectors and the GPU's scalars run the same
// arithmetic), the DDIM coefficients, and the argument checks of both entry points.
//
// Noise positions: element j of row r of a [B, ...] tensor (D values per row) takes the normal
// at position (row_start + r) * D + j of the Philox stream of common/philox.h. A process holding
// rows [row_start, row_start + B) of a global batch therefore draws exactly the numbers one
// process draws for those rows under the same key.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/Optional.h>

#include <cmath>
#include <cstdint>

#include "common/checks.h"
#include "common/pointwise.h"

namespace plugkit {

// --- formulas ---------------------------------------------------------------------------------

// a * b + c rounded once. Written out, because a compiler may contract a * b + c into a fused
// multiply-add in one copy of a loop and not in another (a SIMD body and its masked tail): the
// same element would then round differently depending on where a row starts in memory. SIMD
// vectors find at::vec::fmadd by argument-dependent lookup.
PK_HD float fmadd(float a, float b, float c) { return ::fmaf(a, b, c); }
PK_HD double fmadd(double a, double b, double c) { return ::fma(a, b, c); }

// x_t = sqrt(abar) x0 + sqrt(1 - abar) eps, with keep = sqrt(abar), spread = sqrt(1 - abar).
template <typename T>
PK_HD T noised(T x0, T eps, T keep, T spread) {
  return fmadd(keep, x0, spread * eps);
}

// One element's term of mean((pred - eps)^2), and its gradient scaled by 2 * grad / N.
template <typename T>
PK_HD T squared_error(T pred, T eps) {
  const T d = pred - eps;
  return d * d;
}

template <typename T>
PK_HD T squared_error_grad(T pred, T eps, T scale) {
  return scale * (pred - eps);
}

// DDIM (eta = 0) from step t to step s, in double once per call:
//   x0 = (x_t - b_t eps) / a_t,  x_s = a_s x0 + b_s eps      with a = sqrt(abar), b = sqrt(1 - abar)
// Unclipped this is linear: x_s = c_x x_t + c_eps eps (the coefficients rounded once, the most
// accurate form). Clipped, x0c = clamp(x0, -clip, clip) and the noise is taken again from x0c,
// eps' = (x_t - a_t x0c) / b_t = eps + k (x0 - x0c) with k = a_t / b_t: exactly eps wherever
// nothing was clipped, so no rounding is added there.
struct DdimCoefficients {
  double inv_a_t, minus_b_t, k, a_s, b_s, c_x, c_eps;
};

PK_HD DdimCoefficients ddim_coefficients(double abar_t, double abar_s) {
  const double a_t = ::sqrt(abar_t), b_t = ::sqrt(1.0 - abar_t);
  const double a_s = ::sqrt(abar_s), b_s = ::sqrt(1.0 - abar_s);
  return {1.0 / a_t, -b_t, a_t / b_t, a_s, b_s, a_s / a_t, b_s - a_s * b_t / a_t};
}

// The coefficients in the kernel's arithmetic type T (a scalar or a SIMD vector of S).
template <typename T, typename S = T>
struct DdimStep {
  T inv_a_t, minus_b_t, k, a_s, b_s, c_x, c_eps;

  PK_HD explicit DdimStep(const DdimCoefficients& c)
      : inv_a_t(static_cast<S>(c.inv_a_t)), minus_b_t(static_cast<S>(c.minus_b_t)),
        k(static_cast<S>(c.k)), a_s(static_cast<S>(c.a_s)), b_s(static_cast<S>(c.b_s)),
        c_x(static_cast<S>(c.c_x)), c_eps(static_cast<S>(c.c_eps)) {}

  PK_HD T operator()(T x_t, T eps) const { return fmadd(c_x, x_t, c_eps * eps); }

  PK_HD T clipped(T x_t, T eps, T clip) const {
    using M = Ops<T>;
    const T x0 = fmadd(minus_b_t, eps, x_t) * inv_a_t;
    const T below = T(0) - M::max(T(0) - x0, T(0) - clip);  // min(x0, clip)
    const T x0c = M::max(below, T(0) - clip);
    return fmadd(a_s, x0c, b_s * fmadd(k, x0 - x0c, eps));
  }
};

// --- argument checks (host) -------------------------------------------------------------------

// Values per row of a [B, ...] tensor (the product of the trailing sizes; 1 for a [B] tensor).
inline int64_t row_width(const at::Tensor& t) {
  int64_t width = 1;
  for (int64_t d = 1; d < t.dim(); ++d) width *= t.size(d);
  return width;
}

inline at::Tensor checked_key(const std::optional<at::Tensor>& eps,
                              const std::optional<at::Tensor>& key, const at::Tensor& x,
                              const char* x_name) {
  TORCH_CHECK_VALUE(eps.has_value() != key.has_value(), "give exactly one of eps and key (got ",
                    eps.has_value() ? "both" : "neither", ")");
  if (!key.has_value()) return {};
  TORCH_CHECK_VALUE(key->scalar_type() == at::kLong && key->numel() == 2,
                    "key must be an int64 tensor [seed, offset], got ", key->scalar_type(),
                    " of shape ", key->sizes());
  TORCH_CHECK_VALUE(key->device() == x.device(), "key is on ", key->device(), " but ", x_name,
                    " is on ", x.device());
  return key->contiguous();
}

// The stream position of the first element: row_start * D, kept below 2^62 so that position
// plus element index never overflows.
inline int64_t stream_start(int64_t row_start, const at::Tensor& x, const char* x_name) {
  TORCH_CHECK_VALUE(row_start >= 0, "row_start must be >= 0, got ", row_start);
  const int64_t width = std::max<int64_t>(row_width(x), 1);
  TORCH_CHECK_VALUE(row_start <= (int64_t(1) << 62) / width - x.size(0), "row_start ", row_start,
                    " with ", x_name, " of shape ", x.sizes(), " passes 2^62 stream positions");
  return row_start * width;
}

struct NoiseArgs {
  at::Tensor x0, abar, eps, key;  // contiguous; abar float64; eps or key undefined
  int64_t rows = 0, width = 0, start = 0;
};

// abar: one float32/float64 value per row of `rows` ([B, ...]), on its device.
inline void check_abar(const at::Tensor& abar, const at::Tensor& rows, const char* name) {
  check_floating(abar, "abar", false);
  TORCH_CHECK_VALUE(abar.device() == rows.device(), "abar is on ", abar.device(), " but ", name,
                    " is on ", rows.device());
  TORCH_CHECK_VALUE(abar.dim() == 1 && abar.size(0) == rows.size(0), "abar has shape ",
                    abar.sizes(), " but ", name, " has ", rows.size(0),
                    " rows: abar must be [B]");
}

inline NoiseArgs check_noise_args(const at::Tensor& x0, const at::Tensor& abar,
                                  const std::optional<at::Tensor>& eps,
                                  const std::optional<at::Tensor>& key, int64_t row_start,
                                  bool allow_half) {
  check_floating(x0, "x0", allow_half);
  TORCH_CHECK_VALUE(x0.dim() >= 1, "x0 must have shape [B, ...], got a 0-D tensor");
  check_abar(abar, x0, "x0");
  NoiseArgs a;
  a.key = checked_key(eps, key, x0, "x0");
  if (eps.has_value()) {
    check_same_shape(*eps, x0, "eps", "x0");
    a.eps = eps->contiguous();
  }
  a.x0 = x0.contiguous();
  a.abar = abar.to(at::kDouble).contiguous();
  a.rows = x0.size(0);
  a.width = row_width(x0);
  a.start = stream_start(row_start, x0, "x0");
  return a;
}

inline void check_noise_backward_args(const at::Tensor& grad, const at::Tensor& abar,
                                      bool allow_half) {
  check_floating(grad, "grad", allow_half);
  TORCH_CHECK_VALUE(grad.dim() >= 1, "grad must have shape [B, ...], got a 0-D tensor");
  check_abar(abar, grad, "grad");
}

struct LossArgs {
  at::Tensor pred, eps, key;  // contiguous; eps or key undefined
  int64_t start = 0;
};

inline LossArgs check_loss_args(const at::Tensor& pred, const std::optional<at::Tensor>& eps,
                                const std::optional<at::Tensor>& key, int64_t row_start,
                                bool allow_half) {
  check_floating(pred, "pred", allow_half);
  TORCH_CHECK_VALUE(pred.dim() >= 1, "pred must have shape [B, ...], got a 0-D tensor");
  check_nonempty(pred, "pred");
  LossArgs a;
  a.key = checked_key(eps, key, pred, "pred");
  if (eps.has_value()) {
    check_same_shape(*eps, pred, "eps", "pred");
    a.eps = eps->contiguous();
  }
  a.pred = pred.contiguous();
  a.start = stream_start(row_start, pred, "pred");
  return a;
}

inline void check_ddim_args(const at::Tensor& x_t, const at::Tensor& eps, const at::Tensor& abar_t,
                            const at::Tensor& abar_s, std::optional<double> clip,
                            bool allow_half) {
  check_floating(x_t, "x_t", allow_half);
  check_same_shape(eps, x_t, "eps", "x_t");
  const auto check_scalar = [&](const at::Tensor& t, const char* name) {
    check_floating(t, name, false);
    TORCH_CHECK_VALUE(t.dim() == 0, name, " must be a 0-D tensor (one step for every row), got "
                      "shape ", t.sizes());
    TORCH_CHECK_VALUE(t.device() == x_t.device(), name, " is on ", t.device(), " but x_t is on ",
                      x_t.device());
  };
  check_scalar(abar_t, "abar_t");
  check_scalar(abar_s, "abar_s");
  TORCH_CHECK_VALUE(!clip.has_value() || *clip > 0, "clip must be > 0 (or None), got ",
                    clip.value_or(0.0));
}

// On the CPU the schedule values are read directly and checked: 0 < abar_t < 1, 0 <= abar_s <= 1.
inline void check_ddim_values(double abar_t, double abar_s) {
  TORCH_CHECK_VALUE(abar_t > 0 && abar_t < 1, "abar_t must be in (0, 1), got ", abar_t);
  TORCH_CHECK_VALUE(abar_s >= 0 && abar_s <= 1, "abar_s must be in [0, 1], got ", abar_s);
}

}  // namespace plugkit
