"""What `edgeopt sweep` searches: a SPEC.toml (and/or flags) validated before anything runs.

A *setting* is one point of the space: pruning method and sparsity, quantization bits, scheme and
calibrator, compile target, tuning trials. Everything else (model, data, epochs, boards, the
accuracy budget, the measurement protocol) is fixed for the whole sweep."""

from __future__ import annotations

import hashlib
import itertools
import json
import re
import tomllib
from enum import Enum
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from edgeopt.errors import InputError, UsageError

from ..config import TRAIN_EPOCHS, TRAIN_LR
from ..prune import Method, PruneConfig, Schedule
from ..quantize import Calibrator, QuantConfig
from ..quantize.config import Scheme

SETTING_KEYS = ("method", "sparsity", "bits", "scheme", "calibrator", "target", "tune_trials")


class Search(str, Enum):
    grid = "grid"  # every combination of the space, once
    optuna = "optuna"  # Optuna's multi-objective TPE sampler through Ray Tune's OptunaSearch, --samples trials


class Space(BaseModel):
    """One list per dimension; a grid is their product."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    # each stage's own default (PruneConfig, QuantConfig): one source
    method: list[Method] = [PruneConfig.method]
    sparsity: list[float] = [PruneConfig.target]
    bits: list[int] = [QuantConfig.bits]
    scheme: list[Scheme] = [QuantConfig.scheme]
    calibrator: list[Calibrator] = [QuantConfig.calibrator]
    target: list[str] = ["host"]
    tune_trials: list[int] = [0]

    @field_validator("*")
    @classmethod
    def _non_empty(cls, v: list) -> list:
        if not v:
            raise ValueError("needs at least one value")
        return list(dict.fromkeys(v))  # a value named twice is one value


class SweepSpec(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid", protected_namespaces=())

    model: str = "mlp"
    data: str = "digits"
    # the run's and the stages' own defaults (RunConfig, PruneConfig, QuantConfig): one source
    epochs: int = Field(TRAIN_EPOCHS, ge=1)
    lr: float = Field(TRAIN_LR, gt=0.0)
    seed: int = 0
    schedule: Schedule = PruneConfig.schedule
    prune_steps: int = Field(PruneConfig.steps, ge=1)
    prune_epochs: int = Field(PruneConfig.epochs_per_step, ge=0)  # fine-tuning epochs per pruning step
    final_epochs: int = Field(PruneConfig.final_epochs, ge=0)
    calibration_samples: int = Field(QuantConfig.calibration_samples, ge=1)
    budget: float = Field(QuantConfig.budget, ge=0.0, lt=1.0)  # allowed validation-accuracy drop below the dense model
    boards: list[str] = ["local"]
    search: Search = Search.grid
    samples: int = Field(16, ge=1)  # optuna: trials in all
    concurrency: int | None = Field(None, ge=1)  # trials at once [default: as many as the CPUs allow]
    cpus_per_trial: float = Field(1.0, gt=0.0)
    runs: int = Field(60, ge=1)  # timed inferences per engine on a board
    warmup: int = Field(5, ge=0)
    rounds: int = Field(3, ge=1)
    max_failures: int = Field(2, ge=0)  # retries of a trial whose worker died
    space: Space = Space()

    @field_validator("boards")
    @classmethod
    def _boards(cls, v: list[str]) -> list[str]:
        if not v:
            raise ValueError("needs at least one board")
        return list(dict.fromkeys(v))

    def validate_settings(self) -> None:
        """Every value of the space is checked by the stage that takes it, before anything runs."""
        from edgeopt.compile import get_target

        for s in self.space.sparsity:
            PruneConfig(target=s).validate()  # the 70% floor holds: no allow_below_70 in a sweep
        for bits, scheme in itertools.product(self.space.bits, self.space.scheme):
            QuantConfig(bits=bits, scheme=scheme).validate()
        for t in self.space.target:
            get_target(t)
        if any(t < 0 for t in self.space.tune_trials):
            raise UsageError("tune_trials must be >= 0")

    def grid(self) -> list[dict]:
        """Every setting of the space, in a stable order."""
        lists = [getattr(self.space, k) for k in SETTING_KEYS]
        return [normalize(dict(zip(SETTING_KEYS, combo))) for combo in itertools.product(*lists)]

    def fingerprint(self) -> str:
        """Names the sweep: the same spec resumes the same experiment."""
        return hashlib.sha256(json.dumps(self.model_dump(mode="json"), sort_keys=True).encode()).hexdigest()[:12]


def normalize(setting: dict) -> dict:
    """Enums to their values: a setting is plain JSON."""
    return {k: (v.value if isinstance(v, Enum) else v) for k, v in setting.items()}


def setting_id(setting: dict) -> str:
    return hashlib.sha256(json.dumps(normalize(setting), sort_keys=True).encode()).hexdigest()[:10]


def setting_label(s: dict) -> str:
    tune = f", tuned {s['tune_trials']}" if s.get("tune_trials") else ""
    return f"{s['method']} {s['sparsity']:.0%}, {s['scheme']} {s['bits']}-bit {s['calibrator']}, {s['target']}{tune}"


def board_resource(board: str) -> str:
    """The Ray custom resource a board is: one unit, so one measurement holds it at a time."""
    return "edgeopt_board_" + re.sub(r"[^A-Za-z0-9]", "_", board)


def _load_toml(path: Path) -> dict[str, Any]:
    if not path.is_file():
        raise InputError(f"sweep spec not found: {path}")
    try:
        raw = tomllib.loads(path.read_text())
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise InputError(f"{path} is not valid TOML: {exc}") from None
    table = raw.get("sweep", {k: v for k, v in raw.items() if k != "space"})
    values = {k.replace("-", "_"): v for k, v in table.items()}
    if "space" in raw:
        values["space"] = {k.replace("-", "_"): v for k, v in raw["space"].items()}
    return values


def resolve(flags: dict[str, Any], space_flags: dict[str, list | None], spec_file: Path | None = None) -> SweepSpec:
    """SPEC.toml < flags (None = not given). A space flag replaces that dimension's list."""
    values = _load_toml(spec_file) if spec_file else {}
    values.update({k: v for k, v in flags.items() if v is not None})
    space = dict(values.get("space") or {})
    space.update({k: v for k, v in space_flags.items() if v})
    values["space"] = space
    try:
        spec = SweepSpec(**values)
    except ValidationError as exc:
        err = exc.errors()[0]
        where = ".".join(str(p) for p in err["loc"]) or "spec"
        src = f" in {spec_file}" if spec_file else ""
        raise UsageError(f"bad sweep value for {where.replace('_', '-')}{src}: {err['msg']}") from None
    spec.validate_settings()
    return spec
