// Index math of a 2-D transposed convolution, shared by the CPU (C++) and
// CUDA kernels.  Plain C++ (no torch headers): every function is
// `__host__ __device__` under nvcc and a plain inline function elsewhere, so
// the CPU tests exercise exactly the arithmetic the CUDA kernels use.
//
// Conventions (those of torch.nn.functional.conv_transpose2d):
//   weight : (C_in, C_out / groups, K_h, K_w)
//   out    : (N, C_out, H_out, W_out),
//   H_out  = (H_in - 1) * s - 2 * p + d * (K - 1) + output_padding + 1
// Input pixel i contributes through tap k to output pixel o = i * s - p + k * d.
// The *gather* form used here inverts that: output o receives tap k from
// input i = (o + p - k * d) / s when the division is exact and 0 <= i < in.
//
// Stride phases: writing o = s * a + r (0 <= r < s), tap k hits input
// a + off(r, k) with off(r, k) = (r + p - k * d) / s whenever
// (r + p - k * d) is divisible by s, independently of a.  The CPU kernel
// vectorizes over a, the CUDA kernel uses the per-pixel form.
#pragma once

#if defined(__CUDACC__)
#define OWSD_HD __host__ __device__ __forceinline__
#else
#define OWSD_HD inline
#endif

namespace owsd {

// Codes of the activations / normalizations; keep in sync with
// owsd/ops/_api.py (ACT_CODES, NORM_CODES) and reference.py.
enum Activation : int { kActNone = 0, kActRelu = 1, kActLeakyRelu = 2, kActTanh = 3 };
enum Normalization : int { kNormNone = 0, kNormSigmoid = 1, kNormStandardize = 2 };
enum OutKind : int { kOutFloat32 = 0, kOutFloat64 = 1, kOutUint8 = 2 };

constexpr double kLeakySlope = 0.2;  // reference.LEAKY_SLOPE
constexpr double kStdEps = 1e-6;     // reference.STD_EPS
constexpr int kMaxLayers = 32;       // max layers of one fused call

// Output size of a transposed convolution along one dimension.
OWSD_HD int convt_out_size(int in, int k, int s, int p, int op, int d) {
  return (in - 1) * s - 2 * p + d * (k - 1) + op + 1;
}

// Input index that output index `o` reads through tap `k`, or -1 when the tap
// falls between input samples (stride) or outside [0, in).
OWSD_HD int convt_tap_input(int o, int k, int s, int p, int d, int in) {
  const int t = o + p - k * d;
  if (t < 0 || t % s != 0) return -1;
  const int i = t / s;
  return i < in ? i : -1;
}

// Whether tap `k` contributes to stride phase `r` (outputs o = s*a + r); if so
// writes the phase offset: the tap reads input a + *off.
OWSD_HD bool convt_phase_tap(int r, int k, int s, int p, int d, int* off) {
  const int t = r + p - k * d;
  if (t % s != 0) return false;  // C++ '%' keeps the sign: exact for t < 0 too
  *off = t / s;                  // exact division, also for negative t
  return true;
}

// Number of outputs o < out with o = s*a + r (a >= 0).
OWSD_HD int convt_phase_count(int out, int s, int r) {
  return out > r ? (out - r + s - 1) / s : 0;
}

// Index of weight[ci][co_local][ky][kx] in a contiguous (C_in, C_out/g, K_h, K_w) tensor.
OWSD_HD long long convt_weight_index(int ci, int co_local, int ky, int kx, int cout_g, int kh, int kw) {
  return ((static_cast<long long>(ci) * cout_g + co_local) * kh + ky) * kw + kx;
}

// Activation of one value (same formulas as reference.apply_activation).
template <typename T>
OWSD_HD T apply_activation(T v, int act);

}  // namespace owsd

// Definitions of the math-library dependent helpers.  Device code uses the
// CUDA math functions, host code <cmath>.
#if defined(__CUDACC__)
namespace owsd {
template <typename T>
OWSD_HD T apply_activation(T v, int act) {
  switch (act) {
    case kActRelu: return v > T(0) ? v : T(0);
    case kActLeakyRelu: return v > T(0) ? v : v * T(kLeakySlope);
    case kActTanh: return tanh(v);
    default: return v;
  }
}
}  // namespace owsd
#else
#include <cmath>
namespace owsd {
template <typename T>
inline T apply_activation(T v, int act) {
  switch (act) {
    case kActRelu: return v > T(0) ? v : T(0);
    case kActLeakyRelu: return v > T(0) ? v : v * T(kLeakySlope);
    case kActTanh: return std::tanh(v);
    default: return v;
  }
}
}  // namespace owsd
#endif
