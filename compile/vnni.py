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
def _register(lanes: int = 16) -> str:
    """The uint8 x int8 -> int32 dot-product intrinsic on `lanes` output channels: 16 (zmm) or 8
    (ymm: half the lanes, but two issue ports, so thin layers waste half as much)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    bits, vec = lanes * 32, f"int32x{lanes}"
    llvm = f"llvm.x86.avx512.vpdpbusd.{bits}"

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            for i in T.serial(0, lanes):
                for k in T.serial(0, 4):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vi, vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((lanes, 4), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:lanes, 0:4])
            T.writes(C[0:lanes])
            a = T.reinterpret(T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes),
                              dtype=f"int8x{lanes * 4}")
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm),
                C.vload([0], dtype=vec), a, B.vload([0, 0], dtype=f"int8x{lanes * 4}"), dtype=vec)

    name = f"{INTRIN}_{lanes}"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


def available(cpu_features) -> bool:
    return LLVM_FEATURE in set(cpu_features)


def kernels_for(target) -> str | None:
    """The fused int8 layers' dot-product kernels for `target` (a compile.targets.Target):
    "vnni" or "avx2" where the CPU has it, "generic" on other x86 CPUs, None (unfused int32 Relax
    ops) elsewhere: the Arm targets' fused kernels are not yet checked on a board."""
    info = target.describe()
    features = set(info["cpu_features"])
    if available(features):
        return "vnni"
    if info["arch"] == "aarch64":  # Arm: sdot where the core has it, else NEON by LLVM (exact)
        from .arm_dot import available as has_dot

        return "armdot" if has_dot(features) else "generic"
    if info["arch"] != "x86_64":
        return None
    return "avx2" if "avx2" in features else "generic"


