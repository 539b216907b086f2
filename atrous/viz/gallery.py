"""The gallery: every teaching figure written into one folder with a captioned HTML page, so an
instructor can pick slides from it (``python -m atrous gallery --out DIR``)."""

from __future__ import annotations

import html
import os
import warnings
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch

from .. import receptive_field as rfm
from ..data import ContextShapes
from ..models import get_model
from .common import sample_image_tensor
from .diagrams import plot_aspp_diagram, plot_deeplab_diagram
from .erf_plots import plot_erf, plot_measured_rf
from .kernels import animate_dilated_conv, plot_dilated_kernel
from .lecture import (
    plot_gridding_outputs,
    plot_output_strides,
    plot_rates_on_photo,
    plot_rf_tower,
    plot_separable_conv,
)
from .rf_growth import plot_rf_growth
from .rf_pictures import teaching_erfs
from .rf_plots import plot_aspp_coverage, plot_gridding
from .samples import plot_context_shapes

__all__ = ["GALLERY", "GalleryItem", "write_gallery"]


@dataclass(frozen=True)
class GalleryItem:
    """One figure: its file name, the caption under it, the notebook topic that teaches it, and how to
    draw it (a function of the output path)."""

    filename: str
    caption: str
    topic: str
    draw: Callable[[Path], object]


def _small(output_stride: int = 16):
    torch.manual_seed(0)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the gallery's small inputs put large rates beyond the map
        return get_model("deeplabv3plus_small", num_classes=4, output_stride=output_stride)


def _quiet(draw: Callable[[Path], object]) -> Callable[[Path], object]:
    def run(path: Path):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            return draw(path)
    return run


def _erf_photo(path: Path):
    x, img = sample_image_tensor(65)
    erfs = {name: rfm.effective_receptive_field(rfm.seeded_stack(name), x) for name in ("atrous", "aspp")}
    return plot_erf(erfs, image=img, path=path)


def _measured(path: Path):
    model = rfm.seeded_stack("atrous")
    measured = rfm.measure_receptive_field(model, 41, position=(0, 0))
    return plot_measured_rf(measured, rfm.receptive_field(model, 41), path=path)


def _growth_os(path: Path):
    return plot_rf_growth({f"OS {o}": _small(o) for o in (32, 16, 8)}, input_size=65, path=path)


