"""Imported first by the fork server of ``WorkerProcesses``: the parent's main script.

Python 3.11's fork server receives neither the parent's ``sys.path`` nor its main
script (CPython gh-117378 and gh-126631, fixed in later versions): it imports the
preloaded modules from its own default path, and every worker it forks then runs
the parent's main script again itself (for ``fbproxy serve``, the console script,
which imports every module of the server: most of a second, for each worker, and
each task runs in a new worker). ``WorkerProcesses`` starts the fork server with
the parent's path in ``PYTHONPATH`` and the main script's path in MAIN_ENV;
importing this module there loads that script once, as ``__mp_main__``, the way
the fork server does when that works, so the workers it forks find it loaded and
skip it.
"""

from __future__ import annotations

import contextlib
import os
from multiprocessing import spawn

from server.kit.processes import MAIN_ENV


def adopt(main: str) -> None:
    """Load the parent's main script, if it has one (a path: not ``python -m``)."""
    if main and os.path.isfile(main):
        # Any failure leaves the workers to run it themselves, as without this.
        with contextlib.suppress(Exception):
            spawn.import_main_path(main)


adopt(os.environ.pop(MAIN_ENV, ""))
