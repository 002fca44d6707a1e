"""A convolution's shape as the fused kernels see it: every conv the fused path takes is a 2-D
one. A 1-D convolution (NCW/OIW) is a 2-D one on an image one row high (NCHW with H = 1, kernel
1 x k), so the same kernels serve it on every ISA with nothing new to schedule or keep exact:
the row axis is what the folded kw x channels reduction and the 8-pixel register blocks run
along. A dilated 1-D convolution (a TCN's) is one column high instead (H = time, kernel k x 1),
since the kernels dilate along H only; [1, 1, T, C] and [1, T, 1, C] channels-last are the same
bytes, so either view of a 1-D layer's output is a free reshape.

A grouped convolution (1 < groups < channels) runs on the same dot-product kernels with a group
axis (kernels.layers.conv2d_requant `groups`): each group's output channels must fill whole
register blocks of lanes, so neighbouring groups are merged into as few "kernel groups" as that
takes, their weights block-diagonal inside one (zeros outside each model group: exact, and the
multiply-adds wasted are the merge factor, at worst all groups merged into one dense layer).
Depthwise (one channel per group) has its own kernel (kernels/depthwise.py)."""

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
    def column(self) -> bool:
        """A 1-D conv laid out one column high (dilated), rather than one row."""
        return self.one_d and self.weights.shape[3] == 1 and self.weights.shape[2] > 1

    @property
    def depthwise(self) -> bool:
        n, cg = self.weights.shape[:2]
        return self.groups != 1 and cg == 1 and self.groups == n

    @property
    def grouped(self) -> bool:
        """1 < groups, not depthwise (see kernel_groups)."""
        return self.groups != 1 and not self.depthwise

    def kernel_groups(self, lanes_for) -> int:
        """The most kernel groups (a divisor of groups) whose output channels are each whole
        blocks of lanes (`lanes_for(channels)`, the ISA's choice); 1: one dense layer."""
        n = self.weights.shape[0]
        for k in sorted((d for d in range(2, self.groups + 1) if self.groups % d == 0), reverse=True):
            if (n // k) % lanes_for(n // k) == 0:
                return k
        return 1

    def block_weights(self, kernel_groups: int) -> np.ndarray:
        """[N, C / kernel_groups, kh, kw]: each output channel's weights over its kernel group's
        input channels, its own model group's at their place, zeros elsewhere (block-diagonal;
        the weights as they are for groups == kernel_groups, dense ones for kernel_groups 1)."""
        n, cg, kh, kw = self.weights.shape
        per, merged = n // self.groups, self.groups // kernel_groups
        out = np.zeros((n, cg * merged, kh, kw), self.weights.dtype)
        for g in range(self.groups):
            at = g % merged  # this group's place among the merged ones
            out[g * per : (g + 1) * per, at * cg : (at + 1) * cg] = self.weights[g * per : (g + 1) * per]
        return out


def layouts_ok(op: str, attrs) -> bool:
    return LAYOUTS.get(op) == (attrs.data_layout, attrs.kernel_layout)


def geometry(op: str, attrs, weights: np.ndarray) -> ConvGeometry:
    """The 2-D view of a conv2d (NCHW/OIHW) or conv1d (NCW/OIW) call's attributes and weights."""
    w = weights.astype(np.int64)
    pad = [int(p) for p in attrs.padding]
    stride = [int(s) for s in attrs.strides]
    dil = [int(d) for d in attrs.dilation]
    if op == "relax.nn.conv1d" and dil[0] == 1:  # one row: H = 1, the 1-D axis is W
        return ConvGeometry(w[:, :, None, :], (0, pad[0], 0, pad[1]), (1, stride[0]), (1, 1), int(attrs.groups), True)
    if op == "relax.nn.conv1d":  # dilated: one column, the 1-D axis is H
        return ConvGeometry(
            w[:, :, :, None], (pad[0], 0, pad[1], 0), (stride[0], 1), (dil[0], 1), int(attrs.groups), True
        )
    return ConvGeometry(w, tuple(pad), tuple(stride), tuple(dil), int(attrs.groups), False)


def fused_ok(g: ConvGeometry, in_channels: int) -> bool:
    """What the fused kernels take: no dilation along the row, and groups that divide the
    channels."""
    n, cg = g.weights.shape[:2]
    return g.dilation[1] == 1 and n % g.groups == 0 and cg * g.groups == in_channels
