"""Layers on the atrous operators (AtrousConv2d, ConvBNAct, AtrousSeparableConv2d) and the impl switch."""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator

import torch
import torch.nn.functional as F
from torch import nn

from .._extension import ExtensionNotBuiltError, mode, warn_no_extension

try:
    from .. import ops as _ops

    _OPS_ERROR: ExtensionNotBuiltError | None = None
except ExtensionNotBuiltError as _exc:  # impl="torch" still works; impl="atrous" re-raises this
    _ops = None
    _OPS_ERROR = _exc

__all__ = [
    "IMPLS",
    "AtrousConv2d",
    "AtrousSeparableConv2d",
    "ConvBNAct",
    "PooledBatchNorm2d",
    "get_impl",
    "same_padding",
    "set_impl",
    "use_impl",
]

IMPLS = ("atrous", "torch")

# The process-wide default for modules whose own `impl` is None. A plain dict (not a ContextVar or a
# thread-local) because torch.compile traces and guards on it without a graph break.
_DEFAULT = {"impl": "atrous"}
if _ops is None and mode() == "no-extension":  # installed without kernels: F.conv2d, said once
    _DEFAULT["impl"] = "torch"
    warn_no_extension()


def _check_impl(impl, *, allow_none: bool, where: str = "impl") -> None:
    if impl is None and allow_none:
        return
    if not isinstance(impl, str) or impl not in IMPLS:
        choices = "'atrous', 'torch'" + (" or None" if allow_none else "")
        raise ValueError(f"{where}: expected {choices}, got {impl!r}")


def get_impl() -> str:
    """The default implementation used by convolution modules whose own ``impl`` is None."""
    return _DEFAULT["impl"]


@contextlib.contextmanager
def use_impl(impl: str) -> Iterator[None]:
    """Run every convolution whose ``impl`` is None with ``impl`` inside the block.

    ``"atrous"`` (the default) calls the hand-written operators of :mod:`atrous.ops`; ``"torch"``
    calls ``F.conv2d`` with the same weights: for parity tests, benchmarks and ONNX/mobile export.
    The setting is process-wide (not per thread). Modules with an explicit ``impl`` keep it.
    """
    _check_impl(impl, allow_none=False, where="use_impl(impl)")
    previous = _DEFAULT["impl"]
    _DEFAULT["impl"] = impl
    try:
        yield
    finally:
        _DEFAULT["impl"] = previous


def set_impl(model: nn.Module, impl: str | None) -> nn.Module:
    """Set ``impl`` on every :class:`AtrousConv2d` in ``model`` (None: the default); returns ``model``."""
    _check_impl(impl, allow_none=True, where="set_impl(impl)")
    for module in model.modules():
        if isinstance(module, AtrousConv2d):
            module.impl = impl
    return model


def _is_zero_padding(padding) -> bool:
    return padding in ("same", "valid") or tuple(padding) == (0, 0)


