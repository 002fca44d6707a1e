"""Quantization-aware training: fake-quantized weights (per-channel symmetric, as onnxruntime
quantizes them) and activations (per-tensor, ranges calibrated like the PTQ step), trained with
the straight-through estimator of torch's fake_quantize ops. Pruned zeros stay zero."""

from __future__ import annotations

import copy

import numpy as np
import torch
from torch import nn
from torch.nn.utils import parametrize

from ..sparsity import prunable_layers
from ..train import train
from .config import Calibrator


class FakeQuantWeight(nn.Module):
    """Symmetric fake quantization per output channel (or per tensor), scale = max|w| / qmax,
    onnxruntime's rule for symmetric weights."""

    def __init__(self, bits: int, per_channel: bool = True) -> None:
        super().__init__()
        self.qmax = 2 ** (bits - 1) - 1
        self.per_channel = per_channel

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        absmax = w.detach().abs().amax(dim=tuple(range(1, w.dim())))
        if not self.per_channel:
            absmax = absmax.max().expand_as(absmax)
        scale = (absmax / self.qmax).clamp(min=1e-12).float()
        zero = torch.zeros_like(scale, dtype=torch.int32)
        return torch.fake_quantize_per_channel_affine(w, scale, zero, 0, -self.qmax, self.qmax)


def _act_range(bits: int) -> tuple[int, int]:
    return (0, 255) if bits == 8 else (-(2**15), 2**15 - 1)


def _qparams(lo: float, hi: float, bits: int) -> tuple[float, int]:
    qmin, qmax = _act_range(bits)
    lo, hi = min(lo, 0.0), max(hi, 0.0)
    scale = max((hi - lo) / (qmax - qmin), 1e-12)
    return scale, int(round(qmin - lo / scale))


@torch.no_grad()
def calibrate_inputs(
    module: nn.Module, calib: np.ndarray, calibrator: Calibrator, percentile: float
) -> dict[str, tuple[float, float]]:
    """(low, high) of the input of every prunable layer over the calibration samples. minmax and
    percentile match the PTQ calibrators; entropy (KL) is approximated by minmax here."""
    seen: dict[str, list[torch.Tensor]] = {}
    hooks = [
        layer.register_forward_pre_hook(lambda m, a, n=name: seen.setdefault(n, []).append(a[0].flatten()))
        for name, layer in prunable_layers(module)
    ]
    try:
        module.eval()(torch.from_numpy(calib))
    finally:
        for h in hooks:
            h.remove()
    ranges = {}
    for name, parts in seen.items():
        x = torch.cat(parts).numpy()
        if calibrator is Calibrator.percentile:
            ranges[name] = (float(np.percentile(x, 100 - percentile)), float(np.percentile(x, percentile)))
        else:
            ranges[name] = (float(x.min()), float(x.max()))
    return ranges


def _masks(module: nn.Module) -> dict[str, torch.Tensor]:
    return {n: (layer.weight != 0) for n, layer in prunable_layers(module) if bool((layer.weight == 0).any())}


def _keep_zeros(module: nn.Module, masks: dict[str, torch.Tensor]):
    layers = dict(prunable_layers(module))

    @torch.no_grad()
    def apply() -> None:
        for name, mask in masks.items():
            layer = layers[name]
            w = layer.parametrizations.weight.original if parametrize.is_parametrized(layer, "weight") else layer.weight
            w.mul_(mask)

    return apply


def qat(
    module: nn.Module,
    x: np.ndarray,
    y: np.ndarray,
    calib: np.ndarray,
    *,
    bits: int,
    calibrator: Calibrator,
    percentile: float,
    epochs: int,
    lr: float,
    seed: int,
    per_channel: bool = True,
) -> nn.Module:
    """A QAT-trained copy of `module` whose weights lie on the quantization grid."""
    module = copy.deepcopy(module)
    masks = _masks(module)
    act_bits = 16 if bits == 16 else 8
    ranges = calibrate_inputs(module, calib, calibrator, percentile)
    hooks = []
    for name, layer in prunable_layers(module):
        parametrize.register_parametrization(layer, "weight", FakeQuantWeight(bits, per_channel))
        scale, zero = _qparams(*ranges[name], act_bits)
        qmin, qmax = _act_range(act_bits)
        hooks.append(
            layer.register_forward_pre_hook(
                lambda m, a, s=scale, z=zero, lo=qmin, hi=qmax: (
                    torch.fake_quantize_per_tensor_affine(a[0], s, z, lo, hi),
                )
            )
        )
    try:
        train(module, x, y, epochs=epochs, seed=seed, lr=lr, after_step=_keep_zeros(module, masks))
    finally:
        for h in hooks:
            h.remove()
        for _, layer in prunable_layers(module):
            if parametrize.is_parametrized(layer, "weight"):
                parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return module.eval()


def float_finetune(module: nn.Module, x: np.ndarray, y: np.ndarray, *, epochs: int, lr: float, seed: int) -> nn.Module:
    """The control for QAT: the same epochs of plain fine-tuning, zeros kept."""
    module = copy.deepcopy(module)
    layers = dict(prunable_layers(module))
    masks = _masks(module)

    @torch.no_grad()
    def keep() -> None:
        for name, mask in masks.items():
            layers[name].weight.mul_(mask)

    train(module, x, y, epochs=epochs, seed=seed, lr=lr, after_step=keep)
    return module.eval()
