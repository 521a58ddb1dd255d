#!/usr/bin/env bash
# The CUDA kernels on a GPU, in one run: build, tests, benchmark.  Meant for a lent GPU
# machine with its own CUDA build of PyTorch and nvcc (nothing downloadable there); run
# from the repository root:
#
#   OUT=/tmp/gpu-out bash benchmarks/gpu_check.sh            # results and logs under $OUT
#
# Stages (each bounded by its own timeout, each writing its log under $OUT even when it fails):
#   env.txt        nvidia-smi, driver, torch / CUDA / nvcc versions
#   build.txt      the extension built with CUDA for the visible GPU (verbose compiler output)
#   diag.txt       how C++ argument errors of the ops surface (each case in its own process)
#   tests.txt      the ops tests on CUDA (--device cuda): every op against F.conv_transpose2d /
#                  the reference in float32 and float64, opcheck, gradcheck (float64), every preset,
#                  odd shapes and strides, the collapsed (affine) path; junit.xml beside it
#   bench.txt      benchmarks/bench_kernel_cuda.py against cuDNN; bench_cuda.json
#   memcheck.txt   compute-sanitizer memcheck of the owsd kernels on odd shapes (where it runs)
set -uo pipefail
OUT="${OUT:-/tmp/gpu-out}"
mkdir -p "$OUT"
cd "$(dirname "$0")/.."
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg
export OWSD_OPS_CACHE="${OWSD_OPS_CACHE:-/tmp/owsd-ops-gpu}" MAX_JOBS="${MAX_JOBS:-16}"
PY="${PY:-python3}"
T_BUILD="${T_BUILD:-240}" T_TESTS="${T_TESTS:-200}" T_BENCH="${T_BENCH:-200}" T_SAN="${T_SAN:-90}"
start=$(date +%s)
stage() { echo "== $1 ($(( $(date +%s) - start )) s)"; }

stage env
{
  date -u
  nvidia-smi
  nvidia-smi --query-gpu=name,driver_version,clocks.sm,clocks.max.sm,clocks.mem,clocks.max.mem,memory.total \
    --format=csv
  "$PY" -c "import torch, sys; print('python', sys.version.split()[0]); print('torch', torch.__version__, 'cuda', torch.version.cuda, torch.cuda.get_device_name(0), torch.cuda.get_device_capability(0))"
  nvcc --version | tail -2
} > "$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

stage build
timeout "$T_BUILD" "$PY" - > "$OUT/build.txt" 2>&1 <<'PY'
import json, logging, time
logging.basicConfig(level=logging.DEBUG, format="%(name)s: %(message)s")
import owsd.ops as ops
t = time.time()
st = ops.status()
print("build+load seconds", round(time.time() - t, 1))
print(json.dumps(st, indent=1))
PY
echo "build rc=$?"; grep -E "build\+load|\"impl\"|reason" "$OUT/build.txt" | head -8

stage diag
timeout 120 "$PY" benchmarks/gpu_diag_errors.py > "$OUT/diag.txt" 2>&1
cat "$OUT/diag.txt"

stage tests
# xdist: a test that kills its worker is reported as failed and the rest still run
timeout "$T_TESTS" "$PY" -m pytest -q -p no:cacheprovider -n "${TEST_WORKERS:-4}" --timeout 120 tests/test_ops.py \
  tests/test_ops_affine.py tests/test_ops_build.py --device cuda -rfEs --junitxml="$OUT/junit.xml" \
  > "$OUT/tests.txt" 2>&1
echo "tests rc=$?"; tail -25 "$OUT/tests.txt"

stage bench
timeout "$T_BENCH" "$PY" benchmarks/bench_kernel_cuda.py --json "$OUT/bench_cuda.json" --repeats 10 \
  ${BENCH_ARGS:-} > "$OUT/bench.txt" 2>&1
echo "bench rc=$?"; tail -14 "$OUT/bench.txt"

stage memcheck
if [ "$T_SAN" -gt 0 ] && command -v compute-sanitizer > /dev/null; then
  PYTORCH_NO_CUDA_MEMORY_CACHING=1 timeout "$T_SAN" compute-sanitizer --tool memcheck --error-exitcode 9 "$PY" - > "$OUT/memcheck.txt" 2>&1 <<'PY'
import torch, owsd.ops as ops
from owsd.ops.reference import fused_scramble_ref
g = torch.Generator().manual_seed(0)
r = lambda *s: torch.randn(*s, generator=g).cuda()
for n, k, p in [(1, 1, 1), (3, 17, 129), (65, 64, 1001), (130, 70, 127)]:
    for od in (torch.float32, torch.uint8):
        y = ops.affine_scramble(r(n, k), r(k, p), r(p), scale=r(n).abs(), center=r(n), base=r(p), out_dtype=od,
                                impl="ext")
ws = [r(3, 5, 3, 3) / 5, r(5, 4, 5, 5) / 9, r(4, 2, 4, 4) / 8]
x = r(4, 3, 7, 3)
for norm in ("none", "sigmoid", "standardize"):
    ops.fused_scramble(x, ws, [None, r(4), None], strides=[3, 2, 1], paddings=[1, 2, 0], output_paddings=[2, 1, 0],
                       activations=["tanh", "leaky_relu", "none"], normalization=norm, impl="ext")
ops.conv_transpose2d(r(2, 6, 5, 7), r(6, 2, 4, 3) / 5, r(4), stride=(2, 3), padding=(1, 0), output_padding=(1, 2),
                     groups=2, dilation=(1, 2), impl="ext")
torch.cuda.synchronize()
print("memcheck workload done")
PY
  echo "memcheck rc=$?"; tail -4 "$OUT/memcheck.txt"
else
  echo "compute-sanitizer not found" > "$OUT/memcheck.txt"
fi
stage done
