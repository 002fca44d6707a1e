import torch
from edgeopt.toolkit.sparsity import compare, global_sparsity_of_onnx, measure, onnx_weight_counts, totals
from torch import nn


def _net():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 6 * 6, 5))


def test_measure_counts_zeros_params_and_macs():
    m = _net()
    with torch.no_grad():
        m[0].weight[:2].zero_()  # half the filters
        m[3].weight[:, :10].zero_()
    layers = {layer.name: layer for layer in measure(m, (1, 1, 8, 8))}
    conv, fc = layers["0"], layers["3"]
    assert conv.params_before == 36 and conv.params_after == 18
    assert conv.macs_before == 36 * 6 * 6  # every weight once per output position
    assert conv.macs_after == conv.macs_before  # zeros do not shrink a dense kernel
    assert conv.macs_after_nonzero == 18 * 6 * 6
    assert fc.params_before == 720 and fc.params_after == 670
    assert abs(fc.sparsity - 50 / 720) < 1e-9


def test_compare_counts_removed_weights_and_shrunk_macs():
    a = _net()
    b = nn.Sequential(nn.Conv2d(1, 2, 3), nn.ReLU(), nn.Flatten(), nn.Linear(2 * 6 * 6, 5))  # 2 filters removed
    layers = {layer.name: layer for layer in compare(a, b, (1, 1, 8, 8))}
    assert layers["0"].shape_before == (4, 1, 3, 3) and layers["0"].shape_after == (2, 1, 3, 3)
    assert layers["0"].params_after == 18 and layers["0"].macs_after == 18 * 36
    assert layers["3"].params_after == 360 and layers["3"].sparsity == 0.5
    t = totals(list(layers.values()))
    assert t["params"] == {"before": 756, "after": 378}
    assert t["sparsity"]["global"] == 0.5
    assert t["macs"]["after"] < t["macs"]["before"]


def test_sparsity_from_int8_onnx_matches_pruning(pruned, quantized):
    counts = onnx_weight_counts(quantized.path)
    # both Linear weights are found behind their DequantizeLinear, stored as int8
    assert len(counts) == 2
    assert sum(n for n, _ in counts.values()) == pruned.params_before
    s = global_sparsity_of_onnx(quantized.path, pruned.params_before)
    # symmetric int8 keeps every pruned zero a zero; rounding may add a few more
    assert s >= pruned.global_sparsity - 1e-9
    assert s >= 0.70


def test_sparsity_counts_removed_weights_as_sparse(pruned, quantized):
    # against a larger "original" count, missing weights count as removed
    s = global_sparsity_of_onnx(quantized.path, pruned.params_before * 2)
    assert s >= 0.85
