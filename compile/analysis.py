"""What a lowered Relax module holds, for the manifest: its constants' bytes and the kernels
`main` calls."""

from __future__ import annotations

import numpy as np


def call_plan(mod) -> list[dict] | None:
    """The kernels `main` calls, in order, with the shapes and dtypes of their arguments
    (inputs, then outputs); None if any shape is not static."""
    from tvm import relax

    plan = []
    for block in mod["main"].body.blocks:
        for binding in block.bindings:
            call = binding.value
            if not isinstance(call, relax.Call) or getattr(call.op, "name", None) != "relax.call_tir":
                continue
            outs = call.ty_args[0]
            outs = list(outs.fields) if hasattr(outs, "fields") else [outs]
            args = []
            for info in [a.ty for a in call.args[1].fields] + outs:
                try:
                    args.append({"shape": [int(d) for d in info.shape], "dtype": str(info.dtype)})
                except (TypeError, AttributeError):
                    return None
            plan.append({"name": call.args[0].name_hint, "args": args})
    return plan


def constant_bytes(mod) -> dict[str, int]:
    """Bytes of the Relax constants left in `mod`, by dtype (what the library will embed)."""
    from tvm import relax
    from tvm.ir.expr import Constant

    seen: list[tuple[str, int]] = []

    def visit(expr):
        arr = getattr(expr, "value", None) if isinstance(expr, Constant) else None
        if hasattr(arr, "numpy"):
            seen.append((str(arr.dtype), int(np.prod(arr.shape, dtype=np.int64)) * np.dtype(str(arr.dtype)).itemsize))

    for _, func in mod.functions_items():
        if isinstance(func, relax.Function):
            relax.analysis.post_order_visit(func, visit)
    out: dict[str, int] = {}
    for dtype, nbytes in seen:
        out[dtype] = out.get(dtype, 0) + nbytes
    return out
