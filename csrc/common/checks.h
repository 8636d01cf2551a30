// Host-side argument checks shared by the CPU and CUDA entry points. The Python wrappers check
// first with friendlier messages; these guard direct torch.ops.plugkit calls.
#pragma once

#include <ATen/core/Tensor.h>
#include <c10/util/Exception.h>
#include <c10/util/string_view.h>

#include "common/gan.h"

namespace plugkit {

inline void check_floating(const at::Tensor& t, const char* name, bool allow_half) {
  const auto dtype = t.scalar_type();
  const bool ok = dtype == at::kFloat || dtype == at::kDouble ||
                  (allow_half && (dtype == at::kHalf || dtype == at::kBFloat16));
  TORCH_CHECK_VALUE(ok, name, " must be a floating tensor (float32/float64",
                    allow_half ? "/float16/bfloat16" : "", "), got ", dtype);
}

inline void check_like(const at::Tensor& t, const at::Tensor& ref, const char* name,
                       const char* ref_name) {
  TORCH_CHECK_VALUE(t.scalar_type() == ref.scalar_type(), name, " has dtype ", t.scalar_type(),
                    " but ", ref_name, " has ", ref.scalar_type());
  TORCH_CHECK_VALUE(t.device() == ref.device(), name, " is on ", t.device(), " but ", ref_name,
                    " is on ", ref.device());
}

inline void check_same_shape(const at::Tensor& t, const at::Tensor& ref, const char* name,
                             const char* ref_name) {
  check_like(t, ref, name, ref_name);
  TORCH_CHECK_VALUE(t.sizes() == ref.sizes(), name, " has shape ", t.sizes(), " but ", ref_name,
                    " has ", ref.sizes());
}

inline GanKind parse_gan_kind(c10::string_view kind) {
  if (kind == "bce") return GanKind::kBce;
  if (kind == "hinge") return GanKind::kHinge;
  if (kind == "wasserstein") return GanKind::kWasserstein;
  TORCH_CHECK_VALUE(false, "kind must be 'bce', 'hinge' or 'wasserstein', got '", kind, "'");
}

inline void check_gan_args(GanKind kind, double label_smoothing) {
  TORCH_CHECK_VALUE(label_smoothing >= 0.0 && label_smoothing < 1.0,
                    "label_smoothing must be in [0, 1), got ", label_smoothing);
  TORCH_CHECK_VALUE(kind == GanKind::kBce || label_smoothing == 0.0,
                    "label_smoothing applies only to kind='bce', got ", label_smoothing);
}

inline void check_nonempty(const at::Tensor& t, const char* name) {
  TORCH_CHECK_VALUE(t.numel() > 0, name, " is empty: the mean of an empty loss is undefined");
}

// Calls body(std::integral_constant<GanKind, K>{}) for the runtime kind, so kernels can be
// templated on it and the per-element code has no branch on the kind.
template <typename F>
void dispatch_gan_kind(GanKind kind, const F& body) {
  switch (kind) {
    case GanKind::kBce: return body(std::integral_constant<GanKind, GanKind::kBce>{});
    case GanKind::kHinge: return body(std::integral_constant<GanKind, GanKind::kHinge>{});
    case GanKind::kWasserstein:
      return body(std::integral_constant<GanKind, GanKind::kWasserstein>{});
  }
}

}  // namespace plugkit
