"""The fused path: quantize(add(conv2d|conv1d|matmul, bias)) -> one hand-scheduled kernel
(compile/kernels/layers.py, on the target's ISA) whose output is already the next layer's uint8
input, kept channels-last between layers. A mixin of the Rewriter (rewriter.py).

Each fused layer is planned (`_plan_matmul`, `_plan_conv`: the kernel, its input and packed
weights) and then emitted the same way (`_emit_fused`: zero-point correction, scale, bias, call).
Its output is registered as a "twin": the channels-last or padded tensor that an NCHW/NC view
stands for, so the next fused layer reads it in place. A 1-D convolution runs as a 2-D one on a
one-row image and a grouped one as a dense one with block-diagonal weights (geometry.py); the
NCW view of a 1-D layer's output is a twin too.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from tvm import relax

from ..kernels import layers as v
from ..sizes import round_up
from .exprs import const_array, dtype_of, op_name, shape_of
from .geometry import geometry


@dataclass
class _Plan:
    """One fused layer before emission."""

    src: object  # the kernel's input expression
    func: object  # the scheduled PrimFunc
    packed: np.ndarray  # packed weights
    corr_n: np.ndarray  # (zx - isa.act_shift) * sum(W) per output channel
    scale_n: np.ndarray  # sx * sw per output channel
    int_bias: np.ndarray | None  # folded into the correction, or None: an fp32 bias argument
    n: int
    np_: int
    shape: tuple  # the kernel's output shape
    stem: str  # kernel name stem
    rows_key: tuple | None = None  # pixel-vector first layer: its conv2d_rows_requant arguments
    one_d: bool = False  # a conv1d: its output view is NCW [1, n, ow]
    column: bool = False  # a dilated conv1d, run one column high: output [1, oh, 1, np_]


class Fused:
    def _fused(self, core, bias, out_scale: float, out_zero: int, out_dtype: str):
        args = [self.visit_expr(a) for a in core.args]
        x, sx, zx = self._act(args[0])
        out = (out_scale, out_zero, out_dtype)
        if op_name(core) == "relax.matmul":
            plan = self._plan_matmul(core, x, sx, zx, bias, out)
            self.stats.matmul += 1
        else:
            plan = self._plan_conv(core, args[1], x, sx, zx, bias, out)
        return self._emit_fused(plan, bias, out_scale, out_dtype)

    def _plan_matmul(self, core, x, sx, zx, bias, out) -> _Plan:
        bb, isa = self.builder_, self.isa.name
        inner, transposed = self._matmul_rhs(core)
        w, sw = self._weight(self.visit_expr(inner), 0 if transposed else 1, "matmul")
        wv = const_array(w).astype(np.int64)
        w_nk = wv if transposed else wv.T
        n, k = w_nk.shape
        twin = self._twin(x)
        kp = round_up(k, 4)
        if twin is not None and twin[0] == "NC":
            src, (m, cols) = twin[1], shape_of(twin[1])
        else:
            m = shape_of(x)[0]
            src = bb.emit(relax.op.nn.pad(x, [0, 0, 0, kp - k], pad_value=0.0)) if kp != k else x
            cols = kp
        lanes = v.lanes_for(isa, n)
        np_ = round_up(n, lanes)
        scale_n = np.float32(sx) * sw
        int_bias = self._int_bias(bias, n, scale_n)
        func = v.gemm_requant(m, cols, kp, np_, *out, float_bias=int_bias is None, isa=isa, lanes=lanes)
        return _Plan(
            src=src,
            func=func,
            packed=v.pack_weights(w_nk.astype(np.int8), kp=kp, isa=isa, lanes=lanes),
            corr_n=(zx - self.isa.act_shift) * w_nk.sum(axis=1),
            scale_n=scale_n,
            int_bias=int_bias,
            n=n,
            np_=np_,
            shape=(m, np_),
            stem=f"{isa}_gemm_requant_{m}x{kp}x{np_}_",
        )

    def _plan_conv(self, core, w_expr, x, sx, zx, bias, out) -> _Plan:
        w, sw = self._weight(w_expr, 0, "conv")
        g = geometry(op_name(core), core.attrs, const_array(w))
        self.stats.conv1d += g.one_d
        self.stats.conv2d += not g.one_d
        self.stats.grouped += g.grouped
        kgroups = g.kernel_groups(lambda n: v.lanes_for(self.isa.name, n)) if g.grouped else 1
        wv = g.weights if g.depthwise else g.block_weights(kgroups)
        n, c, kh, kw = wv.shape
        pad, stride, dh = g.pad, g.stride, g.dilation[0]
        in_c = c * (g.groups if g.depthwise else kgroups)
        twin = self._twin(x)
        if twin is not None and twin[0] == "NHWC":
            src = twin[1]
            if g.column:  # a 1-D twin [1, 1, T, C] is [1, T, 1, C] as well
                src = self.builder_.emit(relax.op.reshape(src, (1, shape_of(src)[2], 1, shape_of(src)[3])))
            if shape_of(src)[3] != in_c:
                src = self.builder_.emit(relax.op.strided_slice(src, axes=[3], begin=[0], end=[in_c]))
            h, wd = shape_of(src)[1:3]
        else:
            if g.one_d:  # [1, C, T] -> [1, C, 1, T] (a row) or [1, C, T, 1] (a column)
                x = self.builder_.emit(relax.op.expand_dims(x, 3 if g.column else 2))
            src = self.builder_.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
            h, wd = shape_of(x)[2:]
        hp, wp = h + pad[0] + pad[2], wd + pad[1] + pad[3]
        oh, ow = v.out_hw(hp, wp, kh=kh, kw=kw, stride=stride, dilation=(dh, 1))
        scale_n = np.float32(sx) * sw
        int_bias = self._int_bias(bias, n, scale_n)
        if g.depthwise:
            plan = self._plan_depthwise(
                src,
                wv,
                (hp, wp),
                pad,
                zx,
                (oh, ow),
                stride,
                dh,
                out,
                corr_n=zx * wv.reshape(n, -1).sum(axis=1),
                scale_n=scale_n,
                int_bias=int_bias,
                n=n,
            )
        else:
            common = dict(
                corr_n=(zx - self.isa.act_shift) * wv.reshape(n, -1).sum(axis=1),
                scale_n=scale_n,
                int_bias=int_bias,
                n=n,
            )
            if not g.one_d and in_c == 1 and v.rows_ok(self.isa.name, c, n, kh, kw, stride, g.dilation):
                return self._plan_rows(src, wv, (h, wd), pad, zx, (oh, ow), out, **common)
            plan = self._plan_folded(src, wv, (hp, wp), pad, zx, (oh, ow), stride, dh, out, groups=kgroups, **common)
        plan.one_d, plan.column = g.one_d, g.column
        return plan

    def _plan_rows(self, src, wv, hw, pad, zx, ohw, out, **common) -> _Plan:
        """One input channel: vectorized over output pixels (kernels.layers.conv2d_rows_requant);
        reads the padded image beside itself one row down, int16."""
        bb, isa = self.builder_, self.isa.name
        (h, wd), (oh, ow), (n, _, kh, kw) = hw, ohw, wv.shape
        shp = v.rows_shape(oh, ow, n, kh, kw)
        img = bb.emit(relax.op.reshape(src, (h, wd)))
        img = bb.emit(
            relax.op.nn.pad(
                img, [pad[0], shp["rows"] + 1 - h - pad[0], pad[1], shp["cols"] - wd - pad[1]], pad_value=float(zx)
            )
        )
        pair = [
            bb.emit(relax.op.expand_dims(relax.op.strided_slice(img, axes=[0], begin=[t], end=[t + shp["rows"]]), 2))
            for t in (0, 1)
        ]
        src = bb.emit(relax.op.astype(relax.op.concat(pair, axis=2), "int16"))
        key = (oh, ow, n, kh, kw, *out, common["int_bias"] is None)
        self.stats.pixel_vectors += 1
        stem = f"{isa}_conv2d_rows_requant_{oh}x{ow}_{shp['np']}x{kh}x{kw}_"
        return _Plan(
            src=src,
            func=v.conv2d_rows_requant(*key, isa=isa),
            packed=v.pack_rows_weights(wv.astype(np.int8)),
            np_=shp["np"],
            shape=(1, shp["np"], oh, ow),
            stem=stem,
            rows_key=key,
            **common,
        )

    def _plan_folded(self, src, wv, hwp, pad, zx, ohw, stride, dh, out, groups: int = 1, **common) -> _Plan:
        """Channel vectors, kw x channels folded into the reduction (kernels.layers.conv2d_requant);
        `groups` kernel groups of wv's c input channels each, laid out as images of their own."""
        bb, isa = self.builder_, self.isa.name
        (hp, wp), (oh, ow), (n, c, kh, kw) = hwp, ohw, wv.shape
        extra = v.folded_overhang(ow=ow, stride=stride[1], c=c, kw=kw, width=wp)
        src = bb.emit(relax.op.nn.pad(src, [0, 0, pad[0], pad[2], pad[1], pad[3] + extra, 0, 0], pad_value=float(zx)))
        row = (wp + extra) * c
        if groups > 1:  # [1, hp, wp', groups * c] -> [groups, hp, wp', c]
            src = bb.emit(relax.op.permute_dims(relax.op.reshape(src, (hp, wp + extra, groups, c)), [2, 0, 1, 3]))
        if v.conv_input_dtype(isa) != dtype_of(src):  # widened in the same glue kernel
            src = bb.emit(relax.op.astype(src, v.conv_input_dtype(isa)))
        src = bb.emit(relax.op.reshape(src, (groups, hp, row)))
        lanes = v.lanes_for(isa, n // groups)
        np_ = round_up(n, lanes)
        func = v.conv2d_requant(
            hp,
            row,
            c,
            np_,
            kh,
            kw,
            oh,
            ow,
            stride,
            dh,
            *out,
            float_bias=common["int_bias"] is None,
            lanes=lanes,
            isa=isa,
            groups=groups,
        )
        stem = f"{isa}_conv2d_requant_{hp}x{row}_{np_}x{kh}x{kw}_s{stride[0]}{stride[1]}_{f'g{groups}_' * (groups > 1)}"
        return _Plan(
            src=src,
            func=func,
            packed=v.pack_folded_conv_weights(wv.astype(np.int8), lanes, isa),
            np_=np_,
            shape=(1, oh, ow, np_),
            stem=stem,
            **common,
        )

    def _plan_depthwise(self, src, wv, hwp, pad, zx, ohw, stride, dh, out, **common) -> _Plan:
        """One channel per group: vectorized over channels (kernels.depthwise), any ISA."""
        from ..kernels import depthwise

        bb = self.builder_
        (hp, wp), (oh, ow), (n, _, kh, kw) = hwp, ohw, wv.shape
        src = bb.emit(relax.op.nn.pad(src, [0, 0, pad[0], pad[2], pad[1], pad[3], 0, 0], pad_value=float(zx)))
        func = depthwise.depthwise_requant(
            hp, wp, n, kh, kw, oh, ow, stride, (dh, 1), *out, float_bias=common["int_bias"] is None
        )
        stem = f"depthwise_requant_{hp}x{wp}x{n}_{kh}x{kw}_s{stride[0]}{stride[1]}_"
        self.stats.depthwise += 1
        return _Plan(
            src=src,
            func=func,
            packed=depthwise.pack_weights(wv.astype(np.int8)),
            np_=n,
            shape=(1, oh, ow, n),
            stem=stem,
            **common,
        )

    def _emit_fused(self, p: _Plan, bias, out_scale: float, out_dtype: str):
        bb = self.builder_
        corr = np.zeros(p.np_, np.int32)
        corr[: p.n] = p.corr_n - (0 if p.int_bias is None else p.int_bias)
        scale = np.zeros(p.np_, np.float32)
        scale[: p.n] = p.scale_n.astype(np.float32)
        if p.int_bias is not None:
            scale = (scale / np.float32(out_scale)).astype(np.float32)
        name = self._name(p.stem)
        gv = bb.add_func(p.func.with_attr("global_symbol", name), name)
        args = [p.src, relax.const(p.packed), relax.const(corr), relax.const(scale)]
        if p.int_bias is None:
            args.append(self._bias(bias, p.n, p.np_))
        out = bb.emit(relax.call_tir(gv, args, relax.TensorType(p.shape, out_dtype)))
        if p.column:  # as the one-row image every 1-D layer's twin is (the same bytes)
            out = bb.emit(relax.op.reshape(out, (1, 1, p.shape[1], p.shape[3])))
        self.stats.fused += 1
        self.stats.vnni += self.isa.name == "vnni" and p.rows_key is None and not p.stem.startswith("depthwise")
        if p.rows_key is not None:  # NCHW already
            view = bb.emit(relax.op.strided_slice(out, axes=[1], begin=[0], end=[p.n])) if p.np_ != p.n else out
            # kept for a max-pool after it, which the kernel can do itself (passthrough._pooled_rows)
            self.rows_layers[view] = dict(
                args=args, n=p.n, np=p.np_, oh=p.shape[2], ow=p.shape[3], out_dtype=out_dtype, key=p.rows_key
            )
            return view
        if len(p.shape) == 4:
            view = self._nhwc_view(out, p.n, p.np_)
            if p.one_d:  # NCHW [1, n, 1, ow] -> NCW, the same twin
                view3 = bb.emit(relax.op.squeeze(view, [2]))
                self.twins[view3] = self.twins[view]
                return view3
            return view
        view = bb.emit(relax.op.strided_slice(out, axes=[1], begin=[0], end=[p.n])) if p.np_ != p.n else out
        self.twins[view] = ("NC", out, p.n)
        return view

    def _twin(self, expr):
        """(layout, padded tensor, real channels) that the view `expr` stands for, or None."""
        while isinstance(expr, relax.Var):
            if expr in self.twins:
                return self.twins[expr]
            expr = self.lookup_binding(expr)
        return None

    def _nhwc_view(self, out, n: int, np_: int):
        """Register `out` [1, h, w, np_] as the channels-last twin of the NCHW tensor it stands for."""
        bb = self.builder_
        sliced = bb.emit(relax.op.strided_slice(out, axes=[3], begin=[0], end=[n])) if np_ != n else out
        view = bb.emit(relax.op.permute_dims(sliced, [0, 3, 1, 2]))
        self.twins[view] = ("NHWC", out, n)
        return view

    def _bias(self, bias, n: int, np_: int):
        bb = self.builder_
        if bias is None:
            return relax.const(np.zeros(np_, np.float32))
        b = bb.emit(relax.op.reshape(self.visit_expr(bias), (n,)))  # constants: folded at build
        return bb.emit(relax.op.nn.pad(b, [0, np_ - n], pad_value=0.0)) if np_ != n else b

    def _name(self, stem: str) -> str:
        self.kernel_count += 1
        return f"{stem}{self.kernel_count}"
