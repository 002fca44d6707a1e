"""Named compile targets (a registry keyed by name). A target says how TVM generates code, how
the shared library is linked, and which board CPU architecture (`uname -m`) can load it.

Adding a target: register a `Target` whose `tvm_target()` returns TVM's target dict; set `cc`
to a cross compiler when the target is not the host. See docs/targets.md.
"""

from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Callable

from edgeopt.errors import UsageError


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # what `uname -m` prints on a board that can run the bundle
    description: str
    llvm: Callable[[], dict] = field(repr=False)  # -> TVM target dict (looked up lazily)
    cc: str | None = None  # cross compiler for export_library; None = the host's
    # An accelerator's hook: IRModule -> IRModule, run after import (and the int8 rewrite), before
    # the pipeline; e.g. FuseOpsByPattern(patterns, annotate_codegen=True) + RunCodegen() hands
    # the supported subgraphs to an external code generator (TVM's BYOC). None: all on the CPU.
    partition: Callable | None = field(default=None, repr=False)

    def tvm_target(self) -> dict:
        return self.llvm()

    def describe(self) -> dict:
        """Triple, CPU and the CPU features the generated code may use, for the manifest."""
        import tvm
        from tvm.target import codegen

        spec = self.tvm_target()
        target = tvm.target.Target(spec)
        features = sorted(codegen.llvm_get_cpu_features(target))
        return {
            "name": self.name,
            "arch": self.arch,
            "triple": spec.get("mtriple", f"{self.arch}-linux-gnu"),
            "cross_compiler": self.cc,
            "mcpu": spec.get("mcpu", "generic"),
            "tvm": spec,
            "cpu_features": features,
            # the same features as /proc/cpuinfo spells them, for the board agent to check
            "required_cpu_flags": sorted({CPUINFO_FLAGS[f] for f in features if f in CPUINFO_FLAGS}),
        }


def _host_llvm() -> dict:
    # the host CPU by name, so LLVM uses every vector extension it has; MetaSchedule needs num-cores
    import os

    from tvm.target import codegen

    return {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu(), "num-cores": os.cpu_count() or 1}


# LLVM feature name -> /proc/cpuinfo flag, for the instruction-set extensions that make code
# crash with SIGILL on a CPU without them.
CPUINFO_FLAGS = {
    "sse4.1": "sse4_1",
    "sse4.2": "sse4_2",
    "avx": "avx",
    "avx2": "avx2",
    "fma": "fma",
    "f16c": "f16c",
    "avx512f": "avx512f",
    "avx512bw": "avx512bw",
    "avx512dq": "avx512dq",
    "avx512vl": "avx512vl",
    "avx512vnni": "avx512_vnni",
    "avxvnni": "avx_vnni",
    "amx-int8": "amx_int8",
    "neon": "asimd",
    "dotprod": "asimddp",
    "i8mm": "i8mm",
    "sve": "sve",
    "fullfp16": "fphp",
}

TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    TARGETS[target.name] = target
    return target


def _aarch64(mcpu: str | None, mattr: list[str]) -> Callable[[], dict]:
    def spec() -> dict:
        d = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mattr": mattr}
        if mcpu:
            d["mcpu"] = mcpu
        return d

    return spec


CROSS_CC = "aarch64-linux-gnu-gcc"  # Debian package gcc-aarch64-linux-gnu

register(Target("host", platform.machine(), "the CPU of this machine (LLVM, -mcpu=native)", _host_llvm))
register(Target("aarch64", "aarch64", "any 64-bit Arm (Armv8-A, NEON)", _aarch64(None, ["+neon"]), CROSS_CC))
register(
    Target(
        "cortex-a55",
        "aarch64",
        "RZ/V2L, RZ/V2H-class boards (Cortex-A55, dot product)",
        _aarch64("cortex-a55", ["+neon", "+dotprod"]),
        CROSS_CC,
    )
)
register(Target("cortex-a72", "aarch64", "Raspberry Pi 4 (Cortex-A72)", _aarch64("cortex-a72", ["+neon"]), CROSS_CC))
register(
    Target(
        "cortex-a76",
        "aarch64",
        "Raspberry Pi 5 (Cortex-A76, dot product)",
        _aarch64("cortex-a76", ["+neon", "+dotprod"]),
        CROSS_CC,
    )
)


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(f"unknown target {name!r}", hint=f"known targets: {', '.join(sorted(TARGETS))}") from None
