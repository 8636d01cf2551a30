// GAN loss terms shared by the CPU and CUDA kernels (docs/operators.md). Every loss is a sum of
// per-element terms averaged over each tensor, so a kernel needs one term and its derivative
// per (kind, role): D on real logits, D on fake logits, G on fake logits.
#pragma once

#include "common/pointwise.h"

namespace plugkit {

enum class GanKind : int { kBce = 0, kHinge = 1, kWasserstein = 2 };

// D's term on a real logit r, with one-sided label smoothing s (bce only):
//   bce: (1-s) softplus(-r) + s softplus(r) = softplus(-r) + s r;  hinge: relu(1 - r);  wgan: -r
template <GanKind K, typename T>
PK_HD T d_real_term(T r, T s) {
  using M = Ops<T>;
  if constexpr (K == GanKind::kBce) return softplus_neg(r) + s * r;
  else if constexpr (K == GanKind::kHinge) return M::max(T(1) - r, T(0));
  else return T(0) - r;
}

template <GanKind K, typename T>
PK_HD T d_real_grad(T r, T s) {
  using M = Ops<T>;
  if constexpr (K == GanKind::kBce) return s - sigmoid(T(0) - r);
  else if constexpr (K == GanKind::kHinge) return T(0) - M::less(r, T(1));
  else return T(-1);
}

// D's term on a fake logit f:  bce: softplus(f);  hinge: relu(1 + f);  wgan: f
template <GanKind K, typename T>
PK_HD T d_fake_term(T f) {
  using M = Ops<T>;
  if constexpr (K == GanKind::kBce) return softplus_neg(T(0) - f);
  else if constexpr (K == GanKind::kHinge) return M::max(T(1) + f, T(0));
  else return f;
}

template <GanKind K, typename T>
PK_HD T d_fake_grad(T f) {
  using M = Ops<T>;
  if constexpr (K == GanKind::kBce) return sigmoid(f);
  else if constexpr (K == GanKind::kHinge) return M::less(T(-1), f);
  else return T(1);
}

// G's term on a fake logit f:  bce (non-saturating): softplus(-f);  hinge and wgan: -f
template <GanKind K, typename T>
PK_HD T g_term(T f) {
  if constexpr (K == GanKind::kBce) return softplus_neg(f);
  else return T(0) - f;
}

template <GanKind K, typename T>
PK_HD T g_grad(T f) {
  if constexpr (K == GanKind::kBce) return T(0) - sigmoid(T(0) - f);
  else return T(-1);
}

}  // namespace plugkit
