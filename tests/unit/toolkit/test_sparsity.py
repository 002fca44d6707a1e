import torch
from torch import nn

from toolkit.sparsity import global_sparsity_of_onnx, measure, onnx_weight_counts


def test_measure_counts_zeros_params_and_macs():
    m = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))
    with torch.no_grad():
        m[0].weight[:2].zero_()  # half the filters
        m[3].weight[:, :10].zero_()
    layers = {l.name: l for l in measure(m, (1, 1, 8, 8))}
    conv, fc = layers["0"], layers["3"]
    assert conv.params == 4 * 1 * 3 * 3 and conv.zeros == 18
    assert conv.macs == 36 * 6 * 6  # every weight once per output position
    assert conv.nonzero_macs == 18 * 6 * 6
    assert fc.params == 144 * 5 and fc.zeros == 50
    assert fc.macs == 144 * 5
    assert abs(fc.sparsity - 50 / 720) < 1e-9


def test_sparsity_from_int8_onnx_matches_pruning(pruned, quantized):
    counts = onnx_weight_counts(quantized.path)
    # both Linear weights are found behind their DequantizeLinear, stored as int8
    assert len(counts) == 2
    assert sum(n for n, _ in counts.values()) == pruned.params_before
    s = global_sparsity_of_onnx(quantized.path, pruned.params_before)
    # symmetric int8 keeps every pruned zero a zero; rounding may add a few more
    assert s >= pruned.global_sparsity - 1e-9
    assert s >= 0.70


def test_sparsity_counts_removed_weights_as_sparse(tmp_path, pruned, quantized):
    # against a larger "original" count, missing weights count as removed
    s = global_sparsity_of_onnx(quantized.path, pruned.params_before * 2)
    assert s >= 0.85
