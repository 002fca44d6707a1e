import numpy as np
import pytest
import torch
from edgeopt.toolkit.models import InputSpec, Model, build_model
from edgeopt.toolkit.prune import Allocation, Method, PruneConfig, PrunedModel, Schedule, Scope, cubic_schedule, prune
from edgeopt.toolkit.prune.sensitivity import Point, allocate
from edgeopt.toolkit.train import seed_everything, train

from edgeopt.errors import UsageError

FAST = dict(steps=2, epochs_per_step=1, final_epochs=1)


def test_cubic_schedule_ends_at_target_and_front_loads():
    s = cubic_schedule(0.8, 4)
    assert s[-1] == pytest.approx(0.8)
    assert all(a < b for a, b in zip(s, s[1:]))
    assert s[0] > 0.8 / 4  # Zhu & Gupta prune fast early, slowly late


def test_unstructured_reaches_target_and_zeros_are_permanent(pruned, trained):
    assert pruned.global_sparsity >= 0.70
    assert pruned.params_before == 784 * 128 + 128 * 10
    for name, _ in pruned.model.module.named_buffers():
        assert not name.endswith("_mask")  # no leftover masks: the zeros are in .weight itself
    dense_zeros = sum(int((p == 0).sum()) for n, p in trained.module.named_parameters() if n.endswith("weight"))
    assert dense_zeros < 0.05 * pruned.params_before  # the dense model is left as it was
    assert pruned.accuracy_after > 0.8
    j = pruned.to_json()
    assert j["macs"]["after"] == j["macs"]["before"]  # unstructured zeros shrink no dense kernel
    assert j["macs"]["after_nonzero"] < 0.35 * j["macs"]["before"]
    assert [s["step"] for s in j["steps"]] == [1, 2]


def test_layerwise_scope_and_exclusions(trained, digits):
    p = prune(trained, digits, config=PruneConfig(target=0.7, scope=Scope.layer, exclude=("3",), **FAST))
    layers = {layer.name: layer for layer in p.layers}
    assert layers["3"].params_after == layers["3"].params_before  # excluded: untouched
    assert p.global_sparsity >= 0.70
    with pytest.raises(UsageError, match="prunable layers: 1, 3"):
        prune(trained, digits, config=PruneConfig(exclude=("nope",), **FAST))


def test_oneshot_has_one_step(trained, digits):
    p = prune(trained, digits, config=PruneConfig(schedule=Schedule.oneshot, final_epochs=1))
    assert len(p.steps) == 1 and p.global_sparsity >= 0.70


def test_structured_removes_neurons(trained, digits):
    p = prune(trained, digits, config=PruneConfig(method=Method.structured, **FAST))
    layers = {layer.name: layer for layer in p.layers}
    hidden = layers["1"].shape_after[0]
    assert hidden < 128 * 0.35
    assert layers["3"].shape_after == (10, hidden)  # the next layer shrank with it; 10 outputs kept
    assert p.global_sparsity >= 0.70
    j = p.to_json()
    assert j["macs"]["after"] < 0.35 * j["macs"]["before"]  # real shapes, real MACs
    x = torch.from_numpy(digits.x_test[:4])
    assert p.model.module(x).shape == (4, 10)


def test_structured_cnn_shrinks_filters_and_fc(digits):
    seed_everything(0)
    m = build_model("cnn", num_classes=10, input_shape=digits.input_shape)
    train(m, digits.x_train, digits.y_train, epochs=2, seed=0)
    model = Model(m, InputSpec("input", digits.input_shape))
    p = prune(model, digits, config=PruneConfig(method=Method.structured, distill=True, **FAST))
    shapes = {layer.name: layer.shape_after for layer in p.layers}
    assert shapes["0"][0] < 6 and shapes["3"][0] < 16 and shapes["7"][0] < 120
    assert shapes["3"][1] == shapes["0"][0]  # conv2 inputs follow conv1 filters
    assert shapes["7"][1] == shapes["3"][0] * 25  # fc1 inputs follow conv2 filters through the flatten
    assert p.global_sparsity >= 0.70


