"""The least a Python HTTP/1.1 proxy can do, as a reference for bench/proxy.py: uvloop and
httptools, keep-alive upstream connections, round robin over the backends, bytes passed on as
they came. No header hygiene, no retries, no hedging, no timeouts, no stats: what is left is
the cost of Python's event loop, the parsers and the four socket calls per request, the floor
under any proxy written in Python on this machine.

    python bench/minproxy.py PORT BACKEND_PORT...
"""

from __future__ import annotations

import asyncio
import sys

import httptools
import uvloop

Backend = tuple[str, int]


def main() -> None:
    port = int(sys.argv[1])
    backends: list[Backend] = [("127.0.0.1", int(p)) for p in sys.argv[2:]]
    idle: dict[Backend, list[Upstream]] = {b: [] for b in backends}
    turn = [0]

    class Upstream(asyncio.Protocol):
        def __init__(self, backend: Backend) -> None:
            self.backend = backend
            self.parser = httptools.HttpResponseParser(self)
            self.client: Client | None = None
            self.chunks: list[bytes] = []

        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]

        def data_received(self, data: bytes) -> None:
            self.chunks.append(data)
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            client, self.client = self.client, None
            data, self.chunks = b"".join(self.chunks), []
            idle[self.backend].append(self)
            assert client is not None
            client.transport.write(data)

    class Client(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.transport: asyncio.Transport = transport  # type: ignore[assignment]
            self.parser = httptools.HttpRequestParser(self)
            self.chunks: list[bytes] = []

        def data_received(self, data: bytes) -> None:
            self.chunks.append(data)
            self.parser.feed_data(data)

        def on_message_complete(self) -> None:
            data, self.chunks = b"".join(self.chunks), []
            turn[0] += 1
            backend = backends[turn[0] % len(backends)]
            if idle[backend]:
                up = idle[backend].pop()
                up.client = self
                up.transport.write(data)
            else:
                asyncio.get_running_loop().create_task(self.connect(backend, data))

        async def connect(self, backend: Backend, data: bytes) -> None:
            _, up = await asyncio.get_running_loop().create_connection(
                lambda: Upstream(backend), *backend)
            up.client = self
            up.transport.write(data)

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Client, "127.0.0.1", port,
                                                                backlog=4096)
        await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
