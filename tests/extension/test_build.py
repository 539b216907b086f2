"""The build: what was compiled, `python -m atrous.info`, the demo, and that the arithmetic is ours."""

import glob
import os
import re
import subprocess
import sys
import types

import pytest
import torch

import atrous
import atrous.ops as ops
from atrous import _build_env, _extension, buildinfo

from helpers import paths
from helpers.devices import DEVICES

ROOT = str(paths.ROOT)


def _run(*args, env=None):
    return subprocess.run([sys.executable, *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, **(env or {})}, timeout=300)


def test_extension_lists_every_registered_operator():
    # atrous._C.operators comes from the schema table of csrc/ops.cpp; the dispatcher's own
    # registry (every atrous:: schema, whatever file defined it) must hold exactly those.
    ext = _extension.load()
    all_ops = torch._C._dispatch_get_all_op_names()
    registered = {n.removeprefix("atrous::") for n in all_ops if n.startswith("atrous::")}
    names = buildinfo.operator_names(ext)
    assert len(names) == len(set(names))
    assert set(names) == registered
    assert all(hasattr(torch.ops.atrous, name) for name in names)


def test_stale_extension_without_operator_list_says_rebuild():
    with pytest.raises(RuntimeError, match="built from older sources.*make install"):
        buildinfo.operator_names(types.SimpleNamespace(algorithms={}))


def test_every_rung_names_the_file_that_implements_it():
    # csrc/common/algorithms.h pairs each rung with its file; atrous._C exports both views.
    ext = _extension.load()
    assert set(ext.algorithm_files) == set(ext.algorithms) == {"cpu", "cuda"}
    for device, ladders in ext.algorithms.items():
        assert set(ext.algorithm_files[device]) == set(ladders)
        for op, rungs in ladders.items():
            files = ext.algorithm_files[device][op]
            assert tuple(files) == rungs  # the same rungs in the same order
            for rung, path in files.items():
                where = f"{device} {op} {rung}: {path}"
                assert path.startswith(f"csrc/{device}/"), where
                assert os.path.isfile(os.path.join(ROOT, path)), f"{where} does not exist"
                with open(os.path.join(ROOT, path)) as f:
                    assert rung in f.read(), f"{path} never mentions its rung '{rung}'"


def test_every_operator_has_a_cpu_kernel():
    table = buildinfo.kernel_table()
    assert list(table) == list(_extension.load().operators)
    assert all(row["CPU"] for row in table.values()), table


def test_every_operator_has_a_cuda_kernel_when_cuda_is_compiled():
    ext = _extension.load()
    if not ext.with_cuda:
        pytest.skip("this build has no CUDA kernels "
                    "(test_cuda_sources_compiled_when_expected says whether it should)")
    table = buildinfo.kernel_table()
    missing = [name for name, row in table.items() if not row["CUDA"]]
    assert not missing, f"operators without a CUDA kernel: {missing}"


def test_info_lists_the_compiled_cuda_architectures():
    ext = _extension.load()
    if not ext.with_cuda:
        pytest.skip("this build has no CUDA kernels")
    archs = buildinfo.compiled_archs(ext.cuda_build_info)
    assert archs and all(re.fullmatch(r"sm_\d+", a) for a in archs), ext.cuda_build_info
    assert f"CUDA archs   {', '.join(archs)}" in _run("-m", "atrous.info").stdout


def test_cuda_sources_compiled_when_expected():
    # CI has a CUDA build of torch and nvcc: the CUDA half of the build must have been compiled
    # there. ATROUS_WITH_CUDA=0 (a CPU-only developer build) is the only accepted opt-out.
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    plan = _build_env.plan_cuda(torch.version.cuda, gpu_count)
    has_cuda_sources = bool(glob.glob(os.path.join(ROOT, "csrc", "cuda", "*.cu")))
    expected = plan.with_cuda and has_cuda_sources
    ext = _extension.load()
    assert bool(ext.with_cuda) == expected, (
        f"CUDA compiled={bool(ext.with_cuda)} but expected {expected} ({plan.reason}); rebuild")
    if expected:
        assert re.search(r"archs \d+", ext.cuda_build_info), ext.cuda_build_info


def test_toolkit_detection_sees_through_the_nvcc_wrapper():
    # torch guesses dirname(dirname(which nvcc)); for a wrapper script that is wrong. Ours must
    # land on a prefix that really holds bin/nvcc and include/cuda_runtime.h.
    toolkit = _build_env.find_cuda_toolkit()
    if toolkit is None:
        pytest.skip("no CUDA toolkit on this machine (nothing to detect)")
    assert os.path.isfile(os.path.join(toolkit.home, "bin", "nvcc"))
    assert os.path.isfile(os.path.join(toolkit.home, "include", "cuda_runtime.h"))
    assert re.fullmatch(r"\d+\.\d+", toolkit.version)


