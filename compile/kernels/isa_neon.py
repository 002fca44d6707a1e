"""neon: the Arm cores without the dot-product extension (cortex-a72, generic aarch64): exact
int16-widening multiply-accumulates, `smlal` by element. Per step (4 reduction elements x `lanes` output
channels) the 4 uint8 activations are loaded once and widened to int16 in one register; the
weights are stored already widened to int16 (`weight_dtype`: widened once when packing, not on
every step; their loads are shared by every output column of the register block), and each
group of 4 is multiplied by one activation lane (`smlal v.4s, w.4h, a.h[k]`): lanes/4
instructions per reduction element and no broadcast loads. uint8 and int8 values fit int16, their
products and sums int32, so nothing saturates: exact.

The register budget: a block of `cols` output columns keeps cols * lanes/4 int32 accumulators,
the widened weights of one step (lanes/4 * 2 registers at 16 lanes) and the columns' activations
in the 32 NEON registers; more columns spill accumulators to the stack on every step
(`max_cols`)."""

from __future__ import annotations

from functools import lru_cache

from .registry import Isa, register

SMULL = "llvm.aarch64.neon.smull.v4i32"


@lru_cache(maxsize=None)
def intrinsic(lanes: int, a_dtype: str = "uint8") -> str:
    """A[4] (uint8, or int16 already widened) x B[4, lanes] (int8 values stored as int16) ->
    int32 C[lanes] += ...: 4 x lanes/4 `smlal` by element."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if lanes % 4:
        raise ValueError(f"the NEON kernel takes a multiple of 4 lanes, got {lanes}")
    wide = 8 if lanes % 8 == 0 else 4  # weights loaded 8 at a time (smlal + smlal2 on one register)

    @T.prim_func(s_tir=True)
    def desc(
        A: T.Buffer((4,), a_dtype, offset_factor=1),
        B: T.Buffer((4, lanes), "int16", offset_factor=1),
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
        B: T.Buffer((4, lanes), "int16", offset_factor=1),
        C: T.Buffer((lanes,), "int32", offset_factor=1),
    ) -> None:
        with T.sblock("root"):
            T.reads(C[0:lanes], A[0:4], B[0:4, 0:lanes])
            T.writes(C[0:lanes])
            a = T.Cast("int16x4", A.vload([0], f"{a_dtype}x4"))
            for k in T.unroll(0, 4):
                for g in T.unroll(0, lanes // 4):  # smlal v.4s, w.4h, a.h[k] (smlal2 on the high halves)
                    C[T.ramp(g * 4, 1, 4)] = C.vload([g * 4], dtype="int32x4") + T.call_llvm_pure_intrin(
                        T.llvm_lookup_intrinsic_id(SMULL),
                        T.Shuffle(
                            [B.vload([k, g * 4 // wide * wide], f"int16x{wide}")], [g * 4 % wide + i for i in range(4)]
                        ),
                        T.Shuffle([a], [k, k, k, k]),
                        dtype="int32x4",
                    )

    name = f"edgeopt_neon_smlal_{lanes}x4_{a_dtype}"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


ISA = register(
    Isa(
        name="neon",
        arch="aarch64",
        requires=frozenset({"neon"}),
        priority=10,
        lanes=lambda n: 4 if n <= 4 else 8 if n <= 8 else 16,  # a thin (pruned) layer wastes no lanes
        weight_block=lambda lanes: (4, lanes),
        weight_index=lambda lane, k4: (k4, lane),
        lanes_outer=False,
        intrinsic=intrinsic,
        weight_dtype="int16",
        # 16 lanes: 4 columns x 4 accumulators + 8 widened weight registers + 4 activations = 28
        max_cols=lambda lanes: 64 // lanes,
    )
)
