"""Receptive fields of convolutional networks: exact theory with dilation, gradient measurement, effective RF.

Modules, bottom up (each imports only those above it in this list):

* ``arithmetic``: closed forms along one axis (``effective_kernel_size``, ``conv_output_size``,
  ``AxisRF``, ``compose``, ``union``); imports nothing from atrous, so the ops use it too;
* ``report``: ``LayerRF`` rows, the ``ReceptiveFieldReport``, ``input_box``, ``format_table``;
* ``taps``, ``inputs``, ``handlers``, ``tracer``: ``receptive_field(model, input_size)`` traces any
  ``nn.Module`` (see its docstring for what it understands);
* ``measurement``: ``measure_receptive_field(s)`` from gradients, the cross-check of the analysis;
* ``effective``: ``effective_receptive_field`` (Luo et al., 2016);
* ``teaching``: ``Parallel``, ``ImagePooling`` and the teaching stacks; ``loading``: models by name or
  by ``package.module:attr``.

The theoretical numbers are *unclipped* (an endless image); ``input_box_clipped`` gives the exact
bounding box of the pixels that influence an output, which is what a gradient measures.
"""

from .arithmetic import AxisRF, compose, conv_output_size, effective_kernel_size, union
from .effective import ERF_OBJECTIVES, EffectiveRF, EmptyERFWarning, effective_receptive_field
from .inputs import infer_in_channels
from .loading import model_from_spec
from .measurement import (
    MeasuredRF,
    RFComparison,
    compare_with_measurement,
    measure_receptive_field,
    measure_receptive_fields,
)
from .report import (
    Box,
    LayerRF,
    ReceptiveFieldReport,
    UnsupportedModelError,
    format_table,
    input_box,
    input_box_clipped,
)
from .teaching import (
    TEACHING_STACKS,
    ImagePooling,
    LayerSpec,
    Parallel,
    aspp_stack,
    atrous_stack,
    conv_stack,
    gridding_stack,
    hybrid_stack,
    multigrid_stack,
    plain_stack,
    seeded_stack,
    strided_stack,
)
from .tracer import receptive_field

__all__ = [
    "ERF_OBJECTIVES",
    "TEACHING_STACKS",
    "AxisRF",
    "Box",
    "EffectiveRF",
    "EmptyERFWarning",
    "ImagePooling",
    "LayerRF",
    "LayerSpec",
    "MeasuredRF",
    "Parallel",
    "RFComparison",
    "ReceptiveFieldReport",
    "UnsupportedModelError",
    "aspp_stack",
    "atrous_stack",
    "compare_with_measurement",
    "compose",
    "conv_output_size",
    "conv_stack",
    "effective_kernel_size",
    "effective_receptive_field",
    "format_table",
    "gridding_stack",
    "hybrid_stack",
    "infer_in_channels",
    "input_box",
    "input_box_clipped",
    "measure_receptive_field",
    "measure_receptive_fields",
    "model_from_spec",
    "multigrid_stack",
    "plain_stack",
    "receptive_field",
    "seeded_stack",
    "strided_stack",
    "union",
]
