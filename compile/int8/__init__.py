"""Real int8 for QDQ models: a Relax pass that turns dequantize -> conv2d/matmul into integer ops.

TVM's ONNX importer keeps a QDQ model's arithmetic in fp32 (dequantize -> fp32 conv -> quantize),
and constant folding turns the int8 weights back into fp32 constants. The pass (lower.py,
`LowerQDQToInt8`) rewrites

    conv2d(dequantize(x_u8, sx, zx), dequantize(W_i8, sw, 0))
    matmul(dequantize(x_u8, sx, zx), permute_dims(dequantize(W_i8, sw, 0)))

(and conv1d, run as a conv2d one row high; grouped convs on a group axis: geometry.py) either as
a whole fused layer (fused.py: the layer, its bias and the quantize after it in one kernel on the
target's ISA, compile/kernels) or, where that does not apply, as an int32 op
followed by the requantization to real values (unfused.py). Results agree with onnxruntime's
int8 execution, and the weights stay int8 constants in the compiled library.

Padding: a convolution's zero padding is in real values, which is `zx` in the quantized domain,
so the pass pads with `zx` explicitly and the zero-point correction becomes one constant per
output channel. Only symmetric weights (zero point 0, per-tensor or per-output-channel) are
rewritten; anything else is left as it was and counted in the stats.
"""

from .lower import LowerQDQToInt8, lower_qdq_to_int8
from .stats import Int8Stats

__all__ = ["Int8Stats", "LowerQDQToInt8", "lower_qdq_to_int8"]
