"""The `fbproxy` command: serve, check-config, sync, urls, status, auth, reload, backup,
migrate-store, rotate-tokens."""

from __future__ import annotations

import argparse
import asyncio
import html
import logging
import os
import sys
from collections.abc import Sequence
from pathlib import Path

from aiohttp import web

from adapters.base import FbproxyError, TokenVault
from adapters.secrets_file import FileTokenVault
from server.app import create_app
from server.config.database import PostgresUrl
from server.config.model import Config, SourceConfig, load_config, reauth_fix
from server.config.pages import BookingPageConfig
from server.config.reader import parse_listen
from server.config.secrets_key import shares_database
from server.errors import ConfigError
from server.kit.clock import SystemClock, iso
from server.outputs.web import RedactingAccessLogger
from server.runtime import Runtime, open_runtime, subscriber_key
from server.store.backup import backup_sqlite
from server.store.transfer import NOT_COPIED, TransferReport, migrate_store
from server.sync.loop import SyncOutcome
from server.sync.tokens import open_token_vaults

EXIT_OK, EXIT_FAILED, EXIT_CONFIG = 0, 1, 2
# syslog priorities; journald reads a "<N>" prefix on each stderr line.
_PRIORITY = {logging.DEBUG: 7, logging.INFO: 6, logging.WARNING: 4, logging.ERROR: 3,
             logging.CRITICAL: 2}


class JournaldFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return f"<{_PRIORITY.get(record.levelno, 6)}>{super().format(record)}"


