"""Diagnose how C++ argument errors of the owsd ops surface on a device (each case in its own process).

Prints one line per case: the exception raised, or the signal that killed the process.
Run: python benchmarks/gpu_diag_errors.py
"""
import subprocess
import sys

CASES = {
    "cpu_conv_bad_weight": "ops.conv_transpose2d(torch.randn(1,4,3,3), torch.randn(3,2,3,3), impl='ext')",
    "cpu_affine_bad_matrix": "torch.ops.owsd.affine_scramble(torch.randn(2,3), torch.randn(4,5), None, torch.ones(2), "
                             "torch.zeros(2), None, 0, torch.float32)",
    "cuda_conv_bad_weight": "ops.conv_transpose2d(torch.randn(1,4,3,3,device='cuda'), torch.randn(3,2,3,3,device='cuda'), "
                            "impl='ext')",
    "cuda_conv_bad_weight_direct": "torch.ops.owsd.conv_transpose2d(torch.randn(1,4,3,3,device='cuda'), "
                                   "torch.randn(3,2,3,3,device='cuda'), None, [1,1], [0,0], [0,0], 1, [1,1])",
    "cuda_conv_half": "ops.conv_transpose2d(torch.randn(1,4,3,3,device='cuda').half(), "
                      "torch.randn(4,2,3,3,device='cuda').half(), impl='ext')",
    "cuda_affine_bad_matrix": "torch.ops.owsd.affine_scramble(torch.randn(2,3,device='cuda'), "
                              "torch.randn(4,5,device='cuda'), None, torch.ones(2,device='cuda'), "
                              "torch.zeros(2,device='cuda'), None, 0, torch.float32)",
    "torch_check_from_aten": "torch.empty(2,3).view(4)",
}
PRE = "import torch, owsd.ops as ops; ops.status()\ntry:\n    {}\n    print('no error')\n" \
      "except Exception as e:\n    print(type(e).__name__, str(e).splitlines()[0][:120])\n"
for name, code in CASES.items():
    p = subprocess.run([sys.executable, "-c", PRE.format(code)], capture_output=True, text=True, timeout=120)
    out = (p.stdout.strip().splitlines() or [""])[-1]
    print(f"{name:30s} rc={p.returncode:4d} {out}" + ("" if p.returncode == 0 else f" | {p.stderr.strip()[-200:]}"))
