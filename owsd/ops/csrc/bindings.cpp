// Torch side of the owsd operators: schemas (TORCH_LIBRARY), argument checks,
// and the CPU / CUDA implementations that hand raw pointers to the torch-free
// kernels (deconv_cpu.cpp, deconv_cuda.cu).  The fake (meta) kernels and the
// autograd formulas are registered from Python (owsd/ops/_register.py).
//
// Compiled without CUDA unless WITH_CUDA is defined (torch.utils.cpp_extension
// defines it when .cu sources are part of the build).
#include <ATen/ATen.h>
#include <ATen/Parallel.h>
#include <torch/library.h>

#include <cstdint>
#include <cstdlib>
#include <string>
#include <type_traits>
#include <vector>

#if defined(__linux__)
#include <sys/mman.h>
#endif

#ifdef WITH_CUDA
#include <c10/cuda/CUDAGuard.h>
#include <c10/cuda/CUDAStream.h>
#endif

#include "affine_kernels.h"
#include "deconv_kernels.h"

namespace {

// Error messages are built here with std::to_string and string concatenation only, then
// handed to TORCH_CHECK as one std::string (which c10::str passes through untouched).
// Streaming numbers into c10::str's ostringstream segfaulted on one GPU image whose
// compiler's libstdc++ was newer than the one loaded at run time (docs/kernel.md).
inline std::string piece(const char* s) { return s; }
inline std::string piece(const std::string& s) { return s; }
inline std::string piece(at::ScalarType t) { return c10::toString(t); }
inline std::string piece(at::IntArrayRef a) {
  std::string out = "[";
  for (size_t i = 0; i < a.size(); ++i) out += (i ? ", " : "") + std::to_string(a[i]);
  return out + "]";
}
template <typename T, typename = std::enable_if_t<std::is_arithmetic_v<T>>>
std::string piece(T v) {
  return std::to_string(v);
}
template <typename... Args>
std::string cat(const Args&... args) {
  std::string out;
  ((out += piece(args)), ...);
  return out;
}

}  // namespace

#define OWSD_CHECK(cond, ...)                    \
  do {                                           \
    if (C10_UNLIKELY(!(cond))) {                 \
      TORCH_CHECK(false, ::cat(__VA_ARGS__));    \
    }                                            \
  } while (0)

