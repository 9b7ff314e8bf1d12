"""The `fbproxy` command as a user runs it: the installed console script, real processes."""

from __future__ import annotations

import json
import os
import re
import shutil
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import pytest
from icalendar import Calendar

REPO = Path(__file__).resolve().parents[1]
# The console script syncs and serves the examples on the wall clock.
pytestmark = pytest.mark.clock_sensitive
FBPROXY = str(Path(sys.executable).with_name("fbproxy"))


# The console script runs this checkout's code, also when the venv was installed from
# another checkout (an editable install of a sibling worktree).
# From 2027-10 google-api-core warns on import, on every command's stderr, that it no
# longer supports Python 3.11; the tests compare stderr, on whatever date they run.
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(
    filter(None, [str(REPO), os.environ.get("PYTHONPATH")])),
    "PYTHONWARNINGS": "ignore::FutureWarning:google.api_core._python_version_support"}


def run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    return subprocess.run([FBPROXY, *args], cwd=cwd, capture_output=True, text=True,
                          timeout=120, check=False, env=ENV)


@pytest.fixture
def example(tmp_path: Path) -> Path:
    """The shipped example config and calendars, copied so the repo stays clean."""
    shutil.copy(REPO / "config.example.toml", tmp_path / "config.toml")
    shutil.copytree(REPO / "examples", tmp_path / "examples")
    return tmp_path


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def test_check_config(example: Path) -> None:
    ok = run("check-config", "--config", "config.toml", cwd=example)
    assert ok.returncode == 0 and "ok (2 sources" in ok.stdout
    (example / "bad.toml").write_text('[[sources]]\nname = "a"\nkind = "ics"\n'
                                      'url = "x.ics"\npoll_interval = "5 minutes"\n')
    bad = run("check-config", "--config", "bad.toml", cwd=example)
    assert bad.returncode == 2
    assert "sources[0].poll_interval: '5 minutes' is not a duration" in bad.stderr


def test_check_config_names_every_problem_at_once(example: Path) -> None:
    """A typo'd key and a missing calendar file: both named, with the fix for each."""
    config = (example / "config.toml").read_text()
    config = config.replace('listen = "127.0.0.1:8080"', 'lisen = "127.0.0.1:8080"', 1)
    assert "lisen" in config
    (example / "config.toml").write_text(config)
    (example / "examples" / "personal.ics").unlink()
    result = run("check-config", "--config", "config.toml", cwd=example)
    assert result.returncode == 2, result
    assert result.stdout == ""
    assert result.stderr.splitlines() == [
        f"config {example}/config.toml has 2 problem(s):",
        '  - server.lisen: unknown key; did you mean "listen"?',
        f"  - sources[1].url: cannot read {example}/examples/personal.ics: No such file or "
        f"directory (a relative path is read from the config file's folder, {example})"]
    (example / "config.toml").write_text(config.replace("lisen", "listen", 1))
    result = run("check-config", "--config", "config.toml", cwd=example)
    assert result.returncode == 2 and "1 problem(s)" in result.stderr
    # Running, the missing file is the source's sync error (shown on the status page).
    synced = run("sync", "--config", "config.toml", cwd=example)
    assert synced.returncode == 1 and "personal: FAILED: " in synced.stderr


def test_check_config_notes_a_source_not_authorized_yet(example: Path) -> None:
    with (example / "config.toml").open("a") as config:
        config.write('\n[[sources]]\nname = "gcal"\nkind = "google"\nclient_id = "app"\n'
                     'client_secret = "not-a-real-secret"\n')
    result = run("check-config", "--config", "config.toml", cwd=example)
    assert result.returncode == 0, result.stderr
    assert f"note: sources[2] (gcal) is not authorized yet (no token in {example}/var/" \
        f"google-gcal.token.json); run: fbproxy auth google --config {example}/config.toml " \
        "--source gcal" in result.stdout


def test_sync_status_and_urls(example: Path) -> None:
    synced = run("sync", "--config", "config.toml", cwd=example)
    assert synced.returncode == 0, synced.stderr
    assert re.search(r"\[2/2\] (work|personal): ok", synced.stderr)
    status = run("status", "--config", "config.toml", cwd=example)
    assert status.returncode == 0
    assert re.search(r"^work\s+ics\s+\d+\s+20\d\d-.*ok$", status.stdout, re.MULTILINE)
    urls = run("urls", "--config", "config.toml", cwd=example)
    assert "/busy.ics" in urls.stdout and "webcal://" in urls.stdout
    # The example's booking page: public, so its address carries no secret.
    assert urls.stdout.splitlines()[-5:] == [
        "booking page intro-call: Intro call with Alex",
        "  public page:            http://127.0.0.1:8080/book/intro-call",
        "  hosts:                  alex",
        '  embed (iframe):         <iframe src="http://127.0.0.1:8080/book/intro-call?embed=1" '
        'title="Intro call with Alex" width="100%" height="760" loading="lazy"></iframe>',
        "  embeddable from:        none (list your site in embed_origins to embed the page)"]
    again = run("urls", "--config", "config.toml", cwd=example)
    assert again.stdout == urls.stdout, "the generated secret is kept"


