"""Sparsity measured one way everywhere: the weights of Linear and Conv layers (biases and norms
excluded) that are zero or removed, over the original count, from the weights themselves (never
from masks). Reported three ways: that fraction, parameters before/after, MACs before/after."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
from torch import nn

CONV = (nn.Conv1d, nn.Conv2d, nn.Conv3d)
PRUNABLE = (nn.Linear, *CONV)


@dataclass(frozen=True)
class LayerSparsity:
    name: str
    kind: str
    shape_before: tuple[int, ...]
    shape_after: tuple[int, ...]
    params_before: int  # prunable weights in the original layer
    params_after: int  # non-zero weights left
    macs_before: int  # per sample, dense kernel, original shapes
    macs_after: int  # per sample, dense kernel, shapes after pruning (what actually runs)
    macs_after_nonzero: int  # what a kernel skipping zero weights would execute

    @property
    def sparsity(self) -> float:
        return 1.0 - self.params_after / self.params_before if self.params_before else 0.0

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape_before"], d["shape_after"] = list(self.shape_before), list(self.shape_after)
        return {**d, "sparsity": round(self.sparsity, 6)}

    @classmethod
    def from_json(cls, d: dict) -> "LayerSparsity":
        fields = {k: d[k] for k in cls.__dataclass_fields__}
        fields["shape_before"], fields["shape_after"] = tuple(d["shape_before"]), tuple(d["shape_after"])
        return cls(**fields)


def prunable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, PRUNABLE)]


@torch.no_grad()
def output_positions(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, int]:
    """For each prunable layer, how many times each of its weights is used per sample."""
    positions: dict[str, int] = {}
    hooks = []
    for name, layer in prunable_layers(module):

        def hook(mod, inp, out, name=name):
            sample = out[0]
            channels = sample.shape[0] if isinstance(mod, CONV) else sample.shape[-1]
            positions[name] = sample.numel() // channels

        hooks.append(layer.register_forward_hook(hook))
    was_training = module.training
    try:
        module.eval()
        module(torch.zeros(input_shape))
    finally:
        module.train(was_training)
        for h in hooks:
            h.remove()
    return positions


@torch.no_grad()
def compare(original: nn.Module, pruned: nn.Module, input_shape: tuple[int, ...]) -> list[LayerSparsity]:
    """Per-layer counts of `pruned` against `original`, matched by layer name. A layer missing
    from `pruned` counts as wholly removed."""
    pos_before = output_positions(original, input_shape)
    pos_after = output_positions(pruned, input_shape)
    after = dict(prunable_layers(pruned))
    layers = []
    for name, layer in prunable_layers(original):
        w0 = layer.weight
        new = after.get(name)
        w1 = new.weight if new is not None else None
        nonzero = int(torch.count_nonzero(w1)) if w1 is not None else 0
        layers.append(
            LayerSparsity(
                name=name,
                kind=type(layer).__name__,
                shape_before=tuple(w0.shape),
                shape_after=tuple(w1.shape) if w1 is not None else (),
                params_before=w0.numel(),
                params_after=nonzero,
                macs_before=w0.numel() * pos_before[name],
                macs_after=(w1.numel() * pos_after[name]) if w1 is not None else 0,
                macs_after_nonzero=(nonzero * pos_after[name]) if w1 is not None else 0,
            )
        )
    return layers


def measure(module: nn.Module, input_shape: tuple[int, ...]) -> list[LayerSparsity]:
    """Counts of one module against itself (zeros only, no removed weights)."""
    return compare(module, module, input_shape)


def totals(layers: list[LayerSparsity]) -> dict:
    before = sum(layer.params_before for layer in layers)
    after = sum(layer.params_after for layer in layers)
    return {
        "sparsity": {"global": 1.0 - after / before if before else 0.0},
        "params": {"before": before, "after": after},
        "macs": {
            "before": sum(layer.macs_before for layer in layers),
            "after": sum(layer.macs_after for layer in layers),
            "after_nonzero": sum(layer.macs_after_nonzero for layer in layers),
        },
    }


def onnx_weight_counts(path: Path) -> dict[str, tuple[int, int]]:
    """{weight initializer name: (elements, non-zeros)} for the weight inputs of Gemm, MatMul and
    Conv nodes in an ONNX file, following DequantizeLinear back to the stored (int8) tensor."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    weight_slot = {"Gemm": 1, "MatMul": 1, "Conv": 1, "ConvTranspose": 1}
    counts: dict[str, tuple[int, int]] = {}
    for node in model.graph.node:
        slot = weight_slot.get(node.op_type)
        if slot is None or len(node.input) <= slot:
            continue
        name = node.input[slot]
        # QDQ: the weight reaches the op through DequantizeLinear (maybe a Transpose)
        while (
            name not in inits
            and name in producers
            and producers[name].op_type in ("DequantizeLinear", "Transpose", "Identity")
        ):
            name = producers[name].input[0]
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
            counts[name] = (int(arr.size), int(np.count_nonzero(arr)))
    return counts


def global_sparsity_of_onnx(path: Path, original_params: int) -> float:
    """Fraction of the original prunable weights that are zero or gone in an ONNX model."""
    nonzero = sum(nz for _, nz in onnx_weight_counts(path).values())
    return 1.0 - nonzero / original_params
