// lstm_layer and its backward (docs/operators.md): the time loop and backpropagation through time
// in C++ around the fused cell, one device-generic implementation registered for CPU and CUDA.
// The GEMMs go through ATen (MKL / cuBLAS); the loop allocates nothing per step.
//
// Forward:  act = x W_ih^T, all steps in one GEMM; then per step act[t] += h_{t-1} W_hh^T,
//           and the cell adds b_ih + b_hh and turns act[t] into activations in place.
// Backward: for t = T-1..0: dh = grad_y[t] + dgates[t+1] W_hh, cell backward -> dgates[t];
//           then dx = dG W_ih, dW_ih = dG^T x, dW_hh = dG^T [h0, y[:-1]], db = sum dG.
#include <ATen/ops/add.h>
#include <ATen/ops/addmm.h>
#include <ATen/ops/empty.h>
#include <ATen/ops/mm.h>
#include <ATen/ops/zeros.h>
#include <torch/library.h>

#include <tuple>

#include "lstm.h"

namespace plugkit {
namespace {

using at::Tensor;

void cell_forward(const Tensor& gates, const Tensor& c_prev, const Tensor& bias, const Tensor& h,
                  const Tensor& c, const Tensor& act) {
#ifdef PLUGKIT_WITH_CUDA
  if (gates.is_cuda()) return lstm_cell_forward_cuda(gates, c_prev, bias, h, c, act);
#endif
  lstm_cell_forward_cpu(gates, c_prev, bias, h, c, act);
}

void cell_backward(const Tensor& grad_h, const Tensor& grad_c, const Tensor& act,
                   const Tensor& c_prev, const Tensor& c, const Tensor& dgates,
                   const Tensor& dc_prev) {
#ifdef PLUGKIT_WITH_CUDA
  if (act.is_cuda()) {
    return lstm_cell_backward_cuda(grad_h, grad_c, act, c_prev, c, dgates, dc_prev);
  }
#endif
  lstm_cell_backward_cpu(grad_h, grad_c, act, c_prev, c, dgates, dc_prev);
}

// w_hh^T [H, 4H] for the per-step GEMMs: on the CPU a contiguous copy when that pays for
// itself, else a view. MKL runs [B, H] x [H, 4H] ~15% faster on a contiguous right operand
// than on the transposed view (200 vs 236 us at B=64, H=256, one thread), and the copy costs
// about what that saves on T * B = 280 rows, so short calls (sampling's T = 1) keep the view.
// cuBLAS reads a transposed operand at no cost: CUDA keeps the view.
Tensor recurrent_weight_t(const Tensor& w_hh, int64_t T, int64_t B) {
  if (w_hh.is_cuda() || T * B < 512) return w_hh.contiguous().t();
  return transposed_cpu(w_hh);
}

// Checks a tensor that must match x's dtype and device and have the given shape.
void check_arg(const Tensor& t, const Tensor& x, at::IntArrayRef shape, const char* name) {
  check_like(t, x, name, "x");
  check_shape(t, shape, name);
}

struct Dims {
  int64_t T, B, I, H;
};

// Checks x, the initial states and the weights (not the biases); returns the sizes.
Dims check_layer_args(const Tensor& x, const Tensor& h0, const Tensor& c0, const Tensor& w_ih,
                      const Tensor& w_hh) {
  check_floating(x, "x", x.is_cuda());
  TORCH_CHECK_VALUE(x.dim() == 3, "x must be 3-D [T, B, I], got shape ", x.sizes());
  check_like(w_hh, x, "w_hh", "x");
  TORCH_CHECK_VALUE(w_hh.dim() == 2, "w_hh must be 2-D [4H, H], got shape ", w_hh.sizes());
  const Dims d{x.size(0), x.size(1), x.size(2), w_hh.size(1)};
  check_shape(w_hh, {4 * d.H, d.H}, "w_hh");
  check_arg(w_ih, x, {4 * d.H, d.I}, "w_ih");
  check_arg(h0, x, {d.B, d.H}, "h0");
  check_arg(c0, x, {d.B, d.H}, "c0");
  return d;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor> layer(const Tensor& x_in, const Tensor& h0_in,
                                                         const Tensor& c0_in,
                                                         const Tensor& w_ih_in,
                                                         const Tensor& w_hh_in, const Tensor& b_ih,
                                                         const Tensor& b_hh) {
  const auto [T, B, I, H] = check_layer_args(x_in, h0_in, c0_in, w_ih_in, w_hh_in);
  check_arg(b_ih, x_in, {4 * H}, "b_ih");
  check_arg(b_hh, x_in, {4 * H}, "b_hh");
  const Tensor x = x_in.contiguous(), h0 = h0_in.contiguous(), c0 = c0_in.contiguous();
  const Tensor w_hh_t = recurrent_weight_t(w_hh_in, T, B);  // [H, 4H]
  // Input projections of all steps in one GEMM. The buffer then takes each step's recurrent
  // term, and the cell overwrites it with the activations, so it becomes the saved `act`.
  // The bias is added by the cell: a GEMM with a bias first copies it into all T*B rows.
  const Tensor act = at::mm(x.view({T * B, I}), w_ih_in.t())
                         .view({T, B, 4 * H});  // [T, B, 4H]
  const Tensor bias = at::add(b_ih, b_hh).contiguous();  // [4H]
  Tensor y = at::empty({T, B, H}, x.options());   // [T, B, H]
  Tensor cs = at::empty({T, B, H}, x.options());  // [T, B, H] cell state of every step
  for (int64_t t = 0; t < T; ++t) {
    const Tensor gates = act.select(0, t);  // [B, 4H]
    gates.addmm_(t > 0 ? y.select(0, t - 1) : h0, w_hh_t);
    cell_forward(gates, t > 0 ? cs.select(0, t - 1) : c0, bias, y.select(0, t), cs.select(0, t),
                 gates);
  }
  // Copies: an op's outputs must not alias each other or its inputs.
  Tensor h_n = (T > 0 ? y.select(0, T - 1) : h0).clone();   // [B, H]
  Tensor c_n = (T > 0 ? cs.select(0, T - 1) : c0).clone();  // [B, H]
  return {y, h_n, c_n, act, cs};
}

// dW_hh = sum_t dgates[t]^T h_{t-1}, with h_{-1} = h0: two GEMMs instead of concatenating.
Tensor recurrent_weight_grad(const Tensor& dgates, const Tensor& h0, const Tensor& y) {
  const int64_t T = dgates.size(0), B = h0.size(0), H = h0.size(1);
  if (T == 0) return at::zeros({4 * H, H}, h0.options());
  Tensor dw_hh = at::mm(dgates.select(0, 0).t(), h0);  // [4H, H]
  if (T > 1) {
    // explicit sizes, not -1: B may be 0
    dw_hh.addmm_(dgates.narrow(0, 1, T - 1).view({(T - 1) * B, 4 * H}).t(),
                 y.narrow(0, 0, T - 1).view({(T - 1) * B, H}));
  }
  return dw_hh;
}

std::tuple<Tensor, Tensor, Tensor, Tensor, Tensor, Tensor, Tensor> layer_backward(
    const Tensor& grad_y_in, const Tensor& grad_h_n, const Tensor& grad_c_n, const Tensor& x_in,
    const Tensor& h0_in, const Tensor& c0_in, const Tensor& w_ih, const Tensor& w_hh,
    const Tensor& y_in, const Tensor& act_in, const Tensor& cs_in) {
  const auto [T, B, I, H] = check_layer_args(x_in, h0_in, c0_in, w_ih, w_hh);
  check_arg(grad_y_in, x_in, {T, B, H}, "grad_y");
  check_arg(grad_h_n, x_in, {B, H}, "grad_h_n");
  check_arg(grad_c_n, x_in, {B, H}, "grad_c_n");
  check_arg(y_in, x_in, {T, B, H}, "y");
  check_arg(act_in, x_in, {T, B, 4 * H}, "act");
  check_arg(cs_in, x_in, {T, B, H}, "cs");
  // grad_y is read a step at a time by ATen calls, which take any strides: no copy of an
  // expanded gradient such as y.sum()'s.
  const Tensor& grad_y = grad_y_in;
  const Tensor x = x_in.contiguous(), h0 = h0_in.contiguous(),
               c0 = c0_in.contiguous(), y = y_in.contiguous(), act = act_in.contiguous(),
               cs = cs_in.contiguous(), w_hh_c = w_hh.contiguous();  // reused every step
  Tensor dgates = at::empty({T, B, 4 * H}, x.options());  // [T, B, 4H]
  Tensor dh = at::empty({B, H}, x.options());             // [B, H] gradient w.r.t. h_t
  Tensor dc = grad_c_n.clone(at::MemoryFormat::Contiguous);  // [B, H], carried back in place
  for (int64_t t = T - 1; t >= 0; --t) {
    if (t == T - 1) {
      at::add_out(dh, grad_y.select(0, t), grad_h_n);
    } else {
      at::addmm_out(dh, grad_y.select(0, t), dgates.select(0, t + 1), w_hh_c);
    }
    cell_backward(dh, dc, act.select(0, t), t > 0 ? cs.select(0, t - 1) : c0, cs.select(0, t),
                  dgates.select(0, t), dc);
  }
  Tensor dh0 = T > 0 ? at::mm(dgates.select(0, 0), w_hh_c)
                     : grad_h_n.clone(at::MemoryFormat::Contiguous);  // [B, H]
  const Tensor dG = dgates.view({T * B, 4 * H});                    // [T*B, 4H]
  Tensor dx = at::mm(dG, w_ih).view({T, B, I});                     // [T, B, I]
  Tensor dw_ih = at::mm(dG.t(), x.view({T * B, I}));                // [4H, I]
  Tensor dw_hh = recurrent_weight_grad(dgates, h0, y);              // [4H, H]
  Tensor db_ih = dG.sum(0);                                         // [4H]
  Tensor db_hh = db_ih.clone();  // equal, but outputs must not alias
  return {dx, dh0, dc, dw_ih, dw_hh, db_ih, db_hh};
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CPU, m) {
  m.impl("lstm_layer", &layer);
  m.impl("lstm_layer_backward", &layer_backward);
}

#ifdef PLUGKIT_WITH_CUDA
TORCH_LIBRARY_IMPL(plugkit, CUDA, m) {
  m.impl("lstm_layer", &layer);
  m.impl("lstm_layer_backward", &layer_backward);
}
#endif

}  // namespace plugkit
