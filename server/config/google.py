"""The keys only a ``kind = "google"`` source has: its OAuth client and token file."""

from __future__ import annotations

import json
import stat
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

GOOGLE_KEYS = {"client_secret_file", "client_id", "client_secret", "client_secret_env",
               "token_file", "push", "api_endpoint", "token_uri", "auth_uri"}
GOOGLE_API = "https://www.googleapis.com/calendar/v3/"
GOOGLE_TOKEN_URI = "https://oauth2.googleapis.com/token"
GOOGLE_AUTH_URI = "https://accounts.google.com/o/oauth2/auth"


@dataclass(frozen=True)
class GoogleConfig:
    """How a Google source authenticates; endpoints are Google's unless a test moves them."""

    client_id: str
    client_secret: Secret = field(repr=False)
    token_file: Path
    push: bool = False
    api_endpoint: str = GOOGLE_API
    token_uri: str = GOOGLE_TOKEN_URI
    auth_uri: str = GOOGLE_AUTH_URI


def read_google(raw: Mapping[str, Any], path: str, reader: Reader, *, name: str,
                state: StateFolder, base_url: str) -> GoogleConfig:
    client_id, client_secret = _client(raw, path, reader)
    token_file = read_state_file(raw, "token_file", path, reader, state,
                                 f"google-{name}.token.json")
    push = read_push(raw, path, reader, base_url=base_url, upstream="Google")
    endpoints = {key: read_endpoint(raw, key, f"{path}.{key}", default, reader)
                 for key, default in (("api_endpoint", GOOGLE_API),
                                      ("token_uri", GOOGLE_TOKEN_URI),
                                      ("auth_uri", GOOGLE_AUTH_URI))}
    endpoints["api_endpoint"] += "/"  # the client library joins paths onto it
    return GoogleConfig(client_id=client_id, client_secret=client_secret, token_file=token_file,
                        push=push, **endpoints)


def _client(raw: Mapping[str, Any], path: str, reader: Reader) -> tuple[str, Secret]:
    """The OAuth client: Google's downloaded JSON, or client_id with a client_secret."""
    if "client_secret_file" in raw and "client_id" not in raw:
        where = f"{path}.client_secret_file"
        name = reader.typed(raw, "client_secret_file", where, str)
        if name is None:
            return "", Secret("")
        return _client_file(reader.path(name), where, reader)
    client_id = reader.typed(raw, "client_id", f"{path}.client_id", str, "", required=True) or ""
    secret = reader.secret(raw, "client_secret", f"{path}.client_secret")
    if secret is None:
        reader.fail(f"{path}.client_secret", "is required (or client_secret_env, "
                    "client_secret_file, or only client_secret_file as downloaded from Google)")
        secret = Secret("")
    return client_id, secret


def _client_file(file_path: Path, where: str, reader: Reader) -> tuple[str, Secret]:
    try:
        text = file_path.read_text(encoding="utf-8")
        mode = file_path.stat().st_mode
    except OSError as exc:
        reader.fail(where, f"cannot read {file_path}: {exc.strerror}")
        return "", Secret("")
    if mode & (stat.S_IRWXG | stat.S_IRWXO):
        reader.fail(where, f"{file_path} is readable by others; chmod 600 it")
        return "", Secret("")
    try:
        document = json.loads(text)
        client = document.get("installed") or document.get("web")
        return str(client["client_id"]), Secret(str(client["client_secret"]))
    except (ValueError, KeyError, TypeError, AttributeError):
        reader.fail(where, f"{file_path} is not an OAuth client file from Google Cloud Console "
                    "(a JSON object with \"installed\": {client_id, client_secret})")
        return "", Secret("")
