"""`edgeopt sweep` on real Ray (local, and a two-node cluster on loopback), real trials (the
built-in MLP on digits, tiny epochs), the real local board. Every Ray process stays on 127.0.0.1.

The tests share one stage cache (--cache), so training and each pruning/quantization/compile is
built once for the module; what a test asserts about stage reuse it reads from the cache's log."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

pytest.importorskip("ray.tune", reason="the sweep extra is not installed: pip install -e '.[sweep]'")
pytest.importorskip("optuna", reason="the sweep extra is not installed: pip install -e '.[sweep]'")
import psutil  # noqa: E402

pytestmark = pytest.mark.slow

SPEC = """
[sweep]
epochs = 2
prune-steps = 1
prune-epochs = 0
final-epochs = 1
calibration-samples = 64
runs = 20
warmup = 2
rounds = 2
budget = 0.2

[space]
sparsity = {sparsity}
bits = {bits}
"""
LOOPBACK = {"127.0.0.1", "::ffff:127.0.0.1", "::1"}
TIMEOUT = 900  # a guard against a hung sweep, not a performance limit


def _env(**extra) -> dict:
    env = dict(os.environ)
    env.pop("RAY_ADDRESS", None)
    env.update({"RAY_USAGE_STATS_ENABLED": "0", "PYTHONUNBUFFERED": "1"}, **extra)
    return env


@pytest.fixture(scope="module")
def stages(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("sweep-stages")


def _spec(tmp_path: Path, sparsity: list[float], bits: tuple[int, ...] = (8,)) -> Path:
    p = tmp_path / "spec.toml"
    p.write_text(SPEC.format(sparsity=json.dumps(sparsity), bits=json.dumps(list(bits))))
    return p


def _sweep(spec: Path, out: Path, stages: Path, *extra: str, env: dict | None = None) -> subprocess.Popen:
    cmd = [
        sys.executable,
        "-m",
        "edgeopt",
        "sweep",
        str(spec),
        "--out",
        str(out),
        "--cache",
        str(stages),
        "--json",
        *extra,
    ]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env or _env())


def _attempts(out: Path) -> list[dict]:
    p = out / "attempts.jsonl"
    return [json.loads(line) for line in p.read_text().splitlines()] if p.is_file() else []


class ListenWatch:
    """Samples, while a process tree runs, every listening TCP socket of the tree."""

    def __init__(self, pids: list[int]) -> None:
        self.roots, self.seen, self._stop = pids, {}, threading.Event()
        self._t = threading.Thread(target=self._run, daemon=True)

    def _tree(self) -> set[int]:
        pids = set()
        for pid in self.roots:
            try:
                p = psutil.Process(pid)
                pids |= {pid, *(c.pid for c in p.children(recursive=True))}
            except psutil.NoSuchProcess:
                pass
        return pids

    def _run(self) -> None:
        while not self._stop.wait(0.5):
            tree = self._tree()
            for c in psutil.net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN and c.pid in tree:
                    try:
                        name = psutil.Process(c.pid).name()
                    except psutil.NoSuchProcess:
                        continue
                    self.seen[(c.laddr.ip, c.laddr.port)] = name

    def __enter__(self) -> "ListenWatch":
        self._t.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._t.join()

    def assert_loopback(self) -> None:
        assert any("raylet" in n or "gcs_server" in n for n in self.seen.values()), f"no Ray server seen: {self.seen}"
        outside = {a: n for a, n in self.seen.items() if a[0] not in LOOPBACK}
        assert not outside, f"Ray processes listening beyond loopback: {outside}"


def _finish(proc: subprocess.Popen) -> tuple[int, dict | None, str]:
    stdout, stderr = proc.communicate(timeout=TIMEOUT)
    doc = json.loads(stdout) if proc.returncode == 0 and stdout.strip() else None
    return proc.returncode, doc, stderr


def test_small_grid_on_a_local_ray(tmp_path, stages):
    from edgeopt.compile import Bundle

    out = tmp_path / "out"
    proc = _sweep(_spec(tmp_path, [0.7, 0.8]), out, stages, "--num-cpus", "2")
    with ListenWatch([proc.pid]) as watch:
        code, doc, stderr = _finish(proc)
    assert code == 0, stderr[-3000:]
    watch.assert_loopback()
    assert all(n["ip"] == "127.0.0.1" for n in doc["cluster"]["nodes"])
    assert doc["trials"] == {"finished": 2, "ok": 2, "failed": 0, "within_budget": doc["trials"]["within_budget"]}
    assert {r["setting"]["sparsity"] for r in doc["results"]} == {0.7, 0.8}
    for r in doc["results"]:
        m = r["boards"]["local"]
        assert 0 < m["p50_ms"] <= m["p90_ms"] and m["speedup"] > 0 and r["bytes"] > 0
        assert r["val_accuracy"] > 0.5 and r["sparsity"] >= 0.7 - 1e-6
    # shared stages: one training, one original-model bundle; one prune per sparsity
    built = [e for e in json.loads((out / "sweep.json").read_text())["stages"]["by_stage"].items()]
    by_stage = dict(built)
    assert by_stage.get("train", 0) <= 1 and by_stage.get("original", 0) <= 1
    events = [json.loads(line) for line in (stages / "events.jsonl").read_text().splitlines()]
    assert sum(1 for e in events if e["stage"] == "train" and e["event"] == "built") == 1
    assert sum(1 for e in events if e["stage"] == "train" and e["event"] == "reused") >= 1
    # the report, the picture, the front's bundles, the best one ready to deploy
    assert (out / "report.md").read_text().count("| magnitude") == len(doc["front"]) >= 1
    assert (out / "pareto.png").stat().st_size > 1000
    for sid in doc["front"]:
        Bundle.load(out / "front" / sid)
    if doc["best"]:
        assert Bundle.load(out / "best").id == Bundle.load(out / "front" / doc["best"]).id
    assert "sweep: 2 done, 0 running, 0 left" in stderr


def test_interrupted_sweep_resumes_without_rerunning_finished_trials(tmp_path, stages):
    spec, out = _spec(tmp_path, [0.7, 0.9]), tmp_path / "out"
    proc = _sweep(spec, out, stages, "--concurrency", "1")
    deadline = time.monotonic() + TIMEOUT
    while not any(a["event"] == "end" for a in _attempts(out)):
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before it could be interrupted"
        time.sleep(0.2)
    proc.send_signal(signal.SIGINT)  # Ctrl-C
    code, _, stderr = _finish(proc)
    assert code == 130, stderr[-3000:]
    assert "re-run" in stderr or "run the same command again" in stderr
    first = _attempts(out)
    finished = {a["setting_id"] for a in first if a["event"] == "end"}
    assert len(finished) == 1, "interrupted after the first trial, before the last"

    code, doc, stderr = _finish(_sweep(spec, out, stages, "--concurrency", "1"))
    assert code == 0, stderr[-3000:]
    assert doc["trials"]["finished"] == 2 and doc["trials"]["ok"] == 2
    starts: dict[str, int] = {}
    for a in _attempts(out):
        if a["event"] == "start":
            starts[a["setting_id"]] = starts.get(a["setting_id"], 0) + 1
    for sid in finished:
        assert starts[sid] == 1, f"finished trial {sid} ran again on resume"
    assert {r["setting_id"] for r in doc["results"]} == set(starts)


def test_a_killed_worker_is_retried_and_a_failing_setting_is_recorded(tmp_path, stages):
    """Two settings: 8-bit, and 4-bit (onnxruntime's contrib Q/DQ, which TVM cannot import: that
    setting fails for real at compile). A trial's worker is killed mid-trial; the sweep completes."""
    out = tmp_path / "out"
    proc = _sweep(_spec(tmp_path, [0.7], bits=(8, 4)), out, stages, "--concurrency", "1")
    deadline, victim = time.monotonic() + TIMEOUT, None
    while victim is None:
        assert proc.poll() is None and time.monotonic() < deadline, "the sweep ended before a worker could be killed"
        ended = {(a["setting_id"], a["pid"]) for a in _attempts(out) if a["event"] == "end"}
        running = [a for a in _attempts(out) if a["event"] == "start" and (a["setting_id"], a["pid"]) not in ended]
        if running:
            victim = running[0]
        else:
            time.sleep(0.1)
    os.kill(victim["pid"], signal.SIGKILL)  # the trial's worker process dies mid-trial
    code, doc, stderr = _finish(proc)
    assert code == 0, stderr[-3000:]
    starts = [a for a in _attempts(out) if a["event"] == "start" and a["setting_id"] == victim["setting_id"]]
    assert len(starts) >= 2 and starts[-1]["pid"] != victim["pid"], "the killed trial was not retried in a new worker"
    by_bits = {r["setting"]["bits"]: r for r in doc["results"]}
    assert doc["trials"]["finished"] == 2 and set(by_bits) == {8, 4}
    assert by_bits[8]["ok"] and by_bits[8]["boards"]["local"]["p50_ms"] > 0
    failed = by_bits[4]
    assert not failed["ok"] and "TVM cannot import" in failed["error"] and "\n" not in failed["error"]
    assert failed["exit_code"] == 3 and doc["front"] == [by_bits[8]["setting_id"]]
    assert failed["setting_id"] in (out / "report.md").read_text().split("## Failed settings")[1]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_for(path: Path, text: str, proc: subprocess.Popen) -> None:
    deadline = time.monotonic() + 300
    while text not in (path.read_text() if path.is_file() else ""):
        assert proc.poll() is None, f"ray node exited: {path.read_text()[-2000:]}"
        assert time.monotonic() < deadline, f"ray node did not start: {path.read_text()[-2000:]}"
        time.sleep(0.3)


