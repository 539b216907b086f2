"""Pretrained backbones from a file or URL: detect the format, load exactly, download with sha256 and cache.

``weights_backbone=`` on the factories (torchvision's name) and ``train --backbone-weights`` come here.
The source is a path, an ``http(s)://`` or ``file://`` URL, or a state dict in memory, holding one of:

* timm's aligned Xception (``xception41/65/71``) state dict, for an Xception backbone;
* torchvision's ImageNet ``resnet50`` / ``resnet101`` / ``mobilenet_v3_large`` state dict;
* a checkpoint written by ``atrous train`` (its ``backbone.*`` weights) or a backbone's own state dict,
  for any backbone (the small model's included).

Nothing is downloaded unless a URL is given. A URL's file is checked against a sha256 (given, or the
hex prefix in the file name as torch.hub names its files: ``resnet50-0676ba61.pth``) and kept in a
cache folder (``$ATROUS_CACHE``, default ``~/.cache/atrous``); a second call reads the cached copy.
Files are read with ``torch.load(weights_only=True)``: tensors and plain containers only.
"""

from __future__ import annotations

import hashlib
import inspect
import os
import re
import shutil
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path

import torch
from torch import nn

from .mobilenetv3 import MobileNetV3
from .registry import MODELS, get_model
from .resnet import ResNet
from .weights import (
    WeightImportError,
    _convert,
    _load_exact,
    load_timm_xception,
    load_torchvision_backbone,
)
from .xception import XceptionAligned

__all__ = ["cache_dir", "describe_model", "download_weights", "load_backbone_weights", "read_weights"]

_URL_SCHEMES = ("http", "https", "file")
_HUB_HASH = re.compile(r"-([a-f0-9]{8,64})\.[A-Za-z0-9]+$")  # torch.hub's "name-<sha256 prefix>.pth"


def cache_dir() -> Path:
    """Where downloaded weights are kept: ``$ATROUS_CACHE`` or ``~/.cache/atrous``, then ``weights/``."""
    root = os.environ.get("ATROUS_CACHE") or os.path.join(os.path.expanduser("~"), ".cache", "atrous")
    return Path(root) / "weights"


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def is_url(source) -> bool:
    return isinstance(source, str) and urllib.parse.urlparse(source).scheme in _URL_SCHEMES


def download_weights(url: str, sha256: str | None = None, *, cache: str | os.PathLike | None = None) -> Path:
    """The local copy of ``url``, downloaded once into the cache and checked against ``sha256`` (the
    full hex digest, or a prefix of it such as torch.hub's file names carry). Without ``sha256`` the
    prefix in the file name is used; a URL with neither is refused. A file whose digest differs is
    deleted and raises :class:`ValueError` naming both digests."""
    where = "download_weights"
    if not is_url(url):
        raise ValueError(f"{where}: expected an http(s):// or file:// URL, got {url!r}")
    name = os.path.basename(urllib.parse.urlparse(url).path)
    if not name:
        raise ValueError(f"{where}: expected a URL ending in a file name, got {url!r}")
    expected = (sha256 or "").lower()
    if not expected:
        match = _HUB_HASH.search(name)
        if match is None:
            raise ValueError(f"{where}: expected a sha256 for {url!r} (--backbone-weights-sha256 or "
                             "sha256=), or a file name carrying one as torch.hub's do (name-<hex>.pth)")
        expected = match.group(1)
    if not re.fullmatch(r"[0-9a-f]{8,64}", expected):
        raise ValueError(f"{where}: expected sha256 as 8 to 64 hex digits, got {sha256!r}")
    folder = Path(cache) if cache is not None else cache_dir()
    target = folder / name
    if target.is_file() and _sha256(target).startswith(expected):
        return target  # cached and intact
    folder.mkdir(parents=True, exist_ok=True)
    partial = target.with_name(target.name + ".part")
    try:
        with urllib.request.urlopen(url) as response, open(partial, "wb") as out:
            shutil.copyfileobj(response, out)
    except OSError as e:
        partial.unlink(missing_ok=True)
        raise ValueError(f"{where}: could not download {url!r}: {e}") from e
    digest = _sha256(partial)
    if not digest.startswith(expected):
        partial.unlink()
        raise ValueError(f"{where}: {url!r} has sha256 {digest}, expected {expected}; the file was deleted")
    os.replace(partial, target)
    return target


