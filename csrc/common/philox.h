// Counter-based RNG shared by the CPU and CUDA kernels: Philox4x32-10 (Salmon et al., "Parallel
// random numbers: as easy as 1, 2, 3", SC'11) and the Box-Muller transform. The same
// (seed, offset) gives the same uint32 stream on every device; the normals derived from it agree
// to within the last-bit differences of each platform's log/sin/cos.
//
// Stream layout (the pure-PyTorch fallback in plugkit/ops/_fallback.py reproduces it exactly):
//   block j (4 outputs) = philox(counter = {lo32(offset + j), hi32(offset + j), 0, 0},
//                                key     = {lo32(seed), hi32(seed)})
//   element n uses block n / 4; lanes (x0, x1) give normals 4j, 4j+1 and (x2, x3) give 4j+2, 4j+3
//   through z_even = r * cos(theta), z_odd = r * sin(theta) with
//   r = sqrt(-2 log u(x_a)), theta = 2 pi u(x_b), u(x) = ((x >> 9) + 0.5) * 2^-23 in (0, 1).
#pragma once

#include <cstdint>

#include "common/macros.h"

namespace plugkit {

struct U32x4 {
  uint32_t v[4];
};

namespace philox_detail {
constexpr uint32_t kM0 = 0xD2511F53u, kM1 = 0xCD9E8D57u;  // round multipliers
constexpr uint32_t kW0 = 0x9E3779B9u, kW1 = 0xBB67AE85u;  // Weyl key increments

PK_HD void mulhilo(uint32_t a, uint32_t b, uint32_t& hi, uint32_t& lo) {
#if defined(__CUDA_ARCH__)
  lo = a * b;
  hi = __umulhi(a, b);
#else
  const uint64_t product = static_cast<uint64_t>(a) * b;
  lo = static_cast<uint32_t>(product);
  hi = static_cast<uint32_t>(product >> 32);
#endif
}
}  // namespace philox_detail

// Philox4x32 with 10 rounds: the Random123 reference configuration.
PK_HD U32x4 philox4x32_10(U32x4 ctr, uint32_t k0, uint32_t k1) {
  using namespace philox_detail;
  for (int round = 0; round < 10; ++round) {
    uint32_t hi0, lo0, hi1, lo1;
    mulhilo(kM0, ctr.v[0], hi0, lo0);
    mulhilo(kM1, ctr.v[2], hi1, lo1);
    ctr = U32x4{{hi1 ^ ctr.v[1] ^ k0, lo1, hi0 ^ ctr.v[3] ^ k1, lo0}};
    k0 += kW0;
    k1 += kW1;
  }
  return ctr;
}

// The 4 uint32 of block `block` for a (seed, offset) key.
PK_HD U32x4 philox_block(uint64_t seed, uint64_t offset, uint64_t block) {
  const uint64_t counter = offset + block;  // wraps modulo 2^64, like the fallback's int64 add
  const U32x4 ctr{{static_cast<uint32_t>(counter), static_cast<uint32_t>(counter >> 32), 0u, 0u}};
  return philox4x32_10(ctr, static_cast<uint32_t>(seed), static_cast<uint32_t>(seed >> 32));
}

// Uniform in the open interval (0, 1) from the top 23 bits; exact in float32 and float64.
template <typename T>
PK_HD T uniform_open(uint32_t x) {
  return (static_cast<T>(x >> 9) + T(0.5)) * T(1.0 / 8388608.0);
}

constexpr double kTwoPi = 6.283185307179586476925286766559;

}  // namespace plugkit
