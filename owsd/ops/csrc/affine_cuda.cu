// CUDA kernel of the affine scrambler (affine_kernels.h): a register-tiled matrix
// product out = x (N, K) @ m (K, P) with the normalization, the carrier and the
// quantization fused into its epilogue, so every output pixel is written exactly once
// and nothing else touches device memory but x and m.
//
// Tiling: a block of 256 threads computes a 64 (images) x 128 (pixels) tile in chunks of
// 16 along K through shared memory; each thread keeps 4 x 8 accumulators in registers,
// its 8 columns as two runs of 4 (tx * 4 and 64 + tx * 4), so that its float32 stores
// are 16-byte vectors and a half-warp writes 256 contiguous bytes.  Blocks along x walk
// the image tiles of one pixel tile, so m is read from DRAM once and re-used from L2.
#include <cuda_runtime.h>
#include <stdint.h>

#include "affine_kernels.h"
#include "deconv_index.h"

namespace owsd {
namespace cuda {
namespace {

constexpr int kBM = 64, kBN = 128, kBK = 16, kTM = 4, kTN = 8, kThreadsA = 256;
static_assert((kBM / kTM) * (kBN / kTN) == kThreadsA, "tile shape must match the block size");

template <typename T>
__device__ __forceinline__ T post_op(T v, int post);

template <>
__device__ __forceinline__ float post_op<float>(float v, int post) {
  if (post == kPostClamp01) return v < 0.f ? 0.f : (v > 1.f ? 1.f : v);
  if (post == kPostSigmoid) return 1.f / (1.f + expf(-v));
  return v;
}

template <>
__device__ __forceinline__ double post_op<double>(double v, int post) {
  if (post == kPostClamp01) return v < 0.0 ? 0.0 : (v > 1.0 ? 1.0 : v);
  if (post == kPostSigmoid) return 1.0 / (1.0 + exp(-v));
  return v;
}

template <typename T>
__device__ __forceinline__ uint8_t to_u8(T y) {
  return static_cast<uint8_t>(static_cast<int>(rint(static_cast<double>(y) * 255.0)));
}

__device__ __forceinline__ uint8_t to_u8f(float y) { return static_cast<uint8_t>(static_cast<int>(rintf(y * 255.f))); }

// Stores 4 consecutive outputs of row r starting at column c (vectorized when allowed).
template <typename T>
__device__ __forceinline__ void store4(const AffineArgs<T>& a, int64_t r, int64_t c, const T (&y)[4], bool vec) {
  const int64_t i = r * a.p + c;
  if (vec && c + 3 < a.p) {
    if (a.out_kind == kOutFloat32) {
      *reinterpret_cast<float4*>(static_cast<float*>(a.out) + i) =
          make_float4(static_cast<float>(y[0]), static_cast<float>(y[1]), static_cast<float>(y[2]),
                      static_cast<float>(y[3]));
      return;
    }
    if (a.out_kind == kOutUint8) {
      uchar4 q;
      if (sizeof(T) == 4) {
        q = make_uchar4(to_u8f(static_cast<float>(y[0])), to_u8f(static_cast<float>(y[1])),
                        to_u8f(static_cast<float>(y[2])), to_u8f(static_cast<float>(y[3])));
      } else {
        q = make_uchar4(to_u8(y[0]), to_u8(y[1]), to_u8(y[2]), to_u8(y[3]));
      }
      *reinterpret_cast<uchar4*>(static_cast<uint8_t*>(a.out) + i) = q;
      return;
    }
  }
#pragma unroll
  for (int j = 0; j < 4; ++j) {
    if (c + j >= a.p) break;
    if (a.out_kind == kOutFloat32) {
      static_cast<float*>(a.out)[i + j] = static_cast<float>(y[j]);
    } else if (a.out_kind == kOutFloat64) {
      static_cast<double*>(a.out)[i + j] = static_cast<double>(y[j]);
    } else {
      static_cast<uint8_t*>(a.out)[i + j] = sizeof(T) == 4 ? to_u8f(static_cast<float>(y[j])) : to_u8(y[j]);
    }
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreadsA) affine_kernel(const AffineArgs<T> a) {
  __shared__ __align__(16) T As[kBK][kBM];
  __shared__ __align__(16) T Bs[kBK][kBN];
  const int tid = threadIdx.x;
  const int tx = tid & 15, ty = tid >> 4;
  const int64_t row0 = static_cast<int64_t>(blockIdx.x) * kBM;
  const int64_t ntiles = (a.p + kBN - 1) / kBN;
  const bool vec = (a.p % 4) == 0;  // rows start 16-byte aligned, 4-column runs never straddle the end
  for (int64_t tile = blockIdx.y; tile < ntiles; tile += gridDim.y) {
    const int64_t col0 = tile * kBN;
    T acc[kTM][kTN];
#pragma unroll
    for (int i = 0; i < kTM; ++i)
#pragma unroll
      for (int j = 0; j < kTN; ++j) acc[i][j] = T(0);
    for (int64_t k0 = 0; k0 < a.k; k0 += kBK) {
      // x tile, image index fastest: conflict-free shared stores (x is tiny and L2-resident)
#pragma unroll
      for (int i = 0; i < kBM * kBK / kThreadsA; ++i) {
        const int idx = tid + i * kThreadsA;
        const int r = idx % kBM, kk = idx / kBM;
        const int64_t gr = row0 + r, gk = k0 + kk;
        As[kk][r] = (gr < a.n && gk < a.k) ? __ldg(a.x + gr * a.k + gk) : T(0);
      }
      // m tile, pixel index fastest: coalesced global loads
#pragma unroll
      for (int i = 0; i < kBK * kBN / kThreadsA; ++i) {
        const int idx = tid + i * kThreadsA;
        const int c = idx % kBN, kk = idx / kBN;
        const int64_t gk = k0 + kk, gc = col0 + c;
        Bs[kk][c] = (gk < a.k && gc < a.p) ? __ldg(a.m + gk * a.p + gc) : T(0);
      }
      __syncthreads();
#pragma unroll
      for (int kk = 0; kk < kBK; ++kk) {
        T av[kTM], bv[kTN];
#pragma unroll
        for (int i = 0; i < kTM; ++i) av[i] = As[kk][ty * kTM + i];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          bv[j] = Bs[kk][tx * 4 + j];
          bv[4 + j] = Bs[kk][64 + tx * 4 + j];
        }
#pragma unroll
        for (int i = 0; i < kTM; ++i)
#pragma unroll
          for (int j = 0; j < kTN; ++j) acc[i][j] = fma(av[i], bv[j], acc[i][j]);
      }
      __syncthreads();
    }
#pragma unroll
    for (int i = 0; i < kTM; ++i) {
      const int64_t gr = row0 + ty * kTM + i;
      if (gr >= a.n) continue;
      const T s = a.scale[gr], cen = a.center[gr];
#pragma unroll
      for (int h = 0; h < 2; ++h) {
        const int64_t gc = col0 + h * 64 + tx * 4;
        if (gc >= a.p) continue;
        T y[4];
#pragma unroll
        for (int j = 0; j < 4; ++j) {
          const int64_t c = gc + j < a.p ? gc + j : a.p - 1;  // clamped read; the store skips it
          const T off = a.offset ? a.offset[c] : T(0);
          const T bs = a.base ? a.base[c] : T(0);
          y[j] = post_op<T>(s * (acc[i][h * 4 + j] + off - cen) + bs, a.post);
        }
        store4<T>(a, gr, gc, y, vec);
      }
    }
  }
}

template <typename T>
int launch_affine(const AffineArgs<T>& a, void* stream) {
  if (a.n == 0 || a.p == 0) return 0;
  const int64_t row_tiles = (a.n + kBM - 1) / kBM;
  const int64_t col_tiles = (a.p + kBN - 1) / kBN;
  if (row_tiles > 0x7fffffffLL) return static_cast<int>(cudaErrorInvalidConfiguration);
  const dim3 grid(static_cast<unsigned>(row_tiles), static_cast<unsigned>(col_tiles < 65535 ? col_tiles : 65535));
  affine_kernel<T><<<grid, kThreadsA, 0, static_cast<cudaStream_t>(stream)>>>(a);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int affine_scramble_f32(const AffineArgs<float>& a, void* stream) { return launch_affine<float>(a, stream); }
int affine_scramble_f64(const AffineArgs<double>& a, void* stream) { return launch_affine<double>(a, stream); }

}  // namespace cuda
}  // namespace owsd
