"""Transfer learning: fine-tune a user's pretrained model on the user's data before pruning,
optionally with its first layers frozen and a new classifier head when the classes differ."""

from __future__ import annotations

import copy

from torch import nn

from edgeopt.errors import UsageError

from .data import Dataset
from .models import Model
from .sparsity import prunable_layers
from .train import evaluate, train


def _replace_head(module: nn.Module, num_classes: int) -> bool:
    name, head = prunable_layers(module)[-1]
    if not isinstance(head, nn.Linear) or head.out_features == num_classes:
        return False
    parent = module.get_submodule(name.rpartition(".")[0]) if "." in name else module
    setattr(parent, name.rpartition(".")[2], nn.Linear(head.in_features, num_classes))
    return True


def finetune(
    model: Model, data: Dataset, *, epochs: int, freeze: int = 0, lr: float = 1e-3, seed: int = 0
) -> tuple[Model, dict]:
    """A fine-tuned copy of `model`; `freeze` = how many of the first Linear/Conv layers keep
    their weights. Returns the model and a summary for the stage's JSON."""
    layers = prunable_layers(model.module)
    if not 0 <= freeze < len(layers):
        raise UsageError(
            f"--freeze must be between 0 and {len(layers) - 1} (the model has {len(layers)} Linear/Conv layers)"
        )
    module = copy.deepcopy(model.module)
    new_head = _replace_head(module, data.num_classes)
    frozen = [n for n, _ in prunable_layers(module)[:freeze]]
    saved = {}
    for name in frozen:
        for pname, p in module.get_submodule(name).named_parameters():
            saved[(name, pname)] = p.requires_grad
            p.requires_grad_(False)
    before = evaluate(module, data.x_test, data.y_test) if not new_head else None
    train(module, data.x_train, data.y_train, epochs=epochs, seed=seed, lr=lr)
    for (name, pname), flag in saved.items():
        module.get_submodule(name).get_parameter(pname).requires_grad_(flag)
    after = evaluate(module, data.x_test, data.y_test)
    return Model(module.eval(), model.spec, after), {
        "epochs": epochs,
        "frozen_layers": frozen,
        "new_head": new_head,
        "accuracy": {"before": before, "after": after},
    }
