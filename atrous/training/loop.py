"""The training loop: SGD with momentum, poly learning rate, cross-entropy with ignore, validation mIoU.

One function, :func:`train`, runs a whole :class:`~atrous.training.TrainConfig` alone or as one of
``torchrun``'s processes (see :mod:`atrous.training.distributed`), and returns a :class:`TrainResult`.
"""

from __future__ import annotations

import json
import math
import random
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, Dataset, Subset

from .._extension import ExtensionNotBuiltError
from ..data import (
    DataBundle,
    build_data,
    class_frequencies,
    median_frequency_weights,
    pad_collate,
    parse_class_weights,
)
from ..inference import predict
from ..metrics import ConfusionMatrix, SegmentationScores
from ..models.pretrained import load_backbone_weights
from .checkpoint import (
    CheckpointError,
    ModelSpec,
    build_model,
    load_checkpoint,
    load_weights,
    save_checkpoint,
)
from .config import TrainConfig
from .distributed import (
    DistributedContext,
    ShardedBatchSampler,
    all_reduce_sum,
    convert_sync_batchnorm,
    setup_distributed,
    shard_indices,
)
from .records import format_eta, spec_difference, write_epoch_records

try:
    from .. import ops as _ops
except ExtensionNotBuiltError:  # impl="torch" trains without the compiled kernels
    _ops = None

__all__ = ["TrainResult", "evaluate", "model_kwargs", "poly_lr", "resolve_impl", "seed_everything",
           "resolve_class_weights", "segmentation_loss", "train"]


@dataclass
class TrainResult:
    """What :func:`train` returns (on every rank; ``checkpoint`` is written by rank 0).

    ``history`` has one record per finished epoch (train loss, validation scores, seconds); ``losses``
    the loss of every step, ``[step, loss, lr]``, since step 1 (also across resumes).
    """

    model: nn.Module
    history: list[dict]
    losses: list[list[float]]
    scores: SegmentationScores | None
    step: int
    checkpoint: Path | None
    seconds: float
    config: TrainConfig
    data: DataBundle = field(repr=False)


def seed_everything(seed: int) -> None:
    """Seed Python, NumPy and torch (CPU and CUDA) random number generators."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _step_seed(seed: int, step: int, rank: int) -> int:
    state = np.random.SeedSequence([seed, step, rank, 7]).generate_state(2, np.uint32)
    return int(state[0]) << 32 | int(state[1])


def poly_lr(base_lr: float, step: int, total_steps: int, power: float = 0.9) -> float:
    """DeepLab's "poly" schedule: ``base_lr * (1 - step / total_steps) ** power``."""
    return base_lr * max(0.0, 1.0 - step / max(1, total_steps)) ** power


def resolve_impl(impl: str, device: torch.device) -> str:
    """'auto' -> 'atrous' where our kernels run on ``device``, else 'torch' (F.conv2d, same weights)."""
    if impl != "auto":
        return impl
    if _ops is None:
        return "torch"
    if device.type == "cpu":
        return "atrous"
    try:  # CUDA kernels are built only on CUDA machines with a toolkit: ask the operator itself
        x = torch.zeros(1, 1, 3, 3, device=device)
        _ops.depthwise_conv2d(x, torch.zeros(1, 1, 3, 3, device=device))
        return "atrous"
    except Exception:
        return "torch"


# ---- inference and evaluation ----------------------------------------------------------------------

@torch.no_grad()
def evaluate(model: nn.Module, dataset: Dataset, num_classes: int, *, batch_size: int = 8,
             scales: Sequence[float] = (1.0,), flip: bool = False, device: torch.device | str = "cpu",
             ctx: DistributedContext | None = None, workers: int = 0) -> ConfusionMatrix:
    """Confusion matrix of ``model`` on ``dataset``: each process evaluates every ``world_size``-th
    sample and the matrices are summed over processes. ``scales`` and ``flip`` as in :func:`predict`."""
    ctx = ctx or DistributedContext()
    was_training = model.training
    model.eval()
    indices = shard_indices(len(dataset), ctx.rank, ctx.world_size)
    loader = DataLoader(Subset(dataset, indices), batch_size=batch_size, shuffle=False, num_workers=workers,
                        collate_fn=pad_collate)
    cm = ConfusionMatrix(num_classes)
    for batch in loader:
        images = batch["image"].to(device, non_blocking=True)
        pred = predict(model, images, scales, flip).argmax(1).cpu()  # (N, H, W)
        cm.update(pred, batch["mask"])
    model.train(was_training)
    return cm.all_reduce()


