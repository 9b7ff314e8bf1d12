"""Worker processes for CPU-bound work: each task in a new process of its own.

CPU-bound pure-Python work (parsing, expansion) in a thread adds no throughput
and makes the event loop wait for the GIL; in processes it uses every core and
leaves the loop alone. ``WorkerProcesses`` is a ``concurrent.futures.Executor``
(``loop.run_in_executor`` takes it) that:

- runs each task in a new process, which ends with it: whatever a task allocated
  (a hostile item's parse tree) goes back to the system at once, and nothing of
  one task is left for the next;
- starts them with 'forkserver', not 'fork': forking a process that runs an event
  loop and threads can copy a lock some other thread held. The fork server
  imports the parent's main script (``server/kit/fork_parent.py``) and the
  modules named in ``preload`` once, so a new worker costs a few milliseconds;
- runs at most ``workers`` at once, the others waiting their turn;
- fails a task whose process died (killed, out of memory) or ran past
  ``time_limit`` (then ended) with ``WorkerDied``, a
  ``concurrent.futures.BrokenExecutor``; the other tasks go on.

Why not ``ProcessPoolExecutor(max_tasks_per_child=1)``, which was the plan: on
Python 3.11 its manager thread replaces a worker that leaves after its last task
by a path that can crash that thread (seen here: ``KeyError`` in
``processes.pop(exit_pid)``, when the result of a worker just started comes in
before the submitting thread has registered it), after which every task of the
pool waits forever; CPython fixed that path in 3.13 and 3.14 (gh-115634,
gh-119592), not in 3.11. A process per task, watched by a thread of its own,
leaves no such state to share.
"""

from __future__ import annotations

import multiprocessing
import os
import sys
import threading
import traceback
from collections.abc import Callable, Sequence
from concurrent.futures import BrokenExecutor, Executor, Future, ThreadPoolExecutor
from multiprocessing import forkserver, spawn
from multiprocessing.connection import Connection
from multiprocessing.context import ForkServerContext, SpawnContext
from multiprocessing.process import BaseProcess
from typing import Any, ParamSpec, TypeVar

P = ParamSpec("P")
T = TypeVar("T")

__all__ = ["MAIN_ENV", "TASK_TIME_LIMIT", "WorkerDied", "WorkerProcesses", "usable_cores"]

# Imported first by the fork server: the parent's main script, its path handed over
# in MAIN_ENV while it starts (see that module); the parent's sys.path in PYTHONPATH.
FORK_PARENT = "server.kit.fork_parent"
MAIN_ENV = "FBPROXY_WORKER_MAIN"
# A task still running after this long is ended (WorkerDied): a piece of a round
# takes seconds (10,000 events: about 3 s on two workers), so one this slow is stuck
# on an item no bound caught, which a thread could not have been stopped from.
TASK_TIME_LIMIT = 600.0
# Held while the environment carries what the fork server is handed (process-wide).
_ENVIRONMENT = threading.Lock()


class WorkerDied(BrokenExecutor):
    """The process running a task ended without an answer (killed, out of memory)."""


class RemoteTraceback(Exception):
    """Where in the worker a task's exception was raised (its ``__cause__``)."""


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity, e.g. a container's cpuset)."""
    if hasattr(os, "sched_getaffinity"):
        return max(1, len(os.sched_getaffinity(0)))
    return max(1, os.cpu_count() or 1)


def _context(preload: Sequence[str]) -> ForkServerContext | SpawnContext:
    if "forkserver" not in multiprocessing.get_all_start_methods():
        return multiprocessing.get_context("spawn")
    context = multiprocessing.get_context("forkserver")
    # Only counts before the fork server starts: the first WorkerProcesses of a process
    # chooses. It starts now, importing in the background while the server starts.
    context.set_forkserver_preload([FORK_PARENT, *preload])
    _ensure_fork_server()
    return context


def _ensure_fork_server() -> None:
    """Start the fork server, or start it again if it died (a no-op while it runs)."""
    main = spawn.get_preparation_data("fbproxy-worker").get("init_main_from_path")
    handed = {MAIN_ENV: main if isinstance(main, str) else "",
              "PYTHONPATH": os.pathsep.join(sys.path)}  # found where the parent finds them
    with _ENVIRONMENT:
        kept = {name: os.environ.get(name) for name in handed}
        os.environ.update(handed)
        try:
            forkserver.ensure_running()
        finally:  # for the fork server alone, not for other children
            for name, value in kept.items():
                if value is None:
                    os.environ.pop(name, None)
                else:
                    os.environ[name] = value


