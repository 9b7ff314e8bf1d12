"""`fbproxy auth google|microsoft`: sign a source's account in once and store its tokens.

Google: the installed-app OAuth flow with a loopback redirect. Microsoft: the
device-code flow (a code to enter at microsoft.com/devicelogin), which also
works on a server without a browser. The tokens go where the source's adapter
reads them (its ``TokenVault``): a 0600 file with SQLite, the database
(encrypted) with PostgreSQL, so every instance has them.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msal
from google_auth_oauthlib.flow import InstalledAppFlow

from adapters import microsoft
from adapters.base import AdapterError, AuthExpired, TokenVault
from adapters.google import scopes_for, token_document
from server.config.model import Config, SourceConfig

PROMPT = ("Open this address in a browser and allow access (on a server without one, "
          "forward the port first: ssh -L {port}:127.0.0.1:{port} this-host):\n{{url}}")
DONE = "fbproxy has the access it needs. You can close this tab."


def receives_holds(config: Config, source: SourceConfig) -> bool:
    """Whether any booking page writes holds to this source (then it needs write access)."""
    return any(target.source == source.name for page in config.booking_pages
               for target in page.hold_target.values())


async def authorize_google(config: Config, source: SourceConfig, tokens: TokenVault, *,
                           open_browser: bool, port: int = 0) -> None:
    """Run the consent flow on a loopback redirect; store the refresh token in ``tokens``."""
    document = await asyncio.to_thread(_google_consent, config, source,
                                       open_browser=open_browser, port=port)
    await tokens.save(document)


def _google_consent(config: Config, source: SourceConfig, *, open_browser: bool,
                    port: int) -> str:
    """The consent flow (blocking: it waits for the browser); the token document."""
    google = source.google
    if google is None:
        raise AdapterError(f"source {source.name} is of kind {source.kind}, not google")
    scopes = scopes_for(receives_holds(config, source))
    flow = InstalledAppFlow.from_client_config({"installed": {
        "client_id": google.client_id, "client_secret": str(google.client_secret),
        "auth_uri": google.auth_uri, "token_uri": google.token_uri,
        "redirect_uris": ["http://127.0.0.1"]}}, scopes=scopes)
    credentials = flow.run_local_server(
        host="127.0.0.1", bind_addr="127.0.0.1", port=port, open_browser=open_browser,
        authorization_prompt_message=PROMPT.format(port=port or "PORT"),
        success_message=DONE, timeout_seconds=600,
        # offline + consent: Google hands out a refresh token even when re-authorizing.
        access_type="offline", prompt="consent")
    refresh_token = getattr(credentials, "refresh_token", None)
    if not refresh_token:
        raise AdapterError("Google returned no refresh token; revoke fbproxy's access at "
                           "https://myaccount.google.com/permissions and run this again",
                           source=source.name)
    return token_document(refresh_token, scopes, google.token_uri)


async def sign_in_microsoft(config: Config, source: SourceConfig, tokens: TokenVault, *,
                            show: Callable[[str], None]) -> str:
    """The device-code flow, adding to the cache in ``tokens``; the account signed in."""
    settings = source.microsoft
    if settings is None:
        raise AdapterError(f"source {source.name} is of kind {source.kind}, not microsoft")
    adapter_settings = microsoft.MicrosoftSettings(
        tenant=settings.tenant, client_id=settings.client_id,
        token_cache_file=settings.token_cache_file, login_url=settings.login_url,
        client_secret=str(settings.client_secret) if settings.client_secret else None)
    scopes = microsoft.scopes_for(receives_holds(config, source))
    cache = msal.SerializableTokenCache()
    try:
        stored = await tokens.load()
        if stored:
            cache.deserialize(stored)
    except (AuthExpired, ValueError):
        # Unreadable (its key is gone, say): this sign-in starts a new cache, which is
        # what the error asking for it promised.
        cache = msal.SerializableTokenCache()
    account = await asyncio.to_thread(microsoft.device_code_flow, adapter_settings, scopes,
                                      show, cache)
    await tokens.save(cache.serialize())
    return account
