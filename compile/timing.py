"""Timing compiled libraries on the host with TVM's own timer (for benchmarks and the
latency-aware pruning allocation; boards are timed by the board agent)."""

from __future__ import annotations

from pathlib import Path

import numpy as np


class HostTimer:
    """A loaded library, ready to be timed repeatedly (so interleaved rounds are cheap)."""

    def __init__(self, lib_path: Path, input_shape: tuple[int, ...]) -> None:
        import tvm
        from tvm import runtime
        from tvm.runtime import vm as tvm_vm

        self.dev = tvm.cpu()
        self._lib = runtime.load_module(str(lib_path))
        self.vm = tvm_vm.VirtualMachine(self._lib, self.dev)
        x = np.random.default_rng(0).random(input_shape, dtype=np.float32)
        self.x = runtime.tensor(x, self.dev)
        self.fn = self.vm["main"]  # looked up once, as the board agent does (a lookup costs ~1 us)
        self.fn(self.x)  # first call outside the timing

    def run(self):
        return self.fn(self.x)

    def median_ms(self, *, number: int = 50, repeat: int = 5, min_repeat_ms: int = 50) -> float:
        f = self.vm.time_evaluator("main", self.dev, number=number, repeat=repeat, min_repeat_ms=min_repeat_ms)
        return float(f(self.x).median) * 1e3


def whole_model_us(executables: list, shapes: dict) -> list[float]:
    """Median microseconds per inference of each executable on this machine, measured in
    interleaved rounds on the same random input."""
    import statistics

    import tvm
    from tvm import relax

    dev = tvm.cpu()
    rng = np.random.default_rng(0)
    args = [tvm.runtime.tensor(rng.random(shape, dtype=np.float32), dev) for shape in shapes.values()]
    timers = []
    for ex in executables:
        vm = relax.VirtualMachine(ex, dev)
        vm["main"](*args)
        timers.append(vm.time_evaluator("main", dev, number=20, repeat=1, min_repeat_ms=20))
    samples: list[list[float]] = [[] for _ in executables]
    for _ in range(5):
        for i, timer in enumerate(timers):
            samples[i].append(timer(*args).mean * 1e6)
    return [statistics.median(v) for v in samples]
