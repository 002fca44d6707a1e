"""The stage cache: built once, reused, nothing half-built left behind, concurrent builders wait."""

from __future__ import annotations

import multiprocessing
import time

import pytest
from edgeopt.toolkit.sweep.cache import StageCache, stage_key


def test_built_once_then_reused(tmp_path):
    cache, calls = StageCache(tmp_path), []

    def build(d):
        calls.append(d)
        (d / "x").write_text("1")

    k = stage_key("prune", parent="p", config={"target": 0.7})
    assert k != stage_key("prune", parent="p", config={"target": 0.8})
    a = cache.get("prune", k, build)
    b = cache.get("prune", k, build)
    assert a == b and len(calls) == 1 and (a / "x").read_text() == "1"
    assert [e["event"] for e in cache.events()] == ["built", "reused"]


def test_a_failed_build_leaves_nothing(tmp_path):
    cache = StageCache(tmp_path)

    def boom(d):
        (d / "half").write_text("")
        raise RuntimeError("no")

    with pytest.raises(RuntimeError):
        cache.get("compile", "k1", boom)
    assert not (tmp_path / "compile" / "k1").exists()
    assert not list((tmp_path / "compile").glob(".tmp-*"))


def _slow_build(root: str) -> None:
    def build(d):
        time.sleep(0.5)
        (d / "pid").write_text("x")

    StageCache(root).get("train", "same", build)


def test_concurrent_processes_build_one_stage_once(tmp_path):
    ctx = multiprocessing.get_context("fork")  # the children only lock and write files
    procs = [ctx.Process(target=_slow_build, args=(str(tmp_path),)) for _ in range(3)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(60)
    events = StageCache(tmp_path).events()
    assert sorted(e["event"] for e in events) == ["built", "reused", "reused"]
