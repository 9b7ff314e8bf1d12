"""Reading TOML tables for the config: problems collected with their key paths.

The generic pieces every config section uses: the ``Reader`` that gathers
problems, secrets (inline, ``_env`` or ``_file``), and parsers for names,
durations, sizes, listen addresses, bounded numbers and plain text.
"""

from __future__ import annotations

import difflib
import ipaddress
import json
import os
import re
import stat
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import urlsplit
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from server.kit.durations import format_duration, parse_duration

NAME_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.-]{0,63}")
_SIZE = re.compile(r"(\d+)\s*(b|kb|kib|mb|mib|gb|gib)?", re.IGNORECASE)
_SIZE_FACTOR = {
    "b": 1, "kb": 1000, "kib": 1024, "mb": 1000**2, "mib": 1024**2, "gb": 1000**3, "gib": 1024**3,
}
_CONTROL = re.compile(r"[\x00-\x1f\x7f\x85\u2028\u2029]")
_CONTROL_BUT_NEWLINE = re.compile(r"[\x00-\x08\x0b-\x1f\x7f\x85\u2028\u2029]")
ONE_MINUTE = timedelta(minutes=1)
ONE_DAY = timedelta(days=1)

T = TypeVar("T")


class Secret(str):
    """A string that does not show itself in reprs, logs or tracebacks."""

    def __repr__(self) -> str:
        return "Secret('***')"


class Reader:
    """Collects problems while reading a TOML table, each with its key path.

    ``check_files`` also checks the local files fbproxy reads or writes only
    while running (an ICS file, the database's folder, token files): `check-config`
    asks for it; `serve` does not, since a missing ICS file is a sync error the
    status page shows, not a reason to refuse to start.
    """

    def __init__(self, base_dir: Path, *, check_files: bool = False) -> None:
        self.base_dir = base_dir
        self.check_files = check_files
        self.problems: list[str] = []

    def fail(self, key: str, message: str) -> None:
        self.problems.append(f"{key}: {message}")

    def table(self, raw: Mapping[str, Any], key: str, allowed: set[str], *,
              elsewhere: Mapping[str, str] | None = None) -> Mapping[str, Any]:
        """Report keys not in ``allowed``; ``elsewhere`` says where a key that is
        valid in another kind of table belongs (``max_bytes`` on a CalDAV source)."""
        for unknown in sorted(set(raw) - allowed):
            path = f"{key}.{unknown}" if key else unknown
            hint = (elsewhere or {}).get(unknown)
            self.fail(path, f"unknown key here; {hint}" if hint else unknown_key(unknown, allowed))
        return raw

    def typed(self, raw: Mapping[str, Any], key: str, path: str, kind: type[T],
              default: T | None = None, required: bool = False) -> T | None:
        if key not in raw:
            if required:
                self.fail(path, "is required")
            return default
        value = raw[key]
        # bool is an int subclass: "port = true" must not pass as a number.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.fail(path, f"{value!r} is not a {kind.__name__}")
            return default
        return value

    def converted(self, raw: Mapping[str, Any], key: str, path: str, default: T,
                  convert: Callable[[Any], T]) -> T:
        if key not in raw:
            return default
        try:
            return convert(raw[key])
        except (ValueError, TypeError) as exc:
            self.fail(path, str(exc))
            return default

    def secret(self, raw: Mapping[str, Any], key: str, path: str) -> Secret | None:
        """Read ``key``, ``key_env`` or ``key_file`` (at most one of them)."""
        given = [k for k in (key, f"{key}_env", f"{key}_file") if k in raw]
        if len(given) > 1:
            self.fail(path, f"give only one of {', '.join(given)}")
            return None
        if not given:
            return None
        which = given[0]
        value = raw[which]
        where = f"{path}{which[len(key):]}"
        if not isinstance(value, str) or not value:
            self.fail(where, f"{value!r} is not a non-empty string")
            return None
        if which.endswith("_env"):
            if value not in os.environ:
                self.fail(where, f"environment variable {value} is not set")
                return None
            return Secret(os.environ[value].strip())
        if which.endswith("_file"):
            return self._secret_file(value, where)
        return Secret(value)

    def _secret_file(self, name: str, where: str) -> Secret | None:
        # "${CREDENTIALS_DIRECTORY}/feed" reads a systemd credential (LoadCredential=).
        file_path = self.path(os.path.expandvars(name))
        try:
            text = file_path.read_text(encoding="utf-8").strip()
            mode = file_path.stat().st_mode
        except OSError as exc:
            self.fail(where, f"cannot read {file_path}: {exc.strerror}")
            return None
        # systemd grants credentials through an ACL that shows as group bits: trust its folder.
        if mode & (stat.S_IRWXG | stat.S_IRWXO) and not _in_credentials_directory(file_path):
            self.fail(where, f"{file_path} is readable by others; chmod 600 it")
            return None
        return Secret(text)

    def path(self, value: str) -> Path:
        expanded = Path(os.path.expanduser(value))
        return expanded if expanded.is_absolute() else (self.base_dir / expanded)

    def readable_file(self, value: str, where: str) -> Path:
        """``value`` as a path; with ``check_files``, a problem unless it can be read now."""
        file_path = self.path(value)
        if self.check_files:
            try:
                with file_path.open("rb"):
                    pass
            except OSError as exc:
                self.fail(where, f"cannot read {file_path}: {exc.strerror}"
                          f"{self._relative_note(value)}")
        return file_path

    def writable_file(self, value: str, where: str) -> Path:
        """``value`` as a path; with ``check_files``, a problem unless fbproxy could
        write it: the file, or the folder it would be created in (missing folders
        are created, so the nearest one that exists must take new entries)."""
        file_path = self.path(value)
        if self.check_files:
            problem = _not_writable(file_path)
            if problem:
                self.fail(where, f"{problem}{self._relative_note(value)}")
        return file_path

    def _relative_note(self, value: str) -> str:
        if Path(os.path.expanduser(value)).is_absolute():
            return ""
        return f" (a relative path is read from the config file's folder, {self.base_dir})"

    def zone(self, raw: Mapping[str, Any], path: str, default: str) -> str:
        name = self.typed(raw, "timezone", path, str, default)
        assert name is not None
        try:
            ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            self.fail(path, f"{name!r} is not an IANA time zone; use e.g. \"Europe/Berlin\"")
            return default
        return name


