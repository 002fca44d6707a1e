import pytest
import torch

from toolkit.errors import UsageError
from toolkit.prune import PruneConfig, PrunedModel, cubic_schedule, prune_magnitude


def test_cubic_schedule_ends_at_target_and_front_loads():
    s = cubic_schedule(0.8, 4)
    assert s[-1] == pytest.approx(0.8)
    assert all(a < b for a, b in zip(s, s[1:]))
    # Zhu & Gupta prune fast early, slowly late
    assert s[0] > 0.8 / 4


def test_pruning_reaches_target_and_zeros_are_permanent(pruned, trained):
    assert pruned.global_sparsity >= 0.70
    assert pruned.params_before == 784 * 128 + 128 * 10
    # no leftover masks or reparametrisation: the zeros are in .weight itself
    for name, _ in pruned.model.module.named_buffers():
        assert not name.endswith("_mask")
    # the dense model is not changed by pruning
    dense_zeros = sum(int((p == 0).sum()) for n, p in trained.module.named_parameters() if n.endswith("weight"))
    assert dense_zeros < 0.05 * pruned.params_before
    assert pruned.accuracy_after > 0.8


def test_below_70_is_refused_unless_allowed(trained, digits):
    with pytest.raises(UsageError, match="--allow-below-70"):
        prune_magnitude(trained, digits, config=PruneConfig(target=0.5))
    ok = prune_magnitude(trained, digits, config=PruneConfig(target=0.5, allow_below_70=True, steps=1,
                                                               final_epochs=0))
    assert 0.5 <= ok.global_sparsity < 0.51


def test_save_load_round_trip(pruned, tmp_path):
    pruned.save(tmp_path)
    assert (tmp_path / "pruned.pt").is_file() and (tmp_path / "prune.json").is_file()
    back = PrunedModel.load(tmp_path)
    assert back.global_sparsity == pytest.approx(pruned.global_sparsity)
    x = torch.rand(1, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(back.model.module(x), pruned.model.module(x))
    j = back.to_json()
    assert j["params"]["after"] == pruned.params_after
    assert j["macs"]["after"] < j["macs"]["before"]