def padded(k: int, n: int) -> tuple[int, int]:
    return -(-k // 4) * 4, -(-n // 16) * 16


def pack_weights(w: np.ndarray, *, kp: int | None = None, isa: str = "vnni", lanes: int = 16) -> np.ndarray:
    """[N, K] int8 -> [Np/lanes, Kp/4, lanes, 4] ("vnni") or [.., 4, lanes] ("generic"),
    zero-padded (to `kp` columns if given)."""
    n, k = w.shape
    kp = kp or -(-k // 4) * 4
    np_ = -(-n // lanes) * lanes
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = w
    return _pack_inner(full.reshape(np_ // lanes, lanes, kp // 4, 4), isa)


# The dot-product kernels: "vnni" (AVX512-VNNI vpdpbusd, 64 multiply-adds an instruction),
# "avx2" (exact uint8 x int8 on any AVX2 CPU: widened to int16 and summed in pairs into int32 by
# vpmaddwd -- not vpmaddubsw, whose int16 sums saturate), "generic" (int32 multiply-adds that
# LLVM vectorizes for whatever CPU it targets).
ISAS = ("vnni", "avx2", "generic", "armdot")
# kernels whose weights are packed lanes x 4 (one dot-product instruction's operand)
_LANE_MAJOR = ("vnni", "armdot")


def act_shift(isa: str) -> int:
    """What the kernel takes off each uint8 activation before multiplying (armdot: 128, see
    compile/arm_dot.py); the caller adds shift * sum(weights) back through the correction."""
    if isa == "armdot":
        from .arm_dot import ACT_SHIFT

        return ACT_SHIFT
    return 0


def lanes_for(isa: str, n: int) -> int:
    """Output channels per dot-product step: 8 (one ymm of int32) for thin layers and AVX2."""
    return 8 if n <= 8 or isa == "avx2" else 16


def _check_isa(isa: str) -> None:
    if isa not in ISAS:
        raise ValueError(f"unknown dot-product kernel {isa!r}; known: {', '.join(ISAS)}")


def _packed_shape(*outer: int, lanes: int, isa: str) -> tuple[int, ...]:
    return {"vnni": (*outer, lanes, 4), "armdot": (*outer, lanes, 4), "avx2": (*outer, 2, lanes, 2),
            "generic": (*outer, 4, lanes)}[isa]


def _packed_index(*idx, isa: str):
    """(outer..., lane, k4) in the packed weights' order."""
    *outer, lane, k4 = idx
    if isa == "avx2":
        return (*outer, k4 // 2, lane, k4 % 2)
    return (*outer, lane, k4) if isa in _LANE_MAJOR else (*outer, k4, lane)


def _pack_inner(full: np.ndarray, isa: str) -> np.ndarray:
    """[..., lanes, K4, 4] (lane-major, reduction in chunks of 4) -> the isa's packed order,
    [..., K4, <the last two axes of _packed_shape>]."""
    lead = full.ndim - 3
    ax = list(range(lead))
    if isa in _LANE_MAJOR:
        return np.ascontiguousarray(full.transpose(*ax, lead + 1, lead, lead + 2))
    if isa == "generic":
        return np.ascontiguousarray(full.transpose(*ax, lead + 1, lead + 2, lead))
    pairs = full.reshape(*full.shape[:-1], 2, 2)  # [..., lanes, K4, 2, 2]
    return np.ascontiguousarray(pairs.transpose(*ax, lead + 1, lead + 2, lead, lead + 3))


def conv_input_dtype(isa: str) -> str:
    """What a convolution reads: uint8, or for "avx2" the same values widened to int16 by the
    padding step before it, so each pair of them is one broadcast load for vpmaddwd."""
    return "int16" if isa == "avx2" else "uint8"


def _dot(sch, lane_loop, k_loop, *, lanes: int, isa: str, a_dtype: str = "uint8") -> None:
    """The innermost lanes x 4 multiply-accumulate: one vpdpbusd ("vnni"), or int32
    multiply-adds vectorized over the output lanes ("generic": exact on any CPU LLVM targets)."""
    if isa == "vnni":
        sch.tensorize(lane_loop, _register(lanes))
    elif isa == "armdot":
        from .arm_dot import register

        sch.tensorize(lane_loop, register(lanes))
    elif isa == "avx2":
        sch.tensorize(k_loop, _register_avx2(lanes, a_dtype))
    else:  # loop vectorize refuses a reduction block without its init; a tensor intrinsic does it
        sch.tensorize(k_loop, _register_generic(lanes))


@lru_cache(maxsize=None)
def _register_avx2(lanes: int, a_dtype: str = "uint8") -> str:
    """8 lanes x 4: uint8 pairs (`a_dtype` int16: already widened) and int8 weight pairs
    widened to int16, two vpmaddwd."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if lanes != 8:
        raise ValueError("the avx2 dot product takes 8 lanes")

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((2, 8, 2), "int8", offset_factor=1),
        C: T.Buffer((8,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:4], B[0:2, 0:8, 0:2])
            T.writes(C[0:8])
            for k in T.serial(0, 4):
                for i in T.serial(0, 8):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vk // 2, vi, vk % 2], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((2, 8, 2), "int8", offset_factor=1),
        C: T.Buffer((8,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:4], B[0:2, 0:8, 0:2])
            T.writes(C[0:8])
            for p in T.unroll(0, 2):
                a = T.reinterpret(T.broadcast(T.reinterpret(
                    A.vload([p * 2], "int16x2") if a_dtype == "int16" else T.Cast("int16x2", A.vload([p * 2], "uint8x2")),
                    dtype="int32"), 8), dtype="int16x16")
                b = T.Cast("int16x16", B.vload([p, 0, 0], "int8x16"))
                C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), a, b, dtype="int32x8")

    name = f"edgeopt_avx2_dot_8x4_{a_dtype}"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


@lru_cache(maxsize=None)
def _register_generic(lanes: int) -> str:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((4, lanes), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:4, 0:lanes])
            T.writes(C[0:lanes])
            for k in T.serial(0, 4):
                for i in T.serial(0, lanes):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vk], "int32") * T.cast(B[vk, vi], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((4,), "uint8", offset_factor=1),
        B: T.Buffer((4, lanes), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:4, 0:lanes])
            T.writes(C[0:lanes])
            for k in T.unroll(0, 4):
                for i in T.vectorized(0, lanes):
                    C[i] = C[i] + T.cast(A[k], "int32") * T.cast(B[k, i], "int32")

    name = f"edgeopt_generic_dot_{lanes}x4"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


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
    """The requantize epilogue. With an fp32 bias it is written like Relax's own legalizations
    (multiply, add, divide by the output scale); with the bias folded into the integer correction
    `scale` is sx*sw/sy and a single multiply does it (a vector divide per 16 outputs cost as much
    as the dot products in a thin layer)."""
    from tvm import te, tirx

    real = (acc - corr[j]).astype("float32") * scale[j]
    if bias is None:  # `scale` already divided by the output scale: one multiply, as onnxruntime does
        q = te.round(real) + tirx.const(out_zero, "float32")
    else:
        q = te.round((real + bias[j]) / tirx.const(out_scale, "float32")) + tirx.const(out_zero, "float32")
    lo, hi = (0.0, 255.0) if out_dtype == "uint8" else (-128.0, 127.0)
    return te.max(te.min(q, tirx.const(hi, "float32")), tirx.const(lo, "float32")).astype(out_dtype)


@lru_cache(maxsize=None)
def conv2d_requant(h: int, row: int, c: int, np_: int, kh: int, kw: int, oh: int, ow: int,
                   stride: tuple[int, int], dh: int, out_scale: float, out_zero: int, out_dtype: str,
                   float_bias: bool = False, lanes: int = 16, isa: str = "vnni"):
    """A convolution with its requantize epilogue, on channels-last uint8 input flattened per row:
    X[1, h, row] with row = padded width * c. The reduction runs over (kh, kw*c) -- kw and the
    channels folded together, rounded up to 4 with zero weights -- so a 1-channel first layer
    wastes no lanes on channel padding and no im2col is built. Weights packed as
    W[np_/lanes, kh, kwc/4, lanes, 4]; per-channel int32 zero-point correction, fp32 scale and bias of
    length np_ (an integer bias is folded into the correction; `float_bias` adds an fp32 one).
    Output Y[1, oh, ow, np_] already quantized; its padding channels hold values the next layer's
    zero weights ignore. `isa`: "vnni" tensorizes the dot products; "generic" (any CPU) packs
    the weights W[np_/lanes, kh, kwc/4, 4, lanes] and lets LLVM vectorize over the lanes."""
    import tvm.s_tir as s_tir
    from tvm import te

    _check_isa(isa)
    kwc = -(-kw * c // 4) * 4
    X = te.placeholder((1, h, row), conv_input_dtype(isa), name="X")
    W = te.placeholder(_packed_shape(np_ // lanes, kh, kwc // 4, lanes=lanes, isa=isa), "int8", name="W")
    corr = te.placeholder((np_,), "int32", name="corr")
    scale = te.placeholder((np_,), "float32", name="scale")
    bias = te.placeholder((np_,), "float32", name="bias") if float_bias else None
    rh, rj = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kwc), "rj")
    C = te.compute(
        (oh, ow, np_),
        lambda y, x, j: te.sum(
            X[0, y * stride[0] + rh * dh, x * stride[1] * c + rj].astype("int32")
            * W[_packed_index(j // lanes, rh, rj // 4, j % lanes, rj % 4, isa=isa)].astype("int32"), axis=[rh, rj]),
        name="C",
    )
    Y = te.compute((1, oh, ow, np_), lambda b, y, x, j: _requantize(
        C[y, x, j], corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype), name="Y")
    sch = s_tir.Schedule(te.create_prim_func([X, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    y, x, j, r_h, r_j = sch.get_loops(blk)
    cols = next(d for d in (8, 7, 5, 4, 3, 2, 1) if ow % d == 0)  # independent accumulators per step
    xo, xi = sch.split(x, [None, cols])
    jo, ji = sch.split(j, [None, lanes])
    jo_, jr = sch.split(r_j, [None, 4])
    sch.reorder(y, xo, jo, r_h, jo_, xi, *((ji, jr) if isa in _LANE_MAJOR else (jr, ji)))
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, jo)  # requantize 16 channels while they are in registers
    sch.vectorize(sch.get_loops(out)[-1])
    sch.unroll(sch.get_loops(out)[-2])
    init = sch.decompose_reduction(blk, r_h)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(sch.get_loops(init)[-2])
    sch.unroll(xi)
    _dot(sch, ji, jr, lanes=lanes, isa=isa, a_dtype=conv_input_dtype(isa))
    # the accumulators: a local array indexed by constants only, which LLVM keeps in registers
    sch.set_scope(init, 0, "local")
    return _opaque(sch)


def rows_ok(isa: str, c: int, n: int, kh: int, kw: int, stride, dilation) -> bool:
    """Whether conv2d_rows_requant takes this layer: one input channel, unit stride and
    dilation, vpmaddwd (every AVX2 CPU, so also the VNNI ones), and fewer dot-product
    instructions per 8 output pixels than conv2d_requant's channel vectors would need."""
    if isa not in ("avx2", "vnni") or c != 1 or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    shp = rows_shape(1, 1, n, kh, kw)
    lanes = lanes_for(isa, n)
    steps = -(-kw // 4) * (2 if isa == "avx2" else 1)  # per kernel row: 4 taps per vpdpbusd, 2 per vpmaddwd
    return shp["np"] * shp["pairs"] * kw <= 8 * -(-n // lanes) * kh * steps


def rows_shape(oh: int, ow: int, n: int, kh: int, kw: int) -> dict:
    """The padded sizes conv2d_rows_requant works on: ow rounded up to whole 8-pixel vectors,
    channels to whole register blocks, kernel rows to pairs; the paired input it reads is
    X2[oh + 2*(pairs-1), owp + kw - 1, 2]."""
    ci = min(n, 3)  # 3 channels x 4 vectors of 8 pixels = 12 ymm accumulators
    owp = -(-ow // 8) * 8
    pairs = -(-kh // 2)
    return {"ci": ci, "np": -(-n // ci) * ci, "owp": owp, "pairs": pairs,
            "rows": oh + 2 * (pairs - 1), "cols": owp + kw - 1}


@lru_cache(maxsize=None)
def _register_rows() -> str:
    """8 output pixels x one pair of kernel rows: one vpmaddwd of 8 (pixel, pixel one row below)
    int16 pairs with the broadcast pair of weights."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((8, 2), "int16", offset_factor=1),
        B: T.Buffer((2,), "int16", offset_factor=1),
        C: T.Buffer((8,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:8, 0:2], B[0:2])
            T.writes(C[0:8])
            for i in T.serial(0, 8):
                for k in T.serial(0, 2):
                    with T.sblock("update"):
                        vi, vk = T.axis.remap("SR", [i, k])
                        C[vi] = C[vi] + T.cast(A[vi, vk], "int32") * T.cast(B[vk], "int32")

    @T.prim_func(s_tir=True)
    def impl(
        A: T.Buffer((8, 2), "int16", offset_factor=1),
        B: T.Buffer((2,), "int16", offset_factor=1),
        C: T.Buffer((8,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:8], A[0:8, 0:2], B[0:2])
            T.writes(C[0:8])
            b = T.reinterpret(T.broadcast(T.reinterpret(B.vload([0], "int16x2"), dtype="int32"), 8), dtype="int16x16")
            C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), A.vload([0, 0], "int16x16"), b, dtype="int32x8")

    name = "edgeopt_avx2_rows_8x2"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


def pack_rows_weights(w: np.ndarray) -> np.ndarray:
    """[N, 1, kh, kw] int8 -> Wp[np, pairs, kw, 2] int16: kernel rows 2p and 2p+1 side by side,
    zero rows and channels as padding."""
    n, _, kh, kw = w.shape
    shp = rows_shape(1, 1, n, kh, kw)
    full = np.zeros((shp["np"], 2 * shp["pairs"], kw), np.int16)
    full[:n, :kh] = w[:, 0]
    return np.ascontiguousarray(full.reshape(shp["np"], shp["pairs"], 2, kw).transpose(0, 1, 3, 2))


@lru_cache(maxsize=None)
def conv2d_rows_requant(oh: int, ow: int, n: int, kh: int, kw: int, out_scale: float, out_zero: int,
                        out_dtype: str, float_bias: bool = False, pool: int = 1):
    """A one-input-channel, unit-stride convolution (a network's first layer on grey images)
    with its requantize epilogue, vectorized over output pixels instead of channels: thin
    output layers waste no lanes, and the kernel's rows pair up for vpmaddwd. Reads
    X2[r, x, t] = x[r + t, x] (the padded image and itself one row down, int16), weights from
    pack_rows_weights; writes Y[1, np, oh, ow] (NCHW; channels past n are padding).
    corr/scale/bias as for conv2d_requant, per channel.

    `pool` 2: the 2x2 max-pool that follows is done on the int32 sums before requantizing
    (requantize is monotonic: scales are positive), Y[1, np, oh // 2, owp // 2], its columns
    past ow // 2 padding."""
    import tvm.s_tir as s_tir
    from tvm import te

    if pool not in (1, 2):
        raise ValueError(f"pool must be 1 or 2, got {pool}")
    shp = rows_shape(oh, ow, n, kh, kw)
    ci, np_, owp, pairs = shp["ci"], shp["np"], shp["owp"], shp["pairs"]
    X = te.placeholder((shp["rows"], shp["cols"], 2), "int16", name="X")
    W = te.placeholder((np_, pairs, kw, 2), "int16", name="W")
    corr = te.placeholder((np_,), "int32", name="corr")
    scale = te.placeholder((np_,), "float32", name="scale")
    bias = te.placeholder((np_,), "float32", name="bias") if float_bias else None
    rp, rq, rt = te.reduce_axis((0, pairs), "rp"), te.reduce_axis((0, kw), "rq"), te.reduce_axis((0, 2), "rt")
    C = te.compute(
        (np_, oh // pool * pool, owp),
        lambda j, y, x: te.sum(X[y + 2 * rp, x + rq, rt].astype("int32") * W[j, rp, rq, rt].astype("int32"),
                               axis=[rp, rq, rt]),
        name="C",
    )

    def requant(acc, j):
        return _requantize(acc, corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype)

    if pool == 1:
        Y = te.compute((1, np_, oh, ow), lambda b, j, y, x: requant(C[j, y, x], j), name="Y")
    else:
        Y = te.compute((1, np_, oh // 2, owp // 2), lambda b, j, y, x: requant(te.max(
            te.max(C[j, 2 * y, 2 * x], C[j, 2 * y, 2 * x + 1]),
            te.max(C[j, 2 * y + 1, 2 * x], C[j, 2 * y + 1, 2 * x + 1])), j), name="Y")
    sch = s_tir.Schedule(te.create_prim_func([X, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    j, y, x, r_p, r_q, r_t = sch.get_loops(blk)
    vecs = owp // 8
    # accumulators: ci channels x pool rows x block vectors of 8 pixels, within 12 ymm registers
    block = next(d for d in (4, 3, 2, 1) if vecs % d == 0 and ci * pool * d <= 12)
    jo, ji = sch.split(j, [None, ci])
    yo, yi = sch.split(y, [None, pool])
    xo, xb, xi = sch.split(x, [None, block, 8])
    sch.reorder(yo, jo, xo, r_p, r_q, ji, yi, xb, xi, r_t)
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, xo)
    *_, oj, oy, ox = sch.get_loops(out)
    width = ow if pool == 1 else block * 4
    oxo, oxi = sch.split(ox, [None, next(d for d in (8, 4, 2, 1) if width % d == 0)])
    sch.vectorize(oxi)
    sch.unroll(oxo)
    sch.unroll(oj)
    init = sch.decompose_reduction(blk, r_p)
    *_, ij, iy, ixb, ixi = sch.get_loops(init)
    sch.vectorize(ixi)
    for loop in (ixb, iy, ij, ji, yi, xb):
        sch.unroll(loop)
    sch.tensorize(xi, _register_rows())
    sch.set_scope(init, 0, "local")
    return _opaque(sch)


def _opaque(sch):
    """Scheduled by hand, and opaque to FuseOps: fusing a scheduled kernel into its neighbours
    breaks FuseTIR, and MetaSchedule leaves it alone."""
    return sch.mod["main"].with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8)


def pack_folded_conv_weights(w: np.ndarray, lanes: int = 16, isa: str = "vnni") -> np.ndarray:
    """[N, C, kh, kw] int8 -> [Np/lanes, kh, kwc/4, lanes, 4] ("vnni") or [.., 4, lanes]
    ("generic") with j = kw_index * C + c, zero-padded."""
    n, c, kh, kw = w.shape
    np_ = -(-n // lanes) * lanes
    kwc = -(-kw * c // 4) * 4
    full = np.zeros((np_, kh, kwc), np.int8)
    full[:n, :, : kw * c] = w.transpose(0, 2, 3, 1).reshape(n, kh, kw * c)
    # [no, lanes, kh, K4, 4] -> [no, kh, lanes, K4, 4] -> packed
    return _pack_inner(full.reshape(np_ // lanes, lanes, kh, kwc // 4, 4).transpose(0, 2, 1, 3, 4), isa)


@lru_cache(maxsize=None)
def gemm_requant(m: int, cols: int, kp: int, np_: int, out_scale: float, out_zero: int, out_dtype: str,
                 float_bias: bool = False, isa: str = "vnni", lanes: int = 16):
    """gemm() with the requantize epilogue: Y[m, np_] quantized, from the first kp of A[m, cols]
    uint8 (a previous layer's padded output is read in place). `isa` as for conv2d_requant."""
    import tvm.s_tir as s_tir
    from tvm import te

    _check_isa(isa)
    A = te.placeholder((m, cols), "uint8", name="A")
    W = te.placeholder(_packed_shape(np_ // lanes, kp // 4, lanes=lanes, isa=isa), "int8", name="W")
    corr = te.placeholder((np_,), "int32", name="corr")
    scale = te.placeholder((np_,), "float32", name="scale")
    bias = te.placeholder((np_,), "float32", name="bias") if float_bias else None
    k = te.reduce_axis((0, kp), name="k")
    C = te.compute(
        (m, np_),
        lambda i, j: te.sum(A[i, k].astype("int32")
                            * W[_packed_index(j // lanes, k // 4, j % lanes, k % 4, isa=isa)].astype("int32"), axis=k),
        name="C",
    )
    Y = te.compute((m, np_), lambda i, j: _requantize(
        C[i, j], corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype), name="Y")
    sch = s_tir.Schedule(te.create_prim_func([A, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    i, j, kk = sch.get_loops(blk)
    rows = next(d for d in (8, 4, 2, 1) if m % d == 0)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, lanes])
    ko, ki = sch.split(kk, [None, 4])
    sch.reorder(io, jo, ko, ii, *((ji, ki) if isa in _LANE_MAJOR else (ki, ji)))
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, jo)
    sch.vectorize(sch.get_loops(out)[-1])
    sch.unroll(sch.get_loops(out)[-2])
    init = sch.decompose_reduction(blk, ko)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(sch.get_loops(init)[-2])
    sch.unroll(ii)
    _dot(sch, ji, ki, lanes=lanes, isa=isa)
    # the accumulators: a local array indexed by constants only, which LLVM keeps in registers
    sch.set_scope(init, 0, "local")
    return _opaque(sch)


@lru_cache(maxsize=None)
def add_requant(shape: tuple[int, ...], a: tuple[float, int], b: tuple[float, int], out: tuple[float, int],
                dtype: str, out_dtype: str):
    """A residual add on quantized tensors, as onnxruntime's QLinearAdd computes it:
    q = round((qa - za) * sa/sy + (qb - zb) * sb/sy) + zy, vectorized over the last axis
    (the default schedule of the dequantize/add/quantize chain is scalar and divides per element)."""
    import tvm.s_tir as s_tir
    from tvm import te, tirx

    A = te.placeholder(shape, dtype, name="A")
    B = te.placeholder(shape, dtype, name="B")
    ma, mb = (np.float32(a[0]) / np.float32(out[0])), (np.float32(b[0]) / np.float32(out[0]))
    lo, hi = (0.0, 255.0) if out_dtype == "uint8" else (-128.0, 127.0)

    def f(*i):
        va = (A[i].astype("int32") - a[1]).astype("float32") * tirx.const(float(ma), "float32")
        vb = (B[i].astype("int32") - b[1]).astype("float32") * tirx.const(float(mb), "float32")
        q = te.round(va + vb) + tirx.const(out[1], "float32")
        return te.max(te.min(q, tirx.const(hi, "float32")), tirx.const(lo, "float32")).astype(out_dtype)

    Y = te.compute(shape, f, name="Y")
    sch = s_tir.Schedule(te.create_prim_func([A, B, Y]))
    loops = sch.get_loops(sch.get_sblock("Y"))
    outer = sch.fuse(*loops[:-1]) if len(loops) > 1 else None
    lanes = 16 if shape[-1] % 16 == 0 else 1
    if lanes > 1:
        _, inner = sch.split(loops[-1], [None, lanes])
        sch.vectorize(inner)
    return _opaque(sch)
