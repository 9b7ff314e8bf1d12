"""Functions tests/test_expansion_workers.py runs in expansion worker processes.

A worker imports the module of each function it is sent: these live apart from
the test module, whose imports (pytest, the whole server) would cost every new
worker most of a second.
"""

from __future__ import annotations

import os
import resource
import signal
import threading
from collections.abc import Callable, Sequence
from typing import Any

from server.sync.expand import ExpandContext
from server.sync.expander import Expanded, expand_batch


def die_once(marker: str, how: str, items: Sequence[tuple[str, str]],
             context: ExpandContext) -> list[Expanded]:
    """A batch whose worker dies (or fails) while ``marker`` exists (the first to see it
    removes it)."""
    try:
        os.unlink(marker)
    except FileNotFoundError:
        return expand_batch(items, context)
    if how == "killed":  # as the kernel's OOM killer or an operator would
        os.kill(os.getpid(), signal.SIGKILL)
    if how == "raises":  # a bug: the worker answers with an exception
        raise RuntimeError("a bug in the worker")
    os._exit(3)


def die_once_then(marker: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function``, unless ``marker`` exists: then the worker is killed (once)."""
    try:
        os.unlink(marker)
    except FileNotFoundError:
        return function(*args)
    os.kill(os.getpid(), signal.SIGKILL)


def report_then(report: str, function: Callable[..., Any], *args: Any) -> Any:
    """``function``, then this worker's pid and peak memory appended to ``report``."""
    result = function(*args)
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024  # KiB on Linux
    with open(report, "a") as out:
        out.write(f"{os.getpid()} {peak}\n")
    return result


def stuck(*_: Any) -> None:
    """A task that never ends by itself (as on an item no bound caught)."""
    threading.Event().wait()
