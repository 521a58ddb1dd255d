// CUDA kernels of the owsd operators.  Plain CUDA: no torch headers (the torch
// side is bindings.cpp); the index math is shared with the CPU kernels through
// deconv_index.h.
//
// * conv_transpose2d: one thread per output element, gather form (for each
//   tap, the input pixel it reads, if any), any stride/padding/dilation/groups.
// * fused_scramble: one thread block per image runs every layer of the stack;
//   each intermediate feature map lives in shared memory when it fits in the
//   (opt-in) shared-memory budget (two ping-pong regions), else in a per-image
//   global scratch slice (L2 resident for the late, large layers).  The last
//   map is reduced (mean / population std, in double) inside the block and
//   normalized straight into the output (float32, float64 or uint8).
#include <cuda_runtime.h>
#include <stdint.h>

#include "deconv_kernels.h"

namespace owsd {
namespace cuda {
namespace {

constexpr int kThreads = 256;

template <typename T>
struct FusedParams {
  LayerSpec layers[kMaxLayers];
  const T* w[kMaxLayers];
  const T* b[kMaxLayers];
  int64_t off[kMaxLayers];  // element offset of layer l's output (smem or scratch)
  int in_smem[kMaxLayers];  // 1: layer l's output lives in shared memory
  int nlayers;
  int norm;
  int out_kind;
  double gain;
  const T* x;
  const T* carrier;
  void* out;
  T* scratch;
  int64_t scratch_per_image;
};

__device__ __forceinline__ float ld(const float* p) { return __ldg(p); }
__device__ __forceinline__ double ld(const double* p) { return __ldg(p); }

// Value of output element (co, oy, ox) of a layer before activation.
template <typename T>
__device__ __forceinline__ T gather_output(const T* __restrict__ in, const T* __restrict__ w, const T* __restrict__ b,
                                           const LayerSpec& L, int co, int oy, int ox) {
  const int cig = L.cin / L.groups;
  const int cog = L.cout / L.groups;
  const int g = co / cog;
  const int col = co - g * cog;
  T acc = b ? ld(b + co) : T(0);
  for (int ky = 0; ky < L.kh; ++ky) {
    const int iy = convt_tap_input(oy, ky, L.sh, L.ph, L.dh, L.hin);
    if (iy < 0) continue;
    for (int kx = 0; kx < L.kw; ++kx) {
      const int ix = convt_tap_input(ox, kx, L.sw, L.pw, L.dw, L.win);
      if (ix < 0) continue;
      for (int cil = 0; cil < cig; ++cil) {
        const int ci = g * cig + cil;
        acc += in[(static_cast<int64_t>(ci) * L.hin + iy) * L.win + ix] *
               ld(w + convt_weight_index(ci, col, ky, kx, cog, L.kh, L.kw));
      }
    }
  }
  return acc;
}

template <typename T>
__global__ void __launch_bounds__(kThreads) conv_transpose2d_kernel(const T* __restrict__ x, const T* __restrict__ w,
                                                                    const T* __restrict__ b, T* __restrict__ out,
                                                                    LayerSpec L, int64_t n) {
  const int64_t per_img = static_cast<int64_t>(L.cout) * L.hout * L.wout;
  const int64_t in_img = static_cast<int64_t>(L.cin) * L.hin * L.win;
  const int64_t total = per_img * n;
  for (int64_t i = blockIdx.x * static_cast<int64_t>(blockDim.x) + threadIdx.x; i < total;
       i += static_cast<int64_t>(gridDim.x) * blockDim.x) {
    const int64_t img = i / per_img;
    const int64_t r = i - img * per_img;
    const int ox = static_cast<int>(r % L.wout);
    const int oy = static_cast<int>((r / L.wout) % L.hout);
    const int co = static_cast<int>(r / (static_cast<int64_t>(L.wout) * L.hout));
    out[i] = gather_output<T>(x + img * in_img, w, b, L, co, oy, ox);
  }
}

// Block-wide sum (every thread gets the result).
__device__ double block_sum(double v, double* red) {
  for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
  const int lane = threadIdx.x & 31, warp = threadIdx.x >> 5;
  __syncthreads();
  if (lane == 0) red[warp] = v;
  __syncthreads();
  if (warp == 0) {
    v = lane < static_cast<int>(blockDim.x >> 5) ? red[lane] : 0.0;
    for (int o = 16; o > 0; o >>= 1) v += __shfl_down_sync(0xffffffffu, v, o);
    if (lane == 0) red[0] = v;
  }
  __syncthreads();
  return red[0];
}

template <typename T>
__device__ __forceinline__ T clamp01(T v) {
  return v < T(0) ? T(0) : (v > T(1) ? T(1) : v);
}

__device__ __forceinline__ float sigmoid_t(float v) { return 1.0f / (1.0f + expf(-v)); }
__device__ __forceinline__ double sigmoid_t(double v) { return 1.0 / (1.0 + exp(-v)); }
__device__ __forceinline__ float round_t(float v) { return rintf(v); }
__device__ __forceinline__ double round_t(double v) { return rint(v); }

template <typename T>
__device__ __forceinline__ void store_out(void* out, int kind, int64_t i, T y) {
  if (kind == kOutFloat32) {
    static_cast<float*>(out)[i] = static_cast<float>(y);
  } else if (kind == kOutFloat64) {
    static_cast<double*>(out)[i] = static_cast<double>(y);
  } else {
    static_cast<uint8_t*>(out)[i] = static_cast<uint8_t>(static_cast<int>(round_t(y * T(255))));
  }
}

template <typename T>
__global__ void __launch_bounds__(kThreads) fused_scramble_kernel(const FusedParams<T> p) {
  extern __shared__ __align__(16) unsigned char smem_raw[];
  __shared__ double red[32];
  T* smem = reinterpret_cast<T*>(smem_raw);
  const int64_t img = blockIdx.x;
  const LayerSpec& L0 = p.layers[0];
  const T* src = p.x + img * (static_cast<int64_t>(L0.cin) * L0.hin * L0.win);
  T* scratch = p.scratch + img * p.scratch_per_image;
  for (int l = 0; l < p.nlayers; ++l) {
    const LayerSpec& L = p.layers[l];
    T* dst = p.in_smem[l] ? smem + p.off[l] : scratch + p.off[l];
    const int total = L.cout * L.hout * L.wout;
    for (int i = threadIdx.x; i < total; i += blockDim.x) {
      const int ox = i % L.wout;
      const int oy = (i / L.wout) % L.hout;
      const int co = i / (L.wout * L.hout);
      dst[i] = apply_activation<T>(gather_output<T>(src, p.w[l], p.b[l], L, co, oy, ox), L.act);
    }
    __syncthreads();
    src = dst;
  }
  const LayerSpec& Ll = p.layers[p.nlayers - 1];
  const int n = Ll.cout * Ll.hout * Ll.wout;
  const int64_t obase = img * n;
  const T g = static_cast<T>(p.gain);
  if (p.norm == kNormNone) {
    for (int i = threadIdx.x; i < n; i += blockDim.x) store_out<T>(p.out, p.out_kind, obase + i, clamp01(src[i]));
  } else if (p.norm == kNormSigmoid) {
    for (int i = threadIdx.x; i < n; i += blockDim.x)
      store_out<T>(p.out, p.out_kind, obase + i, sigmoid_t(g * src[i]));
  } else {
    double s = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) s += static_cast<double>(src[i]);
    const double mean = block_sum(s, red) / n;
    double ss = 0.0;
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const double d = static_cast<double>(src[i]) - mean;
      ss += d * d;
    }
    const double var = block_sum(ss, red) / n;
    const T m = static_cast<T>(mean);
    const T denom = static_cast<T>(sqrt(var)) + static_cast<T>(kStdEps);
    for (int i = threadIdx.x; i < n; i += blockDim.x) {
      const T off = p.carrier ? p.carrier[i] : static_cast<T>(0.5);
      store_out<T>(p.out, p.out_kind, obase + i, clamp01(off + (g * (src[i] - m)) / denom));
    }
  }
}

// Placement of each layer's output: shared memory (two ping-pong halves of the
// budget) when it fits, else the per-image global scratch.  The last layer
// always goes to scratch so that the normalization can read it back.
template <typename T>
int64_t plan(const LayerSpec* layers, int nlayers, int smem_budget, FusedParams<T>* p, int* smem_bytes) {
  const int64_t half = smem_budget / 2 / static_cast<int64_t>(sizeof(T));
  int64_t scratch = 0;
  int used_smem = 0;
  for (int l = 0; l < nlayers; ++l) {
    const int64_t sz = static_cast<int64_t>(layers[l].cout) * layers[l].hout * layers[l].wout;
    const bool last = (l == nlayers - 1);
    if (!last && sz <= half) {
      p->in_smem[l] = 1;
      p->off[l] = (l % 2) * half;
      used_smem = 1;
    } else {
      p->in_smem[l] = 0;
      p->off[l] = scratch;
      scratch += (sz + 31) / 32 * 32;
    }
  }
  *smem_bytes = used_smem ? static_cast<int>(2 * half * static_cast<int64_t>(sizeof(T))) : 0;
  return scratch;
}

template <typename T>
int launch_fused(const T* x, const T* const* w, const T* const* b, const LayerSpec* layers, int nlayers, int norm,
                 double gain, const T* carrier, void* out, int out_kind, int64_t n, T* scratch, int smem_budget,
                 void* stream) {
  if (nlayers < 1 || nlayers > kMaxLayers) return static_cast<int>(cudaErrorInvalidValue);
  FusedParams<T> p;
  for (int l = 0; l < nlayers; ++l) {
    p.layers[l] = layers[l];
    p.w[l] = w[l];
    p.b[l] = b[l];
  }
  int smem_bytes = 0;
  p.scratch_per_image = plan<T>(layers, nlayers, smem_budget, &p, &smem_bytes);
  p.nlayers = nlayers;
  p.norm = norm;
  p.out_kind = out_kind;
  p.gain = gain;
  p.x = x;
  p.carrier = carrier;
  p.out = out;
  p.scratch = scratch;
  if (n == 0) return 0;
  if (n > 0x7fffffffLL) return static_cast<int>(cudaErrorInvalidConfiguration);
  cudaError_t err = cudaFuncSetAttribute(fused_scramble_kernel<T>, cudaFuncAttributeMaxDynamicSharedMemorySize,
                                         smem_bytes);
  if (err != cudaSuccess) return static_cast<int>(err);
  fused_scramble_kernel<T><<<static_cast<unsigned>(n), kThreads, static_cast<size_t>(smem_bytes),
                             static_cast<cudaStream_t>(stream)>>>(p);
  return static_cast<int>(cudaGetLastError());
}

template <typename T>
int launch_layer(const T* x, const T* w, const T* b, T* out, const LayerSpec& L, int64_t n, void* stream) {
  const int64_t total = static_cast<int64_t>(L.cout) * L.hout * L.wout * n;
  if (total == 0) return 0;
  int64_t blocks = (total + kThreads - 1) / kThreads;
  if (blocks > 65535LL * 64) blocks = 65535LL * 64;
  conv_transpose2d_kernel<T><<<static_cast<unsigned>(blocks), kThreads, 0, static_cast<cudaStream_t>(stream)>>>(
      x, w, b, out, L, n);
  return static_cast<int>(cudaGetLastError());
}

}  // namespace