def test_residual_depthwise_model_prunes_runs_exports_and_compiles(digits, tmp_path):
    from edgeopt.compile import compile_onnx, get_target
    from edgeopt.toolkit.export import export_onnx

    from tests.unit.toolkit.nets import ResDepthwiseNet

    seed_everything(0)
    m = ResDepthwiseNet()
    train(m, digits.x_train, digits.y_train, epochs=1, seed=0)
    model = Model(m, InputSpec("input", digits.input_shape))
    p = prune(
        model,
        digits,
        config=PruneConfig(target=0.5, allow_below_70=True, method=Method.structured, scope=Scope.global_, **FAST),
    )
    assert p.global_sparsity >= 0.5
    net = p.model.module
    # residual adds and depthwise groups stayed consistent
    for blk in (net.block1, net.block2):
        dw = blk.depthwise[0]
        assert dw.groups == dw.in_channels == dw.out_channels == blk.expand[0].out_channels
        assert blk.project[0].out_channels == net.stem[0].out_channels
    assert net(torch.from_numpy(digits.x_test[:2])).shape == (2, 10)
    onnx_path = export_onnx(p.model, tmp_path / "m.onnx")
    bundle, parity = compile_onnx(
        onnx_path, target=get_target("host"), out_dir=tmp_path / "b", parity_inputs=digits.x_test[:4]
    )
    assert parity.top1_agreement == 1.0
    p.save(tmp_path / "saved")
    back = PrunedModel.load(tmp_path / "saved")  # new shapes, no patching of the class
    x = torch.from_numpy(digits.x_test[:3])
    assert torch.allclose(back.model.module(x), net(x))


def test_allocate_prefers_insensitive_layers():
    table = {
        "robust": [Point(r, 0.9, 0.001 * r, 0.5 * r) for r in (0.3, 0.6, 0.9)],
        "fragile": [Point(r, 0.5, 0.4 * r, 0.5 * r) for r in (0.3, 0.6, 0.9)],
    }
    ratios = allocate(table, 0.5)
    assert ratios["robust"] == 0.9 and ratios["fragile"] <= 0.3


def test_sensitivity_allocation_records_scan(trained, digits):
    p = prune(
        trained,
        digits,
        config=PruneConfig(allocation=Allocation.sensitivity, scope=Scope.layer, sensitivity_ratios=(0.5, 0.9), **FAST),
    )
    assert set(p.sensitivity) == {"1", "3"}
    assert [pt["ratio"] for pt in p.sensitivity["1"]] == [0.5, 0.9]
    assert set(p.allocation) == {"1", "3"}
    assert p.global_sparsity >= 0.70


def test_below_70_is_refused_unless_allowed(trained, digits):
    with pytest.raises(UsageError, match="--allow-below-70"):
        prune(trained, digits, config=PruneConfig(target=0.5))
    ok = prune(
        trained, digits, config=PruneConfig(target=0.5, allow_below_70=True, schedule=Schedule.oneshot, final_epochs=0)
    )
    assert 0.5 <= ok.global_sparsity < 0.51


def test_distillation_learns_from_the_teacher_not_the_labels(trained, digits):
    """With shuffled labels only the teacher carries signal: the distilled student follows it."""
    from edgeopt.toolkit.models import mlp

    rng = np.random.default_rng(0)
    wrong = rng.permutation(digits.y_train)
    x = torch.from_numpy(digits.x_test)
    agreement = {}
    for alpha in (0.0, 1.0):
        seed_everything(1)
        student = mlp()
        train(student, digits.x_train, wrong, epochs=4, seed=1, lr=3e-3, teacher=trained.module, distill_alpha=alpha)
        with torch.no_grad():
            agreement[alpha] = (student(x).argmax(1) == trained.module(x).argmax(1)).float().mean().item()
    assert agreement[1.0] > 0.8 > 0.3 > agreement[0.0]


