"""neon: the Arm cores without the dot-product extension (cortex-a72, generic aarch64): int32
multiply-adds over the output lanes, which LLVM turns into NEON widening moves and
multiply-accumulates (`sxtl`/`uxtl`, `mla`/`smlal`): exact, no saturating step. The same
intrinsic as the x86 "generic" ISA, registered for aarch64 with NEON (every Armv8-A core)."""
from __future__ import annotations

from .isa_generic import intrinsic
from .registry import Isa, register

ISA = register(Isa(
    name="neon", arch="aarch64", requires=frozenset({"neon"}), priority=10,
    lanes=lambda n: 8 if n <= 8 else 16,
    weight_block=lambda lanes: (4, lanes),
    weight_index=lambda lane, k4: (k4, lane),
    lanes_outer=False, intrinsic=intrinsic,
))