int max_smem_bytes(int device) {
  int v = 0;
  const cudaError_t err = cudaDeviceGetAttribute(&v, cudaDevAttrMaxSharedMemoryPerBlockOptin, device);
  if (err != cudaSuccess) return -static_cast<int>(err);
  return v > 1024 ? v - 1024 : v;  // leave room for the static reduction buffer
}

int64_t fused_scratch_elems_per_image(const LayerSpec* layers, int nlayers, int elem_bytes, int smem_budget_bytes) {
  int smem = 0;
  if (elem_bytes == 8) {
    FusedParams<double> p;
    return plan<double>(layers, nlayers, smem_budget_bytes, &p, &smem);
  }
  FusedParams<float> p;
  return plan<float>(layers, nlayers, smem_budget_bytes, &p, &smem);
}

int conv_transpose2d_f32(const float* x, const float* w, const float* b, float* out, const LayerSpec& L, int64_t n,
                         void* stream) {
  return launch_layer<float>(x, w, b, out, L, n, stream);
}

int conv_transpose2d_f64(const double* x, const double* w, const double* b, double* out, const LayerSpec& L,
                         int64_t n, void* stream) {
  return launch_layer<double>(x, w, b, out, L, n, stream);
}

int fused_scramble_f32(const float* x, const float* const* w, const float* const* b, const LayerSpec* layers,
                       int nlayers, int norm, double gain, const float* carrier, void* out, int out_kind, int64_t n,
                       float* scratch, int smem_budget_bytes, void* stream) {
  return launch_fused<float>(x, w, b, layers, nlayers, norm, gain, carrier, out, out_kind, n, scratch,
                             smem_budget_bytes, stream);
}

int fused_scramble_f64(const double* x, const double* const* w, const double* const* b, const LayerSpec* layers,
                       int nlayers, int norm, double gain, const double* carrier, void* out, int out_kind, int64_t n,
                       double* scratch, int smem_budget_bytes, void* stream) {
  return launch_fused<double>(x, w, b, layers, nlayers, norm, gain, carrier, out, out_kind, n, scratch,
                              smem_budget_bytes, stream);
}

const char* error_string(int code) { return cudaGetErrorString(static_cast<cudaError_t>(code)); }

}  // namespace cuda
}  // namespace owsd
