"""atrous.training: the loss falls, resume replays the same steps, the config mirrors the CLI, checkpoints."""

import argparse
import dataclasses
import json

import pytest
import torch

from atrous.cli import train as train_cli
from atrous.data.palettes import CONTEXT_SHAPES_PALETTE
from atrous.training import (
    PRESETS,
    ShardedBatchSampler,
    TrainConfig,
    add_config_arguments,
    build_model,
    config_from_args,
    convert_sync_batchnorm,
    load_checkpoint,
    load_model,
    poly_lr,
    predict,
    train,
)
from atrous.training.distributed import GlooSyncBatchNorm2d

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

# 48x48 images at output stride 8: 6x6 feature maps, about 20 ms a step with one thread.
TINY = dict(image_size=48, train_size=16, val_size=4, batch_size=4, epochs=2, progress=False)


def test_a_few_steps_lower_the_loss(tmp_path):
    # The same 8 images every step (one batch, no flips): plain SGD must fit them.
    result = train(TrainConfig(**{**TINY, "train_size": 8, "batch_size": 8, "epochs": 8, "flip": False,
                                  "lr": 0.05, "dropout": 0.0, "out": str(tmp_path)}))
    losses = [loss for _, loss, _ in result.losses]
    assert len(losses) == 8 and result.step == 8
    assert losses[-1] < 0.6 * losses[0], losses
    assert [h["epoch"] for h in result.history] == list(range(1, 9))
    assert all(0 <= h["miou"] <= 1 for h in result.history)  # validation every epoch
    assert json.loads((tmp_path / "history.json").read_text())[-1]["step"] == 8


def test_resume_continues_from_the_saved_step(tmp_path):
    """Stopped after step 3 of 8 (inside epoch 1 of 2) and resumed: the same losses, learning rates and
    final weights, bit for bit, as the run that never stopped."""
    full = train(TrainConfig(**TINY, out=str(tmp_path / "full")))
    part = train(TrainConfig(**TINY, out=str(tmp_path / "part"), stop_after=3))
    assert part.step == 3 and len(part.losses) == 3
    saved = load_checkpoint(tmp_path / "part" / "last.pt")
    assert saved["step"] == 3 and saved["optimizer"]["state"]  # momentum buffers are in it
    resumed = train(TrainConfig(**TINY, out=str(tmp_path / "part"), resume="auto"))
    assert resumed.step == 8
    assert resumed.losses == full.losses  # steps 1-3 from the checkpoint, 4-8 recomputed
    a, b = full.model.state_dict(), resumed.model.state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    with pytest.raises(ValueError, match="same --batch-size"):
        train(TrainConfig(**{**TINY, "batch_size": 8}, out=str(tmp_path / "x"),
                          resume=str(tmp_path / "part" / "last.pt")))


def test_checkpoint_rebuilds_the_model_with_its_classes(tmp_path):
    result = train(TrainConfig(**{**TINY, "epochs": 1}, output_stride=16, dilated=False, out=str(tmp_path)))
    model, state = load_model(tmp_path / "best.pt")
    assert state["model_spec"] == {"name": "deeplabv3plus_small", "num_classes": 4, "output_stride": 16,
                                   "dilated": False, "kwargs": {}}
    assert state["dataset"]["classes"] == ["background", "red", "green", "blue"]
    assert state["dataset"]["palette"] == CONTEXT_SHAPES_PALETTE.tolist()  # the colour-blind-safe classes
    assert all(m.dilation == (1, 1) for m in model.modules() if isinstance(m, torch.nn.Conv2d))
    x = torch.randn(1, 3, 48, 48)
    # the same weights; the trained copy is channels_last, so other kernels round differently
    assert torch.allclose(model(x), result.model.eval()(x), atol=1e-5)
    with pytest.raises(ValueError, match="not a readable torch checkpoint"):
        (tmp_path / "junk.pt").write_text("junk")
        load_checkpoint(tmp_path / "junk.pt")
    with pytest.raises(FileNotFoundError, match="no checkpoint file"):
        load_checkpoint(tmp_path / "none.pt")


def test_poly_learning_rate_by_hand():
    assert poly_lr(0.1, 0, 100) == 0.1
    assert poly_lr(0.1, 50, 100, 0.9) == pytest.approx(0.1 * 0.5**0.9)  # 0.05359
    assert poly_lr(0.1, 100, 100) == 0.0


def test_every_config_field_is_a_flag_and_presets_layer_under_flags():
    parser = argparse.ArgumentParser()
    add_config_arguments(parser)
    flags = {a.dest for a in parser._actions}
    assert {f.name for f in dataclasses.fields(TrainConfig)} <= flags
    args = parser.parse_args(["--preset", "demo", "--epochs", "2", "--no-flip", "--dropout", "0.3"])
    config = config_from_args(args)
    assert config.epochs == 2 and config.flip is False and config.dropout == 0.3
    assert config.out == PRESETS["demo"]["out"] and config.model == "deeplabv3plus_small"
    assert config_from_args(parser.parse_args([])) == TrainConfig()
    with pytest.raises(ValueError, match="batch_size"):
        TrainConfig(batch_size=0)
    with pytest.raises(ValueError, match="eval_scales"):
        TrainConfig(eval_scales="1,x")


