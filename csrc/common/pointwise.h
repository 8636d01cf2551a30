// Pointwise formulas shared by the CPU and CUDA kernels. Each is written once against Ops<T>, a
// tiny table of elementary functions: scalars (host and device) are specialized below and SIMD
// vectors in cpu/vec_ops.h, so the CPU tests exercise exactly the formulas the GPU runs.
#pragma once

#include <cmath>

#include "common/macros.h"

namespace plugkit {

template <typename T>
struct Ops;

template <typename T>
struct ScalarOps {
  static PK_HD T exp(T x) { return ::exp(x); }
  static PK_HD T log(T x) { return ::log(x); }
  static PK_HD T log1p(T x) { return ::log1p(x); }
  static PK_HD T tanh(T x) { return ::tanh(x); }
  static PK_HD T abs(T x) { return ::fabs(x); }
  static PK_HD T max(T a, T b) { return a > b ? a : b; }
  // 1 where a < b, else 0 (a mask that multiplies, so vectors need no branches)
  static PK_HD T less(T a, T b) { return a < b ? T(1) : T(0); }
};

template <>
struct Ops<float> : ScalarOps<float> {
  static PK_HD float exp(float x) { return ::expf(x); }
  static PK_HD float log(float x) { return ::logf(x); }
  static PK_HD float log1p(float x) { return ::log1pf(x); }
  static PK_HD float tanh(float x) { return ::tanhf(x); }
  static PK_HD float abs(float x) { return ::fabsf(x); }
};

template <>
struct Ops<double> : ScalarOps<double> {};

// softplus(-x) = -log(sigmoid(x)) = max(-x, 0) + log1p(exp(-|x|)): never overflows.
template <typename T>
PK_HD T softplus_neg(T x) {
  using M = Ops<T>;
  return M::max(T(0) - x, T(0)) + M::log1p(M::exp(T(0) - M::abs(x)));
}

// sigmoid(x) = 1 / (1 + exp(-x)); exp overflowing to inf gives the correct limit 0.
template <typename T>
PK_HD T sigmoid(T x) {
  using M = Ops<T>;
  return T(1) / (T(1) + M::exp(T(0) - x));
}

// One element's term of KL(N(mu, exp(logvar)) || N(0, 1)), before the factor 1/2.
template <typename T>
PK_HD T kl_term(T mu, T logvar) {
  return Ops<T>::exp(logvar) + mu * mu - T(1) - logvar;
}

// LSTM cell forward for one hidden unit. Gates are pre-activations in PyTorch's (i, f, g, o)
// order; the activations are returned for the backward pass.
template <typename T>
struct LstmCellOut {
  T i, f, g, o, c, h;
};

template <typename T>
PK_HD LstmCellOut<T> lstm_cell_forward(T gi, T gf, T gg, T go, T c_prev) {
  using M = Ops<T>;
  LstmCellOut<T> out{sigmoid(gi), sigmoid(gf), M::tanh(gg), sigmoid(go), T(0), T(0)};
  out.c = out.f * c_prev + out.i * out.g;
  out.h = out.o * M::tanh(out.c);
  return out;
}

// LSTM cell backward for one hidden unit, from the saved activations (i, f, g, o), c_prev and c.
template <typename T>
struct LstmCellGrad {
  T di, df, dg, do_, dc_prev;  // gradients w.r.t. the pre-activation gates and c_prev
};

template <typename T>
PK_HD LstmCellGrad<T> lstm_cell_backward(T i, T f, T g, T o, T c_prev, T c, T dh, T dc) {
  using M = Ops<T>;
  const T tc = M::tanh(c);
  const T dc_total = dc + dh * o * (T(1) - tc * tc);
  LstmCellGrad<T> grad;
  grad.di = dc_total * g * i * (T(1) - i);
  grad.df = dc_total * c_prev * f * (T(1) - f);
  grad.dg = dc_total * i * (T(1) - g * g);
  grad.do_ = dh * tc * o * (T(1) - o);
  grad.dc_prev = dc_total * f;
  return grad;
}

}  // namespace plugkit
