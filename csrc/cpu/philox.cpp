// CPU kernel of the raw philox4x32 operator (known-answer tests of common/philox.h).
#include <ATen/ops/empty_like.h>
#include <torch/library.h>

#include "common/philox.h"
#include "common/philox_checks.h"

namespace plugkit::cpu {
namespace {

at::Tensor philox4x32(const at::Tensor& counters_in, const at::Tensor& key_in) {
  check_philox_args(counters_in, key_in);
  const at::Tensor counters = counters_in.contiguous(), key = key_in.contiguous();
  at::Tensor out = at::empty_like(counters);
  const int64_t* c = counters.const_data_ptr<int64_t>();
  const int64_t* k = key.const_data_ptr<int64_t>();
  int64_t* o = out.mutable_data_ptr<int64_t>();
  for (int64_t n = 0; n < counters.size(0); ++n) {
    U32x4 ctr;
    for (int j = 0; j < 4; ++j) ctr.v[j] = static_cast<uint32_t>(c[4 * n + j]);
    const U32x4 w = philox4x32_10(ctr, static_cast<uint32_t>(k[0]), static_cast<uint32_t>(k[1]));
    for (int j = 0; j < 4; ++j) o[4 * n + j] = w.v[j];
  }
  return out;
}

}  // namespace

TORCH_LIBRARY_IMPL(plugkit, CPU, m) { m.impl("philox4x32", &philox4x32); }

}  // namespace plugkit::cpu
