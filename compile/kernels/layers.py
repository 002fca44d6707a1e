"""The fused int8 layers as TE compute + hand schedules, written once over the registered ISAs
(registry.py): a convolution or matmul with its requantize epilogue, the one-input-channel first
layer vectorized over pixels (optionally with the 2x2 max-pool after it), and the residual add.

Weight layouts: W[np_/lanes, <outer...>, K/4, <the ISA's weight_block(lanes)>], zero-padded:
`pack_inner` turns lane-major [..., lanes, K/4, 4] into the ISA's order using its weight_index.
"""

from __future__ import annotations

from functools import lru_cache

import numpy as np

from ..sizes import ceil_div, round_up
from .registry import Isa, get


def out_hw(h: int, w: int, *, kh: int, kw: int, stride, dilation) -> tuple[int, int]:
    return ((h - dilation[0] * (kh - 1) - 1) // stride[0] + 1, (w - dilation[1] * (kw - 1) - 1) // stride[1] + 1)


def lanes_for(isa: str, n: int) -> int:
    """Output channels per dot-product step for a layer with n output channels."""
    return get(isa).lanes(n)


def conv_input_dtype(isa: str) -> str:
    """What a convolution reads: uint8, or (e.g. "avx2") the same values widened to int16 by the
    padding step before it, so each pair of them is one broadcast load."""
    return get(isa).conv_input


def packed_shape(*outer: int, lanes: int, isa: Isa) -> tuple[int, ...]:
    return (*outer, *isa.weight_block(lanes))


def packed_index(*idx, isa: Isa):
    """(outer..., lane, k4) in the packed weights' order."""
    *outer, lane, k4 = idx
    return (*outer, *isa.weight_index(lane, k4))


def pack_inner(full: np.ndarray, isa: Isa) -> np.ndarray:
    """[..., lanes, K4, 4] (lane-major, reduction in chunks of 4) -> [..., K4, *weight_block]."""
    *lead, lanes, k4s, _ = full.shape
    out = np.zeros((*lead, k4s, *isa.weight_block(lanes)), isa.weight_dtype)
    for lane in range(lanes):
        for k4 in range(4):
            out[(Ellipsis, slice(None), *isa.weight_index(lane, k4))] = full[..., lane, :, k4]
    return out


def pack_weights(w: np.ndarray, *, kp: int | None = None, isa: str, lanes: int) -> np.ndarray:
    """[N, K] int8 -> [Np/lanes, Kp/4, *weight_block], zero-padded (to `kp` columns if given)."""
    n, k = w.shape
    kp = kp or round_up(k, 4)
    np_ = round_up(n, lanes)
    full = np.zeros((np_, kp), np.int8)
    full[:n, :k] = w
    return pack_inner(full.reshape(np_ // lanes, lanes, kp // 4, 4), get(isa))


def pack_folded_conv_weights(w: np.ndarray, lanes: int, isa: str) -> np.ndarray:
    """[N, C, kh, kw] int8 -> [Np/lanes, kh, kwc/4, *weight_block] with j = kw_index * C + c,
    zero-padded."""
    n, c, kh, kw = w.shape
    np_ = round_up(n, lanes)
    kwc = round_up(kw * c, 4)
    full = np.zeros((np_, kh, kwc), np.int8)
    full[:n, :, : kw * c] = w.transpose(0, 2, 3, 1).reshape(n, kh, kw * c)
    # [no, lanes, kh, K4, 4] -> [no, kh, lanes, K4, 4] -> packed
    return pack_inner(full.reshape(np_ // lanes, lanes, kh, kwc // 4, 4).transpose(0, 2, 1, 3, 4), get(isa))


def _requantize(acc, corr, scale, bias, j, *, out_scale: float, out_zero: int, out_dtype: str):
    """The requantize epilogue. With an fp32 bias it is written like Relax's own legalizations
    (multiply, add, divide by the output scale); with the bias folded into the integer correction
    `scale` is sx*sw/sy and a single multiply does it (a vector divide per 16 outputs cost as much
    as the dot products in a thin layer)."""
    from tvm import te, tirx

    real = (acc - corr[j]).astype("float32") * scale[j]
    if bias is None:  # `scale` already divided by the output scale: one multiply, as onnxruntime does
        q = te.round(real) + tirx.const(out_zero, "float32")
    else:
        q = te.round((real + bias[j]) / tirx.const(out_scale, "float32")) + tirx.const(out_zero, "float32")
    return _clip(q, out_dtype)


def _clip(q, out_dtype: str):
    from tvm import te, tirx

    lo, hi = (0.0, 255.0) if out_dtype == "uint8" else (-128.0, 127.0)
    return te.max(te.min(q, tirx.const(hi, "float32")), tirx.const(lo, "float32")).astype(out_dtype)


def _epilogue_inputs(np_: int, float_bias: bool):
    from tvm import te

    corr = te.placeholder((np_,), "int32", name="corr")
    scale = te.placeholder((np_,), "float32", name="scale")
    bias = te.placeholder((np_,), "float32", name="bias") if float_bias else None
    return corr, scale, bias


def _opaque(sch):
    """Scheduled by hand, and opaque to FuseOps: fusing a scheduled kernel into its neighbours
    breaks FuseTIR, and MetaSchedule leaves it alone."""
    return sch.mod["main"].with_attr("tir.is_scheduled", True).with_attr("op_pattern", 8)


def _schedule_epilogue(sch, blk, at, reduce_at, *, outer_unroll):
    """Requantize each register block while it is in registers; returns the init block."""
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, at)
    sch.vectorize(sch.get_loops(out)[-1])
    sch.unroll(sch.get_loops(out)[-2])
    init = sch.decompose_reduction(blk, reduce_at)
    sch.vectorize(sch.get_loops(init)[-1])
    sch.unroll(sch.get_loops(init)[-2])
    sch.unroll(outer_unroll)
    return init


def _inner(isa: Isa, lane_loop, k_loop) -> tuple:
    return (lane_loop, k_loop) if isa.lanes_outer else (k_loop, lane_loop)


def _tensorize(sch, isa: Isa, init, lane_loop, k_loop, *, lanes: int, a_dtype: str) -> None:
    sch.tensorize(lane_loop if isa.lanes_outer else k_loop, isa.intrinsic(lanes, a_dtype))
    # the accumulators: a local array indexed by constants only, which LLVM keeps in registers
    sch.set_scope(init, 0, "local")


@lru_cache(maxsize=None)
def conv2d_requant(
    h: int,
    row: int,
    c: int,
    np_: int,
    kh: int,
    kw: int,
    oh: int,
    ow: int,
    stride: tuple[int, int],
    dh: int,
    out_scale: float,
    out_zero: int,
    out_dtype: str,
    float_bias: bool = False,
    *,
    lanes: int,
    isa: str,
    groups: int = 1,
):
    """A convolution with its requantize epilogue, on channels-last input flattened per row:
    X[groups, h, row] with row = padded width * c (dtype: the ISA's conv_input). `groups` > 1: a
    grouped convolution, X holding each group's c channels as an image of its own and output
    channel j reading group j // (np_ / groups), which must be whole blocks of `lanes`. The reduction runs
    over (kh, kw*c) -- kw and the channels folded together, rounded up to 4 with zero weights --
    so a 1-channel first layer wastes no lanes on channel padding and no im2col is built. Weights
    from pack_folded_conv_weights; per-channel int32 zero-point correction, fp32 scale and bias
    of length np_ (an integer bias is folded into the correction; `float_bias` adds an fp32 one).
    Output Y[1, oh, ow, np_] already quantized; its padding channels hold values the next
    layer's zero weights ignore."""
    import tvm.s_tir as s_tir
    from tvm import te

    spec = get(isa)
    kwc = round_up(kw * c, 4)
    per_group = np_ // groups
    if per_group * groups != np_ or per_group % lanes:
        raise ValueError(f"{groups} groups of {np_} output channels are not whole blocks of {lanes} lanes")
    X = te.placeholder((groups, h, row), spec.conv_input, name="X")
    W = te.placeholder(packed_shape(np_ // lanes, kh, kwc // 4, lanes=lanes, isa=spec), spec.weight_dtype, name="W")
    corr, scale, bias = _epilogue_inputs(np_, float_bias)
    rh, rj = te.reduce_axis((0, kh), "rh"), te.reduce_axis((0, kwc), "rj")
    C = te.compute(
        (oh, ow, np_),
        lambda y, x, j: te.sum(
            X[j // per_group, y * stride[0] + rh * dh, x * stride[1] * c + rj].astype("int32")
            * W[packed_index(j // lanes, rh, rj // 4, j % lanes, rj % 4, isa=spec)].astype("int32"),
            axis=[rh, rj],
        ),
        name="C",
    )
    Y = te.compute(
        (1, oh, ow, np_),
        lambda b, y, x, j: _requantize(
            C[y, x, j], corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype
        ),
        name="Y",
    )
    sch = s_tir.Schedule(te.create_prim_func([X, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    y, x, j, r_h, r_j = sch.get_loops(blk)
    # independent accumulators per step, within the ISA's register budget
    cols = next(d for d in (8, 7, 6, 5, 4, 3, 2, 1) if ow % d == 0 and d <= spec.max_cols(lanes))
    xo, xi = sch.split(x, [None, cols])
    jo, ji = sch.split(j, [None, lanes])
    jo_, jr = sch.split(r_j, [None, 4])
    sch.reorder(y, xo, jo, r_h, jo_, xi, *_inner(spec, ji, jr))
    init = _schedule_epilogue(sch, blk, jo, r_h, outer_unroll=xi)
    _tensorize(sch, spec, init, ji, jr, lanes=lanes, a_dtype=spec.conv_input)
    return _opaque(sch)


@lru_cache(maxsize=None)
def gemm_requant(
    m: int,
    cols: int,
    kp: int,
    np_: int,
    out_scale: float,
    out_zero: int,
    out_dtype: str,
    float_bias: bool = False,
    *,
    isa: str,
    lanes: int,
):
    """A matmul with the requantize epilogue: Y[m, np_] quantized, from the first kp of A[m, cols]
    uint8 (a previous layer's padded output is read in place); weights from pack_weights."""
    import tvm.s_tir as s_tir
    from tvm import te

    spec = get(isa)
    A = te.placeholder((m, cols), "uint8", name="A")
    W = te.placeholder(packed_shape(np_ // lanes, kp // 4, lanes=lanes, isa=spec), spec.weight_dtype, name="W")
    corr, scale, bias = _epilogue_inputs(np_, float_bias)
    k = te.reduce_axis((0, kp), name="k")
    C = te.compute(
        (m, np_),
        lambda i, j: te.sum(
            A[i, k].astype("int32") * W[packed_index(j // lanes, k // 4, j % lanes, k % 4, isa=spec)].astype("int32"),
            axis=k,
        ),
        name="C",
    )
    Y = te.compute(
        (m, np_),
        lambda i, j: _requantize(
            C[i, j], corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype
        ),
        name="Y",
    )
    sch = s_tir.Schedule(te.create_prim_func([A, W, corr, scale, *([bias] if float_bias else []), Y]))
    blk = sch.get_sblock("C")
    i, j, kk = sch.get_loops(blk)
    rows = next(d for d in (8, 4, 2, 1) if m % d == 0)
    io, ii = sch.split(i, [None, rows])
    jo, ji = sch.split(j, [None, lanes])
    ko, ki = sch.split(kk, [None, 4])
    sch.reorder(io, jo, ko, ii, *_inner(spec, ji, ki))
    init = _schedule_epilogue(sch, blk, jo, ko, outer_unroll=ii)
    _tensorize(sch, spec, init, ji, ki, lanes=lanes, a_dtype="uint8")
    return _opaque(sch)


def folded_overhang(*, ow: int, stride: int, c: int, kw: int, width: int) -> int:
    """Extra zero columns conv2d_requant's input needs on the right: the folded reduction (kw*c
    rounded up to 4) reads up to 3 bytes past the last window of a row of `width` pixels."""
    return max(0, ceil_div((ow - 1) * stride * c + round_up(kw * c, 4) - width * c, c))


def rows_ok(isa: str, c: int, n: int, kh: int, kw: int, stride, dilation) -> bool:
    """Whether conv2d_rows_requant takes this layer: one input channel, unit stride and
    dilation, an ISA with a rows intrinsic, and fewer dot-product instructions per 8 output
    pixels than conv2d_requant's channel vectors would need."""
    spec = get(isa)
    if spec.rows_intrinsic is None or c != 1 or tuple(stride) != (1, 1) or tuple(dilation) != (1, 1):
        return False
    shp = rows_shape(1, 1, n, kh, kw)
    steps = ceil_div(kw, 4) * spec.dots_per_4  # per kernel row, per block of lanes
    return shp["np"] * shp["pairs"] * kw <= 8 * ceil_div(n, spec.lanes(n)) * kh * steps


def rows_shape(oh: int, ow: int, n: int, kh: int, kw: int) -> dict:
    """The padded sizes conv2d_rows_requant works on: ow rounded up to whole 8-pixel vectors,
    channels to whole register blocks, kernel rows to pairs; the paired input it reads is
    X2[oh + 2*(pairs-1), owp + kw - 1, 2]."""
    ci = min(n, 3)  # 3 channels x 4 vectors of 8 pixels = 12 ymm accumulators
    owp = round_up(ow, 8)
    pairs = ceil_div(kh, 2)
    return {
        "ci": ci,
        "np": round_up(n, ci),
        "owp": owp,
        "pairs": pairs,
        "rows": oh + 2 * (pairs - 1),
        "cols": owp + kw - 1,
    }


def pack_rows_weights(w: np.ndarray) -> np.ndarray:
    """[N, 1, kh, kw] int8 -> Wp[np, pairs, kw, 2] int16: kernel rows 2p and 2p+1 side by side,
    zero rows and channels as padding."""
    n, _, kh, kw = w.shape
    shp = rows_shape(1, 1, n, kh, kw)
    full = np.zeros((shp["np"], 2 * shp["pairs"], kw), np.int16)
    full[:n, :kh] = w[:, 0]
    return np.ascontiguousarray(full.reshape(shp["np"], shp["pairs"], 2, kw).transpose(0, 1, 3, 2))


@lru_cache(maxsize=None)
def conv2d_rows_requant(
    oh: int,
    ow: int,
    n: int,
    kh: int,
    kw: int,
    out_scale: float,
    out_zero: int,
    out_dtype: str,
    float_bias: bool = False,
    pool: int = 1,
    *,
    isa: str,
):
    """A one-input-channel, unit-stride convolution (a network's first layer on grey images)
    with its requantize epilogue, vectorized over output pixels instead of channels: thin
    output layers waste no lanes, and the kernel's rows pair up (the ISA's rows_intrinsic).
    Reads X2[r, x, t] = x[r + t, x] (the padded image and itself one row down, int16), weights
    from pack_rows_weights; writes Y[1, np, oh, ow] (NCHW; channels past n are padding).
    corr/scale/bias as for conv2d_requant, per channel.

    `pool` 2: the 2x2 max-pool that follows is done on the int32 sums before requantizing
    (requantize is monotonic: scales are positive), Y[1, np, oh // 2, owp // 2], its columns
    past ow // 2 padding."""
    import tvm.s_tir as s_tir
    from tvm import te

    rows_intrinsic = get(isa).rows_intrinsic
    if rows_intrinsic is None:
        raise ValueError(f"ISA {isa!r} has no pixel-vector kernel")
    if pool not in (1, 2):
        raise ValueError(f"pool must be 1 or 2, got {pool}")
    shp = rows_shape(oh, ow, n, kh, kw)
    ci, np_, owp, pairs = shp["ci"], shp["np"], shp["owp"], shp["pairs"]
    X = te.placeholder((shp["rows"], shp["cols"], 2), "int16", name="X")
    W = te.placeholder((np_, pairs, kw, 2), "int16", name="W")
    corr, scale, bias = _epilogue_inputs(np_, float_bias)
    rp, rq, rt = te.reduce_axis((0, pairs), "rp"), te.reduce_axis((0, kw), "rq"), te.reduce_axis((0, 2), "rt")
    C = te.compute(
        (np_, oh // pool * pool, owp),
        lambda j, y, x: te.sum(
            X[y + 2 * rp, x + rq, rt].astype("int32") * W[j, rp, rq, rt].astype("int32"), axis=[rp, rq, rt]
        ),
        name="C",
    )

    def requant(acc, j):
        return _requantize(acc, corr, scale, bias, j, out_scale=out_scale, out_zero=out_zero, out_dtype=out_dtype)

    if pool == 1:
        Y = te.compute((1, np_, oh, ow), lambda b, j, y, x: requant(C[j, y, x], j), name="Y")
    else:
        Y = te.compute(
            (1, np_, oh // 2, owp // 2),
            lambda b, j, y, x: requant(
                te.max(
                    te.max(C[j, 2 * y, 2 * x], C[j, 2 * y, 2 * x + 1]),
                    te.max(C[j, 2 * y + 1, 2 * x], C[j, 2 * y + 1, 2 * x + 1]),
                ),
                j,
            ),
            name="Y",
        )
    sch = s_tir.Schedule(te.create_prim_func([X, W, corr, scale, *([bias] if float_bias else []), Y]))
    _schedule_rows(sch, ow=ow, owp=owp, ci=ci, pool=pool, intrinsic=rows_intrinsic())
    return _opaque(sch)


def _schedule_rows(sch, *, ow: int, owp: int, ci: int, pool: int, intrinsic: str) -> None:
    blk = sch.get_sblock("C")
    j, y, x, r_p, r_q, r_t = sch.get_loops(blk)
    vecs = owp // 8
    # accumulators: ci channels x pool rows x block vectors of 8 pixels, within 12 ymm registers
    block = next(d for d in (4, 3, 2, 1) if vecs % d == 0 and ci * pool * d <= 12)
    jo, ji = sch.split(j, [None, ci])
    yo, yi = sch.split(y, [None, pool])
    xo, xb, xi = sch.split(x, [None, block, 8])
    sch.reorder(yo, jo, xo, r_p, r_q, ji, yi, xb, xi, r_t)
    out = sch.get_sblock("Y")
    sch.reverse_compute_at(out, xo)
    *_, oj, oy, ox = sch.get_loops(out)
    width = ow if pool == 1 else block * 4
    oxo, oxi = sch.split(ox, [None, next(d for d in (8, 4, 2, 1) if width % d == 0)])
    sch.vectorize(oxi)
    sch.unroll(oxo)
    sch.unroll(oj)
    init = sch.decompose_reduction(blk, r_p)
    *_, ij, iy, ixb, ixi = sch.get_loops(init)
    sch.vectorize(ixi)
    for loop in (ixb, iy, ij, ji, yi, xb):
        sch.unroll(loop)
    sch.tensorize(xi, intrinsic)
    sch.set_scope(init, 0, "local")


@lru_cache(maxsize=None)
def add_requant(
    shape: tuple[int, ...],
    a: tuple[float, int],
    b: tuple[float, int],
    out: tuple[float, int],
    dtype: str,
    out_dtype: str,
):
    """A residual add on quantized tensors, as onnxruntime's QLinearAdd computes it:
    q = round((qa - za) * sa/sy + (qb - zb) * sb/sy) + zy, vectorized over the last axis
    (the default schedule of the dequantize/add/quantize chain is scalar and divides per element)."""
    import tvm.s_tir as s_tir
    from tvm import te, tirx

    A = te.placeholder(shape, dtype, name="A")
    B = te.placeholder(shape, dtype, name="B")
    ma, mb = (np.float32(a[0]) / np.float32(out[0])), (np.float32(b[0]) / np.float32(out[0]))

    def f(*i):
        va = (A[i].astype("int32") - a[1]).astype("float32") * tirx.const(float(ma), "float32")
        vb = (B[i].astype("int32") - b[1]).astype("float32") * tirx.const(float(mb), "float32")
        return _clip(te.round(va + vb) + tirx.const(out[1], "float32"), out_dtype)

    Y = te.compute(shape, f, name="Y")
    sch = s_tir.Schedule(te.create_prim_func([A, B, Y]))
    loops = sch.get_loops(sch.get_sblock("Y"))
    if len(loops) > 1:
        sch.fuse(*loops[:-1])
    if shape[-1] % 16 == 0:
        _, inner = sch.split(loops[-1], [None, 16])
        sch.vectorize(inner)
    return _opaque(sch)
