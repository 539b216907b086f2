"""`--same-isa ISA`: the benchmark rerun in a subprocess, atrous and PyTorch held to one instruction set.

PyTorch's CPU kernels pick their instruction set at run time (oneDNN for convolutions, MKL for GEMMs,
ATen's own vectorised loops), as atrous's do. On an AVX-512 machine a comparison between our AVX2
path and PyTorch's AVX-512 one says little about a student's AVX2 laptop. These variables, read when
each library starts, restrict both alike; a library reads them once, so a subprocess is needed.
"""

from __future__ import annotations

import dataclasses
import json
import os
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .common import (
    EXIT_ERROR,
    SAME_ISA_MODELS_README_END,
    SAME_ISA_MODELS_README_START,
    SAME_ISA_README_END,
    SAME_ISA_README_START,
    BenchError,
)
from .config import Options, as_options, command_line
from .models import markdown_model_report
from .report import markdown_report, update_readme

__all__ = ["ISA_ENV", "ISAS", "child_arguments", "run_same_isa", "same_isa_markdown"]

# The values each library takes: oneDNN's ONEDNN_MAX_CPU_ISA, MKL's MKL_ENABLE_INSTRUCTIONS, ATen's
# ATEN_CPU_CAPABILITY ("default" is its baseline build), and atrous's ATROUS_CPU_ISA.
ISA_ENV: dict[str, dict[str, str]] = {
    "avx512": {"ATROUS_CPU_ISA": "avx512", "ONEDNN_MAX_CPU_ISA": "AVX512_CORE",
               "MKL_ENABLE_INSTRUCTIONS": "AVX512", "ATEN_CPU_CAPABILITY": "avx512"},
    "avx2": {"ATROUS_CPU_ISA": "avx2", "ONEDNN_MAX_CPU_ISA": "AVX2", "MKL_ENABLE_INSTRUCTIONS": "AVX2",
             "ATEN_CPU_CAPABILITY": "avx2"},
    "generic": {"ATROUS_CPU_ISA": "generic", "ONEDNN_MAX_CPU_ISA": "SSE41",
                "MKL_ENABLE_INSTRUCTIONS": "SSE4_2", "ATEN_CPU_CAPABILITY": "default"},
}
ISAS = tuple(ISA_ENV)


def child_arguments(options: Options, out: Path) -> list[str]:
    """The `python -m atrous bench` arguments of the subprocess: every option that differs from its
    default, less --same-isa and --update-readme (the parent writes the README), with its own --out."""
    defaults = Options()
    argv = []
    for field in dataclasses.fields(Options):
        value = getattr(options, field.name)
        if field.name in ("same_isa", "update_readme", "out", "list") or value is None \
                or value == getattr(defaults, field.name) or value is False:
            continue
        flag = "--" + field.name.replace("_", "-")
        if value is True:
            argv.append(flag)
        else:
            argv += [flag, value if isinstance(value, str) else
                     ",".join(map(str, value)) if isinstance(value, (list, tuple)) else str(value)]
    return argv + ["--out", str(out)]


def same_isa_markdown(report: dict, isa: str, command: str) -> str:
    """The README block: what was restricted, what the libraries report, then the usual block."""
    env = " ".join(f"`{k}={v}`" for k, v in ISA_ENV[isa].items())
    got = report["machine"].get("isa", {})
    active = got.get("atrous", {}).get("active", "unknown")
    header = (f"Same instruction set, {isa}: both libraries restricted in a subprocess ({env}); ATen "
              f"reports `{got.get('aten', 'unknown')}`, atrous runs `{active}`.")
    body = markdown_model_report(report) if report.get("models") is not None else markdown_report(report)
    return f"{header}\n\n" + body.replace(f"`{report['command']}`", f"`{command}`", 1)


def run_same_isa(options: Any, echo: Callable[[str], None] = print) -> tuple[dict | None, int]:
    """Runs the benchmark of `options` in a subprocess restricted to options.same_isa; echoes its output,
    writes the README block (--update-readme) and returns (its report, its exit status)."""
    o = as_options(options)
    if o.same_isa not in ISA_ENV:
        raise BenchError(f"--same-isa: expected one of {', '.join(ISAS)}, got {o.same_isa!r}")
    if not str(o.device).startswith("cpu"):
        raise BenchError(f"--same-isa: restricts CPU instruction sets; expected --device cpu, "
                         f"got {o.device!r}")
    if o.ladder is not None:
        raise BenchError("--same-isa: compares atrous with PyTorch; expected no --ladder")
    out = Path(o.out) / f"same-isa-{o.same_isa}"
    root = str(Path(__file__).resolve().parents[2])  # the directory holding this atrous package
    env = os.environ | ISA_ENV[o.same_isa]
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH")) if p)
    argv = [sys.executable, "-m", "atrous", "bench", *child_arguments(o, out)]
    echo(f"same ISA ({o.same_isa}): {' '.join(f'{k}={v}' for k, v in ISA_ENV[o.same_isa].items())} "
         f"python -m atrous bench {' '.join(argv[4:])}")
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                          text=True) as child:
        last = ""
        for line in child.stdout:
            line = line.rstrip("\n")
            if line.startswith(("USDT:", "ERROR:")) and ("Profiler" in line or "gpuGetDeviceCount" in line):
                continue  # the profiler's start/stop chatter
            echo(line)
            last = line or last
    if child.returncode == EXIT_ERROR:
        raise BenchError(f"--same-isa {o.same_isa}: the subprocess stopped: {last}")
    stem = "models" if o.models is not None else "bench"
    try:
        report = json.loads((out / f"{stem}.json").read_text())
    except (OSError, ValueError) as exc:
        raise BenchError(f"--same-isa {o.same_isa}: the subprocess wrote no {out / stem}.json "
                         f"(exit status {child.returncode}): {last}") from exc
    report["same_isa"] = {"isa": o.same_isa, "env": ISA_ENV[o.same_isa], "exit_status": child.returncode}
    if o.update_readme:
        start, end = ((SAME_ISA_MODELS_README_START, SAME_ISA_MODELS_README_END) if o.models is not None
                      else (SAME_ISA_README_START, SAME_ISA_README_END))
        update_readme(o.update_readme, same_isa_markdown(report, o.same_isa, command_line(o)), start, end)
        echo(f"updated the same-ISA block of {o.update_readme}")
    return report, child.returncode