def test_sharded_batches_do_not_depend_on_the_number_of_processes():
    one = ShardedBatchSampler(22, 4, seed=3)
    two = [ShardedBatchSampler(22, 4, num_replicas=2, rank=r, seed=3) for r in range(2)]
    for epoch in (0, 1):
        one.set_epoch(epoch)
        for s in two:
            s.set_epoch(epoch)
        steps = list(one)
        assert len(steps) == 5 and len({i for b in steps for i in b}) == 20  # 22 // 4 full batches
        assert [a + b for a, b in zip(*[list(s) for s in two])] == steps
    one.set_epoch(1, start_step=2)
    assert len(one) == 3 and list(one) == steps[2:]
    with pytest.raises(ValueError, match="divisible"):
        ShardedBatchSampler(22, 3, num_replicas=2)


def test_sync_batchnorm_conversion_keeps_weights_and_alone_is_batchnorm():
    torch.manual_seed(0)
    model = build_model({"name": "deeplabv3plus_small", "num_classes": 3, "output_stride": 16}).train()
    reference = build_model({"name": "deeplabv3plus_small", "num_classes": 3, "output_stride": 16}).train()
    reference.load_state_dict(model.state_dict())
    bn_count = sum(isinstance(m, torch.nn.BatchNorm2d) for m in model.modules())
    converted = convert_sync_batchnorm(model)
    syncs = [m for m in converted.modules() if isinstance(m, GlooSyncBatchNorm2d)]
    assert len(syncs) == bn_count > 20
    assert converted.state_dict().keys() == reference.state_dict().keys()
    x = torch.randn(2, 3, 40, 40)
    torch.manual_seed(1)
    y = converted(x)
    torch.manual_seed(1)
    assert torch.allclose(y, reference(x), atol=1e-6)  # without a process group: plain BatchNorm


def test_predict_averages_probabilities_over_scales_and_flips():
    class LeftRight(torch.nn.Module):  # class 1 on the left half of the input, class 0 on the right
        def forward(self, x):
            left = (torch.arange(x.shape[-1]) < x.shape[-1] // 2).float()
            logits = torch.stack([1 - left, left])[None, :, None, :].expand(x.shape[0], 2, x.shape[-2], -1)
            return 20 * logits  # (N, 2, H, W), near one-hot

    x = torch.zeros(1, 3, 4, 8)
    p = predict(LeftRight(), x)
    assert p[0, 1, :, :4].min() > 0.99 and p[0, 1, :, 4:].max() < 0.01
    flipped = predict(LeftRight(), x, flip=True)  # the mirror votes for the other half: 50/50 everywhere
    assert torch.allclose(flipped, torch.full_like(flipped, 0.5), atol=1e-6)
    multi = predict(LeftRight(), x, scales=(0.5, 1.0, 2.0))
    assert multi.shape == (1, 2, 4, 8) and torch.allclose(multi.sum(1), torch.ones(1, 4, 8))


def test_train_command_end_to_end_with_pictures(tmp_path, capsys):
    import matplotlib

    matplotlib.use("Agg")
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    argv = ["--image-size", "48", "--train-size", "8", "--val-size", "4", "--batch-size", "4",
            "--epochs", "1", "--no-progress", "--pictures", "--out", str(tmp_path)]
    assert train_cli.main(parser.parse_args(argv)) == 0
    out = capsys.readouterr().out
    assert "validation mIoU" in out and f"wrote {tmp_path / 'predictions.png'}" in out
    for name in ("last.pt", "best.pt", "history.json", "predictions.png", "erf.png", "overlays/val_0.png"):
        assert (tmp_path / name).stat().st_size > 0, name
    assert train_cli.main(parser.parse_args(["--dataset", "voc", "--data-root", str(tmp_path / "none")])) == 2
    assert "is not a folder" in capsys.readouterr().err


def test_evaluate_counts_every_pixel_once():
    from atrous.data import ContextShapes
    from atrous.training import evaluate

    class Background(torch.nn.Module):  # predicts class 0 everywhere
        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(()))

        def forward(self, x):
            ones = torch.ones(x.shape[0], 1, *x.shape[-2:])
            return torch.nn.functional.pad(ones, (0, 0, 0, 0, 0, 3)) + self.w

    ds = ContextShapes(5, 40, seed=2)
    cm = evaluate(Background(), ds, 4, batch_size=2)
    counts = torch.bincount(torch.stack([ds[i]["mask"] for i in range(5)]).flatten(), minlength=4)
    assert torch.equal(cm.matrix[:, 0], counts) and cm.matrix[:, 1:].sum() == 0
    assert cm.scores().miou == pytest.approx(counts[0].item() / counts.sum().item() / 4)


def test_progress_bar_shows_loss_and_learning_rate(tmp_path, monkeypatch):
    """Each step updates a tqdm bar (one per epoch) whose postfix carries the running loss and the lr."""
    import tqdm.auto

    bars = []

    class Recorder:
        def __init__(self, **kw):
            self.kw, self.postfixes, self.updates = kw, [], 0
            bars.append(self)

        def set_postfix(self, **kw):
            self.postfixes.append(kw)

        def update(self, n=1):
            self.updates += n

        def close(self):
            pass

    monkeypatch.setattr(tqdm.auto, "tqdm", Recorder)
    result = train(TrainConfig(**{**TINY, "progress": True, "out": str(tmp_path)}))
    assert [b.kw["desc"] for b in bars] == ["epoch 1/2", "epoch 2/2"] and not bars[0].kw["disable"]
    assert sum(b.updates for b in bars) == result.step == 8
    last = bars[-1].postfixes[-1]
    assert float(last["lr"]) == pytest.approx(result.losses[-1][2], rel=1e-2)
    epoch_losses = [loss for _, loss, _ in result.losses[4:]]
    assert float(last["loss"]) == pytest.approx(sum(epoch_losses) / len(epoch_losses), abs=1e-4)
