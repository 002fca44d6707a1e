"""The ISA registry: the int8 layers' dot-product kernels, one module per instruction set, keyed
by name. The layer schedules (kernels/layers.py) are written once; an ISA only says how its
weights are packed and which instruction does the innermost lanes x 4 multiply-accumulate.

Adding an instruction set = adding ONE module `compile/kernels/isa_<name>.py`. Every `isa_*`
module in this package is imported when the package is (kernels/__init__.py), so nothing else
changes. At import the module calls `register(Isa(...))` with:

    name           str: the key; the manifest's `arithmetic.int8_ops.kernels`, the prefix of the
                   kernel names in the bundle and part of the tuning cache key ("vnni", "dotprod")
    arch           str: `uname -m` of the CPUs it runs on ("x86_64", "aarch64")
    requires       frozenset[str]: LLVM CPU features the target must have (Target.describe()
                   ["cpu_features"], e.g. {"avx512vnni"}, {"dotprod"}, {"neon"})
    priority       int: among the ISAs a target can run, the highest wins (x86: vnni 30, avx2 20,
                   generic 10)
    lanes          (n: int) -> int: output channels per dot-product step for a layer of n output
                   channels (a register's worth of int32)
    weight_block   (lanes: int) -> tuple[int, ...]: the shape in which one step's lanes x 4 int8
                   weights are stored, e.g. (lanes, 4) or (4, lanes)
    weight_index   (lane, k4) -> tuple: where weight [lane, k4] (k4 in 0..3) sits in that block;
                   called with ints (packing in numpy) and with TE expressions (// and % only)
    lanes_outer    bool: the loop nest the intrinsic replaces: True = (lane, k4) (k4 innermost),
                   False = (k4, lane) (lane innermost)
    intrinsic      (lanes: int, a_dtype: str) -> str: registers (once; use functools.lru_cache) a
                   `tvm.s_tir.TensorIntrin` and returns its name. Its description is
                   C[lane] += int32(A[k4]) * int32(B[weight_index(lane, k4)]) over that loop nest,
                   with buffers A (4,) a_dtype, B weight_block(lanes) int8, C (lanes,) int32, all
                   offset_factor=1. a_dtype is conv_input for convolutions, "uint8" for matmuls.
    conv_input     str: what a convolution reads, "uint8" or "int16" (widened by the padding step
                   before it, for ISAs whose instruction multiplies int16 pairs). Default "uint8".
    dots_per_4     int: instructions one step takes per 4 reduction elements (vpdpbusd 1, two
                   vpmaddwd 2); only used to choose between the channel- and pixel-vector kernels
    rows_intrinsic () -> str, or None: the one-input-channel first-layer kernel's intrinsic
                   (8 output pixels x one pair of kernel rows: A (8, 2) int16, B (2,) int16,
                   C (8,) int32; see layers.conv2d_rows_requant). None: that kernel is not offered.
    act_shift      int: what the intrinsic takes off each uint8 activation before multiplying
                   (dotprod: 128, so that sdot multiplies int8 by int8); the fused layer adds
                   act_shift * sum(weights) back through its integer correction. Default 0.
    weight_dtype   str: how the packed weights are stored: "int8", or "int16" (widened once when
                   packing, for ISAs whose instruction multiplies int16: no widening per step).
                   The intrinsic's B buffer has this dtype. Default "int8".
    max_cols       (lanes: int) -> int: the most output columns (pixels) a convolution's register
                   block may hold: cols * lanes/4 int32 accumulators plus the step's weights and
                   activations must fit the register file, or LLVM spills accumulators on every
                   step. Default: 8.
    int32_layers   Int32Layers or None: kernels for the conv2d/matmul layers that do not end in a
                   quantize (so stay unfused, int32 out). None: TVM's own int32 Relax ops.

What the registry gives the rest of compile/: `get(name)`, `names()`, `for_target(target)` (the
ISA a compile target uses, None for unfused int32 Relax ops). The kernels are checked against
numpy in tests/unit/compile/test_kernels.py, parametrized over `names()`; a kernel test that the
host CPU cannot run reports NOT RUN (tests/conftest.py `not_run`), never a pass.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Int32Layers:
    """Kernels for unfused layers: int32 out, no requantize (see isa_vnni.py)."""

    gemm: Callable  # (m, kp, np_) -> scheduled PrimFunc C[m, np_] = A[m, kp] u8 x packed W
    pack_gemm: Callable  # (w [N, K] int8) -> packed weights
    conv2d: Callable  # (h, w, cp, n, kh, kw, stride, dilation) -> PrimFunc C[oh, ow, np_]
    pack_conv: Callable  # (w [N, C, kh, kw] int8, cp) -> packed weights
    lanes: int  # np_ is N rounded up to this


@dataclass(frozen=True)
class Isa:
    name: str
    arch: str
    requires: frozenset[str]
    priority: int
    lanes: Callable[[int], int]
    weight_block: Callable[[int], tuple[int, ...]]
    weight_index: Callable
    lanes_outer: bool
    intrinsic: Callable[[int, str], str]
    conv_input: str = "uint8"
    dots_per_4: int = 1
    rows_intrinsic: Callable[[], str] | None = None
    act_shift: int = 0
    weight_dtype: str = "int8"
    max_cols: Callable[[int], int] = lambda lanes: 8
    int32_layers: Int32Layers | None = None

    def runs_on(self, arch: str, features) -> bool:
        return arch == self.arch and self.requires <= set(features)


_ISAS: dict[str, Isa] = {}


def register(isa: Isa) -> Isa:
    if isa.conv_input not in ("uint8", "int16"):
        raise ValueError(f"ISA {isa.name!r}: conv_input must be uint8 or int16, got {isa.conv_input!r}")
    _ISAS[isa.name] = isa
    return isa


def names() -> tuple[str, ...]:
    return tuple(sorted(_ISAS, key=lambda n: (_ISAS[n].arch, -_ISAS[n].priority)))


def get(name: str) -> Isa:
    try:
        return _ISAS[name]
    except KeyError:
        raise ValueError(f"unknown dot-product kernel {name!r}; known: {', '.join(names())}") from None


def for_arch(arch: str, features) -> Isa | None:
    """The highest-priority ISA that runs on a CPU of `arch` with `features`, or None."""
    fits = [isa for isa in _ISAS.values() if isa.runs_on(arch, features)]
    return max(fits, key=lambda isa: isa.priority, default=None)


def for_target(target) -> Isa | None:
    """The fused int8 layers' ISA for `target` (a compile.targets.Target), None where no
    registered ISA fits (the layers then stay int32 Relax ops)."""
    info = target.describe()
    return for_arch(info["arch"], info["cpu_features"])
