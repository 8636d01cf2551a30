// CPU kernels of the LSTM cell (docs/operators.md): one fused SIMD pass forward and one backward,
// running the formulas of common/pointwise.h on Vectorized<S>, parallel over the B*H units.
#include <ATen/Dispatch.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <algorithm>

#include "cpu/vec_ops.h"
#include "lstm.h"

namespace plugkit {
namespace {

using at::vec::Vectorized;

// Units per task: a unit costs a handful of SLEEF calls, so ~2k of them outweigh a thread
// wake-up while still splitting a typical step (B*H = 16k) across the cores.
constexpr int64_t kUnitGrain = 2048;

// Calls body(b, j, n) for the units [j, j + n) of row b, n <= the vector width, covering all
// B*H units in parallel. Pieces never cross a row, so gate k of a piece is the contiguous run
// at row offset k*H + j.
template <typename S, typename F>
void for_each_unit(int64_t B, int64_t H, const F& body) {
  constexpr int64_t W = Vectorized<S>::size();
  at::parallel_for(0, B * H, kUnitGrain, [&](int64_t begin, int64_t end) {
    for (int64_t b = begin / H; b * H < end; ++b) {
      const int64_t j_end = std::min(H, end - b * H);
      for (int64_t j = std::max<int64_t>(0, begin - b * H); j < j_end; j += W) {
        body(b, j, std::min(W, j_end - j));
      }
    }
  });
}

template <typename S>
void forward_kernel(const S* gates, const S* c_prev, const S* bias, S* h, S* c, S* act, int64_t B,
                    int64_t H) {
  using V = Vectorized<S>;
  for_each_unit<S>(B, H, [&](int64_t b, int64_t j, int64_t n) {
    const S* g = gates + b * 4 * H + j;  // gate k at g + k*H
    S* a = act + b * 4 * H + j;          // may equal g: all loads come before the stores
    const int64_t u = b * H + j;
    auto gate = [&](int64_t k) {
      const V pre = V::loadu(g + k * H, n);
      return bias ? pre + V::loadu(bias + k * H + j, n) : pre;
    };
    const auto out = lstm_cell_forward(gate(0), gate(1), gate(2), gate(3),
                                       V::loadu(c_prev + u, n));
    out.i.store(a, n);
    out.f.store(a + H, n);
    out.g.store(a + 2 * H, n);
    out.o.store(a + 3 * H, n);
    out.c.store(c + u, n);
    out.h.store(h + u, n);
  });
}

template <typename S>
void backward_kernel(const S* grad_h, const S* grad_c, const S* act, const S* c_prev, const S* c,
                     S* dgates, S* dc_prev, int64_t B, int64_t H) {
  using V = Vectorized<S>;
  for_each_unit<S>(B, H, [&](int64_t b, int64_t j, int64_t n) {
    const S* a = act + b * 4 * H + j;
    S* d = dgates + b * 4 * H + j;
    const int64_t u = b * H + j;
    const auto grad = lstm_cell_backward(
        V::loadu(a, n), V::loadu(a + H, n), V::loadu(a + 2 * H, n), V::loadu(a + 3 * H, n),
        V::loadu(c_prev + u, n), V::loadu(c + u, n), V::loadu(grad_h + u, n),
        V::loadu(grad_c + u, n));
    grad.di.store(d, n);
    grad.df.store(d + H, n);
    grad.dg.store(d + 2 * H, n);
    grad.do_.store(d + 3 * H, n);
    grad.dc_prev.store(dc_prev + u, n);  // may equal grad_c + u, already loaded
  });
}

}  // namespace

void lstm_cell_forward_cpu(const at::Tensor& gates, const at::Tensor& c_prev,
                           const at::Tensor& bias, const at::Tensor& h, const at::Tensor& c,
                           const at::Tensor& act) {
  AT_DISPATCH_FLOATING_TYPES(gates.scalar_type(), "plugkit_lstm_cell_cpu", [&] {
    forward_kernel<scalar_t>(gates.const_data_ptr<scalar_t>(), c_prev.const_data_ptr<scalar_t>(),
                             bias.defined() ? bias.const_data_ptr<scalar_t>() : nullptr,
                             h.mutable_data_ptr<scalar_t>(), c.mutable_data_ptr<scalar_t>(),
                             act.mutable_data_ptr<scalar_t>(), c_prev.size(0), c_prev.size(1));
  });
}

void lstm_cell_backward_cpu(const at::Tensor& grad_h, const at::Tensor& grad_c,
                            const at::Tensor& act, const at::Tensor& c_prev, const at::Tensor& c,
                            const at::Tensor& dgates, const at::Tensor& dc_prev) {
  AT_DISPATCH_FLOATING_TYPES(act.scalar_type(), "plugkit_lstm_cell_backward_cpu", [&] {
    backward_kernel<scalar_t>(
        grad_h.const_data_ptr<scalar_t>(), grad_c.const_data_ptr<scalar_t>(),
        act.const_data_ptr<scalar_t>(), c_prev.const_data_ptr<scalar_t>(),
        c.const_data_ptr<scalar_t>(), dgates.mutable_data_ptr<scalar_t>(),
        dc_prev.mutable_data_ptr<scalar_t>(), c_prev.size(0), c_prev.size(1));
  });
}

TORCH_LIBRARY_IMPL(plugkit, CPU, m) {
  m.impl("lstm_cell", &lstm_cell_op<&lstm_cell_forward_cpu>);
  m.impl("lstm_cell_backward", &lstm_cell_backward_op<&lstm_cell_backward_cpu>);
}

}  // namespace plugkit
