"""The property tests of the CPU kernels run once per instruction set this machine can execute."""

import pytest

from atrous import _extension, buildinfo

# The modules whose tests compare every op with PyTorch: they run on each CPU path (AVX-512, AVX2,
# generic, NEON) that this CPU supports, switched at run time through atrous._C._set_cpu_isa.
PER_ISA_MODULES = {"test_depthwise_conv2d", "test_pointwise_conv2d", "test_atrous_conv2d",
                   "test_separable_conv2d", "test_autograd"}


def pytest_generate_tests(metafunc):
    if "cpu_isa" in metafunc.fixturenames and metafunc.module.__name__.rsplit(".", 1)[-1] in PER_ISA_MODULES:
        isas = buildinfo.cpu_isa()["supported"]
        metafunc.parametrize("cpu_isa", isas, indirect=True, ids=[f"isa={i}" for i in isas], scope="module")


@pytest.fixture(scope="module", autouse=True)
def cpu_isa(request):
    """The instruction set the CPU kernels use for this module's tests (parametrised above);
    restores the previous one afterwards."""
    name = getattr(request, "param", None)
    if name is None:  # a module that is not run per instruction set
        yield None
        return
    ext = _extension.load()
    before = ext.cpu_isa()["active"]
    ext._set_cpu_isa(name)
    yield name
    ext._set_cpu_isa(before)