def _serve(answer: Connection, fn: Callable[..., Any], args: tuple[Any, ...],
           kwargs: dict[str, Any]) -> None:
    """The worker: run the task, send back ``(True, result)`` or ``(False, error, where)``."""
    try:
        reply: tuple[Any, ...] = (True, fn(*args, **kwargs))
    except BaseException as exc:  # every failure goes back to the caller
        reply = (False, exc, traceback.format_exc())
    try:
        answer.send(reply)
    except Exception as exc:  # an answer that cannot be pickled
        answer.send((False, RuntimeError(f"the worker's answer could not be sent: {exc!r}"),
                     traceback.format_exc()))
    finally:
        answer.close()


class WorkerProcesses(Executor):
    """Each task in a new process; at most ``workers`` at once."""

    def __init__(self, workers: int, *, preload: Sequence[str] = (),
                 time_limit: float = TASK_TIME_LIMIT) -> None:
        if workers < 1:
            raise ValueError("at least one worker process")
        self.workers = workers
        self.time_limit = time_limit
        self._context = _context(preload)
        # One thread watches each running task's process: starts it, waits for its
        # answer or its end. Tasks beyond ``workers`` wait in this pool's queue.
        self._watchers = ThreadPoolExecutor(workers, thread_name_prefix="fbproxy-expansion")
        self._lock = threading.Lock()
        self._running: set[BaseProcess] = set()
        self._closed = False
        self.started = 0  # processes started since the beginning
        self.died = 0  # of which ended without an answer

    def submit(self, fn: Callable[P, T], /, *args: P.args, **kwargs: P.kwargs) -> Future[T]:
        if self._closed:
            raise RuntimeError("cannot schedule new futures after shutdown")
        return self._watchers.submit(self._run, fn, args, kwargs)

    def _run(self, fn: Callable[..., T], args: tuple[Any, ...], kwargs: dict[str, Any]) -> T:
        reader, writer = self._context.Pipe(duplex=False)
        process = self._context.Process(target=_serve, args=(writer, fn, args, kwargs),
                                        name="fbproxy-expansion", daemon=True)
        with self._lock:
            if self._closed:
                raise RuntimeError("cannot run tasks after shutdown")
            try:
                if self._context.get_start_method() == "forkserver":
                    # Started again, with what it is handed, if it died (a start would
                    # start it again anyway, without).
                    _ensure_fork_server()
                process.start()
            except Exception as exc:  # no process (EAGAIN, the fork server gone...)
                writer.close()
                reader.close()
                raise WorkerDied(f"a worker process could not start: {exc}") from exc
            self._running.add(process)
            self.started += 1
        writer.close()  # the worker holds the only writing end: its end is our EOF
        overdue = False
        try:
            with reader:
                try:
                    overdue = not reader.poll(self.time_limit)
                    reply = None if overdue else reader.recv()
                except (EOFError, OSError):
                    reply = None
            if overdue:
                process.kill()
            process.join()
        finally:
            with self._lock:
                self._running.discard(process)
        if reply is None:
            self.died += 1
            why = f"took more than {self.time_limit:g} s and was ended" if overdue else \
                f"ended without an answer (exit code {process.exitcode})"
            raise WorkerDied(f"a worker process {why}")
        if reply[0]:
            result: T = reply[1]
            return result
        error: BaseException = reply[1]
        raise error from RemoteTraceback(reply[2])

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        """No new tasks; with ``cancel_futures`` the waiting ones are dropped and the
        running ones ended (their callers get WorkerDied)."""
        with self._lock:
            self._closed = True
            running = list(self._running)
        if cancel_futures:
            for process in running:
                process.kill()
        self._watchers.shutdown(wait=wait, cancel_futures=cancel_futures)

    def __repr__(self) -> str:
        return f"<WorkerProcesses workers={self.workers} start=" \
               f"{self._context.get_start_method()}>"