class AtrousConv2d(nn.Conv2d):
    """``nn.Conv2d`` whose forward runs on the atrous operators.

    Same constructor, parameters (``weight``, ``bias``) and attributes (``kernel_size``, ``stride``,
    ``padding``, ``dilation``, ``groups``) as ``nn.Conv2d``, so state dicts map 1:1 to torchvision and
    timm and shape/receptive-field tools read it as a convolution. The forward routes by shape:

    * ``groups == 1``, 1x1 kernel, stride 1, no padding -> :func:`atrous.ops.pointwise_conv2d` (GEMM);
    * ``groups == 1`` otherwise -> :func:`atrous.ops.atrous_conv2d` (dilated im2col + GEMM);
    * ``groups == in_channels`` (depthwise, any depth multiplier) -> :func:`atrous.ops.depthwise_conv2d`;
    * other group counts raise ``NotImplementedError`` under ``impl="atrous"`` (``impl="torch"`` runs them).

    ``impl``: ``"atrous"``, ``"torch"`` (``F.conv2d``) or None (follow :func:`use_impl`, default
    ``"atrous"``). Only ``padding_mode="zeros"`` exists in the operators.
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int | tuple[int, int],
        stride: int | tuple[int, int] = 1,
        padding: int | tuple[int, int] | str = 0,
        dilation: int | tuple[int, int] = 1,
        groups: int = 1,
        bias: bool = True,
        padding_mode: str = "zeros",
        device=None,
        dtype=None,
        *,
        impl: str | None = None,
    ) -> None:
        if padding_mode != "zeros":
            raise ValueError(
                f"AtrousConv2d: expected padding_mode='zeros' (the only padding the atrous operators "
                f"implement), got {padding_mode!r}; pad the input explicitly instead"
            )
        super().__init__(in_channels, out_channels, kernel_size, stride, padding, dilation, groups, bias,
                         padding_mode, device, dtype)
        self.impl = impl

    @property
    def impl(self) -> str | None:
        return self._impl

    @impl.setter
    def impl(self, value: str | None) -> None:
        _check_impl(value, allow_none=True, where="AtrousConv2d.impl")
        self._impl = value

    @property
    def kind(self) -> str:
        """Which operator the forward uses: 'pointwise', 'dense', 'depthwise' or 'unsupported'."""
        if self.groups == 1:
            if self.kernel_size == (1, 1) and self.stride == (1, 1) and _is_zero_padding(self.padding):
                return "pointwise"
            return "dense"
        if self.groups == self.in_channels:
            return "depthwise"
        return "unsupported"

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        impl = self._impl if self._impl is not None else _DEFAULT["impl"]
        if impl == "torch":
            return self._conv_forward(input, self.weight, self.bias)
        if _ops is None:
            raise _OPS_ERROR
        kind = self.kind
        if kind == "pointwise":
            return _ops.pointwise_conv2d(input, self.weight, self.bias)
        if kind == "dense":
            return _ops.atrous_conv2d(input, self.weight, self.bias, self.stride, self.padding, self.dilation)
        if kind == "depthwise":
            return _ops.depthwise_conv2d(input, self.weight, self.bias, self.stride, self.padding,
                                         self.dilation)
        raise NotImplementedError(
            f"AtrousConv2d: groups={self.groups} with in_channels={self.in_channels} is a grouped "
            "convolution; the atrous operators cover groups=1 (dense) and groups=in_channels "
            "(depthwise). Use impl='torch' to run it with F.conv2d."
        )

    def extra_repr(self) -> str:
        s = super().extra_repr()
        return s if self._impl is None else f"{s}, impl={self._impl!r}"


def same_padding(kernel_size: int, dilation: int = 1) -> int:
    """Symmetric padding that keeps the size at stride 1: ``(k - 1) // 2 * d`` (torchvision's rule;
    equal to timm's ``((s - 1) + d (k - 1)) // 2`` for odd kernels at stride 1 and 2)."""
    return (kernel_size - 1) // 2 * dilation


class ConvBNAct(nn.Sequential):
    """Convolution -> BatchNorm -> activation, as torchvision's ``Conv2dNormActivation``.

    A Sequential with children ``0`` (:class:`AtrousConv2d`), ``1`` (BatchNorm2d) and ``2`` (activation,
    left out when ``activation`` is None), so its state-dict keys equal torchvision's; ``conv``, ``bn``
    and ``act`` name them for reading. ``padding`` defaults to ``(k - 1) // 2 * dilation``; the conv has
    no bias (the BatchNorm's shift replaces it).
    """

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        padding: int | None = None,
        dilation: int = 1,
        groups: int = 1,
        *,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        norm_layer: Callable[..., nn.Module] = nn.BatchNorm2d,
        impl: str | None = None,
    ) -> None:
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        layers: list[nn.Module] = [
            AtrousConv2d(in_channels, out_channels, kernel_size, stride, padding, dilation, groups,
                         bias=False, impl=impl),
            norm_layer(out_channels, eps=bn_eps, momentum=bn_momentum),
        ]
        if activation is not None:
            layers.append(activation())
        super().__init__(*layers)
        self.out_channels = out_channels

    @property
    def conv(self) -> AtrousConv2d:
        return self[0]

    @property
    def bn(self) -> nn.Module:
        return self[1]

    @property
    def act(self) -> nn.Module:
        return self[2] if len(self) > 2 else nn.Identity()


