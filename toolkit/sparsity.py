"""Sparsity measured one way everywhere: the weights of Linear and Conv layers (biases and norms
excluded) that are zero or removed, counted from the weights themselves, never from masks."""
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
    params: int  # prunable weights in the layer
    zeros: int
    macs: int  # per sample, as a dense kernel executes them
    nonzero_macs: int  # what a kernel skipping zero weights would execute

    @property
    def sparsity(self) -> float:
        return self.zeros / self.params if self.params else 0.0

    def to_json(self) -> dict:
        return {**asdict(self), "sparsity": round(self.sparsity, 6)}


def prunable_layers(module: nn.Module) -> list[tuple[str, nn.Module]]:
    return [(n, m) for n, m in module.named_modules() if isinstance(m, PRUNABLE)]


@torch.no_grad()
def measure(module: nn.Module, input_shape: tuple[int, ...]) -> list[LayerSparsity]:
    """Per-layer counts for a module, MACs from one forward pass of a batch-1 input."""
    out_elems: dict[str, int] = {}
    hooks = []
    for name, layer in prunable_layers(module):
        def hook(mod, inp, out, name=name):
            sample = out[0]
            channels = sample.shape[0] if isinstance(mod, CONV) else sample.shape[-1]
            out_elems[name] = sample.numel() // channels  # output positions per weight

        hooks.append(layer.register_forward_hook(hook))
    try:
        was_training = module.training
        module.eval()
        module(torch.zeros(input_shape))
        module.train(was_training)
    finally:
        for h in hooks:
            h.remove()
    layers = []
    for name, layer in prunable_layers(module):
        w = layer.weight.detach()
        positions = out_elems[name]
        zeros = int((w == 0).sum())
        layers.append(
            LayerSparsity(
                name=name,
                kind=type(layer).__name__,
                params=w.numel(),
                zeros=zeros,
                macs=w.numel() * positions,
                nonzero_macs=(w.numel() - zeros) * positions,
            )
        )
    return layers


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
        while name not in inits and name in producers and producers[name].op_type in ("DequantizeLinear", "Transpose", "Identity"):
            name = producers[name].input[0]
        if name in inits:
            arr = numpy_helper.to_array(inits[name])
            counts[name] = (int(arr.size), int(np.count_nonzero(arr)))
    return counts


def global_sparsity_of_onnx(path: Path, original_params: int) -> float:
    """Fraction of the original prunable weights that are zero or gone in an ONNX model."""
    nonzero = sum(nz for _, nz in onnx_weight_counts(path).values())
    return 1.0 - nonzero / original_params