def unknown_key(key: str, allowed: set[str]) -> str:
    """The message for an unknown key: the likely typo's fix, else every valid key."""
    close = difflib.get_close_matches(key, sorted(allowed), n=1, cutoff=0.75)
    if close:
        return f"unknown key; did you mean {shown(close[0])}?"
    return f"unknown key; valid keys here are {', '.join(sorted(allowed))}"


def kinds_taking(kind_keys: Mapping[str, set[str]], noun: str) -> dict[str, str]:
    """For ``Reader.table``'s ``elsewhere``: each kind-specific key -> which kinds take it."""
    kinds: dict[str, list[str]] = {}
    for kind, keys in kind_keys.items():
        for key in keys:
            kinds.setdefault(key, []).append(kind)
    return {key: f"only {_either(names)} {noun} take it" for key, names in kinds.items()}


def _either(names: list[str]) -> str:
    quoted = [shown(name) for name in names]
    return quoted[0] if len(quoted) == 1 else f"{', '.join(quoted[:-1])} or {quoted[-1]}"


def _not_writable(file_path: Path) -> str | None:
    """Why fbproxy could not write ``file_path`` (None: it could)."""
    if file_path.is_dir():
        return f"{file_path} is a folder; name a file in it"
    # SQLite also writes its journal next to the database: the folder must take new files.
    folder = file_path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not folder.is_dir():
        return f"cannot create {file_path}: {folder} is not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"cannot write {file_path}: the folder {folder} is not writable"
    if file_path.exists() and not os.access(file_path, os.R_OK | os.W_OK):
        return f"cannot write {file_path}: permission denied"
    return None


