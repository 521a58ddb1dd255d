// CPU kernels of the owsd operators (plain C++, no torch headers; the torch
// side and the thread pool live in bindings.cpp).
//
// Layout and algorithm
// --------------------
// * One image at a time: the fused scrambler keeps every intermediate feature
//   map of an image in a per-thread scratch buffer (a few hundred KiB for the
//   224x224 stack, i.e. L2 resident) instead of writing whole batches out
//   between layers.
// * Gather formulation per stride phase (see deconv_index.h): for output
//   columns ox = s*a + r, tap kx reads input column a + off(r, kx), so for a
//   fixed output row the inner loop over `a` is a plain unit-stride vector
//   load and a fused multiply-add with a broadcast weight.  Only the taps
//   that hit real input rows are visited (the row taps are listed per output
//   row); columns that fall outside the input read zeros from a zero halo
//   that each scratch buffer carries left and right of every row.
// * Register blocking: COB output channels x S stride phases accumulators of
//   one SIMD vector each; for S == 2 the two phases are interleaved with one
//   shuffle and stored as contiguous output.
// * Strides other than 1 and 2 along W use a scalar gather kernel (correct,
//   not tuned).
#include <algorithm>
#include <cmath>
#include <cstdint>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <new>
#include <vector>

#include "deconv_kernels.h"

#if defined(__AVX512F__)
#define OWSD_VEC_BYTES 64
#define OWSD_MAX_COB 8
#define OWSD_ACC_BUDGET 12
#define OWSD_SIMD_NAME "avx512"
#elif defined(__AVX2__) && defined(__FMA__)
#define OWSD_VEC_BYTES 32
#define OWSD_MAX_COB 4
#define OWSD_ACC_BUDGET 6
#define OWSD_SIMD_NAME "avx2+fma"
#elif defined(__AVX__)
#define OWSD_VEC_BYTES 32
#define OWSD_MAX_COB 4
#define OWSD_ACC_BUDGET 6
#define OWSD_SIMD_NAME "avx"
#else
#define OWSD_VEC_BYTES 16
#define OWSD_MAX_COB 4
#define OWSD_ACC_BUDGET 6
#define OWSD_SIMD_NAME "generic-128"
#endif