def test_two_node_cluster_on_loopback_runs_trials_on_both_nodes(tmp_path, stages):
    port = _free_port()
    temp = Path(tempfile.mkdtemp(prefix="rt-", dir="/tmp"))  # Ray's socket paths must stay short
    env = _env(RAY_AUTH_MODE="token")
    resources = json.dumps({"edgeopt_board_local": 1})
    node = [
        sys.executable,
        "-m",
        "edgeopt.toolkit.sweep.raynode",
        "start",
        "--node-ip-address=127.0.0.1",
        "--num-cpus=1",
        f"--resources={resources}",
        "--block",
        "--disable-usage-stats",
    ]
    procs = []
    try:
        head_log, worker_log = tmp_path / "head.log", tmp_path / "worker.log"
        procs.append(
            subprocess.Popen(
                node + ["--head", f"--port={port}", "--include-dashboard=false", f"--temp-dir={temp}"],
                stdout=head_log.open("w"),
                stderr=subprocess.STDOUT,
                env=env,
            )
        )
        _wait_for(head_log, "block forever", procs[0])
        procs.append(
            subprocess.Popen(
                node + [f"--address=127.0.0.1:{port}"], stdout=worker_log.open("w"), stderr=subprocess.STDOUT, env=env
            )
        )
        _wait_for(worker_log, "block forever", procs[1])

        out = tmp_path / "out"
        with ListenWatch([p.pid for p in procs]) as watch:
            code, doc, stderr = _finish(
                _sweep(_spec(tmp_path, [0.7, 0.8]), out, stages, "--address", f"127.0.0.1:{port}", env=env)
            )
        assert code == 0, stderr[-3000:]
        watch.assert_loopback()
        nodes = doc["cluster"]["nodes"]
        assert len(nodes) == 2 and all(n["ip"] == "127.0.0.1" for n in nodes)
        assert doc["trials"]["ok"] == 2
        used = {r["node_id"] for r in doc["results"]}
        assert used == {n["node_id"] for n in nodes}, f"trials ran on {used}, not on both nodes"
        for r in doc["results"]:
            assert r["boards"]["local"]["node_id"] in used
    finally:
        for p in reversed(procs):
            p.terminate()  # `ray start --block` stops its node's processes on SIGTERM
        for p in reversed(procs):
            try:
                p.wait(timeout=60)
            except subprocess.TimeoutExpired:
                p.kill()


