"""One MULTI ... EXEC block in one write; its replies read at once or later.

The fast worker sends each block of bookkeeping (with the next dequeue) this way: one socket
write, one read, no per-command work in redis-py. Sending and reading are separate so that the
worker can run jobs while Redis executes the block (see `FastWorker`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import redis


def pack(commands: Sequence[tuple[Any, ...]], encoder: Any) -> bytes:
    """The RESP bytes redis-py's packer would send for `commands` (several times faster here).

    A str UTF-8 cannot encode (a lone surrogate from a job's exception, say) goes with those
    characters backslash-escaped rather than failing the whole block: bookkeeping never dies on text."""
    text: list[str] = []  # ASCII str arguments are framed as text and encoded once
    out: list[bytes] = []
    for args in commands:
        if " " in args[0]:  # "SCRIPT LOAD" and friends: the words are separate arguments
            args = (*args[0].split(), *args[1:])
        text.append(f"*{len(args)}\r\n")
        for arg in args:
            kind = type(arg)
            if kind is int or kind is float:
                arg, kind = repr(arg), str
            if kind is str and arg.isascii():
                text.append(f"${len(arg)}\r\n{arg}\r\n")
                continue
            data = arg if kind is bytes else arg.encode("utf-8", "backslashreplace") if kind is str \
                else encoder.encode(arg)
            out += ["".join(text).encode(), b"$%d\r\n%s\r\n" % (len(data), data)]
            text.clear()
    out.append("".join(text).encode())
    return b"".join(out)


class Block:
    """`commands` wrapped in MULTI/EXEC, written to Redis now on a connection of its own.

    `replies()` reads EXEC's replies (errors included as exception objects) and gives the
    connection back; `discard()` drops the connection unread. Exactly one of them must follow.

    With `watch`, a `WATCH watch` follows the EXEC: the connection then watches that key until
    its next block, so that block's EXEC is refused (`WatchError`, nothing in it runs) if the key
    changed in between, however late the block reaches Redis. A refused connection is dropped:
    it is never reused (its new WATCH was armed after the change).
    """

    def __init__(self, client: redis.Redis, commands: Sequence[tuple[Any, ...]], watch: str | None = None) -> None:
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        self.size = len(commands)
        self.watch = watch
        tail = [("WATCH", watch)] if watch else []
        try:
            self._conn.send_packed_command([pack([("MULTI",), *commands, ("EXEC",), *tail], self._conn.encoder)])
        except BaseException:
            self.discard()
            raise

    def replies(self) -> list[Any]:
        conn = self._conn
        drop = False
        try:
            refused = []
            for _ in range(self.size + 1):  # +OK for MULTI, then +QUEUED (or why not) for each
                try:
                    conn.read_response()
                except redis.exceptions.ResponseError as exc:
                    refused.append(exc)
            aborted: BaseException | None = None
            try:
                replies = conn.read_response()
            except redis.exceptions.ResponseError as exc:  # EXECABORT: nothing ran
                aborted, replies = (refused[0] if refused else exc), []
            if self.watch:
                conn.read_response()  # the WATCH's +OK
                if replies is None:  # the watched key changed: nothing ran
                    drop = True
                    raise redis.exceptions.WatchError(f"{self.watch} changed: the block was refused")
            if aborted is not None:
                raise aborted from None
        except BaseException as exc:
            if drop or not isinstance(exc, redis.exceptions.ResponseError | redis.exceptions.WatchError):
                conn.disconnect()  # a reply may still be on its way (or the WATCH is stale): never reuse
            raise
        finally:
            self._pool.release(conn)
        return list(replies)

    def discard(self) -> None:
        self._conn.disconnect()
        self._pool.release(self._conn)


def transact(client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> list[Any]:
    """Run `commands` in one MULTI block, one write and one read: EXEC's replies."""
    return Block(client, commands).replies()


class Fenced(redis.exceptions.RedisError):
    """The fence key no longer holds this client's token: it was declared dead and recovered."""


def fenced_client(client: redis.Redis, key: str, token: Callable[[], str]) -> redis.Redis:
    """A client on `client`'s server with a pool of its own, whose every new connection WATCHes
    `key` and checks it holds `token()` (else `Fenced`): with `Block(..., watch=key)` no block on
    it runs once `key` changed after the connection checked it."""
    pool = client.connection_pool

    def on_connect(conn: Any) -> None:
        conn.on_connect()
        conn.send_command("WATCH", key)
        conn.read_response()
        conn.send_command("GET", key)
        value = conn.read_response()
        if value is None or (value.decode() if isinstance(value, bytes) else value) != token():
            raise Fenced(f"{key} does not hold this worker's token: it was declared dead and recovered")

    kwargs = {**pool.connection_kwargs, "redis_connect_func": on_connect}
    return redis.Redis(connection_pool=redis.ConnectionPool(connection_class=pool.connection_class, **kwargs))
