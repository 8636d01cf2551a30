// Ops<T> for ATen's SIMD vectors, so the formulas of common/pointwise.h compile to vector code
// on the CPU. Vectorized<float>::exp & co. call SLEEF (1-ulp accurate) for the capability this
// file is compiled for (setup.py's PLUGKIT_CPU_CAPABILITY).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include "common/pointwise.h"

namespace plugkit {

template <typename S>
struct Ops<at::vec::Vectorized<S>> {
  using V = at::vec::Vectorized<S>;
  static V exp(const V& x) { return x.exp(); }
  static V log(const V& x) { return x.log(); }
  // SLEEF's log1pf is ~10x slower than its logf. Goldberg's identity log1p(x) = log(u) * x /
  // (u - 1), u = 1 + x, keeps log1p's accuracy (a few ulp) at the cost of one log and a divide;
  // where u rounds to 1, log1p(x) = x to working precision.
  static V log1p(const V& x) {
    const V u = V(S(1)) + x, u_minus_1 = u - V(S(1));
    return V::blendv(u.log() * x / u_minus_1, x, u_minus_1 == V(S(0)));
  }
  static V tanh(const V& x) { return x.tanh(); }
  static V abs(const V& x) { return x.abs(); }
  static V max(const V& a, const V& b) { return at::vec::maximum(a, b); }
  static V less(const V& a, const V& b) { return (a < b) & V(S(1)); }
};

// Sum of a vector's lanes in a fixed order (deterministic, unlike a tree that depends on width).
template <typename S>
inline double lane_sum(const at::vec::Vectorized<S>& v) {
  S lanes[at::vec::Vectorized<S>::size()];
  v.store(lanes);
  double total = 0;
  for (int k = 0; k < at::vec::Vectorized<S>::size(); ++k) total += lanes[k];
  return total;
}

}  // namespace plugkit
