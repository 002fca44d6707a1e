"""Per-layer latency on the host: each prunable layer compiled alone with TVM and timed, so the
allocation can favour pruning where the time goes (convolutions cost far more time per weight
than fully connected layers)."""

from __future__ import annotations

import copy
import tempfile
from pathlib import Path

import torch
from torch import nn

from ..export import export_onnx
from ..models import InputSpec, Model
from ..sparsity import prunable_layers


@torch.no_grad()
def _input_shapes(module: nn.Module, input_shape: tuple[int, ...]) -> dict[str, tuple[int, ...]]:
    shapes = {}
    hooks = [
        layer.register_forward_pre_hook(lambda m, a, n=name: shapes.__setitem__(n, tuple(a[0].shape)))
        for name, layer in prunable_layers(module)
    ]
    try:
        module.eval()(torch.zeros(input_shape))
    finally:
        for h in hooks:
            h.remove()
    return shapes


def layer_latencies(module: nn.Module, input_shape: tuple[int, ...], names: list[str]) -> dict[str, float]:
    """Median milliseconds of each named layer, compiled on its own for the host."""
    from edgeopt.compile import compile_onnx, get_target
    from edgeopt.compile.timing import HostTimer

    shapes = _input_shapes(module, input_shape)
    layers = dict(prunable_layers(module))
    out = {}
    with tempfile.TemporaryDirectory(prefix="edgeopt-layer-") as tmp:
        for name in names:
            single = Model(nn.Sequential(copy.deepcopy(layers[name])).eval(), InputSpec("input", shapes[name]))
            onnx_path = export_onnx(single, Path(tmp) / f"{name}.onnx")
            bundle, _ = compile_onnx(onnx_path, target=get_target("host"), out_dir=Path(tmp) / f"b{name}")
            out[name] = HostTimer(bundle.path / "model.so", shapes[name]).median_ms(
                number=100, repeat=3, min_repeat_ms=20
            )
    return out
