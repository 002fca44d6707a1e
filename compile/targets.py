"""Named compile targets (a registry keyed by name). A target says how TVM generates code, how
the shared library is linked, and which board CPU architecture (`uname -m`) can load it.

Adding a target: register a `Target` whose `tvm_target()` returns TVM's target dict; set `cc`
to a cross compiler when the target is not the host. See docs/targets.md.
"""
from __future__ import annotations

import platform
from dataclasses import dataclass, field
from typing import Callable

from toolkit.errors import UsageError


@dataclass(frozen=True)
class Target:
    name: str
    arch: str  # what `uname -m` prints on a board that can run the bundle
    description: str
    llvm: Callable[[], dict] = field(repr=False)  # -> TVM target dict (looked up lazily)
    cc: str | None = None  # cross compiler for export_library; None = the host's

    def tvm_target(self) -> dict:
        return self.llvm()


def _host_llvm() -> dict:
    from tvm.target import codegen

    # the host CPU by name, so LLVM uses every vector extension it has
    return {"kind": "llvm", "mcpu": codegen.llvm_get_system_cpu()}


TARGETS: dict[str, Target] = {}


def register(target: Target) -> Target:
    TARGETS[target.name] = target
    return target


register(Target("host", platform.machine(), "the CPU of this machine (LLVM, -mcpu=native)", _host_llvm))


def get_target(name: str) -> Target:
    try:
        return TARGETS[name]
    except KeyError:
        raise UsageError(
            f"unknown target {name!r}", hint=f"known targets: {', '.join(sorted(TARGETS))}"
        ) from None
