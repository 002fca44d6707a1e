"""A user's model file, whatever its format, as a torch module every stage can prune and fine-tune.

    module       torch.save(model)                       the pickled nn.Module (its class importable)
    state_dict   torch.save(model.state_dict())          + --factory package.module:function
    torchscript  torch.jit.save(torch.jit.script(m))      -> ONNX (torch's TorchScript exporter) -> torch
    exported     torch.export.save(program, "m.pt2")      -> ONNX (torch's dynamo exporter) -> torch
    onnx         an .onnx file                            -> torch (toolkit/onnx_torch.py)

The format is read from the file's contents, not its name. Every failure is an InputError naming
the user's file and the fix; the `requires` of a load say what a stage folder needs to load again."""

from __future__ import annotations

import contextlib
import io
import logging
import tempfile
import warnings
import zipfile
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path

import torch
from torch import nn

from edgeopt.errors import InputError, UnsupportedModelError


class ModelFormat(str, Enum):
    module = "module"
    state_dict = "state_dict"
    torchscript = "torchscript"
    exported = "exported"
    onnx = "onnx"


DESCRIBE = {
    ModelFormat.module: "a torch.save'd nn.Module",
    ModelFormat.state_dict: "a state dict",
    ModelFormat.torchscript: "a TorchScript module",
    ModelFormat.exported: "a torch.export program",
    ModelFormat.onnx: "an ONNX model",
}


@dataclass(frozen=True)
class Loaded:
    module: nn.Module
    format: ModelFormat
    path: Path
    input_shape: tuple[int, ...] | None  # what the model itself declares (ONNX), batch axis included
    found: str  # what the loader found, in words
    requires: dict = field(default_factory=dict)  # python modules the pickled classes live in


def sniff(path: Path) -> ModelFormat | None:
    """torch's zip archives tell their kind by their entries; anything else may be ONNX."""
    if zipfile.is_zipfile(path):
        try:
            names = zipfile.ZipFile(path).namelist()
        except (zipfile.BadZipFile, OSError):
            return None
        if any("/code/" in n for n in names):
            return ModelFormat.torchscript
        if any(
            n.endswith("archive_format")
            or "/models/" in n
            or "/serialized_" in n
            or n.endswith("model_weights_config.json")
            for n in names
        ):
            return ModelFormat.exported
        if any(n.endswith("data.pkl") for n in names):
            return ModelFormat.module  # or a state dict: told apart once loaded
        return None
    with open(path, "rb") as f:
        head = f.read(2)
    if head[:1] == b"\x80":  # a legacy (non-zip) torch.save pickle
        return ModelFormat.module
    return ModelFormat.onnx if path.suffix.lower() == ".onnx" or _is_onnx(path) else None


def _is_onnx(path: Path) -> bool:
    import onnx

    try:
        return len(onnx.load(str(path), load_external_data=False).graph.node) > 0
    except Exception:  # protobuf raises several kinds on garbage
        return False


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


def class_modules(module: nn.Module) -> list[str]:
    """The python modules a pickled `module` needs to import (torch's and ours excepted)."""
    mods = {type(m).__module__ for m in module.modules()}
    return sorted(m for m in mods if not m.startswith(("torch", "edgeopt", "builtins")))


def _torch_load(path: Path):
    try:
        return torch.load(path, weights_only=False, map_location="cpu")
    except (AttributeError, ModuleNotFoundError, ImportError) as exc:
        msg = _first_line(exc)
        if "__main__" in msg:
            raise InputError(
                f"{path} holds a model class pickled under __main__ ({msg})",
                hint="save its state dict instead, torch.save(model.state_dict(), PATH), put the class in a module "
                "and pass --factory module:build (a function returning the model); or save it with "
                "torch.jit.script, torch.export or as ONNX",
            ) from None
        raise InputError(
            f"{path} needs a python module to load: {msg}",
            hint="put the module that defines the model's class on PYTHONPATH, or bring the model as "
            "TorchScript, a torch.export .pt2 or ONNX",
        ) from None
    except Exception as exc:  # pickle, zip and torch errors come in many kinds
        raise InputError(
            f"cannot load {path} with torch.load: {_first_line(exc)}",
            hint="bring a torch.save'd module or state dict, TorchScript, a .pt2 program or ONNX",
        ) from None


def _factory(spec: str, path: Path):
    import importlib

    mod_name, _, fn_name = spec.partition(":")
    if not mod_name or not fn_name:
        raise InputError(
            f"--factory {spec!r} is not package.module:function (for {path})",
            hint="e.g. --factory mymodels:build, with mymodels.py on PYTHONPATH",
        )
    try:
        return getattr(importlib.import_module(mod_name), fn_name)
    except (ImportError, AttributeError) as exc:
        raise InputError(
            f"cannot import --factory {spec} (for {path}): {_first_line(exc)}",
            hint="put the module on PYTHONPATH (or run from its folder); the form is package.module:function",
        ) from None


def _from_state_dict(path: Path, state: dict, factory: str | None) -> Loaded:
    if factory is None:
        raise InputError(
            f"{path} is a state dict, not a model",
            hint="also pass --factory package.module:function that builds the model",
        )
    fn = _factory(factory, path)
    try:
        module = fn()
    except Exception as exc:  # the user's own code
        raise InputError(
            f"--factory {factory}() failed: {_first_line(exc)}",
            hint="it must take no arguments and return an nn.Module",
        ) from None
    if not isinstance(module, nn.Module):
        raise InputError(f"--factory {factory}() returned a {type(module).__name__}, not an nn.Module")
    try:
        module.load_state_dict(state)
    except RuntimeError as exc:
        raise InputError(
            f"state dict {path} does not fit {factory}(): {_first_line(exc)}",
            hint="pass the factory that built the model the weights were saved from",
        ) from None
    return Loaded(
        module.eval(),
        ModelFormat.state_dict,
        path,
        None,
        f"a state dict for {factory}()",
        {"modules": class_modules(module), "factory": factory},
    )


