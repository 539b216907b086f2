"""`python -m atrous demo`: each atrous op checked against PyTorch on DeepLabV3+ layer shapes, with timings.

Shapes are Xception-65 DeepLabV3+ at a 513x513 input and output stride 16: the middle flow
(728 channels at 33x33), the ASPP (2048 channels at 33x33, rates 6/12/18) and the decoder
(304 channels at 129x129). For each layer the table shows the largest error of our forward
and gradients against F.conv2d, and median wall times of ours and of F.conv2d on the same
NCHW input. The benchmark harness (a later issue) owns careful speed comparisons; these
timings are a first look.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from dataclasses import dataclass

import torch
import torch.nn.functional as F


@dataclass
class Layer:
    name: str
    kind: str  # depthwise | pointwise | dense
    channels: int
    out_channels: int
    size: int
    kernel: int = 3
    dilation: int = 1

    @property
    def padding(self) -> int:
        return self.dilation * (self.kernel - 1) // 2

    def describe(self, batch: int) -> str:
        k = f"{self.kernel}x{self.kernel}" + (f" d={self.dilation}" if self.dilation > 1 else "")
        return f"{batch}x{self.channels}x{self.size}x{self.size} -> {self.out_channels}, {k}"


def deeplab_layers(quick: bool = False) -> list[Layer]:
    """DeepLabV3+ Xception-65 layers at 513x513, OS16. quick: channels / 8 and small planes."""
    layers = [
        Layer("middle flow", "depthwise", 728, 728, 33),
        Layer("middle flow", "pointwise", 728, 728, 33, kernel=1),
        Layer("ASPP rate 6", "depthwise", 2048, 2048, 33, dilation=6),
        Layer("ASPP rate 12", "depthwise", 2048, 2048, 33, dilation=12),
        Layer("ASPP rate 18", "depthwise", 2048, 2048, 33, dilation=18),
        Layer("ASPP projection", "pointwise", 2048, 256, 33, kernel=1),
        Layer("ASPP dense rate 12", "dense", 2048, 256, 33, dilation=12),
        Layer("decoder", "depthwise", 304, 304, 129),
        Layer("decoder", "pointwise", 304, 256, 129, kernel=1),
    ]
    if quick:
        layers = [Layer(l.name, l.kind, max(1, l.channels // 8), max(1, l.out_channels // 8),
                        min(l.size, 17), l.kernel, l.dilation) for l in layers]
    return layers


def _make_inputs(layer: Layer, batch: int, dtype: torch.dtype, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(batch, layer.channels, layer.size, layer.size, dtype=dtype, generator=gen)
    in_per_group = 1 if layer.kind == "depthwise" else layer.channels
    fan_in = in_per_group * layer.kernel * layer.kernel
    w = torch.randn(layer.out_channels, in_per_group, layer.kernel, layer.kernel, dtype=dtype,
                    generator=gen) / fan_in ** 0.5
    b = torch.randn(layer.out_channels, dtype=dtype, generator=gen)
    return x, w, b


def _ours(layer: Layer):
    from . import ops

    if layer.kind == "depthwise":
        return lambda x, w, b: ops.depthwise_conv2d(x, w, b, 1, layer.padding, layer.dilation)
    if layer.kind == "pointwise":
        return lambda x, w, b: ops.pointwise_conv2d(x, w, b)
    return lambda x, w, b: ops.atrous_conv2d(x, w, b, 1, layer.padding, layer.dilation)


def _torch(layer: Layer):
    groups = layer.channels if layer.kind == "depthwise" else 1
    return lambda x, w, b: F.conv2d(x, w, b, 1, layer.padding, layer.dilation, groups)


def _median_ms(fn, repeats: int) -> float:
    fn()  # warm-up: first-call allocations and thread start-up
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return 1e3 * statistics.median(times)


def _forward_backward(fn, x, w, b, gy):
    x, w, b = (t.detach().requires_grad_(True) for t in (x, w, b))
    y = fn(x, w, b)
    grads = torch.autograd.grad(y, (x, w, b), gy)
    return y.detach(), grads


def _rel_error(a: torch.Tensor, ref: torch.Tensor) -> float:
    return (a - ref).abs().max().item() / max(1.0, ref.abs().max().item())


def run_layer(layer: Layer, batch: int, dtype: torch.dtype, repeats: int) -> dict:
    x, w, b = _make_inputs(layer, batch, dtype)
    ours, theirs = _ours(layer), _torch(layer)
    gy = torch.randn(theirs(x, w, b).shape, dtype=dtype, generator=torch.Generator().manual_seed(1))
    y, grads = _forward_backward(ours, x, w, b, gy)
    y_t, grads_t = _forward_backward(theirs, x, w, b, gy)
    with torch.no_grad():
        row = {
            "forward_abs_err": (y - y_t).abs().max().item(),
            "forward_rel_err": _rel_error(y, y_t),
            "grad_rel_err": max(_rel_error(g, g_t) for g, g_t in zip(grads, grads_t)),
            "ours_fwd_ms": _median_ms(lambda: ours(x, w, b), repeats),
            "torch_fwd_ms": _median_ms(lambda: theirs(x, w, b), repeats),
        }
    row["ours_fwdbwd_ms"] = _median_ms(lambda: _forward_backward(ours, x, w, b, gy), repeats)
    row["torch_fwdbwd_ms"] = _median_ms(lambda: _forward_backward(theirs, x, w, b, gy), repeats)
    return row


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--batch", type=int, default=1, help="batch size (1 = inference)")
    parser.add_argument("--dtype", choices=["float32", "float64"], default="float32")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per measurement (median)")
    parser.add_argument("--quick", action="store_true", help="channels / 8 and planes <= 17 (seconds)")
    parser.add_argument("--tolerance", type=float, default=None,
                        help="largest relative error accepted (default 1e-4 float32, 1e-10 float64)")


def main(args: argparse.Namespace) -> int:
    dtype = getattr(torch, args.dtype)
    tolerance = args.tolerance or (1e-4 if dtype == torch.float32 else 1e-10)
    print(f"atrous demo: ours vs F.conv2d, {args.dtype}, batch {args.batch}, "
          f"torch {torch.__version__}, {torch.get_num_threads()} threads; "
          f"times are medians of {args.repeats} runs in ms, PyTorch on the same NCHW input")
    header = (f"{'layer':<19} {'op':<9} {'shape (N x C x H x W -> C_out, kernel)':<38} "
              f"{'max abs err':>11} {'grad rel err':>12} {'ours fwd':>9} {'torch fwd':>9} "
              f"{'ours f+b':>9} {'torch f+b':>9}  check")
    print(header)
    print("-" * len(header))
    failures = 0
    for layer in deeplab_layers(args.quick):
        row = run_layer(layer, args.batch, dtype, args.repeats)
        ok = row["forward_rel_err"] <= tolerance and row["grad_rel_err"] <= tolerance
        failures += not ok
        print(f"{layer.name:<19} {layer.kind:<9} {layer.describe(args.batch):<38} "
              f"{row['forward_abs_err']:>11.2e} {row['grad_rel_err']:>12.2e} "
              f"{row['ours_fwd_ms']:>9.2f} {row['torch_fwd_ms']:>9.2f} "
              f"{row['ours_fwdbwd_ms']:>9.2f} {row['torch_fwdbwd_ms']:>9.2f}  "
              f"{'ok' if ok else 'MISMATCH'}", flush=True)
    if failures:
        print(f"{failures} layer(s) differ from F.conv2d by more than {tolerance:g} (relative)")
        return 1
    print(f"all layers match F.conv2d within {tolerance:g} (relative to each tensor's largest value)")
    return 0


if __name__ == "__main__":
    parser = argparse.ArgumentParser(prog="python -m atrous.demo", description=__doc__)
    add_arguments(parser)
    sys.exit(main(parser.parse_args()))
