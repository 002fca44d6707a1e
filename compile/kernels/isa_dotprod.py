"""int8 dot products on Arm cores with the dot-product extension (Armv8.2 `sdot`: cortex-a55,
cortex-a76): one instruction does 16 int8 x int8 multiply-adds into 4 int32 lanes.

The fused layers multiply uint8 activations by int8 weights; `sdot` multiplies int8 by int8 and
`udot` uint8 by uint8 (the mixed `usdot` needs i8mm, which these cores lack). So the kernel flips
each activation byte's top bit (a ^ 0x80 read as int8 is a - 128, exact) and runs `sdot`; the
128 * sum(w) this takes off every output channel is added back through the layer's integer
zero-point correction (the Isa's `act_shift`), which the fused kernel subtracts anyway. So the
intrinsic's implementation equals its description only together with that correction: it is
registered for these fused layers alone (no int32_layers). The result is the
exact uint8 x int8 sum, as onnxruntime's MLAS does it on these cores.

TVM 0.27's own Arm intrinsics (tvm.s_tir.tensor_intrin.arm_cpu.get_dotprod_intrin) cover only
same-signed operands, and name the unsigned one `llvm.aarch64.neon.udot.v4u32.v16u8`, which is
not an LLVM intrinsic (its overloads are spelled with signless types: `.v4i32.v16i8`); so this
module registers its own, with the weights laid out as the "vnni" packing (lanes x 4
reduction bytes), 4 output channels per instruction.
"""

from __future__ import annotations

from functools import lru_cache

from .registry import Isa, register

LLVM_FEATURE = "dotprod"
SDOT = "llvm.aarch64.neon.sdot.v4i32.v16i8"
ACT_SHIFT = 128  # activations enter sdot as a - 128


def available(cpu_features) -> bool:
    return LLVM_FEATURE in set(cpu_features)


@lru_cache(maxsize=None)
def intrinsic(lanes: int = 16, a_dtype: str = "uint8") -> str:
    """uint8 A[4] x int8 B[lanes, 4] -> int32 C[lanes] += ..., lanes/4 sdot on the flipped A."""
    from tvm.s_tir import TensorIntrin
    from tvm.script import tirx as T

    if a_dtype != "uint8":
        raise ValueError("the Arm dot-product kernel reads uint8 activations")
    if lanes % 4:
        raise ValueError(f"the Arm dot product takes a multiple of 4 lanes, got {lanes}")
    groups = lanes // 4

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
            flip = T.reinterpret(
                T.bitwise_xor(T.reinterpret(A.vload([0], "uint8x4"), dtype="int32"), T.int32(-2139062144)),
                dtype="int32",
            )  # 0x80808080
            a = T.reinterpret(T.broadcast(flip, 4), dtype="int8x16")
            for g in T.unroll(0, groups):
                C[T.ramp(g * 4, 1, 4)] = T.call_llvm_pure_intrin(
                    T.llvm_lookup_intrinsic_id(SDOT),
                    C.vload([g * 4], dtype="int32x4"),
                    a,
                    B.vload([g * 4, 0], dtype="int8x16"),
                    dtype="int32x4",
                )

    name = f"edgeopt_arm_sdot_{lanes}x4"
    TensorIntrin.register(name, desc, impl, override=True)
    return name


ISA = register(
    Isa(
        name="dotprod",
        arch="aarch64",
        requires=frozenset({LLVM_FEATURE}),
        priority=30,
        lanes=lambda n: 8 if n <= 8 else 16,
        weight_block=lambda lanes: (lanes, 4),
        weight_index=lambda lane, k4: (lane, k4),
        lanes_outer=True,
        intrinsic=intrinsic,
        dots_per_4=1,
        act_shift=ACT_SHIFT,
        # 16 lanes: 6 columns x 4 accumulators + 4 weight registers + the broadcast activations <= 32
        max_cols=lambda lanes: 96 // lanes,
    )
)
