"""A convolution's shape as the fused kernels see it: every conv the fused path takes is a 2-D
one. A 1-D convolution (NCW/OIW) is a 2-D one on an image one row high (NCHW with H = 1, kernel
1 x k), so the same kernels serve it on every ISA with nothing new to schedule or keep exact:
the row axis is what the folded kw x channels reduction and the 8-pixel register blocks run
along. A grouped convolution (1 < groups < channels) becomes a dense one whose weights are
block-diagonal (zeros outside each group): exact, and on the same dot-product kernels; depthwise
(one channel per group) has its own kernel (kernels/depthwise.py)."""
from __future__ import annotations

from dataclasses import dataclass

import numpy as np

CONV_OPS = ("relax.nn.conv2d", "relax.nn.conv1d")
LAYOUTS = {"relax.nn.conv2d": ("NCHW", "OIHW"), "relax.nn.conv1d": ("NCW", "OIW")}


@dataclass(frozen=True)
class ConvGeometry:
    weights: np.ndarray  # [N, C/groups, kh, kw] int64 as the model has them (1-D: kh = 1)
    pad: tuple[int, int, int, int]  # top, left, bottom, right
    stride: tuple[int, int]
    dilation: tuple[int, int]
    groups: int
    one_d: bool

    @property
    def depthwise(self) -> bool:
        n, cg = self.weights.shape[:2]
        return self.groups != 1 and cg == 1 and self.groups == n

    @property
    def grouped(self) -> bool:
        """1 < groups, not depthwise: run as a dense layer on `dense_weights()`."""
        return self.groups != 1 and not self.depthwise

    def dense_weights(self) -> np.ndarray:
        """[N, C, kh, kw]: each output channel's group weights at its group's input channels,
        zeros elsewhere (the identity for groups == 1)."""
        if self.groups == 1:
            return self.weights
        n, cg, kh, kw = self.weights.shape
        per = n // self.groups
        dense = np.zeros((n, cg * self.groups, kh, kw), self.weights.dtype)
        for g in range(self.groups):
            dense[g * per:(g + 1) * per, g * cg:(g + 1) * cg] = self.weights[g * per:(g + 1) * per]
        return dense


def layouts_ok(op: str, attrs) -> bool:
    return LAYOUTS.get(op) == (attrs.data_layout, attrs.kernel_layout)


def geometry(op: str, attrs, weights: np.ndarray) -> ConvGeometry:
    """The 2-D view of a conv2d (NCHW/OIHW) or conv1d (NCW/OIW) call's attributes and weights."""
    w = weights.astype(np.int64)
    pad = [int(p) for p in attrs.padding]
    stride = [int(s) for s in attrs.strides]
    dil = [int(d) for d in attrs.dilation]
    if op == "relax.nn.conv1d":  # one row: H = 1, the 1-D axis is W
        return ConvGeometry(w[:, :, None, :], (0, pad[0], 0, pad[1]), (1, stride[0]), (1, dil[0]),
                            int(attrs.groups), True)
    return ConvGeometry(w, tuple(pad), tuple(stride), tuple(dil), int(attrs.groups), False)


def fused_ok(g: ConvGeometry, in_channels: int) -> bool:
    """What the fused kernels take: no dilation along the row (so none for a 1-D conv), and
    groups that divide the channels."""
    n, cg = g.weights.shape[:2]
    return g.dilation[1] == 1 and n % g.groups == 0 and cg * g.groups == in_channels