GALLERY: tuple[GalleryItem, ...] = (
    GalleryItem("dilated_kernel.png", "A 3x3 kernel at rates 1, 2, 3: nine taps, a span of "
                "k + (k-1)(d-1) pixels.", "01 atrous by hand", lambda p: plot_dilated_kernel(path=p)),
    GalleryItem("dilated_conv.gif", "The dilated kernel sliding over a padded input (same padding: the "
                "output keeps the input's size).", "01 atrous by hand",
                lambda p: animate_dilated_conv(path=p)),
    GalleryItem("dilated_conv_nopad.gif", "The same without padding: the output shrinks by k_eff - 1.",
                "01 atrous by hand", lambda p: animate_dilated_conv(input_size=7, padding=0, path=p)),
    GalleryItem("rates_on_photo.png", "Rates 1, 2, 4 over the same real image patch.", "01 atrous by hand",
                lambda p: plot_rates_on_photo(path=p)),
    GalleryItem("rf_tower.png", "The 1-D receptive field of one output, layer by layer: plain, strided, "
                "atrous and equal-rate (gridding) stacks.", "02 receptive fields",
                lambda p: plot_rf_tower(path=p)),
    GalleryItem("rf_growth.png", "RF and jump along the path to the output for the plain, strided and atrous "
                "teaching stacks.", "02 receptive fields", lambda p: plot_rf_growth(path=p)),
    GalleryItem("rf_growth_aspp.png", "A toy DeepLabV3: ASPP branches as separate markers beside the path, "
                "never joined into one line.", "10 ASPP",
                lambda p: plot_rf_growth({"aspp": rfm.seeded_stack("aspp")}, path=p)),
    GalleryItem("rf_growth_os.png", "The small DeepLabV3+ at output strides 32, 16 and 8.",
                "09 Xception and output stride", _quiet(_growth_os)),
    GalleryItem("gridding.png", "Which input pixels reach one output: equal rates leave holes.",
                "02 receptive fields", lambda p: plot_gridding(path=p)),
    GalleryItem("gridding_outputs.png", "Gridding in actual outputs: the response to one bright pixel.",
                "07 dense atrous", lambda p: plot_gridding_outputs(path=p)),
    GalleryItem("measured_rf.png", "The measured RF of a corner output against the analysis.",
                "02 receptive fields", _measured),
    GalleryItem("erf_stacks.png", "Effective receptive fields of four teaching stacks on one colour scale.",
                "02 receptive fields", lambda p: plot_erf(teaching_erfs(), path=p)),
    GalleryItem("erf_photo.png", "ERFs computed on the sample photo, shown beside it.", "02 receptive fields",
                _erf_photo),
    GalleryItem("aspp_coverage.png", "Where the ASPP branches of the central output sample the image at "
                "output strides 16 and 8.", "10 ASPP", lambda p: plot_aspp_coverage(image_size=257, path=p)),
    GalleryItem("separable_conv.png", "Atrous depthwise-separable convolution: per-channel 3x3, then 1x1 "
                "mixing.", "06 GEMM and separable", lambda p: plot_separable_conv(path=p)),
    GalleryItem("aspp_diagram.png", "ASPP as built, shapes recorded from the model by forward hooks.",
                "10 ASPP", _quiet(lambda p: plot_aspp_diagram(_small(), 129, path=p))),
    GalleryItem("deeplab_diagram.png", "The DeepLabV3+ encoder-decoder as built, with the shape on every "
                "arrow.", "11 decoder and training",
                _quiet(lambda p: plot_deeplab_diagram(_small(), 129, path=p))),
    GalleryItem("output_strides.png", "Feature grids and predictions at output strides 32, 16, 8 "
                "(untrained weights: the grid sizes are the lesson).", "09 Xception and output stride",
                _quiet(lambda p: plot_output_strides({f"OS {o}": _small(o) for o in (32, 16, 8)}, path=p))),
    GalleryItem("context_shapes.png", "ContextShapes samples: classes, depth and the three size classes.",
                "11 decoder and training",
                lambda p: plot_context_shapes(ContextShapes(4, 96, seed=0), 3, path=p)),
)

_SCRIPT = """<script>
window.addEventListener("load", () => {
  const imgs = Array.from(document.images);
  const ok = imgs.filter((i) => i.complete && i.naturalWidth > 0).length;
  document.body.setAttribute("data-images", String(imgs.length));
  document.body.setAttribute("data-images-ok", String(ok));
});
</script>"""


def write_gallery(out: str | os.PathLike, items: tuple[GalleryItem, ...] = GALLERY,
                  echo: Callable[[str], object] = lambda _: None) -> Path:
    """Draw every item into ``out`` and write ``out/index.html``: one figure per section with its caption
    and topic. On load the page records how many images decoded (``data-images-ok`` on the body), which
    the browser test reads. Returns the page's path."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    sections = []
    for item in items:
        echo(f"  {item.filename}")
        item.draw(out / item.filename)
        sections.append(
            f'<figure id="{html.escape(Path(item.filename).stem)}">\n'
            f'  <img src="{html.escape(item.filename)}" alt="{html.escape(item.caption)}">\n'
            f"  <figcaption><b>{html.escape(item.filename)}</b> ({html.escape(item.topic)}): "
            f"{html.escape(item.caption)}</figcaption>\n</figure>")
    page = out / "index.html"
    page.write_text(
        "<!doctype html>\n<html lang=\"en\">\n<head><meta charset=\"utf-8\"><title>atrous gallery</title>\n"
        "<style>body{font-family:sans-serif;max-width:1100px;margin:auto}img{max-width:100%}"
        "figure{margin:2em 0;border-bottom:1px solid #ddd}</style></head>\n<body>\n"
        "<h1>atrous: the teaching figures</h1>\n"
        f"<p>{len(items)} figures, each with the notebook topic that teaches it. Regenerate with "
        "<code>python -m atrous gallery --out DIR</code> or <code>make gallery</code>.</p>\n"
        + "\n".join(sections) + "\n" + _SCRIPT + "\n</body>\n</html>\n")
    return page