def read_weights(source, sha256: str | None = None) -> tuple[dict, dict]:
    """``(mapping, provenance)`` of a path, URL or in-memory state dict. ``provenance`` is plain data
    (``source``, ``sha256`` of the file, or None in memory) for a checkpoint to record."""
    if isinstance(source, Mapping):
        return dict(source), {"source": "<state dict in memory>", "sha256": None}
    if not isinstance(source, (str, os.PathLike)):
        raise TypeError("weights_backbone: expected a path, a URL or a state dict, "
                        f"got {type(source).__name__}")
    path = download_weights(str(source), sha256) if is_url(source) else Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"weights_backbone: no weights file at {str(path)!r}")
    try:
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as e:  # pickle, zip and torch errors alike: name the file
        raise WeightImportError(f"weights_backbone: {str(path)!r} is not a readable torch state dict "
                                f"(read with weights_only=True): {e}") from e
    if not isinstance(state, Mapping):
        raise WeightImportError(f"weights_backbone: expected {str(path)!r} to hold a state dict, "
                                f"got {type(state).__name__}")
    digest = _sha256(path)
    if sha256 and not is_url(source) and not digest.startswith(sha256.lower()):
        raise ValueError(f"weights_backbone: {str(path)!r} has sha256 {digest}, expected {sha256}")
    return dict(state), {"source": str(source), "sha256": digest}


def _backbone_part(state: Mapping) -> dict | None:
    """The ``backbone.*`` weights of an atrous checkpoint or a whole model's state dict, else None."""
    if isinstance(state.get("model"), Mapping) and "model_spec" in state:
        state = state["model"]
    prefixed = {k[len("backbone."):]: v for k, v in state.items() if isinstance(k, str) and
                k.startswith("backbone.")}
    return prefixed or None


def load_backbone_weights(model: nn.Module, source, *, sha256: str | None = None) -> dict:
    """Load pretrained weights into ``model.backbone`` (or ``model`` if it is a backbone) from ``source``
    (see the module docstring) and return the provenance: ``source``, ``sha256``, ``format`` and the
    number of ``tensors`` loaded. A file that does not match raises :class:`WeightImportError` listing
    the missing, unexpected and mismatched keys; nothing is loaded then."""
    backbone = getattr(model, "backbone", model)
    state, provenance = read_weights(source, sha256)
    own = _backbone_part(state)
    if own is not None:
        fmt = "atrous"
        converted, origin, _ = _convert(own, [], None)
        _load_exact(backbone, converted, origin, where="load_backbone_weights", source="atrous",
                    hints=["the checkpoint's model must have the same backbone (name and variant)"])
    elif isinstance(backbone, XceptionAligned):
        fmt = "timm_xception"
        load_timm_xception(backbone, state)
    elif isinstance(backbone, (ResNet, MobileNetV3)):
        fmt = "torchvision_" + ("resnet" if isinstance(backbone, ResNet) else "mobilenet_v3_large")
        load_torchvision_backbone(backbone, state)
    else:  # a backbone's own state dict (the small model's SlimXception, ...)
        fmt = "atrous"
        converted, origin, _ = _convert(state, [], None)
        _load_exact(backbone, converted, origin, where="load_backbone_weights",
                    source=f"{type(backbone).__name__} backbone")
    n = len(backbone.state_dict())
    return {**provenance, "format": fmt, "tensors": n}


# ---- what each registered model can import (for `atrous list-models`) ----------------------------

_BACKBONE_WEIGHTS = {
    "XceptionAligned": "timm {variant} (backbone)",
    "ResNet": "torchvision {variant} ImageNet (backbone)",
    "MobileNetV3": "torchvision mobilenet_v3_large ImageNet (backbone)",
}
# Whole models: torchvision's DeepLabV3 state dicts (`--weights torchvision:NAME=PATH`).
_WHOLE_MODEL_WEIGHTS = {"deeplabv3_resnet50", "deeplabv3_resnet101", "deeplabv3_mobilenet_v3_large"}


def describe_model(name: str, num_classes: int = 21) -> dict:
    """``{"name", "parameters", "output_stride", "backbone", "weights"}`` of a registered model: its
    parameter count for ``num_classes`` (built on the meta device: no memory, no initialisation cost),
    the factory's default output stride, and the pretrained weights it can import."""
    if name not in MODELS:
        get_model(name)  # raises naming the registered models
    with torch.device("meta"):
        model = get_model(name, num_classes=num_classes)
    backbone = model.backbone
    kind = type(backbone).__name__
    variant = getattr(backbone, "variant", None)
    if kind == "ResNet":
        variant = {6: "resnet50", 23: "resnet101"}.get(len(backbone.layer3), "resnet")
    weights = ["atrous checkpoint (backbone)"]
    if kind in _BACKBONE_WEIGHTS:
        weights.insert(0, _BACKBONE_WEIGHTS[kind].format(variant=variant))
    if name in _WHOLE_MODEL_WEIGHTS:
        weights.append(f"torchvision {name} state dict, whole model in torchvision's configuration "
                       f"(--weights torchvision:{name}=PATH)")
    default = inspect.signature(MODELS[name]).parameters.get("output_stride")
    return {"name": name, "parameters": sum(p.numel() for p in model.parameters()),
            "output_stride": default.default if default is not None else None,
            "backbone": variant or kind, "weights": weights}