namespace {

using owsd::LayerSpec;

// Large outputs are written exactly once, right after allocation, so first-touch page
// faults are a visible part of the run time (~0.4 ms per MiB on a VM).  Asking for
// transparent huge pages on them cuts the fault count 512x.  OWSD_OPS_HUGEPAGES=0 disables.
void advise_hugepages(const at::Tensor& t) {
#if defined(__linux__) && defined(MADV_HUGEPAGE)
  const size_t bytes = static_cast<size_t>(t.numel()) * t.element_size();
  if (bytes < (size_t{8} << 20)) return;
  const char* env = std::getenv("OWSD_OPS_HUGEPAGES");
  if (env && env[0] == '0') return;
  constexpr uintptr_t kHuge = uintptr_t{1} << 21;
  const uintptr_t p = reinterpret_cast<uintptr_t>(t.data_ptr());
  const uintptr_t start = (p + kHuge - 1) & ~(kHuge - 1);
  const uintptr_t end = (p + bytes) & ~(kHuge - 1);
  if (end > start) (void)madvise(reinterpret_cast<void*>(start), end - start, MADV_HUGEPAGE);
#else
  (void)t;
#endif
}

void check_float(const at::Tensor& t, const char* what) {
  OWSD_CHECK(t.scalar_type() == at::kFloat || t.scalar_type() == at::kDouble,
              "owsd: ", what, " must be float32 or float64, got ", t.scalar_type());
}

LayerSpec layer_spec(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                     at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                     int64_t groups, at::IntArrayRef dilation) {
  OWSD_CHECK(x.dim() == 4, "owsd::conv_transpose2d: x must be 4-D (N, C, H, W), got ", x.dim(), "-D");
  OWSD_CHECK(weight.dim() == 4, "owsd::conv_transpose2d: weight must be 4-D, got ", weight.dim(), "-D");
  check_float(x, "x");
  OWSD_CHECK(weight.scalar_type() == x.scalar_type(), "owsd::conv_transpose2d: weight dtype ",
              weight.scalar_type(), " differs from x dtype ", x.scalar_type());
  OWSD_CHECK(stride.size() == 2 && padding.size() == 2 && output_padding.size() == 2 && dilation.size() == 2,
              "owsd::conv_transpose2d: stride/padding/output_padding/dilation must have 2 entries");
  OWSD_CHECK(groups >= 1, "owsd::conv_transpose2d: groups must be >= 1");
  LayerSpec L{};
  L.cin = static_cast<int>(x.size(1));
  L.groups = static_cast<int>(groups);
  OWSD_CHECK(weight.size(0) == x.size(1), "owsd::conv_transpose2d: weight.size(0)=", weight.size(0),
              " must equal the input channels ", x.size(1));
  OWSD_CHECK(L.cin % L.groups == 0, "owsd::conv_transpose2d: input channels ", L.cin,
              " not divisible by groups ", L.groups);
  L.cout = static_cast<int>(weight.size(1) * groups);
  L.kh = static_cast<int>(weight.size(2));
  L.kw = static_cast<int>(weight.size(3));
  L.sh = static_cast<int>(stride[0]);
  L.sw = static_cast<int>(stride[1]);
  L.ph = static_cast<int>(padding[0]);
  L.pw = static_cast<int>(padding[1]);
  L.oph = static_cast<int>(output_padding[0]);
  L.opw = static_cast<int>(output_padding[1]);
  L.dh = static_cast<int>(dilation[0]);
  L.dw = static_cast<int>(dilation[1]);
  OWSD_CHECK(L.sh >= 1 && L.sw >= 1 && L.dh >= 1 && L.dw >= 1, "owsd::conv_transpose2d: stride and dilation must be >= 1");
  OWSD_CHECK(L.ph >= 0 && L.pw >= 0 && L.oph >= 0 && L.opw >= 0, "owsd::conv_transpose2d: padding must be >= 0");
  OWSD_CHECK(L.oph < std::max(L.sh, L.dh) && L.opw < std::max(L.sw, L.dw),
              "owsd::conv_transpose2d: output padding must be smaller than either stride or dilation");
  L.hin = static_cast<int>(x.size(2));
  L.win = static_cast<int>(x.size(3));
  L.act = owsd::kActNone;
  L.has_bias = bias.has_value() ? 1 : 0;
  if (bias.has_value()) {
    OWSD_CHECK(bias->dim() == 1 && bias->size(0) == L.cout, "owsd::conv_transpose2d: bias must have shape (",
                L.cout, ",)");
    OWSD_CHECK(bias->scalar_type() == x.scalar_type(), "owsd::conv_transpose2d: bias dtype differs from x");
  }
  OWSD_CHECK(owsd::layer_spec_finish(&L), "owsd::conv_transpose2d: output size would be < 1 (",
              L.hout, "x", L.wout, ")");
  return L;
}

at::Tensor conv_transpose2d_cpu(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                                int64_t groups, at::IntArrayRef dilation) {
  const LayerSpec L = layer_spec(x, weight, bias, stride, padding, output_padding, groups, dilation);
  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = weight.contiguous();
  const at::Tensor bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({x.size(0), L.cout, L.hout, L.wout}, x.options());
  advise_hugepages(out);
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "owsd_conv_transpose2d_cpu", [&] {
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const scalar_t* wp = wc.data_ptr<scalar_t>();
    const scalar_t* bp = bc.defined() ? bc.data_ptr<scalar_t>() : nullptr;
    scalar_t* op = out.data_ptr<scalar_t>();
    at::parallel_for(0, x.size(0), 1, [&](int64_t n0, int64_t n1) {
      owsd::cpu::conv_transpose2d_images<scalar_t>(xp, wp, bp, op, L, n0, n1);
    });
  });
  return out;
}

