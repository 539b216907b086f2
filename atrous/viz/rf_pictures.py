"""The pictures of the `rf` command: one model's RF growth, measured RF and ERF; the teaching set."""

from __future__ import annotations

import os
import re
from pathlib import Path

from torch import nn

from .. import receptive_field as rfm
from .common import sample_image_tensor
from .erf_plots import plot_erf, plot_measured_rf
from .kernels import animate_dilated_conv, plot_dilated_kernel
from .rf_growth import plot_rf_growth
from .rf_plots import plot_aspp_coverage, plot_gridding

__all__ = ["model_pictures", "teaching_erfs", "teaching_pictures"]


def model_pictures(
    model: nn.Module,
    report: rfm.ReceptiveFieldReport,
    out: str | os.PathLike,
    name: str,
    *,
    measured: rfm.MeasuredRF | None = None,
    photo: bool = True,
    erf_samples: int = 4,
    in_channels: int | None = None,
) -> list[Path]:
    """Write ``OUT/NAME_growth.png`` (RF and jump along the output's path), ``NAME_measured.png`` (when
    ``measured`` is given) and ``NAME_erf.png``: the ERF over the sample photo (``photo``, 3 channels)
    or over ``erf_samples`` random images. ``name`` is made file-safe; returns the paths written."""
    out = Path(out)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name)
    written = [out / f"{stem}_growth.png"]
    plot_rf_growth({name: report}, path=written[-1])
    if measured is not None:
        written.append(out / f"{stem}_measured.png")
        plot_measured_rf(measured, report, path=written[-1])
    if photo:
        x, img = sample_image_tensor(report.input_size)
        erf = rfm.effective_receptive_field(model, x)
    else:
        img = None
        erf = rfm.effective_receptive_field(model, input_size=report.input_size, samples=erf_samples,
                                            in_channels=in_channels)
    written.append(out / f"{stem}_erf.png")
    plot_erf({name: erf}, image=img, path=written[-1])
    return written


def teaching_erfs(names=("plain", "strided", "atrous", "hybrid"), input_size: int = 81, samples: int = 16,
                  seed: int = 0) -> dict[str, rfm.EffectiveRF]:
    """The ERFs of teaching stacks (16 channels, weights from ``seed``) averaged over ``samples`` random
    images: reproducible, and wide enough that no map comes out empty."""
    return {name: rfm.effective_receptive_field(rfm.seeded_stack(name, seed), input_size=input_size,
                                                samples=samples, seed=seed) for name in names}


def teaching_pictures(out: str | os.PathLike) -> list[Path]:
    """Write the general pictures into ``out``: dilated kernels (PNG, and GIFs with and without padding),
    RF growth, gridding, ASPP coverage and the ERFs of the plain, strided, atrous and hybrid teaching
    stacks (seeded, 16 channels, 16 samples)."""
    out = Path(out)
    paths = {name: out / name for name in ("dilated_kernel.png", "dilated_conv.gif", "dilated_conv_nopad.gif",
                                           "rf_growth.png", "gridding.png", "aspp_coverage.png",
                                           "erf_stacks.png")}
    plot_dilated_kernel(path=paths["dilated_kernel.png"])
    animate_dilated_conv(path=paths["dilated_conv.gif"])
    animate_dilated_conv(input_size=7, padding=0, path=paths["dilated_conv_nopad.gif"])
    plot_rf_growth(path=paths["rf_growth.png"])
    plot_gridding(path=paths["gridding.png"])
    plot_aspp_coverage(path=paths["aspp_coverage.png"])
    erfs = teaching_erfs()
    plot_erf(erfs, path=paths["erf_stacks.png"])
    return list(paths.values())
