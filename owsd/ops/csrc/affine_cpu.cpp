// CPU kernel of the affine scrambler (affine_kernels.h): out = x @ m with the
// normalization, carrier and quantization fused into the epilogue.  No torch headers.
//
// Blocking: the pixels are walked in panels of kPanel columns (m's K x kPanel panel,
// 256 KB for K = 64 in float32, stays in L2); inside a panel, 4 images at a time against
// micro-tiles of two SIMD vectors of columns (8 vector accumulators in registers, the
// K x 2V slice of m in L1).  Each output pixel is computed once and written once.
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>

#include "affine_kernels.h"
#include "deconv_index.h"

namespace owsd {
namespace cpu {
namespace {

#if defined(__AVX512F__)
constexpr int kVecBytes = 64;
#else
constexpr int kVecBytes = 32;
#endif
constexpr int kRows = 4;
constexpr int64_t kPanel = 1024;

template <typename T>
struct Vec {
  typedef T type __attribute__((vector_size(kVecBytes)));
  static constexpr int kLanes = kVecBytes / static_cast<int>(sizeof(T));
};

template <typename T>
inline T post_op(T v, int post) {
  if (post == kPostClamp01) return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
  if (post == kPostSigmoid) return T(1) / (T(1) + std::exp(-v));
  return v;
}

template <typename T>
inline void store(const AffineArgs<T>& a, int64_t i, T y) {
  if (a.out_kind == kOutFloat32) {
    static_cast<float*>(a.out)[i] = static_cast<float>(y);
  } else if (a.out_kind == kOutFloat64) {
    static_cast<double*>(a.out)[i] = static_cast<double>(y);
  } else {
    static_cast<uint8_t*>(a.out)[i] = static_cast<uint8_t>(static_cast<int>(std::nearbyint(y * T(255))));
  }
}

template <typename T>
inline void epilogue(const AffineArgs<T>& a, int64_t r, int64_t c0, int width, const T* acc) {
  const T s = a.scale[r], cen = a.center[r];
  const int64_t base_i = r * a.p + c0;
  for (int j = 0; j < width; ++j) {
    const int64_t c = c0 + j;
    const T off = a.offset ? a.offset[c] : T(0);
    const T bs = a.base ? a.base[c] : T(0);
    store<T>(a, base_i + j, post_op<T>(s * (acc[j] + off - cen) + bs, a.post));
  }
}

// kRows images x 2 vectors of columns starting at c0 (full micro-tile); rows >= nr are
// computed on a duplicate of the last row and not stored.
template <typename T>
void micro_tile(const AffineArgs<T>& a, int64_t r0, int nr, int64_t c0) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  V acc[kRows][2];
  const T* xr[kRows];
  for (int r = 0; r < kRows; ++r) {
    acc[r][0] = V{};
    acc[r][1] = V{};
    xr[r] = a.x + (r0 + std::min(r, nr - 1)) * a.k;
  }
  const T* mp = a.m + c0;
  for (int64_t k = 0; k < a.k; ++k, mp += a.p) {
    V b0, b1;
    std::memcpy(&b0, mp, sizeof(V));
    std::memcpy(&b1, mp + L, sizeof(V));
    for (int r = 0; r < kRows; ++r) {
      const T xv = xr[r][k];
      acc[r][0] += xv * b0;
      acc[r][1] += xv * b1;
    }
  }
  alignas(64) T buf[2 * L];
  for (int r = 0; r < nr; ++r) {
    std::memcpy(buf, &acc[r][0], sizeof(V));
    std::memcpy(buf + L, &acc[r][1], sizeof(V));
    epilogue<T>(a, r0 + r, c0, 2 * L, buf);
  }
}

// Any width < 2 vectors (the last columns of a row): plain loops.
template <typename T>
void tail_tile(const AffineArgs<T>& a, int64_t r0, int nr, int64_t c0, int width) {
  T acc[2 * Vec<T>::kLanes];
  for (int r = 0; r < nr; ++r) {
    const T* xr = a.x + (r0 + r) * a.k;
    std::fill(acc, acc + width, T(0));
    for (int64_t k = 0; k < a.k; ++k) {
      const T xv = xr[k];
      const T* mk = a.m + k * a.p + c0;
      for (int j = 0; j < width; ++j) acc[j] += xv * mk[j];
    }
    epilogue<T>(a, r0 + r, c0, width, acc);
  }
}

}  // namespace

template <typename T>
void affine_scramble_rows(const AffineArgs<T>& a, int64_t n0, int64_t n1) {
  constexpr int W = 2 * Vec<T>::kLanes;
  for (int64_t p0 = 0; p0 < a.p; p0 += kPanel) {
    const int64_t p1 = std::min(a.p, p0 + kPanel);
    for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
      const int nr = static_cast<int>(std::min<int64_t>(kRows, n1 - r0));
      int64_t c = p0;
      for (; c + W <= p1; c += W) micro_tile<T>(a, r0, nr, c);
      if (c < p1) tail_tile<T>(a, r0, nr, c, static_cast<int>(p1 - c));
    }
  }
}

template void affine_scramble_rows<float>(const AffineArgs<float>&, int64_t, int64_t);
template void affine_scramble_rows<double>(const AffineArgs<double>&, int64_t, int64_t);

}  // namespace cpu
}  // namespace owsd