struct FusedArgs {
  std::vector<LayerSpec> layers;
  std::vector<at::Tensor> w, b;  // contiguous; b[l] undefined when absent
  at::Tensor carrier;            // contiguous, x's dtype, or undefined
  int out_kind = owsd::kOutFloat32;
  int norm = owsd::kNormNone;
};

FusedArgs fused_args(const at::Tensor& x, at::TensorList weights, const c10::List<std::optional<at::Tensor>>& biases,
                     at::IntArrayRef strides, at::IntArrayRef paddings, at::IntArrayRef output_paddings,
                     at::IntArrayRef activations, int64_t normalization, const std::optional<at::Tensor>& carrier,
                     at::ScalarType out_dtype) {
  const size_t n = weights.size();
  OWSD_CHECK(n >= 1 && n <= static_cast<size_t>(owsd::kMaxLayers), "owsd::fused_scramble: need 1..",
              owsd::kMaxLayers, " layers, got ", n);
  OWSD_CHECK(biases.size() == n && strides.size() == n && paddings.size() == n && output_paddings.size() == n &&
                  activations.size() == n,
              "owsd::fused_scramble: biases/strides/paddings/output_paddings/activations need one entry per layer");
  OWSD_CHECK(x.dim() == 4, "owsd::fused_scramble: x must be 4-D (N, C, H, W)");
  check_float(x, "x");
  OWSD_CHECK(normalization >= 0 && normalization <= 2, "owsd::fused_scramble: bad normalization code ",
              normalization);
  FusedArgs a;
  a.norm = static_cast<int>(normalization);
  if (out_dtype == at::kFloat) a.out_kind = owsd::kOutFloat32;
  else if (out_dtype == at::kDouble) a.out_kind = owsd::kOutFloat64;
  else if (out_dtype == at::kByte) a.out_kind = owsd::kOutUint8;
  else OWSD_CHECK(false, "owsd::fused_scramble: out_dtype must be float32, float64 or uint8, got ", out_dtype);
  int c = static_cast<int>(x.size(1)), h = static_cast<int>(x.size(2)), wd = static_cast<int>(x.size(3));
  for (size_t l = 0; l < n; ++l) {
    const at::Tensor& w = weights[l];
    OWSD_CHECK(w.dim() == 4, "owsd::fused_scramble: weights[", l, "] must be 4-D");
    OWSD_CHECK(w.scalar_type() == x.scalar_type(), "owsd::fused_scramble: weights[", l, "] dtype differs from x");
    OWSD_CHECK(w.size(0) == c, "owsd::fused_scramble: weights[", l, "].size(0)=", w.size(0), " but the layer input has ",
                c, " channels");
    OWSD_CHECK(activations[l] >= 0 && activations[l] <= 3, "owsd::fused_scramble: bad activation code ",
                activations[l]);
    LayerSpec L{};
    L.cin = c;
    L.cout = static_cast<int>(w.size(1));
    L.groups = 1;
    L.kh = static_cast<int>(w.size(2));
    L.kw = static_cast<int>(w.size(3));
    L.sh = L.sw = static_cast<int>(strides[l]);
    L.ph = L.pw = static_cast<int>(paddings[l]);
    L.oph = L.opw = static_cast<int>(output_paddings[l]);
    L.dh = L.dw = 1;
    OWSD_CHECK(L.sh >= 1 && L.ph >= 0 && L.oph >= 0 && L.oph < L.sh, "owsd::fused_scramble: layer ", l,
                ": need stride >= 1, padding >= 0, 0 <= output_padding < stride");
    L.hin = h;
    L.win = wd;
    L.act = static_cast<int>(activations[l]);
    const std::optional<at::Tensor> bl = biases.get(l);
    L.has_bias = bl.has_value() ? 1 : 0;
    if (bl.has_value()) {
      OWSD_CHECK(bl->dim() == 1 && bl->size(0) == L.cout, "owsd::fused_scramble: biases[", l, "] must have shape (",
                  L.cout, ",)");
      OWSD_CHECK(bl->scalar_type() == x.scalar_type(), "owsd::fused_scramble: biases[", l, "] dtype differs from x");
      a.b.push_back(bl->contiguous());
    } else {
      a.b.push_back(at::Tensor());
    }
    OWSD_CHECK(owsd::layer_spec_finish(&L), "owsd::fused_scramble: layer ", l, " output size < 1");
    a.layers.push_back(L);
    a.w.push_back(w.contiguous());
    c = L.cout;
    h = L.hout;
    wd = L.wout;
  }
  if (carrier.has_value()) {
    OWSD_CHECK(a.norm == owsd::kNormStandardize,
                "owsd::fused_scramble: a carrier is only used with normalization 'standardize'");
    OWSD_CHECK(carrier->dim() == 3 && carrier->size(0) == c && carrier->size(1) == h && carrier->size(2) == wd,
                "owsd::fused_scramble: carrier must have shape (", c, ", ", h, ", ", wd, "), got ", carrier->sizes());
    a.carrier = carrier->to(x.scalar_type()).contiguous();
  }
  return a;
}

