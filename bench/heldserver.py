"""A server that answers at once except in one window, where it holds requests the way HAProxy
was seen to in a silent cut (its own log, issue 27): everything for WINDOW_S (0.19 s at a
150 ms connect timeout), and LONG_N of those requests for LONG_S (1.5 s: the ones sent over a
kept-alive connection wait for the attempt timeout). With nothing between it and the client, it
shows what that transient alone does to an ordinary client (bench/failover.py's reference).

    python bench/heldserver.py PORT DELAY_S [WINDOW_S LONG_S LONG_N]
"""

from __future__ import annotations

import asyncio
import sys
import time

RESPONSE = (b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nX-Served-By: held\r\n"
            b"Content-Type: text/plain\r\n\r\nok")


async def main(port: int, delay: float, window_s: float = 0.19, long_s: float = 1.5,
               long_n: int = 10) -> None:
    start = time.monotonic() + delay
    held_long = 0

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        nonlocal held_long
        try:
            while True:
                await reader.readuntil(b"\r\n\r\n")
                now = time.monotonic()
                if start <= now < start + window_s:
                    if held_long < long_n:
                        held_long += 1
                        await asyncio.sleep(long_s)
                    else:
                        await asyncio.sleep(start + window_s - now)
                writer.write(RESPONSE)
                await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", port, backlog=4096)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    shape = sys.argv[3:6]
    asyncio.run(main(int(sys.argv[1]), float(sys.argv[2]),
                     *(float(shape[0]), float(shape[1]), int(shape[2])) if shape else ()))