def test_a_board_group_measures_every_setting_on_each_of_its_boards(tmp_path, stages):
    """A [groups] entry of boards.toml as --board: two real OpenSSH boards on loopback, each a Ray
    resource of its own; every setting is measured on both, each with the original beside it."""
    from . import sshd

    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(f"OpenSSH board: {reason}")
    cfg = tmp_path / "cfg"
    cfg.mkdir()
    with sshd.OpenSSHBoard() as b1, sshd.OpenSSHBoard() as b2:
        entries = []
        for name, b in (("b1", b1), ("b2", b2)):
            entries += [
                f"[boards.{name}]",
                f'host = "{b.host}"',
                f"port = {b.port}",
                f'user = "{b.user}"',
                f'identity_file = "{b.client_key}"',
                f'remote_root = "{b.remote_root}"',
                f'python = "{sys.executable}"',
                f'known_hosts = "{b.known_hosts}"',
                "",
            ]
        (cfg / "boards.toml").write_text("\n".join(entries + ["[groups]", 'pair = ["b1", "b2"]', ""]))
        out = tmp_path / "out"
        proc = _sweep(
            _spec(tmp_path, [0.7]),
            out,
            stages,
            "--num-cpus",
            "2",
            "--board",
            "pair",
            env=_env(EDGEOPT_CONFIG_DIR=str(cfg)),
        )
        code, doc, stderr = _finish(proc)
        assert code == 0, stderr[-3000:]
        for b in (b1, b2):  # each board's own store got the bundles
            assert any((Path(b.remote_root) / "bundles").iterdir())
    assert doc["trials"]["ok"] == 1
    [r] = doc["results"]
    assert sorted(r["boards"]) == ["b1", "b2"]
    for m in r["boards"].values():
        assert m["ok"] and 0 < m["p50_ms"] <= m["p90_ms"] and m["speedup"] > 0
