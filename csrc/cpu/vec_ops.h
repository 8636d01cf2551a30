// Ops<T> for ATen's SIMD vectors, so the formulas of common/pointwise.h compile to vector code
// on the CPU. Vectorized<float>::exp & co. call SLEEF (1-ulp accurate) for the capability this
// file is compiled for (setup.py's PLUGKIT_CPU_CAPABILITY).
#pragma once

#include <ATen/cpu/vec/functional.h>
#include <ATen/cpu/vec/vec.h>

#include <type_traits>

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
  // SLEEF's 1-ulp tanhf is ~3x slower than its 3.5-ulp one (measured on AVX-512: 30 vs 10 ns a
  // vector), and tanh is most of an LSTM cell's cost; 3.5 ulp is ~4e-7 relative, far inside
  // float32's test tolerance. Doubles keep the 1-ulp version.
  static V tanh(const V& x) {
#if defined(CPU_CAPABILITY_AVX512)
    if constexpr (std::is_same_v<S, float>) return V(Sleef_tanhf16_u35(x));
#elif defined(CPU_CAPABILITY_AVX2)
    if constexpr (std::is_same_v<S, float>) return V(Sleef_tanhf8_u35(x));
#endif
    return x.tanh();
  }
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
