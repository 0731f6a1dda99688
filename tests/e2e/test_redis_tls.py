"""TLS: rediss:// and redis+sentinel://...?ssl=true against redis-server and a sentinel started
with TLS only (a CA and a server certificate made by `openssl` in a tmp dir; Debian's
redis-server is built with TLS)."""

from __future__ import annotations

import shutil
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from jobengine import Engine
from jobengine.config import Settings
from jobengine.connection import redis_from_url, where
from tests.e2e.private_servers import free_port
from tests.engine import jobs


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


@pytest.fixture
def certs(tmp_path: Path) -> Path:
    if not shutil.which("openssl") or not shutil.which("redis-server"):
        pytest.skip("needs openssl and redis-server")
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key", "-out", "ca.crt", "-days", "1",
             "-subj", "/CN=jobtui test CA", cwd=tmp_path)
    _openssl("req", "-newkey", "rsa:2048", "-nodes", "-keyout", "server.key", "-out", "server.csr",
             "-subj", "/CN=127.0.0.1", cwd=tmp_path)
    (tmp_path / "san.ext").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    _openssl("x509", "-req", "-in", "server.csr", "-CA", "ca.crt", "-CAkey", "ca.key", "-CAcreateserial",
             "-days", "1", "-extfile", "san.ext", "-out", "server.crt", cwd=tmp_path)
    # a second CA that signed nothing here: a client trusting only it must refuse the server
    _openssl("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "other.key", "-out", "other.crt",
             "-days", "1", "-subj", "/CN=other CA", cwd=tmp_path)
    return tmp_path


def _tls_args(certs: Path) -> list[str]:
    return ["--tls-cert-file", str(certs / "server.crt"), "--tls-key-file", str(certs / "server.key"),
            "--tls-ca-cert-file", str(certs / "ca.crt"), "--tls-auth-clients", "no"]


def _start(args: list[str], ping: object) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    for _ in range(200):
        try:
            if ping():  # type: ignore[operator]
                return proc
        except (redis.RedisError, OSError):
            time.sleep(0.05)
    proc.kill()
    raise RuntimeError(f"{args[0]} with TLS did not answer")


@pytest.fixture
def tls_redis(certs: Path) -> Iterator[tuple[int, Path]]:
    port = free_port()
    ca = certs / "ca.crt"
    proc = _start(["redis-server", "--port", "0", "--tls-port", str(port), "--bind", "127.0.0.1", "--save", "",
                   "--appendonly", "no", "--dir", str(certs), *_tls_args(certs)],
                  lambda: redis.Redis(port=port, ssl=True, ssl_ca_certs=str(ca)).ping())
    try:
        yield port, certs
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_rediss_url_verifies_the_server(tls_redis: tuple[int, Path]) -> None:
    port, certs = tls_redis
    good = redis_from_url(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=required&ssl_ca_certs={certs}/ca.crt")
    assert good.set("tls", "yes") and good.get("tls") == b"yes"
    wrong_ca = redis_from_url(f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs}/other.crt")
    with pytest.raises(redis.ConnectionError, match="certificate verify failed"):
        wrong_ca.ping()
    assert redis_from_url(f"rediss://127.0.0.1:{port}/0?ssl_cert_reqs=none").ping()  # no verification asked
    with pytest.raises(redis.ConnectionError):  # plain text to a TLS port
        redis_from_url(f"redis://127.0.0.1:{port}/0", socket_timeout=2).ping()


def test_engine_over_tls(tls_redis: tuple[int, Path], database_url: str) -> None:
    port, certs = tls_redis
    url = f"rediss://127.0.0.1:{port}/0?ssl_ca_certs={certs}/ca.crt"
    with Engine(Settings.load(env={}, redis_url=url, database_url=database_url)) as engine:
        job_id = engine.dispatch(jobs.noop, priority="critical")
        assert engine.connection.lrange("rq:queue:critical", 0, -1) == [job_id.encode()]
        assert where(engine.connection) == f"127.0.0.1:{port}/0"


def test_sentinel_with_tls(tls_redis: tuple[int, Path], database_url: str) -> None:
    """A TLS-only sentinel watching the TLS master: `ssl=true` goes to both, the CA too."""
    port, certs = tls_redis
    sentinel_port = free_port()
    conf = certs / "sentinel.conf"
    conf.write_text("\n".join(["port 0", f"tls-port {sentinel_port}", "bind 127.0.0.1", f"dir {certs}",
                               "tls-replication yes", f"sentinel monitor tlsmaster 127.0.0.1 {port} 1",
                               "sentinel down-after-milliseconds tlsmaster 1000"]) + "\n")
    ca = str(certs / "ca.crt")

    def watching() -> bool:
        masters: Any = redis.Redis(port=sentinel_port, ssl=True, ssl_ca_certs=ca).sentinel_masters()
        return bool(masters["tlsmaster"]["flags"] == "master")

    proc = _start(["redis-server", str(conf), "--sentinel", *_tls_args(certs)], watching)
    try:
        url = f"redis+sentinel://127.0.0.1:{sentinel_port}/tlsmaster/1?ssl=true&ssl_ca_certs={ca}"
        with Engine(Settings.load(env={}, redis_url=url, database_url=database_url)) as engine:
            job_id = engine.dispatch(jobs.noop, priority="critical")
            direct = redis.Redis(port=port, db=1, ssl=True, ssl_ca_certs=ca)
            assert direct.lrange("rq:queue:critical", 0, -1) == [job_id.encode()]
            assert where(engine.connection) == f"sentinel service tlsmaster (master 127.0.0.1:{port})/1"
        no_tls = redis_from_url(f"redis+sentinel://127.0.0.1:{sentinel_port}/tlsmaster/1", socket_timeout=2)
        with pytest.raises(redis.ConnectionError):  # plain text to the TLS sentinel: no master found
            no_tls.ping()
    finally:
        proc.terminate()
        proc.wait(timeout=10)
