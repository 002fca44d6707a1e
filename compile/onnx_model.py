"""The ONNX side of a compile: load and check the model, its static input shapes, which operators
TVM's importer knows, and the parity tolerance its outputs allow."""

from __future__ import annotations

from pathlib import Path

from edgeopt.errors import InputError, UnsupportedModelError

# Domains whose operators TVM's ONNX importer knows (it has no contrib ops, no QLinear* ops).
_ONNX_DOMAINS = ("", "ai.onnx")


def load_onnx(path: Path):
    import onnx

    if not path.is_file():
        raise InputError(f"ONNX model not found: {path}")
    try:
        model = onnx.load(str(path))
        onnx.checker.check_model(model)
    except Exception as exc:  # protobuf DecodeError, ValidationError, ...
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(f"{path} is not a valid ONNX model: {first}", hint="re-export it") from exc
    return model


def graph_input_shapes(model, *, overrides: dict[str, list[int]] | None = None) -> dict[str, list[int]]:
    """Static input shapes (`overrides` win); a symbolic dimension is an error naming the input."""
    inits = {i.name for i in model.graph.initializer}
    overrides = dict(overrides or {})
    shapes = {}
    for inp in model.graph.input:
        if inp.name in inits:
            continue
        if inp.name in overrides:
            shapes[inp.name] = list(overrides.pop(inp.name))
            continue
        dims = inp.type.tensor_type.shape.dim
        if any(not d.HasField("dim_value") for d in dims):
            shown = ",".join(d.dim_param or "?" if not d.HasField("dim_value") else str(d.dim_value) for d in dims)
            raise UnsupportedModelError(
                f"input {inp.name!r} has a symbolic shape ({shown})",
                hint=f"fix it with --input-shape {inp.name}=1,...",
            )
        shapes[inp.name] = [d.dim_value for d in dims]
    if overrides:
        raise UnsupportedModelError(
            f"--input-shape names no model input: {', '.join(overrides)}", hint=f"inputs: {', '.join(shapes)}"
        )
    return shapes


def unsupported_ops(model) -> list[str]:
    from tvm.relax.frontend.onnx.onnx_frontend import _get_convert_map

    known = _get_convert_map()
    missing = sorted(
        {
            f"{n.domain or 'ai.onnx'}::{n.op_type}"
            for n in model.graph.node
            if n.domain not in _ONNX_DOMAINS or n.op_type not in known
        }
    )
    return missing


FLOAT_TOLERANCE = 1e-4


def output_quant_step(model) -> float | None:
    """The quantization step of the first output if it leaves through DequantizeLinear: an int8
    model's outputs are multiples of it, so two correct int8 engines may differ by one step where
    a value sits on a rounding boundary."""
    from onnx import numpy_helper

    inits = {i.name: i for i in model.graph.initializer}
    producers = {o: n for n in model.graph.node for o in n.output}
    node = producers.get(model.graph.output[0].name)
    if node is None or node.op_type != "DequantizeLinear" or node.input[1] not in inits:
        return None
    scale = numpy_helper.to_array(inits[node.input[1]])
    return float(scale.max())


def default_tolerance(model) -> float:
    step = output_quant_step(model)
    return FLOAT_TOLERANCE if step is None else max(FLOAT_TOLERANCE, 1.001 * step)
