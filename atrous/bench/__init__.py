"""The benchmark harness: times atrous's ops against PyTorch on DeepLabV3+ layer shapes (table, JSON, PNG).

How each number is made (read this before quoting one):

1. Warm-up. Every measured call runs `--warmup` times untimed first: the first call pays for
   thread-pool start-up, oneDNN primitive creation, allocator growth and cold pages.
2. Median, interleaved. Then it runs up to `--repeats` times, each run timed on its own, stopping
   early once `--budget` seconds per contender are spent and at least 3 runs are in. The contenders
   of a case (PyTorch, ours, our unfused pair) take turns, one run each: torch, ours, torch, ours,
   ... so that a burst of load from another process slows all of them alike instead of one. We
   report the median: one noisy run moves a mean but not a median. The spread of a measurement is
   its interquartile range over its median; when a contender's spread is above `--max-spread`
   (default 25%) the whole set is measured again, up to `--retries` more times (2; models 1), and
   the attempt with the smallest worst spread is kept. Rows still above it are marked "noisy". On
   the CPU a run is timed with `time.perf_counter` (CPU ops are synchronous); on CUDA with CUDA
   events, after writing a buffer larger than L2 (so each run starts with cold caches, as in a
   network where the previous layer evicted them); the same runs without that flush are reported
   as "hot".
3. Bandwidth. Once per run we time a large tensor copy (far larger than the last-level cache) and
   call 2 x bytes / time the machine's copy bandwidth: what a memory-bound kernel can hope for.
4. Roofline %. A depthwise convolution does 2.25 flop per byte in fp32, so it is memory-bound: its
   minimal traffic (read input + weights, write output; backward: read grad_output + input +
   weights, write grad_input + grad_weight) over its time is its achieved GB/s, printed as a % of
   the copy bandwidth. (A batch-1 layer at 33x33 moves a few MB, which fits in the last-level
   cache: there % of copy bandwidth can pass 100%.) GEMMs (pointwise, dense atrous) are
   compute-bound: we print GFLOP/s = 2*M*N*K / time instead (K = C_in*k*k for dense); on CUDA
   TFLOP/s, and "% torch", our throughput as a share of PyTorch's (cuBLAS/cuDNN) on the same
   layout. TF32 is switched off for the run, so float32 is compared with true float32.
5. Ratios. x = PyTorch time / our time, both medians from the same run (x > 1: ours is faster),
   against F.conv2d on the same layout (NCHW and channels_last are both timed) and against
   PyTorch's faster layout. Summaries are geometric means over shapes.
6. Correctness. Every timed output (and gradient) is compared with PyTorch's on the same layout;
   rows above `--tolerance` (largest error relative to the tensor's largest value) are marked.
7. Whole models (`--models`). DeepLabV3+ Xception-65, DeepLabV3+ MobileNetV3-Large and DeepLabV3
   ResNet-50 by default (any of `atrous.models.MODELS`; 21 classes, output stride 16). Without
   `--size` and `--batch`, inference steps run on one 513x513 image and the training step on a
   batch of 8 at 257x257 (`--quick`: 257x257, and 2 at 129x129); with them, every step on every
   case. Each model is built once with a fixed seed; both implementations run the same weights on
   the same input, each on its own copy (`atrous.nn.set_impl(model, "torch")` switching every
   convolution to F.conv2d), their runs interleaved. `--steps` picks what is timed:
   - forward: eval mode under torch.no_grad;
   - train: train mode, forward + cross-entropy on random labels + backward + SGD step. Each impl
     steps its own copy of the model. Its first step is the one checked (with dropout off, so that
     no random mask enters the comparison), and it counts as the first warm-up;
   - fused: the `atrous.nn.fuse(model)` eval model (batch norms folded into the convolutions;
     under impl="atrous" separable blocks run the fused separable op), forward only;
   - best: best configuration against best configuration. The fused model of each impl on NCHW and
     on channels_last (four contenders, interleaved); each impl is judged by its faster layout.
   Reported: ms per image (median / batch), images/s and x = torch time / atrous time. Checked:
   the output (forward, fused, best) or the loss (train) within `--tolerance`, and the gradients
   of the checked step as ||g_atrous - g_torch|| / ||g_torch|| over all parameters. That bound is
   loose (0.1 in float32, 1e-6 in float64) on purpose: in train mode a randomly initialised
   65-layer network amplifies float32 rounding, and PyTorch's own float32 gradients of Xception-65
   differ from its float64 ones by about 1%. A broken kernel is off by order 1; the property tests
   check the backward kernels exactly. The train and best steps are then run once more per impl
   under torch.profiler: the self time of every operator, summed per op type (GEMM, depthwise,
   dense, fused separable, pooling/upsampling/BN/ReLU, layout conversions; `atrous.bench.profile`)
   shows where the time goes. `--steps forward,fused,best` leaves the training steps out.

Backward timing: the forward graph is built once, untimed, and `torch.autograd.grad(...,
retain_graph=True)` is timed alone (input and weight gradients; DeepLab's convolutions have no
bias because batch norm follows them). The fused separable op is forward-only.

The ladder (`--ladder OP --shapes NAME`) times every rung of `atrous.ops.algorithms(OP, device)`
(each device has its own ladder) in teaching order, then "auto" and PyTorch, on one shape: what
each step bought. A rung's run time is first estimated on 1/16 of the channels; a rung estimated
over `--rung-budget` seconds is skipped (and reported with its estimate), the others get as many
runs as fit in that budget, each run alternating with one of PyTorch's, whose median "x torch" divides.

Same instruction set (`--same-isa avx2|avx512|generic`): the same run in a subprocess with
ATROUS_CPU_ISA, ONEDNN_MAX_CPU_ISA, MKL_ENABLE_INSTRUCTIONS and ATEN_CPU_CAPABILITY set, so that our
path and PyTorch's (oneDNN, MKL, ATen) use the same instructions; its files go to OUT/same-isa-ISA/
and --update-readme writes the bench-same-isa (or bench-models-same-isa) block. Every report
records the instruction sets in use ("isa": ATen's capability, atrous's active path, the variables).

From Python: `run(resolve(Options(shapes="os16-middle-dw728", repeats=5)))` returns the report as a
dict (`Options` has one field per flag). `resolve(options, shapes=..., registry=...)` runs on your own
shapes (a list of `Shape`) or models (a mapping of name -> factory, called as
`factory(num_classes=21, output_stride=16)`; default `atrous.models.MODELS`), `run(config, ops=...)`
with another ops module. `median_ms(fn)` times one call the harness's way; `run_demo()` is
`python -m atrous demo`.
"""

