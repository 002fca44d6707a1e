"""Keep host-only packages out of the agent's process.

tvm_ffi imports torch opportunistically whenever it is installed (for DLPack interop); on a
board that costs seconds and hundreds of MB, and it would blur what the agent really needs.
"""

from __future__ import annotations

import importlib.abc
import sys

BLOCKED = ("torch", "torch_c_dlpack_ext")


class _Blocker(importlib.abc.MetaPathFinder):
    def __init__(self) -> None:
        self.attempts: list[str] = []

    def find_spec(self, fullname, path=None, target=None):
        if fullname.split(".")[0] in BLOCKED:
            self.attempts.append(fullname)
            raise ModuleNotFoundError(f"{fullname} is not available to the board agent", name=fullname)
        return None


BLOCKER = _Blocker()


def install() -> None:
    if BLOCKER not in sys.meta_path:
        sys.meta_path.insert(0, BLOCKER)


def imported_top_level() -> list[str]:
    """Top-level packages this process has imported (stdlib included), for the host to audit."""
    return sorted({name.split(".")[0] for name in list(sys.modules) if not name.startswith("_")})
