"""AVX512-VNNI: one `vpdpbusd` does 64 uint8 x int8 multiply-adds into int32 (16 lanes, zmm) or
32 (8 lanes, ymm: half the lanes, but two issue ports, so thin layers waste half as much).

MetaSchedule cannot produce these here: TVM 0.27's VNNI tensor intrinsic passes `<16 x i32>`
operands where LLVM's `llvm.x86.avx512.vpdpbusd.512` now takes `<64 x i8>`, so every attempt
fails LLVM verification. This module registers a corrected intrinsic.

Besides the fused layers (kernels/layers.py) it has int32-out kernels for the unfused layers:
a GEMM, and a direct convolution (no im2col: each step reads the 4 channels of one input pixel
and 16 output channels' weights for them). Their weights: W[Np/16, Kp/4, 16, 4] and
W[Np/16, kh, kw, Cp/4, 16, 4] (16 output channels x 4 reduction elements = the 64 bytes one
instruction consumes), zero-padded.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..sizes import round_up
from .layers import out_hw
from .registry import Int32Layers, Isa, register
from .x86 import rows_intrinsic

LLVM_FEATURE = "avx512vnni"


@lru_cache(maxsize=None)
def intrinsic(lanes: int = 16, a_dtype: str = "uint8") -> str:
    """The uint8 x int8 -> int32 dot product on `lanes` output channels (16 or 8)."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if a_dtype != "uint8":
        raise ValueError("vpdpbusd reads uint8 activations")
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
            a = T.reinterpret(
                T.broadcast(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), lanes), dtype=f"int8x{lanes * 4}"
            )
            C[T.ramp(T.int32(0), 1, lanes)] = T.call_llvm_pure_intrin(
                T.llvm_lookup_intrinsic_id(llvm),
                C.vload([0], dtype=vec),
                a,
                B.vload([0, 0], dtype=f"int8x{lanes * 4}"),
                dtype=vec,
            )

    name = f"edgeopt_vnni_dot_16x4_{lanes}"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


def pack_gemm_weights(w: np.ndarray) -> np.ndarray:
    """[N, K] int8 -> [Np/16, Kp/4, 16, 4], zero-padded."""
    n, k = w.shape
    kp, np_ = round_up(k, 4), round_up(n, 16)
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = w
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, kp // 4, 4).transpose(0, 2, 1, 3))


@lru_cache(maxsize=None)
def gemm(m: int, kp: int, np_: int):
    """The scheduled PrimFunc C[m, np_] = A[m, kp] (u8) x W (packed i8), int32."""
    import tvm.s_tir as s_tir
    from tvm import te

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
    sch.tensorize(ji, intrinsic(16))
    # scheduled by hand: MetaSchedule leaves it alone
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


@lru_cache(maxsize=None)
def conv2d(h: int, w: int, cp: int, n: int, kh: int, kw: int, stride: tuple[int, int], dilation: tuple[int, int]):
    """The scheduled PrimFunc of a direct convolution on channels-last uint8 input
    X[h, w, cp] (already padded, cp a multiple of 4) with weights from pack_conv_weights:
    C[oh, ow, Np] int32."""
    import tvm.s_tir as s_tir
    from tvm import te

    np_ = round_up(n, 16)
    oh, ow = out_hw(h, w, kh=kh, kw=kw, stride=stride, dilation=dilation)
    X = te.placeholder((h, w, cp), "uint8", name="X")
    W = te.placeholder((np_ // 16, kh, kw, cp // 4, 16, 4), "int8", name="W")
    rh, rw, rc = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kw), "rw"), te.reduce_axis((0, cp), "rc")
    C = te.compute(
        (oh, ow, np_),
        lambda y, x, j: te.sum(
            X[y * stride[0] + rh * dilation[0], x * stride[1] + rw * dilation[1], rc].astype("int32")
            * W[j // 16, rh, rw, rc // 4, j % 16, rc % 4].astype("int32"),
            axis=[rh, rw, rc],
        ),
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
    sch.tensorize(ji, intrinsic(16))
    return sch.mod["main"].with_attr("tir.is_scheduled", True)


def pack_conv_weights(w: np.ndarray, cp: int) -> np.ndarray:
    """[N, C, kh, kw] int8 -> [Np/16, kh, kw, cp/4, 16, 4], zero-padded channels."""
    n, c, kh, kw = w.shape
    np_ = round_up(n, 16)
    full = np.zeros((np_, cp, kh, kw), np.int8)
    full[:n, :c] = w
    # [no, 16, cp/4, 4, kh, kw] -> [no, kh, kw, cp/4, 16, 4]
    return np.ascontiguousarray(full.reshape(np_ // 16, 16, cp // 4, 4, kh, kw).transpose(0, 4, 5, 2, 1, 3))


ISA = register(
    Isa(
        name="vnni",
        arch="x86_64",
        requires=frozenset({LLVM_FEATURE}),
        priority=30,
        lanes=lambda n: 8 if n <= 8 else 16,
        weight_block=lambda lanes: (lanes, 4),
        weight_index=lambda lane, k4: (lane, k4),
        lanes_outer=True,
        intrinsic=intrinsic,
        dots_per_4=1,
        rows_intrinsic=rows_intrinsic,  # vpmaddwd: every AVX512-VNNI CPU has AVX2
        int32_layers=Int32Layers(
            gemm=gemm, pack_gemm=pack_gemm_weights, conv2d=conv2d, pack_conv=pack_conv_weights, lanes=16
        ),
    )
)
