// Reparameterization helpers shared by the CPU and CUDA kernels: argument checks and the
// row geometry ([..., D] viewed as rows x D).
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Optional.h>

#include "common/checks.h"

namespace plugkit {

struct ReparamArgs {
  at::Tensor mu, logvar, eps, key;  // contiguous; eps or key undefined
  int64_t rows = 0, dim = 0;
};

inline ReparamArgs check_reparam_args(const at::Tensor& mu, const at::Tensor& logvar,
                                      const std::optional<at::Tensor>& eps,
                                      const std::optional<at::Tensor>& key, bool allow_half) {
  check_floating(mu, "mu", allow_half);
  check_same_shape(logvar, mu, "logvar", "mu");
  TORCH_CHECK_VALUE(mu.dim() >= 1, "mu must have shape [..., D], got a 0-D tensor");
  TORCH_CHECK_VALUE(eps.has_value() != key.has_value(),
                    "give exactly one of eps and key (got ", eps.has_value() ? "both" : "neither",
                    ")");
  ReparamArgs args;
  args.mu = mu.contiguous();
  args.logvar = logvar.contiguous();
  if (eps.has_value()) {
    check_same_shape(*eps, mu, "eps", "mu");
    args.eps = eps->contiguous();
  } else {
    TORCH_CHECK_VALUE(key->scalar_type() == at::kLong && key->numel() == 2,
                      "key must be an int64 tensor [seed, offset], got ", key->scalar_type(),
                      " of shape ", key->sizes());
    TORCH_CHECK_VALUE(key->device() == mu.device(), "key is on ", key->device(), " but mu is on ",
                      mu.device());
    args.key = key->contiguous();
  }
  args.dim = mu.size(-1);
  args.rows = args.dim == 0 ? 0 : mu.numel() / args.dim;
  return args;
}

inline std::vector<int64_t> kl_shape(const at::Tensor& mu) {
  return std::vector<int64_t>(mu.sizes().begin(), mu.sizes().end() - 1);
}

// The backward reads every input at mu's layout and device: a gradient of another shape or on
// another device would be read out of bounds (or, on a GPU, as a host pointer).
inline void check_reparam_backward_args(const at::Tensor& grad_z, const at::Tensor& grad_kl,
                                        const at::Tensor& mu, const at::Tensor& logvar,
                                        const at::Tensor& z, bool allow_half) {
  check_floating(mu, "mu", allow_half);
  TORCH_CHECK_VALUE(mu.dim() >= 1, "mu must have shape [..., D], got a 0-D tensor");
  check_same_shape(logvar, mu, "logvar", "mu");
  check_same_shape(z, mu, "z", "mu");
  check_same_shape(grad_z, mu, "grad_z", "mu");
  check_like(grad_kl, mu, "grad_kl", "mu");
  TORCH_CHECK_VALUE(grad_kl.sizes() == at::IntArrayRef(kl_shape(mu)), "grad_kl has shape ",
                    grad_kl.sizes(), " but the KL of mu ", mu.sizes(), " has ", kl_shape(mu));
}

}  // namespace plugkit
