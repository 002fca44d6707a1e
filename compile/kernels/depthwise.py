"""The fused depthwise convolution (groups == input channels == output channels, MobileNet's
3x3 layers): on channels-last uint8 input, each output channel reads only its own input channel,
so there is no reduction over channels to give a dot-product instruction; the kernel instead
vectorizes over channels: for each output pixel, kh*kw widening multiply-adds of `lanes` channels
(int32, exact on any CPU LLVM targets: NEON `smlal`-style on Arm), then the same requantize
epilogue as the other fused layers. Every ISA uses it (it needs none of their instructions)."""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from .layers import _epilogue_inputs, _opaque, _requantize


def pack_weights(w: np.ndarray) -> np.ndarray:
    """[C, 1, kh, kw] int8 -> [kh, kw, C] (channels innermost, as the activations)."""
    return np.ascontiguousarray(w[:, 0].transpose(1, 2, 0))


@lru_cache(maxsize=None)
def depthwise_requant(
    hp: int,
    wp: int,
    c: int,
    kh: int,
    kw: int,
    oh: int,
    ow: int,
    stride: tuple[int, int],
    dilation: tuple[int, int],
    out_scale: float,
    out_zero: int,
    out_dtype: str,
    float_bias: bool = False,
):
    """X[1, hp, wp, c] uint8 (already padded with its zero point), W[kh, kw, c] int8 ->
    Y[1, oh, ow, c] quantized; corr/scale/bias per channel as for layers.conv2d_requant."""
    import tvm.s_tir as s_tir
    from tvm import te

    X = te.placeholder((1, hp, wp, c), "uint8", name="X")
    W = te.placeholder((kh, kw, c), "int8", name="W")
    corr, scale, bias = _epilogue_inputs(c, float_bias)

    def acc(y, x, ch):  # the kh*kw taps written out: a spatial block LLVM can vectorize over ch
        terms = [
            X[0, y * stride[0] + i * dilation[0], x * stride[1] + j * dilation[1], ch].astype("int32")
            * W[i, j, ch].astype("int32")
            for i in range(kh)
            for j in range(kw)
        ]
        total = terms[0]
        for t in terms[1:]:
            total = total + t
        return total

    Y = te.compute(
        (1, oh, ow, c),
        lambda b, y, x, ch: _requantize(
            acc(y, x, ch), corr, scale, bias, ch, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype
        ),
        name="Y",
    )
    sch = s_tir.Schedule(te.create_prim_func([X, W, corr, scale, *([bias] if float_bias else []), Y]))
    *_, ch = sch.get_loops(sch.get_sblock("Y"))
    lanes = next(d for d in (16, 8, 4, 1) if c % d == 0)
    if lanes > 1:
        _, inner = sch.split(ch, [None, lanes])
        sch.vectorize(inner)
    return _opaque(sch)