# ---- training --------------------------------------------------------------------------------------

def _evaluate_only(config: TrainConfig, ctx: DistributedContext, model: nn.Module, data: DataBundle,
                   state: dict | None, resume_path, start_time: float) -> TrainResult:
    """``--eval-only``: validate the loaded model once, print the table, write ``OUT/eval.json``."""
    if state is None and not config.backbone_weights:
        _log(ctx, "train: --eval-only without --resume: evaluating an untrained model")
    cm = evaluate(model, data.val, data.num_classes, batch_size=config.val_batch_size, scales=config.scales(),
                  flip=config.eval_flip, device=ctx.device, ctx=ctx, workers=config.workers)
    scores = cm.scores()
    step = int(state["step"]) if state is not None else 0
    _log(ctx, f"validation of {resume_path or 'the initial model'} (step {step}):\n"
              + scores.table(data.classes))
    if ctx.is_main:
        out = Path(config.out)
        out.mkdir(parents=True, exist_ok=True)
        report = {"checkpoint": str(resume_path) if resume_path else None, "step": step,
                  "dataset": config.dataset, "split": config.val_split, "images": len(data.val),
                  "scales": list(config.scales()), "flip": config.eval_flip, **scores.report(data.classes),
                  "confusion_matrix": cm.matrix.tolist()}
        (out / "eval.json").write_text(json.dumps(report, indent=1))
    history = list(state["history"]) if state is not None else []
    losses = list(state.get("losses", [])) if state is not None else []
    return TrainResult(model, history, losses, scores, step, None, time.perf_counter() - start_time, config,
                       data)


def model_kwargs(config: TrainConfig) -> dict:
    """The factory keyword arguments a config adds to the model's defaults (recorded in the checkpoint)."""
    kwargs: dict = {} if config.dropout is None else {"dropout": config.dropout}
    if config.aux_loss:
        kwargs["aux_loss"] = True
    return kwargs


def resolve_class_weights(spec: str, data: DataBundle, ctx: DistributedContext | None = None) -> torch.Tensor:
    """``--class-weights``: the given list, or with "auto" median frequency balancing over the training
    masks (their class frequencies are printed)."""
    weights = parse_class_weights(spec, data.num_classes)
    if weights is not None:
        return weights
    pixels, image_pixels = class_frequencies(data.train, data.num_classes, data.ignore_index)
    weights = median_frequency_weights(pixels, image_pixels)
    total = max(1, int(pixels.sum()))
    lines = [f"  {name:<16} {100 * int(p) / total:6.2f}%  weight {w:.3f}"
             for name, p, w in zip(data.classes, pixels, weights.tolist())]
    _log(ctx or DistributedContext(), "train: class frequencies (share of labelled training pixels) and "
                                      "median-frequency weights:\n" + "\n".join(lines))
    return weights


def segmentation_loss(outputs, masks: torch.Tensor, ignore_index: int = 255, aux_weight: float = 0.5,
                      weight: torch.Tensor | None = None) -> torch.Tensor:
    """Summed pixel cross-entropy of the logits, plus ``aux_weight`` times that of the auxiliary head's
    logits when the model returns ``{"out", "aux"}`` (torchvision's reference: 0.5)."""
    logits = outputs["out"] if isinstance(outputs, dict) else outputs
    terms = [(logits, 1.0)]
    if isinstance(outputs, dict) and outputs.get("aux") is not None and aux_weight:
        terms.append((outputs["aux"], aux_weight))
    total = None
    for out, w in terms:
        if out.dtype not in (torch.float32, torch.float64):  # float16 under autocast
            out = out.float()
        term = w * F.cross_entropy(out, masks, weight=weight, ignore_index=ignore_index, reduction="sum")
        total = term if total is None else total + term
    return total