def _quiet():
    stack = contextlib.ExitStack()
    stack.enter_context(warnings.catch_warnings())
    warnings.simplefilter("ignore")
    stack.enter_context(contextlib.redirect_stdout(io.StringIO()))
    logging.getLogger("torch.onnx").setLevel(logging.ERROR)
    return stack


def _via_onnx(path: Path, fmt: ModelFormat, export, sample_shape: tuple[int, ...] | None) -> Loaded:
    """TorchScript and torch.export programs are graphs, not modules with layers: they go to ONNX
    with torch's own exporters and come back as layers."""
    from .onnx_torch import convert

    with tempfile.TemporaryDirectory(prefix="edgeopt-load-") as tmp:
        onnx_path = Path(tmp) / "model.onnx"
        try:
            with _quiet():
                export(onnx_path)
        except InputError:
            raise
        except Exception as exc:
            raise UnsupportedModelError(
                f"cannot export {path} ({DESCRIBE[fmt]}) to ONNX for pruning: {_first_line(exc)}",
                hint="bring the model as a torch.save'd module or a state dict with --factory",
            ) from None
        module = convert(onnx_path)
    return Loaded(module, fmt, path, None, f"{DESCRIBE[fmt]}, converted to torch layers through ONNX")


def load(path: Path, *, factory: str | None = None, sample_shape: tuple[int, ...] | None = None) -> Loaded:
    """Load a user's model file. `sample_shape` (batch axis included) is the data's: the graph
    formats that declare no input (TorchScript) are traced with it."""
    if not path.is_file():
        raise InputError(f"model not found: {path}", hint="pass a model file (.pt, .pt2, .onnx) or a built-in name")
    fmt = sniff(path)
    if fmt is None:
        raise InputError(
            f"{path} is not a model edgeopt can read",
            hint="bring a torch.save'd module or state dict, TorchScript, a torch.export .pt2 or ONNX",
        )
    if fmt is ModelFormat.onnx:
        return load_onnx(path)
    if fmt is ModelFormat.torchscript:
        try:
            script = torch.jit.load(str(path), map_location="cpu").eval()
        except Exception as exc:
            raise InputError(f"cannot load {path} as TorchScript: {_first_line(exc)}") from None
        if sample_shape is None:
            raise InputError(f"{path} is TorchScript, which declares no input shape", hint="pass --data with samples")
        return _via_onnx(
            path,
            fmt,
            lambda out: torch.onnx.export(
                script,
                (torch.zeros(sample_shape),),
                str(out),
                input_names=["input"],
                output_names=["output"],
                dynamo=False,
                opset_version=18,
            ),
            sample_shape,
        )
    if fmt is ModelFormat.exported:
        try:
            program = torch.export.load(str(path))
        except Exception as exc:
            raise InputError(f"cannot load {path} as a torch.export program: {_first_line(exc)}") from None
        shape = _program_input_shape(program)
        loaded = _via_onnx(path, fmt, lambda out: _export_program(program, out), shape)
        return Loaded(loaded.module, fmt, path, shape, loaded.found)
    obj = _torch_load(path)
    if isinstance(obj, nn.Module):
        return Loaded(
            obj.eval(),
            ModelFormat.module,
            path,
            None,
            f"a torch.save'd {type(obj).__name__}",
            {"modules": class_modules(obj)},
        )
    if isinstance(obj, dict) and obj and all(isinstance(v, torch.Tensor) for v in obj.values()):
        return _from_state_dict(path, obj, factory)
    if isinstance(obj, dict) and isinstance(obj.get("state_dict"), dict):
        return _from_state_dict(path, obj["state_dict"], factory)
    raise InputError(
        f"{path} holds a {type(obj).__name__}, not an nn.Module or a state dict",
        hint="torch.save(model) or torch.save(model.state_dict()) with --factory",
    )


def _program_input_shape(program) -> tuple[int, ...] | None:
    try:
        args = program.example_inputs[0]
        return tuple(int(d) for d in args[0].shape)
    except Exception:  # a program saved without example inputs
        return None


def _export_program(program, out: Path) -> None:
    torch.onnx.export(
        program,
        (),
        str(out),
        input_names=["input"],
        output_names=["output"],
        dynamo=True,
        opset_version=18,
        external_data=False,
    )


def onnx_input_shape(path: Path) -> tuple[int | None, ...] | None:
    """The declared shape of an ONNX model's one input (None for symbolic dimensions)."""
    import onnx

    model = onnx.load(str(path), load_external_data=False)
    inits = {i.name for i in model.graph.initializer}
    inputs = [i for i in model.graph.input if i.name not in inits]
    if len(inputs) != 1:
        return None
    return tuple(d.dim_value if d.HasField("dim_value") else None for d in inputs[0].type.tensor_type.shape.dim)


def load_onnx(path: Path) -> Loaded:
    import onnx

    from .onnx_torch import convert

    try:
        onnx.checker.check_model(onnx.load(str(path), load_external_data=False))
    except Exception as exc:
        raise InputError(
            f"{path} is not a valid ONNX model: {_first_line(exc)}",
            hint="re-export it (torch.onnx.export) or check the file is complete",
        ) from None
    module = convert(path)
    return Loaded(module, ModelFormat.onnx, path, onnx_input_shape(path), "an ONNX model, converted to torch layers")