def setup_logging(level: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if os.environ.get("JOURNAL_STREAM"):
        # journald stamps lines itself.
        handler.setFormatter(JournaldFormatter("%(name)s: %(message)s"))
    else:
        handler.setFormatter(logging.Formatter(
            "%(asctime)s %(levelname)s %(name)s: %(message)s", "%Y-%m-%dT%H:%M:%S"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="fbproxy", description="A self-hosted free/busy proxy.")
    parser.add_argument("--log-level", default="info",
                        choices=["debug", "info", "warning", "error"])
    commands = parser.add_subparsers(dest="command", required=True)

    def command(name: str, help_text: str) -> argparse.ArgumentParser:
        sub = commands.add_parser(name, help=help_text)
        sub.add_argument("--config", default=os.environ.get("FBPROXY_CONFIG", "config.toml"),
                         help="config file (default: $FBPROXY_CONFIG or ./config.toml)")
        return sub

    serve = command("serve", "run the server")
    serve.add_argument("--listen", help="HOST:PORT, overrides server.listen")
    command("check-config", "validate the config and exit")
    sync = command("sync", "sync sources once and exit (non-zero if any failed)")
    sync.add_argument("--source", action="append", help="only this source (repeatable)")
    command("urls", "print every feed and API URL with its secret, and the booking pages")
    command("status", "print each source's last sync, age and error")
    command("reload", "make the running server re-read its config (like systemctl reload)")
    backup = command("backup", "copy the SQLite database consistently, also while fbproxy "
                               "runs (PostgreSQL: use pg_dump)")
    backup.add_argument("path", type=Path, help="the backup file to write")
    backup.add_argument("--force", action="store_true", help="replace PATH if it exists")
    auth = command("auth", "authorize a source's account (OAuth) and store its token")
    auth.add_argument("provider", choices=["google", "microsoft"])
    auth.add_argument("--source", required=True, help="the [[sources]] name to authorize")
    auth.add_argument("--no-browser", action="store_true",
                      help="google: print the address to open instead of opening a browser")
    auth.add_argument("--port", type=int, default=0,
                      help="google: local port for the redirect (default: any free port)")
    migrate = command("migrate-store", "copy the SQLite database into an empty PostgreSQL one")
    target = migrate.add_mutually_exclusive_group(required=True)
    target.add_argument("--to", metavar="URL", help="postgresql://user:password@host/db")
    # The URL carries a password: from the environment or a file it stays out of
    # the shell's history and the process list.
    target.add_argument("--to-env", metavar="VAR", help="the URL is in this environment variable")
    target.add_argument("--to-file", metavar="PATH", help="the URL is in this file")
    command("rotate-tokens", "re-encrypt the OAuth tokens kept in a PostgreSQL database with "
            "the first key of server.secrets_key")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    setup_logging(args.log_level)
    try:
        # check-config also checks the files only needed while running (an ICS
        # file, the database's folder); serve starts without them and reports them.
        config = load_config(args.config, check_files=args.command == "check-config")
        if args.command == "check-config":
            return _check_config(config)
        if args.command == "serve":
            return _serve(config, args.listen)
        if args.command == "auth":
            return _auth(config, args)
        if args.command == "migrate-store":
            return _migrate_store(config, args)
        if args.command == "backup":
            return _backup(config, args.path, force=args.force)
        if args.command == "rotate-tokens":
            return asyncio.run(_rotate_tokens(config))
        return asyncio.run(_offline_command(args.command, config, args))
    except ConfigError as exc:
        print(exc.report(), file=sys.stderr)
        return EXIT_CONFIG
    except FbproxyError as exc:
        print(f"fbproxy: {exc}", file=sys.stderr)
        return EXIT_FAILED


def _check_config(config: Config) -> int:
    enabled = sum(1 for s in config.sources if s.enabled)
    print(f"{config.path}: ok ({len(config.sources)} sources, {enabled} enabled, "
          f"{len(config.calendars)} calendars)")
    # Not a config problem (the config is right, the step after it is missing), but
    # the first sync would fail on it: say so now, with the command that fixes it.
    # (With PostgreSQL the tokens are in the database, which check-config does not open.)
    sources = () if shares_database(config.server.database) else config.sources
    for index, source in enumerate(sources):
        token = _token_file(source)
        if source.enabled and token is not None and not token.exists():
            print(f"note: sources[{index}] ({source.name}) is not authorized yet (no token in "
                  f"{token}); run: {reauth_fix(config, source)}")
    return EXIT_OK


def _token_file(source: SourceConfig) -> Path | None:
    """Where the source's OAuth token is kept, if it needs one someone grants."""
    if source.google is not None:
        return source.google.token_file
    if source.microsoft is not None and source.microsoft.client_secret is None:
        return source.microsoft.token_cache_file  # app-only access signs in by itself
    return None


def _auth(config: Config, args: argparse.Namespace) -> int:
    source = config.source(args.source)
    if source is None or source.kind != args.provider:
        names = [s.name for s in config.sources if s.kind == args.provider]
        print(f"--source: {args.source!r} is not a {args.provider} source of {config.path}; "
              f"{args.provider} sources: {', '.join(names) or 'none'}", file=sys.stderr)
        return EXIT_CONFIG
    return asyncio.run(_authorize(config, source, args))


async def _authorize(config: Config, source: SourceConfig, args: argparse.Namespace) -> int:
    from server.sync.auth import authorize_google, sign_in_microsoft  # OAuth libraries: only here

    async with open_token_vaults(config) as vaults:
        tokens = vaults.for_source(source)
        assert tokens is not None, "google and microsoft sources keep tokens"
        who = "every instance's next sync" if vaults.in_database else "the next sync"
        if args.provider == "microsoft":
            account = await sign_in_microsoft(config, source, tokens,
                                              show=lambda message: print(message, flush=True))
            print(f"signed in as {account}: the tokens are in {_shown(tokens)}; {who} "
                  "uses them")
            return EXIT_OK
        await authorize_google(config, source, tokens, open_browser=not args.no_browser,
                               port=args.port)
        print(f"authorized: the token is in {_shown(tokens)}; {who} uses it")
        return EXIT_OK


def _shown(tokens: TokenVault) -> str:
    return f"{tokens.path} (mode 0600)" if isinstance(tokens, FileTokenVault) else tokens.where


async def _rotate_tokens(config: Config) -> int:
    if not shares_database(config.server.database):
        print("fbproxy: server.database is SQLite: each source's tokens are in a file of its "
              "own (mode 0600), not encrypted; there is nothing to rotate", file=sys.stderr)
        return EXIT_CONFIG
    async with open_token_vaults(config) as vaults:
        rotation = await vaults.rotate()
        keys = vaults.box.key_count
    print(f"re-encrypted {rotation.rotated} token(s) with the first of the {keys} key(s) in "
          "server.secrets_key")
    if rotation.undecryptable:
        print(f"fbproxy: no key decrypts {', '.join(rotation.undecryptable)}: left as they "
              "were; sign those sources in again with `fbproxy auth`", file=sys.stderr)
        return EXIT_FAILED
    if keys > 1:
        print("if every instance already runs with this key first, the others can now be "
              "removed from server.secrets_key")
    return EXIT_OK


def _migrate_store(config: Config, args: argparse.Namespace) -> int:
    url, problem = _target_url(args)
    if url is None:
        print(f"fbproxy migrate-store: {problem}", file=sys.stderr)
        return EXIT_CONFIG

    async def progress(table: str, done: int, total: int) -> None:
        if done == total:
            print(f"  {table}: {done} rows copied", file=sys.stderr, flush=True)

    target = PostgresUrl(url)
    print(f"copying {config.server.database} into {target.display()}…", file=sys.stderr,
          flush=True)
    report = asyncio.run(migrate_store(config, target, progress=progress))
    _print_transfer(config, report)
    return EXIT_OK


def _target_url(args: argparse.Namespace) -> tuple[str | None, str]:
    """The PostgreSQL URL from --to, --to-env or --to-file; else None and why."""
    if args.to_env is not None:
        url, where = os.environ.get(args.to_env, "").strip(), f"--to-env {args.to_env}"
        if not url:
            return None, f"{where}: the environment variable is not set"
    elif args.to_file is not None:
        where = f"--to-file {args.to_file}"
        try:
            url = Path(args.to_file).read_text().strip()
        except (OSError, UnicodeError) as exc:
            return None, f"{where}: {getattr(exc, 'strerror', None) or exc}"
    else:
        url, where = args.to, "--to"
    if not url.startswith(("postgresql://", "postgres://")):
        return None, f"{where}: not a postgresql:// URL"
    return url, ""


def _print_transfer(config: Config, report: TransferReport) -> None:
    print(f"copied {report.source} into {report.target} in {report.seconds:.1f}s"
          + (f" (its schema upgraded from version {report.upgraded_from} first)"
             if report.upgraded_from is not None else "") + ":")
    print(f"  {'table':<18} {'rows':>9}")
    for table, rows in report.rows.items():
        print(f"  {table:<18} {rows:>9}")
    for table, why in NOT_COPIED.items():
        print(f"  {table:<18} {'-':>9}  not copied: {why}")
    if report.tokens:
        print(f"tokens: {', '.join(report.tokens)} copied from their files into the database, "
              "encrypted with server.secrets_key; with PostgreSQL fbproxy reads them there")
    if report.nul_replaced:
        print(f"note: {report.nul_replaced} text values held NUL characters, which PostgreSQL "
              "cannot store: they hold U+FFFD instead (as the PostgreSQL store does)")
    if report.changed_during_copy:
        print(f"WARNING: fbproxy wrote to {report.source} while it was copied; what it wrote "
              "after the copy began is not in PostgreSQL. Stop fbproxy, empty the target "
              "(drop and create the database) and run migrate-store again.")
    print(f"""next steps:
  1. in {config.path}, [server]: database = "postgresql://…"
     (or database_url_env / database_url_file, to keep the password out of the file)
  2. restart fbproxy (every instance on that database); feed URLs, bookings and
     CalDAV clients' sync tokens carry over
  3. keep {report.source} as a backup: fbproxy no longer writes to it""")


def _backup(config: Config, target: Path, *, force: bool) -> int:
    database = config.server.database
    if not isinstance(database, Path):
        # Never the URL itself: it may carry the password.
        print(f"fbproxy backup: server.database is PostgreSQL ({database.display()}); "
              "fbproxy backup copies SQLite only. Back PostgreSQL up with pg_dump: "
              f"pg_dump --format=custom --file={target} --dbname='<the database URL>'",
              file=sys.stderr)
        return EXIT_FAILED
    result = backup_sqlite(database, target, force=force)
    print(f"backed up {database} to {result.path} ({result.size} bytes, schema version "
          f"{result.schema_version})")
    return EXIT_OK


KEEPALIVE_SECONDS = 75.0


def _serve(config: Config, listen: str | None) -> int:
    host, port = config.server.listen_host, config.server.listen_port
    if listen:
        try:
            host, port = parse_listen(listen)
        except ValueError as exc:
            print(f"--listen: {exc}", file=sys.stderr)
            return EXIT_CONFIG
    app = create_app(config, handle_signals=True)
    logging.getLogger("fbproxy").info("listening on http://%s:%d (base_url %s)", host, port,
                                      config.server.base_url)
    # keepalive_timeout also bounds a connection that never finishes a request
    # (aiohttp arms it when the connection opens): a slow-loris client holds a
    # socket for at most this long.
    web.run_app(app, host=host, port=port, print=None, keepalive_timeout=KEEPALIVE_SECONDS,
                access_log_class=RedactingAccessLogger,
                access_log=logging.getLogger("fbproxy.access"))
    return EXIT_OK


async def _offline_command(command: str, config: Config, args: argparse.Namespace) -> int:
    async with open_runtime(config, clock=SystemClock()) as runtime:
        if command == "sync":
            return await _sync(runtime, args.source)
        if command == "urls":
            await _print_urls(runtime)
            return EXIT_OK
        if command == "reload":
            return await _reload(runtime)
        return await _status(runtime)


async def _sync(runtime: Runtime, names: list[str] | None) -> int:
    unknown = sorted(set(names or ()) - set(runtime.sync.syncers))
    if unknown:
        print(f"no enabled source named {', '.join(unknown)}", file=sys.stderr)
        return EXIT_CONFIG
    total = len(names) if names else len(runtime.sync.syncers)
    done = 0

    def progress(outcome: SyncOutcome) -> None:
        nonlocal done
        done += 1
        print(f"[{done}/{total}] {_outcome_line(outcome)}", file=sys.stderr, flush=True)

    print(f"syncing {total} source(s)…", file=sys.stderr, flush=True)
    outcomes = await runtime.sync.run_all_once(names, on_done=progress)
    failed = [o for o in outcomes if not o.ok]
    print(f"{total - len(failed)} ok, {len(failed)} failed", file=sys.stderr)
    return EXIT_FAILED if failed else EXIT_OK


def _outcome_line(outcome: SyncOutcome) -> str:
    if not outcome.ok:
        return f"{outcome.source}: FAILED: {outcome.error}"
    what = "unchanged" if outcome.unchanged else (
        f"{outcome.expanded} updated, {outcome.deleted} deleted")
    skipped = f", {len(outcome.skipped)} skipped" if outcome.skipped else ""
    return (f"{outcome.source}: ok, {outcome.items} items, {what}{skipped} "
            f"({outcome.seconds:.2f}s, {outcome.bytes_received} bytes)")


async def _print_urls(runtime: Runtime) -> None:
    from server.outputs.status import admin_secret

    base = runtime.config.server.base_url
    print(f"status page: {base}/status  (any user name, password {await admin_secret(runtime)};"
          " JSON: /api/v1/status with 'Authorization: Bearer <that secret>')")
    for calendar in runtime.config.calendars:
        secret = runtime.calendar_secrets[calendar.name]
        feed = f"{base}/feeds/{secret}"
        webcal = feed.replace("https://", "webcal://", 1).replace("http://", "webcal://", 1)
        print(f"calendar {calendar.name} (sources: {', '.join(calendar.sources)})")
        print(f"  busy feed (subscribe):  {feed}/busy.ics")
        print(f"  webcal link:            {webcal}/busy.ics")
        print(f"  free/busy (VFREEBUSY):  {feed}/freebusy.ics")
        print(f"  CalDAV (read-only):     {base}/caldav/  user {calendar.name}, "
              f"password {secret}")
        for subscriber in calendar.subscribers:
            key = subscriber_key(calendar.name, subscriber.name)
            print(f"  subscriber {subscriber.name} ({subscriber.detail}): "
                  f"{base}/feeds/{runtime.calendar_secrets[key]}/busy.ics")
        print(f"  JSON API:               curl -H 'Authorization: Bearer {secret}' "
              f"'{base}/api/v1/freebusy?calendar={calendar.name}'")
    for page in runtime.config.booking_pages:
        # Public, no secret: the address to hand to guests.
        print(f"booking page {page.slug}: {page.title}")
        print(f"  public page:            {base}/book/{page.slug}")
        print(f"  hosts:                  {', '.join(page.hosts)}")
        print(f"  embed (iframe):         {embed_snippet(base, page)}")
        origins = " ".join(page.look.embed_origins) or \
            "none (list your site in embed_origins to embed the page)"
        print(f"  embeddable from:        {origins}")


def embed_snippet(base: str, page: BookingPageConfig) -> str:
    """The ``<iframe>`` a site in the page's ``embed_origins`` pastes to show it."""
    src = html.escape(f"{base}/book/{page.slug}?embed=1", quote=True)
    return (f'<iframe src="{src}" title="{html.escape(page.title, quote=True)}" '
            'width="100%" height="760" loading="lazy"></iframe>')


async def _reload(runtime: Runtime) -> int:
    """Ask the server listening at server.listen to re-read its config file."""
    import aiohttp

    from server.outputs.status import admin_secret

    server = runtime.config.server
    host = f"[{server.listen_host}]" if ":" in server.listen_host else server.listen_host
    if host in ("0.0.0.0", "[::]"):
        host = "127.0.0.1"
    url = f"http://{host}:{server.listen_port}/api/v1/reload"
    headers = {"Authorization": f"Bearer {await admin_secret(runtime)}"}
    try:
        async with aiohttp.ClientSession() as session, \
                session.post(url, headers=headers, timeout=aiohttp.ClientTimeout(total=30)) \
                as response:
            answer = await response.json(content_type=None)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        print(f"fbproxy reload: no server answered at {url}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    if response.status != 200:
        print(f"fbproxy reload: {answer.get('error', response.status)}", file=sys.stderr)
        return EXIT_CONFIG if response.status == 400 else EXIT_FAILED
    changes = answer.get("changes") or ["no source changed"]
    print("reloaded: " + "; ".join(changes))
    return EXIT_OK


HOLDS_SHOWN = 20  # undelivered holds listed one by one; the counts above cover all


async def _status(runtime: Runtime) -> int:
    now = int(runtime.clock.now().timestamp())
    records = {r.name: r for r in await runtime.store.sources()}
    print(f"{'source':<20} {'kind':<8} {'items':>6} {'last success':<21} {'age':>8}  state")
    worst = EXIT_OK
    for source in runtime.config.sources:
        record = records.get(source.name)
        last = record.last_success if record else None
        age = f"{now - last}s" if last else "-"
        if not source.enabled:
            state = "disabled"
        elif record and record.needs_reauth:
            state, worst = f"NEEDS RE-AUTHORIZATION: {record.last_error}", EXIT_FAILED
        elif record and record.last_error:
            state, worst = f"failing ({record.consecutive_failures}x): {record.last_error}", \
                EXIT_FAILED
        elif last is None:
            state = "never synced"
        elif now - last > source.stale_after.total_seconds():
            state, worst = "STALE", EXIT_FAILED
        else:
            state = "ok"
        items = record.item_count if record else 0
        print(f"{source.name:<20} {source.kind:<8} {items:>6} "
              f"{iso(last) if last else '-':<21} {age:>8}  {state}")
    summary = await runtime.store.hold_summary()
    if summary:
        print("\nholds (bookings written upstream):")
        for action, state, count, error in summary:
            note = f"  last error: {error}" if state == "pending" and error else ""
            print(f"  {action:<7} {state:<8} {count:>5}{note}")
        for hold in await runtime.store.undelivered_holds(limit=HOLDS_SHOWN):
            tried = f"{hold.attempts} attempt(s), next {iso(hold.next_attempt)}" \
                if hold.attempts else f"due {iso(hold.next_attempt)}"
            error = f": {hold.last_error}" if hold.last_error else ""
            print(f"  - {hold.booking_id} {hold.host} {hold.action} -> {hold.source}, "
                  f"{tried}{error}")
    mail = await runtime.store.mail_summary(now)
    if runtime.config.mail is not None or mail.pending or mail.sent:
        note = f"; last error: {mail.last_error}" if mail.last_error else ""
        print(f"\nmail (guests and hosts): {mail.sent} sent, {mail.pending} waiting, "
              f"{mail.failing} failing, {mail.dropped} dropped{note}")
        if mail.failing:
            worst = EXIT_FAILED
    return worst


if __name__ == "__main__":
    sys.exit(main())