def test_save_load_round_trip(pruned, tmp_path):
    pruned.save(tmp_path)
    assert (tmp_path / "pruned.pt").is_file() and (tmp_path / "prune.json").is_file()
    back = PrunedModel.load(tmp_path)
    assert back.global_sparsity == pytest.approx(pruned.global_sparsity)
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back.model.module(x), pruned.model.module(x))
    assert back.to_json()["params"]["after"] == pruned.params_after


def test_latency_share_tips_the_allocation():
    same = [Point(r, 0.9, 0.01 * r, 0.5 * r) for r in (0.3, 0.6, 0.9)]
    table = {"fc": same, "conv": same}
    plain = allocate(table, 0.45)
    weighted = allocate(table, 0.45, latency_share={"conv": 0.9, "fc": 0.1})
    assert weighted["conv"] > weighted["fc"]
    assert weighted["conv"] > plain["conv"]  # plain breaks the tie the other way


def test_latency_weighted_needs_sensitivity(trained, digits):
    with pytest.raises(UsageError, match="--allocation sensitivity"):
        prune(trained, digits, config=PruneConfig(latency_weighted=True, **FAST))


def test_layer_latencies_are_measured_with_tvm():
    from edgeopt.toolkit.models import cnn
    from edgeopt.toolkit.prune.latency import layer_latencies

    ms = layer_latencies(cnn().eval(), (1, 1, 28, 28), ["3", "9"])
    assert set(ms) == {"3", "9"} and all(v > 0 for v in ms.values())
    # conv2 (240k MACs) takes longer than fc2 (10k MACs)
    assert ms["3"] > ms["9"]


def test_global_threshold_caps_each_layer_and_hits_the_count():
    from edgeopt.toolkit.prune import unstructured
    from torch import nn

    seed_everything(0)
    module = nn.Sequential(nn.Linear(20, 50), nn.ReLU(), nn.Linear(50, 10))
    with torch.no_grad():
        module[2].weight.mul_(1e-3)  # all of its weights are below the other layer's: uncapped, it would go whole
    total = 20 * 50 + 50 * 10
    count = int(0.7 * total)
    unstructured.apply_global(module, ["0", "2"], count, cap=0.9)
    zeros = {n: int((module[int(n)].weight == 0).sum()) for n in ("0", "2")}
    assert zeros["2"] == int(0.9 * 500)  # the small layer stops at its cap...
    assert sum(zeros.values()) == count  # ...and the threshold rose for the other to hit the count
    w0 = module[0].weight_orig.abs()
    kept, dropped = w0[module[0].weight_mask == 1], w0[module[0].weight_mask == 0]
    assert dropped.max() <= kept.min()  # one threshold within the layer: the smallest went


def test_recovery_rounds_follow_when_pruning_costs_more_than_the_budget(trained, digits):
    cfg = PruneConfig(target=0.9, schedule=Schedule.oneshot, final_epochs=0, budget=0.0, recovery_rounds=2)
    p = prune(trained, digits, config=cfg)
    recovery = [s for s in p.steps if s.get("recovery")]
    assert 1 <= len(recovery) <= 2 and p.global_sparsity >= 0.9
    assert [s["step"] for s in p.steps] == list(range(1, len(p.steps) + 1))
    from edgeopt.toolkit.train import evaluate

    # the best round by validation accuracy is the one kept
    best = max(s["val_accuracy"] for s in p.steps)
    assert evaluate(p.model.module, digits.x_val, digits.y_val) == pytest.approx(best)
    none = prune(trained, digits, config=PruneConfig(target=0.9, schedule=Schedule.oneshot, final_epochs=0))
    assert not any(s.get("recovery") for s in none.steps)  # no budget: no recovery
    with pytest.raises(UsageError, match="budget"):
        PruneConfig(budget=1.5).validate()
