"""The shared arithmetic: `_pair` (ops, reference and analysis) and its independence from atrous."""

import ast
import subprocess
import sys

import numpy as np
import pytest
import torch

from atrous import reference
from atrous.receptive_field.arithmetic import _pair, conv_output_size

from helpers.paths import ROOT


def test_arithmetic_imports_nothing_from_atrous():
    tree = ast.parse((ROOT / "atrous" / "receptive_field" / "arithmetic.py").read_text())
    modules = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            modules |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom):
            assert node.level == 0, f"relative import of {node.module}"
            modules.add(node.module.split(".")[0])
    allowed = set(sys.stdlib_module_names) | {"numpy", "torch"}  # never atrous: every layer imports it
    assert modules <= allowed, modules - allowed


MODULES = ("atrous.receptive_field.arithmetic", "atrous.ops", "atrous.receptive_field", "atrous.viz")


@pytest.mark.parametrize("first", [*MODULES, "atrous.reference"])
def test_import_order_does_not_matter(first):
    # the ops import the arithmetic from inside the receptive_field package: no cycle, whichever comes first
    modules = [first] + [m for m in MODULES if m != first]
    code = "import " + ", ".join(modules)
    subprocess.run([sys.executable, "-c", code], check=True, cwd=ROOT, timeout=120)


@pytest.mark.parametrize("value,expected", [
    (3, (3, 3)), ((2, 5), (2, 5)), ([1, 4], (1, 4)), (torch.Size([7, 8]), (7, 8)),
    (np.int64(2), (2, 2)), ((np.int32(3), 4), (3, 4)),
])
def test_pair_accepts_ints_and_pairs(value, expected):
    got = _pair(value, "stride")
    assert got == expected and all(type(v) is int for v in got)


@pytest.mark.parametrize("value", [True, (1, True), 1.5, (1, 2, 3), "same", (1.0, 2.0), None])
def test_pair_errors_name_the_argument(value):
    with pytest.raises(ValueError, match=r"^stride must be an int or a pair of ints, got "):
        _pair(value, "stride")
    message = r"^atrous_conv2d: expected stride to be an int or a pair of ints, got "
    with pytest.raises(TypeError, match=message):
        _pair(value, "stride", "atrous_conv2d")


@pytest.mark.parametrize("size,k,s,p,d", [(33, 3, 1, 6, 6), (513, 3, 2, 1, 1), (8, 2, 3, 1, 3),
                                         (5, 3, 1, 0, 2)])
def test_reference_output_size_is_the_arithmetic(size, k, s, p, d):
    x, w = torch.zeros(1, 1, size, size), torch.zeros(1, 1, k, k)
    expected = torch.nn.functional.conv2d(x, w, stride=s, padding=p, dilation=d).shape[-1]
    assert reference.output_size(size, k, s, p, d) == conv_output_size(size, k, s, p, d) == expected