def test_extension_built_against_this_torch():
    ext = _extension.load()
    assert ext.build_torch_version == torch.__version__.split("+")[0]
    assert ext.with_openmp == 1 or sys.platform == "darwin"


def test_info_command_reports_the_build():
    result = _run("-m", "atrous.info")
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert f"torch        {torch.__version__}" in out
    assert "CPU kernels  yes" in out
    assert re.search(r"depthwise_conv2d\s+yes", out)
    assert "GPU visible" in out
    json_out = _run("-m", "atrous", "info", "--json")
    assert json_out.returncode == 0 and '"kernels"' in json_out.stdout


def test_missing_extension_explains_how_to_build():
    # Hide atrous._C from the import system and import atrous.ops in a fresh interpreter.
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'atrous._C': raise ImportError('simulated: no compiled extension')\n"
        "sys.meta_path.insert(0, Block())\n"
        "import atrous\n"  # the package itself imports without the extension
        "import atrous.ops\n"
    )
    result = _run("-c", code)
    assert result.returncode != 0
    assert "ExtensionNotBuiltError" in result.stderr
    assert "pip install --no-build-isolation -e ." in result.stderr
    assert "make install" in result.stderr


@pytest.mark.parametrize("device", DEVICES)
def test_kernels_call_no_aten_convolution_or_matmul(device):
    # The arithmetic is ours: profile forward and backward of every op and look at the ATen
    # operators dispatched underneath. Allocation, copies and layout changes are allowed.
    forbidden = re.compile(r"conv|mm|matmul|bmm|addmm|unfold|im2col|col2im|linear|einsum|baddbmm|dot|mv")
    torch.manual_seed(0)
    x = torch.randn(2, 4, 9, 9).to(device).requires_grad_(True)
    weights = {
        "dw": torch.randn(8, 1, 3, 3).to(device).requires_grad_(True),
        "pw": torch.randn(5, 4, 1, 1).to(device).requires_grad_(True),
        "dense": torch.randn(5, 4, 3, 3).to(device).requires_grad_(True),
    }
    bias = torch.randn(8).to(device).requires_grad_(True)
    with torch.profiler.profile(activities=[torch.profiler.ProfilerActivity.CPU]) as prof:
        y1 = ops.depthwise_conv2d(x, weights["dw"], bias, 1, 2, 2)
        y2 = ops.pointwise_conv2d(x.contiguous(memory_format=torch.channels_last), weights["pw"])
        y3 = ops.atrous_conv2d(x, weights["dense"], None, 1, 2, 2)
        (y1.sum() + y2.sum() + y3.sum()).backward()
    names = {event.name for event in prof.events()}
    assert any(name.startswith("atrous::") for name in names), names
    aten = {n for n in names if n.startswith("aten::")}
    assert not {n for n in aten if forbidden.search(n.removeprefix("aten::"))}, aten


def test_csrc_kernels_include_no_aten_compute_headers():
    # A static check beside the runtime one: kernels include only allocation/dispatch headers
    # (and ATen/Context.h, torch's global flags: the CUDA GEMM reads allow_tf32 there).
    allowed = re.compile(r"ATen/(core/Tensor|Parallel|Dispatch|Context|ops/empty|ops/zeros)\.h")
    for path in glob.glob(os.path.join(ROOT, "csrc", "**", "*.*"), recursive=True):
        with open(path) as f:
            for include in re.findall(r'#include <(ATen/[^>]+)>', f.read()):
                assert allowed.fullmatch(include), f"{path} includes <{include}>"


def test_demo_quick_runs_and_checks():
    result = _run("-m", "atrous", "demo", "--quick", "--repeats", "1")
    assert result.returncode == 0, result.stdout + result.stderr
    rows = [line for line in result.stdout.splitlines() if line.endswith("  ok")]
    assert len(rows) == 9, result.stdout
    assert "ASPP rate 18" in result.stdout and "decoder" in result.stdout
    assert "all layers match F.conv2d" in result.stdout


def test_package_imports_without_touching_the_extension():
    result = _run("-c", "import sys, atrous; print('atrous._C' in sys.modules, atrous.__version__)")
    assert result.stdout.split() == ["False", atrous.__version__]
