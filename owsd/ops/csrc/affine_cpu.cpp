// CPU kernel of the affine scrambler (affine_kernels.h): out = x @ m with the
// normalization, carrier and quantization fused into the epilogue.  No torch headers.
//
// Blocking: the pixels are walked in panels of kPanel columns (m's K x kPanel panel,
// 256 KB for K = 64 in float32, stays in L2); inside a panel, 4 images at a time against
// micro-tiles of kVecs SIMD vectors of columns (kRows x kVecs vector accumulators in
// registers, the K x kVecs V slice of m in L1).  Each output pixel is computed once and written once.
//
// Packing: m's rows are P apart (602 KB for the 224x224 specs, a multiple of 4 KiB), so the
// K rows of a micro-tile's slice all fall in the same L1 set and on K different pages: the
// slice would be re-read from L2 through the TLB for every 4 images.  With at least
// kPackRows images, each thread copies the panel once into strip-major order (each K x W
// strip contiguous) and the micro-tiles read that copy (measured: issue 17, docs/kernel.md).
//
// Stores: a float output of 8 MiB or more is written with non-temporal stores (it is never
// read back here and does not fit in the caches; this saves the read-for-ownership of every
// line); a uint8 output is rounded and narrowed in SIMD registers (AVX-512).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstring>
#include <vector>

#if defined(__AVX512F__) || defined(__AVX2__)
#include <immintrin.h>
#endif

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
constexpr int64_t kPackRows = 8;                     // fewer images: packing would cost as much as it saves
constexpr int64_t kStreamBytes = int64_t{8} << 20;   // outputs this large bypass the caches

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

// A non-temporal store of one vector of the ISA's width (kVecBytes), float or double lanes.
#if defined(__AVX512F__)
inline void stream_vec(float* d, const void* y) { _mm512_stream_ps(d, *static_cast<const __m512*>(y)); }
inline void stream_vec(double* d, const void* y) { _mm512_stream_pd(d, *static_cast<const __m512d*>(y)); }
#elif defined(__AVX2__)
inline void stream_vec(float* d, const void* y) { _mm256_stream_ps(d, *static_cast<const __m256*>(y)); }
inline void stream_vec(double* d, const void* y) { _mm256_stream_pd(d, *static_cast<const __m256d*>(y)); }
#endif

// One vector of the compute type to memory: a non-temporal store when asked and aligned.
template <typename T, typename V>
inline void store_vec(T* dst, const V& y, bool stream) {
#if defined(__AVX512F__) || defined(__AVX2__)
  if (sizeof(V) == kVecBytes && stream && (reinterpret_cast<uintptr_t>(dst) & (kVecBytes - 1)) == 0) {
    stream_vec(dst, &y);
    return;
  }
#endif
  (void)stream;
  std::memcpy(dst, &y, sizeof(V));
}

// Clamped values in [0, 1] to uint8: round(255 y) half to even (as torch.round), in SIMD
// registers for float32 on AVX-512; returns false when the caller must store lane by lane.
template <typename T, typename V>
inline bool store_u8(uint8_t* dst, const V& y) {
#if defined(__AVX512F__)
  if (sizeof(T) == 4 && sizeof(V) == 64) {
    const __m512 v = _mm512_mul_ps(reinterpret_cast<const __m512&>(y), _mm512_set1_ps(255.0f));
    const __m512 r = _mm512_roundscale_ps(v, _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
    _mm_storeu_si128(reinterpret_cast<__m128i*>(dst), _mm512_cvtepi32_epi8(_mm512_cvtps_epi32(r)));
    return true;
  }
#endif
  (void)dst;
  (void)y;
  return false;
}

// Vector epilogue of one row's kVecs vectors: the affine map and the clamp in SIMD registers;
// a float32 (T = float) or float64 (T = double) output of the compute type is stored as
// vectors (kStore = kClampOwn), a clamped uint8 output as narrowed vectors where the ISA
// allows (kStore = kClampU8), anything else (sigmoid, float32 from double) lane by lane.
enum StoreKind { kLanes = 0, kClampOwn = 1, kClampU8 = 2 };

template <typename T, int kStore>
inline void epilogue_vec(const AffineArgs<T>& a, int64_t r, int64_t c0, typename Vec<T>::type* acc, bool stream) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  const T s = a.scale[r], cen = a.center[r];
  const V zero = V{}, one = zero + T(1);
  alignas(64) T buf[kVecs * L];
  bool lanes = kStore == kLanes;
  for (int h = 0; h < kVecs; ++h) {
    V off = zero, bs = zero;
    if (a.offset) std::memcpy(&off, a.offset + c0 + h * L, sizeof(V));
    if (a.base) std::memcpy(&bs, a.base + c0 + h * L, sizeof(V));
    V y = s * (acc[h] + off - cen) + bs;
    if (kStore != kLanes) {
      y = y < zero ? zero : y;
      y = y > one ? one : y;
    }
    if (kStore == kClampOwn) {
      store_vec<T, V>(static_cast<T*>(a.out) + r * a.p + c0 + h * L, y, stream);
    } else if (kStore == kClampU8 && store_u8<T, V>(static_cast<uint8_t*>(a.out) + r * a.p + c0 + h * L, y)) {
    } else {
      std::memcpy(buf + h * L, &y, sizeof(V));
      lanes = true;
    }
  }
  if (lanes) {
    const int64_t base_i = r * a.p + c0;
    for (int j = 0; j < kVecs * L; ++j) store<T>(a, base_i + j, post_op<T>(buf[j], a.post));
  }
}

