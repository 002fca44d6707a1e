"""Pattern matching for the int8 pass: which dequantize/quantize chains around a conv2d or matmul
it can rewrite. A mixin of the Rewriter (rewriter.py): it reads the function as it was before the
rewrite (`self.orig`, `self.uses`, filled by `scan`) and the rewriter's own bindings."""

from __future__ import annotations

from collections import Counter

import numpy as np
from tvm import relax
from tvm.ir.expr import Constant

from .exprs import const_array, dtype_of, op_name, shape_of
from .geometry import CONV_OPS, fused_ok, geometry, layouts_ok

LAYERS = (*CONV_OPS, "relax.matmul")


class Matcher:
    def scan(self, func) -> None:
        """Record `func` as it is (var -> bound value, use counts) and the layer calls that a
        fused chain will emit."""
        self.orig, self.uses, self.claimed = {}, Counter(), []
        for block in func.body.blocks:
            for b in block.bindings:
                self.orig[b.var] = b.value
                for v in relax.analysis.free_vars(b.value):
                    self.uses[v] += 1
        for v in relax.analysis.free_vars(func.body.body):
            self.uses[v] += 1
        for value in list(self.orig.values()):
            chain = self._chain(value)
            if chain is not None:
                self.claimed.append(chain[0])

    def _resolve(self, expr):
        while isinstance(expr, relax.Var):
            bound = self.lookup_binding(expr)
            if bound is None:
                bound = self.orig.get(expr)
            if bound is None:
                break
            expr = bound
        return expr

    def _dequant(self, expr, *, const: bool):
        """(q, scale ndarray, zero ndarray, axis) if `expr` is a dequantize of the wanted kind."""
        call = self._resolve(expr)
        if op_name(call) != "relax.dequantize":
            return None
        q, scale, zero = call.args
        scale, zero = const_array(self._resolve(scale)), const_array(self._resolve(zero))
        if scale is None or zero is None:
            return None
        if const:
            q = self._resolve(q)
            if not isinstance(q, Constant) or dtype_of(q) != "int8":
                return None
        elif dtype_of(q) not in ("uint8", "int8"):
            return None
        return q, scale, zero, int(call.attrs.axis)

    def _act(self, expr):
        """(q, scale, zero) of a per-tensor quantized activation."""
        got = self._dequant(expr, const=False)
        if got is None:
            return None
        q, scale, zero, _ = got
        if scale.size != 1 or zero.size != 1:
            return None
        return q, float(scale.reshape(())), int(zero.reshape(()))

    def _weight(self, expr, axis: int, what: str, *, quiet: bool = False):
        """(int8 constant, per-channel scales) of symmetric weights quantized along `axis`."""
        got = self._dequant(expr, const=True)
        if got is None:
            return None
        w, scale, zero, qaxis = got
        if np.any(zero != 0):
            quiet or self.stats.skipped.append(f"{what}: asymmetric weights")
            return None
        if scale.size != 1 and qaxis != axis:
            quiet or self.stats.skipped.append(f"{what}: weights quantized along axis {qaxis}")
            return None
        return w, scale.astype(np.float32).reshape(-1)

    def _single(self, expr):
        """The original value bound to `expr` if that value has no other user."""
        if isinstance(expr, relax.Var) and self.uses[expr] == 1:
            return self.orig.get(expr)
        return None

    def _const_expr(self, expr, depth: int = 0) -> bool:
        expr = self._resolve(expr)
        if isinstance(expr, (Constant, relax.ShapeExpr)):
            return True
        if isinstance(expr, relax.Call) and depth < 8:
            return all(self._const_expr(a, depth + 1) for a in expr.args)
        return False

    def _qparams(self, scale, zero):
        s, z = const_array(self._resolve(scale)), const_array(self._resolve(zero))
        if s is None or z is None or s.size != 1 or z.size != 1:
            return None
        return float(s.reshape(())), int(z.reshape(()))

    def _chain(self, q):
        """(core call, bias expr or None, out scale, out zero, out dtype) if `q` (an original
        quantize) ends a conv2d/conv1d/matmul layer the fused kernels can run."""
        if op_name(q) != "relax.quantize" or str(q.attrs.out_dtype) not in ("uint8", "int8"):
            return None
        out = self._qparams(q.args[1], q.args[2])
        if out is None:
            return None
        core, bias = self._core_and_bias(self._single(q.args[0]))
        n = self._matmul_ok(core) if op_name(core) == "relax.matmul" else self._conv_ok(core)
        if not n:
            return None
        if bias is not None:
            bshape = shape_of(bias)
            if not self._const_expr(bias) or bshape is None or int(np.prod(bshape)) != n or max(bshape) != n:
                return None
        return core, bias, out[0], out[1], str(q.attrs.out_dtype)

    def _core_and_bias(self, inner):
        """(layer call, bias) of `layer + bias` (either order) or of a bare layer."""
        if op_name(inner) != "relax.add":
            return inner, None
        for i in (0, 1):
            core = self._single(inner.args[i])
            if op_name(core) in LAYERS:
                return core, inner.args[1 - i]
        return None, None

    def _conv_ok(self, core) -> int:
        """Output channels of a conv2d/conv1d the fused kernels take, else 0 (any groups: see
        geometry.py)."""
        op = op_name(core)
        if op not in CONV_OPS or not layouts_ok(op, core.attrs) or dtype_of(core) != "float32":
            return 0
        act = self._act(core.args[0])
        wt = self._weight(core.args[1], 0, "conv", quiet=True)
        if act is None or wt is None or dtype_of(act[0]) != "uint8" or (shape_of(act[0]) or [0])[0] != 1:
            return 0
        g = geometry(op, core.attrs, const_array(wt[0]))
        if not fused_ok(g, shape_of(act[0])[1]):
            return 0
        return int(g.weights.shape[0])

    def _matmul_rhs(self, core):
        """(the weights' expression, whether they are transposed [N, K]) or None."""
        rhs = self._resolve(core.args[1])
        if op_name(rhs) == "relax.permute_dims":
            axes = rhs.attrs.axes
            if axes is None or [int(i) for i in axes] != [1, 0]:
                return None
            return rhs.args[0], True
        return core.args[1], False

    def _matmul_ok(self, core) -> int:
        """Output features of a matmul the fused kernels take, else 0."""
        got = self._matmul_rhs(core)
        if got is None or dtype_of(core) != "float32":
            return 0
        inner, transposed = got
        act = self._act(core.args[0])
        wt = self._weight(inner, 0 if transposed else 1, "matmul", quiet=True)
        if act is None or wt is None or dtype_of(act[0]) != "uint8" or len(shape_of(act[0]) or []) != 2:
            return 0
        w = const_array(wt[0])
        return int(w.shape[0] if transposed else w.shape[1]) if w.ndim == 2 else 0

    def _int_bias(self, bias, n: int, scale: np.ndarray):
        """The int32 bias if `bias` is dequantize(int32 constant, sx*sw, 0) (as onnxruntime's
        quantizer writes it): it then joins the integer zero-point correction."""
        if bias is None:
            return np.zeros(n, np.int64)
        expr = self._resolve(bias)
        while op_name(expr) == "relax.reshape":
            expr = self._resolve(expr.args[0])
        if op_name(expr) != "relax.dequantize":
            return None
        q = const_array(self._resolve(expr.args[0]))
        s, z = const_array(self._resolve(expr.args[1])), const_array(self._resolve(expr.args[2]))
        if q is None or s is None or z is None or str(q.dtype) != "int32" or q.size != n or np.any(z != 0):
            return None
        if not np.allclose(
            np.broadcast_to(s.reshape(-1), (n,)), np.broadcast_to(scale.reshape(-1), (n,)), rtol=1e-6, atol=0
        ):
            return None
        return q.reshape(-1).astype(np.int64)