def _in_credentials_directory(path: Path) -> bool:
    folder = os.environ.get("CREDENTIALS_DIRECTORY")
    return folder is not None and path.resolve().is_relative_to(Path(folder).resolve())


def parse_listen(value: object) -> tuple[str, int]:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a string like \"127.0.0.1:8080\"")
    host, sep, port_text = value.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ValueError(
            f"{value!r} is not HOST:PORT; use e.g. \"127.0.0.1:8080\" or \"[::1]:8080\"")
    return host, int(port_text)


def parse_size(value: object) -> int:
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    match = _SIZE.fullmatch(value.strip()) if isinstance(value, str) else None
    if not match:
        raise ValueError(f"{value!r} is not a size; use bytes or e.g. \"20MiB\", \"500KB\"")
    return int(match.group(1)) * _SIZE_FACTOR[(match.group(2) or "b").lower()]


IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


def parse_networks(value: object) -> tuple[IPNetwork, ...]:
    """A list of addresses or CIDR networks, e.g. ["127.0.0.1", "10.0.0.0/8"]."""
    if not isinstance(value, list) or not all(isinstance(item, str) for item in value):
        raise ValueError(f"{value!r} is not a list of addresses like [\"127.0.0.1\"]")
    networks = []
    for item in value:
        try:
            networks.append(ipaddress.ip_network(item.strip(), strict=False))
        except ValueError as exc:
            raise ValueError(f"{item!r} is not an IP address or network like "
                             "\"10.0.0.0/8\"") from exc
    return tuple(networks)


def parse_duration_value(value: object) -> timedelta:
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a duration; use e.g. \"5m\", \"30s\", \"1h\"")
    return parse_duration(value)


def read_name(raw: Mapping[str, Any], path: str, reader: Reader, seen: set[str]) -> str:
    name = reader.typed(raw, "name", f"{path}.name", str, required=True)
    if name is None:
        return ""
    if not NAME_PATTERN.fullmatch(name):
        reader.fail(f"{path}.name", f"{name!r} must be 1-64 letters, digits, '_', '.', '-'")
    elif name in seen:
        reader.fail(f"{path}.name", f"{name!r} is used twice; names must be unique")
    seen.add(name)
    return name


def list_of_tables(raw: Mapping[str, Any], key: str, reader: Reader,
                   path: str | None = None) -> list[Mapping[str, Any]]:
    value = raw.get(key, [])
    if not isinstance(value, list) or not all(isinstance(t, dict) for t in value):
        header = re.sub(r"\[\d+\]", "", path or key)
        reader.fail(path or key, f"must be an array of tables ([[{header}]])")
        return []
    return value


