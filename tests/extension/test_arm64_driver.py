"""The ARM64 proof without ARM hardware: the kernel cores cross-compiled for ARM64 (generic and
NEON paths, no torch) and checked against plain loops under qemu-user (arm64_driver.cpp)."""

import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor

import pytest

from helpers import paths

CXX = "aarch64-linux-gnu-g++"
QEMU = "qemu-aarch64"
SYSROOT = "/usr/aarch64-linux-gnu"
SOURCES = {
    "driver": paths.ROOT / "tests" / "extension" / "arm64_driver.cpp",
    "generic": paths.ROOT / "csrc" / "cpu" / "isa_generic.cpp",
    "neon": paths.ROOT / "csrc" / "cpu" / "isa_neon.cpp",
}


def _tools():
    missing = [tool for tool in (CXX, QEMU) if shutil.which(tool) is None]
    if missing:
        pytest.skip(f"{' and '.join(missing)} not installed (Debian: apt-get install g++-aarch64-linux-gnu "
                    "qemu-user; `make test` installs them when run as root with apt)")


@pytest.fixture(scope="module")
def arm64_driver(tmp_path_factory):
    _tools()
    out = tmp_path_factory.mktemp("arm64")

    def compile_one(name):
        obj = out / f"{name}.o"
        command = [CXX, "-std=c++20", "-O2", "-DATROUS_STANDALONE", "-c", str(SOURCES[name]), "-o", str(obj)]
        subprocess.run(command, check=True, capture_output=True, text=True, timeout=900)
        return obj

    with ThreadPoolExecutor(3) as pool:
        objects = list(pool.map(compile_one, SOURCES))
    binary = out / "driver"
    subprocess.run([CXX, *map(str, objects), "-o", str(binary)], check=True, capture_output=True, timeout=300)
    return out


def test_neon_and_generic_kernels_match_plain_loops_under_qemu(arm64_driver):
    result = subprocess.run([QEMU, "-L", SYSROOT, str(arm64_driver / "driver")], capture_output=True,
                            text=True, timeout=600)
    assert result.returncode == 0, result.stdout + result.stderr
    last = result.stdout.strip().splitlines()[-1]
    assert last.startswith("ok: ") and last.endswith(", 0 failures"), result.stdout
    checks = int(last.split()[1])
    assert checks >= 2 * 30  # both paths: GEMM and depthwise cases, float and double


def test_neon_unit_multiplies_with_neon_vector_instructions(arm64_driver):
    objdump = shutil.which("aarch64-linux-gnu-objdump")
    if objdump is None:
        pytest.skip("aarch64-linux-gnu-objdump not installed (binutils-aarch64-linux-gnu)")
    text = subprocess.run([objdump, "-d", str(arm64_driver / "neon.o")], capture_output=True, text=True,
                          check=True, timeout=300).stdout
    # fmla on four float lanes (v.4s) or two double lanes (v.2d): the vector extension became NEON.
    assert "fmla" in text and (".4s" in text or ".2d" in text)
