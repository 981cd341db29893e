"""A TCP forwarder on loopback between the proxy and its store that can be made slow.

While slow, every chunk is handed on `delay` seconds after it arrived, in each direction, and
chunks stay pipelined: the store answers late on every request and response turn, as a store
behind a congested link does, without the link's throughput collapsing (a 50 MiB object still
arrives, `delay` late). A store that is down is a refused connection on this side too.
"""

from __future__ import annotations

import asyncio
import contextlib
import time

CHUNK = 64 * 1024
# Chunks in transit per direction: bounds what the link holds while it is slow.
IN_TRANSIT = 256


class SlowLink:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.delay = 0.0  # seconds, applied to chunks that arrive from now on
        self._server: asyncio.Server | None = None
        self._connections: set[asyncio.Task] = set()

    @property
    def port(self) -> int:
        assert self._server, "not started"
        return self._server.sockets[0].getsockname()[1]

    async def start(self) -> None:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)

    async def stop(self) -> None:
        assert self._server
        self._server.close()
        for task in self._connections:
            task.cancel()
        await asyncio.gather(*self._connections, return_exceptions=True)
        await self._server.wait_closed()

    async def _accept(self, client_reader, client_writer) -> None:
        task = asyncio.current_task()
        self._connections.add(task)
        try:
            await self._forward(client_reader, client_writer)
        finally:
            self._connections.discard(task)

    async def _forward(self, client_reader, client_writer) -> None:
        try:
            store_reader, store_writer = await asyncio.open_connection("127.0.0.1", self.target_port)
        except OSError:
            # The store is down: the proxy sees its connection closed, as it would see it refused.
            await close(client_writer)
            return
        try:
            await asyncio.gather(
                self._pipe(client_reader, store_writer), self._pipe(store_reader, client_writer)
            )
        finally:
            await close(client_writer)
            await close(store_writer)

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        """Copies one direction; a chunk leaves no earlier than `delay` after it arrived."""
        transit: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue(IN_TRANSIT)

        async def receive() -> None:
            with contextlib.suppress(OSError):
                while chunk := await reader.read(CHUNK):
                    await transit.put((time.monotonic() + self.delay, chunk))
            await transit.put((0.0, b""))

        async def send() -> None:
            while True:
                due, chunk = await transit.get()
                if not chunk:
                    break
                await asyncio.sleep(max(0.0, due - time.monotonic()))
                writer.write(chunk)
                await writer.drain()
            if writer.can_write_eof():
                writer.write_eof()

        receiving = asyncio.create_task(receive())
        try:
            await send()
        except OSError:
            pass  # the other side is gone: the connection closes on both
        finally:
            receiving.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await receiving


async def close(writer: asyncio.StreamWriter) -> None:
    writer.close()
    with contextlib.suppress(ConnectionError):
        await writer.wait_closed()
