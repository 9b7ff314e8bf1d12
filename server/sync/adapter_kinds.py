"""The closed registry of source kinds: each kind's config turned into its adapter.

Config strings pick an entry here; they never name code to import. An adapter's
module is imported when a source of its kind is made: the client libraries of
the CalDAV, Google and Microsoft adapters take ~25 MiB a process that has no
such source does not need.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from concurrent.futures import Executor, ThreadPoolExecutor
from dataclasses import dataclass

import aiohttp

from adapters.base import SourceAdapter
from adapters.ics import IcsAdapter, IcsSettings
from server.config.model import SourceConfig
from server.kit.clock import Clock
from server.sync.tokens import TokenVaults


@dataclass(frozen=True)
class AdapterContext:
    """What the running server lends every adapter."""

    session: aiohttp.ClientSession
    executor: ThreadPoolExecutor
    clock: Clock
    horizon_days: int
    # Where OAuth sources keep their tokens; None: each in its own file (the adapter's default).
    tokens: TokenVaults | None = None
    # Where CPU-bound work on upstream data runs (the expansion workers); None: executor.
    cpu: Executor | None = None


AdapterFactory = Callable[[SourceConfig, AdapterContext], SourceAdapter]


def _ics_adapter(source: SourceConfig, context: AdapterContext) -> SourceAdapter:
    settings = IcsSettings(
        url=source.url, timeout_seconds=source.timeout.total_seconds(),
        max_bytes=source.max_bytes, username=source.username, password=source.password,
        ca_file=source.ca_file)
    return IcsAdapter(source.name, settings, session=context.session,
                      executor=context.cpu or context.executor)


def _caldav_adapter(source: SourceConfig, context: AdapterContext) -> SourceAdapter:
    from adapters.caldav import CaldavAdapter, CaldavSettings

    settings = CaldavSettings(
        url=source.url, username=source.username, password=source.password,
        calendars=source.calendars, hold_calendar=source.hold_calendar,
        timeout_seconds=source.timeout.total_seconds(), ca_file=source.ca_file)
    return CaldavAdapter(source.name, settings, executor=context.executor)


def _google_adapter(source: SourceConfig, context: AdapterContext) -> SourceAdapter:
    from adapters.google import GoogleAdapter, GoogleSettings

    google = source.google
    assert google is not None, "the config gives every google source its settings"
    settings = GoogleSettings(
        client_id=google.client_id, client_secret=str(google.client_secret),
        token_file=google.token_file, calendars=source.calendars,
        hold_calendar=source.hold_calendar, timeout_seconds=source.timeout.total_seconds(),
        api_endpoint=google.api_endpoint, token_uri=google.token_uri,
        owner_emails=source.owner_emails)
    return GoogleAdapter(source.name, settings, executor=context.executor,
                         tokens=context.tokens.for_source(source) if context.tokens else None,
                         cpu=context.cpu)


def _microsoft_adapter(source: SourceConfig, context: AdapterContext) -> SourceAdapter:
    from adapters.microsoft import MicrosoftAdapter, MicrosoftSettings

    microsoft = source.microsoft
    assert microsoft is not None, "the config gives every microsoft source its settings"
    settings = MicrosoftSettings(
        tenant=microsoft.tenant, client_id=microsoft.client_id,
        token_cache_file=microsoft.token_cache_file,
        client_secret=str(microsoft.client_secret) if microsoft.client_secret else None,
        user=microsoft.user, calendars=source.calendars, hold_calendar=source.hold_calendar,
        graph_url=microsoft.graph_url, login_url=microsoft.login_url,
        timeout_seconds=source.timeout.total_seconds(), horizon_days=context.horizon_days)
    return MicrosoftAdapter(source.name, settings, session=context.session,
                            executor=context.executor, clock=context.clock.now,
                            tokens=context.tokens.for_source(source) if context.tokens else None,
                            cpu=context.cpu)


ADAPTER_KINDS: Mapping[str, AdapterFactory] = {
    "ics": _ics_adapter, "caldav": _caldav_adapter, "google": _google_adapter,
    "microsoft": _microsoft_adapter}