at::Tensor fused_scramble_cpu(const at::Tensor& x, at::TensorList weights,
                              const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef strides,
                              at::IntArrayRef paddings, at::IntArrayRef output_paddings, at::IntArrayRef activations,
                              int64_t normalization, double gain, const std::optional<at::Tensor>& carrier,
                              at::ScalarType out_dtype) {
  FusedArgs a = fused_args(x, weights, biases, strides, paddings, output_paddings, activations, normalization,
                           carrier, out_dtype);
  const LayerSpec& last = a.layers.back();
  at::Tensor out = at::empty({x.size(0), last.cout, last.hout, last.wout}, x.options().dtype(out_dtype));
  advise_hugepages(out);
  const at::Tensor xc = x.contiguous();
  const int nl = static_cast<int>(a.layers.size());
  AT_DISPATCH_FLOATING_TYPES(x.scalar_type(), "owsd_fused_scramble_cpu", [&] {
    std::vector<const scalar_t*> wp(nl), bp(nl);
    for (int l = 0; l < nl; ++l) {
      wp[l] = a.w[l].data_ptr<scalar_t>();
      bp[l] = a.b[l].defined() ? a.b[l].data_ptr<scalar_t>() : nullptr;
    }
    const scalar_t* xp = xc.data_ptr<scalar_t>();
    const scalar_t* cp = a.carrier.defined() ? a.carrier.data_ptr<scalar_t>() : nullptr;
    void* op = out.data_ptr();
    at::parallel_for(0, x.size(0), 1, [&](int64_t n0, int64_t n1) {
      owsd::cpu::fused_scramble_images<scalar_t>(xp, wp.data(), bp.data(), a.layers.data(), nl, a.norm, gain, cp, op,
                                                 a.out_kind, n0, n1);
    });
  });
  return out;
}

// ----------------------------------------------------------------------------- affine scrambler
struct AffineInputs {
  at::Tensor x, m, offset, scale, center, base;  // contiguous, x's dtype; offset / base may be undefined
  int out_kind = owsd::kOutFloat32;
  int post = owsd::kPostClamp01;
};

