// The affine scrambler: a whole scrambler stack WITHOUT activations collapsed into one
// matrix, applied as one matrix product with the per-image normalization and the carrier
// fused into its epilogue (see owsd/ops/affine.py for the semantics and the reference).
//
//   out[n, p] = post(scale[n] * (sum_k x[n, k] * m[k, p] + offset[p] - center[n]) + base[p])
//
// x (N, K), m (K, P), offset (P) or null, scale / center (N), base (P) or null; post is
// AffinePost; out is float32 / float64 / uint8 (round(255 * y), half to even) by OutKind.
// Only plain C++ types cross this header (no torch, no CUDA).
#pragma once

#include <cstdint>

namespace owsd {

enum AffinePost : int { kPostClamp01 = 0, kPostSigmoid = 1, kPostIdentity = 2 };

template <typename T>
struct AffineArgs {
  const T* x;
  const T* m;
  const T* offset;  // nullable
  const T* scale;
  const T* center;
  const T* base;  // nullable
  int post;
  int out_kind;
  void* out;
  int64_t n, k, p;
};

namespace cpu {
// Rows [n0, n1) of the output.
template <typename T>
void affine_scramble_rows(const AffineArgs<T>& a, int64_t n0, int64_t n1);
}  // namespace cpu

namespace cuda {
// Launches on `stream` (a cudaStream_t as void*); returns a cudaError_t as int.
int affine_scramble_f32(const AffineArgs<float>& a, void* stream);
int affine_scramble_f64(const AffineArgs<double>& a, void* stream);
}  // namespace cuda

}  // namespace owsd
