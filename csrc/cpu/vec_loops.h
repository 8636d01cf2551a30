// Loop helpers for the CPU kernels: SIMD bodies over parallel ranges, with masked tails.
#pragma once

#include <ATen/Parallel.h>

#include <algorithm>
#include <vector>

#include "cpu/vec_ops.h"

namespace plugkit::cpu {

constexpr int64_t kGrain = 1 << 15;  // elements per task: enough to amortize a thread wake-up

// body(i, count) handles elements [i, i + count), count <= Vectorized<S>::size(); use
// V::loadu(p + i, count) and v.store(p + i, count) so the tail needs no special code.
template <typename S, typename F>
void parallel_vec_for(int64_t n, const F& body, int64_t grain = kGrain) {
  constexpr int64_t W = at::vec::Vectorized<S>::size();
  auto range = [&](int64_t begin, int64_t end) {
    int64_t i = begin;
    for (; i + W <= end; i += W) body(i, W);
    if (i < end) body(i, end - i);
  };
  if (n <= grain) return range(0, n);  // small inputs: no thread hand-off at all
  at::parallel_for(0, n, grain, range);
}

// sum_i term(x[i]) in float64, deterministic: fixed chunks summed in a fixed order whatever the
// thread count; SIMD lanes accumulate short blocks in S before joining the float64 total.
template <typename S, typename F>
double deterministic_sum(const S* x, int64_t n, const F& term) {
  using V = at::vec::Vectorized<S>;
  constexpr int64_t kChunk = 1 << 14, kBlock = 256;
  auto chunk_sum = [&](int64_t begin, int64_t end) {
    double total = 0;
    for (int64_t b = begin; b < end; b += kBlock) {
      const int64_t e = std::min(end, b + kBlock);
      V acc(S(0));
      int64_t i = b;
      for (; i + V::size() <= e; i += V::size()) acc += term(V::loadu(x + i));
      total += lane_sum(acc);
      if (i < e) {  // the tail's padding lanes must not contribute term(0)
        S lanes[V::size()];
        term(V::loadu(x + i, e - i)).store(lanes);
        for (int64_t k = 0; k < e - i; ++k) total += lanes[k];
      }
    }
    return total;
  };
  const int64_t chunks = (n + kChunk - 1) / kChunk;
  if (chunks <= 1) return chunk_sum(0, n);
  std::vector<double> partial(chunks);
  at::parallel_for(0, chunks, 1, [&](int64_t c0, int64_t c1) {
    for (int64_t c = c0; c < c1; ++c) partial[c] = chunk_sum(c * kChunk, std::min(n, (c + 1) * kChunk));
  });
  double total = 0;
  for (double p : partial) total += p;
  return total;
}

}  // namespace plugkit::cpu
