"""Every CUDA op and rung once on small tensors: the workload scripts/gpu_check.sh runs under compute-sanitizer.

Small on purpose (memcheck and racecheck slow kernels down 10-100x): odd sizes for ragged tiles,
a dilation whose halo exceeds the plane, both layouts, float32 and float16, TF32 on and off for
the tensor-core GEMM. Exits 1 if a result differs from F.conv2d beyond its tolerance, so a
sanitizer run also checks the values. Usage: python scripts/sanitizer_cases.py
"""

import sys

import torch
import torch.nn.functional as F

import atrous.ops as ops

A = torch.ops.atrous


def main() -> int:
    if not torch.cuda.is_available():
        print("sanitizer_cases.py: no GPU visible to torch", file=sys.stderr)
        return 2
    gen = torch.Generator(device="cuda").manual_seed(0)
    failures = 0
    for dtype, tol in ((torch.float32, 1e-4), (torch.float16, 1e-2)):
        for layout in (torch.contiguous_format, torch.channels_last):
            for tf32 in (False, True):
                torch.backends.cudnn.allow_tf32 = tf32
                x = torch.randn(2, 16, 13, 17, device="cuda", dtype=dtype, generator=gen).to(memory_format=layout)
                wd = torch.randn(16, 1, 3, 3, device="cuda", dtype=dtype, generator=gen)
                wp = torch.randn(24, 16, 1, 1, device="cuda", dtype=dtype, generator=gen) / 4
                wa = torch.randn(8, 16, 3, 3, device="cuda", dtype=dtype, generator=gen) / 8
                for algo in ops.algorithms("depthwise_conv2d", "cuda"):
                    for d in (1, 6, 18):  # 18: the halo is wider than the 13 x 17 plane
                        y = A.depthwise_conv2d(x, wd, None, [1, 1], [d, d], [d, d], algo)
                        gy = torch.randn_like(y)
                        A.depthwise_conv2d_backward_input(gy, wd, list(x.shape), [1, 1], [d, d], [d, d], algo)
                        A.depthwise_conv2d_backward_weight(gy, x, list(wd.shape), [1, 1], [d, d], [d, d], algo)
                        ref = F.conv2d(x.double(), wd.double(), None, 1, d, d, 16)
                        failures += _check(f"depthwise {algo} d={d} {dtype} {layout}", y, ref, tol)
                for algo in ops.algorithms("pointwise_conv2d", "cuda"):
                    y = A.pointwise_conv2d(x, wp, None, algo)
                    gy = torch.randn_like(y)
                    A.pointwise_conv2d_backward_input(gy, wp, algo)
                    A.pointwise_conv2d_backward_weight(gy, x, algo)
                    ref = F.conv2d(x.double(), wp.double())
                    failures += _check(f"pointwise {algo} tf32={tf32} {dtype} {layout}", y, ref,
                                       max(tol, 3e-3 if tf32 else 0))
                for algo in ops.algorithms("atrous_conv2d", "cuda"):
                    y = A.atrous_conv2d(x, wa, None, [1, 1], [2, 2], [2, 2], algo)
                    gy = torch.randn_like(y)
                    A.atrous_conv2d_backward_input(gy, wa, list(x.shape), [1, 1], [2, 2], [2, 2], algo)
                    A.atrous_conv2d_backward_weight(gy, x, list(wa.shape), [1, 1], [2, 2], [2, 2], algo)
                    ref = F.conv2d(x.double(), wa.double(), None, 1, 2, 2)
                    failures += _check(f"dense {algo} {dtype} {layout}", y, ref, tol)
                A.conv2d_backward_bias(x)
    torch.cuda.synchronize()
    print(f"sanitizer_cases.py: {failures} mismatches")
    return 1 if failures else 0


def _check(what, got, ref, tol) -> int:
    err = ((got.double() - ref).abs().max() / max(1.0, ref.abs().max().item())).item()
    if err > tol:
        print(f"MISMATCH {what}: relative error {err:.3g} > {tol:g}")
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
