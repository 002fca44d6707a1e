"""What the int8 pass did, for the manifest's `arithmetic.int8_ops` (`depthwise`: the fused
depthwise layers)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class Int8Stats:
    conv2d: int = 0
    conv1d: int = 0  # 1-D convolutions, run as 2-D ones one row high (compile/int8/geometry.py)
    grouped: int = 0  # grouped convolutions (1 < groups < channels), dense block-diagonal weights
    matmul: int = 0
    vnni: int = 0  # of those, run on AVX512-VNNI dot products (compile/kernels/isa_vnni.py)
    fused: int = 0  # of those, fused with their bias and requantize into one kernel
    kernels: str | None = None  # the fused layers' ISA (compile/kernels registry name) or None
    pixel_vectors: int = 0  # fused layers vectorized over output pixels (kernels.layers.conv2d_rows_requant)
    pools: int = 0  # max-pools done inside the layer before them, on the int32 sums
    depthwise: int = 0  # fused depthwise convolutions (kernels.depthwise, vectorized over channels)
    skipped: list[str] = field(default_factory=list)

    def to_json(self) -> dict:
        return {
            "conv2d": self.conv2d,
            "conv1d": self.conv1d,
            "grouped": self.grouped,
            "matmul": self.matmul,
            "vnni": self.vnni,
            "fused": self.fused,
            "kernels": self.kernels,
            "pixel_vectors": self.pixel_vectors,
            "pools": self.pools,
            "depthwise": self.depthwise,
            "skipped": list(self.skipped),
        }
