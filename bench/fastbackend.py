"""A minimal keep-alive HTTP backend (uvloop) for proxy benchmarks: fast enough that the
proxies, not the backend, are what is measured.   python bench/fastbackend.py PORT NAME"""

from __future__ import annotations

import asyncio
import json
import sys

import uvloop


def main() -> None:
    port, name = int(sys.argv[1]), sys.argv[2]
    body = json.dumps({"location": name}).encode()
    reply = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
             + str(len(body)).encode() + b"\r\n\r\n" + body)

    class Echo(asyncio.Protocol):
        def connection_made(self, transport: asyncio.BaseTransport) -> None:
            self.t = transport
            self.buf = b""

        def data_received(self, data: bytes) -> None:
            self.buf += data
            n = self.buf.count(b"\r\n\r\n")
            if n:
                self.buf = self.buf[self.buf.rfind(b"\r\n\r\n") + 4:]
                self.t.write(reply * n)  # type: ignore[attr-defined]

    async def serve() -> None:
        server = await asyncio.get_running_loop().create_server(Echo, "127.0.0.1", port,
                                                                backlog=4096)
        async with server:
            await server.serve_forever()

    uvloop.run(serve())


if __name__ == "__main__":
    main()
