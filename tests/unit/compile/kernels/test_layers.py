"""compile/kernels/layers.py on every registered ISA, against numpy: exact integer results.

A kernel whose instructions the host CPU lacks runs on an emulated core that has them when it
is an Arm one (cross-compiled, run by the QEMU board image's python under qemu-aarch64 -cpu
cortex-a76 / cortex-a72: tests/arm_qemu.py); otherwise, or without QEMU and the image, that test
ends NOT RUN with its reason (tests/outcomes.py), never passed. test_machine_code_has_the_instruction compiles each
ISA's kernel for a CPU that has it and checks the instruction is in the machine code: a separate,
weaker check that does pass anywhere.
"""

import numpy as np
import pytest
from edgeopt.compile import get_target
from edgeopt.compile.kernels import get, layers, names
from edgeopt.compile.sizes import round_up

from tests import arm_qemu
from tests.outcomes import not_run

# An LLVM CPU that has each ISA's instructions, and one instruction its kernels must contain.
# An ISA with nothing specific to look for (generic) is not listed.
_ARM = {"kind": "llvm", "mtriple": "aarch64-linux-gnu", "mcpu": "cortex-a76", "mattr": ["+neon", "+dotprod"]}
ISA_PROBE = {
    "vnni": ({"kind": "llvm", "mcpu": "icelake-server"}, "vpdpbusd"),
    "avx2": ({"kind": "llvm", "mcpu": "haswell"}, "vpmaddwd"),
    "dotprod": (_ARM, "sdot"),
    "neon": ({**_ARM, "mcpu": "cortex-a72", "mattr": ["+neon"]}, "smlal"),
}
# every ISA; the Arm ones run on emulated cores here (marked qemu)
ISAS = [pytest.param(n, marks=pytest.mark.qemu) if get(n).arch == "aarch64" else n for n in names()]


def _where(isa: str) -> str:
    """ "host" when the host CPU has `isa`, "emulated" for an Arm ISA this machine can run under
    QEMU (tests/arm_qemu.py); otherwise the test ends NOT RUN."""
    info = get_target("host").describe()
    spec = get(isa)
    if spec.runs_on(info["arch"], info["cpu_features"]):
        return "host"
    why = arm_qemu.missing(isa) if spec.arch == "aarch64" else None
    if spec.arch != "aarch64" or why is not None:
        missing = sorted(spec.requires - set(info["cpu_features"])) or [spec.arch]
        not_run(
            f"the host CPU ({info['arch']}, {info['mcpu']}) lacks {', '.join(missing)} for the {isa} kernels"
            + (f", and they cannot run emulated: {why}" if why else "")
        )
    return "emulated"


def _kernel(func, isa: str):
    """`func` built for the host, as call(*arrays) -> the output (the last array, written in
    place); NOT RUN when the host CPU lacks `isa` (the kernels without an emulated batch)."""
    import tvm

    if _where(isa) != "host":
        not_run(f"the {isa} kernels of this kind have no emulated check")
    lib = tvm.compile(func, target=tvm.target.Target(get_target("host").tvm_target()))

    def on_host(*arrays):
        tensors = [tvm.runtime.tensor(a) for a in arrays]
        lib(*tensors)
        return tensors[-1].numpy()

    return on_host


def _kernel_corr(corr, wsum, isa):
    """The correction a kernel is given for the true `corr`: an ISA that takes act_shift off each
    activation (dotprod: sdot on a - 128) gets act_shift * sum(W) added back there."""
    out = corr.astype(np.int64)
    out[: len(wsum)] -= get(isa).act_shift * wsum
    return out.astype(np.int32)


def _requantized(acc, corr, scale, zero):
    return np.clip(np.round((acc - corr).astype(np.float32) * scale) + zero, 0, 255).astype(np.uint8)


def _conv_case(isa, h, w, c, n, kh, kw, stride):
    lanes = layers.lanes_for(isa, n)
    np_ = round_up(n, lanes)
    oh, ow = layers.out_hw(h, w, kh=kh, kw=kw, stride=(stride, stride), dilation=(1, 1))
    extra = layers.folded_overhang(ow=ow, stride=stride, c=c, kw=kw, width=w)
    func = layers.conv2d_requant(
        h, (w + extra) * c, c, np_, kh, kw, oh, ow, (stride, stride), 1, 0.1, 3, "uint8", lanes=lanes, isa=isa
    )
    return func, lanes, np_, oh, ow, extra


