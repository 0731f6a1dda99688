"""Redis clients from URLs: redis://, rediss:// (TLS), unix:// and redis+sentinel://.

    connection = redis_from_url("redis+sentinel://:secret@s1:26379,s2:26379/mymaster/0"
                                "?sentinel_password=x", socket_timeout=10)

redis://, rediss:// and unix:// go to redis-py's `Redis.from_url` unchanged (TLS options such as
`ssl_cert_reqs`, `ssl_ca_certs`, `ssl_certfile`, `ssl_keyfile` in the query). A redis+sentinel://
URL names the sentinels, the service (master name) and the db; the client comes from redis-py's
`Sentinel(...).master_for(...)`: each new connection asks the sentinels for the current master,
and a connection to a demoted master is dropped (ReadOnlyError). The password in the URL is the
Redis servers'; the query's own keys are `sentinel_password`, `sentinel_username`, `ssl` (TLS to
the Redis servers) and `sentinel_ssl` (TLS to the sentinels, default: as `ssl`); every other key
is redis-py's (`socket_timeout`, `ssl_ca_certs`, ...) and applies to the Redis servers (the
`ssl_*` ones to TLS sentinels too). Sentinel clients retry failed commands and connects with a
backoff (`FAILOVER_RETRY`), so a failover costs callers a pause instead of an error.
"""

from __future__ import annotations

import copy
from typing import Any
from urllib.parse import parse_qsl

import redis
from redis.backoff import ExponentialBackoff, NoBackoff
from redis.connection import SSLConnection, parse_url, to_bool
from redis.retry import Retry
from redis.sentinel import Sentinel, SentinelConnectionPool, SentinelManagedConnection

from jobengine import validate as v
from jobengine.errors import ConfigError

FAILOVER_RETRY = Retry(ExponentialBackoff(cap=0.5, base=0.05), retries=10)
"""Retry of connects and commands on ConnectionError/TimeoutError: about 4 s of backoff per
connect, asking the sentinels each time (a failover with down-after-milliseconds 1000 took
2.7 s in tests/e2e/test_sentinel.py); with no master named for longer, a call fails then."""

_OWN = ("sentinel_password", "sentinel_username", "ssl", "sentinel_ssl")


class FailoverConnection(SentinelManagedConnection):
    """A sentinel-managed connection that asks the sentinels again whenever it reconnects.

    redis-py 8.1 reconnects a dropped socket in `send_packed_command` through
    `connect_check_health`, to the address it had: after a failover, the dead master, for every
    retry (redis-py issues #3560, #3874). Here it goes through `connect()`, which resolves the
    master (with the retry) first."""

    def send_packed_command(self, command: Any, check_health: bool = True) -> None:
        if not self._sock:
            self.connect()
        super().send_packed_command(command, check_health)


class FailoverSSLConnection(FailoverConnection, SSLConnection):
    """FailoverConnection over TLS."""


def redis_from_url(url: str, **options: Any) -> redis.Redis:
    """A Redis client for `url`; `options` are redis-py keyword arguments (the URL's query wins,
    as in `Redis.from_url`). Raises ConfigError on a malformed redis+sentinel:// URL."""
    if not url.lower().startswith(f"{v.SENTINEL_SCHEME}://"):
        return redis.Redis.from_url(url, **options)
    try:
        parts = v.sentinel_url(url)
    except ValueError as exc:
        raise ConfigError(f"Redis URL: {exc}; expected {v.SENTINEL_FORM}") from None
    own: dict[str, str] = {}
    rest: list[str] = []
    for pair in filter(None, parts.query.split("&")):
        key_value = parse_qsl(pair, keep_blank_values=True)
        if key_value and key_value[0][0] in _OWN:
            own[key_value[0][0]] = key_value[0][1]
        else:
            rest.append(pair)
    kwargs = {**options, **parse_url("redis://?" + "&".join(rest))}  # redis-py's own query parsing
    if parts.db is not None and "db" not in kwargs:
        kwargs["db"] = parts.db
    if parts.username is not None:
        kwargs["username"] = parts.username
    if parts.password is not None:
        kwargs["password"] = parts.password
    ssl = to_bool(own.get("ssl")) or False
    kwargs["connection_class"] = FailoverSSLConnection if ssl else FailoverConnection
    kwargs.setdefault("retry", copy.deepcopy(FAILOVER_RETRY))
    sentinel_kwargs: dict[str, Any] = {k: val for k, val in kwargs.items() if k.startswith("socket_")}
    sentinel_kwargs["retry"] = Retry(NoBackoff(), 0)  # a dead sentinel is skipped at once
    if to_bool(own.get("sentinel_ssl")) if "sentinel_ssl" in own else ssl:
        sentinel_kwargs.update({k: val for k, val in kwargs.items() if k.startswith("ssl_")}, ssl=True)
    if own.get("sentinel_password"):
        sentinel_kwargs["password"] = own["sentinel_password"]
    if own.get("sentinel_username"):
        sentinel_kwargs["username"] = own["sentinel_username"]
    sentinel = Sentinel(parts.sentinels, sentinel_kwargs=sentinel_kwargs)
    return sentinel.master_for(parts.service, **kwargs)


def where(connection: redis.Redis) -> str:
    """Where `connection` points, for messages: host:port/db, a socket path, or the sentinel
    service and the master it last resolved (no password)."""
    pool = connection.connection_pool
    kw = pool.connection_kwargs
    if isinstance(pool, SentinelConnectionPool):
        master = pool.master_address
        at = f"{master[0]}:{master[1]}" if master else "not resolved yet"
        return f"sentinel service {pool.service_name} (master {at})/{kw.get('db', 0)}"
    return kw.get("path") or f"{kw.get('host', '?')}:{kw.get('port', '?')}/{kw.get('db', 0)}"
