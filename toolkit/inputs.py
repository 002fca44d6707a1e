"""Turning what the user names on the command line into stage inputs."""
from __future__ import annotations

from pathlib import Path

from .data import Dataset
from edgeopt.errors import InputError
from .models import BUILTIN_MODELS, InputSpec, Model, build_model, load_module
from .train import evaluate, seed_everything, train

DEFAULT_TRAIN_EPOCHS = 40
DEFAULT_LR = 3e-3


def train_builtin(name: str, data: Dataset, *, epochs: int = DEFAULT_TRAIN_EPOCHS, lr: float = DEFAULT_LR,
                  seed: int = 0) -> Model:
    seed_everything(seed)
    module = build_model(name, num_classes=data.num_classes, input_shape=data.input_shape)
    train(module, data.x_train, data.y_train, epochs=epochs, seed=seed, lr=lr)
    return Model(module, InputSpec(name="input", shape=data.input_shape), evaluate(module, data.x_test, data.y_test))


def check_model_spec(spec: str) -> None:
    """Fail fast on a model that names nothing."""
    if spec not in BUILTIN_MODELS and not Path(spec).exists():
        raise InputError(f"model not found: {spec}",
                         hint=f"pass a built-in name ({', '.join(sorted(BUILTIN_MODELS))}), a stage directory or a torch.save'd file")


def resolve_model(spec: str, data: Dataset, *, factory: str | None = None, train_epochs: int = DEFAULT_TRAIN_EPOCHS,
                  seed: int = 0) -> tuple[Model, str]:
    """A built-in name (trained here on `data`), a stage directory (model.pt or pruned.pt with
    spec.json), a torch.save'd module, or a state dict with `factory`. Returns (model, how)."""
    if spec in BUILTIN_MODELS:
        return train_builtin(spec, data, epochs=train_epochs, seed=seed), f"built-in {spec}, trained {train_epochs} epochs"
    path = Path(spec)
    if path.is_dir():
        for filename in ("model.pt", "pruned.pt"):
            if (path / filename).is_file() and (path / "spec.json").is_file():
                model = Model.load(path, filename=filename)
                model.accuracy = evaluate(model.module, data.x_test, data.y_test)
                return model, f"stage directory {path}"
        raise InputError(f"{path} holds no model.pt/pruned.pt with spec.json")
    module = load_module(spec, factory=factory)
    model = Model(module, InputSpec(name="input", shape=data.input_shape))
    try:
        model.accuracy = evaluate(module, data.x_test, data.y_test)
    except RuntimeError as exc:
        raise InputError(
            f"{spec} does not accept the data's samples of shape {data.input_shape[1:]}: {str(exc).splitlines()[0]}"
        ) from None
    return model, f"file {path}"
