"""Scale-out on CPU: torchrun, 2 gloo processes equal 1 process on the same global batch; SyncBatchNorm."""

import os
import subprocess
import sys

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from atrous.training import TrainConfig, load_checkpoint, train
from atrous.training.distributed import GlooSyncBatchNorm2d

from helpers.paths import ROOT

pytestmark = pytest.mark.filterwarnings("ignore::atrous.models.aspp.AtrousRateWarning")

# float64 (our kernels run it too), so that "equal" means equal to rounding: in float32 a few steps of
# BatchNorm on 4 tiny images amplify reduction-order differences (1e-7) to 1e-2 within 4 steps.
# 2 epochs x 4 steps of a global batch of 4: 2 images per process.
TINY = dict(image_size=48, train_size=16, val_size=6, batch_size=4, epochs=2, dropout=0.0, dtype="float64",
            progress=False)


def _flags(config: dict) -> list[str]:
    flags = []
    for key, value in config.items():
        flag = "--" + key.replace("_", "-")
        if isinstance(value, bool):
            flags.append(flag if value else f"--no-{flag[2:]}")
        else:
            flags += [flag, str(value)]
    return flags


def _max_difference(a: dict, b: dict) -> float:
    assert a.keys() == b.keys()
    return max((a[k].double() - b[k].double()).abs().max().item() for k in a)


def test_torchrun_two_gloo_processes_equal_one_process_and_resume_on_one(tmp_path):
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
               "-m", "atrous", "train", *_flags({**TINY, "stop_after": 4, "out": tmp_path / "two"})]
    run = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120,
                         cwd=ROOT)
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-3000:]
    assert "on 2 process(es)" in run.stdout
    assert run.stdout.count("epoch 1/2  step 4") == 1  # rank 0 logs, rank 1 does not
    assert sorted(p.name for p in (tmp_path / "two").iterdir()) == [  # written by rank 0 only
        "best.pt", "curves.png", "history.json", "last.pt", "metrics.csv", "metrics.json"]
    two = load_checkpoint(tmp_path / "two" / "last.pt")
    assert two["step"] == 4

    one = train(TrainConfig(**TINY, stop_after=4, out=str(tmp_path / "one")))
    # Same parameters and BatchNorm statistics (SyncBatchNorm over the 2 processes = BN over the batch)
    assert _max_difference(two["model"], one.model.state_dict()) < 1e-8
    two_losses, one_losses = [loss for _, loss, _ in two["losses"]], [loss for _, loss, _ in one.losses]
    assert two_losses == pytest.approx(one_losses, abs=1e-8)
    # Validation: each process evaluated 3 of the 6 images; the summed confusion matrices give the same mIoU.
    assert two["history"][0]["miou"] == pytest.approx(one.history[0]["miou"], abs=1e-12)

    # Resume the 2-process checkpoint on 1 process: it ends where an uninterrupted 1-process run ends.
    resumed = train(TrainConfig(**TINY, resume=str(tmp_path / "two" / "last.pt"),
                                out=str(tmp_path / "resumed")))
    straight = train(TrainConfig(**TINY, out=str(tmp_path / "straight")))
    assert resumed.step == straight.step == 8
    # (4 more steps amplify the 1e-10 rounding differences to about 1e-8; a lost optimiser state or a
    # weight rounded through float32 shows as 1e-4 and more)
    assert _max_difference(resumed.model.state_dict(), straight.model.state_dict()) < 1e-6


def _bn_worker(rank: int, world: int, init_file: str, x: torch.Tensor, w: torch.Tensor) -> None:
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    try:
        results = {}
        for name, bn in (("sync", GlooSyncBatchNorm2d(3)), ("plain", torch.nn.BatchNorm2d(3))):
            bn = bn.double().train()
            xs = x.chunk(world)[rank].clone().requires_grad_(True)
            y = bn(xs)
            (y * w.chunk(world)[rank]).sum().backward()
            results[name] = {"y": y.detach(), "gx": xs.grad, "gw": bn.weight.grad, "gb": bn.bias.grad,
                             "rm": bn.running_mean, "rv": bn.running_var}
        torch.save(results, f"{init_file}.{rank}")
    finally:
        dist.destroy_process_group()


def test_sync_batchnorm_over_two_processes_is_batchnorm_over_the_whole_batch(tmp_path):
    """torch.nn.SyncBatchNorm refuses CPU tensors (its statistics kernels are CUDA ones);
    GlooSyncBatchNorm2d gives, on each half of a batch, the outputs, input gradients, summed parameter
    gradients and running statistics of one BatchNorm2d over the whole batch. Plain BN per process does
    not."""
    torch.manual_seed(0)
    x = torch.randn(4, 3, 5, 5, dtype=torch.float64) * 3 + 1
    w = torch.randn(4, 3, 5, 5, dtype=torch.float64)
    init_file = str(tmp_path / "pg")
    mp.spawn(_bn_worker, (2, init_file, x, w), nprocs=2)
    ranks = [torch.load(f"{init_file}.{r}") for r in range(2)]
    bn = torch.nn.BatchNorm2d(3).double().train()
    xx = x.clone().requires_grad_(True)
    y = bn(xx)
    (y * w).sum().backward()
    want = {"y": y, "gx": xx.grad, "gw": bn.weight.grad, "gb": bn.bias.grad, "rm": bn.running_mean,
            "rv": bn.running_var}
    errors = {}
    for name in ("sync", "plain"):
        parts = [r[name] for r in ranks]
        got = {"y": torch.cat([p["y"] for p in parts]), "gx": torch.cat([p["gx"] for p in parts]),
               "gw": parts[0]["gw"] + parts[1]["gw"], "gb": parts[0]["gb"] + parts[1]["gb"],
               "rm": parts[0]["rm"], "rv": parts[0]["rv"]}
        errors[name] = {k: (got[k] - want[k]).abs().max().item() for k in want}
    assert max(errors["sync"].values()) < 1e-12, errors
    assert errors["plain"]["y"] > 1e-3 and errors["plain"]["gx"] > 1e-3, errors
    assert errors["plain"]["gb"] < 1e-12  # the bias gradient does not depend on the statistics
