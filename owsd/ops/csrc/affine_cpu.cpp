// CPU kernel of the affine scrambler (affine_kernels.h): out = x @ m with the
// normalization, carrier and quantization fused into the epilogue.  No torch headers.
//
// Blocking: the pixels are walked in panels of kPanel columns (m's K x kPanel panel,
// 256 KB for K = 64 in float32, stays in L2); inside a panel, 4 images at a time against
// micro-tiles of kVecs SIMD vectors of columns (kRows x kVecs vector accumulators in
// registers, the K x kVecs V slice of m in L1).  Each output pixel is computed once and written once.
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
#if defined(__AVX512F__)
constexpr int kVecs = 4;  // vectors of columns per micro-tile: kRows x kVecs accumulators (of 32 registers)
#else
constexpr int kVecs = 2;  // 8 of the 16 AVX2 registers
#endif
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

// Vector epilogue of one row's kVecs vectors: the affine map and the clamp in SIMD registers;
// a float32 (T = float) or float64 (T = double) output of the compute type is stored as
// vectors, anything else (sigmoid, uint8, float32 from double) lane by lane.
template <typename T, bool kClampStore>
inline void epilogue_vec(const AffineArgs<T>& a, int64_t r, int64_t c0, typename Vec<T>::type* acc) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  const T s = a.scale[r], cen = a.center[r];
  const V zero = V{}, one = zero + T(1);
  alignas(64) T buf[kVecs * L];
  for (int h = 0; h < kVecs; ++h) {
    V off = zero, bs = zero;
    if (a.offset) std::memcpy(&off, a.offset + c0 + h * L, sizeof(V));
    if (a.base) std::memcpy(&bs, a.base + c0 + h * L, sizeof(V));
    V y = s * (acc[h] + off - cen) + bs;
    if (kClampStore) {
      y = y < zero ? zero : y;
      y = y > one ? one : y;
      std::memcpy(static_cast<T*>(a.out) + r * a.p + c0 + h * L, &y, sizeof(V));
    } else {
      std::memcpy(buf + h * L, &y, sizeof(V));
    }
  }
  if (!kClampStore) {
    const int64_t base_i = r * a.p + c0;
    for (int j = 0; j < kVecs * L; ++j) store<T>(a, base_i + j, post_op<T>(buf[j], a.post));
  }
}

// kRows images x kVecs vectors of columns starting at c0 (full micro-tile); rows >= nr are
// computed on a duplicate of the last row and not stored.
template <typename T, bool kClampStore>
void micro_tile(const AffineArgs<T>& a, int64_t r0, int nr, int64_t c0) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  V acc[kRows][kVecs];
  const T* xr[kRows];
  for (int r = 0; r < kRows; ++r) {
    for (int h = 0; h < kVecs; ++h) acc[r][h] = V{};
    xr[r] = a.x + (r0 + std::min(r, nr - 1)) * a.k;
  }
  const T* mp = a.m + c0;
  for (int64_t k = 0; k < a.k; ++k, mp += a.p) {
    V b[kVecs];
    for (int h = 0; h < kVecs; ++h) std::memcpy(&b[h], mp + h * L, sizeof(V));
    for (int r = 0; r < kRows; ++r) {
      const T xv = xr[r][k];
      for (int h = 0; h < kVecs; ++h) acc[r][h] += xv * b[h];
    }
  }
  for (int r = 0; r < nr; ++r) epilogue_vec<T, kClampStore>(a, r0 + r, c0, acc[r]);
}

// Any width < kVecs vectors (the last columns of a row): plain loops.
template <typename T>
void tail_tile(const AffineArgs<T>& a, int64_t r0, int nr, int64_t c0, int width) {
  T acc[kVecs * Vec<T>::kLanes];
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

template <typename T, bool kClampStore>
void rows_impl(const AffineArgs<T>& a, int64_t n0, int64_t n1) {
  constexpr int W = kVecs * Vec<T>::kLanes;
  for (int64_t p0 = 0; p0 < a.p; p0 += kPanel) {
    const int64_t p1 = std::min(a.p, p0 + kPanel);
    int64_t c = p0;
    for (; c + W <= p1; c += W) {  // the K x W slice of m stays in L1 across all rows
      for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
        micro_tile<T, kClampStore>(a, r0, static_cast<int>(std::min<int64_t>(kRows, n1 - r0)), c);
      }
    }
    if (c < p1) {
      for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
        tail_tile<T>(a, r0, static_cast<int>(std::min<int64_t>(kRows, n1 - r0)), c, static_cast<int>(p1 - c));
      }
    }
  }
}

}  // namespace

template <typename T>
void affine_scramble_rows(const AffineArgs<T>& a, int64_t n0, int64_t n1) {
  const int own_kind = sizeof(T) == 4 ? kOutFloat32 : kOutFloat64;
  if (a.post == kPostClamp01 && a.out_kind == own_kind) {
    rows_impl<T, true>(a, n0, n1);
  } else {
    rows_impl<T, false>(a, n0, n1);
  }
}

template void affine_scramble_rows<float>(const AffineArgs<float>&, int64_t, int64_t);
template void affine_scramble_rows<double>(const AffineArgs<double>&, int64_t, int64_t);

}  // namespace cpu
}  // namespace owsd
