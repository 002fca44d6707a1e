"""The bench report's protocol options: a frozen dataclass the CLI reads its defaults from
(light: no numpy, no SSH, so `edgeopt --help` stays fast)."""

from __future__ import annotations

import math
from dataclasses import dataclass

from edgeopt.errors import UsageError


@dataclass(frozen=True)
class BenchOptions:
    runs: int = 200  # timed inferences per engine, spread over the rounds
    warmup: int = 20
    rounds: int = 10
    threads: int | None = None
    baseline: str | None = "ort"
    profile_runs: int = 20
    settle: int = 2  # untimed calls at the start of every round (the engine's thread pool wakes up)
    keep_samples: bool = True
    local_port: int = 0
    trust_new_host: bool = False
    timeout_s: float | None = None  # each command on a board (None: boards.toml, env, per-verb default)

    def validate(self) -> None:
        if self.runs < 1 or self.warmup < 0:
            raise UsageError("--runs must be >= 1 and --warmup >= 0")
        if self.rounds < 1:
            raise UsageError(f"--rounds must be >= 1, got {self.rounds}")
        if self.profile_runs < 0:
            raise UsageError(f"--profile-runs must be >= 0, got {self.profile_runs}")
        if self.baseline not in (None, "ort"):
            raise UsageError(f"--baseline must be ort or none, got {self.baseline!r}")

    @property
    def rounds_used(self) -> int:
        return min(self.rounds, self.runs)

    @property
    def calls_per_round(self) -> int:
        return math.ceil(self.runs / self.rounds_used)


# one bundle on one board (`edgeopt bench BUNDLE`, toolkit/boards/ops.py): each repeat's minimum length
MIN_REPEAT_MS = 0.0
