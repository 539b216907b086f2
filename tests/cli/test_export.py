"""`python -m atrous export`: ONNX (impl="torch") run by onnxruntime; torch.export keeps the atrous ops."""

import pytest
import torch

import atrous.ops  # noqa: F401  (registers torch.ops.atrous, which a reloaded program calls)
from atrous.__main__ import main as atrous_main
from atrous.export import export_program
from atrous.training import ModelSpec, build_model, save_checkpoint

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")


@pytest.fixture
def checkpoint(tmp_path):
    torch.manual_seed(0)
    spec = ModelSpec("deeplabv3plus_small", 4, 16, kwargs={"aux_loss": True})
    model = build_model(spec)
    for m in model.modules():  # non-trivial BN statistics
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    return save_checkpoint(tmp_path / "m.pt", model=model, spec=spec, config={"image_size": 40}), model.eval()


def test_onnx_export_runs_in_onnxruntime_and_matches(tmp_path, checkpoint, capsys):
    pytest.importorskip("onnxscript", reason="onnxscript is a test dependency: pip install onnxscript")
    onnxruntime = pytest.importorskip("onnxruntime", reason="onnxruntime is a test dependency")
    path, model = checkpoint
    out = tmp_path / "m.onnx"
    assert atrous_main(["export", "--checkpoint", str(path), "--format", "onnx", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "impl='torch'" in printed and "onnxruntime" in printed
    # Our own run of the file on another input: logits (N, 4, H, W) equal to the atrous model's.
    x = torch.randn(1, 3, 40, 40, generator=torch.Generator().manual_seed(3))
    session = onnxruntime.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    (got,) = session.run(None, {"image": x.numpy()})
    with torch.no_grad():
        expected = model(x)["out"]
    torch.testing.assert_close(torch.from_numpy(got), expected, rtol=1e-4, atol=1e-4)
    assert all(m.impl != "torch" for m in model.modules() if hasattr(m, "impl"))  # the model is untouched


def test_torch_export_keeps_atrous_ops_and_reloads(tmp_path, checkpoint, capsys):
    path, model = checkpoint
    out = tmp_path / "m.pt2"
    assert atrous_main(["export", "--checkpoint", str(path), "--format", "torch.export", "--size", "33", "45",
                        "--out", str(out)]) == 0
    assert "atrous.depthwise_conv2d" in capsys.readouterr().out
    program = torch.export.load(str(out))
    targets = {str(n.target) for n in program.graph.nodes if n.op == "call_function"}
    assert "atrous.depthwise_conv2d.default" in targets and "atrous.pointwise_conv2d.default" in targets
    x = torch.randn(1, 3, 33, 45)
    with torch.no_grad():
        torch.testing.assert_close(program.module()(x), model(x)["out"])


def test_python_api_and_errors(tmp_path, checkpoint, capsys):
    _, model = checkpoint
    result = export_program(model, tmp_path / "a.pt2", torch.randn(1, 3, 32, 32))
    assert result["max_abs_difference"] == 0.0  # the same kernels, reloaded
    assert set(result["atrous_ops"]) >= {"atrous.depthwise_conv2d", "atrous.pointwise_conv2d"}
    assert atrous_main(["export", "--checkpoint", str(tmp_path / "none.pt"), "--format", "onnx",
                        "--out", str(tmp_path / "x.onnx")]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "no checkpoint file" in err
