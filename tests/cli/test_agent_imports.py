"""What ``vpngw agent --backend host`` imports before its first pass.

Every module an agent imports is CPU it spends before it takes a gateway, and in the
spread benchmark three agents start at once on two cores (docs/benchmarks.md, "Spread:
the agent's start-up"). So the agent's path imports neither the API (Starlette, uvicorn,
pydantic, the actions), nor Alembic on a database at the head, nor the lab backend,
which an agent on the host backend never runs. A fresh interpreter imports what the
agent does (``cli/main.py``, the agent's parser, the host backend, the modules
``cmd_agent`` and ``node_reconciler`` import) and the test reads ``sys.modules``.
"""

from __future__ import annotations

import json
import subprocess
import sys

AGENT_PATH = """
import json, sys
from vpngw.cli import main, nodes
args = main.build_parser().parse_args(
    ["agent", "--node", "n1", "--backend", "host", "--uplink", "u0", "--vpc-side", "v0", "--db", "sqlite://"]
)
nodes.backend_of(args)
from vpngw.dataplane.charon.daemon import missing_prerequisites
from vpngw.dataplane.core.reconciler import Reconciler
from vpngw.dataplane.nodes.placement import LeaseKeeper
print(json.dumps(sorted(sys.modules)))
"""

# Packages or modules whose name starts with one of these: none is on an agent's path.
NOT_IMPORTED = (
    "starlette",
    "uvicorn",
    "pydantic",
    "alembic",
    "mako",
    "vpngw.api",
    "vpngw.actions",
    "vpngw.cli.call",
    "vpngw.dataplane.backends.lab.peer",
    "vpngw.dataplane.backends.lab.node",
    "vpngw.dataplane.backends.lab.network",
    "vpngw.dataplane.backends.lab.lab",
    "vpngw.dataplane.backends.lab.charon_profile",
)


def agent_modules() -> set[str]:
    done = subprocess.run(
        [sys.executable, "-c", AGENT_PATH], capture_output=True, text=True, check=True, timeout=120
    )
    return set(json.loads(done.stdout))


def test_the_agent_path_imports_neither_the_api_nor_the_lab_backend() -> None:
    modules = agent_modules()
    # The path was really taken: the host backend and the reconciler are loaded.
    assert "vpngw.dataplane.backends.host.network" in modules
    assert "vpngw.dataplane.core.reconciler" in modules
    loaded = sorted(m for m in modules if any(m == p or m.startswith(p + ".") for p in NOT_IMPORTED))
    assert loaded == []


def test_the_lab_commands_still_find_the_lab_backend() -> None:
    """The lab's modules are imported by the commands that use them: `vpngw lab node list`
    on a lab that does not exist prints nothing and succeeds."""
    from vpngw.cli.main import build_parser

    args = build_parser().parse_args(
        ["lab", "node", "list", "--lab", "vq-none", "--lab-state", "/nonexistent"]
    )
    assert args.run(args) == 0