AffineInputs affine_inputs(const at::Tensor& x, const at::Tensor& matrix, const std::optional<at::Tensor>& offset,
                           const at::Tensor& scale, const at::Tensor& center, const std::optional<at::Tensor>& base,
                           int64_t post, at::ScalarType out_dtype) {
  OWSD_CHECK(x.dim() == 2, "owsd::affine_scramble: x must be 2-D (N, K), got ", x.dim(), "-D");
  check_float(x, "x");
  OWSD_CHECK(matrix.dim() == 2 && matrix.size(0) == x.size(1), "owsd::affine_scramble: matrix must be (K, P) with K=",
              x.size(1), ", got ", matrix.sizes());
  OWSD_CHECK(matrix.scalar_type() == x.scalar_type(), "owsd::affine_scramble: matrix dtype differs from x");
  const int64_t n = x.size(0), p = matrix.size(1);
  OWSD_CHECK(scale.dim() == 1 && scale.size(0) == n && center.dim() == 1 && center.size(0) == n,
              "owsd::affine_scramble: scale and center must have shape (", n, ",)");
  OWSD_CHECK(post >= 0 && post <= 2, "owsd::affine_scramble: bad post code ", post);
  AffineInputs a;
  a.post = static_cast<int>(post);
  if (out_dtype == at::kFloat) a.out_kind = owsd::kOutFloat32;
  else if (out_dtype == at::kDouble) a.out_kind = owsd::kOutFloat64;
  else if (out_dtype == at::kByte) a.out_kind = owsd::kOutUint8;
  else OWSD_CHECK(false, "owsd::affine_scramble: out_dtype must be float32, float64 or uint8, got ", out_dtype);
  OWSD_CHECK(!(a.out_kind == owsd::kOutUint8 && a.post == owsd::kPostIdentity),
              "owsd::affine_scramble: a uint8 output needs a bounded post map (clamp or sigmoid)");
  const auto dt = x.scalar_type();
  for (const auto* t : {&offset, &base}) {
    if (t->has_value()) {
      OWSD_CHECK((*t)->dim() == 1 && (*t)->size(0) == p, "owsd::affine_scramble: offset and base must have shape (",
                  p, ",), got ", (*t)->sizes());
    }
  }
  a.x = x.contiguous();
  a.m = matrix.contiguous();
  a.scale = scale.to(dt).contiguous();
  a.center = center.to(dt).contiguous();
  if (offset.has_value()) a.offset = offset->to(dt).contiguous();
  if (base.has_value()) a.base = base->to(dt).contiguous();
  return a;
}

template <typename T>
owsd::AffineArgs<T> affine_args(const AffineInputs& in, at::Tensor& out) {
  owsd::AffineArgs<T> a{};
  a.x = in.x.data_ptr<T>();
  a.m = in.m.data_ptr<T>();
  a.offset = in.offset.defined() ? in.offset.data_ptr<T>() : nullptr;
  a.scale = in.scale.data_ptr<T>();
  a.center = in.center.data_ptr<T>();
  a.base = in.base.defined() ? in.base.data_ptr<T>() : nullptr;
  a.post = in.post;
  a.out_kind = in.out_kind;
  a.out = out.data_ptr();
  a.n = in.x.size(0);
  a.k = in.x.size(1);
  a.p = in.m.size(1);
  return a;
}

void affine_scramble_cpu_into(const AffineInputs& in, at::Tensor& out) {
  if (out.numel() == 0) return;
  AT_DISPATCH_FLOATING_TYPES(in.x.scalar_type(), "owsd_affine_scramble_cpu", [&] {
    const owsd::AffineArgs<scalar_t> a = affine_args<scalar_t>(in, out);
    at::parallel_for(0, a.n, 4, [&](int64_t n0, int64_t n1) { owsd::cpu::affine_scramble_rows<scalar_t>(a, n0, n1); });
  });
}

at::Tensor affine_scramble_cpu(const at::Tensor& x, const at::Tensor& matrix, const std::optional<at::Tensor>& offset,
                               const at::Tensor& scale, const at::Tensor& center,
                               const std::optional<at::Tensor>& base, int64_t post, at::ScalarType out_dtype) {
  const AffineInputs in = affine_inputs(x, matrix, offset, scale, center, base, post, out_dtype);
  at::Tensor out = at::empty({x.size(0), matrix.size(1)}, x.options().dtype(out_dtype));
  advise_hugepages(out);
  affine_scramble_cpu_into(in, out);
  return out;
}

