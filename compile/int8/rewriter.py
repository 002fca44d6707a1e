"""The expression mutator behind the int8 pass: per call, the fused path first (a whole layer
ending in a quantize, on the ISA's kernels), then the steps that keep quantized tensors as they
are, then the unfused rewrite of any other QDQ conv2d/matmul."""

from __future__ import annotations

from collections import Counter

from tvm.relax import PyExprMutator, expr_functor

from ..kernels import Isa
from .exprs import dtype_of, op_name
from .fused import Fused
from .match import Matcher
from .passthrough import Passthrough
from .stats import Int8Stats
from .unfused import Unfused


@expr_functor.mutator
class Rewriter(PyExprMutator, Matcher, Fused, Passthrough, Unfused):
    def __init__(self, mod, *, isa: Isa | None, stats: Int8Stats):
        super().__init__(mod)
        self.isa = isa  # None: no fused kernels, int32 Relax ops only
        self.int32 = None if isa is None else isa.int32_layers
        self.stats = stats
        self.orig: dict = {}  # the function being rewritten, as it was: var -> bound value
        self.uses: Counter = Counter()
        self.claimed: list = []  # conv2d/matmul calls that a fused chain will emit
        self.twins: dict = {}  # u8 NCHW/NC view var -> (layout, padded channels-last tensor, real channels)
        self.rows_layers: dict = {}  # NCHW output var of a conv2d_rows_requant call -> how it was made
        self.kernel_count = 0

    def visit_call_(self, call):
        if self.isa is not None:
            chain = self._chain(call)
            if chain is not None:
                return self._fused(*chain)
            if any(call.same_as(c) for c in self.claimed):
                return super().visit_call_(call)  # emitted by its chain; this copy dies
            passed = self._passthrough(call)
            if passed is not None:
                return passed
        new = super().visit_call_(call)  # args remapped; struct info only on the original
        rewrite = {"relax.nn.conv2d": self._conv2d, "relax.nn.conv1d": self._conv2d, "relax.matmul": self._matmul}.get(
            op_name(new)
        )
        out = rewrite(new, dtype_of(call)) if rewrite else None
        return new if out is None else out
