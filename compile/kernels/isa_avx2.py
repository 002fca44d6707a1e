"""AVX2: exact uint8 x int8 on any AVX2 CPU. Both sides widened to int16 and summed in pairs
into int32 by vpmaddwd -- not vpmaddubsw, whose int16 sums saturate. 8 lanes (one ymm of int32),
two vpmaddwd per 4 reduction elements; convolutions read their input already widened to int16."""

from __future__ import annotations

from functools import lru_cache

from .registry import Isa, register
from .x86 import rows_intrinsic


@lru_cache(maxsize=None)
def intrinsic(lanes: int, a_dtype: str = "uint8") -> str:
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
                a = T.reinterpret(
                    T.broadcast(
                        T.reinterpret(
                            A.vload([p * 2], "int16x2")
                            if a_dtype == "int16"
                            else T.Cast("int16x2", A.vload([p * 2], "uint8x2")),
                            dtype="int32",
                        ),
                        8,
                    ),
                    dtype="int16x16",
                )
                b = T.Cast("int16x16", B.vload([p, 0, 0], "int8x16"))
                C[T.ramp(T.int32(0), 1, 8)] = C.vload([0], dtype="int32x8") + T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), a, b, dtype="int32x8"
                )

    name = f"edgeopt_avx2_dot_8x4_{a_dtype}"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


ISA = register(
    Isa(
        name="avx2",
        arch="x86_64",
        requires=frozenset({"avx2"}),
        priority=20,
        lanes=lambda n: 8,
        weight_block=lambda lanes: (2, lanes, 2),
        weight_index=lambda lane, k4: (k4 // 2, lane, k4 % 2),
        lanes_outer=False,
        intrinsic=intrinsic,
        conv_input="int16",
        dots_per_4=2,
        rows_intrinsic=rows_intrinsic,
    )
)
