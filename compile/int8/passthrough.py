"""Steps between fused layers that keep the quantized tensors as they are: quantize(op(
dequantize(x))) with the same scale and zero point is op on x itself for max pooling, reshapes
and a bare dequantize; a residual add of two channels-last tensors stays channels-last; a global
mean reduces a channels-last tensor in place; a 2x2 max-pool after the pixel-vector first layer
runs inside that layer's kernel; a 1-D max-pool after a 1-D layer is a 1 x k one on its twin.
A mixin of the Rewriter (rewriter.py)."""

from __future__ import annotations

import numpy as np
from tvm import relax

from ..kernels import layers as v
from .exprs import dtype_of, op_name, shape_of


class Passthrough:
    def _passthrough(self, q):
        if op_name(q) == "relax.mean":
            return self._global_mean(q)
        if op_name(q) != "relax.quantize" or not isinstance(q.args[0], relax.Var):
            return None
        out = self._qparams(q.args[1], q.args[2])
        inner = self.orig.get(q.args[0])
        op = op_name(inner)
        if out is None or op is None:
            return None
        if op == "relax.dequantize":
            dq = self._same_dq(q, q.args[0], out)
            return None if dq is None else self.visit_expr(dq.args[0])
        if op == "relax.reshape":
            dq = self._same_dq(q, inner.args[0], out)
            return None if dq is None else relax.op.reshape(self.visit_expr(dq.args[0]), inner.args[1])
        if op == "relax.nn.max_pool2d" and inner.attrs.layout == "NCHW":
            dq = self._same_dq(q, inner.args[0], out)
            return None if dq is None else self._max_pool(inner.attrs, dq)
        if op == "relax.nn.max_pool1d" and inner.attrs.layout == "NCW":
            dq = self._same_dq(q, inner.args[0], out)
            return None if dq is None else self._max_pool1d(inner.attrs, dq)
        if op == "relax.add":
            return self._residual_add(q, inner, out)
        return None

    def _same_dq(self, q, expr, out):
        """The dequantize bound to `expr` if it has `q`'s dtype, scale and zero point."""
        dq = self.orig.get(expr) if isinstance(expr, relax.Var) else None
        if op_name(dq) != "relax.dequantize" or dtype_of(dq.args[0]) != str(q.attrs.out_dtype):
            return None
        return dq if self._qparams(dq.args[1], dq.args[2]) == out else None

    def _max_pool(self, a, dq):
        bb = self.builder_
        x = self.visit_expr(dq.args[0])
        twin = self._twin(x)
        kwargs = dict(
            pool_size=a.pool_size, strides=a.strides, padding=a.padding, dilation=a.dilation, ceil_mode=a.ceil_mode
        )
        pooled = self._pooled_rows(x, a, dq.args[0])
        if pooled is not None:
            return pooled
        if twin is None and len(shape_of(x) or ()) == 4:  # pool straight into the channels-last layout
            out4 = bb.emit(relax.op.permute_dims(relax.op.nn.max_pool2d(x, layout="NCHW", **kwargs), [0, 2, 3, 1]))
            return self._nhwc_view(out4, shape_of(x)[1], shape_of(x)[1])
        if twin is None or twin[0] != "NHWC":
            return relax.op.nn.max_pool2d(x, layout="NCHW", **kwargs)
        out4 = bb.emit(relax.op.nn.max_pool2d(twin[1], layout="NHWC", **kwargs))
        return self._nhwc_view(out4, twin[2], shape_of(twin[1])[3])

    def _max_pool1d(self, a, dq):
        """A 1-D layer's max-pool on its channels-last one-row twin (a 1 x k 2-D pool)."""
        bb = self.builder_
        x = self.visit_expr(dq.args[0])
        twin = self._twin(x)
        (k,), (s,), (d,), pad = a.pool_size, a.strides, a.dilation, [int(p) for p in a.padding]
        if twin is None or twin[0] != "NHWC":
            return relax.op.nn.max_pool1d(
                x,
                pool_size=a.pool_size,
                strides=a.strides,
                padding=a.padding,
                dilation=a.dilation,
                ceil_mode=a.ceil_mode,
                layout="NCW",
            )
        out4 = bb.emit(
            relax.op.nn.max_pool2d(
                twin[1],
                pool_size=(1, int(k)),
                strides=(1, int(s)),
                padding=(0, pad[0], 0, pad[1]),
                dilation=(1, int(d)),
                ceil_mode=a.ceil_mode,
                layout="NHWC",
            )
        )
        view = bb.emit(relax.op.squeeze(self._nhwc_view(out4, twin[2], shape_of(twin[1])[3]), [2]))
        self.twins[view] = ("NHWC", out4, twin[2])
        return view

    def _residual_add(self, q, inner, out):
        a, b = (self.orig.get(e) if isinstance(e, relax.Var) else None for e in inner.args)
        if op_name(a) != "relax.dequantize" or op_name(b) != "relax.dequantize":
            return None
        pa, pb = self._qparams(a.args[1], a.args[2]), self._qparams(b.args[1], b.args[2])
        ta, tb = self._twin(self.visit_expr(a.args[0])), self._twin(self.visit_expr(b.args[0]))
        if (
            pa is None
            or pb is None
            or ta is None
            or tb is None
            or ta[0] != "NHWC"
            or tb[0] != "NHWC"
            or shape_of(ta[1]) != shape_of(tb[1])
            or ta[2] != tb[2]
        ):
            return None
        bb = self.builder_
        shape, out_dtype = tuple(shape_of(ta[1])), str(q.attrs.out_dtype)
        func = v.add_requant(shape, pa, pb, out, dtype_of(ta[1]), out_dtype)
        name = self._name("add_requant_")
        gv = bb.add_func(func.with_attr("global_symbol", name), name)
        out4 = bb.emit(relax.call_tir(gv, [ta[1], tb[1]], relax.TensorType(shape, out_dtype)))
        view = self._nhwc_view(out4, ta[2], shape[3])
        if len(shape_of(q) or ()) == 3:  # two 1-D layers' outputs: NCW again, the same twin
            view3 = bb.emit(relax.op.squeeze(view, [2]))
            self.twins[view3] = self.twins[view]
            return view3
        return view

    def _global_mean(self, call):
        """mean(dequantize(x), every spatial axis) of a channels-last x (NCHW axes 2, 3 or a 1-D
        layer's NCW axis 2; keepdims or not): reduce it in place instead of transposing it back."""
        dq = self.orig.get(call.args[0]) if isinstance(call.args[0], relax.Var) else None
        axes = call.attrs.axis
        if op_name(dq) != "relax.dequantize" or axes is None:
            return None
        rank = len(shape_of(dq) or ())
        if rank not in (3, 4) or sorted(int(a) % rank for a in axes) != list(range(2, rank)):
            return None
        params = self._qparams(dq.args[1], dq.args[2])
        twin = self._twin(self.visit_expr(dq.args[0]))
        if params is None or twin is None or twin[0] != "NHWC":
            return None
        bb = self.builder_
        t, n = twin[1], twin[2]
        real = bb.emit(
            relax.op.dequantize(
                t, relax.const(np.float32(params[0])), relax.const(np.array(params[1], dtype_of(t))), axis=3
            )
        )
        pooled = bb.emit(relax.op.mean(real, axis=[1, 2], keepdims=True))  # [1, 1, 1, np_]
        if shape_of(t)[3] != n:
            pooled = bb.emit(relax.op.strided_slice(pooled, axes=[3], begin=[0], end=[n]))
        return relax.op.reshape(pooled, shape_of(call))  # the n values in channel order, any rank

    def _pooled_rows(self, x, attrs, conv_q):
        """The first layer's kernel again, with the 2x2 max-pool after it done on its int32
        sums, if `x` is that layer's output and the pool is its only reader."""
        while x not in self.rows_layers and isinstance(self.lookup_binding(x), relax.Var):
            x = self.lookup_binding(x)  # the var-to-var bindings a rewritten layer leaves
        layer = self.rows_layers.get(x)
        if (
            layer is None
            or self.uses[conv_q] != 1
            or attrs.ceil_mode
            or [int(i) for i in attrs.pool_size] != [2, 2]
            or [int(i) for i in attrs.strides] != [2, 2]
            or any(int(i) for i in attrs.padding)
            or [int(i) for i in attrs.dilation] != [1, 1]
        ):
            return None
        bb = self.builder_
        n, np_ = layer["n"], layer["np"]
        ph, pw = layer["oh"] // 2, layer["ow"] // 2
        func = v.conv2d_rows_requant(*layer["key"], pool=2, isa=self.isa.name)
        name = self._name(f"{self.isa.name}_conv2d_rows_maxpool_requant_{ph}x{pw}_{np_}_")
        gv = bb.add_func(func.with_attr("global_symbol", name), name)
        owp = v.rows_shape(*layer["key"][:5])["owp"]
        out = bb.emit(relax.call_tir(gv, layer["args"], relax.TensorType((1, np_, ph, owp // 2), layer["out_dtype"])))
        self.stats.pools += 1
        view = bb.emit(relax.op.strided_slice(out, axes=[1, 3], begin=[0, 0], end=[n, pw]))
        out4 = bb.emit(relax.op.permute_dims(view, [0, 2, 3, 1]))
        return self._nhwc_view(out4, n, n)