namespace owsd {
namespace cpu {

const char* simd_name() { return OWSD_SIMD_NAME; }

namespace {

// ---------------------------------------------------------------- SIMD helpers
template <typename T> struct VecT;
template <> struct VecT<float> {
  typedef float type __attribute__((vector_size(OWSD_VEC_BYTES)));
  typedef int32_t mask __attribute__((vector_size(OWSD_VEC_BYTES)));
};
template <> struct VecT<double> {
  typedef double type __attribute__((vector_size(OWSD_VEC_BYTES)));
  typedef int64_t mask __attribute__((vector_size(OWSD_VEC_BYTES)));
};

template <typename T>
constexpr int lanes() { return OWSD_VEC_BYTES / static_cast<int>(sizeof(T)); }

template <typename V, typename T>
inline V loadu(const T* p) {
  V v;
  std::memcpy(&v, p, sizeof(V));
  return v;
}

template <typename V, typename T>
inline void storeu(T* p, const V& v) {
  std::memcpy(p, &v, sizeof(V));
}

template <typename T>
inline typename VecT<T>::type broadcast(T s) {
  typename VecT<T>::type v = {};
  return v + s;
}

// lo = a0 b0 a1 b1 ..., hi = the second half of that sequence.
template <typename T>
inline void interleave2(const typename VecT<T>::type& a, const typename VecT<T>::type& b,
                        typename VecT<T>::type* lo, typename VecT<T>::type* hi) {
  constexpr int L = lanes<T>();
#if defined(__GNUC__) && !defined(__clang__)
  typedef typename VecT<T>::mask M;
  M mlo, mhi;
  for (int i = 0; i < L / 2; ++i) {
    mlo[2 * i] = i;
    mlo[2 * i + 1] = i + L;
    mhi[2 * i] = i + L / 2;
    mhi[2 * i + 1] = i + L / 2 + L;
  }
  *lo = __builtin_shuffle(a, b, mlo);
  *hi = __builtin_shuffle(a, b, mhi);
#else
  T t[2 * L];
  for (int i = 0; i < L; ++i) {
    t[2 * i] = a[i];
    t[2 * i + 1] = b[i];
  }
  *lo = loadu<typename VecT<T>::type>(t);
  *hi = loadu<typename VecT<T>::type>(t + L);
#endif
}

template <typename T>
inline typename VecT<T>::type activate(typename VecT<T>::type v, int act) {
  typedef typename VecT<T>::type V;
  switch (act) {
    case kActRelu: {
      const V z = {};
      return v > z ? v : z;
    }
    case kActLeakyRelu: {
      const V z = {};
      return v > z ? v : v * static_cast<T>(kLeakySlope);
    }
    case kActTanh:
      for (int i = 0; i < lanes<T>(); ++i) v[i] = std::tanh(v[i]);
      return v;
    default:
      return v;
  }
}

// Zero-initialized, 64-byte aligned buffer.
template <typename T>
struct Buffer {
  T* ptr = nullptr;
  size_t n = 0;
  Buffer() = default;
  explicit Buffer(size_t count) : n(count) {
    const size_t bytes = ((count * sizeof(T) + 63) / 64) * 64 + 64;
    ptr = static_cast<T*>(std::aligned_alloc(64, bytes));
    if (!ptr) throw std::bad_alloc();
    std::memset(static_cast<void*>(ptr), 0, bytes);
  }
  Buffer(const Buffer&) = delete;
  Buffer& operator=(const Buffer&) = delete;
  Buffer(Buffer&& o) noexcept : ptr(o.ptr), n(o.n) { o.ptr = nullptr; o.n = 0; }
  ~Buffer() { std::free(ptr); }
};

// ------------------------------------------------------------- layer planning
// Everything about one layer that does not depend on the image.
template <typename T>
struct LayerPlan {
  LayerSpec L;
  int cig = 0, cog = 0;
  // padded input geometry: rows of `in_pitch` elements, interior at column hxl
  int hxl = 0, in_pitch = 0;
  int64_t in_plane = 0;
  // column taps per stride phase r: indices [xstart[r], xstart[r+1])
  std::vector<int> xstart, xoff, xkx;
  // row taps per output row oy: indices [ystart[oy], ystart[oy+1])
  std::vector<int> ystart, yky, yiy;
  // column taps per output column ox (scalar path only): [gstart[ox], gstart[ox+1])
  std::vector<int> gstart, gkx, gix;
  // weights transposed to [g][ci_local][ky][kx][co_local]
  std::vector<T> wt;
  const T* bias = nullptr;
  const T* w = nullptr;           // original weights (block path)
  bool blocks = false;            // non-overlapping taps, no padding/dilation, groups 1: GEMVs
  std::vector<T> acc;             // scratch of the block path (cout*kh*kw)
};

// Vector chunks processed together: more independent accumulators when few
// output channels are blocked (e.g. the last RGB layer).
constexpr int kChunkMax = 2;

template <typename T>
void plan_layer(const LayerSpec& L, const T* w, const T* b, LayerPlan<T>* P) {
  P->L = L;
  P->cig = L.cin / L.groups;
  P->cog = L.cout / L.groups;
  P->bias = L.has_bias ? b : nullptr;
  P->w = w;
  P->blocks = (L.hin == 1 || L.kh <= L.sh) && (L.win == 1 || L.kw <= L.sw) && L.groups == 1 && L.ph == 0 &&
              L.pw == 0 && L.dh == 1 && L.dw == 1;
  if (P->blocks) P->acc.assign(static_cast<size_t>(L.cout) * L.kh * L.kw, T(0));
  // column taps and the halo they need
  int offmin = 0, offmax = 0;
  bool any = false;
  P->xstart.assign(L.sw + 1, 0);
  P->xoff.clear();
  P->xkx.clear();
  for (int r = 0; r < L.sw; ++r) {
    P->xstart[r] = static_cast<int>(P->xoff.size());
    for (int kx = 0; kx < L.kw; ++kx) {
      int off = 0;
      if (convt_phase_tap(r, kx, L.sw, L.pw, L.dw, &off)) {
        P->xoff.push_back(off);
        P->xkx.push_back(kx);
        offmin = any ? std::min(offmin, off) : off;
        offmax = any ? std::max(offmax, off) : off;
        any = true;
      }
    }
  }
  P->xstart[L.sw] = static_cast<int>(P->xoff.size());
  const int nax = convt_phase_count(L.wout, L.sw, 0);
  const int hxl = std::max(0, -offmin);
  const int hxr = std::max(0, nax - 1 + offmax - (L.win - 1));
  P->hxl = hxl;
  P->in_pitch = hxl + L.win + hxr + kChunkMax * lanes<T>();
  P->in_plane = static_cast<int64_t>(P->in_pitch) * L.hin;
  // row taps
  P->ystart.assign(L.hout + 1, 0);
  P->yky.clear();
  P->yiy.clear();
  for (int oy = 0; oy < L.hout; ++oy) {
    P->ystart[oy] = static_cast<int>(P->yky.size());
    for (int ky = 0; ky < L.kh; ++ky) {
      const int iy = convt_tap_input(oy, ky, L.sh, L.ph, L.dh, L.hin);
      if (iy >= 0) {
        P->yky.push_back(ky);
        P->yiy.push_back(iy);
      }
    }
  }
  P->ystart[L.hout] = static_cast<int>(P->yky.size());
  P->gstart.clear();
  P->gkx.clear();
  P->gix.clear();
  if (L.sw != 1 && L.sw != 2) {
    P->gstart.assign(L.wout + 1, 0);
    for (int ox = 0; ox < L.wout; ++ox) {
      P->gstart[ox] = static_cast<int>(P->gkx.size());
      for (int kx = 0; kx < L.kw; ++kx) {
        const int ix = convt_tap_input(ox, kx, L.sw, L.pw, L.dw, L.win);
        if (ix >= 0) {
          P->gkx.push_back(kx);
          P->gix.push_back(ix);
        }
      }
    }
    P->gstart[L.wout] = static_cast<int>(P->gkx.size());
  }
  // transposed weights
  const int K = L.kh * L.kw;
  P->wt.assign(static_cast<size_t>(L.cin) * K * P->cog, T(0));
  for (int ci = 0; ci < L.cin; ++ci)
    for (int co = 0; co < P->cog; ++co)
      for (int k = 0; k < K; ++k)
        P->wt[(static_cast<size_t>(ci) * K + k) * P->cog + co] =
            w[(static_cast<size_t>(ci) * P->cog + co) * K + k];
}

// Where a layer writes one image: out + co*out_plane + oy*out_pitch + out_x0 + ox.
template <typename T>
struct OutView {
  T* out;
  int64_t out_plane;
  int out_pitch;
  int out_x0;
};

// ------------------------------------------------------------ vector kernel
template <typename T, int S, int COB>
void block_row(const LayerPlan<T>& P, const T* in, const OutView<T>& O, int g, int co0, int oy) {
  typedef typename VecT<T>::type V;
  constexpr int L = lanes<T>();
  constexpr int CH = (2 * COB * S <= OWSD_ACC_BUDGET) ? 2 : 1;
  const LayerSpec& Ls = P.L;
  const int nax = convt_phase_count(Ls.wout, S, 0);
  const int K = Ls.kh * Ls.kw;
  const T* inG = in + static_cast<int64_t>(g) * P.cig * P.in_plane + P.hxl;
  const T* wG = P.wt.data() + static_cast<size_t>(g) * P.cig * K * P.cog + co0;
  const int y0 = P.ystart[oy], y1 = P.ystart[oy + 1];
  const int* yky = P.yky.data();
  const int* yiy = P.yiy.data();
  const int* xoff = P.xoff.data();
  const int* xkx = P.xkx.data();
  int xs[S + 1];
  for (int r = 0; r <= S; ++r) xs[r] = P.xstart[r];
  T bias[COB];
  T* orow[COB];
  for (int j = 0; j < COB; ++j) {
    const int co = g * P.cog + co0 + j;
    bias[j] = P.bias ? P.bias[co] : T(0);
    orow[j] = O.out + co * O.out_plane + static_cast<int64_t>(oy) * O.out_pitch + O.out_x0;
  }
  for (int ax0 = 0; ax0 < nax; ax0 += L * CH) {
    V acc[CH][COB][S];
#pragma GCC unroll 2
    for (int c = 0; c < CH; ++c)
#pragma GCC unroll 8
      for (int j = 0; j < COB; ++j)
#pragma GCC unroll 2
        for (int r = 0; r < S; ++r) acc[c][j][r] = broadcast<T>(bias[j]);
    for (int ci = 0; ci < P.cig; ++ci) {
      const T* inC = inG + ci * P.in_plane + ax0;
      const T* wC = wG + static_cast<size_t>(ci) * K * P.cog;
      for (int t = y0; t < y1; ++t) {
        const T* prow = inC + static_cast<int64_t>(yiy[t]) * P.in_pitch;
        const T* wrow = wC + static_cast<size_t>(yky[t]) * Ls.kw * P.cog;
#pragma GCC unroll 2
        for (int r = 0; r < S; ++r) {
          for (int q = xs[r]; q < xs[r + 1]; ++q) {
            const T* wk = wrow + xkx[q] * P.cog;
            T wj[COB];
#pragma GCC unroll 8
            for (int j = 0; j < COB; ++j) wj[j] = wk[j];
#pragma GCC unroll 2
            for (int c = 0; c < CH; ++c) {
              const V v = loadu<V>(prow + xoff[q] + c * L);
#pragma GCC unroll 8
              for (int j = 0; j < COB; ++j) acc[c][j][r] += v * wj[j];
            }
          }
        }
      }
    }
#pragma GCC unroll 2
    for (int c = 0; c < CH; ++c) {
      const int a0 = ax0 + c * L;
      const int nrem = Ls.wout - a0 * S;  // outputs left in this row from ox = S*a0
      if (nrem <= 0) break;
#pragma GCC unroll 8
      for (int j = 0; j < COB; ++j) {
        T* dst = orow[j] + a0 * S;
        if (S == 1) {
          const V y = activate<T>(acc[c][j][0], Ls.act);
          if (nrem >= L) {
            storeu(dst, y);
          } else {
            for (int i = 0; i < nrem; ++i) dst[i] = y[i];
          }
        } else {
          V lo, hi;
          interleave2<T>(activate<T>(acc[c][j][0], Ls.act), activate<T>(acc[c][j][S - 1], Ls.act), &lo, &hi);
          if (nrem >= 2 * L) {
            storeu(dst, lo);
            storeu(dst + L, hi);
          } else {
            for (int i = 0; i < nrem && i < L; ++i) dst[i] = lo[i];
            for (int i = L; i < nrem; ++i) dst[i] = hi[i - L];
          }
        }
      }
    }
  }
}

// Non-overlapping taps (a 1x1 input, or kernel <= stride along both axes), no
// padding/dilation, one group: every input pixel (a, b) writes its own output block
// out[co][a*sh + ky][b*sw + kx] = b[co] + sum_ci x[ci][a][b] w[ci][co][ky][kx], a GEMV over
// the contiguous (co, ky, kx) axis per input pixel.  Output pixels no tap reaches (gaps
// between blocks when kernel < stride, output padding) hold the activated bias.  This is
// the embedding layer of the scrambler and the whole `linear` preset (kernel = stride = 112).
template <typename T>
void layer_blocks(LayerPlan<T>& P, const T* in, const OutView<T>& O) {
  const LayerSpec& L = P.L;
  const int K = L.kh * L.kw;
  const int64_t M = static_cast<int64_t>(L.cout) * K;
  T* acc = P.acc.data();
  const bool covers = (L.hin == 1 || L.kh == L.sh) && (L.win == 1 || L.kw == L.sw) && L.oph == 0 && L.opw == 0;
  if (!covers) {
    for (int co = 0; co < L.cout; ++co) {
      const T fill = apply_activation<T>(P.bias ? P.bias[co] : T(0), L.act);
      for (int oy = 0; oy < L.hout; ++oy) {
        T* orow = O.out + co * O.out_plane + static_cast<int64_t>(oy) * O.out_pitch + O.out_x0;
        std::fill(orow, orow + L.wout, fill);
      }
    }
  }
  for (int a = 0; a < L.hin; ++a) {
    for (int b = 0; b < L.win; ++b) {
      std::fill(acc, acc + M, T(0));
      for (int ci = 0; ci < L.cin; ++ci) {
        const T xv = in[ci * P.in_plane + static_cast<int64_t>(a) * P.in_pitch + P.hxl + b];
        const T* wr = P.w + ci * M;
#pragma omp simd
        for (int64_t m = 0; m < M; ++m) acc[m] += xv * wr[m];
      }
      for (int co = 0; co < L.cout; ++co) {
        const T bias = P.bias ? P.bias[co] : T(0);
        for (int ky = 0; ky < L.kh; ++ky) {
          T* orow = O.out + co * O.out_plane + static_cast<int64_t>(a * L.sh + ky) * O.out_pitch + O.out_x0 +
                    static_cast<int64_t>(b) * L.sw;
          const T* arow = acc + (static_cast<int64_t>(co) * L.kh + ky) * L.kw;
          for (int kx = 0; kx < L.kw; ++kx) orow[kx] = apply_activation<T>(arow[kx] + bias, L.act);
        }
      }
    }
  }
}

template <typename T, int S>
void layer_rows(const LayerPlan<T>& P, const T* in, const OutView<T>& O) {
  for (int g = 0; g < P.L.groups; ++g) {
    for (int oy = 0; oy < P.L.hout; ++oy) {
      int co0 = 0;
      while (co0 < P.cog) {
        const int rem = P.cog - co0;
        const int c = rem >= OWSD_MAX_COB ? OWSD_MAX_COB : rem;
        switch (c) {
          case 1: block_row<T, S, 1>(P, in, O, g, co0, oy); break;
          case 2: block_row<T, S, 2>(P, in, O, g, co0, oy); break;
          case 3: block_row<T, S, 3>(P, in, O, g, co0, oy); break;
          case 4: block_row<T, S, 4>(P, in, O, g, co0, oy); break;
#if OWSD_MAX_COB > 4
          case 5: block_row<T, S, 5>(P, in, O, g, co0, oy); break;
          case 6: block_row<T, S, 6>(P, in, O, g, co0, oy); break;
          case 7: block_row<T, S, 7>(P, in, O, g, co0, oy); break;
          default: block_row<T, S, 8>(P, in, O, g, co0, oy); break;
#else
          default: break;
#endif
        }
        co0 += c;
      }
    }
  }
}

// ------------------------------------------------------------ scalar kernel
// Per-pixel gather (any stride/dilation); reads the same padded input.
template <typename T>
void layer_generic(const LayerPlan<T>& P, const T* in, const OutView<T>& O) {
  const LayerSpec& L = P.L;
  const int K = L.kh * L.kw;
  for (int g = 0; g < L.groups; ++g)
    for (int col = 0; col < P.cog; ++col) {
      const int co = g * P.cog + col;
      const T bias = P.bias ? P.bias[co] : T(0);
      for (int oy = 0; oy < L.hout; ++oy) {
        T* orow = O.out + co * O.out_plane + static_cast<int64_t>(oy) * O.out_pitch + O.out_x0;
        for (int ox = 0; ox < L.wout; ++ox) {
          T acc = bias;
          for (int t = P.ystart[oy]; t < P.ystart[oy + 1]; ++t) {
            const int ky = P.yky[t], iy = P.yiy[t];
            for (int u = P.gstart[ox]; u < P.gstart[ox + 1]; ++u) {
              const int kx = P.gkx[u], ix = P.gix[u];
              for (int cil = 0; cil < P.cig; ++cil) {
                const int ci = g * P.cig + cil;
                acc += in[ci * P.in_plane + static_cast<int64_t>(iy) * P.in_pitch + P.hxl + ix] *
                       P.wt[(static_cast<size_t>(ci) * K + ky * L.kw + kx) * P.cog + col];
              }
            }
          }
          orow[ox] = apply_activation<T>(acc, L.act);
        }
      }
    }
}

template <typename T>
void run_layer(LayerPlan<T>& P, const T* in, const OutView<T>& O) {
  if (P.blocks)
    layer_blocks<T>(P, in, O);
  else if (P.L.sw == 1)
    layer_rows<T, 1>(P, in, O);
  else if (P.L.sw == 2)
    layer_rows<T, 2>(P, in, O);
  else
    layer_generic<T>(P, in, O);
}

// Copies one unpadded (C, H, W) image into the interior of a padded buffer.
template <typename T>
void copy_into_padded(const T* src, const LayerPlan<T>& P, T* dst) {
  const LayerSpec& L = P.L;
  for (int c = 0; c < L.cin; ++c)
    for (int y = 0; y < L.hin; ++y)
      std::memcpy(dst + c * P.in_plane + static_cast<int64_t>(y) * P.in_pitch + P.hxl,
                  src + (static_cast<int64_t>(c) * L.hin + y) * L.win, sizeof(T) * L.win);
}

// ------------------------------------------------------------ normalization
template <typename T, typename O>
inline O to_out(T y);
template <> inline float to_out<float, float>(float y) { return y; }
template <> inline double to_out<float, double>(float y) { return y; }
template <> inline float to_out<double, float>(double y) { return static_cast<float>(y); }
template <> inline double to_out<double, double>(double y) { return y; }
template <> inline uint8_t to_out<float, uint8_t>(float y) {
  return static_cast<uint8_t>(static_cast<int>(std::nearbyint(y * 255.0f)));
}
template <> inline uint8_t to_out<double, uint8_t>(double y) {
  return static_cast<uint8_t>(static_cast<int>(std::nearbyint(y * 255.0)));
}

template <typename T>
inline T clamp01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

template <typename T, typename O>
void normalize_image(const T* f, int64_t n, int norm, double gain, const T* carrier, O* out) {
  const T g = static_cast<T>(gain);
  if (norm == kNormNone) {
#pragma omp simd
    for (int64_t i = 0; i < n; ++i) out[i] = to_out<T, O>(clamp01(f[i]));
  } else if (norm == kNormSigmoid) {
    for (int64_t i = 0; i < n; ++i) out[i] = to_out<T, O>(T(1) / (T(1) + std::exp(-(g * f[i]))));
  } else {
    // mean and population std in double (vectorized reductions), two passes
    double s = 0.0;
#pragma omp simd reduction(+ : s)
    for (int64_t i = 0; i < n; ++i) s += static_cast<double>(f[i]);
    const double mean = s / static_cast<double>(n);
    double ss = 0.0;
#pragma omp simd reduction(+ : ss)
    for (int64_t i = 0; i < n; ++i) {
      const double d = static_cast<double>(f[i]) - mean;
      ss += d * d;
    }
    const T m = static_cast<T>(mean);
    const T denom = static_cast<T>(std::sqrt(ss / static_cast<double>(n))) + static_cast<T>(kStdEps);
    if (carrier) {
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = to_out<T, O>(clamp01(carrier[i] + (g * (f[i] - m)) / denom));
    } else {
      const T half = static_cast<T>(0.5);
#pragma omp simd
      for (int64_t i = 0; i < n; ++i) out[i] = to_out<T, O>(clamp01(half + (g * (f[i] - m)) / denom));
    }
  }
}

}  // namespace

// ------------------------------------------------------------ entry points
template <typename T>
void conv_transpose2d_images(const T* x, const T* w, const T* b, T* out, const LayerSpec& L,
                             int64_t n0, int64_t n1) {
  LayerPlan<T> P;
  plan_layer(L, w, b, &P);
  Buffer<T> in(static_cast<size_t>(P.in_plane) * L.cin);
  const int64_t in_img = static_cast<int64_t>(L.cin) * L.hin * L.win;
  const int64_t out_img = static_cast<int64_t>(L.cout) * L.hout * L.wout;
  for (int64_t n = n0; n < n1; ++n) {
    copy_into_padded(x + n * in_img, P, in.ptr);
    OutView<T> O{out + n * out_img, static_cast<int64_t>(L.hout) * L.wout, L.wout, 0};
    run_layer(P, in.ptr, O);
  }
}

template <typename T>
void fused_scramble_images(const T* x, const T* const* w, const T* const* b, const LayerSpec* layers,
                           int nlayers, int norm, double gain, const T* carrier, void* out, int out_kind,
                           int64_t n0, int64_t n1) {
  std::vector<LayerPlan<T>> plans(nlayers);
  for (int l = 0; l < nlayers; ++l) plan_layer(layers[l], w[l], b[l], &plans[l]);
  std::vector<Buffer<T>> bufs;
  bufs.reserve(nlayers);
  for (int l = 0; l < nlayers; ++l) bufs.emplace_back(static_cast<size_t>(plans[l].in_plane) * layers[l].cin);
  const LayerSpec& last = layers[nlayers - 1];
  const int64_t fin_n = static_cast<int64_t>(last.cout) * last.hout * last.wout;
  Buffer<T> fin(static_cast<size_t>(fin_n));
  const int64_t in_img = static_cast<int64_t>(layers[0].cin) * layers[0].hin * layers[0].win;
  for (int64_t n = n0; n < n1; ++n) {
    copy_into_padded(x + n * in_img, plans[0], bufs[0].ptr);
    for (int l = 0; l < nlayers; ++l) {
      OutView<T> O;
      if (l + 1 < nlayers) {
        O = OutView<T>{bufs[l + 1].ptr, plans[l + 1].in_plane, plans[l + 1].in_pitch, plans[l + 1].hxl};
      } else {
        O = OutView<T>{fin.ptr, static_cast<int64_t>(last.hout) * last.wout, last.wout, 0};
      }
      run_layer(plans[l], bufs[l].ptr, O);
    }
    switch (out_kind) {
      case kOutFloat32:
        normalize_image<T, float>(fin.ptr, fin_n, norm, gain, carrier, static_cast<float*>(out) + n * fin_n);
        break;
      case kOutFloat64:
        normalize_image<T, double>(fin.ptr, fin_n, norm, gain, carrier, static_cast<double*>(out) + n * fin_n);
        break;
      default:
        normalize_image<T, uint8_t>(fin.ptr, fin_n, norm, gain, carrier, static_cast<uint8_t*>(out) + n * fin_n);
        break;
    }
  }
}

template void conv_transpose2d_images<float>(const float*, const float*, const float*, float*,
                                             const LayerSpec&, int64_t, int64_t);
template void conv_transpose2d_images<double>(const double*, const double*, const double*, double*,
                                              const LayerSpec&, int64_t, int64_t);
template void fused_scramble_images<float>(const float*, const float* const*, const float* const*,
                                           const LayerSpec*, int, int, double, const float*, void*, int,
                                           int64_t, int64_t);
template void fused_scramble_images<double>(const double*, const double* const*, const double* const*,
                                            const LayerSpec*, int, int, double, const double*, void*, int,
                                            int64_t, int64_t);

}  // namespace cpu
}  // namespace owsd