// affine_scramble_out (CPU only; CUDA callers copy): the caller's (N, P) contiguous buffer of the output
// dtype.  A client scrambling batch after batch into one buffer pays no first-touch page faults.
void affine_scramble_out_cpu(const at::Tensor& x, const at::Tensor& matrix, const std::optional<at::Tensor>& offset,
                             const at::Tensor& scale, const at::Tensor& center, const std::optional<at::Tensor>& base,
                             int64_t post, at::Tensor out) {
  const AffineInputs in = affine_inputs(x, matrix, offset, scale, center, base, post, out.scalar_type());
  OWSD_CHECK(out.dim() == 2 && out.size(0) == x.size(0) && out.size(1) == matrix.size(1) && out.is_contiguous() &&
                 out.device() == x.device(),
             "owsd::affine_scramble_out: out must have shape (" + std::to_string(x.size(0)) + ", " +
                 std::to_string(matrix.size(1)) + "), be contiguous and on x's device");
  affine_scramble_cpu_into(in, out);
}

std::string build_info() {
  std::string s = "simd=";
  s += owsd::cpu::simd_name();
#ifdef WITH_CUDA
  s += ";cuda=1";
#else
  s += ";cuda=0";
#endif
  return s;
}

#ifdef WITH_CUDA
void check_cuda(int err, const char* what) {
  OWSD_CHECK(err == 0, "owsd: CUDA error in ", what, ": ", owsd::cuda::error_string(err));
}

at::Tensor conv_transpose2d_cuda(const at::Tensor& x, const at::Tensor& weight, const std::optional<at::Tensor>& bias,
                                 at::IntArrayRef stride, at::IntArrayRef padding, at::IntArrayRef output_padding,
                                 int64_t groups, at::IntArrayRef dilation) {
  const LayerSpec L = layer_spec(x, weight, bias, stride, padding, output_padding, groups, dilation);
  const c10::cuda::CUDAGuard guard(x.device());
  const at::Tensor xc = x.contiguous();
  const at::Tensor wc = weight.contiguous();
  const at::Tensor bc = bias.has_value() ? bias->contiguous() : at::Tensor();
  at::Tensor out = at::empty({x.size(0), L.cout, L.hout, L.wout}, x.options());
  if (out.numel() == 0) return out;
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  if (x.scalar_type() == at::kFloat) {
    check_cuda(owsd::cuda::conv_transpose2d_f32(xc.data_ptr<float>(), wc.data_ptr<float>(),
                                                bc.defined() ? bc.data_ptr<float>() : nullptr, out.data_ptr<float>(), L,
                                                x.size(0), stream),
               "conv_transpose2d");
  } else {
    check_cuda(owsd::cuda::conv_transpose2d_f64(xc.data_ptr<double>(), wc.data_ptr<double>(),
                                                bc.defined() ? bc.data_ptr<double>() : nullptr, out.data_ptr<double>(),
                                                L, x.size(0), stream),
               "conv_transpose2d");
  }
  return out;
}

