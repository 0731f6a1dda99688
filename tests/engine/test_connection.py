"""Redis URLs: the redis+sentinel:// form parsed and checked, options reaching redis-py's clients.
(Servers: tests/e2e/test_sentinel.py for a failover, tests/e2e/test_redis_tls.py for TLS.)"""

from __future__ import annotations

import pytest
import redis
from redis.sentinel import SentinelConnectionPool

from jobengine import validate as v
from jobengine.config import Settings
from jobengine.connection import FailoverConnection, FailoverSSLConnection, redis_from_url, where
from jobengine.errors import ConfigError

URL = "redis+sentinel://:s3cret@s1:26380,s2,[::1]:26381/mymaster/2?sentinel_password=sp&socket_timeout=4"


def test_sentinel_url_parts() -> None:
    parts = v.sentinel_url(URL)
    assert parts.sentinels == [("s1", 26380), ("s2", 26379), ("::1", 26381)]
    assert (parts.service, parts.db, parts.username, parts.password) == ("mymaster", 2, None, "s3cret")
    assert v.sentinel_url("redis+sentinel://u:p%40ss@h/svc").password == "p@ss"
    assert v.sentinel_url("redis+sentinel://u:p%40ss@h/svc").username == "u"
    assert v.sentinel_url("redis+sentinel://h:1/svc/").db is None


@pytest.mark.parametrize(("url", "why"), [
    ("redis+sentinel:///mymaster", "names no sentinel host"),
    ("redis+sentinel://h1,,h2/mymaster", "names no sentinel host"),
    ("redis+sentinel://h1:0/mymaster", "bad sentinel address 'h1:0'"),
    ("redis+sentinel://h1:99999/mymaster", "bad sentinel address"),
    ("redis+sentinel://h1:port/mymaster", "bad sentinel address"),
    ("redis+sentinel://h1:26379", "names no service"),
    ("redis+sentinel://h1/my%20master", "bad service name"),
    ("redis+sentinel://h1/mymaster/zero", "the path is /service or /service/db"),
    ("redis+sentinel://h1/mymaster/0/extra", "the path is /service or /service/db"),
])
def test_bad_sentinel_urls_fail_in_one_line(url: str, why: str) -> None:
    with pytest.raises(ConfigError) as err:
        Settings.load(env={}, redis_url=url, database_url="postgresql://x@h/db")
    message = str(err.value)
    assert why in message and "\n" not in message
    assert "expected redis+sentinel://[:password@]host1:26379,host2:26379/mymaster" in message
    with pytest.raises(ConfigError, match=why.replace("[", r"\[")):
        redis_from_url(url)


def test_errors_never_print_the_password() -> None:
    for url in ("redis+sentinel://:hunter2@h1:0/mymaster", "http://user:hunter2@h/0"):
        with pytest.raises(ConfigError) as err:
            Settings.load(env={}, redis_url=url, database_url="postgresql://x@h/db")
        assert "hunter2" not in str(err.value) and "***" in str(err.value)
    assert v.masked("redis+sentinel://u:pw@h/s") == "redis+sentinel://u:***@h/s"
    assert v.masked("redis://h/0") == "redis://h/0"


def test_config_accepts_every_scheme() -> None:
    for url in (URL, "redis://h:6379/0", "rediss://h/0?ssl_cert_reqs=none", "unix:///tmp/r.sock?db=1"):
        assert Settings.load(env={}, redis_url=url, database_url="postgresql://x@h/db").redis_url == url
    env = {"JOBENGINE_REDIS_URL": URL, "JOBENGINE_DATABASE_URL": "postgresql://x@h/db"}
    assert Settings.load(env=env).redis_url == URL


def test_sentinel_client_options() -> None:
    client = redis_from_url(URL, socket_timeout=10, socket_connect_timeout=3, health_check_interval=30)
    pool = client.connection_pool
    assert isinstance(pool, SentinelConnectionPool) and pool.service_name == "mymaster"
    kw = pool.connection_kwargs
    assert pool.connection_class is FailoverConnection
    assert (kw["db"], kw["password"], kw["socket_timeout"], kw["socket_connect_timeout"]) == (2, "s3cret", 4.0, 3)
    assert kw["health_check_interval"] == 30 and kw["retry"].get_retries() == 10
    manager = pool.sentinel_manager
    assert [(s.connection_pool.connection_kwargs["host"], s.connection_pool.connection_kwargs["port"])
            for s in manager.sentinels] == [("s1", 26380), ("s2", 26379), ("::1", 26381)]
    assert manager.sentinel_kwargs["password"] == "sp" and "ssl" not in manager.sentinel_kwargs
    assert manager.sentinel_kwargs["retry"].get_retries() == 0
    assert where(client) == "sentinel service mymaster (master not resolved yet)/2"
    assert "s3cret" not in repr(client)


def test_sentinel_tls_options() -> None:
    tls = redis_from_url("redis+sentinel://h/svc?ssl=true&ssl_ca_certs=/ca.pem&ssl_cert_reqs=required")
    pool = tls.connection_pool
    assert pool.connection_class is FailoverSSLConnection
    assert pool.connection_kwargs["ssl_ca_certs"] == "/ca.pem"
    sentinel_kwargs = pool.sentinel_manager.sentinel_kwargs  # type: ignore[attr-defined]
    assert sentinel_kwargs["ssl"] is True and sentinel_kwargs["ssl_ca_certs"] == "/ca.pem"
    plain_sentinels = redis_from_url("redis+sentinel://h/svc?ssl=true&sentinel_ssl=false&ssl_ca_certs=/ca.pem")
    assert "ssl" not in plain_sentinels.connection_pool.sentinel_manager.sentinel_kwargs  # type: ignore[attr-defined]
    assert plain_sentinels.connection_pool.connection_class is FailoverSSLConnection


def test_plain_urls_are_redis_pys() -> None:
    for url in ("redis://:pw@h:6390/3?socket_timeout=2", "rediss://h/0?ssl_cert_reqs=none", "unix:///tmp/x.sock?db=4"):
        ours = redis_from_url(url, socket_connect_timeout=3)
        theirs = redis.Redis.from_url(url, socket_connect_timeout=3)
        assert ours.connection_pool.connection_class is theirs.connection_pool.connection_class
        assert ours.connection_pool.connection_kwargs.keys() == theirs.connection_pool.connection_kwargs.keys()
    assert where(redis_from_url("redis://h:6390/3")) == "h:6390/3"
    assert where(redis_from_url("unix:///tmp/x.sock?db=4")) == "/tmp/x.sock"
