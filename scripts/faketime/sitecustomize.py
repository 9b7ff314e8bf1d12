"""Loaded by every Python process of a libfaketime test run (scripts/test puts this
folder on PYTHONPATH there, and only there).

libfaketime 0.9.10 (Debian bookworm) with FAKETIME_DONT_FAKE_MONOTONIC=1 turns
clock_nanosleep(CLOCK_MONOTONIC, TIMER_ABSTIME), which time.sleep uses since
Python 3.11, into EINVAL (a date ahead) or a sleep of years (a date behind): it
shifts the monotonic deadline by the wall-clock offset. Relative waits are fine,
so time.sleep waits with select's relative timeout instead. (Faking the
monotonic clock instead is worse: lock and queue timeouts then never expire.)
"""

import os
import select
import time

if os.environ.get("FAKETIME"):
    def _sleep(seconds: float) -> None:
        if seconds < 0:
            raise ValueError("sleep length must be non-negative")
        deadline = time.monotonic() + seconds
        while (left := deadline - time.monotonic()) > 0:
            select.select([], [], [], left)

    time.sleep = _sleep
