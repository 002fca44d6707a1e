"""The unfused rewrite: conv2d/conv1d/matmul(dequantize(x), dequantize(W)) -> an int32 layer (TVM's own
int32 Relax op, or the ISA's int32 kernel where it has one) followed by the requantization to
real values, `float(acc - zx * sum(W)) * (sx * sw)`. The rest of the graph (bias, a quantize
after it) stays as it was. Every layer the fused path (fused.py) does not take comes here."""

from __future__ import annotations

import numpy as np
from tvm import relax

from ..kernels import layers
from ..sizes import round_up
from .exprs import const_array, dtype_of, op_name, shape_of
from .geometry import geometry, layouts_ok

# Below this many output channels the 16-lane int32 kernels waste most of each instruction
# (LeNet's first conv has 6); such layers use TVM's own int32 ops.
MIN_KERNEL_CHANNELS = 8


class Unfused:
    def _conv2d(self, call, dtype):
        """conv2d, or conv1d as a conv2d one row high (geometry.py)."""
        op = op_name(call)
        if not layouts_ok(op, call.attrs) or dtype != "float32":
            return None
        act = self._act(call.args[0])
        wt = self._weight(call.args[1], 0, "conv")
        if act is None or wt is None:
            return None
        x, sx, zx = act
        w, sw = wt
        g = geometry(op, call.attrs, const_array(w))
        wv = g.weights
        out_ch = wv.shape[0]
        bb = self.builder_
        if g.one_d:  # [1, C, T] -> [1, C, 1, T] or [1, C, T, 1]: the int8 weights' 2-D view
            x = bb.emit(relax.op.expand_dims(x, 3 if g.column else 2))
            w = relax.const(wv.astype(np.int8))
        pad = g.pad  # top, left, bottom, right
        if any(pad):
            x = bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, pad[0], pad[2], pad[1], pad[3]], pad_value=float(zx)))
        acc = None
        xshape = shape_of(x)
        if (
            self.int32 is not None
            and g.groups == 1
            and dtype_of(x) == "uint8"
            and xshape
            and xshape[0] == 1
            and out_ch >= MIN_KERNEL_CHANNELS
        ):
            acc = self._int32_conv(x, xshape, wv, g.stride, g.dilation)
        if acc is None:
            acc = bb.emit(
                relax.op.nn.conv2d(
                    x,
                    w,
                    strides=g.stride,
                    padding=[0, 0, 0, 0],
                    dilation=g.dilation,
                    groups=g.groups,
                    data_layout="NCHW",
                    kernel_layout="OIHW",
                    out_dtype="int32",
                )
            )
        if zx:
            corr = (zx * wv.reshape(out_ch, -1).sum(axis=1)).astype(np.int32).reshape(1, out_ch, 1, 1)
            acc = bb.emit(relax.op.subtract(acc, relax.const(corr)))
        scale = (np.float32(sx) * sw).astype(np.float32)
        scale = scale.reshape(1, out_ch, 1, 1) if scale.size > 1 else scale.reshape(())
        self.stats.conv1d += g.one_d
        self.stats.conv2d += not g.one_d
        real = relax.op.multiply(bb.emit(relax.op.astype(acc, "float32")), relax.const(scale))
        return relax.op.squeeze(bb.emit(real), [3 if g.column else 2]) if g.one_d else real

    def _matmul(self, call, dtype):
        if dtype != "float32":
            return None
        got = self._matmul_rhs(call)
        if got is None:
            return None
        inner, transposed = got
        act = self._act(call.args[0])
        # ONNX Gemm weights are [N, K] (per-channel axis 0) before the transpose; MatMul's are [K, N] (axis 1)
        wt = self._weight(inner, 0 if transposed else 1, "matmul")
        if act is None or wt is None:
            return None
        x, sx, zx = act
        w, sw = wt
        wv = const_array(w).astype(np.int64)
        if wv.ndim != 2:
            return None
        bb = self.builder_
        w_nk = wv if transposed else wv.T
        xshape = shape_of(x)
        if (
            self.int32 is not None
            and dtype_of(x) == "uint8"
            and xshape
            and len(xshape) == 2
            and w_nk.shape[0] >= MIN_KERNEL_CHANNELS
        ):
            acc = self._int32_gemm(x, xshape[0], w_nk)
        else:
            w_kn = bb.emit(relax.op.permute_dims(w, [1, 0])) if transposed else w
            acc = bb.emit(relax.op.matmul(x, w_kn, out_dtype="int32"))
        if zx:
            colsum = wv.sum(axis=1) if transposed else wv.sum(axis=0)
            acc = bb.emit(relax.op.subtract(acc, relax.const((zx * colsum).astype(np.int32))))
        scale = (np.float32(sx) * sw).astype(np.float32)
        scale = scale if scale.size > 1 else scale.reshape(())
        self.stats.matmul += 1
        return relax.op.multiply(bb.emit(relax.op.astype(acc, "float32")), relax.const(scale))

    def _int32_gemm(self, a, m: int, w_nk: np.ndarray):
        """int32 [m, N] = a [m, K'] (uint8, K' >= K padded by the caller or here) x w_nk.T"""
        bb = self.builder_
        n, k = w_nk.shape
        kp, np_ = round_up(k, 4), round_up(n, self.int32.lanes)
        if shape_of(a)[1] != kp:
            a = bb.emit(relax.op.nn.pad(a, [0, 0, 0, kp - k], pad_value=0.0))  # zero weights there
        name = f"{self.isa.name}_gemm_{m}x{kp}x{np_}"
        gv = bb.add_func(self.int32.gemm(m, kp, np_).with_attr("global_symbol", name), name)
        acc = bb.emit(
            relax.call_tir(
                gv, [a, relax.const(self.int32.pack_gemm(w_nk.astype(np.int8)))], relax.TensorType((m, np_), "int32")
            )
        )
        if np_ != n:
            acc = bb.emit(relax.op.strided_slice(acc, axes=[1], begin=[0], end=[n]))
        self.stats.vnni += self.isa.name == "vnni"
        return acc

    def _int32_conv(self, x, xshape, wv: np.ndarray, stride: tuple, dilation: tuple):
        """x: [1, C, H, W] uint8, already padded with its zero point -> int32 [1, N, OH, OW]"""
        bb = self.builder_
        n, c, kh, kw = wv.shape
        _, _, h, w = xshape
        cp = round_up(c, 4)
        np_ = round_up(n, self.int32.lanes)
        oh, ow = layers.out_hw(h, w, kh=kh, kw=kw, stride=stride, dilation=dilation)
        hwc = bb.emit(relax.op.permute_dims(relax.op.reshape(x, (c, h, w)), [1, 2, 0]))
        if cp != c:  # extra channels meet zero weights
            hwc = bb.emit(relax.op.nn.pad(hwc, [0, 0, 0, 0, 0, cp - c], pad_value=0.0))
        func = self.int32.conv2d(h, w, cp, n, kh, kw, stride, dilation)
        name = f"{self.isa.name}_conv2d_{h}x{w}x{cp}_{np_}x{kh}x{kw}_s{stride[0]}{stride[1]}"
        gv = bb.add_func(func.with_attr("global_symbol", name), name)
        acc = bb.emit(
            relax.call_tir(
                gv,
                [hwc, relax.const(self.int32.pack_conv(wv.astype(np.int8), cp))],
                relax.TensorType((oh, ow, np_), "int32"),
            )
        )
        if np_ != n:
            acc = bb.emit(relax.op.strided_slice(acc, axes=[2], begin=[0], end=[n]))
        self.stats.vnni += self.isa.name == "vnni"
        return bb.emit(relax.op.reshape(relax.op.permute_dims(acc, [2, 0, 1]), (1, n, oh, ow)))
