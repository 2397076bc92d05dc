"""A server that answers at once except in one window, where it holds requests the way HAProxy
was seen to in a silent cut (its own log, issue 27): everything for 0.19 s, and ten of those
requests for 1.5 s. With nothing between it and the client, it shows what that transient alone
does to an ordinary client (bench/failover.py's reference).

    python bench/heldserver.py PORT DELAY_S
"""

from __future__ import annotations

import asyncio
import sys
import time

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Served-By: held\r\n"
            b"Content-Type: text/plain\r\n\r\nok")
WINDOW_S, LONG_S, LONG_N = 0.19, 1.5, 10


async def main(port: int, delay: float) -> None:
    start = time.monotonic() + delay
    held_long = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal held_long
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic()
                if start <= now < start + WINDOW_S:
                    if held_long < LONG_N:
                        held_long += 1
                        await asyncio.sleep(LONG_S)
                    else:
                        await asyncio.sleep(start + WINDOW_S - now)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2])))
