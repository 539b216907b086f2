"""Runtime ISA dispatch: the paths compiled, the one chosen, ATROUS_CPU_ISA, and that nothing
outside the AVX2/AVX-512 units of the library uses wider instructions than the baseline."""

import json
import os
import re
import shutil
import subprocess
import sys

import pytest
import torch
import torch.nn.functional as F

from atrous import _extension, buildinfo

from helpers import paths

ROOT = str(paths.ROOT)
X86 = {"generic", "avx2", "avx512"}


def _python(code, isa=None):
    env = {**os.environ, "PYTHONPATH": ROOT}
    env.pop("ATROUS_CPU_ISA", None)
    if isa is not None:
        env["ATROUS_CPU_ISA"] = isa
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, env=env,
                          timeout=300)


def test_cpu_isa_reports_compiled_supported_and_active():
    # In a fresh interpreter: the per-ISA property tests switch the set in this process (and the
    # reason then names the switch), so read what an import chooses on its own.
    out = _python("import json; from atrous import buildinfo; print(json.dumps(buildinfo.cpu_isa()))",
                  isa=os.environ.get("ATROUS_CPU_ISA"))
    assert out.returncode == 0, out.stderr
    isa = json.loads(out.stdout.strip().splitlines()[-1])
    assert set(isa) == {"compiled", "supported", "active", "reason"}
    assert isa["compiled"][0] == "generic" and "generic" in isa["supported"]
    assert set(isa["supported"]) <= set(isa["compiled"])
    assert isa["active"] in isa["supported"]
    if os.environ.get("ATROUS_CPU_ISA") in (None, "", "auto"):
        assert isa["reason"] == "best this CPU supports"
        assert isa["active"] == isa["supported"][-1]  # listed best last
    machine = os.uname().machine
    if machine in ("x86_64", "AMD64"):
        assert set(isa["compiled"]) == X86
    elif machine in ("aarch64", "arm64"):
        assert set(isa["compiled"]) == {"generic", "neon"}


@pytest.mark.parametrize("name", ["generic", "avx2", "avx512", "neon"])
def test_environment_variable_forces_a_path(name):
    isa = buildinfo.cpu_isa()
    if name not in isa["supported"]:
        pytest.skip(f"this CPU cannot run the {name} path (it runs {isa['supported']})")
    result = _python("import torch, atrous._C as C, json; print(json.dumps(C.cpu_isa()))", isa=name)
    assert result.returncode == 0, result.stderr
    assert f'"active": "{name}"' in result.stdout
    assert f'"reason": "ATROUS_CPU_ISA={name}"' in result.stdout


def test_environment_variable_naming_an_unknown_path_fails_in_one_line():
    result = _python("import torch, atrous._C", isa="sse9")
    assert result.returncode != 0
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith("RuntimeError: ATROUS_CPU_ISA=sse9: unknown instruction set"), result.stderr


