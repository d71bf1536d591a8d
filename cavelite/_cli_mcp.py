"""``cavelite mcp``: serve a contained Python runtime to MCP clients (stdio, or HTTP with ``--http``).

Logs go to stderr: on stdio, stdout carries the protocol.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
from pathlib import Path

from cavelite.errors import CaveUsageError
from cavelite.security import Policy


def add_parser(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    mcp = sub.add_parser("mcp", help="serve a contained Python runtime to MCP clients (Claude Desktop, "
                         "Claude Code, IDE agents)")
    mcp.add_argument("--http", action="store_true", help="streamable HTTP at http://HOST:PORT/mcp "
                     "instead of stdio")
    mcp.add_argument("--host", default="127.0.0.1", help="HTTP address (default: 127.0.0.1)")
    mcp.add_argument("--port", type=int, default=8000, help="HTTP port (default: 8000)")
    mcp.add_argument("--data-dir", action="append", default=[], metavar="DIR",
                     help="a directory whose data files the load_data tool may read (repeatable)")
    mcp.add_argument("--preload", metavar="MODULES", help="comma-separated modules the runtime "
                     "preloads (default: numpy,pandas and matplotlib where installed)")
    mcp.add_argument("--policy", metavar="FILE", help='a JSON policy: {"allow_imports": ["scipy"], '
                     '"deny_functions": [...], "allow_read_dirs": [...], "regexes": [...]}')
    mcp.add_argument("--cell-timeout", type=float, default=30.0, metavar="SECONDS",
                     help="time limit of one run_python call (default: 30)")
    mcp.add_argument("--memory-limit-mb", type=int, default=2048, metavar="MB",
                     help="memory a call may allocate (default: 2048)")
    mcp.add_argument("--max-output-chars", type=int, default=20_000, metavar="N",
                     help="stdout a result carries; the rest stays in the runtime (default: 20000)")
    mcp.add_argument("--max-sessions", type=int, default=16, metavar="N",
                     help="HTTP: runtimes open at once (default: 16)")
    mcp.add_argument("--idle-timeout", type=float, default=1800.0, metavar="SECONDS",
                     help="HTTP: close a session's runtime after this long without a call (default: 1800)")


def run_mcp(args: argparse.Namespace) -> int:
    try:
        from cavelite import mcp_server
    except ImportError as exc:
        raise CaveUsageError("cavelite mcp needs the MCP SDK: pip install 'cavelite[mcp]' "
                             f"({exc})") from None
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="cavelite mcp: %(message)s")
    dirs = []
    for text in args.data_dir:
        real = Path(os.path.realpath(os.path.expanduser(text)))
        if not real.is_dir():
            raise CaveUsageError(f"--data-dir {text}: not a directory")
        dirs.append(real)
    options = mcp_server.ServerOptions(
        data_dirs=tuple(dirs),
        preload=tuple(m for m in args.preload.split(",") if m) if args.preload is not None else None,
        policy=policy_from_json(args.policy) if args.policy else None,
        cell_timeout=args.cell_timeout, memory_limit_mb=args.memory_limit_mb,
        max_output_chars=args.max_output_chars,
        max_sessions=args.max_sessions, idle_timeout=args.idle_timeout)
    if args.http:
        mcp_server.serve_http(options, host=args.host, port=args.port)
    else:
        mcp_server.serve_stdio(options)
    return 0


def policy_from_json(path: str) -> Policy:
    """A `Policy` from a JSON file of builder calls: ``{"allow_imports": ["scipy"], ...}``."""
    builders = ("allow_imports", "deny_imports", "allow_functions", "deny_functions", "deny_attributes",
                "allow_read_dirs")
    try:
        spec = json.loads(Path(path).read_text())
    except (OSError, ValueError) as exc:
        raise CaveUsageError(f"cannot read the policy file {path}: {exc}") from None
    if not isinstance(spec, dict):
        raise CaveUsageError(f"the policy file {path} must hold a JSON object")
    policy = Policy.default()
    for key, values in spec.items():
        if key == "regexes":
            for rule in values if isinstance(values, list) else [None]:
                if not isinstance(rule, dict) or not isinstance(rule.get("pattern"), str):
                    raise CaveUsageError('"regexes" is a list of {"pattern", "message", "hint"} objects')
                policy = policy.add_regex(rule["pattern"], str(rule.get("message", "refused")),
                                          str(rule.get("hint", "")))
            continue
        if key not in builders:
            raise CaveUsageError(f"unknown policy key {key!r}; use {', '.join(builders)} or regexes")
        if not isinstance(values, list) or not all(isinstance(v, str) for v in values):
            raise CaveUsageError(f"{key!r} must be a list of strings")
        policy = getattr(policy, key)(*values)
    return policy
