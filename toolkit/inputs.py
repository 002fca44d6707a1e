"""Turning what the user names on the command line into stage inputs."""

from __future__ import annotations

from pathlib import Path

import torch

from edgeopt.errors import InputError

from .config import TRAIN_EPOCHS, TRAIN_LR
from .data import Dataset
from .loader import load
from .models import BUILTIN_MODELS, InputSpec, Model, build_model
from .train import evaluate, seed_everything, train


def train_builtin(
    name: str, data: Dataset, *, epochs: int = TRAIN_EPOCHS, lr: float = TRAIN_LR, seed: int = 0
) -> Model:
    seed_everything(seed)
    if len(data.input_shape) != 4 and name != "mlp":
        raise InputError(
            f"the built-in {name} takes images N x C x H x W; {data.name!r} has samples of shape "
            f"{data.input_shape[1:]}",
            hint="use the built-in mlp, or bring your own model",
        )
    module = build_model(name, num_classes=data.num_classes, input_shape=data.input_shape)
    train(module, data.x_train, data.y_train, epochs=epochs, seed=seed, lr=lr)
    return Model(module, InputSpec(name="input", shape=data.input_shape), evaluate(module, data.x_test, data.y_test))


def check_model_spec(spec: str) -> None:
    """Fail fast on a model that names nothing."""
    if spec not in BUILTIN_MODELS and not Path(spec).exists():
        raise InputError(
            f"model not found: {spec}",
            hint=f"pass a built-in name ({', '.join(sorted(BUILTIN_MODELS))}), a stage directory, or a model "
            "file: torch.save'd module or state dict (+ --factory), TorchScript, .pt2, .onnx",
        )


LAYOUTS = {4: "NCHW", 3: "NCL", 2: "NF"}


def _fit(model: Model, data: Dataset, where: str, declared: tuple | None = None) -> None:
    """The data's samples go into the model as they are (never reshaped): say so when they do not fit."""
    sample = tuple(data.input_shape[1:])
    if declared is not None:
        want = tuple(declared[1:])
        if len(want) != len(sample) or any(w is not None and w != s for w, s in zip(want, sample)):
            shown = tuple("?" if w is None else w for w in want)
            raise InputError(
                f"{where} takes samples of shape {shown}, the data {data.name!r} has {sample}",
                hint="save x in the shape the model takes; edgeopt never reshapes data",
            )
    x = data.x_test[:2] if data.labelled else data.x_train[:2]
    try:
        with torch.no_grad():
            out = model.module.eval()(torch.from_numpy(x))
    except Exception as exc:  # whatever the user's forward raises on a wrong shape
        text = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise InputError(
            f"{where} does not accept the samples of shape {sample} in {data.name}: {text}",
            hint="save x in the shape the model takes (N x C x H x W, N x C x L or N x F); edgeopt never reshapes data",
        ) from None
    if not isinstance(out, torch.Tensor) or out.dim() != 2:
        shape = tuple(out.shape) if isinstance(out, torch.Tensor) else type(out).__name__
        raise InputError(
            f"{where} returns {shape} for the samples of shape {sample} in {data.name}, not N x classes scores",
            hint="edgeopt optimizes classifiers with one output: logits of shape N x classes",
        )
    if data.labelled:
        top = max(int(data.y_train.max()), int(data.y_val.max()), int(data.y_test.max()))
        if top >= out.shape[1]:
            raise InputError(
                f"labels in {data.name!r} go up to {top}, but {where} has {out.shape[1]} outputs",
                hint="number the classes 0..outputs-1, or bring the model for these labels",
            )


def check_onnx_fit(path: Path, data: Dataset) -> None:
    """An ONNX model used as it is (PTQ only): its declared input against the data's samples."""
    from .loader import onnx_input_shape

    try:
        declared = onnx_input_shape(path)
    except Exception as exc:  # protobuf raises several kinds on garbage
        raise InputError(
            f"{path} is not a valid ONNX model: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}",
            hint="re-export it (torch.onnx.export) or check the file is complete",
        ) from None
    sample = tuple(data.input_shape[1:])
    if declared is None:
        raise InputError(f"{path} has more than one input", hint="edgeopt quantizes models with one input")
    want = tuple(declared[1:])
    if len(want) != len(sample) or any(w is not None and w != s for w, s in zip(want, sample)):
        shown = tuple("?" if w is None else w for w in want)
        raise InputError(
            f"{path} takes samples of shape {shown}, the data {data.name!r} has {sample}",
            hint="save x in the shape the model takes; edgeopt never reshapes data",
        )


def score(model: Model, data: Dataset) -> float | None:
    """Accuracy on the test split; None for unlabelled data (no accuracy is claimed then)."""
    return evaluate(model.module, data.x_test, data.y_test) if data.labelled else None


def resolve_model(
    spec: str,
    data: Dataset,
    *,
    factory: str | None = None,
    train_epochs: int = TRAIN_EPOCHS,
    seed: int = 0,
    lr: float = TRAIN_LR,
) -> tuple[Model, str]:
    """A built-in name (trained here on `data`), a stage directory (model.pt or pruned.pt with
    spec.json), or a user's model file (see loader.py). Returns (model, what was found)."""
    if spec in BUILTIN_MODELS:
        if not data.labelled:
            raise InputError(
                f"the built-in {spec} must be trained, and {data.name!r} has no labels",
                hint="give y with x, or bring a trained model of your own",
            )
        return train_builtin(
            spec, data, epochs=train_epochs, seed=seed, lr=lr
        ), f"built-in {spec}, trained {train_epochs} epochs"
    path = Path(spec)
    if path.is_dir():
        for filename in ("model.pt", "pruned.pt"):
            if (path / filename).is_file() and (path / "spec.json").is_file():
                model = Model.load(path, filename=filename)
                _fit(model, data, f"the model in {path}")
                model.accuracy = score(model, data)
                return model, f"stage directory {path}"
        raise InputError(
            f"{path} holds no model.pt/pruned.pt with spec.json",
            hint="pass the --out folder of edgeopt prune (or run --out DIR/model), or a model file",
        )
    loaded = load(path, factory=factory, sample_shape=data.input_shape)
    shape = data.input_shape
    model = Model(
        loaded.module,
        InputSpec(name="input", shape=shape, layout=LAYOUTS.get(len(shape), "N...")),
        source={"format": loaded.format.value, "path": str(path), "found": loaded.found, **loaded.requires},
    )
    _fit(model, data, str(path), loaded.input_shape)
    model.accuracy = score(model, data)
    return model, f"{path}: {loaded.found}"
