"""`edgeopt bench` with several variants and boards: real bundles of the built-in MLP (dense fp32,
pruned fp32, pruned int8), the real local board and Debian's OpenSSH server as a second board,
the real agent. Small run counts; no timing assertions (timings belong in benchmarks/)."""

from __future__ import annotations

import json
import socket
import sys

import numpy as np
import pytest
from edgeopt.toolkit.cli import main

from . import sshd

VARIANTS = ["dense-fp32", "pruned-fp32", "pruned-int8"]
FAST = ["--runs", "16", "--rounds", "4", "--warmup", "2", "--profile-runs", "3"]


@pytest.fixture(scope="module")
def variants_dir(trained, pruned, quantized, digits, tmp_path_factory):
    """What `edgeopt run --variants --tune-trials 0 --out DIR` leaves (built here from the
    session's trained/pruned/quantized models, so no second training run)."""
    from edgeopt.compile import get_target
    from edgeopt.toolkit import variants

    d = tmp_path_factory.mktemp("variants")
    variants.build(
        d,
        target=get_target("host"),
        dense=trained,
        pruned=pruned,
        quant=quantized,
        parity_inputs=digits.x_test[:8],
        tune_trials=0,
    )
    np.savez(d / "eval.npz", x=digits.x_test[:120], y=digits.y_test[:120])
    return d


@pytest.fixture(scope="module")
def user(tmp_path_factory):
    """A clean config dir (boards.toml) and data dir (history)."""
    base = tmp_path_factory.mktemp("user")
    (base / "cfg").mkdir()
    return base


@pytest.fixture
def env(user, monkeypatch):
    monkeypatch.setenv("EDGEOPT_CONFIG_DIR", str(user / "cfg"))
    monkeypatch.setenv("EDGEOPT_DATA_DIR", str(user / "data"))
    monkeypatch.chdir(user)
    return user


@pytest.fixture(scope="module")
def local_run(variants_dir, user, tmp_path_factory):
    """One `edgeopt bench DIR --board local` run; its report directory and JSON."""
    out = tmp_path_factory.mktemp("report")
    mp = pytest.MonkeyPatch()
    mp.setenv("EDGEOPT_CONFIG_DIR", str(user / "cfg"))
    mp.setenv("EDGEOPT_DATA_DIR", str(user / "data"))
    try:
        code, doc = _bench_json(str(variants_dir), "--board", "local", *FAST, "--out", str(out))
    finally:
        mp.undo()
    assert code == 0, json.dumps(doc)[-3000:]
    return out, doc


def _bench_json(*argv) -> tuple[int, dict]:
    import contextlib
    import io

    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["bench", *argv, "--json", "--quiet"])
    return code, json.loads(buf.getvalue())


