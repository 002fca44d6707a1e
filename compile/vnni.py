"""int8 GEMM on x86 AVX512-VNNI: one `vpdpbusd` does 64 uint8 x int8 multiply-adds into int32.

MetaSchedule cannot produce these here: TVM 0.27's VNNI tensor intrinsic passes `<16 x i32>`
operands where LLVM's `llvm.x86.avx512.vpdpbusd.512` now takes `<64 x i8>`, so every attempt
fails LLVM verification. This module registers a corrected intrinsic and builds a hand-scheduled
GEMM around it; compile/int8.py calls it for matmuls and (through im2col) convolutions.

Layout: activations A[M, Kp] uint8; weights packed at compile time as W[Np/16, Kp/4, 16, 4] int8
(16 output channels x 4 reduction elements = the 64 bytes one instruction consumes); output
C[M, Np] int32. Kp and Np are K and N rounded up to 4 and 16; the padding weights are zero.
"""
from __future__ import annotations

from functools import lru_cache

import numpy as np

INTRIN = "edgeopt_vnni_dot_16x4"
LLVM_FEATURE = "avx512vnni"


@lru_cache(maxsize=None)
def _register() -> str:
    from tvm.s_tir import TensorIntrin
    from tvm.s_tir.tensor_intrin.x86 import dot_product_16x4_u8i8i32_desc
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((16, 4), "int8", offset_factor=1),
        C: T.Buffer((16,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:16], A[0:4], B[0:16, 0:4])
            T.writes(C[0:16])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), 16), dtype="int8x64")
            C[T.ramp(T.int32(0), 1, 16)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx512.vpdpbusd.512"),
                C.vload([0], dtype="int32x16"), a, B.vload([0, 0], dtype="int8x64"), dtype="int32x16")

    TensorIntrin.register(INTRIN, dot_product_16x4_u8i8i32_desc, impl)
    return INTRIN


def available(cpu_features) -> bool:
    return LLVM_FEATURE in set(cpu_features)


