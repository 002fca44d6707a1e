"""Unstructured magnitude pruning with torch.nn.utils.prune: masks while fine-tuning, then the
zeros are written into the weights. (For single weights L1 and L2 magnitude rank the same.)"""
from __future__ import annotations

import math

import torch
from torch import nn
from torch.nn.utils import prune as torch_prune

from ..sparsity import prunable_layers

MAX_LAYER_RATIO = 0.98  # leave every layer a few weights


def _zeros(layer: nn.Module) -> int:
    mask = getattr(layer, "weight_mask", None)
    return int((mask == 0).sum()) if mask is not None else 0


def apply_global(module: nn.Module, names: list[str], zero_count: int) -> None:
    """One magnitude threshold across `names` so that they hold `zero_count` pruned weights."""
    layers = dict(prunable_layers(module))
    params = [(layers[n], "weight") for n in names]
    capacity = sum(math.floor(MAX_LAYER_RATIO * l.weight.numel()) for l, _ in params)
    zero_count = min(zero_count, capacity)
    extra = zero_count - sum(_zeros(l) for l, _ in params)
    if extra > 0:
        torch_prune.global_unstructured(params, pruning_method=torch_prune.L1Unstructured, amount=extra)


def apply_ratios(module: nn.Module, ratios: dict[str, float]) -> None:
    """Prune each named layer to (at least) its ratio of zero weights."""
    layers = dict(prunable_layers(module))
    for name, ratio in ratios.items():
        layer = layers[name]
        want = math.ceil(min(MAX_LAYER_RATIO, ratio) * layer.weight.numel())
        extra = want - _zeros(layer)
        if extra > 0:
            torch_prune.l1_unstructured(layer, "weight", amount=extra)


def finish(module: nn.Module) -> None:
    """Make the masks permanent: plain .weight tensors with zeros, no hooks left."""
    for _, layer in prunable_layers(module):
        if torch_prune.is_pruned(layer) and hasattr(layer, "weight_mask"):
            torch_prune.remove(layer, "weight")


@torch.no_grad()
def nonzero_params(module: nn.Module) -> int:
    """Non-zero prunable weights, masks applied."""
    total = 0
    for _, layer in prunable_layers(module):
        w = layer.weight
        mask = getattr(layer, "weight_mask", None)
        total += int(torch.count_nonzero(w if mask is None else w * mask))
    return total
