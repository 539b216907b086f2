"""Matplotlib pictures that teach receptive fields: dilated sampling grids, RF growth, gridding, ASPP, ERFs.

Every function builds a ``matplotlib.figure.Figure`` directly (no pyplot, so nothing global to close),
returns it, and saves it when given ``path`` (PNG unless the suffix says otherwise; the animation saves
a GIF through ``matplotlib.animation.PillowWriter``). Modules: ``kernels`` (the dilated kernel and its
animation), ``rf_plots`` (gridding, ASPP coverage), ``rf_pictures`` (the
`rf` command's sets of pictures), ``common`` (saving, the sample photo), ``theme`` (the one style),
``rf_growth``, ``erf_plots``, ``diagrams`` (ASPP and DeepLabV3+ drawn from the model by forward hooks),
``lecture`` (rates on a photo, the 1-D RF tower, the separable conv, output strides, decoder
boundaries, gridding in outputs), ``gallery`` (every figure in one HTML page). Segmentation colouring
(``get_palette``, ``colorize``, ``overlay``) lives with the palettes in :mod:`atrous.data.palettes`
and is re-exported here.
"""

from ..data.palettes import colorize, get_palette, overlay
from .common import load_sample_image, sample_image_tensor
from .diagrams import plot_aspp_diagram, plot_deeplab_diagram, tensor_shapes
from .display import enable_figure_display
from .erf_plots import dim_grey, montage, plot_erf, plot_measured_rf
from .kernels import animate_dilated_conv, plot_dilated_kernel
from .lecture import (
    DEFAULT_TOWERS,
    plot_decoder_boundaries,
    plot_gridding_outputs,
    plot_output_strides,
    plot_rates_on_photo,
    plot_rf_tower,
    plot_separable_conv,
    tower_reach,
)
from .rf_growth import GrowthPath, plot_rf_growth, rf_path
from .rf_pictures import model_pictures, teaching_erfs, teaching_pictures
from .rf_plots import DEFAULT_GRIDDING, plot_aspp_coverage, plot_gridding
from .samples import plot_context_shapes

enable_figure_display()  # in Jupyter, a returned Figure displays as a picture (nothing outside IPython)

__all__ = [
    "DEFAULT_TOWERS",
    "plot_aspp_diagram",
    "plot_deeplab_diagram",
    "plot_context_shapes",
    "plot_decoder_boundaries",
    "plot_gridding_outputs",
    "plot_output_strides",
    "plot_rates_on_photo",
    "plot_rf_tower",
    "plot_separable_conv",
    "tensor_shapes",
    "tower_reach",
    "DEFAULT_GRIDDING",
    "GrowthPath",
    "animate_dilated_conv",
    "colorize",
    "enable_figure_display",
    "dim_grey",
    "get_palette",
    "load_sample_image",
    "model_pictures",
    "montage",
    "overlay",
    "plot_aspp_coverage",
    "plot_dilated_kernel",
    "plot_erf",
    "plot_gridding",
    "plot_measured_rf",
    "plot_rf_growth",
    "rf_path",
    "sample_image_tensor",
    "teaching_erfs",
    "teaching_pictures",
]
