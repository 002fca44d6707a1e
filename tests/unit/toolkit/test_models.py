import pytest
import torch
from edgeopt.toolkit.models import build_model, load_module
from edgeopt.toolkit.transfer import finetune

from edgeopt.errors import InputError


def test_builtin_shapes():
    assert build_model("mlp", num_classes=10, input_shape=(1, 1, 28, 28))(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    cnn = build_model("cnn", num_classes=10, input_shape=(1, 1, 28, 28))
    assert cnn(torch.zeros(2, 1, 28, 28)).shape == (2, 10)
    convs = [m for m in cnn.modules() if isinstance(m, torch.nn.Conv2d)]
    fcs = [m for m in cnn.modules() if isinstance(m, torch.nn.Linear)]
    assert [c.out_channels for c in convs] == [6, 16]
    assert [f.out_features for f in fcs] == [120, 84, 10]


def test_resnet_has_residual_stages_and_takes_any_size():
    net = build_model("resnet", num_classes=10, input_shape=(1, 3, 32, 32)).eval()
    assert net(torch.zeros(2, 3, 32, 32)).shape == (2, 10)
    assert sum(isinstance(m, torch.nn.BatchNorm2d) for m in net.modules()) == 6
    grey = build_model("resnet", num_classes=10, input_shape=(1, 1, 28, 28)).eval()
    assert grey(torch.zeros(1, 1, 28, 28)).shape == (1, 10)


def test_load_saved_module_and_state_dict(tmp_path):
    from tests.unit.toolkit.nets import resnet_factory

    m = resnet_factory()
    torch.save(m, tmp_path / "whole.pt")
    torch.save(m.state_dict(), tmp_path / "sd.pt")
    x = torch.rand(1, 1, 28, 28)
    assert torch.allclose(load_module(str(tmp_path / "whole.pt"))(x), m.eval()(x))
    back = load_module(str(tmp_path / "sd.pt"), factory="tests.unit.toolkit.nets:resnet_factory")
    assert torch.allclose(back(x), m(x))
    with pytest.raises(InputError, match="--factory"):
        load_module(str(tmp_path / "sd.pt"))
    with pytest.raises(InputError, match="cannot import --factory"):
        load_module(str(tmp_path / "sd.pt"), factory="nowhere.at.all:f")
    with pytest.raises(InputError, match="does not fit"):
        load_module(str(tmp_path / "sd.pt"), factory="edgeopt.toolkit.models:mlp")
    (tmp_path / "junk.pt").write_bytes(b"junk")
    with pytest.raises(InputError, match="not a model edgeopt can read"):
        load_module(str(tmp_path / "junk.pt"))
    with pytest.raises(InputError, match="not found"):
        load_module(str(tmp_path / "missing.pt"))


def test_finetune_freezes_early_layers_and_replaces_a_mismatched_head(trained, digits):
    import copy

    from edgeopt.toolkit.models import Model
    from torch import nn

    donor = copy.deepcopy(trained.module)
    donor[3] = nn.Linear(128, 5)  # "pretrained" on 5 classes
    tuned, info = finetune(Model(donor, trained.spec), digits, epochs=4, freeze=1, lr=3e-3)
    assert info["new_head"] and info["frozen_layers"] == ["1"]
    assert torch.equal(tuned.module[1].weight, donor[1].weight)  # frozen
    assert tuned.module[3].out_features == 10
    assert all(p.requires_grad for p in tuned.module.parameters())  # unfrozen afterwards
    assert tuned.accuracy > 0.5