# The package, bottom to top (a module imports only those above it):
#   common   BenchError, option vocabularies, number formats
#   shapes   Shape, Case, ModelCase; SHAPES, QUICK_SHAPES, TINY_SHAPES, DEMO_SHAPES; select_cases
#   timing   CpuTimer, CudaTimer, TimingPlan, measure, median_ms, copy_bandwidth (steps 1 to 3)
#   config   Options (the flags), Config, resolve, command_line
#   cases    tensors, contenders, traffic and flops, errors, run_case (steps 4 to 6)
#   report   summaries, tables, markdown, the README block, the files written
#   plot     the charts (matplotlib, imported when drawing)
#   profile  time per op type of one run (torch.profiler)
#   ladder   --ladder;  models  --models (step 7);  demo  `python -m atrous demo`
#   same_isa --same-isa: the run in a subprocess, both libraries held to one instruction set
#   machine  CPU/GPU, build, TF32 off
#   runner   run, report_ok, listing
# The command `python -m atrous bench` is atrous/cli/bench.py.

from .cases import Tensors, implementations, make_tensors, rel_error, work
from .common import LAYOUT_LABEL, LAYOUTS, NOISY_SPREAD, OPS, BenchError
from .config import Config, Options, command_line, resolve
from .demo import run_demo
from .ladder import format_ladder
from .machine import cpu_model, exact_fp32
from .plot import plot_ladder, plot_models, plot_results, plot_roofline, ratio_iqr
from .report import format_report, update_readme
from .runner import exit_status, listing, report_ok, run
from .shapes import DEMO_SHAPES, QUICK_SHAPES, SHAPES, Case, ModelCase, Shape, select_cases
from .timing import (
    CpuTimer,
    CudaTimer,
    Interleaved,
    Measurement,
    TimingPlan,
    copy_bandwidth,
    make_timer,
    measure,
    measure_interleaved,
    median_ms,
)

__all__ = [
    "DEMO_SHAPES",
    "LAYOUTS",
    "LAYOUT_LABEL",
    "NOISY_SPREAD",
    "OPS",
    "QUICK_SHAPES",
    "SHAPES",
    "BenchError",
    "Case",
    "Config",
    "CpuTimer",
    "CudaTimer",
    "Interleaved",
    "Measurement",
    "ModelCase",
    "Options",
    "Shape",
    "Tensors",
    "TimingPlan",
    "command_line",
    "copy_bandwidth",
    "cpu_model",
    "exact_fp32",
    "exit_status",
    "format_ladder",
    "format_report",
    "implementations",
    "listing",
    "make_tensors",
    "make_timer",
    "measure",
    "measure_interleaved",
    "median_ms",
    "plot_ladder",
    "plot_models",
    "plot_results",
    "plot_roofline",
    "ratio_iqr",
    "rel_error",
    "report_ok",
    "resolve",
    "run",
    "run_demo",
    "select_cases",
    "update_readme",
    "work",
]
