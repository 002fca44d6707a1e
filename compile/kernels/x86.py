"""x86 intrinsics shared by more than one ISA module (AVX2's vpmaddwd: every AVX2 CPU has it,
so the AVX512-VNNI ones too)."""

from __future__ import annotations

from functools import lru_cache


@lru_cache(maxsize=None)
def rows_intrinsic() -> str:
    """8 output pixels x one pair of kernel rows: one vpmaddwd of 8 (pixel, pixel one row below)
    int16 pairs with the broadcast pair of weights (layers.conv2d_rows_requant)."""
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
                T.llvm_lookup_intrinsic_id("llvm.x86.avx2.pmadd.wd"), A.vload([0, 0], "int16x16"), b, dtype="int32x8"
            )

    name = "edgeopt_avx2_rows_8x2"
    TensorIntrin.register(name, desc, impl, override=True)
    return name
