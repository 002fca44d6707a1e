"""The int8 layers' kernels: layer schedules written once (layers.py) over dot-product
instructions registered by ISA name (registry.py says what an ISA module provides).

Every module named `isa_*` in this folder is imported here, so adding an instruction set is
adding one such module; it registers itself.
"""

from __future__ import annotations

import importlib
import pkgutil

from .registry import Int32Layers, Isa, for_arch, for_target, get, names, register

for _mod in sorted(m.name for m in pkgutil.iter_modules(__path__) if m.name.startswith("isa_")):
    importlib.import_module(f"{__name__}.{_mod}")

__all__ = ["Int32Layers", "Isa", "for_arch", "for_target", "get", "names", "register"]
