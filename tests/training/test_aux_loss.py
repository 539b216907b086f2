"""The auxiliary loss: one argument name (aux_loss), its head trained with weight --aux-loss-weight."""

import argparse

import pytest
import torch
import torch.nn.functional as F

import atrous.models as M
from atrous.cli import train as train_cli
from atrous.training import ModelSpec, TrainConfig, build_model, load_checkpoint, segmentation_loss, train

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

TINY = dict(image_size=48, train_size=8, val_size=4, batch_size=4, epochs=1, progress=False)


def _aux_params(model):
    return {n: p for n, p in model.named_parameters() if n.startswith("aux_classifier.")}


def test_loss_is_main_plus_weighted_aux_and_aux_head_gets_gradients():
    torch.manual_seed(0)
    model = build_model(ModelSpec("deeplabv3plus_small", 4, 16, kwargs={"aux_loss": True}), "torch")
    x, masks = torch.randn(2, 3, 32, 32), torch.randint(0, 4, (2, 32, 32))
    masks[0, :4] = 255  # ignored pixels
    out = model(x)
    assert set(out) == {"out", "aux"}
    loss = segmentation_loss(out, masks, 255, 0.5)
    expected = (F.cross_entropy(out["out"], masks, ignore_index=255, reduction="sum")
                + 0.5 * F.cross_entropy(out["aux"], masks, ignore_index=255, reduction="sum"))
    torch.testing.assert_close(loss, expected)
    loss.backward()
    grads = _aux_params(model)
    assert grads and all(p.grad is not None and p.grad.abs().sum() > 0 for p in grads.values())
    # Weight 0: the aux head gets no gradient, the loss is the main head's alone.
    model.zero_grad(set_to_none=True)
    segmentation_loss(model(x), masks, 255, 0.0).backward()
    assert all(p.grad is None for p in _aux_params(model).values())


def test_training_with_aux_loss_updates_the_aux_head(tmp_path):
    parser = argparse.ArgumentParser()
    train_cli.add_arguments(parser)
    args = parser.parse_args(["--aux-loss", "--aux-loss-weight", "0.4", "--image-size", "48", "--train-size",
                              "8", "--val-size", "4", "--batch-size", "4", "--epochs", "1", "--no-progress",
                              "--impl", "torch", "--out", str(tmp_path)])
    assert train_cli.main(args) == 0
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["model_spec"]["kwargs"] == {"aux_loss": True}
    assert state["config"]["aux_loss_weight"] == 0.4
    torch.manual_seed(0)  # train seeds 0 before building: the initial weights
    initial = build_model(state["model_spec"])
    changed = [n for n, p in _aux_params(initial).items() if not torch.equal(p, state["model"][n])]
    assert len(changed) == len(_aux_params(initial))  # every aux parameter moved


def test_zero_aux_weight_leaves_the_aux_head_untouched(tmp_path):
    result = train(TrainConfig(**TINY, aux_loss=True, aux_loss_weight=0.0, impl="torch", weight_decay=0.0,
                               out=str(tmp_path)))
    torch.manual_seed(0)
    initial = build_model(ModelSpec("deeplabv3plus_small", 4, 8, kwargs={"aux_loss": True}))
    trained = result.model.state_dict()
    assert all(torch.equal(p, trained[n]) for n, p in _aux_params(initial).items())
    with pytest.raises(ValueError, match="aux_loss_weight >= 0"):
        TrainConfig(aux_loss_weight=-1.0)


@pytest.mark.parametrize("factory", [lambda **kw: M.deeplabv3plus_small(**kw),
                                     lambda **kw: M.deeplabv3("mobilenet_v3_large", 3, **kw),
                                     lambda **kw: M.deeplabv3plus("mobilenet_v3_large", 3, **kw)])
def test_aux_is_a_deprecated_alias_of_aux_loss(factory):
    assert factory(aux_loss=True).aux_classifier is not None
    assert factory().aux_classifier is None
    with pytest.warns(DeprecationWarning, match="aux= is deprecated, use aux_loss="):
        model = factory(aux=True)
    assert model.aux_classifier is not None
