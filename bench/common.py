"""Small helpers the benchmark scripts share: progress lines, the measured commit, serving."""

from __future__ import annotations

import subprocess
import sys
import time
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

from aiohttp import web

REPO = Path(__file__).resolve().parent.parent


def progress(message: str) -> None:
    print(f"[bench {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


def code_version() -> str:
    """The commit the measured code comes from, marked when server/ or adapters/ differ."""
    try:
        commit = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True)
        dirty = subprocess.run(["git", "-C", str(REPO), "status", "--porcelain", "--",
                                "server", "adapters"],
                               capture_output=True, text=True, timeout=10, check=True)
    except (OSError, subprocess.SubprocessError):
        return "unknown commit"
    return commit.stdout.strip() + (" + uncommitted changes" if dirty.stdout.strip() else "")


@asynccontextmanager
async def serving(app: web.Application) -> AsyncIterator[str]:
    """The app on 127.0.0.1 at a free port, without an access log; yields its base URL."""
    runner = web.AppRunner(app, access_log=None)
    await runner.setup()
    await web.TCPSite(runner, "127.0.0.1", 0).start()
    try:
        host, port = runner.addresses[0][:2]
        yield f"http://{host}:{port}"
    finally:
        await runner.cleanup()


def tree_cpu_seconds(process: Any) -> float:
    """CPU time of a server and every process under it (psutil.Process).

    The expansion workers are children of the server's fork server, not of the
    server: their time is theirs while they run, then their reaper's
    ``children_*`` (the fork server's), so each second is counted once.
    """
    import psutil

    total = 0.0
    for member in [process, *process.children(recursive=True)]:
        try:
            times = member.cpu_times()
        except psutil.Error:  # a worker that just ended: its reaper has its time
            continue
        total += times.user + times.system + times.children_user + times.children_system
    return total


def tree_memory(process: Any) -> tuple[int, int]:
    """(the server's RSS, the PSS of it and every process under it), in bytes.

    PSS splits pages shared between processes (a worker forked from the fork
    server shares most of its pages), so the sum is the memory the tree really
    takes; RSS summed would count shared pages once per process.
    """
    import psutil

    rss = process.memory_info().rss
    pss = 0
    for member in [process, *process.children(recursive=True)]:
        try:
            pss += member.memory_full_info().pss
        except psutil.Error:
            continue
    return rss, pss
