"""When does atrous convolution help? Three designs behind `python -m atrous experiment --design ...`.

* :mod:`~atrous.experiment.reach` (default): networks of equal size that differ only in rates and
  strides, on data whose label needs context at a controlled distance;
* :mod:`~atrous.experiment.transfer`: a model trained at output stride 32 evaluated at 8, dilated
  (:func:`atrous.models.set_output_stride`) and undilated (:func:`atrous.models.undilate`);
* :mod:`~atrous.experiment.legacy`: the first experiment (three small DeepLabV3+ variants on
  ContextShapes), kept with its confounds listed in the README.
"""

from .legacy import (
    VARIANTS,
    ExperimentRow,
    Variant,
    evaluate_by_size,
    format_seeds_table,
    format_table,
    run_experiment,
    update_readme,
)
from .reach import PREDICTIONS, ReachConfig, format_reach, run_reach
from .stats import paired, sign_test, summary, t_sf

__all__ = ["PREDICTIONS", "VARIANTS", "ExperimentRow", "ReachConfig", "Variant", "evaluate_by_size",
           "format_reach", "format_seeds_table", "format_table", "paired", "run_experiment", "run_reach",
           "sign_test", "summary", "t_sf", "update_readme"]
