"""Sending notices through apprise: the configured URLs (with `${ENV}` expanded), masked for
every log line and command output, one apprise object per URL so each target's outcome is known.

    notifier = Notifier.from_settings(settings)          # ConfigError naming a missing ${VAR}
    delivery = notifier.send("title", "body", "failure")  # Delivery(delivered, targets, failed)

URLs hold secrets (tokens, passwords): only `mask(url)` (scheme and host) is ever printed.
"""

from __future__ import annotations

import ipaddress
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from jobengine.config import Settings
from jobengine.errors import ConfigError

log = logging.getLogger("jobengine.alerts")

#: seconds one apprise call may take (every target of one notice)
SEND_TIMEOUT = 30.0
LEVELS = ("info", "success", "warning", "failure")
_VAR = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)\}")


def expand(url: str, env: Mapping[str, str], where: str = "alerts.urls") -> str:
    """`${NAME}` replaced by the environment's NAME; a missing one is a ConfigError naming it
    (never the URL)."""
    def value(match: re.Match[str]) -> str:
        name = match.group(1)
        if not env.get(name):
            raise ConfigError(f"{where}: ${{{name}}} is not set in the environment ({mask(url)})")
        return env[name]

    return _VAR.sub(value, url)


def resolve_urls(settings: Settings, env: Mapping[str, str] | None = None) -> list[str]:
    """The configured URLs (`[alerts] urls` or JOBENGINE_ALERT_URLS) with `${ENV}` expanded."""
    env = os.environ if env is None else env
    return [expand(u, env) for u in settings.alert_urls]


def _looks_like_host(host: str) -> bool:
    if host == "localhost" or "." in host.strip("."):
        return True
    try:
        ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return False
    return True


def mask(url: str) -> str:
    """`scheme://host` only (port, path, user, password and query dropped). A "host" that is not a
    host name (Slack's and Discord's first token, an ntfy topic) is hidden too: `slack://…`."""
    scheme, sep, rest = url.partition("://")
    if not sep:
        return "(not a URL)"
    scheme = scheme.strip().lower()
    if "${" in rest.split("/", 1)[0].split("@")[-1]:
        return f"{scheme}://…"
    try:
        host = urlsplit(f"x://{rest}").hostname or ""
    except ValueError:
        host = ""
    return f"{scheme}://{host}" if host and _looks_like_host(host) else f"{scheme}://…"


@dataclass(frozen=True)
class Delivery:
    """What one notice reached: the masked targets that accepted it and those that did not."""

    delivered: tuple[str, ...] = ()
    failed: tuple[str, ...] = ()

    @property
    def ok(self) -> bool:
        """At least one target accepted it and none refused."""
        return bool(self.delivered) and not self.failed

    @property
    def any(self) -> bool:
        return bool(self.delivered)


class Notifier:
    """The configured apprise targets; `send` posts one notice to each of them."""

    def __init__(self, urls: Sequence[str], timeout: float = SEND_TIMEOUT) -> None:
        import apprise

        self.timeout = timeout
        self.targets: list[tuple[str, Any]] = []
        self.invalid: list[str] = []  # masked URLs apprise refused (unknown scheme, bad token)
        for url in urls:
            obj = apprise.Apprise()
            if obj.add(url):
                self.targets.append((mask(url), obj))
            else:
                self.invalid.append(mask(url))
                log.warning("alert URL %s is not one apprise understands: it is skipped", mask(url))

    @classmethod
    def from_settings(cls, settings: Settings, env: Mapping[str, str] | None = None) -> Notifier:
        return cls(resolve_urls(settings, env))

    def __len__(self) -> int:
        return len(self.targets)

    @property
    def masked(self) -> list[str]:
        return [m for m, _ in self.targets] + self.invalid

    def send(self, title: str, body: str, level: str = "info") -> Delivery:
        """Post the notice to every target; never raises for a target that fails (logged, masked)."""
        import apprise

        notify_type = {"info": apprise.NotifyType.INFO, "success": apprise.NotifyType.SUCCESS,
                       "warning": apprise.NotifyType.WARNING, "failure": apprise.NotifyType.FAILURE}[level]
        delivered: list[str] = []
        failed = list(self.invalid)
        for masked, obj in self.targets:
            try:
                ok = bool(obj.notify(body=body, title=title, notify_type=notify_type, timeout=self.timeout))
            except Exception as exc:  # a plugin's own bug must not stop the other targets
                log.warning("alert to %s raised %s", masked, type(exc).__name__)
                ok = False
            (delivered if ok else failed).append(masked)
            if not ok:
                log.warning("alert %r not delivered to %s", title, masked)
        return Delivery(tuple(delivered), tuple(failed))
