"""Small readers of Relax expressions the int8 pass matches on."""

from __future__ import annotations

from tvm import ir, relax
from tvm.ir.expr import Constant


def const_array(expr):
    """The numpy value of a Relax constant, None for anything else."""
    value = getattr(expr, "value", None) if isinstance(expr, Constant) else None
    return value.numpy() if hasattr(value, "numpy") else None


def dtype_of(expr) -> str:
    info = getattr(expr, "struct_info", None) or expr.ty  # `ty` in TVM 0.27
    return str(info.dtype)


def op_name(expr) -> str | None:
    if isinstance(expr, relax.Call) and isinstance(expr.op, ir.Op):
        return expr.op.name
    return None


def shape_of(expr) -> list[int] | None:
    info = getattr(expr, "struct_info", None) or expr.ty
    try:
        return [int(d) for d in info.shape]
    except (TypeError, AttributeError):
        return None
