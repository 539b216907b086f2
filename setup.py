"""Build script of atrous: compiles the C++ (always) and CUDA (when possible) kernels into atrous._C.

The package metadata is in pyproject.toml. ATROUS_NO_EXTENSION=1 installs without compiling anything
(models then run with impl="torch"). The kernel sources ship inside the package (atrous/csrc) for the
tutorials.
"""

import glob
import importlib.util
import json
import os
import shutil
import sys

from setuptools import setup
from setuptools.command.build_py import build_py

ROOT = os.path.dirname(os.path.abspath(__file__))
NO_EXTENSION = os.environ.get("ATROUS_NO_EXTENSION", "") not in ("", "0")
NO_TORCH_HELP = (
    "atrous: compiling the kernels needs torch, and {python} cannot import it ({error}). Install torch "
    "first (`pip install torch`), then build against it: `pip install --no-build-isolation .` (or a git "
    "url); or install without compiling: `ATROUS_NO_EXTENSION=1 pip install .`"
)


def _load_build_env():
    # Loaded by path: importing the atrous package here would need the extension we are building.
    spec = importlib.util.spec_from_file_location("atrous_build_env", os.path.join(ROOT, "atrous", "_build_env.py"))
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up here
    spec.loader.exec_module(module)
    return module


def _import_torch():
    try:
        import torch
    except ImportError as e:  # one line saying what to run, not a traceback from deep in the build
        sys.exit(NO_TORCH_HELP.format(python=sys.executable, error=e))
    return torch


def _extensions_and_cmdclass():
    torch = _import_torch()

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
        "extension": True,
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


class BuildPy(build_py):
    """Also ships the kernel sources (csrc/ -> atrous/csrc, read by atrous.sources() and the tutorials)
    and, for ATROUS_NO_EXTENSION=1, a build record saying that nothing was compiled."""

    def run(self):
        super().run()
        if self.editable_mode:  # an editable install reads the repository's csrc/ directly
            return
        package = os.path.join(self.build_lib, "atrous")
        target = os.path.join(package, "csrc")
        shutil.rmtree(target, ignore_errors=True)
        shutil.copytree(os.path.join(ROOT, "csrc"), target,
                        ignore=shutil.ignore_patterns("*.o", "*.so", "__pycache__"))
        if NO_EXTENSION:  # and no compiled module left in build/ by an earlier build
            for stale in glob.glob(os.path.join(package, "_C*")):
                os.remove(stale)
            with open(os.path.join(package, "_build_config.json"), "w") as f:
                json.dump({"extension": False, "reason": "installed with ATROUS_NO_EXTENSION=1"}, f, indent=2)


# Metadata-only commands (egg_info, dist_info, sdist) must not need torch.
_needs_build = not NO_EXTENSION and not any(
    arg in ("egg_info", "dist_info", "sdist", "clean", "--name", "--version") for arg in sys.argv[1:])
ext_modules, cmdclass = _extensions_and_cmdclass() if _needs_build else ([], {})

# Name, version, dependencies, extras and the `atrous` command are in pyproject.toml ([project]).
setup(ext_modules=ext_modules, cmdclass={**cmdclass, "build_py": BuildPy})
