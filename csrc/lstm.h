// The LSTM cell (docs/operators.md) as plain functions, so lstm_layer.cpp can run its time loop
// without a dispatcher round trip per step, plus the op entry points and argument checks that
// cpu/lstm_cell.cpp and cuda/lstm_cell.cu share.
//
// The plain functions write into preallocated outputs and assume what the entry points check:
// tensors of one dtype and device, contiguous, gates/act/dgates [B, 4H] (chunks i, f, g, o of
// width H), everything else [B, H]. Outputs are `const at::Tensor&` (their data is written, not
// the handle), so temporary views such as act.select(0, t) can be passed directly.
#pragma once

#include <ATen/core/Tensor.h>
#include <ATen/ops/empty.h>

#include <tuple>

#include "common/checks.h"

namespace plugkit {

// Args: gates [B, 4H] pre-activations, c_prev [B, H], bias [4H] added to every row of gates, or
// an undefined tensor for none (lstm_layer folds its bias in here rather than in a GEMM pass).
// Writes h, c [B, H] and act [B, 4H] = (sigmoid(i), sigmoid(f), tanh(g), sigmoid(o)).
// act may be gates itself: each element is read before it is overwritten.
void lstm_cell_forward_cpu(const at::Tensor& gates, const at::Tensor& c_prev,
                           const at::Tensor& bias, const at::Tensor& h, const at::Tensor& c,
                           const at::Tensor& act);

// Args: grad_h, grad_c [B, H] (gradients w.r.t. h and c), act [B, 4H], c_prev, c [B, H].
// Writes dgates [B, 4H] (w.r.t. the pre-activations) and dc_prev [B, H].
// dc_prev may be grad_c itself, so BPTT carries dc in one buffer.
void lstm_cell_backward_cpu(const at::Tensor& grad_h, const at::Tensor& grad_c,
                            const at::Tensor& act, const at::Tensor& c_prev, const at::Tensor& c,
                            const at::Tensor& dgates, const at::Tensor& dc_prev);

// w [R, C] (float or double, CPU) transposed into a new contiguous [C, R] tensor.
at::Tensor transposed_cpu(const at::Tensor& w);

#ifdef PLUGKIT_WITH_CUDA
// The same contracts on CUDA tensors; kernels run on the current stream, no host sync.
void lstm_cell_forward_cuda(const at::Tensor& gates, const at::Tensor& c_prev,
                            const at::Tensor& bias, const at::Tensor& h, const at::Tensor& c,
                            const at::Tensor& act);
void lstm_cell_backward_cuda(const at::Tensor& grad_h, const at::Tensor& grad_c,
                             const at::Tensor& act, const at::Tensor& c_prev, const at::Tensor& c,
                             const at::Tensor& dgates, const at::Tensor& dc_prev);
#endif

inline void check_shape(const at::Tensor& t, at::IntArrayRef expected, const char* name) {
  TORCH_CHECK_VALUE(t.sizes() == expected, name, " must have shape ", expected, ", got ",
                    t.sizes());
}

// dtype: float32/float64, and float16/bfloat16 on CUDA; all alike. Returns H.
inline int64_t check_cell_args(const at::Tensor& gates, const at::Tensor& c_prev,
                               const char* gates_name = "gates") {
  check_floating(gates, gates_name, gates.is_cuda());
  check_like(c_prev, gates, "c_prev", gates_name);
  TORCH_CHECK_VALUE(gates.dim() == 2 && gates.size(1) % 4 == 0, gates_name,
                    " must be 2-D [B, 4H] (i, f, g, o), got shape ", gates.sizes());
  const int64_t H = gates.size(1) / 4;
  check_shape(c_prev, {gates.size(0), H}, "c_prev");
  return H;
}

inline void check_cell_backward_args(const at::Tensor& grad_h, const at::Tensor& grad_c,
                                     const at::Tensor& act, const at::Tensor& c_prev,
                                     const at::Tensor& c) {
  const int64_t H = check_cell_args(act, c_prev, "act");
  auto check_state = [&](const at::Tensor& t, const char* name) {
    check_like(t, act, name, "act");
    check_shape(t, {act.size(0), H}, name);
  };
  check_state(grad_h, "grad_h");
  check_state(grad_c, "grad_c");
  check_state(c, "c");
}

// The op entry points for one device's plain functions: check, make contiguous, allocate.
template <auto forward>
std::tuple<at::Tensor, at::Tensor, at::Tensor> lstm_cell_op(const at::Tensor& gates,
                                                            const at::Tensor& c_prev) {
  check_cell_args(gates, c_prev);
  at::Tensor h = at::empty(c_prev.sizes(), c_prev.options());  // [B, H]
  at::Tensor c = at::empty(c_prev.sizes(), c_prev.options());  // [B, H]
  at::Tensor act = at::empty(gates.sizes(), gates.options());  // [B, 4H]
  forward(gates.contiguous(), c_prev.contiguous(), at::Tensor(), h, c, act);
  return {h, c, act};
}

template <auto backward>
std::tuple<at::Tensor, at::Tensor> lstm_cell_backward_op(const at::Tensor& grad_h,
                                                         const at::Tensor& grad_c,
                                                         const at::Tensor& act,
                                                         const at::Tensor& c_prev,
                                                         const at::Tensor& c) {
  check_cell_backward_args(grad_h, grad_c, act, c_prev, c);
  at::Tensor dgates = at::empty(act.sizes(), act.options());         // [B, 4H]
  at::Tensor dc_prev = at::empty(c_prev.sizes(), c_prev.options());  // [B, H]
  backward(grad_h.contiguous(), grad_c.contiguous(), act.contiguous(), c_prev.contiguous(),
           c.contiguous(), dgates, dc_prev);
  return {dgates, dc_prev};
}

}  // namespace plugkit
