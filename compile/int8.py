"""Real int8 for QDQ models: a Relax pass that turns dequantize -> conv2d/matmul into integer ops.

TVM's ONNX importer keeps a QDQ model's arithmetic in fp32 (dequantize -> fp32 conv -> quantize),
and constant folding turns the int8 weights back into fp32 constants. This pass rewrites

    conv2d(dequantize(x_u8, sx, zx), dequantize(W_i8, sw, 0))
    matmul(dequantize(x_u8, sx, zx), permute_dims(dequantize(W_i8, sw, 0)))

into an integer op on the quantized tensors (uint8/int8 x int8 -> int32 accumulate) followed by
the requantization to real values, `float(acc - zx * sum(W)) * (sx * sw)`. The rest of the graph
(bias, the next quantize) is untouched, so results agree with onnxruntime's int8 execution, and
the weights stay int8 constants in the compiled library.

Padding: a convolution's zero padding is in real values, which is `zx` in the quantized domain,
so the pass pads with `zx` explicitly and the zero-point correction becomes one constant per
output channel. Only symmetric weights (zero point 0, per-tensor or per-output-channel) are
rewritten; anything else is left as it was and counted in the stats.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np


@dataclass
class Int8Stats:
    conv2d: int = 0
    matmul: int = 0
    vnni: int = 0  # of those, run by the AVX512-VNNI GEMM (compile/vnni.py)
    skipped: list[str] = field(default_factory=list)

    @property
    def rewritten(self) -> int:
        return self.conv2d + self.matmul

    def to_json(self) -> dict:
        return {"conv2d": self.conv2d, "matmul": self.matmul, "vnni": self.vnni, "skipped": list(self.skipped)}


def _np(expr):
    from tvm.ir.expr import Constant

    value = getattr(expr, "value", None) if isinstance(expr, Constant) else None
    return value.numpy() if hasattr(value, "numpy") else None


def _dtype(expr) -> str:
    info = getattr(expr, "struct_info", None) or expr.ty  # `ty` in TVM 0.27
    return str(info.dtype)


def _op_name(expr) -> str | None:
    from tvm import relax

    if isinstance(expr, relax.Call) and isinstance(expr.op, __import__("tvm").ir.Op):
        return expr.op.name
    return None


def _shape(expr) -> list[int] | None:
    info = getattr(expr, "struct_info", None) or expr.ty
    try:
        return [int(d) for d in info.shape]
    except (TypeError, AttributeError):
        return None


# Below this many output channels the 16-lane VNNI GEMM wastes most of each instruction
# (LeNet's first conv has 6); such layers use TVM's own int32 kernels.
VNNI_MIN_CHANNELS = 8


def lower_qdq_to_int8(mod, *, vnni: bool = False):
    """Return (module, stats). Run it on the imported module, before the "zero" pipeline.
    `vnni`: the target has AVX512-VNNI; uint8 x int8 layers then use compile/vnni.py's GEMM."""
    import tvm
    from tvm import relax
    from tvm.ir.expr import Constant
    from tvm.relax import PyExprMutator, expr_functor

    stats = Int8Stats()

    @expr_functor.mutator
    class Rewriter(PyExprMutator):
        def _resolve(self, expr):
            while isinstance(expr, relax.Var):
                bound = self.lookup_binding(expr)
                if bound is None:
                    break
                expr = bound
            return expr

        def _dequant(self, expr, *, const: bool):
            """(q, scale ndarray, zero ndarray) if `expr` is a dequantize of the wanted kind."""
            call = self._resolve(expr)
            if _op_name(call) != "relax.dequantize":
                return None
            q, scale, zero = call.args
            scale, zero = _np(self._resolve(scale)), _np(self._resolve(zero))
            if scale is None or zero is None:
                return None
            if const:
                q = self._resolve(q)
                if not isinstance(q, Constant) or _dtype(q) != "int8":
                    return None
            elif _dtype(q) not in ("uint8", "int8"):
                return None
            return q, scale, zero, int(call.attrs.axis)

        def _act(self, expr):
            got = self._dequant(expr, const=False)
            if got is None:
                return None
            q, scale, zero, _ = got
            if scale.size != 1 or zero.size != 1:  # per-tensor activations only
                return None
            return q, float(scale.reshape(())), int(zero.reshape(()))

        def _weight(self, expr, axis: int, what: str):
            got = self._dequant(expr, const=True)
            if got is None:
                return None
            w, scale, zero, qaxis = got
            if np.any(zero != 0):
                stats.skipped.append(f"{what}: asymmetric weights")
                return None
            if scale.size != 1 and qaxis != axis:
                stats.skipped.append(f"{what}: weights quantized along axis {qaxis}")
                return None
            return w, scale.astype(np.float32).reshape(-1)

        def visit_call_(self, call):
            new = super().visit_call_(call)  # args remapped; struct info only on the original
            name = _op_name(new)
            rewrite = {"relax.nn.conv2d": self._conv2d, "relax.matmul": self._matmul}.get(name)
            out = rewrite(new, _dtype(call)) if rewrite else None
            return new if out is None else out

        def _conv2d(self, call, dtype):
            a = call.attrs
            if a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or dtype != "float32":
                return None
            act = self._act(call.args[0])
            wt = self._weight(call.args[1], 0, "conv2d")
            if act is None or wt is None:
                return None
            x, sx, zx = act
            w, sw = wt
            wv = _np(w).astype(np.int64)
            out_ch = wv.shape[0]
            bb = self.builder_
            pad = [int(p) for p in a.padding]  # top, left, bottom, right
            if any(pad):
                x = bb.emit(relax.op.nn.pad(x, [0, 0, 0, 0, pad[0], pad[2], pad[1], pad[3]], pad_value=float(zx)))
            acc = None
            xshape = _shape(x)
            if (vnni and int(a.groups) == 1 and _dtype(x) == "uint8" and xshape and xshape[0] == 1
                    and out_ch >= VNNI_MIN_CHANNELS):
                acc = self._vnni_conv(x, xshape, wv, a)
            if acc is None:
                acc = bb.emit(relax.op.nn.conv2d(
                    x, w, strides=a.strides, padding=[0, 0, 0, 0], dilation=a.dilation, groups=a.groups,
                    data_layout="NCHW", kernel_layout="OIHW", out_dtype="int32"))
            if zx:
                corr = (zx * wv.reshape(out_ch, -1).sum(axis=1)).astype(np.int32).reshape(1, out_ch, 1, 1)
                acc = bb.emit(relax.op.subtract(acc, relax.const(corr)))
            scale = (np.float32(sx) * sw).astype(np.float32)
            scale = scale.reshape(1, out_ch, 1, 1) if scale.size > 1 else scale.reshape(())
            stats.conv2d += 1
            return relax.op.multiply(bb.emit(relax.op.astype(acc, "float32")), relax.const(scale))

        def _vnni_gemm(self, a, m: int, w_nk: np.ndarray):
            """int32 [m, N] = a [m, K'] (uint8, K' >= K padded by the caller or here) x w_nk.T"""
            from . import vnni as v

            bb = self.builder_
            n, k = w_nk.shape
            kp, np_ = v.padded(k, n)
            if _shape(a)[1] != kp:
                a = bb.emit(relax.op.nn.pad(a, [0, 0, 0, kp - k], pad_value=0.0))  # zero weights there
            name = f"vnni_gemm_{m}x{kp}x{np_}"
            gv = bb.add_func(v.gemm(m, kp, np_).with_attr("global_symbol", name), name)
            acc = bb.emit(relax.call_tir(gv, [a, relax.const(v.pack_weights(w_nk.astype(np.int8)))],
                                         relax.TensorType((m, np_), "int32")))
            if np_ != n:
                acc = bb.emit(relax.op.strided_slice(acc, axes=[1], begin=[0], end=[n]))
            stats.vnni += 1
            return acc

        def _vnni_conv(self, x, xshape, wv: np.ndarray, a):
            """x: [1, C, H, W] uint8, already padded with its zero point -> int32 [1, N, OH, OW]"""
            from . import vnni as v

            bb = self.builder_
            n, c, kh, kw = wv.shape
            _, _, h, w = xshape
            cp = -(-c // 4) * 4
            np_ = -(-n // 16) * 16
            stride = tuple(int(s) for s in a.strides)
            dilation = tuple(int(d) for d in a.dilation)
            oh, ow = v.out_hw(h, w, kh=kh, kw=kw, stride=stride, dilation=dilation)
            hwc = bb.emit(relax.op.permute_dims(relax.op.reshape(x, (c, h, w)), [1, 2, 0]))
            if cp != c:  # extra channels meet zero weights
                hwc = bb.emit(relax.op.nn.pad(hwc, [0, 0, 0, 0, 0, cp - c], pad_value=0.0))
            func = v.conv2d(h, w, cp, n, kh, kw, stride, dilation)
            name = f"vnni_conv2d_{h}x{w}x{cp}_{np_}x{kh}x{kw}_s{stride[0]}{stride[1]}"
            gv = bb.add_func(func.with_attr("global_symbol", name), name)
            acc = bb.emit(relax.call_tir(gv, [hwc, relax.const(v.pack_conv_weights(wv.astype(np.int8), cp))],
                                         relax.TensorType((oh, ow, np_), "int32")))
            if np_ != n:
                acc = bb.emit(relax.op.strided_slice(acc, axes=[2], begin=[0], end=[n]))
            stats.vnni += 1
            return bb.emit(relax.op.reshape(relax.op.permute_dims(acc, [2, 0, 1]), (1, n, oh, ow)))

        def _matmul(self, call, dtype):
            if dtype != "float32":
                return None
            rhs = self._resolve(call.args[1])
            transposed = _op_name(rhs) == "relax.permute_dims"
            if transposed:
                axes = rhs.attrs.axes
                if axes is None or [int(i) for i in axes] != [1, 0]:
                    return None
                inner = rhs.args[0]
            else:
                inner = call.args[1]
            act = self._act(call.args[0])
            # ONNX Gemm weights are [N, K] (per-channel axis 0) before the transpose; MatMul's are [K, N] (axis 1)
            wt = self._weight(inner, 0 if transposed else 1, "matmul")
            if act is None or wt is None:
                return None
            x, sx, zx = act
            w, sw = wt
            wv = _np(w).astype(np.int64)
            if wv.ndim != 2:
                return None
            bb = self.builder_
            w_nk = wv if transposed else wv.T
            xshape = _shape(x)
            if vnni and _dtype(x) == "uint8" and xshape and len(xshape) == 2 and w_nk.shape[0] >= VNNI_MIN_CHANNELS:
                acc = self._vnni_gemm(x, xshape[0], w_nk)
            else:
                w_kn = bb.emit(relax.op.permute_dims(w, [1, 0])) if transposed else w
                acc = bb.emit(relax.op.matmul(x, w_kn, out_dtype="int32"))
            if zx:
                colsum = wv.sum(axis=1) if transposed else wv.sum(axis=0)
                acc = bb.emit(relax.op.subtract(acc, relax.const((zx * colsum).astype(np.int32))))
            scale = (np.float32(sx) * sw).astype(np.float32)
            scale = scale if scale.size > 1 else scale.reshape(())
            stats.matmul += 1
            return relax.op.multiply(bb.emit(relax.op.astype(acc, "float32")), relax.const(scale))

    rewriter = Rewriter(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    out = rewriter.builder_.get()
    out = relax.transform.DeadCodeElimination()(out)
    return out, stats


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