def padded(k: int, n: int) -> tuple[int, int]:
    return -(-k // 4) * 4, -(-n // 16) * 16


def pack_weights(w: np.ndarray, *, kp: int | None = None) -> np.ndarray:
    """[N, K] int8 -> [Np/16, Kp/4, 16, 4], zero-padded (to `kp` columns if given)."""
    n, k = w.shape
    kp_min, np_ = padded(k, n)
    kp = kp or kp_min
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = w
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, kp // 4, 4).transpose(0, 2, 1, 3))


@lru_cache(maxsize=None)
def gemm(m: int, kp: int, np_: int):
    """The scheduled PrimFunc C[m, np_] = A[m, kp] (u8) x W (packed i8), int32."""
    import tvm
    import tvm.s_tir as s_tir
    from tvm import te

    intrin = _register()
    A = te.placeholder((m, kp), "uint8", name="A")
    W = te.placeholder((np_ // 16, kp // 4, 16, 4), "int8", name="W")
    k = te.reduce_axis((0, kp), name="k")
    C = te.compute(
        (m, np_),
        lambda i, j: te.sum(A[i, k].astype("int32") * W[j // 16, k // 4, j % 16, k % 4].astype("int32"), axis=k),
        name="C",
    )
    sch = s_tir.Schedule(te.create_prim_func([A, W, C]))
    blk = sch.get_sblock("C")
    i, j, kk = sch.get_loops(blk)
    rows = next(d for d in (8, 4, 2, 1) if m % d == 0)  # independent accumulators per step
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, 16])
    ko, ki = sch.split(kk, [None, 4])
    sch.reorder(io, ko, ii, jo, ji, ki)
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ii)
    sch.tensorize(ji, intrin)
    # scheduled by hand: MetaSchedule leaves it alone
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


@lru_cache(maxsize=None)
def conv2d(h: int, w: int, cp: int, n: int, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]):
    """The scheduled PrimFunc of a direct convolution on channels-last uint8 input
    X[h, w, cp] (already padded, cp a multiple of 4) with weights packed as
    W[Np/16, kh, kw, cp/4, 16, 4]: C[oh, ow, Np] int32. No im2col: each step reads the 4
    channels of one input pixel and 16 output channels' weights for them."""
    import tvm.s_tir as s_tir
    from tvm import te

    intrin = _register()
    np_ = -(-n // 16) * 16
    oh, ow = out_hw(h, w, kh=kh, kw=kw, stride=stride, dilation=dilation)
    X = te.placeholder((h, w, cp), "uint8", name="X")
    W = te.placeholder((np_ // 16, kh, kw, cp // 4, 16, 4), "int8", name="W")
    rh, rw, rc = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kw), "rw"), te.reduce_axis((0, cp), "rc")
    C = te.compute(
        (oh, ow, np_),
        lambda y, x, j: te.sum(
            X[y * stride[0] + rh * dilation[0], x * stride[1] + rw * dilation[1], rc].astype("int32")
            * W[j // 16, rh, rw, rc // 4, j % 16, rc % 4].astype("int32"), axis=[rh, rw, rc]),
        name="C",
    )
    sch = s_tir.Schedule(te.create_prim_func([X, W, C]))
    blk = sch.get_sblock("C")
    y, x, j, r_h, r_w, r_c = sch.get_loops(blk)
    cols = next(d for d in (8, 7, 5, 4, 3, 2, 1) if ow % d == 0)  # independent accumulators per step
    xo, xi = sch.split(x, [None, cols])
    jo, ji = sch.split(j, [None, 16])
    co, ci = sch.split(r_c, [None, 4])
    sch.reorder(y, xo, jo, r_h, r_w, co, xi, ji, ci)
    init = sch.decompose_reduction(blk, r_h)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(xi)
    sch.tensorize(ji, intrin)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


def pack_conv_weights(w: np.ndarray, cp: int) -> np.ndarray:
    """[N, C, kh, kw] int8 -> [Np/16, kh, kw, cp/4, 16, 4], zero-padded channels."""
    n, c, kh, kw = w.shape
    np_ = -(-n // 16) * 16
    full = np.zeros((np_, cp, kh, kw), np.int8)
    full[:n, :c] = w
    # [no, 16, cp/4, 4, kh, kw] -> [no, kh, kw, cp/4, 16, 4]
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, cp // 4, 4, kh, kw).transpose(0, 4, 5, 2, 1, 3))


def out_hw(h: int, w: int, *, kh: int, kw: int, stride, dilation) -> tuple[int, int]:
    return ((h - dilation[0] * (kh - 1) - 1) // stride[0] + 1, (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


def _requantize(acc, corr, scale, bias, j, *, out_scale: float, out_zero: int, out_dtype: str):
    """The epilogue, written like Relax's own subtract/astype/multiply/add/quantize legalizations
    so the fused kernels round exactly as the unfused graph (and onnxruntime) does."""
    from tvm import te, tirx

    real = (acc - corr[j]).astype("float32") * scale[j]
    if bias is not None:
        real = real + bias[j]
    q = te.round(real / tirx.const(out_scale, "float32")) + tirx.const(out_zero, "float32")
    lo, hi = (0.0, 255.0) if out_dtype == "uint8" else (-128.0, 127.0)
    return te.max(te.min(q, tirx.const(hi, "float32")), tirx.const(lo, "float32")).astype(out_dtype)


@lru_cache(maxsize=None)
def conv2d_requant(h: int, row: int, c: int, np_: int, kh: int, kw: int, oh: int, ow: int,
                   stride: tuple[int, int], dh: int, out_scale: float, out_zero: int, out_dtype: str,
                   float_bias: bool = False):
    """A convolution with its requantize epilogue, on channels-last uint8 input flattened per row:
    X[1, h, row] with row = padded width * c. The reduction runs over (kh, kw*c) -- kw and the
    channels folded together, rounded up to 4 with zero weights -- so a 1-channel first layer
    wastes no lanes on channel padding and no im2col is built. Weights packed as
    W[np_/16, kh, kwc/4, 16, 4]; per-channel int32 zero-point correction, fp32 scale and bias of
    length np_ (an integer bias is folded into the correction; `float_bias` adds an fp32 one).
    Output Y[1, oh, ow, np_] already quantized; its padding channels hold values the next layer's
    zero weights ignore."""
    import tvm.s_tir as s_tir
    from tvm import te

    intrin = _register()
    kwc = -(-kw * c // 4) * 4
    X = te.placeholder((1, h, row), "uint8", name="X")
    W = te.placeholder((np_ // 16, kh, kwc // 4, 16, 4), "int8", name="W")
    corr = te.placeholder((np_,), "int32", name="corr")
    scale = te.placeholder((np_,), "float32", name="scale")
    bias = te.placeholder((np_,), "float32", name="bias") if float_bias else None
    rh, rj = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kwc), "rj")
    C = te.compute(
        (oh, ow, np_),
        lambda y, x, j: te.sum(
            X[0, y * stride[0] + rh * dh, x * stride[1] * c + rj].astype("int32")
            * W[j // 16, rh, rj // 4, j % 16, rj % 4].astype("int32"), axis=[rh, rj]),
        name="C",
    )
    Y = te.compute((1, oh, ow, np_), lambda b, y, x, j: _requantize(
        C[y, x, j], corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype), name="Y")
    sch = s_tir.Schedule(te.create_prim_func([X, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    y, x, j, r_h, r_j = sch.get_loops(blk)
    cols = next(d for d in (8, 7, 5, 4, 3, 2, 1) if ow % d == 0)  # independent accumulators per step
    xo, xi = sch.split(x, [None, cols])
    jo, ji = sch.split(j, [None, 16])
    jo_, jr = sch.split(r_j, [None, 4])
    sch.reorder(y, xo, jo, r_h, jo_, xi, ji, jr)
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, jo)  # requantize 16 channels while they are in registers
    sch.vectorize(sch.get_loops(out)[-1])
    init = sch.decompose_reduction(blk, r_h)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(xi)
    sch.tensorize(ji, intrin)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


def pack_folded_conv_weights(w: np.ndarray) -> np.ndarray:
    """[N, C, kh, kw] int8 -> [Np/16, kh, kwc/4, 16, 4] with j = kw_index * C + c, zero-padded."""
    n, c, kh, kw = w.shape
    np_ = -(-n // 16) * 16
    kwc = -(-kw * c // 4) * 4
    full = np.zeros((np_, kh, kwc), np.int8)
    full[:n, :, : kw * c] = w.transpose(0, 2, 3, 1).reshape(n, kh, kw * c)
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, kh, kwc // 4, 4).transpose(0, 2, 3, 1, 4))


@lru_cache(maxsize=None)
def gemm_requant(m: int, cols: int, kp: int, np_: int, out_scale: float, out_zero: int, out_dtype: str,
                 float_bias: bool = False):
    """gemm() with the requantize epilogue: Y[m, np_] quantized, from the first kp of A[m, cols]
    uint8 (a previous layer's padded output is read in place)."""
    import tvm.s_tir as s_tir
    from tvm import te

    intrin = _register()
    A = te.placeholder((m, cols), "uint8", name="A")
    W = te.placeholder((np_ // 16, kp // 4, 16, 4), "int8", name="W")
    corr = te.placeholder((np_,), "int32", name="corr")
    scale = te.placeholder((np_,), "float32", name="scale")
    bias = te.placeholder((np_,), "float32", name="bias") if float_bias else None
    k = te.reduce_axis((0, kp), name="k")
    C = te.compute(
        (m, np_),
        lambda i, j: te.sum(A[i, k].astype("int32") * W[j // 16, k // 4, j % 16, k % 4].astype("int32"), axis=k),
        name="C",
    )
    Y = te.compute((m, np_), lambda i, j: _requantize(
        C[i, j], corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype), name="Y")
    sch = s_tir.Schedule(te.create_prim_func([A, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    i, j, kk = sch.get_loops(blk)
    rows = next(d for d in (8, 4, 2, 1) if m % d == 0)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, 16])
    ko, ki = sch.split(kk, [None, 4])
    sch.reorder(io, jo, ko, ii, ji, ki)
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, jo)
    sch.vectorize(sch.get_loops(out)[-1])
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(ii)
    sch.tensorize(ji, intrin)
    return sch.mod["main"].with_attr("tir.is_scheduled", True)
