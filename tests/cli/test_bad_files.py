"""Commands that read a file turn a bad one into one line on stderr and exit 2; no checkpoint runs code."""

import os
import pickle
import subprocess
import sys

import numpy as np
import pytest
import torch
from PIL import Image

from atrous import __main__ as atrous_main
from atrous.training import (
    CheckpointError,
    CheckpointNotFoundError,
    ModelSpec,
    build_model,
    load_checkpoint,
    load_model,
    save_checkpoint,
)

from helpers.paths import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

SPEC = ModelSpec("deeplabv3plus_small", num_classes=4, output_stride=16)


class Payload:
    """Unpickling this calls exec(): it writes ``marker``. A safe loader must refuse before that."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return exec, (f"open({self.marker!r}, 'w').write('the payload ran')",)


def _good_checkpoint(path, spec=SPEC):
    torch.manual_seed(0)
    return save_checkpoint(path, model=build_model(spec, impl="torch"), spec=spec,
                           dataset={"classes": ["a", "b", "c", "d"], "mean": [0.5] * 3, "std": [0.25] * 3,
                                    "palette": np.eye(4, 3, dtype=np.uint8) * 200})


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """One file of each bad kind, plus the marker path the payloads would create."""
    d = tmp_path_factory.mktemp("bad_files")
    marker = d / "PAYLOAD_RAN"
    good = _good_checkpoint(d / "good.pt")
    bad = {}
    # A checkpoint-shaped dict whose weights are a code-running object (torch's zip format) ...
    bad["payload"] = d / "payload.pt"
    torch.save({"model": Payload(marker), "model_spec": SPEC.as_dict()}, bad["payload"])
    # ... and the same as a bare pickle (protocol 2: the legacy, non-zip format torch.load also reads).
    bad["payload_pickle"] = d / "payload.pkl"
    bad["payload_pickle"].write_bytes(pickle.dumps(Payload(marker), protocol=2))
    bad["truncated"] = d / "truncated.pt"
    data = good.read_bytes()
    bad["truncated"].write_bytes(data[: len(data) // 2])
    bad["empty"] = d / "empty.pt"
    bad["empty"].write_bytes(b"")
    bad["image"] = d / "image.pt"  # a PNG named .pt: the wrong kind of file
    Image.fromarray(np.zeros((4, 4, 3), np.uint8)).save(bad["image"], format="PNG")
    bad["tensor"] = d / "tensor.pt"  # a torch file, but not a checkpoint
    torch.save(torch.zeros(3), bad["tensor"])
    bad["state_dict"] = d / "state_dict.pt"  # a bare state dict, e.g. downloaded weights
    torch.save(build_model(SPEC, impl="torch").state_dict(), bad["state_dict"])
    # Another model's weights under this spec, and a spec that is not a model.
    other = ModelSpec("deeplabv3plus_small", num_classes=6, output_stride=16)
    state = torch.load(_good_checkpoint(d / "other.pt", other), weights_only=True)
    state["model_spec"] = SPEC.as_dict()
    bad["other_model"] = d / "other_model.pt"
    torch.save(state, bad["other_model"])
    state = torch.load(good, weights_only=True)
    state["model_spec"] = {"name": "deeplabv3plus_small", "num_classes": "four"}
    bad["bad_spec"] = d / "bad_spec.pt"
    torch.save(state, bad["bad_spec"])
    state["model_spec"] = ["not", "a", "dict"]
    bad["spec_list"] = d / "spec_list.pt"
    torch.save(state, bad["spec_list"])
    bad["missing"] = d / "does_not_exist.pt"
    return {"good": good, "marker": marker, "bad": bad, "dir": d}


def _image(tmp_path):
    path = tmp_path / "in.png"
    Image.fromarray(np.full((20, 24, 3), 90, np.uint8)).save(path)
    return path


# The commands that read a file, each as argv for that file. The lead extends this list (eval, export).
FILE_COMMANDS = {
    "segment": lambda f, tmp: ["segment", str(_image(tmp)), "--checkpoint", str(f), "--impl", "torch",
                               "--out", str(tmp / "seg")],
    "train --resume": lambda f, tmp: ["train", "--dataset", "shapes", "--train-size", "4", "--val-size", "2",
                                      "--image-size", "32", "--batch-size", "2", "--epochs", "1",
                                      "--output-stride", "16", "--no-progress", "--impl", "torch",
                                      "--out", str(tmp / "run"), "--resume", str(f)],
    "rf": lambda f, tmp: ["rf", str(f), "--no-pictures", "--no-measure", "--input-size", "33", "33"],
    "eval": lambda f, tmp: ["eval", "--checkpoint", str(f), "--size", "2", "--impl", "torch",
                            "--out", str(tmp / "eval")],
    "export": lambda f, tmp: ["export", "--checkpoint", str(f), "--format", "onnx", "--size", "32", "32",
                              "--out", str(tmp / "model.onnx")],
}

BAD_KINDS = ["payload", "payload_pickle", "truncated", "empty", "image", "tensor", "state_dict",
             "other_model", "bad_spec", "spec_list", "missing"]


# rf reads a path that is not a file as a model name (test_rf_cli covers an unknown MODEL).
CASES = [(c, k) for c in FILE_COMMANDS for k in BAD_KINDS if (c, k) != ("rf", "missing")]


@pytest.mark.parametrize("command, kind", CASES)
def test_bad_file_is_one_line_and_exit_2(command, kind, files, tmp_path, capsys):
    path = files["bad"][kind]
    status = atrous_main.main(FILE_COMMANDS[command](path, tmp_path))
    err = capsys.readouterr().err.strip()
    assert status == 2, err
    lines = [line for line in err.splitlines() if not line.startswith("segment: --random-init")]
    assert len(lines) == 1 and "Traceback" not in err, err
    assert lines[0].startswith(command.split()[0] + ": error: ")
    assert str(path) in lines[0] or repr(str(path)) in lines[0], lines[0]
    assert not files["marker"].exists(), "the payload ran"


def test_payload_is_refused_and_never_runs(files):
    for kind in ("payload", "payload_pickle"):
        with pytest.raises(CheckpointError, match="refused.*nothing from this file was run") as info:
            load_checkpoint(files["bad"][kind])
        assert "\n" not in str(info.value)
    assert not files["marker"].exists()
    # The payload works when unpickled without the guard: the test would catch a loader that runs it.
    pickle.loads(files["bad"]["payload_pickle"].read_bytes())
    assert files["marker"].read_text() == "the payload ran"
    files["marker"].unlink()


@pytest.mark.parametrize("kind, message", [
    ("truncated", "not a readable torch checkpoint"), ("empty", "not a readable torch checkpoint"),
    ("image", "not a readable torch checkpoint"), ("tensor", "expected a checkpoint written by atrous train"),
    ("state_dict", "expected a checkpoint written by atrous train"),
    ("bad_spec", "num_classes must be a positive int"), ("spec_list", "'model_spec' must be a dict"),
])
def test_load_checkpoint_names_what_is_wrong(files, kind, message):
    with pytest.raises(CheckpointError, match=message) as info:
        load_checkpoint(files["bad"][kind])
    assert "\n" not in str(info.value) and str(files["bad"][kind]) in str(info.value)


def test_other_models_weights_and_missing_file(files):
    with pytest.raises(CheckpointError, match="weights do not fit 'deeplabv3plus_small'"):
        load_model(files["bad"]["other_model"])
    with pytest.raises(CheckpointNotFoundError, match="no checkpoint file") as info:
        load_checkpoint(files["bad"]["missing"])
    assert isinstance(info.value, FileNotFoundError) and isinstance(info.value, ValueError)


def test_good_checkpoint_loads_with_plain_metadata(files):
    model, state = load_model(files["good"], impl="torch")
    assert state["dataset"]["palette"][1] == [0, 200, 0]  # numpy saved as plain lists
    assert state["model_spec"] == SPEC.as_dict() and state["step"] == 0
    reference = build_model(SPEC, impl="torch")
    reference.load_state_dict(state["model"])
    x = torch.randn(1, 3, 32, 32)
    assert torch.equal(model(x), reference.eval()(x))


def test_save_refuses_objects_that_would_need_unpickling(tmp_path):
    with pytest.raises(TypeError, match="config holds a Payload"):
        save_checkpoint(tmp_path / "x.pt", model=build_model(SPEC, impl="torch"), spec=SPEC,
                        config={"hook": Payload(tmp_path / "m")})
    assert not (tmp_path / "x.pt").exists()


def test_python_m_atrous_segment_refuses_a_payload(files, tmp_path):
    """The whole path a user takes: a separate process, stderr one line, exit 2, no marker file."""
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-m", "atrous", *FILE_COMMANDS["segment"](files["bad"]["payload"],
                                                                                     tmp_path)],
                          capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.count("\n") == 1 and "refused" in proc.stderr and "Traceback" not in proc.stderr
    assert not files["marker"].exists()


def test_train_resume_with_a_foreign_optimizer_state(files, tmp_path, capsys):
    """The model fits, the optimizer state (another network's) does not: one line, exit 2."""
    state = torch.load(files["good"], weights_only=True)
    state["optimizer"] = {"state": {}, "param_groups": [{"params": [0, 1], "lr": 0.1}]}
    path = tmp_path / "foreign_optimizer.pt"
    torch.save(state, path)
    status = atrous_main.main(FILE_COMMANDS["train --resume"](path, tmp_path))
    err = capsys.readouterr().err.strip()
    assert status == 2 and len(err.splitlines()) == 1, err
    assert err.startswith("train: error: train: checkpoint") and "optimizer state does not fit" in err


def test_rf_reads_a_good_checkpoint(files, tmp_path, capsys):
    assert atrous_main.main(FILE_COMMANDS["rf"](files["good"], tmp_path)) == 0
    out = capsys.readouterr().out
    assert out.splitlines()[0].split()[:4] == ["#", "layer", "op", "params"]
