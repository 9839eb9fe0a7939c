"""Command-line and environment settings: the platform URL and the API key, checked before anything starts."""

from __future__ import annotations

import os
import urllib.parse
from pathlib import Path
from typing import Mapping

API_KEY_ENV = "JT_EXPORTER_API_KEY"
API_KEY_FILE_ENV = "JT_EXPORTER_API_KEY_FILE"
PLATFORM_URL_ENV = "JT_EXPORTER_PLATFORM_URL"


class SettingsError(ValueError):
    """A setting is missing or has a value the exporter cannot use; the message names what to set."""


def platform_url(raw: str | None) -> str:
    """Validate the platform's base URL and return it without a trailing slash."""
    if not raw:
        raise SettingsError(f"the platform URL is missing; pass --platform-url http://HOST:PORT or set {PLATFORM_URL_ENV}")

    parsed = urllib.parse.urlsplit(raw.strip())
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SettingsError(f"platform URL {raw!r} is invalid; use http://HOST:PORT or https://HOST")
    if parsed.username or parsed.password:
        # The URL is shown on the landing page and in log lines; credentials there would leak.
        raise SettingsError(f"platform URL must not contain credentials; set the API key in {API_KEY_ENV} instead")
    if parsed.query or parsed.fragment:
        raise SettingsError(f"platform URL {raw!r} must not have a query or fragment; give only the base URL")
    return raw.strip().rstrip("/")


def api_key(key_file: str | None, environ: Mapping[str, str] | None = None) -> str | None:
    """Read the API key from JT_EXPORTER_API_KEY, or from a file (--api-key-file or JT_EXPORTER_API_KEY_FILE).

    The key never comes from the command line, where any local user can read it in the process list.
    """
    environ = os.environ if environ is None else environ
    from_env = environ.get(API_KEY_ENV) or None
    path = key_file or environ.get(API_KEY_FILE_ENV) or None

    if from_env and path:
        raise SettingsError(f"both {API_KEY_ENV} and a key file ({path}) are set; keep only one of them")
    if path:
        return _read_key_file(path)
    return from_env.strip() if from_env else None


def _read_key_file(path: str) -> str:
    try:
        key = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise SettingsError(
            f"cannot read the API key file {path}: {error.strerror}; check the path and its permissions"
        ) from None
    except UnicodeDecodeError:
        raise SettingsError(f"the API key file {path} is not UTF-8 text; write the key as plain text") from None

    if not key:
        raise SettingsError(f"the API key file {path} is empty; write the platform's JT_ADMIN_API_KEY into it")
    return key


def positive_seconds(name: str, raw: str) -> float:
    """Parse a duration option, naming the option in the error."""
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} {raw!r} is not a number of seconds; use a value such as 5") from None
    if not value > 0 or value == float("inf"):
        raise SettingsError(f"{name} must be a positive number of seconds, got {raw!r}")
    return value


def non_negative_seconds(name: str, raw: str) -> float:
    try:
        value = float(raw)
    except ValueError:
        raise SettingsError(f"{name} {raw!r} is not a number of seconds; use 0 to turn it off") from None
    if not value >= 0 or value == float("inf"):
        raise SettingsError(f"{name} must be 0 or a positive number of seconds, got {raw!r}")
    return value
