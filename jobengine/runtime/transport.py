"""One MULTI ... EXEC block in one write; its replies read at once or later.

The fast worker sends each block of bookkeeping (with the next dequeue) this way: one socket
write, one read, no per-command work in redis-py. Sending and reading are separate so that the
worker can run jobs while Redis executes the block (see `FastWorker`).
"""

from __future__ import annotations

from collections.abc import Sequence
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
    """

    def __init__(self, client: redis.Redis, commands: Sequence[tuple[Any, ...]]) -> None:
        self._pool = client.connection_pool
        self._conn = self._pool.get_connection()
        self.size = len(commands)
        try:
            self._conn.send_packed_command([pack([("MULTI",), *commands, ("EXEC",)], self._conn.encoder)])
        except BaseException:
            self.discard()
            raise

    def replies(self) -> list[Any]:
        conn = self._conn
        try:
            refused = []
            for _ in range(self.size + 1):  # +OK for MULTI, then +QUEUED (or why not) for each
                try:
                    conn.read_response()
                except redis.exceptions.ResponseError as exc:
                    refused.append(exc)
            try:
                replies = conn.read_response()
            except redis.exceptions.ResponseError as exc:  # EXECABORT: nothing ran
                raise refused[0] if refused else exc from None
        except BaseException as exc:
            if not isinstance(exc, redis.exceptions.ResponseError):
                conn.disconnect()  # a reply may still be on its way: never reuse this socket
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