class AtrousSeparableConv2d(nn.Module):
    """Atrous separable convolution of DeepLabV3+ (Chen et al., 2018, Sec. 3.1 and 3.2):
    depthwise atrous conv -> BN -> act -> pointwise 1x1 conv -> BN -> act.

    The paper adds "batch normalization and ReLU after each 3x3 depthwise convolution". The released
    DeepLab code (and timm's port, whose weights this layout loads) keeps the BN after every
    depthwise conv but drops both activations inside aligned-Xception blocks, where a ReLU *before*
    each separable conv takes their place: build those with ``activation=None``. ``inner_activation=False``
    keeps only the activation after the pointwise BN.

    Children follow timm's names: ``conv_dw``, ``bn_dw``, ``act_dw``, ``conv_pw``, ``bn_pw``, ``act_pw``.
    """

    fuse_pairs = (("conv_dw", "bn_dw"), ("conv_pw", "bn_pw"))  # for atrous.nn.fuse

    def __init__(
        self,
        in_channels: int,
        out_channels: int,
        kernel_size: int = 3,
        stride: int = 1,
        dilation: int = 1,
        padding: int | None = None,
        *,
        activation: Callable[[], nn.Module] | None = nn.ReLU,
        inner_activation: bool = True,
        bn_eps: float = 1e-5,
        bn_momentum: float = 0.1,
        impl: str | None = None,
    ) -> None:
        super().__init__()
        if padding is None:
            padding = same_padding(kernel_size, dilation)
        self.in_channels, self.out_channels = in_channels, out_channels
        self.conv_dw = AtrousConv2d(in_channels, in_channels, kernel_size, stride, padding, dilation,
                                    groups=in_channels, bias=False, impl=impl)
        self.bn_dw = nn.BatchNorm2d(in_channels, eps=bn_eps, momentum=bn_momentum)
        self.act_dw = activation() if activation is not None and inner_activation else nn.Identity()
        self.conv_pw = AtrousConv2d(in_channels, out_channels, 1, bias=False, impl=impl)
        self.bn_pw = nn.BatchNorm2d(out_channels, eps=bn_eps, momentum=bn_momentum)
        self.act_pw = activation() if activation is not None else nn.Identity()
        # Set by atrous.nn.fuse once both BNs are folded and atrous.ops.separable_conv2d exists.
        self.fused_op = False

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if self.fused_op and (self.conv_dw.impl or _DEFAULT["impl"]) == "atrous":
            return self._forward_fused(x)
        x = self.act_dw(self.bn_dw(self.conv_dw(x)))
        return self.act_pw(self.bn_pw(self.conv_pw(x)))

    # ---- FUSED-OPERATOR HOOK ------------------------------------------------------------------
    # atrous.nn.fuse sets `fused_op` only when atrous.ops.separable_conv2d exists, after folding
    # bn_dw/bn_pw into the convs (they are then Identity) and only when the inner activation is
    # Identity or ReLU: the operator computes pointwise(act(depthwise(x))) with act in {None, "relu"}.
    def _forward_fused(self, x: torch.Tensor) -> torch.Tensor:
        dw, pw = self.conv_dw, self.conv_pw
        inner = "relu" if isinstance(self.act_dw, nn.ReLU) else None
        y = _ops.separable_conv2d(x, dw.weight, dw.bias, pw.weight, pw.bias, stride=dw.stride,
                                  padding=dw.padding, dilation=dw.dilation, activation=inner)
        return self.act_pw(y)


class PooledBatchNorm2d(nn.BatchNorm2d):
    """BatchNorm2d for the image-pooling branch of ASPP, which also trains with batch size 1.

    After global pooling the map is 1x1, so a batch of one image gives one value per channel: its
    batch variance is zero and ``nn.BatchNorm2d`` refuses it in training mode ("Expected more than 1
    value per channel"). Then, and only then, this layer normalises with the running statistics, as in
    eval mode, and leaves them unchanged (one sample carries no variance to learn from); the affine
    weight and bias still train. With more than one value per channel it is an ordinary BatchNorm2d
    (same state-dict keys, so torchvision checkpoints load into it).
    """

    def forward(self, input: torch.Tensor) -> torch.Tensor:
        single = input.dim() == 4 and input.shape[0] * input.shape[2] * input.shape[3] == 1
        if self.training and single and self.track_running_stats:
            return F.batch_norm(input, self.running_mean, self.running_var, self.weight, self.bias,
                                False, 0.0, self.eps)
        return super().forward(input)