// kRows images x kVecs vectors of columns starting at c0 (full micro-tile); rows >= nr are
// computed on a duplicate of the last row and not stored.  `mp` is m's K x W slice for these
// columns, its rows `ms` apart (P in m itself, W in a packed strip).
template <typename T, int kStore>
void micro_tile(const AffineArgs<T>& a, int64_t r0, int nr, int64_t c0, const T* mp, int64_t ms, bool stream) {
  using V = typename Vec<T>::type;
  constexpr int L = Vec<T>::kLanes;
  V acc[kRows][kVecs];
  const T* xr[kRows];
  for (int r = 0; r < kRows; ++r) {
    for (int h = 0; h < kVecs; ++h) acc[r][h] = V{};
    xr[r] = a.x + (r0 + std::min(r, nr - 1)) * a.k;
  }
  for (int64_t k = 0; k < a.k; ++k, mp += ms) {
    V b[kVecs];
    for (int h = 0; h < kVecs; ++h) std::memcpy(&b[h], mp + h * L, sizeof(V));
    for (int r = 0; r < kRows; ++r) {
      const T xv = xr[r][k];
      for (int h = 0; h < kVecs; ++h) acc[r][h] += xv * b[h];
    }
  }
  for (int r = 0; r < nr; ++r) epilogue_vec<T, kStore>(a, r0 + r, c0, acc[r], stream);
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

template <typename T, int kStore>
void rows_impl(const AffineArgs<T>& a, int64_t n0, int64_t n1) {
  constexpr int W = kVecs * Vec<T>::kLanes;
  const int64_t out_size = a.out_kind == kOutFloat32 ? 4 : (a.out_kind == kOutFloat64 ? 8 : 1);
  const bool stream = a.n * a.p * out_size >= kStreamBytes;
  const bool pack = n1 - n0 >= kPackRows && a.k > 0;
  std::vector<T> packed(pack ? static_cast<size_t>(a.k * kPanel) : 0);
  for (int64_t p0 = 0; p0 < a.p; p0 += kPanel) {
    const int64_t p1 = std::min(a.p, p0 + kPanel);
    const int64_t strips = (p1 - p0) / W;
    if (pack) {  // strip s of the panel: packed[(s * K + k) * W + j] = m[k, p0 + s * W + j]
      for (int64_t k = 0; k < a.k; ++k) {
        const T* src = a.m + k * a.p + p0;
        for (int64_t st = 0; st < strips; ++st) std::memcpy(&packed[(st * a.k + k) * W], src + st * W, W * sizeof(T));
      }
    }
    for (int64_t st = 0; st < strips; ++st) {  // the K x W slice of m stays in L1 across all rows
      const int64_t c = p0 + st * W;
      const T* mp = pack ? &packed[st * a.k * W] : a.m + c;
      const int64_t ms = pack ? W : a.p;
      for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
        micro_tile<T, kStore>(a, r0, static_cast<int>(std::min<int64_t>(kRows, n1 - r0)), c, mp, ms, stream);
      }
    }
    const int64_t c = p0 + strips * W;
    if (c < p1) {
      for (int64_t r0 = n0; r0 < n1; r0 += kRows) {
        tail_tile<T>(a, r0, static_cast<int>(std::min<int64_t>(kRows, n1 - r0)), c, static_cast<int>(p1 - c));
      }
    }
  }
#if defined(__AVX512F__) || defined(__AVX2__)
  if (stream) _mm_sfence();  // non-temporal stores visible before the caller reads the output
#endif
}

}  // namespace

template <typename T>
void affine_scramble_rows(const AffineArgs<T>& a, int64_t n0, int64_t n1) {
  const int own_kind = sizeof(T) == 4 ? kOutFloat32 : kOutFloat64;
  if (a.post == kPostClamp01 && a.out_kind == own_kind) {
    rows_impl<T, kClampOwn>(a, n0, n1);
  } else if (a.post == kPostClamp01 && a.out_kind == kOutUint8) {
    rows_impl<T, kClampU8>(a, n0, n1);
  } else {
    rows_impl<T, kLanes>(a, n0, n1);
  }
}

template void affine_scramble_rows<float>(const AffineArgs<float>&, int64_t, int64_t);
template void affine_scramble_rows<double>(const AffineArgs<double>&, int64_t, int64_t);

}  // namespace cpu
}  // namespace owsd
