"""ONNX -> torch, so an ONNX-only model can be pruned and fine-tuned like any torch module.

Hand-written on purpose: the maintained converter, onnx2torch 1.5.15, imports torchvision, and
PyPI's torchvision wheels for torch 2.13 on Linux are CUDA builds that do not load next to the
CPU torch this project pins. The operators below are what torch's exporters emit for
convolutional, recurrent-free classifiers and MLPs; weights become real nn.Conv1d/2d and
nn.Linear layers (what pruning works on), everything else runs as torch functions, node by node
in the graph's order. Any other operator is refused by name (UnsupportedModelError)."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Callable

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from edgeopt.errors import UnsupportedModelError


def _key(name: str) -> str:
    return re.sub(r"[^0-9A-Za-z_]", "_", name) or "_"


class OnnxModule(nn.Module):
    """An ONNX graph as a torch module: `layers` hold the weights, `steps` the node order."""

    def __init__(self, input_name: str, output_name: str) -> None:
        super().__init__()
        self.input_name = input_name
        self.output_name = output_name
        self.layers = nn.ModuleDict()
        self.steps: list[tuple[str, list[str], list[str], dict]] = []  # (op, inputs, outputs, attrs)
        self._consts: dict[str, str] = {}  # tensor name -> buffer name

    def add_const(self, name: str, value: np.ndarray) -> None:
        buf = f"c_{_key(name)}"
        self.register_buffer(buf, torch.from_numpy(np.array(value)))
        self._consts[name] = buf

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        env: dict[str, torch.Tensor] = {self.input_name: x}
        for op, ins, outs, attrs in self.steps:
            args = [
                env[i] if i in env else (getattr(self, self._consts[i]) if i in self._consts else None) for i in ins
            ]
            result = RUN[op](self, args, attrs)
            env[outs[0]] = result
        return env[self.output_name]


# -- what each step does at run time (op -> fn(module, inputs, attrs)) ------------------------


def _pool_args(attrs: dict, dims: int) -> dict:
    pads = attrs.get("pads", [0] * 2 * dims)
    return {
        "kernel_size": attrs["kernel_shape"],
        "stride": attrs.get("strides", attrs["kernel_shape"]),
        "padding": pads[:dims],
        "ceil_mode": bool(attrs.get("ceil_mode", 0)),
    }


def _maxpool(m, a, at):
    dims = a[0].dim() - 2
    return (F.max_pool1d if dims == 1 else F.max_pool2d)(
        a[0], dilation=at.get("dilations", [1] * dims), **_pool_args(at, dims)
    )


def _avgpool(m, a, at):
    dims = a[0].dim() - 2
    return (F.avg_pool1d if dims == 1 else F.avg_pool2d)(
        a[0], count_include_pad=bool(at.get("count_include_pad", 0)), **_pool_args(at, dims)
    )


def _reshape(m, a, at):
    target = [int(d) for d in at["shape"]]
    if len(target) == 2:  # a flatten: keep the batch, whatever the (pruned) width
        return torch.flatten(a[0], 1)
    return a[0].reshape(a[0].shape[0], *[a[0].shape[i] if d == 0 else d for i, d in enumerate(target)][1:])


def _reduce_mean(m, a, at):
    axes = at.get("axes")
    if axes is None and len(a) > 1 and a[1] is not None:
        axes = [int(v) for v in a[1].tolist()]
    axes = axes if axes is not None else list(range(a[0].dim()))
    return a[0].mean(dim=axes, keepdim=bool(at.get("keepdims", 1)))


def _clip(m, a, at):
    lo = a[1].item() if len(a) > 1 and a[1] is not None else at.get("min", -float("inf"))
    hi = a[2].item() if len(a) > 2 and a[2] is not None else at.get("max", float("inf"))
    return torch.clamp(a[0], lo, hi)


def _squeeze(m, a, at):
    axes = at.get("axes") or ([int(v) for v in a[1].tolist()] if len(a) > 1 and a[1] is not None else None)
    return a[0].squeeze(tuple(axes)) if axes is not None else a[0].squeeze()


def _unsqueeze(m, a, at):
    out = a[0]
    for ax in sorted(at.get("axes") or [int(v) for v in a[1].tolist()]):
        out = out.unsqueeze(ax)
    return out


STATIC_ARGS = {"ReduceMean": ("axes",), "Squeeze": ("axes",), "Unsqueeze": ("axes",), "Clip": ("min", "max")}

RUN: dict[str, Callable] = {
    "layer": lambda m, a, at: m.layers[at["layer"]](a[0]),
    "pad_layer": lambda m, a, at: m.layers[at["layer"]](F.pad(a[0], at["pad"])),
    "Relu": lambda m, a, at: F.relu(a[0]),
    "Clip": _clip,
    "Sigmoid": lambda m, a, at: torch.sigmoid(a[0]),
    "Tanh": lambda m, a, at: torch.tanh(a[0]),
    "HardSigmoid": lambda m, a, at: torch.clamp(at.get("alpha", 0.2) * a[0] + at.get("beta", 0.5), 0, 1),
    "HardSwish": lambda m, a, at: F.hardswish(a[0]),
    "LeakyRelu": lambda m, a, at: F.leaky_relu(a[0], at.get("alpha", 0.01)),
    "Add": lambda m, a, at: a[0] + a[1],
    "Sub": lambda m, a, at: a[0] - a[1],
    "Mul": lambda m, a, at: a[0] * a[1],
    "Div": lambda m, a, at: a[0] / a[1],
    "Identity": lambda m, a, at: a[0],
    "Dropout": lambda m, a, at: a[0],
    "Flatten": lambda m, a, at: torch.flatten(a[0], at.get("axis", 1)),
    "Reshape": _reshape,
    "GlobalAveragePool": lambda m, a, at: a[0].mean(dim=tuple(range(2, a[0].dim())), keepdim=True),
    "GlobalMaxPool": lambda m, a, at: a[0].amax(dim=tuple(range(2, a[0].dim())), keepdim=True),
    "ReduceMean": _reduce_mean,
    "MaxPool": _maxpool,
    "AveragePool": _avgpool,
    "Concat": lambda m, a, at: torch.cat(a, dim=at.get("axis", 1)),
    "Softmax": lambda m, a, at: torch.softmax(a[0], dim=at.get("axis", -1)),
    "Transpose": lambda m, a, at: a[0].permute(*at["perm"]),
    "Squeeze": _squeeze,
    "Unsqueeze": _unsqueeze,
}


# -- conversion: ONNX nodes -> steps (weights become layers) ---------------------------------


def _attrs(node) -> dict:
    import onnx

    return {a.name: onnx.helper.get_attribute_value(a) for a in node.attribute}


def _conv(mod: OnnxModule, node, inits: dict, at: dict) -> None:
    if at.get("auto_pad", b"NOTSET") not in (b"NOTSET", "NOTSET"):
        raise UnsupportedModelError(f"Conv {node.name!r} uses auto_pad; export with explicit pads")
    w = inits.get(node.input[1])
    if w is None:
        raise UnsupportedModelError(f"Conv {node.name!r} takes its weights from the graph, not an initializer")
    dims = w.ndim - 2
    if dims not in (1, 2):
        raise UnsupportedModelError(f"Conv {node.name!r} is {dims}-D; 1-D and 2-D convolutions are supported")
    b = inits.get(node.input[2]) if len(node.input) > 2 and node.input[2] else None
    groups = at.get("group", 1)
    pads = list(at.get("pads", [0] * 2 * dims))
    begin, end = pads[:dims], pads[dims:]
    cls = nn.Conv1d if dims == 1 else nn.Conv2d
    layer = cls(
        w.shape[1] * groups,
        w.shape[0],
        tuple(w.shape[2:]),
        stride=tuple(at.get("strides", [1] * dims)),
        padding=tuple(begin) if begin == end else 0,
        dilation=tuple(at.get("dilations", [1] * dims)),
        groups=groups,
        bias=b is not None,
    )
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.array(w)))
        if b is not None:
            layer.bias.copy_(torch.from_numpy(np.array(b)))
    name = _key(node.name or node.output[0])
    mod.layers[name] = layer
    if begin == end:
        mod.steps.append(("layer", [node.input[0]], list(node.output), {"layer": name}))
    else:  # F.pad takes the last axis first: (left, right, top, bottom)
        pad = [p for i in reversed(range(dims)) for p in (begin[i], end[i])]
        mod.steps.append(("pad_layer", [node.input[0]], list(node.output), {"layer": name, "pad": pad}))


def _linear(mod: OnnxModule, node, weight: np.ndarray, bias: np.ndarray | None, out: str) -> None:
    """weight as nn.Linear keeps it: (out_features, in_features)."""
    layer = nn.Linear(weight.shape[1], weight.shape[0], bias=bias is not None)
    with torch.no_grad():
        layer.weight.copy_(torch.from_numpy(np.ascontiguousarray(weight)))
        if bias is not None:
            layer.bias.copy_(torch.from_numpy(np.broadcast_to(bias, (weight.shape[0],)).copy()))
    name = _key(node.name or out)
    mod.layers[name] = layer
    mod.steps.append(("layer", [node.input[0]], [out], {"layer": name}))


def _gemm(mod: OnnxModule, node, inits: dict, at: dict) -> None:
    b = inits.get(node.input[1])
    if b is None or at.get("transA", 0):
        raise UnsupportedModelError(f"Gemm {node.name!r} does not multiply by a weight initializer")
    w = (b if at.get("transB", 0) else b.T) * at.get("alpha", 1.0)
    c = inits.get(node.input[2]) * at.get("beta", 1.0) if len(node.input) > 2 and node.input[2] in inits else None
    _linear(mod, node, w.astype(np.float32), None if c is None else c.astype(np.float32), node.output[0])


def convert(path: Path) -> OnnxModule:
    """The ONNX model at `path` as an OnnxModule; refuses an operator it does not know by name."""
    import onnx
    from onnx import numpy_helper

    model = onnx.load(str(path))
    graph = model.graph
    inits = {i.name: numpy_helper.to_array(i) for i in graph.initializer}
    for node in graph.node:  # Constant nodes are initializers by another name
        if node.op_type == "Constant":
            inits[node.output[0]] = numpy_helper.to_array(node.attribute[0].t)
    inputs = [i.name for i in graph.input if i.name not in inits]
    if len(inputs) != 1 or len(graph.output) != 1:
        raise UnsupportedModelError(
            f"{path} has {len(inputs)} inputs and {len(graph.output)} outputs; conversion for pruning takes one of each"
        )
    mod = OnnxModule(inputs[0], graph.output[0].name)
    consumers: dict[str, list] = {}
    for node in graph.node:
        for i in node.input:
            consumers.setdefault(i, []).append(node)
    fused: set[int] = set()
    try:
        inferred = onnx.shape_inference.infer_shapes(model).graph
        ranks = {v.name: len(v.type.tensor_type.shape.dim) for v in [*inferred.value_info, *inferred.input]}
    except Exception:  # shape inference is only a hint for BatchNorm's rank
        ranks = {}
    for node in graph.node:
        if id(node) in fused or node.op_type == "Constant":
            continue
        at = _attrs(node)
        if node.op_type == "Conv":
            _conv(mod, node, inits, at)
        elif node.op_type == "Gemm":
            _gemm(mod, node, inits, at)
        elif node.op_type == "MatMul" and node.input[1] in inits and inits[node.input[1]].ndim == 2:
            out, bias = node.output[0], None
            users = consumers.get(out, [])
            if len(users) == 1 and users[0].op_type == "Add":  # MatMul + bias: one Linear
                other = [i for i in users[0].input if i != out]
                if other and other[0] in inits and inits[other[0]].size == inits[node.input[1]].shape[1]:
                    bias, out = inits[other[0]].reshape(-1), users[0].output[0]
                    fused.add(id(users[0]))
            _linear(mod, node, inits[node.input[1]].T.astype(np.float32), bias, out)
        elif node.op_type == "BatchNormalization" and all(i in inits for i in node.input[1:5]):
            scale, bias, mean, var = (inits[i] for i in node.input[1:5])
            rank = ranks.get(node.input[0], 4)
            layer = (nn.BatchNorm2d if rank == 4 else nn.BatchNorm1d)(len(scale), eps=at.get("epsilon", 1e-5))
            with torch.no_grad():
                for t, v in (
                    (layer.weight, scale),
                    (layer.bias, bias),
                    (layer.running_mean, mean),
                    (layer.running_var, var),
                ):
                    t.copy_(torch.from_numpy(v.astype(np.float32)))
            name = _key(node.name or node.output[0])
            mod.layers[name] = layer
            mod.steps.append(("layer", [node.input[0]], [node.output[0]], {"layer": name}))
        elif node.op_type == "Reshape":
            if node.input[1] not in inits:
                raise UnsupportedModelError(
                    f"Reshape {node.name!r} takes its shape from the graph (a dynamic shape)",
                    hint="export with static shapes (torch.onnx.export with a fixed example)",
                )
            mod.steps.append(("Reshape", [node.input[0]], list(node.output), {"shape": inits[node.input[1]].tolist()}))
        elif node.op_type in STATIC_ARGS and all(i in inits for i in node.input[1:] if i):
            # axes and clip bounds are constants: kept as python values, never read from a tensor
            names = STATIC_ARGS[node.op_type]
            for key, i in zip(names, node.input[1:]):
                if i:
                    v = inits[i]
                    at[key] = [int(a) for a in v.reshape(-1)] if key == "axes" else float(v)
            mod.steps.append((node.op_type, [node.input[0]], list(node.output), at))
        elif node.op_type in RUN:
            for i in node.input:
                if i in inits and i not in mod._consts:
                    mod.add_const(i, inits[i].astype(np.float32) if inits[i].dtype == np.float64 else inits[i])
            mod.steps.append((node.op_type, list(node.input), list(node.output), at))
        else:
            raise UnsupportedModelError(
                f"cannot convert {path.name} to torch for pruning: operator {node.op_type} (node "
                f"{node.name!r}) is not supported",
                hint=f"supported: Conv, Gemm, MatMul, {', '.join(sorted(k for k in RUN if k[0].isupper()))}; "
                "or prune in torch and bring the torch model",
            )
    return mod.eval()
