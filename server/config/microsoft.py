"""The keys only a ``kind = "microsoft"`` source has: its Entra ID app and token cache."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from server.config.reader import (
    Reader,
    Secret,
    StateFolder,
    read_endpoint,
    read_push,
    read_state_file,
)

MICROSOFT_KEYS = {"tenant", "client_id", "client_secret", "client_secret_env",
                  "client_secret_file", "token_cache_file", "user", "push", "graph_url",
                  "login_url"}
GRAPH_URL = "https://graph.microsoft.com/v1.0"
LOGIN_URL = "https://login.microsoftonline.com"
# A GUID, a domain, or common/organizations/consumers; it goes into URL paths.
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,99}")


@dataclass(frozen=True)
class MicrosoftConfig:
    """How a Microsoft 365 source signs in; endpoints are Microsoft's unless a test moves them."""

    tenant: str
    client_id: str
    token_cache_file: Path
    client_secret: Secret | None = field(default=None, repr=False)  # app-only access
    user: str | None = None  # with a client secret: whose calendars (id or address)
    push: bool = False
    graph_url: str = GRAPH_URL
    login_url: str = LOGIN_URL


def read_microsoft(raw: Mapping[str, Any], path: str, reader: Reader, *, name: str,
                   state: StateFolder, base_url: str) -> MicrosoftConfig:
    tenant = reader.typed(raw, "tenant", f"{path}.tenant", str, "common") or "common"
    if not _TENANT.fullmatch(tenant):
        reader.fail(f"{path}.tenant", f"{tenant!r} is not a tenant: use its id (a GUID), its "
                    "domain, or common / organizations / consumers")
    client_id = reader.typed(raw, "client_id", f"{path}.client_id", str, "", required=True) or ""
    secret = reader.secret(raw, "client_secret", f"{path}.client_secret")
    user = reader.typed(raw, "user", f"{path}.user", str)
    if secret is not None and not user:
        reader.fail(f"{path}.user", "is required with client_secret (app-only access reads "
                    "one user's calendars: give their id or address)")
    if user and secret is None:
        reader.fail(f"{path}.user", "only works with client_secret (app-only access); signed "
                    "in with `fbproxy auth microsoft`, fbproxy reads that account's calendars")
    if secret is not None and tenant in ("common", "organizations", "consumers"):
        reader.fail(f"{path}.tenant", "app-only access (client_secret) needs the organization's "
                    "tenant id or domain")
    cache = read_state_file(raw, "token_cache_file", path, reader, state,
                            f"microsoft-{name}.tokens.json")
    push = read_push(raw, path, reader, base_url=base_url, upstream="Microsoft Graph")
    endpoints = {key: read_endpoint(raw, key, f"{path}.{key}", default, reader)
                 for key, default in (("graph_url", GRAPH_URL), ("login_url", LOGIN_URL))}
    return MicrosoftConfig(tenant=tenant, client_id=client_id, token_cache_file=cache,
                           client_secret=secret, user=user, push=push, **endpoints)
