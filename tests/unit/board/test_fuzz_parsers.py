"""Property-based fuzzing (hypothesis) of what a board or a user can feed the host: a bundle's
manifest (its file names), the agent's JSON, boards.toml. Any input gives a result or the
documented error (exit 6, 7 or 3), never another exception. No deadline: no wall-clock limit."""

from __future__ import annotations

import json
import string

import pytest
from edgeopt.board.agent.bundle import plain_name
from edgeopt.compile.bundle import bad_name_reason
from edgeopt.compile.bundle import check as check_bundle
from edgeopt.toolkit import agentdoc
from edgeopt.toolkit.boards.config import _read
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edgeopt.errors import AgentError, BundleError, InputError

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
SHA = "0" * 64

names = st.one_of(
    st.text(max_size=40),
    st.text(alphabet="./\\\x00\n\x1b ab", max_size=12),
    st.sampled_from(
        [
            "..",
            ".",
            "../../../etc/passwd",
            "/etc/passwd",
            ".ssh/authorized_keys",
            "a/../b",
            "model.so",
            "manifest.json",
            "x" * 200,
            "ok.bin",
            "C:\\x",
            "\u202e.so",
        ]
    ),
)


@FUZZ
@given(name=names)
def test_host_and_board_agree_on_plain_names(name):
    assert (bad_name_reason(name) is None) == (plain_name(name) and name != "manifest.json")


@FUZZ
@given(name=names)
def test_an_accepted_name_stays_inside_the_bundle(tmp_path_factory, name):
    path = tmp_path_factory.mktemp("b")
    (path / "model.so").write_bytes(b"lib")
    if bad_name_reason(name) is None and name != "model.so":
        (path / name).write_bytes(b"x")
    manifest = {"files": {"model.so": {"sha256": SHA}, name: {"sha256": SHA}}}
    try:
        check_bundle(path, manifest)
    except BundleError as exc:
        assert exc.exit_code == 6
        return
    assert bad_name_reason(name) is None
    assert (path / name).resolve().parent == path.resolve()


manifests = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=10),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=20,
)


@FUZZ
@given(files=st.dictionaries(names, manifests, max_size=4) | manifests)
def test_any_manifest_files_table_is_accepted_or_refused(tmp_path_factory, files):
    path = tmp_path_factory.mktemp("b")
    try:
        check_bundle(path, {"files": files})
    except BundleError as exc:
        assert exc.exit_code == 6
    else:
        raise AssertionError("no file exists in the bundle folder: it cannot be accepted")


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=20),
    lambda inner: st.lists(inner, max_size=5) | st.dictionaries(st.text(max_size=12), inner, max_size=6),
    max_leaves=40,
)
ENVELOPE = {
    "schema": "edgeopt.agent/1",
    "agent_version": "1",
    "agent_digest": "abc",
    "verb": "info",
    "ok": True,
    "board": {"arch": "x86_64", "python": "3.11.2"},
    "imports": ["json"],
}


def _parse(text: str, verb: str):
    try:
        return agentdoc.parse(text, verb=verb, where="b:22")
    except AgentError as exc:
        assert exc.exit_code == 7
    except ValueError:
        pass  # not JSON: the caller's "exited N without a JSON result"
    return None


@FUZZ
@given(doc=json_values, verb=st.sampled_from(["info", "version", "bench", "eval", "infer"]))
def test_any_json_is_a_document_or_refused(doc, verb):
    out = _parse(json.dumps(doc), verb)
    assert out is None or isinstance(out, dict)


@FUZZ
@given(key=st.sampled_from(sorted(ENVELOPE)), value=json_values, verb=st.sampled_from(["info", "version"]))
def test_an_envelope_with_one_field_replaced(key, value, verb):
    out = _parse(json.dumps(dict(ENVELOPE, **{key: value})), verb)
    assert out is None or isinstance(out, dict)


@FUZZ
@given(text=st.text(max_size=200) | st.text(alphabet='[]{}",:0', max_size=400))
def test_any_text_is_a_document_or_refused(text):
    out = _parse(text, "info")
    assert out is None or isinstance(out, dict)


def test_deep_nesting_is_refused_before_parsing():
    with pytest.raises(AgentError, match="nested deeper"):
        agentdoc.parse("[" * 200_000 + "]" * 200_000, verb="info", where="b:22")


def test_a_valid_envelope_passes():
    assert agentdoc.parse(json.dumps(ENVELOPE), verb="info", where="b:22")["board"]["arch"] == "x86_64"


toml_keys = st.sampled_from(
    [
        "host",
        "user",
        "port",
        "target",
        "identity_file",
        "python",
        "remote_root",
        "known_hosts",
        "timeout",
        "identities_only",
        "password",
        "bogus",
    ]
)
toml_scalars = (
    st.text(alphabet=string.printable, max_size=12)
    | st.integers(-5, 70000)
    | st.booleans()
    | st.floats(allow_nan=False, allow_infinity=False, width=32)
)


def _toml_value(v) -> str:
    if isinstance(v, bool):
        return "true" if v else "false"
    if isinstance(v, (int, float)):
        return repr(v)
    return json.dumps(v)  # a TOML basic string


@FUZZ
@given(
    boards=st.dictionaries(
        st.text(alphabet=string.ascii_lowercase, min_size=1, max_size=6),
        st.dictionaries(toml_keys, toml_scalars, max_size=6),
        max_size=3,
    )
)
def test_any_boards_toml_table_is_read_or_refused(tmp_path_factory, boards):
    path = tmp_path_factory.mktemp("cfg") / "boards.toml"
    lines = []
    for name, table in boards.items():
        lines.append(f"[boards.{name}]")
        lines += [f"{k} = {_toml_value(v)}" for k, v in table.items()]
    path.write_text("\n".join(lines) + "\n")
    try:
        out = _read(path)
    except InputError as exc:
        assert exc.exit_code == 3
        return
    for entry in out.values():
        assert entry.host and (entry.port is None or 0 < entry.port < 65536)
        assert entry.timeout_s is None or 0 < entry.timeout_s <= 86400


@FUZZ
@given(text=st.text(max_size=300))
def test_any_boards_toml_text_is_read_or_refused(tmp_path_factory, text):
    path = tmp_path_factory.mktemp("cfg") / "boards.toml"
    path.write_text(text, errors="surrogatepass") if False else path.write_bytes(text.encode("utf-8", "surrogatepass"))
    try:
        _read(path)
    except InputError as exc:
        assert exc.exit_code == 3
