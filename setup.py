"""Build script of atrous: compiles the C++ (always) and CUDA (when possible) kernels into atrous._C."""

import glob
import importlib.util
import json
import os
import sys

from setuptools import find_packages, setup

ROOT = os.path.dirname(os.path.abspath(__file__))


def _load_build_env():
    # Loaded by path: importing the atrous package here would need the extension we are building.
    spec = importlib.util.spec_from_file_location("atrous_build_env", os.path.join(ROOT, "atrous", "_build_env.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _extensions_and_cmdclass():
    import torch

    build_env = _load_build_env()
    gpu_count = torch.cuda.device_count() if torch.cuda.is_available() else 0
    plan = build_env.plan_cuda(torch.version.cuda, gpu_count)
    plan.cpu_arch_flags = build_env.cpu_arch_flags()
    plan.openmp_flags = build_env.openmp_flags()

    if plan.with_cuda:
        # torch reads CUDA_HOME when cpp_extension is imported and would otherwise guess from
        # the nvcc wrapper on PATH; pin it to the toolkit we found, before and after import.
        os.environ["CUDA_HOME"] = plan.toolkit.home
        if plan.cuda_arch_list != "(visible GPUs)":
            os.environ["TORCH_CUDA_ARCH_LIST"] = plan.cuda_arch_list
    from torch.utils import cpp_extension

    if plan.with_cuda:
        cpp_extension.CUDA_HOME = plan.toolkit.home

    # The kernel cores are compiled once per instruction set through csrc/cpu/isa_*.cpp, never alone.
    per_isa = set(build_env.isa_kernel_sources("."))
    sources = sorted(s for s in glob.glob("csrc/*.cpp") + glob.glob("csrc/common/*.cpp") + glob.glob("csrc/cpu/*.cpp")
                     if s not in per_isa)
    cuda_sources = sorted(glob.glob("csrc/cuda/*.cu") + glob.glob("csrc/cuda/*.cpp"))
    torch_version = torch.__version__.split("+")[0]
    cxx_flags = ["-O3", "-std=c++20", *plan.cpu_arch_flags, *plan.openmp_flags, *build_env.codegen_flags(),
                 f"-DATROUS_BUILD_TORCH_VERSION={torch_version}"]
    if plan.cpu_arch_flags:
        cxx_flags.append("-DATROUS_CPU_ARCH_FLAGS=" + "_".join(f.lstrip("-") for f in plan.cpu_arch_flags))
    link_flags = list(plan.openmp_flags)

    if plan.with_cuda and cuda_sources:
        cxx_flags.append("-DATROUS_WITH_CUDA")
        nvcc_flags = ["-O3", "-std=c++20", "-DATROUS_WITH_CUDA", "--expt-relaxed-constexpr"]
        ext = cpp_extension.CUDAExtension(
            "atrous._C", sources + cuda_sources,
            extra_compile_args={"cxx": cxx_flags, "nvcc": nvcc_flags},
            extra_link_args=link_flags,
        )
    else:
        if plan.with_cuda and not cuda_sources:
            plan.reason += " (but csrc/cuda/ holds no sources)"
            plan.with_cuda = False
        ext = cpp_extension.CppExtension(
            "atrous._C", sources, extra_compile_args={"cxx": cxx_flags}, extra_link_args=link_flags,
        )

    config = {
        "torch": torch.__version__,
        "torch_cuda": torch.version.cuda,
        "with_cuda": plan.with_cuda,
        "cuda_reason": plan.reason,
        "cuda_home": plan.toolkit.home if plan.toolkit else None,
        "cuda_home_found_by": plan.toolkit.found_by if plan.toolkit else None,
        "cuda_toolkit_version": plan.toolkit.version if plan.toolkit else None,
        "cuda_arch_list": plan.cuda_arch_list if plan.with_cuda else None,
        "cxx_flags": cxx_flags,
        "sources": ext.sources,
    }
    print("atrous build configuration:", file=sys.stderr)
    for key, value in config.items():
        if key != "sources":
            print(f"  {key:20s} {value}", file=sys.stderr)
    with open(os.path.join(ROOT, "atrous", "_build_config.json"), "w") as f:
        json.dump(config, f, indent=2)

    build_ext = cpp_extension.BuildExtension.with_options(use_ninja=True)
    return [ext], {"build_ext": build_ext}


# Metadata-only commands (egg_info, sdist) must not need torch.
_needs_build = not any(arg in ("egg_info", "sdist", "--name", "--version") for arg in sys.argv[1:])
ext_modules, cmdclass = _extensions_and_cmdclass() if _needs_build else ([], {})

setup(
    name="atrous",
    version="0.1.0",
    description="Hand-written atrous (dilated) convolution kernels and DeepLabV3/V3+ on top of them",
    long_description=open(os.path.join(ROOT, "README.md")).read() if os.path.exists(os.path.join(ROOT, "README.md")) else "",
    long_description_content_type="text/markdown",
    python_requires=">=3.10",
    packages=find_packages(include=["atrous", "atrous.*"]),
    package_data={"atrous": ["_build_config.json"]},
    install_requires=["torch>=2.4", "numpy", "matplotlib>=3.7", "pillow", "tqdm"],
    extras_require={
        # torchvision and timm: the weight-import tests build their models (randomly initialised);
        # onnx*: the export test of impl="torch".
        # jupytext, nbclient, nbformat, ipykernel: the tutorials run as notebooks in the suite.
        "test": ["pytest>=7", "hypothesis>=6.80", "torchvision", "timm", "onnx", "onnxscript", "onnxruntime",
                 "jupytext", "nbclient", "nbformat", "ipykernel", "ruff==0.17.6"],
    },
    ext_modules=ext_modules,
    cmdclass=cmdclass,
    zip_safe=False,
)