def _openssh_toml(b, name: str) -> str:
    return "\n".join(
        [
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
    )


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # nothing listens once the socket is closed


# -- one board, every variant ------------------------------------------------------------------------


def test_variants_side_by_side_on_the_local_board(local_run, variants_dir):
    out, doc = local_run
    assert [v["name"] for v in doc["variants"]] == VARIANTS
    by = {v["name"]: v for v in doc["variants"]}
    assert by["pruned-int8"]["precision"] == "int8" and by["dense-fp32"]["precision"] == "fp32"
    assert by["dense-fp32"]["sparsity"]["global"] == 0.0 and by["pruned-fp32"]["sparsity"]["global"] >= 0.69
    assert by["pruned-int8"]["bytes"] < by["pruned-fp32"]["bytes"]  # int8 weights
    [board] = doc["boards"]
    assert board["ok"] and board["name"] == "local" and board["shares_cpu_with"] == []
    for name in VARIANTS:
        r = board["results"][name]
        lat = r["tvm"]["latency_ms"]
        assert lat["runs"] == 16 and 0 < lat["p50"] <= lat["p90"] <= lat["p99"]
        assert len(r["tvm"]["round_medians_ms"]) == 4
        assert 0.8 <= r["tvm"]["accuracy"] <= 1.0 and r["tvm"]["accuracy_samples"] == 120
        assert r["parity"]["top1_agreement"] >= 0.95  # against this variant's own ONNX on the host
        assert r["ort"]["available"] and r["ort"]["latency_ms"]["runs"] == 16 and 0.8 <= r["ort"]["accuracy"] <= 1.0
        prof = r["profile"]
        assert prof["available"] and prof["runs"] == 3
        kernels = [o for o in prof["ops"] if o["kind"] == "kernel"]
        # a compiled kernel dominates: a fused TVM operator or one of the hand-scheduled int8 layers
        assert kernels and kernels[0]["name"].startswith(("fused_", "vnni_", "avx2_", "generic_"))
        assert abs(sum(o["percent"] for o in prof["ops"]) - 100.0) < 1e-6
    s = doc["summary"]["boards"]["local"]["variants"]
    assert s["dense-fp32"]["speedup_vs_reference"] == 1.0 and s["pruned-int8"]["speedup_vs_ort"] > 0
    assert (board["protocol"]["rounds"], board["protocol"]["calls_per_round"]) == (4, 4)


def test_report_files_render(local_run):
    out, doc = local_run
    md = (out / "report.md").read_text()
    for name in VARIANTS:
        assert f"| {name} |" in md
    for png in ("latency.png", "accuracy_latency.png", "sparsity.png"):
        assert f"]({png})" in md
        import matplotlib.image

        img = matplotlib.image.imread(out / png)  # a real PNG that decodes
        assert img.ndim == 3 and img.shape[0] > 200 and img.shape[1] > 300
    assert "Where the time goes" in md and "fused_" in md
    saved = json.loads((out / "report.json").read_text())
    assert saved["id"] == doc["id"] and saved["schema"] == "edgeopt.bench-report/1"
    assert len(saved["boards"][0]["results"]["dense-fp32"]["tvm"]["samples_ms"]) == 16  # samples kept on disk


def test_each_plot_has_one_series_per_variant(local_run):
    """Inspect the matplotlib figures themselves (and the plots.json sidecar), not pixels."""
    from edgeopt.toolkit.bench import plots

    out, _ = local_run
    doc = json.loads((out / "report.json").read_text())
    figs = plots.figures(doc)
    # latency: one filled box per variant (TVM) and one hatched box per variant (onnxruntime)
    ax = figs["latency"][0].axes[0]
    boxes = [p.get_label() for p in ax.patches]
    assert sorted(boxes) == sorted(VARIANTS + [f"{n} (onnxruntime)" for n in VARIANTS])
    assert [t.get_text() for t in ax.get_yticklabels()] == VARIANTS
    # accuracy vs latency and sparsity: one legend entry (one artist) per variant
    for name in ("accuracy_latency", "sparsity"):
        ax = figs[name][0].axes[0]
        assert ax.get_legend_handles_labels()[1] == VARIANTS, name
    sparsity_ax = figs["sparsity"][0].axes[0]
    assert len(sparsity_ax.containers) == len(VARIANTS)
    sidecar = json.loads((out / "plots.json").read_text())
    for name in ("latency", "accuracy_latency", "sparsity"):
        tvm = [s["variant"] for s in sidecar[name]["series"] if s["engine"] in ("tvm", None)]
        assert tvm == VARIANTS, name
    import matplotlib.pyplot as plt

    for fig, _ in figs.values():
        plt.close(fig)


# -- history and compare ---------------------------------------------------------------------------


def test_history_and_report_compare(local_run, variants_dir, env, capsys):
    out, first = local_run
    history = env / "data" / "history.jsonl"
    before = history.read_text().splitlines()
    assert json.loads(before[-1])["id"] == first["id"]  # the run is in the user data dir's history
    assert "samples_ms" not in before[-1]
    # a second run: two of the variants, one round
    out2 = env / "second"
    code, second = _bench_json(
        str(variants_dir / "dense-fp32"),
        str(variants_dir / "pruned-int8"),
        "--board",
        "local",
        "--runs",
        "4",
        "--rounds",
        "1",
        "--warmup",
        "1",
        "--profile-runs",
        "0",
        "--baseline",
        "none",
        "--data",
        str(variants_dir / "eval.npz"),
        "--out",
        str(out2),
    )
    assert code == 0
    assert len(history.read_text().splitlines()) == len(before) + 1
    assert main(["report", "compare", "@-2", "@-1", "--json"]) == 0
    d = json.loads(capsys.readouterr().out)
    assert d["a"]["id"] == first["id"] and d["b"]["id"] == second["id"]
    assert [r["variant"] for r in d["rows"]] == ["dense-fp32", "pruned-int8"]
    assert d["only_in_a"] == ["pruned-fp32"] and d["only_in_b"] == []
    a_p50 = first["summary"]["boards"]["local"]["variants"]["pruned-int8"]["p50_ms"]
    b_p50 = second["summary"]["boards"]["local"]["variants"]["pruned-int8"]["p50_ms"]
    row = d["rows"][1]["p50_ms"]
    assert (row["a"], row["b"]) == (a_p50, b_p50)
    assert row["delta"] == pytest.approx(b_p50 - a_p50) and row["ratio"] == pytest.approx(b_p50 / a_p50)
    assert d["rows"][1]["bytes"]["ratio"] == 1.0 and d["rows"][1]["accuracy"]["delta"] == 0.0
    assert d["rows"][1]["ort_p50_ms"]["b"] is None  # --baseline none
    # the same by report paths, as a table
    assert main(["report", "compare", str(out / "report.json"), str(out2)]) == 0
    text = capsys.readouterr().out
    assert "pruned-int8" in text and "->" in text and "pruned-fp32" in text  # only in A, named in the caption
    assert main(["report", "history"]) == 0
    assert second["id"] in capsys.readouterr().out


def test_compare_refuses_what_is_not_a_run(env, tmp_path, capsys):
    bad = tmp_path / "r.json"
    bad.write_text('{"schema": "edgeopt.report/1"}')
    assert main(["report", "compare", str(bad), "@-1"]) == 3
    assert "is not a bench report" in capsys.readouterr().err
    assert main(["report", "compare", "@-1", "@999", "--history", str(tmp_path / "none.jsonl")]) == 3
    assert "is empty" in capsys.readouterr().err


# -- fleets -----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def openssh_board():
    reason = sshd.unavailable_reason()
    if reason:
        pytest.skip(f"OpenSSH board: {reason}")
    with sshd.OpenSSHBoard() as b:
        yield b


def test_two_boards_in_parallel_one_report(variants_dir, openssh_board, env, tmp_path):
    (env / "cfg" / "boards.toml").write_text(_openssh_toml(openssh_board, "ossh"))
    out = tmp_path / "fleet"
    code, doc = _bench_json(
        str(variants_dir / "dense-fp32"),
        str(variants_dir / "pruned-int8"),
        "--board",
        "local",
        "--board",
        "ossh",
        *FAST,
        "--out",
        str(out),
    )
    assert code == 0
    local, ossh = doc["boards"]
    assert (local["name"], ossh["name"]) == ("local", "ossh") and local["ok"] and ossh["ok"]
    assert local["kind"] == "local" and ossh["kind"] == "ssh" and local["address"] != ossh["address"]
    for b in (local, ossh):
        assert sorted(b["results"]) == ["dense-fp32", "pruned-int8"]
        assert b["results"]["pruned-int8"]["tvm"]["latency_ms"]["runs"] == 16
    # both are this machine's CPU: marked so, in the JSON and in report.md
    assert local["shares_cpu_with"] == ["ossh"] and ossh["shares_cpu_with"] == ["local"]
    assert "Boards sharing one CPU" in (out / "report.md").read_text()
    # run in parallel: the two boards' threads overlapped
    assert local["started"] < ossh["finished"] and ossh["started"] < local["finished"]
    sidecar = json.loads((out / "plots.json").read_text())
    assert {(s["board"], s["variant"]) for s in sidecar["latency"]["series"] if s["engine"] == "tvm"} == {
        (b, v) for b in ("local", "ossh") for v in ("dense-fp32", "pruned-int8")
    }


def test_fleet_with_an_unreachable_board_reports_the_others(variants_dir, env, tmp_path, capsys):
    port = _closed_port()
    (env / "cfg" / "boards.toml").write_text(
        f'[boards.gone]\nhost = "127.0.0.1"\nport = {port}\nuser = "nobody"\n\n[groups]\nlab = ["gone", "local"]\n'
    )
    out = tmp_path / "lab"
    assert (
        main(["bench", str(variants_dir / "pruned-int8"), "--board", "lab", *FAST, "--out", str(out), "--quiet"]) == 9
    )
    captured = capsys.readouterr()
    assert "board gone: FAILED (exit code 7)" in captured.out and "cannot reach board" in captured.out
    doc = json.loads((out / "report.json").read_text())
    gone, local = doc["boards"]
    assert gone["name"] == "gone" and not gone["ok"] and gone["exit_code"] == 7
    assert gone["error"].startswith(f"cannot reach board nobody@127.0.0.1:{port}: connection refused")
    assert "\n" not in gone["error"]
    assert local["ok"] and local["results"]["pruned-int8"]["tvm"]["latency_ms"]["runs"] == 16
    assert local["shares_cpu_with"] == []  # the failed board ran nothing: it disturbed no one
    md = (out / "report.md").read_text()
    assert "**FAILED** (exit code 7)" in md and "| pruned-int8 |" in md
    # every board failing: that failure's own exit code
    (env / "cfg" / "boards.toml").write_text(f'[boards.gone]\nhost = "127.0.0.1"\nport = {port}\nuser = "nobody"\n')
    assert (
        main(
            [
                "bench",
                str(variants_dir / "pruned-int8"),
                "--board",
                "gone",
                "--out",
                str(tmp_path / "x"),
                "--quiet",
                "--no-history",
            ]
        )
        == 7
    )


def test_bad_board_name_fails_before_anything_runs(variants_dir, env, tmp_path, capsys):
    assert (
        main(
            ["bench", str(variants_dir), "--board", "local", "--board", "no such board!", "--out", str(tmp_path / "o")]
        )
        == 2
    )
    assert "cannot read board" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()


def test_single_bundle_bench_keeps_its_json(variants_dir, env, capsys):
    """One bundle on one board without --out: the single-bundle protocol and its JSON, as before."""
    assert main(["bench", str(variants_dir / "pruned-int8"), "--runs", "10", "--warmup", "1", "--json"]) == 0
    doc = json.loads(capsys.readouterr().out)
    assert doc["schema"] == "edgeopt.bench/1" and doc["latency_ms"]["runs"] == 10 and "time_evaluator_median_ms" in doc


# -- edgeopt run --variants ------------------------------------------------------------------------


@pytest.mark.slow
def test_run_variants_leaves_the_bundles_bench_takes(tmp_path, env, capsys):
    cfg = tmp_path / "run.toml"
    cfg.write_text("epochs = 3\nrepeat = 1\nmin-repeat-ms = 0\n")
    out = tmp_path / "run"
    assert (
        main(["run", "--config", str(cfg), "--variants", "--tune-trials", "0", "--out", str(out), "--quiet", "--json"])
        == 0
    )
    report = json.loads(capsys.readouterr().out)
    from edgeopt.toolkit.bench.variants import expand

    found = expand([out])
    assert [v.name for v in found] == VARIANTS  # model/, pruned/, quantized/ are no bundles
    assert not (out / "bundle").exists()  # the run's own bundle is the pruned-int8 variant
    assert found[2].bundle.library_sha256 == report["bundle"]["library_sha256"]
    for v in found:
        info = v.bundle.manifest["variant"]
        assert info["name"] == v.name and info["tuned"] is False and "model.onnx" in v.bundle.files
        assert [layer["name"] for layer in info["layers"]] == [layer["name"] for layer in report["sparsity"]["layers"]]
    assert found[0].bundle.manifest["variant"]["accuracy"] == report["accuracy"]["dense"]
    assert found[2].bundle.manifest["variant"]["accuracy"] == report["accuracy"]["final"]
    assert (out / "eval.npz").is_file()


def test_run_variants_needs_out(capsys):
    assert main(["run", "--variants"]) == 2
    assert "--variants needs --out" in capsys.readouterr().err
