// Checks of the raw philox4x32 test operator, shared by its CPU and CUDA entry points.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>

namespace plugkit {

inline void check_philox_args(const at::Tensor& counters, const at::Tensor& key) {
  TORCH_CHECK_VALUE(counters.scalar_type() == at::kLong && counters.dim() == 2 &&
                        counters.size(1) == 4,
                    "counters must be int64 [N, 4], got ", counters.scalar_type(), " ",
                    counters.sizes());
  TORCH_CHECK_VALUE(key.scalar_type() == at::kLong && key.numel() == 2,
                    "key must be int64 [2], got ", key.scalar_type(), " ", key.sizes());
  TORCH_CHECK_VALUE(key.device() == counters.device(), "key is on ", key.device(),
                    " but counters is on ", counters.device());
}

}  // namespace plugkit
