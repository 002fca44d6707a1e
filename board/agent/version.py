"""The agent's own identity: the digest of its files, computed with the same `digest` the host
uses (toolkit.boards.deploy.agent_digest), so the host can check it runs the agent it uploaded."""

from __future__ import annotations

import hashlib
import os
import sys

_BOARD = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # .../board


def agent_digest() -> str:
    parent = os.path.dirname(_BOARD)
    files = [os.path.join(_BOARD, "__init__.py")]
    agent = os.path.join(_BOARD, "agent")
    files += sorted(os.path.join(agent, n) for n in os.listdir(agent) if n.endswith(".py"))
    # anything else this process imported from the agent's folder (a stray dropped there) is
    # covered too, so the host sees a digest it does not know
    listed = {os.path.abspath(f) for f in files}
    for m in list(sys.modules.values()):
        f = getattr(m, "__file__", None)
        f = os.path.abspath(f) if f else None
        # the agent folder's top level, and the board package itself
        if f and (os.path.dirname(f) == parent or f.startswith(_BOARD + os.sep)) and f not in listed:
            files.append(f)
    return digest(files, parent)


def digest(files: list, parent: str) -> str:
    """sha256 over each file's path (relative to `parent`, with /) and bytes: the host's
    toolkit.boards.deploy.agent_digest calls this too, so both sides hash the same way."""
    h = hashlib.sha256()
    for f in files:
        rel = os.path.relpath(f, parent).replace(os.sep, "/")
        with open(f, "rb") as fh:
            h.update(rel.encode() + b"\0" + fh.read())
    return h.hexdigest()[:16]
