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

from collections import Counter
from dataclasses import dataclass, field

import numpy as np


@dataclass
class Int8Stats:
    conv2d: int = 0
    matmul: int = 0
    vnni: int = 0  # of those, run on AVX512-VNNI dot products (compile/vnni.py)
    fused: int = 0  # of those, fused with their bias and requantize into one kernel
    kernels: str | None = None  # the fused layers' dot-product kernels: "vnni", "generic" or none
    pixel_vectors: int = 0  # fused layers vectorized over output pixels (one-channel input, vnni.conv2d_rows_requant)
    pools: int = 0  # max-pools done inside the layer before them, on the int32 sums
    skipped: list[str] = field(default_factory=list)

    @property
    def rewritten(self) -> int:
        return self.conv2d + self.matmul

    def to_json(self) -> dict:
        return {"conv2d": self.conv2d, "matmul": self.matmul, "vnni": self.vnni, "fused": self.fused,
                "kernels": self.kernels, "pixel_vectors": self.pixel_vectors, "pools": self.pools,
                "skipped": list(self.skipped)}


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


def lower_qdq_to_int8(mod, *, kernels: str | None = None):
    """Return (module, stats). Run it on the imported module, before the "zero" pipeline.
    `kernels`: "vnni" (the target has AVX512-VNNI) or "generic" (any CPU): uint8 x int8 layers
    become fused kernels (compile/vnni.py) with their bias and requantize, activations kept
    uint8 channels-last between them; None: int8 x int8 -> int32 Relax ops, fp32 between layers."""
    import tvm
    from tvm import relax
    from tvm.ir.expr import Constant
    from tvm.relax import PyExprMutator, expr_functor

    if kernels is not None:
        from .vnni import ISAS

        if kernels not in ISAS:
            raise ValueError(f"unknown int8 kernels {kernels!r}; known: {', '.join(ISAS)}")
    vnni = kernels == "vnni"
    stats = Int8Stats(kernels=kernels)

    @expr_functor.mutator
    class Rewriter(PyExprMutator):
        def __init__(self, mod):
            super().__init__(mod)
            self.orig: dict = {}  # the function being rewritten, as it was: var -> bound value
            self.uses: Counter = Counter()
            self.claimed: list = []  # conv2d/matmul calls that a fused chain will emit
            self.twins: dict = {}  # u8 NCHW/NC view var -> (layout, padded channels-last tensor, real channels)
            self.rows_layers: dict = {}  # NCHW output var of a conv2d_rows_requant call -> how it was made
            self.kernels = 0

        def scan(self, func):
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

        def _weight(self, expr, axis: int, what: str, *, quiet: bool = False):
            got = self._dequant(expr, const=True)
            if got is None:
                return None
            w, scale, zero, qaxis = got
            if np.any(zero != 0):
                quiet or stats.skipped.append(f"{what}: asymmetric weights")
                return None
            if scale.size != 1 and qaxis != axis:
                quiet or stats.skipped.append(f"{what}: weights quantized along axis {qaxis}")
                return None
            return w, scale.astype(np.float32).reshape(-1)

        def visit_call_(self, call):
            if kernels:
                chain = self._chain(call)
                if chain is not None:
                    return self._fused(*chain)
                if any(call.same_as(c) for c in self.claimed):
                    return super().visit_call_(call)  # emitted by its chain; this copy dies
                passed = self._passthrough(call)
                if passed is not None:
                    return passed
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

        # --- fused chains (AVX512-VNNI): quantize(add(conv2d|matmul, bias)) -> one kernel whose
        # output is already the next layer's uint8 input, kept channels-last between layers.

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
            s, z = _np(self._resolve(scale)), _np(self._resolve(zero))
            if s is None or z is None or s.size != 1 or z.size != 1:
                return None
            return float(s.reshape(())), int(z.reshape(()))

        def _chain(self, q):
            """(core call, bias expr or None, out scale, out zero, out dtype) if `q` (an original
            quantize) ends a conv2d/matmul layer the fused VNNI kernels can run."""
            if _op_name(q) != "relax.quantize" or str(q.attrs.out_dtype) not in ("uint8", "int8"):
                return None
            out = self._qparams(q.args[1], q.args[2])
            if out is None:
                return None
            inner, bias = self._single(q.args[0]), None
            if _op_name(inner) == "relax.add":
                for i in (0, 1):
                    core = self._single(inner.args[i])
                    if _op_name(core) in ("relax.nn.conv2d", "relax.matmul"):
                        bias = inner.args[1 - i]
                        break
                else:
                    return None
            else:
                core = inner
            kind = _op_name(core)
            if kind == "relax.nn.conv2d":
                n = self._conv_ok(core)
            elif kind == "relax.matmul":
                n = self._matmul_ok(core)
            else:
                return None
            if not n:
                return None
            if bias is not None:
                bshape = _shape(bias)
                if not self._const_expr(bias) or bshape is None or int(np.prod(bshape)) != n or max(bshape) != n:
                    return None
            return core, bias, out[0], out[1], str(q.attrs.out_dtype)

        def _conv_ok(self, core) -> int:
            a = core.attrs
            if (a.data_layout != "NCHW" or a.kernel_layout != "OIHW" or int(a.groups) != 1
                    or int(a.dilation[1]) != 1 or _dtype(core) != "float32"):
                return 0
            act = self._act(core.args[0])
            wt = self._weight(core.args[1], 0, "conv2d", quiet=True)
            if act is None or wt is None or _dtype(act[0]) != "uint8" or (_shape(act[0]) or [0])[0] != 1:
                return 0
            return int(_np(wt[0]).shape[0])

        def _matmul_rhs(self, core):
            rhs = self._resolve(core.args[1])
            if _op_name(rhs) == "relax.permute_dims":
                axes = rhs.attrs.axes
                if axes is None or [int(i) for i in axes] != [1, 0]:
                    return None
                return rhs.args[0], True
            return core.args[1], False

        def _matmul_ok(self, core) -> int:
            got = self._matmul_rhs(core)
            if got is None or _dtype(core) != "float32":
                return 0
            inner, transposed = got
            act = self._act(core.args[0])
            wt = self._weight(inner, 0 if transposed else 1, "matmul", quiet=True)
            if act is None or wt is None or _dtype(act[0]) != "uint8" or len(_shape(act[0]) or []) != 2:
                return 0
            w = _np(wt[0])
            return int(w.shape[0] if transposed else w.shape[1]) if w.ndim == 2 else 0

        def _twin(self, expr):
            while isinstance(expr, relax.Var):
                if expr in self.twins:
                    return self.twins[expr]
                expr = self.lookup_binding(expr)
            return None

        def _int_bias(self, bias, n: int, scale: np.ndarray):
            """The int32 bias if `bias` is dequantize(int32 constant, sx*sw, 0) (as onnxruntime's
            quantizer writes it): it then joins the integer zero-point correction."""
            if bias is None:
                return np.zeros(n, np.int64)
            expr = self._resolve(bias)
            while _op_name(expr) == "relax.reshape":
                expr = self._resolve(expr.args[0])
            if _op_name(expr) != "relax.dequantize":
                return None
            q = _np(self._resolve(expr.args[0]))
            s, z = _np(self._resolve(expr.args[1])), _np(self._resolve(expr.args[2]))
            if q is None or s is None or z is None or str(q.dtype) != "int32" or q.size != n or np.any(z != 0):
                return None
            if not np.allclose(np.broadcast_to(s.reshape(-1), (n,)), np.broadcast_to(scale.reshape(-1), (n,)), rtol=1e-6, atol=0):
                return None
            return q.reshape(-1).astype(np.int64)

        def _bias(self, bias, n: int, np_: int):
            bb = self.builder_
            if bias is None:
                return relax.const(np.zeros(np_, np.float32))
            b = bb.emit(relax.op.reshape(self.visit_expr(bias), (n,)))  # constants: folded at build
            return bb.emit(relax.op.nn.pad(b, [0, np_ - n], pad_value=0.0)) if np_ != n else b

        def _name(self, stem: str) -> str:
            self.kernels += 1
            return f"{stem}{self.kernels}"

        def _nhwc_view(self, out, n: int, np_: int):
            """Register `out` [1, h, w, np_] as the channels-last twin of the NCHW tensor it stands for."""
            bb = self.builder_
            sliced = bb.emit(relax.op.strided_slice(out, axes=[3], begin=[0], end=[n])) if np_ != n else out
            view = bb.emit(relax.op.permute_dims(sliced, [0, 3, 1, 2]))
            self.twins[view] = ("NHWC", out, n)
            return view

        def _fused(self, core, bias, out_scale: float, out_zero: int, out_dtype: str):
            from . import vnni as v

            bb = self.builder_
            args = [self.visit_expr(a) for a in core.args]
            x, sx, zx = self._act(args[0])
            rows = False
            if _op_name(core) == "relax.matmul":
                inner, transposed = self._matmul_rhs(core)
                w, sw = self._weight(self.visit_expr(inner), 0 if transposed else 1, "matmul")
                wv = _np(w).astype(np.int64)
                w_nk = wv if transposed else wv.T
                n, k = w_nk.shape
                twin = self._twin(x)
                kp = -(-k // 4) * 4
                if twin is not None and twin[0] == "NC":
                    src, (m, cols) = twin[1], _shape(twin[1])
                else:
                    m = _shape(x)[0]
                    src = bb.emit(relax.op.nn.pad(x, [0, 0, 0, kp - k], pad_value=0.0)) if kp != k else x
                    cols = kp
                lanes = v.lanes_for(kernels, n)
                np_ = -(-n // lanes) * lanes
                int_bias = self._int_bias(bias, n, np.float32(sx) * sw)
                func = v.gemm_requant(m, cols, kp, np_, out_scale, out_zero, out_dtype, float_bias=int_bias is None,
                                      isa=kernels, lanes=lanes)
                packed = v.pack_weights(w_nk.astype(np.int8), kp=kp, isa=kernels, lanes=lanes)
                corr_n = (zx - v.act_shift(kernels)) * w_nk.sum(axis=1)
                shape = (m, np_)
                stem = f"{kernels}_gemm_requant_{m}x{kp}x{np_}_"
                stats.matmul += 1
            else:
                w, sw = self._weight(args[1], 0, "conv2d")
                wv = _np(w).astype(np.int64)
                n, c, kh, kw = wv.shape
                a = core.attrs
                top, left, bottom, right = (int(p) for p in a.padding)
                stride, dh = (int(a.strides[0]), int(a.strides[1])), int(a.dilation[0])
                twin = self._twin(x)
                if twin is not None and twin[0] == "NHWC":
                    src = twin[1]
                    if _shape(src)[3] != c:
                        src = bb.emit(relax.op.strided_slice(src, axes=[3], begin=[0], end=[c]))
                else:
                    src = bb.emit(relax.op.permute_dims(x, [0, 2, 3, 1]))
                h, wd = _shape(x)[2:] if twin is None else _shape(twin[1])[1:3]
                hp, wp = h + top + bottom, wd + left + right
                oh, ow = v.out_hw(hp, wp, kh=kh, kw=kw, stride=stride, dilation=(dh, 1))
                rows = v.rows_ok(kernels, c, n, kh, kw, stride, (dh, int(a.dilation[1])))
                int_bias = self._int_bias(bias, n, np.float32(sx) * sw)
                corr_n = (zx - v.act_shift(kernels)) * wv.reshape(n, -1).sum(axis=1)
                stats.conv2d += 1
                if rows:  # one input channel: vectorized over output pixels (vnni.conv2d_rows_requant)
                    shp = v.rows_shape(oh, ow, n, kh, kw)
                    img = bb.emit(relax.op.reshape(src, (h, wd)))
                    img = bb.emit(relax.op.nn.pad(img, [top, shp["rows"] + 1 - h - top, left, shp["cols"] - wd - left],
                                                  pad_value=float(zx)))
                    pair = [bb.emit(relax.op.expand_dims(relax.op.strided_slice(
                        img, axes=[0], begin=[t], end=[t + shp["rows"]]), 2)) for t in (0, 1)]
                    src = bb.emit(relax.op.astype(relax.op.concat(pair, axis=2), "int16"))
                    np_ = shp["np"]
                    func = v.conv2d_rows_requant(oh, ow, n, kh, kw, out_scale, out_zero, out_dtype,
                                                 float_bias=int_bias is None)
                    packed = v.pack_rows_weights(wv.astype(np.int8))
                    shape = (1, np_, oh, ow)
                    stem = f"{kernels}_conv2d_rows_requant_{oh}x{ow}_{np_}x{kh}x{kw}_"
                    stats.pixel_vectors += 1
                else:
                    kwc = -(-kw * c // 4) * 4
                    # the folded reduction reads up to kwc - kw*c bytes past a window: keep them in bounds
                    extra = max(0, -(-((ow - 1) * stride[1] * c + kwc - wp * c) // c))
                    src = bb.emit(relax.op.nn.pad(src, [0, 0, top, bottom, left, right + extra, 0, 0], pad_value=float(zx)))
                    row = (wp + extra) * c
                    if v.conv_input_dtype(kernels) != _dtype(src):  # widened in the same glue kernel
                        src = bb.emit(relax.op.astype(src, v.conv_input_dtype(kernels)))
                    src = bb.emit(relax.op.reshape(src, (1, hp, row)))
                    lanes = v.lanes_for(kernels, n)
                    np_ = -(-n // lanes) * lanes
                    func = v.conv2d_requant(hp, row, c, np_, kh, kw, oh, ow, stride, dh, out_scale, out_zero, out_dtype,
                                            float_bias=int_bias is None, lanes=lanes, isa=kernels)
                    packed = v.pack_folded_conv_weights(wv.astype(np.int8), lanes, kernels)
                    shape = (1, oh, ow, np_)
                    stem = f"{kernels}_conv2d_requant_{hp}x{row}_{np_}x{kh}x{kw}_s{stride[0]}{stride[1]}_"
            corr = np.zeros(np_, np.int32)
            corr[:n] = corr_n - (0 if int_bias is None else int_bias)
            scale = np.zeros(np_, np.float32)
            scale[:n] = (np.float32(sx) * sw).astype(np.float32)
            if int_bias is not None:
                scale = (scale / np.float32(out_scale)).astype(np.float32)
            name = self._name(stem)
            gv = bb.add_func(func.with_attr("global_symbol", name), name)
            args = [src, relax.const(packed), relax.const(corr), relax.const(scale)]
            if int_bias is None:
                args.append(self._bias(bias, n, np_))
            out = bb.emit(relax.call_tir(gv, args, relax.TensorType(shape, out_dtype)))
            stats.fused += 1
            stats.vnni += vnni and not rows
            if rows:  # NCHW already
                view = bb.emit(relax.op.strided_slice(out, axes=[1], begin=[0], end=[n])) if np_ != n else out
                # kept for a max-pool after it, which the kernel can do itself (_pooled_rows)
                self.rows_layers[view] = dict(args=args, n=n, np=np_, oh=oh, ow=ow, out_dtype=out_dtype, key=(
                    oh, ow, n, kh, kw, out_scale, out_zero, out_dtype, int_bias is None))
                return view
            if len(shape) == 4:
                return self._nhwc_view(out, n, np_)
            view = bb.emit(relax.op.strided_slice(out, axes=[1], begin=[0], end=[n])) if np_ != n else out
            self.twins[view] = ("NC", out, n)
            return view

        def _global_mean(self, call):
            """mean(dequantize(x), spatial axes) of a channels-last x: reduce it in place instead of
            transposing it back first."""
            dq = self.orig.get(call.args[0]) if isinstance(call.args[0], relax.Var) else None
            axes = call.attrs.axis
            if _op_name(dq) != "relax.dequantize" or axes is None or not call.attrs.keepdims:
                return None
            if sorted(int(a) % 4 for a in axes) != [2, 3]:
                return None
            params = self._qparams(dq.args[1], dq.args[2])
            twin = self._twin(self.visit_expr(dq.args[0]))
            if params is None or twin is None or twin[0] != "NHWC":
                return None
            bb = self.builder_
            t, n = twin[1], twin[2]
            real = bb.emit(relax.op.dequantize(t, relax.const(np.float32(params[0])),
                                               relax.const(np.array(params[1], _dtype(t))), axis=3))
            pooled = bb.emit(relax.op.mean(real, axis=[1, 2], keepdims=True))  # [1, 1, 1, np_]
            if _shape(t)[3] != n:
                pooled = bb.emit(relax.op.strided_slice(pooled, axes=[3], begin=[0], end=[n]))
            return relax.op.permute_dims(pooled, [0, 3, 1, 2])

        def _pooled_rows(self, x, attrs, conv_q):
            """The first layer's kernel again, with the 2x2 max-pool after it done on its int32
            sums, if `x` is that layer's output and the pool is its only reader."""
            while x not in self.rows_layers and isinstance(self.lookup_binding(x), relax.Var):
                x = self.lookup_binding(x)  # the var-to-var bindings a rewritten layer leaves
            layer = self.rows_layers.get(x)
            if (layer is None or self.uses[conv_q] != 1 or attrs.ceil_mode
                    or [int(v) for v in attrs.pool_size] != [2, 2] or [int(v) for v in attrs.strides] != [2, 2]
                    or any(int(v) for v in attrs.padding) or [int(v) for v in attrs.dilation] != [1, 1]):
                return None
            from . import vnni as v

            bb = self.builder_
            n, np_ = layer["n"], layer["np"]
            ph, pw = layer["oh"] // 2, layer["ow"] // 2
            func = v.conv2d_rows_requant(*layer["key"], pool=2)
            name = self._name(f"{kernels}_conv2d_rows_maxpool_requant_{ph}x{pw}_{np_}_")
            gv = bb.add_func(func.with_attr("global_symbol", name), name)
            owp = v.rows_shape(*layer["key"][:5])["owp"]
            out = bb.emit(relax.call_tir(gv, layer["args"], relax.TensorType((1, np_, ph, owp // 2), layer["out_dtype"])))
            stats.pools += 1
            view = bb.emit(relax.op.strided_slice(out, axes=[1, 3], begin=[0, 0], end=[n, pw]))
            out4 = bb.emit(relax.op.permute_dims(view, [0, 2, 3, 1]))
            return self._nhwc_view(out4, n, n)

        def _passthrough(self, q):
            """quantize(op(dequantize(x))) with the same scale and zero point is op on x itself
            for max pooling, reshapes and a bare dequantize; a residual add of two channels-last
            tensors stays channels-last."""
            if _op_name(q) == "relax.mean":
                return self._global_mean(q)
            if _op_name(q) != "relax.quantize" or not isinstance(q.args[0], relax.Var):
                return None
            out = self._qparams(q.args[1], q.args[2])
            inner = self.orig.get(q.args[0])
            op = _op_name(inner)
            if out is None or op is None:
                return None
            bb = self.builder_

            def same_dq(expr):
                dq = self.orig.get(expr) if isinstance(expr, relax.Var) else None
                if _op_name(dq) != "relax.dequantize" or _dtype(dq.args[0]) != str(q.attrs.out_dtype):
                    return None
                return dq if self._qparams(dq.args[1], dq.args[2]) == out else None

            if op == "relax.dequantize":
                dq = same_dq(q.args[0])
                return None if dq is None else self.visit_expr(dq.args[0])
            if op == "relax.reshape":
                dq = same_dq(inner.args[0])
                return None if dq is None else relax.op.reshape(self.visit_expr(dq.args[0]), inner.args[1])
            if op == "relax.nn.max_pool2d" and inner.attrs.layout == "NCHW":
                dq = same_dq(inner.args[0])
                if dq is None:
                    return None
                a = inner.attrs
                x = self.visit_expr(dq.args[0])
                twin = self._twin(x)
                kwargs = dict(pool_size=a.pool_size, strides=a.strides, padding=a.padding, dilation=a.dilation,
                              ceil_mode=a.ceil_mode)
                pooled = self._pooled_rows(x, a, dq.args[0])
                if pooled is not None:
                    return pooled
                if twin is None and len(_shape(x) or ()) == 4:  # pool straight into the channels-last layout
                    out4 = bb.emit(relax.op.permute_dims(relax.op.nn.max_pool2d(x, layout="NCHW", **kwargs), [0, 2, 3, 1]))
                    return self._nhwc_view(out4, _shape(x)[1], _shape(x)[1])
                if twin is None or twin[0] != "NHWC":
                    return relax.op.nn.max_pool2d(x, layout="NCHW", **kwargs)
                out4 = bb.emit(relax.op.nn.max_pool2d(twin[1], layout="NHWC", **kwargs))
                return self._nhwc_view(out4, twin[2], _shape(twin[1])[3])
            if op == "relax.add":
                a, b = (self.orig.get(e) if isinstance(e, relax.Var) else None for e in inner.args)
                if _op_name(a) != "relax.dequantize" or _op_name(b) != "relax.dequantize":
                    return None
                pa, pb = self._qparams(a.args[1], a.args[2]), self._qparams(b.args[1], b.args[2])
                ta, tb = self._twin(self.visit_expr(a.args[0])), self._twin(self.visit_expr(b.args[0]))
                if (pa is None or pb is None or ta is None or tb is None or ta[0] != "NHWC" or tb[0] != "NHWC"
                        or _shape(ta[1]) != _shape(tb[1]) or ta[2] != tb[2]):
                    return None
                from . import vnni as v

                shape, out_dtype = tuple(_shape(ta[1])), str(q.attrs.out_dtype)
                func = v.add_requant(shape, pa, pb, out, _dtype(ta[1]), out_dtype)
                name = self._name("add_requant_")
                gv = bb.add_func(func.with_attr("global_symbol", name), name)
                out4 = bb.emit(relax.call_tir(gv, [ta[1], tb[1]], relax.TensorType(shape, out_dtype)))
                return self._nhwc_view(out4, ta[2], shape[3])
            return None

    rewriter = Rewriter(mod)
    for gv, func in mod.functions_items():
        if isinstance(func, relax.Function):
            rewriter.scan(func)
            rewriter.builder_.update_func(gv, rewriter.visit_expr(func))
    out = rewriter.builder_.get()
    # the fused chains leave var-to-var bindings that would keep FuseOps from fusing their neighbours
    out = relax.transform.CanonicalizeBindings()(out)
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