def test_urls_print_each_pages_embed_snippet_escaped(example: Path) -> None:
    config = (example / "config.toml").read_text()
    config = config.replace('title = "Intro call with Alex"',
                            'title = "Intro \\"call\\" <b>&</b>"\n'
                            'embed_origins = ["https://www.example.org", "https://b.example:8443"]')
    (example / "config.toml").write_text(config)
    urls = run("urls", "--config", "config.toml", cwd=example)
    assert urls.returncode == 0, urls.stderr
    lines = urls.stdout.splitlines()
    assert lines[-2] == (
        '  embed (iframe):         <iframe src="http://127.0.0.1:8080/book/intro-call?embed=1" '
        'title="Intro &quot;call&quot; &lt;b&gt;&amp;&lt;/b&gt;" width="100%" height="760" '
        'loading="lazy"></iframe>')
    assert lines[-1] == "  embeddable from:        https://www.example.org https://b.example:8443"


def test_check_config_names_a_bad_avatar(example: Path) -> None:
    config = (example / "config.toml").read_text()
    config = config.replace('# avatar = "alex.png"', 'avatar = "alex.png"', 1)
    (example / "config.toml").write_text(config)
    (example / "alex.png").write_text("<svg><script>alert(1)</script></svg>")
    result = run("check-config", "--config", "config.toml", cwd=example)
    assert result.returncode == 2
    assert "calendars[0].avatar: " in result.stderr and "SVG is refused" in result.stderr
    (example / "alex.png").write_bytes(b"\x89PNG\r\n\x1a\n" + bytes(16))
    assert run("check-config", "--config", "config.toml", cwd=example).returncode == 0


def test_sync_fails_when_a_source_fails(example: Path) -> None:
    (example / "examples" / "work.ics").write_text("<html>not a calendar</html>")
    result = run("sync", "--config", "config.toml", cwd=example)
    assert result.returncode == 1
    assert "work: FAILED: " in result.stderr and "1 ok, 1 failed" in result.stderr
    status = run("status", "--config", "config.toml", cwd=example)
    assert status.returncode == 1 and "failing (1x)" in status.stdout
    only = run("sync", "--config", "config.toml", "--source", "personal", cwd=example)
    assert only.returncode == 0 and "[1/1] personal" in only.stderr
    unknown = run("sync", "--config", "config.toml", "--source", "nope", cwd=example)
    assert unknown.returncode == 2


@pytest.fixture
def server(example: Path) -> Iterator[tuple[str, Path]]:
    port = free_port()
    process = subprocess.Popen(
        [FBPROXY, "serve", "--config", "config.toml", "--listen", f"127.0.0.1:{port}"],
        cwd=example, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=ENV)
    base = f"http://127.0.0.1:{port}"
    try:
        for _ in range(200):  # bounded wait for the port to open
            try:
                with urllib.request.urlopen(f"{base}/healthz", timeout=1):
                    break
            except OSError:
                time.sleep(0.05)
        yield base, example
    finally:
        process.terminate()
        output, _ = process.communicate(timeout=20)
        assert process.returncode == 0, output
        assert "/feeds/" not in output or "/feeds/***/" in output, "secrets must not be logged"


def test_readme_run_command_serves_the_example(server: tuple[str, Path]) -> None:
    base, folder = server
    printed = run("urls", "--config", "config.toml", cwd=folder).stdout
    feed_urls = re.findall(r"http://127\.0\.0\.1:8080(/feeds/\S+\.ics)", printed)
    secret = re.search(r"Bearer (\S+)'", printed)
    assert len(feed_urls) == 2 and secret
    for path in feed_urls:
        for _ in range(100):  # the first sync runs at start; wait until it has landed
            try:
                with urllib.request.urlopen(base + path, timeout=5) as response:
                    body = response.read()
            except urllib.error.HTTPError as exc:
                # Until then the calendar is not served (invariant 7), never empty.
                assert exc.code == 503 and exc.headers["Retry-After"] == "10", exc
                time.sleep(0.05)
                continue
            calendar = Calendar.from_ical(body)
            freebusy = calendar.walk("VFREEBUSY")
            if calendar.walk("VEVENT") or (freebusy and freebusy[0].get("FREEBUSY")):
                break
            time.sleep(0.05)
        else:
            pytest.fail(f"{path} never showed busy time")
    request = urllib.request.Request(f"{base}/api/v1/freebusy?calendar=alex",
                                     headers={"Authorization": f"Bearer {secret.group(1)}"})
    with urllib.request.urlopen(request, timeout=5) as response:
        answer = json.load(response)
    assert answer["calendar"] == "alex" and answer["busy"]
    assert {s["name"] for s in answer["sources"]} == {"work", "personal"}


def test_status_lists_the_hold_outbox(example: Path) -> None:
    import asyncio

    from server.store import BookingRecord, Store

    async def queue_one() -> None:
        store = await Store.open(example / "var" / "fbproxy.sqlite3")
        try:
            booking = BookingRecord(
                id="bk_test", page="intro", host="alex", start=10, end=20, guest_name="Sam",
                guest_email="sam@example.org", answers={}, cancel_secret="x" * 20,
                status="confirmed", created=1)
            async with store.booking_transaction() as tx:
                await tx.insert(booking, [("alex", 10, 20)])
                await tx.queue_hold("bk_test", "alex", source="work", calendar=None,
                                    hold={}, now=1)
            [row] = await store.due_holds(now=5)
            await store.hold_failed(row, error="HTTP 503 from upstream", retry_at=100)
        finally:
            await store.close()

    assert run("sync", "--config", "config.toml", cwd=example).returncode == 0
    asyncio.run(queue_one())
    status = run("status", "--config", "config.toml", cwd=example)
    assert "holds (bookings written upstream):" in status.stdout
    assert re.search(r"write\s+pending\s+1\s+last error: HTTP 503 from upstream", status.stdout)
    assert "- bk_test alex write -> work, 1 attempt(s), next 1970-01-01T00:01:40Z: HTTP 503" \
        in status.stdout