def shown(value: object) -> str:
    """A value as the message shows it: strings in double quotes, like in the TOML file."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


def read_text(raw: Mapping[str, Any], key: str, path: str, reader: Reader, *, limit: int,
              required: bool = False, multiline: bool = False) -> str:
    """Plain text shown to guests: bounded, and free of control characters."""
    where = f"{path}.{key}"
    text = reader.typed(raw, key, where, str, required=required)
    if text is None:
        return ""
    if required and not text.strip():
        reader.fail(where, "is empty")
    elif len(text) > limit:
        reader.fail(where, f"is {len(text)} characters long; use at most {limit}")
    elif multiline and _CONTROL_BUT_NEWLINE.search(text):
        reader.fail(where, "contains a control character; only line breaks and tabs may appear")
    elif not multiline and _CONTROL.search(text):
        reader.fail(where, "contains a line break or another control character; keep it to one "
                    "line of plain text")
    return text


def read_choice(raw: Mapping[str, Any], key: str, path: str, reader: Reader,
                choices: tuple[str, ...]) -> str:
    """One of ``choices``; the first is the default."""
    value = reader.typed(raw, key, f"{path}.{key}", str, choices[0])
    if value not in choices:
        reader.fail(f"{path}.{key}", f"{shown(value)} is not valid; use "
                    + " or ".join(shown(c) for c in choices))
        return choices[0]
    return value


def read_int(raw: Mapping[str, Any], key: str, path: str, reader: Reader, default: int | None,
             *, low: int, high: int | None = None) -> int | None:
    value = reader.typed(raw, key, f"{path}.{key}", int)
    if value is None:
        return default
    if value < low or (high is not None and value > high):
        limits = f"use {low} to {high}" if high is not None else f"use at least {low}"
        reader.fail(f"{path}.{key}", f"{value} is out of range; {limits}")
        return default
    return value


def checked_duration(value: object, path: str, reader: Reader, *, low: timedelta,
                     high: timedelta, whole_minutes: bool) -> timedelta | None:
    try:
        duration = parse_duration_value(value)
    except ValueError as exc:
        reader.fail(path, str(exc))
        return None
    if whole_minutes and duration % ONE_MINUTE:
        reader.fail(path, f"{shown(value)} is not a whole number of minutes")
    elif duration < low:
        reader.fail(path, f"{shown(value)} is too short; use at least {shown_duration(low)}")
    elif duration > high:
        reader.fail(path, f"{shown(value)} is too long; use at most {shown_duration(high)}")
    else:
        return duration
    return None


def shown_duration(value: timedelta) -> str:
    """A duration for a message: whole days as "365d", not "52w1d"."""
    days, rest = divmod(value, ONE_DAY)
    return shown(f"{days}d" if days and not rest else format_duration(value))


def read_duration(raw: Mapping[str, Any], key: str, path: str, reader: Reader,
                  default: timedelta, *, low: timedelta = timedelta(0),
                  high: timedelta = ONE_DAY, whole_minutes: bool = False) -> timedelta:
    if key not in raw:
        return default
    duration = checked_duration(raw[key], f"{path}.{key}", reader, low=low, high=high,
                                whole_minutes=whole_minutes)
    return default if duration is None else duration


def read_endpoint(raw: Mapping[str, Any], key: str, path: str, default: str,
              reader: Reader) -> str:
    """An upstream's base URL: https, or http on loopback only (test servers)."""
    value = reader.typed(raw, key, path, str, default) or default
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        reader.fail(path, f"{value!r} is not an http(s) URL")
        return default
    if parts.scheme == "http" and not is_loopback(value):
        reader.fail(path, f"{value!r}: only a loopback address may use http")
        return default
    return value.rstrip("/")


LOOPBACK_HOSTS = ("127.0.0.1", "::1", "localhost")


def is_loopback(url: str) -> bool:
    return urlsplit(url).hostname in LOOPBACK_HOSTS


def read_push(raw: Mapping[str, Any], path: str, reader: Reader, *, base_url: str,
              upstream: str) -> bool:
    """``push``: the upstream notifies ``base_url``, which it only does over https."""
    push = bool(reader.typed(raw, "push", f"{path}.push", bool, False))
    if push and urlsplit(base_url).scheme != "https" and not is_loopback(base_url):
        reader.fail(f"{path}.push", f"{upstream} only notifies https addresses: set "
                    "server.base_url to fbproxy's public https URL, or leave push off "
                    "(polling still works)")
    return push


@dataclass(frozen=True)
class StateFolder:
    """Where files fbproxy writes (token files) go when the config names none."""

    path: Path
    # True: nothing more to check (the folder is the SQLite database's, which
    # check-config checks as server.database; with PostgreSQL the files are not
    # used); False: each default file is checked under the key that would name it.
    checked: bool


def read_state_file(raw: Mapping[str, Any], key: str, path: str, reader: Reader,
                    state: StateFolder, default_name: str) -> Path:
    """A file fbproxy writes tokens to; by default ``default_name`` in ``state``'s folder."""
    where = f"{path}.{key}"
    name = reader.typed(raw, key, where, str)
    if name:
        return reader.writable_file(name, where)
    default = state.path / default_name
    if state.checked or not reader.check_files:
        return default
    problem = _not_writable(default)
    if problem:
        reader.fail(where, f"{problem} (with a PostgreSQL database, token files go in the "
                    f"config file's folder unless {key} names one)")
    return default
