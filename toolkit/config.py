"""`edgeopt run` options: defaults < --config FILE.toml < flags. Validated before anything runs."""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError

from edgeopt.errors import InputError, UsageError

from .prune import Method, PruneConfig, Schedule
from .quantize import Calibrator, QuantConfig

# the training defaults (also inputs.py's for a built-in model trained by `prune`/`quantize`)
TRAIN_EPOCHS = 40
TRAIN_LR = 3e-3


class RunConfig(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str = (
        "mlp"  # a built-in name, a stage folder, or a model file (module, state dict, TorchScript, .pt2, .onnx)
    )
    factory: str | None = None  # package.module:function building the model a state dict is for
    data: str = "digits"
    val_data: Path | None = None
    test_data: Path | None = None
    target: str = "host"
    board: str = "local"
    out: Path | None = None
    local_port: int = Field(0, ge=0, le=65535)
    trust_new_host: bool = False
    seed: int = 0
    epochs: int = Field(TRAIN_EPOCHS, ge=1)
    lr: float = Field(TRAIN_LR, gt=0.0)
    # the stages' own defaults: one source (PruneConfig, QuantConfig)
    sparsity: float = Field(PruneConfig.target, gt=0.0, lt=1.0)
    allow_below_70: bool = False
    method: Method = PruneConfig.method
    schedule: Schedule = PruneConfig.schedule
    distill: bool = False
    # fine-tuning after each pruning step but the last, after the last, and its learning rate
    prune_epochs: int = Field(PruneConfig.epochs_per_step, ge=0)
    final_epochs: int = Field(PruneConfig.final_epochs, ge=0)
    prune_lr: float = Field(PruneConfig.lr, gt=0.0)
    fast: bool = False  # start from the FAST preset (see PRESETS); the file and the flags still win
    calibrator: Calibrator = QuantConfig.calibrator
    calibration_samples: int = Field(QuantConfig.calibration_samples, ge=1)
    budget: float = Field(QuantConfig.budget, ge=0.0, lt=1.0)
    warmup: int = Field(10, ge=0)
    repeat: int = Field(5, ge=1)
    min_repeat_ms: float = Field(100.0, ge=0.0)
    threads: int | None = Field(None, ge=1)
    variants: bool = False  # also leave dense/pruned fp32 and pruned int8 bundles (untuned, tuned) in --out
    tune: bool = False  # tune the run's bundle with MetaSchedule, candidates timed on --board
    tune_trials: int = Field(16, ge=0)  # MetaSchedule trials per tuned bundle (--tune; --variants: 0 = no tuned ones)


# `--fast`: what the host's int8 kernels turn into speed. Removed filters shrink every kernel
# (unstructured zeros buy nothing on dense kernels); distillation from the dense model and a
# longer, faster fine-tune win back what removing whole filters costs (measured:
# docs/benchmarks.md, default_speed). The 70% floor is the default's, kept.
PRESETS: dict[str, dict[str, Any]] = {
    "fast": {"method": "structured", "distill": True, "prune_epochs": 4, "final_epochs": 20, "prune_lr": 1e-3},
}


def _load_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"config file not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    # accept both `local-port` and `local_port`; a [run] table or top-level keys
    table = raw.get("run", raw)
    return {k.replace("-", "_"): v for k, v in table.items()}


def resolve(flags: dict[str, Any], config_file: Path | None = None) -> RunConfig:
    """Merge a TOML file with the flags the user actually gave (None = not given): defaults <
    the preset (`fast`, from the flags or the file) < the file < the flags."""
    given = {k: v for k, v in flags.items() if v is not None}
    from_file = _load_toml(config_file) if config_file else {}
    preset = PRESETS["fast"] if given.get("fast", from_file.get("fast")) is True else {}
    values = {**preset, **from_file, **given}
    try:
        return RunConfig(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "config"
        src = f" in {config_file}" if config_file and where in (values.keys() - flags.keys()) else ""
        raise UsageError(f"bad value for {where.replace('_', '-')}{src}: {err['msg']}") from None


@dataclass(frozen=True)
class CompileConfig:
    """`edgeopt compile`'s options: the defaults its flags show."""

    target: str = RunConfig.model_fields["target"].default
    tune_trials: int = (
        64  # with --tune: MetaSchedule trials in all, three quarters to the heavy tasks (compile/tune.py)
    )
    tune_threads: int = 1  # small models' kernels are too short to gain from a parallel launch
    scale: float = 1.0  # input preprocessing recorded in the manifest: x * scale, then (x - mean) / std
