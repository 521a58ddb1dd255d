// Declarations of the torch-free CPU kernels (deconv_cpu.cpp) and CUDA
// launchers (deconv_cuda.cu).  Only plain C++ types cross this boundary; the
// torch side lives in bindings.cpp.
#pragma once

#include <cstdint>

#include "deconv_index.h"

namespace owsd {

// Geometry of one transposed-convolution layer (all sizes in elements).
struct LayerSpec {
  int cin, cout, groups;
  int kh, kw;
  int sh, sw;
  int ph, pw;
  int oph, opw;
  int dh, dw;
  int hin, win, hout, wout;
  int act;       // Activation code
  int has_bias;  // 0/1
};

// Fills hout/wout from the other fields; returns false when they are < 1.
inline bool layer_spec_finish(LayerSpec* L) {
  L->hout = convt_out_size(L->hin, L->kh, L->sh, L->ph, L->oph, L->dh);
  L->wout = convt_out_size(L->win, L->kw, L->sw, L->pw, L->opw, L->dw);
  return L->hout >= 1 && L->wout >= 1;
}

namespace cpu {

// Name of the SIMD variant the CPU kernels were compiled for (e.g. "avx512").
const char* simd_name();

// One layer over images [n0, n1) of x (N, cin, hin, win) -> out (N, cout, hout, wout).
// `w` is (cin, cout/groups, kh, kw), `b` (cout) or nullptr; all contiguous.
template <typename T>
void conv_transpose2d_images(const T* x, const T* w, const T* b, T* out,
                             const LayerSpec& L, int64_t n0, int64_t n1);

// Whole scrambler stack over images [n0, n1): see reference.fused_scramble_ref.
// `out` has element type float/double/uint8 according to `out_kind` (OutKind)
// and shape (N, C_last, H_last, W_last); `carrier` is (C_last, H_last, W_last) or nullptr.
template <typename T>
void fused_scramble_images(const T* x, const T* const* w, const T* const* b,
                           const LayerSpec* layers, int nlayers, int norm, double gain,
                           const T* carrier, void* out, int out_kind, int64_t n0, int64_t n1);

}  // namespace cpu

namespace cuda {

// CUDA launchers (deconv_cuda.cu).  `stream` is a cudaStream_t passed as void*
// so that this header needs no CUDA include.  Return a cudaError_t as int
// (0 = success); `msg` receives a static error string on failure.
int conv_transpose2d_f32(const float* x, const float* w, const float* b, float* out,
                         const LayerSpec& L, int64_t n, void* stream);
int conv_transpose2d_f64(const double* x, const double* w, const double* b, double* out,
                         const LayerSpec& L, int64_t n, void* stream);

// Largest dynamic shared memory (bytes) a block may opt into on `device`
// (negative: a cudaError_t).
int max_smem_bytes(int device);

// Elements of global scratch fused_scramble needs per image (the
// intermediates that do not fit in `smem_budget_bytes` plus the final map).
int64_t fused_scratch_elems_per_image(const LayerSpec* layers, int nlayers, int elem_bytes,
                                      int smem_budget_bytes);

int fused_scramble_f32(const float* x, const float* const* w, const float* const* b,
                       const LayerSpec* layers, int nlayers, int norm, double gain,
                       const float* carrier, void* out, int out_kind, int64_t n,
                       float* scratch, int smem_budget_bytes, void* stream);
int fused_scramble_f64(const double* x, const double* const* w, const double* const* b,
                       const LayerSpec* layers, int nlayers, int norm, double gain,
                       const double* carrier, void* out, int out_kind, int64_t n,
                       double* scratch, int smem_budget_bytes, void* stream);

const char* error_string(int code);

}  // namespace cuda
}  // namespace owsd