CONV = [
    (28, 28, 1, 6, 5, 5, 1),
    (14, 14, 6, 16, 5, 5, 1),
    (16, 16, 16, 32, 3, 3, 2),
    (9, 11, 3, 20, 3, 2, 2),
    (12, 12, 1, 4, 5, 5, 1),
]
GEMM = [(1, 784, 128), (1, 200, 70), (4, 33, 10), (1, 56, 4)]


def _conv_job(isa, h, w, c, n, kh, kw, stride):
    """(func, its arrays with the output last, the expected output) of a fused conv case."""
    func, lanes, np_, oh, ow, extra = _conv_case(isa, h, w, c, n, kh, kw, stride)
    rng = np.random.default_rng(n)
    x = rng.integers(0, 256, (1, h, w + extra, c), dtype=np.uint8)
    wt = rng.integers(-128, 128, (n, c, kh, kw), dtype=np.int8)
    corr = rng.integers(-3000, 3000, np_).astype(np.int32)
    scale = (rng.random(np_) * 1e-3).astype(np.float32)
    arrays = [
        x.reshape(1, h, -1).astype(layers.conv_input_dtype(isa)),
        layers.pack_folded_conv_weights(wt, lanes, isa),
        _kernel_corr(corr, wt.reshape(n, -1).sum(axis=1, dtype=np.int64), isa),
        scale,
        np.zeros((1, oh, ow, np_), np.uint8),
    ]
    acc = np.zeros((oh, ow, np_), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = x[0, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride].astype(
                np.int64
            )
            acc[:, :, :n] += np.einsum("hwc,nc->hwn", patch, wt[:, :, i, j].astype(np.int64))
    return func, arrays, _requantized(acc, corr, scale, 3)[None]


def _gemm_job(isa, m, k, n):
    lanes = layers.lanes_for(isa, n)
    kp, np_ = round_up(k, 4), round_up(n, lanes)
    func = layers.gemm_requant(m, kp + 8, kp, np_, 0.1, 3, "uint8", isa=isa, lanes=lanes)
    rng = np.random.default_rng(k)
    a = np.zeros((m, kp + 8), np.uint8)  # read in place from a wider row, as from a padded layer
    a[:, :k] = rng.integers(0, 256, (m, k))
    wt = rng.integers(-128, 128, (n, k), dtype=np.int8)
    corr = rng.integers(-3000, 3000, np_).astype(np.int32)
    scale = (rng.random(np_) * 1e-3).astype(np.float32)
    arrays = [
        a,
        layers.pack_weights(wt, kp=kp, isa=isa, lanes=lanes),
        _kernel_corr(corr, wt.sum(axis=1, dtype=np.int64), isa),
        scale,
        np.zeros((m, np_), np.uint8),
    ]
    acc = np.zeros((m, np_), np.int64)
    acc[:, :n] = a[:, :k].astype(np.int64) @ wt.astype(np.int64).T
    return func, arrays, _requantized(acc, corr, scale, 3)


def _grouped_job(isa, groups, h, w, c, n, kh, kw, stride):
    """A fused conv with a group axis: (func, arrays with the output last, the expected output)."""
    lanes = layers.lanes_for(isa, n // groups)
    oh, ow = layers.out_hw(h, w, kh=kh, kw=kw, stride=(stride, stride), dilation=(1, 1))
    extra = layers.folded_overhang(ow=ow, stride=stride, c=c, kw=kw, width=w)
    func = layers.conv2d_requant(
        h,
        (w + extra) * c,
        c,
        n,
        kh,
        kw,
        oh,
        ow,
        (stride, stride),
        1,
        0.1,
        3,
        "uint8",
        lanes=lanes,
        isa=isa,
        groups=groups,
    )
    rng = np.random.default_rng(groups)
    x = rng.integers(0, 256, (groups, h, w + extra, c), dtype=np.uint8)
    wt = rng.integers(-128, 128, (n, c, kh, kw), dtype=np.int8)
    corr = rng.integers(-3000, 3000, n).astype(np.int32)
    scale = (rng.random(n) * 1e-3).astype(np.float32)
    arrays = [
        x.reshape(groups, h, -1).astype(layers.conv_input_dtype(isa)),
        layers.pack_folded_conv_weights(wt, lanes, isa),
        _kernel_corr(corr, wt.reshape(n, -1).sum(axis=1, dtype=np.int64), isa),
        scale,
        np.zeros((1, oh, ow, n), np.uint8),
    ]
    acc = np.zeros((oh, ow, n), np.int64)
    per = n // groups
    for g in range(groups):
        for i in range(kh):
            for j in range(kw):
                patch = x[g, i : i + stride * (oh - 1) + 1 : stride, j : j + stride * (ow - 1) + 1 : stride]
                acc[:, :, g * per : (g + 1) * per] += np.einsum(
                    "hwc,nc->hwn", patch.astype(np.int64), wt[g * per : (g + 1) * per, :, i, j].astype(np.int64)
                )
    return func, arrays, _requantized(acc, corr, scale, 3)[None]


GROUPED = [(4, 9, 11, 3, 64, 3, 3, 2), (2, 1, 20, 8, 32, 1, 3, 1)]
JOBS = {"conv": (_conv_job, CONV), "gemm": (_gemm_job, GEMM), "grouped": (_grouped_job, GROUPED)}


@pytest.fixture(scope="module")
def emulated():
    """(isa, kind, case) -> the kernel's output on the ISA's emulated core. On first use for an
    ISA, every conv and gemm case of it is built and run in ONE emulated process (Python and
    TVM's runtime take tens of seconds to start under QEMU; the kernels, milliseconds)."""
    done = {}

    def output(isa, kind, case):
        if isa not in done:
            done[isa] = arm_qemu.run_on_core(
                isa, {(k, c): job(isa, *c)[:2] for k, (job, cases) in JOBS.items() for c in cases}
            )
        return done[isa][(kind, case)]

    return output


def _output(isa, kind, case, emulated):
    func, arrays, want = JOBS[kind][0](isa, *case)
    if _where(isa) == "host":
        return _kernel(func, isa)(*arrays), want
    return emulated(isa, kind, case), want


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", CONV)
def test_fused_conv_requant_is_exact(isa, case, emulated):
    """The fused layer (folded kw*c reduction, integer accumulation, requantize epilogue); Arm
    ISAs on their emulated cores (cortex-a76 dotprod, cortex-a72 neon)."""
    out, want = _output(isa, "conv", case, emulated)
    assert np.array_equal(out, want)


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", GROUPED)
def test_grouped_conv_requant_is_exact(isa, case, emulated):
    """conv2d_requant with a group axis: X[groups, h, row], output channel j reads group
    j // (n / groups) (ragged c, strided; and a 1-D conv's one-row image); Arm ISAs on their
    emulated cores."""
    out, want = _output(isa, "grouped", case, emulated)
    assert np.array_equal(out, want)


def test_grouped_conv_needs_whole_lane_blocks_per_group():
    with pytest.raises(ValueError, match="whole blocks"):
        layers.conv2d_requant(3, 12, 4, 24, 1, 3, 1, 1, (1, 1), 1, 0.1, 3, "uint8", lanes=8, isa="generic", groups=2)


@pytest.mark.parametrize("isa", [n for n in names() if get(n).rows_intrinsic is not None])
@pytest.mark.parametrize("pool", [1, 2])
@pytest.mark.parametrize("oh, ow, n, kh, kw", [(28, 28, 3, 5, 5), (13, 13, 5, 4, 4), (8, 100, 7, 3, 3)])
def test_pixel_vectorized_first_layer_is_exact(oh, ow, n, kh, kw, pool, isa):
    """conv2d_rows_requant (one input channel, 8 output pixels per step, kernel rows paired;
    ragged widths, padded channel blocks, even and odd kernel heights; with and without the 2x2
    max-pool done on its int32 sums)."""

    shp = layers.rows_shape(oh, ow, n, kh, kw)
    run = _kernel(layers.conv2d_rows_requant(oh, ow, n, kh, kw, 0.1, 3, "uint8", pool=pool, isa=isa), isa)
    rng = np.random.default_rng(oh)
    img = rng.integers(0, 256, (shp["rows"] + 1, shp["cols"])).astype(np.int64)
    wt = rng.integers(-128, 128, (n, 1, kh, kw), dtype=np.int8)
    corr = rng.integers(-3000, 3000, shp["np"]).astype(np.int32)
    scale = (rng.random(shp["np"]) * 1e-3).astype(np.float32)
    ph, pw = oh // pool, ow // pool
    paired = np.stack([img[:-1], img[1:]], axis=-1).astype(np.int16)  # row r beside row r + 1
    out = run(
        paired,
        layers.pack_rows_weights(wt),
        corr,
        scale,
        np.zeros((1, shp["np"], ph, shp["owp"] // 2 if pool == 2 else ow), np.uint8),
    )
    acc = np.zeros((n, oh, ow), np.int64)
    for i in range(kh):
        for j in range(kw):
            acc += img[i : i + oh, j : j + ow][None] * wt[:, 0, i, j].astype(np.int64)[:, None, None]
    want = _requantized(acc, corr[:n, None, None], scale[:n, None, None], 3)
    want = want[:, : ph * pool, : pw * pool].reshape(n, ph, pool, pw, pool).max(axis=(2, 4))
    assert np.array_equal(out[0, :n, :, :pw], want)


def test_first_layer_kernel_is_chosen_by_instruction_count():
    """Pixel vectors for a thin one-channel layer; channel vectors where those need fewer dot
    products (VNNI's 4-tap steps on a wider layer) or the layer has more input channels."""
    assert layers.rows_ok("avx2", 1, 3, 5, 5, (1, 1), (1, 1))
    assert layers.rows_ok("vnni", 1, 3, 5, 5, (1, 1), (1, 1))
    assert not layers.rows_ok("vnni", 1, 6, 5, 5, (1, 1), (1, 1))
    assert not layers.rows_ok("avx2", 3, 3, 5, 5, (1, 1), (1, 1))
    assert not layers.rows_ok("avx2", 1, 3, 5, 5, (2, 2), (1, 1))
    assert not layers.rows_ok("generic", 1, 3, 5, 5, (1, 1), (1, 1))


@pytest.mark.parametrize("isa", ISAS)
@pytest.mark.parametrize("case", GEMM)
def test_fused_gemm_requant_is_exact(isa, case, emulated):
    out, want = _output(isa, "gemm", case, emulated)
    assert np.array_equal(out, want)


_INT32 = [n for n in names() if get(n).int32_layers is not None]


@pytest.mark.parametrize("isa", _INT32)
@pytest.mark.parametrize("m, k, n", [(1, 784, 128), (7, 25, 6), (12, 150, 16), (3, 5, 33)])
def test_int32_gemm_is_exact_for_any_shape(isa, m, k, n):

    kern = get(isa).int32_layers
    kp, np_ = round_up(k, 4), round_up(n, kern.lanes)
    run = _kernel(kern.gemm(m, kp, np_), isa)
    rng = np.random.default_rng(0)
    a = np.zeros((m, kp), np.uint8)
    a[:, :k] = rng.integers(0, 256, (m, k))
    w = rng.integers(-128, 128, (n, k)).astype(np.int8)
    out = run(a, kern.pack_gemm(w), np.zeros((m, np_), np.int32))
    ref = a[:, :k].astype(np.int64) @ w.astype(np.int64).T
    assert np.array_equal(out[:, :n], ref) and not out[:, n:].any()


@pytest.mark.parametrize("isa", _INT32)
def test_int32_direct_conv_is_exact_with_strides_dilation_and_odd_channels(isa):

    kern = get(isa).int32_layers
    h, w, c, n, kh, kw, stride, dil = 11, 9, 5, 20, 3, 2, (2, 1), (1, 2)
    cp = 8
    oh, ow = layers.out_hw(h, w, kh=kh, kw=kw, stride=stride, dilation=dil)
    run = _kernel(kern.conv2d(h, w, cp, n, kh, kw, stride, dil), isa)
    rng = np.random.default_rng(2)
    x = rng.integers(0, 256, (c, h, w)).astype(np.uint8)
    wt = rng.integers(-128, 128, (n, c, kh, kw)).astype(np.int8)
    xp = np.zeros((h, w, cp), np.uint8)
    xp[:, :, :c] = x.transpose(1, 2, 0)
    out = run(xp, kern.pack_conv(wt, cp), np.zeros((oh, ow, round_up(n, kern.lanes)), np.int32))
    ref = np.zeros((oh, ow, n), np.int64)
    for i in range(kh):
        for j in range(kw):
            patch = x[
                :,
                i * dil[0] : i * dil[0] + stride[0] * (oh - 1) + 1 : stride[0],
                j * dil[1] : j * dil[1] + stride[1] * (ow - 1) + 1 : stride[1],
            ].astype(np.int64)
            ref += np.einsum("chw,nc->hwn", patch, wt[:, :, i, j].astype(np.int64))
    assert np.array_equal(out[:, :, :n], ref) and not out[:, :, n:].any()


@pytest.mark.parametrize("isa", sorted(ISA_PROBE))
def test_machine_code_has_the_instruction(isa):
    """Each ISA's fused conv, compiled for a CPU that has it, contains its instruction (and the
    unfused int32 GEMM too where the ISA has one). This passes on any host; the exactness tests
    above are the ones that need the CPU."""
    import tvm

    target, instruction = ISA_PROBE[isa]
    funcs = [_conv_case(isa, 14, 14, 6, 16, 5, 5, 1)[0]]
    if get(isa).int32_layers is not None:
        funcs.append(get(isa).int32_layers.gemm(4, 32, 16))
    for func in funcs:
        lib = tvm.compile(func, target=tvm.target.Target(target))
        assert instruction in (lib.mod if hasattr(lib, "mod") else lib).inspect_source("asm")
