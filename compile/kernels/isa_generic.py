"""generic: int32 multiply-adds vectorized over the output lanes, exact on any x86 CPU LLVM
targets (the fallback below AVX2). Loop vectorize refuses a reduction block without its init, so
a tensor intrinsic does the vectorizing."""

from __future__ import annotations

from functools import lru_cache

from .registry import Isa, register


@lru_cache(maxsize=None)
def intrinsic(lanes: int, a_dtype: str = "uint8") -> str:
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
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
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((4, lanes), "int8", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:4, 0:lanes])
            T.writes(C[0:lanes])
            for k in T.unroll(0, 4):
                for i in T.vectorized(0, lanes):
                    C[i] = C[i] + T.cast(A[k], "int32") * T.cast(B[k, i], "int32")

    name = f"edgeopt_generic_dot_{lanes}x4" + ("" if a_dtype == "uint8" else f"_{a_dtype}")
    TensorIntrin.register(name, desc, impl, override=True)
    return name


ISA = register(
    Isa(
        name="generic",
        arch="x86_64",
        requires=frozenset(),
        priority=10,
        lanes=lambda n: 8 if n <= 8 else 16,
        weight_block=lambda lanes: (4, lanes),
        weight_index=lambda lane, k4: (k4, lane),
        lanes_outer=False,
        intrinsic=intrinsic,
    )
)
