"""The int8 lowering as a Relax module pass."""

from __future__ import annotations

import tvm
from tvm import relax

from .. import kernels as isas
from .rewriter import Rewriter
from .stats import Int8Stats


@tvm.ir.transform.module_pass(opt_level=0, name="LowerQDQToInt8")
class LowerQDQToInt8:
    """Rewrite a QDQ model's conv2d/matmul layers to integer arithmetic. `kernels`: a registered
    ISA name (compile/kernels) for fused layers on its dot products, or None for int32 Relax ops
    with fp32 between layers. What it did is in `.stats` after it ran (one pass object, one run)."""

    def __init__(self, kernels: str | None = None):
        self.isa = None if kernels is None else isas.get(kernels)
        self.stats = Int8Stats(kernels=kernels)

    def transform_module(self, mod, ctx):
        rewriter = Rewriter(mod, isa=self.isa, stats=self.stats)
        for gv, func in mod.functions_items():
            if isinstance(func, relax.Function):
                rewriter.scan(func)
                rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
        out = rewriter.builder_.get()
        # the fused chains leave var-to-var bindings that would keep FuseOps from fusing their neighbours
        out = relax.transform.CanonicalizeBindings()(out)
        return relax.transform.DeadCodeElimination()(out)


def lower_qdq_to_int8(mod, *, kernels: str | None = None):
    """Return (module, Int8Stats). Run it on the imported module, before the "zero" pipeline."""
    lowering = LowerQDQToInt8(kernels)
    return lowering(mod), lowering.stats