def test_environment_variable_naming_a_path_this_cpu_cannot_run_fails_in_one_line():
    isa = buildinfo.cpu_isa()
    missing = [n for n in isa["compiled"] if n not in isa["supported"]]
    if not missing:
        pytest.skip(f"this CPU runs every compiled path ({isa['compiled']})")
    result = _python("import torch, atrous._C", isa=missing[0])
    last = result.stderr.strip().splitlines()[-1]
    assert last.startswith(f"RuntimeError: ATROUS_CPU_ISA={missing[0]}: this CPU cannot run"), result.stderr
    # `python -m atrous.info` says the same in one line, exit status 2.
    info = subprocess.run([sys.executable, "-m", "atrous.info"], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYTHONPATH": ROOT, "ATROUS_CPU_ISA": missing[0]}, timeout=300)
    assert info.returncode == 2
    assert info.stderr.strip().splitlines() == [f"atrous info: {last.removeprefix('RuntimeError: ')}"]


def test_set_cpu_isa_switches_the_kernels_and_rejects_what_the_cpu_cannot_run():
    ext = _extension.load()
    before = buildinfo.cpu_isa()
    x = torch.randn(2, 40, 17, 19, dtype=torch.float64)
    w = torch.randn(40, 1, 3, 3, dtype=torch.float64)
    expected = F.conv2d(x, w, None, 1, 2, 2, 40)
    try:
        for name in before["supported"]:
            ext._set_cpu_isa(name)
            assert buildinfo.cpu_isa()["active"] == name
            assert buildinfo.cpu_isa()["reason"] == f"atrous._C._set_cpu_isa('{name}')"
            y = torch.ops.atrous.depthwise_conv2d(x, w, None, [1, 1], [2, 2], [2, 2], "auto")
            torch.testing.assert_close(y, expected)
        with pytest.raises(ValueError, match="_set_cpu_isa=sse9: unknown instruction set"):
            ext._set_cpu_isa("sse9")
    finally:
        ext._set_cpu_isa(before["active"])


def test_info_prints_the_compiled_paths_and_the_one_in_use():
    result = subprocess.run([sys.executable, "-m", "atrous.info"], capture_output=True, text=True, cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": ROOT, "ATROUS_CPU_ISA": "generic"}, timeout=300)
    assert result.returncode == 0, result.stderr
    compiled = ", ".join(buildinfo.cpu_isa()["compiled"])
    assert f"CPU ISA      compiled: {compiled};" in result.stdout
    assert "CPU ISA used generic (ATROUS_CPU_ISA=generic;" in result.stdout


# Registers and encodings beyond the x86-64 baseline (SSE2): VEX/EVEX instructions ("v..."),
# ymm/zmm registers, the AVX-512 mask registers and xmm16-31.
_AVX512_ONLY = re.compile(r"%zmm|%k[0-7]\b|%[xy]mm(1[6-9]|2[0-9]|3[01])\b")


def _disassemble_functions(path):
    """{function name: [instruction lines]} of the library's text, by objdump."""
    out = subprocess.run(["objdump", "-d", "--no-show-raw-insn", "-C", path], capture_output=True, text=True,
                         check=True, timeout=300).stdout
    functions, name = {}, None
    for line in out.splitlines():
        match = re.match(r"^[0-9a-f]+ <(.*)>:$", line)
        if match:
            name = match.group(1)
            functions.setdefault(name, [])
        elif name is not None and "\t" in line:
            functions[name].append(line.split("\t", 1)[1].strip())
    return functions


def test_no_instruction_beyond_the_baseline_outside_its_isa_unit():
    if os.uname().machine not in ("x86_64", "AMD64"):
        pytest.skip("the disassembly check is written for x86-64")
    if shutil.which("objdump") is None:
        pytest.skip("objdump (binutils) is not installed")
    flags = buildinfo.build_config().get("cxx_flags", [])
    if any(f.startswith(("-march", "-mcpu")) for f in flags):
        pytest.skip(f"this build was made for one CPU on purpose (ATROUS_CPU_ARCH): {flags}")
    functions = _disassemble_functions(_extension.load().__file__)
    wide = {"isa_avx2": 0, "isa_avx512": 0}
    for name, instructions in functions.items():
        unit = "isa_avx512" if "isa_avx512::" in name else "isa_avx2" if "isa_avx2::" in name else None
        for ins in instructions:
            mnemonic = ins.split()[0] if ins.split() else ""
            beyond_baseline = mnemonic.startswith("v") or "%ymm" in ins or _AVX512_ONLY.search(ins)
            if unit is None:
                assert not beyond_baseline, f"{name} (baseline code) uses '{ins}'"
            elif unit == "isa_avx2":
                assert not _AVX512_ONLY.search(ins), f"{name} (the AVX2 unit) uses '{ins}'"
            if unit is not None and beyond_baseline:
                wide[unit] += 1
    # The units really are compiled for their sets (the target regions took effect).
    assert wide["isa_avx2"] > 100 and wide["isa_avx512"] > 100, wide
    assert any("%zmm" in ins for name, body in functions.items() if "isa_avx512::" in name for ins in body)