at::Tensor fused_scramble_cuda(const at::Tensor& x, at::TensorList weights,
                               const c10::List<std::optional<at::Tensor>>& biases, at::IntArrayRef strides,
                               at::IntArrayRef paddings, at::IntArrayRef output_paddings, at::IntArrayRef activations,
                               int64_t normalization, double gain, const std::optional<at::Tensor>& carrier,
                               at::ScalarType out_dtype) {
  FusedArgs a = fused_args(x, weights, biases, strides, paddings, output_paddings, activations, normalization,
                           carrier, out_dtype);
  const c10::cuda::CUDAGuard guard(x.device());
  const LayerSpec& last = a.layers.back();
  at::Tensor out = at::empty({x.size(0), last.cout, last.hout, last.wout}, x.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  const at::Tensor xc = x.contiguous();
  const int nl = static_cast<int>(a.layers.size());
  const int elem = static_cast<int>(x.element_size());
  const int budget = owsd::cuda::max_smem_bytes(static_cast<int>(x.get_device()));
  OWSD_CHECK(budget >= 0, "owsd: could not query shared memory size: ", owsd::cuda::error_string(-budget));
  const int64_t per_image = owsd::cuda::fused_scratch_elems_per_image(a.layers.data(), nl, elem, budget);
  at::Tensor scratch = at::empty({x.size(0) * per_image}, x.options());
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  if (x.scalar_type() == at::kFloat) {
    std::vector<const float*> wp(nl), bp(nl);
    for (int l = 0; l < nl; ++l) {
      wp[l] = a.w[l].data_ptr<float>();
      bp[l] = a.b[l].defined() ? a.b[l].data_ptr<float>() : nullptr;
    }
    check_cuda(owsd::cuda::fused_scramble_f32(xc.data_ptr<float>(), wp.data(), bp.data(), a.layers.data(), nl, a.norm,
                                              gain, a.carrier.defined() ? a.carrier.data_ptr<float>() : nullptr,
                                              out.data_ptr(), a.out_kind, x.size(0), scratch.data_ptr<float>(), budget,
                                              stream),
               "fused_scramble");
  } else {
    std::vector<const double*> wp(nl), bp(nl);
    for (int l = 0; l < nl; ++l) {
      wp[l] = a.w[l].data_ptr<double>();
      bp[l] = a.b[l].defined() ? a.b[l].data_ptr<double>() : nullptr;
    }
    check_cuda(owsd::cuda::fused_scramble_f64(xc.data_ptr<double>(), wp.data(), bp.data(), a.layers.data(), nl,
                                              a.norm, gain,
                                              a.carrier.defined() ? a.carrier.data_ptr<double>() : nullptr,
                                              out.data_ptr(), a.out_kind, x.size(0), scratch.data_ptr<double>(),
                                              budget, stream),
               "fused_scramble");
  }
  return out;
}
at::Tensor affine_scramble_cuda(const at::Tensor& x, const at::Tensor& matrix, const std::optional<at::Tensor>& offset,
                                const at::Tensor& scale, const at::Tensor& center,
                                const std::optional<at::Tensor>& base, int64_t post, at::ScalarType out_dtype) {
  const AffineInputs in = affine_inputs(x, matrix, offset, scale, center, base, post, out_dtype);
  const c10::cuda::CUDAGuard guard(x.device());
  at::Tensor out = at::empty({x.size(0), matrix.size(1)}, x.options().dtype(out_dtype));
  if (out.numel() == 0) return out;
  void* stream = c10::cuda::getCurrentCUDAStream().stream();
  if (x.scalar_type() == at::kFloat) {
    check_cuda(owsd::cuda::affine_scramble_f32(affine_args<float>(in, out), stream), "affine_scramble");
  } else {
    check_cuda(owsd::cuda::affine_scramble_f64(affine_args<double>(in, out), stream), "affine_scramble");
  }
  return out;
}
#endif  // WITH_CUDA

}  // namespace

TORCH_LIBRARY(owsd, m) {
  m.def(
      "conv_transpose2d(Tensor x, Tensor weight, Tensor? bias, int[2] stride, int[2] padding, "
      "int[2] output_padding, int groups, int[2] dilation) -> Tensor");
  m.def(
      "fused_scramble(Tensor x, Tensor[] weights, Tensor?[] biases, int[] strides, int[] paddings, "
      "int[] output_paddings, int[] activations, int normalization, float gain, Tensor? carrier, "
      "ScalarType out_dtype) -> Tensor");
  m.def(
      "affine_scramble(Tensor x, Tensor matrix, Tensor? offset, Tensor scale, Tensor center, Tensor? base, "
      "int post, ScalarType out_dtype) -> Tensor");
  m.def(
      "affine_scramble_out(Tensor x, Tensor matrix, Tensor? offset, Tensor scale, Tensor center, Tensor? base, "
      "int post, Tensor(a!) out) -> ()");
  m.def("_build_info() -> str", &build_info);
}

TORCH_LIBRARY_IMPL(owsd, CPU, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cpu);
  m.impl("fused_scramble", &fused_scramble_cpu);
  m.impl("affine_scramble", &affine_scramble_cpu);
  m.impl("affine_scramble_out", &affine_scramble_out_cpu);
}

#ifdef WITH_CUDA
TORCH_LIBRARY_IMPL(owsd, CUDA, m) {
  m.impl("conv_transpose2d", &conv_transpose2d_cuda);
  m.impl("fused_scramble", &fused_scramble_cuda);
  m.impl("affine_scramble", &affine_scramble_cuda);
}
#endif