def _log(ctx: DistributedContext, message: str) -> None:
    if ctx.is_main:
        print(message, flush=True)


def _progress(ctx: DistributedContext, config: TrainConfig, total: int, initial: int, desc: str):
    from tqdm.auto import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not (ctx.is_main and config.progress),
                dynamic_ncols=True, leave=False, file=sys.stderr)


def train(config: TrainConfig | None = None, **overrides) -> TrainResult:
    """Train (and validate each epoch) as ``config`` says; keyword arguments override its fields.

    Alone, or as one process of ``torchrun`` (the environment says which). Rank 0 writes
    ``OUT/last.pt`` after every epoch (and every ``checkpoint_every`` steps), ``OUT/best.pt`` at the best
    validation mIoU, and ``OUT/history.json``. ``resume`` continues from a checkpoint at the step it
    was saved, with the same shuffling, augmentation and learning rate as an uninterrupted run.
    """
    config = TrainConfig(**{**(config.as_dict() if config is not None else {}), **overrides})
    start_time = time.perf_counter()
    ctx = setup_distributed(config.device)
    try:
        return _train(config, ctx, start_time)
    finally:
        ctx.close()


def _train(config: TrainConfig, ctx: DistributedContext, start_time: float) -> TrainResult:
    out = Path(config.out)
    device = ctx.device
    if config.batch_size % ctx.world_size:
        raise ValueError(f"train: expected --batch-size divisible by the {ctx.world_size} processes, "
                         f"got {config.batch_size}")
    seed_everything(config.seed)  # the same initial weights on every rank (DDP also broadcasts them)
    data = build_data(config)
    impl = resolve_impl(config.impl, device)
    spec = ModelSpec(config.model, data.num_classes, config.output_stride, config.dilated,
                     model_kwargs(config))

    resume_path = None
    if config.resume == "auto":
        resume_path = out / "last.pt" if (out / "last.pt").is_file() else None
    elif config.resume:
        resume_path = Path(config.resume)
    state = load_checkpoint(resume_path) if resume_path is not None else None
    if state is not None and state["model_spec"] != spec.as_dict():
        raise ValueError(f"train: checkpoint {str(resume_path)!r} holds another model than the config asks "
                         f"for ({spec_difference(state['model_spec'], spec.as_dict())})")

    class_weights = None
    if state is not None and state["dataset"].get("class_weights") is not None:
        class_weights = torch.tensor(state["dataset"]["class_weights"], dtype=torch.float64)
    elif config.class_weights:
        class_weights = resolve_class_weights(config.class_weights, data, ctx)
    model = build_model(spec, impl)
    provenance = None
    if state is not None:
        provenance = state.get("backbone_weights")
    elif config.backbone_weights:
        provenance = load_backbone_weights(model, config.backbone_weights,
                                           sha256=config.backbone_weights_sha256)
        _log(ctx, f"train: backbone weights from {provenance['source']} ({provenance['format']}, "
                  f"{provenance['tensors']} tensors, sha256 {provenance['sha256'][:12]})")
    dtype = getattr(torch, config.dtype)
    model.to(device, dtype)  # before loading, so float64 weights are not rounded through float32
    if state is not None:
        load_weights(model, state, resume_path)
    layout = torch.channels_last if config.channels_last else torch.contiguous_format
    model.to(memory_format=layout)
    if config.eval_only:
        return _evaluate_only(config, ctx, model, data, state, resume_path, start_time)
    if ctx.distributed and config.sync_bn:
        model = convert_sync_batchnorm(model, device)
    optimizer = torch.optim.SGD(model.parameters(), lr=config.lr, momentum=config.momentum,
                                weight_decay=config.weight_decay)
    use_amp = config.amp and device.type == "cuda" and dtype == torch.float32
    scaler = torch.amp.GradScaler("cuda", enabled=use_amp)
    history: list[dict] = []
    losses: list[list[float]] = []
    step = 0
    if state is not None:
        if state["optimizer"] is not None:
            try:
                optimizer.load_state_dict(state["optimizer"])
            except (KeyError, ValueError, TypeError, RuntimeError, IndexError) as e:
                first = (str(e).strip().splitlines() or [""])[0]
                raise CheckpointError(f"train: checkpoint {str(resume_path)!r}: its optimizer state does not "
                                      f"fit this model ({type(e).__name__}: {first})") from e
        if state.get("scaler") and use_amp:
            scaler.load_state_dict(state["scaler"])
        step, history, losses = int(state["step"]), list(state["history"]), list(state.get("losses", []))
        saved_batch = state["config"].get("batch_size")
        if saved_batch is not None and saved_batch != config.batch_size:
            raise ValueError(f"train: checkpoint {str(resume_path)!r} was trained with a global batch of "
                             f"{saved_batch}; resuming needs the same --batch-size (any number of processes)")
    ddp = model
    if ctx.distributed:
        device_ids = [device.index] if device.type == "cuda" else None
        ddp = nn.parallel.DistributedDataParallel(model, device_ids=device_ids)

    sampler = ShardedBatchSampler(len(data.train), config.batch_size, num_replicas=ctx.world_size,
                                  rank=ctx.rank, seed=config.seed)
    steps_per_epoch = sampler.steps_per_epoch
    total_steps = config.epochs * steps_per_epoch
    stop = min(total_steps, config.stop_after) if config.stop_after else total_steps
    rates = "atrous rates" if config.dilated else "every dilation 1"
    _log(ctx, f"train: {config.model} ({rates}, output stride {config.output_stride}, impl={impl}) on "
              f"{config.dataset}: {len(data.train)} training / {len(data.val)} validation images, "
              f"{data.num_classes} classes; {config.epochs} epochs x {steps_per_epoch} steps of "
              f"{config.batch_size} images on {ctx.world_size} process(es), {device}, "
              + ("float16 mixed precision" if use_amp else config.dtype)
              + (f"; resuming at step {step} from {resume_path}" if state is not None else ""))

    best = max((h["miou"] for h in history if h.get("miou") is not None), default=-1.0)
    scores: SegmentationScores | None = None
    meta = dict(spec=spec, config=config.as_dict(), dataset=data.info())
    if class_weights is not None:
        meta["dataset"]["class_weights"] = class_weights.tolist()
        class_weights = class_weights.to(device, dtype)

    def save(name: str, metrics: dict | None = None) -> Path | None:
        if not ctx.is_main:
            return None
        return save_checkpoint(out / name, model=model, spec=spec, optimizer=optimizer, scaler=scaler,
                               step=step, config=meta["config"], dataset=meta["dataset"], history=history,
                               losses=losses, metrics=metrics, backbone_weights=provenance)

    checkpoint = None
    ddp.train()
    run_start, run_steps = time.perf_counter(), 0  # for images/s and the ETA of this run
    while step < stop:
        epoch = step // steps_per_epoch
        data.train.set_epoch(epoch)
        sampler.set_epoch(epoch, start_step=step - epoch * steps_per_epoch)
        loader = DataLoader(data.train, batch_sampler=sampler, num_workers=config.workers,
                            collate_fn=pad_collate, pin_memory=device.type == "cuda")
        epoch_start = time.perf_counter()
        loss_sum = 0.0
        loss_count = 0
        bar = _progress(ctx, config, steps_per_epoch, step - epoch * steps_per_epoch,
                        f"epoch {epoch + 1}/{config.epochs}")
        for batch in loader:
            lr = poly_lr(config.lr, step, total_steps, config.poly_power)
            for group in optimizer.param_groups:
                group["lr"] = lr
            torch.manual_seed(_step_seed(config.seed, step, ctx.rank))  # dropout masks replay on resume
            images = batch["image"].to(device, dtype, non_blocking=True).contiguous(memory_format=layout)
            masks = batch["mask"].to(device, non_blocking=True)
            with torch.autocast(device.type, dtype=torch.float16, enabled=use_amp):
                outputs = ddp(images)
            local_sum = segmentation_loss(outputs, masks, data.ignore_index, config.aux_loss_weight,
                                          class_weights)
            # Normalise by the labelled pixels of the *global* batch (one all-reduce), times the world size
            # because DDP averages gradients: every process count gives the one-process gradient.
            totals = torch.stack([local_sum.detach().double(), (masks != data.ignore_index).sum().double()])
            totals = all_reduce_sum(totals)
            labelled = max(1.0, totals[1].item())  # one host sync per step
            loss = local_sum * (ctx.world_size / labelled)
            optimizer.zero_grad(set_to_none=True)
            scaler.scale(loss).backward()
            scaler.step(optimizer)
            scaler.update()
            step += 1
            step_loss = totals[0].item() / labelled
            if not math.isfinite(step_loss):
                raise FloatingPointError(f"train: the loss became {step_loss} at step {step}; lower --lr")
            loss_sum += step_loss
            loss_count += 1
            losses.append([step, step_loss, lr])
            run_steps += 1
            elapsed = time.perf_counter() - run_start
            bar.set_postfix(loss=f"{loss_sum / loss_count:.4f}", lr=f"{lr:.2e}",
                            img_s=f"{run_steps * config.batch_size / elapsed:.1f}",
                            eta=format_eta((stop - step) * elapsed / run_steps), refresh=False)
            bar.update()
            if config.checkpoint_every and step % config.checkpoint_every == 0:
                checkpoint = save("last.pt")
            if step >= stop:
                break
        bar.close()
        if step % steps_per_epoch:  # stopped inside the epoch (stop_after): save where we are, no record
            checkpoint = save("last.pt")
            _log(ctx, f"stopped after step {step} (--stop-after); resume with --resume {out / 'last.pt'}")
            break
        seconds = time.perf_counter() - epoch_start
        record = {"epoch": epoch + 1, "step": step, "train_loss": loss_sum / max(1, loss_count),
                  "seconds": seconds,
                  "images_per_second": loss_count * config.batch_size / max(seconds, 1e-9)}
        last_epoch = step >= total_steps
        if (epoch + 1) % config.val_every == 0 or last_epoch:
            cm = evaluate(ddp.module if ctx.distributed else model, data.val, data.num_classes,
                          batch_size=config.val_batch_size, scales=config.scales(), flip=config.eval_flip,
                          device=device, ctx=ctx, workers=config.workers)
            scores = cm.scores()
            record.update(miou=scores.miou, pixel_accuracy=scores.pixel_accuracy, iou=scores.iou)
        history.append(record)
        validation = ""
        if "miou" in record:
            validation = (f"  val mIoU {100 * record['miou']:.1f}%  "
                          f"pixel acc {100 * record['pixel_accuracy']:.1f}%")
        _log(ctx, f"epoch {epoch + 1}/{config.epochs}  step {step}  loss {record['train_loss']:.4f}  "
                  f"lr {lr:.2e}{validation}  ({record['seconds']:.1f} s)")
        metrics = {k: record[k] for k in ("miou", "pixel_accuracy", "iou") if k in record}
        checkpoint = save("last.pt", metrics)
        if "miou" in record and record["miou"] > best:
            best = record["miou"]
            save("best.pt", metrics)
        if ctx.is_main:
            (out / "history.json").write_text(json.dumps(history, indent=1))
            write_epoch_records(out, history, losses, data.classes)
    ctx.barrier()
    seconds = time.perf_counter() - start_time
    if scores is not None:
        _log(ctx, f"validation after step {step}:\n" + scores.table(data.classes))
    return TrainResult(model, history, losses, scores, step, checkpoint, seconds, config, data)
