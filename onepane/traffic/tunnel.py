"""Long-lived connections through the built-in proxy: an HTTP Upgrade (WebSocket) becomes a
tunnel of bytes between the client and one backend, for as long as both keep it.

A tunnel is pinned to the backend it was opened to: moving traffic elsewhere (a failover, a
planned move, a new configuration) leaves it alone while that backend lives, as HAProxy does.
When the backend dies or goes silent, the tunnel must end for the client too, not hang: the
backend side runs TCP keepalive and a user timeout (KEEPALIVE_IDLE + KEEPALIVE_COUNT x
KEEPALIVE_INTERVAL seconds of silence, the same bound for unacknowledged data), and either
side's end closes the other (a FIN, so the client sees a clean close).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
from typing import TYPE_CHECKING

from .balancer import Backend

if TYPE_CHECKING:
    from .proxy import Proxy

KEEPALIVE_IDLE, KEEPALIVE_INTERVAL, KEEPALIVE_COUNT = 5, 1, 3  # dead after ~8 s of silence


def keepalive(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return
    with contextlib.suppress(OSError, AttributeError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPIDLE, KEEPALIVE_IDLE)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPINTVL, KEEPALIVE_INTERVAL)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_KEEPCNT, KEEPALIVE_COUNT)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_USER_TIMEOUT,
                        1000 * (KEEPALIVE_IDLE + KEEPALIVE_INTERVAL * KEEPALIVE_COUNT))


class Pipe(asyncio.Protocol):
    """One side of a tunnel: what it reads, the other side writes; flow control both ways."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.peer: Pipe | None = None
        self.early: list[bytes] = []  # read before the peer was there

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def join(self, peer: Pipe) -> None:
        self.peer = peer
        for data in self.early:
            self.data_received(data)
        self.early = []

    def data_received(self, data: bytes) -> None:
        peer = self.peer
        if peer is None:
            self.early.append(data)
        elif peer.transport is not None:
            peer.transport.write(data)

    def eof_received(self) -> bool | None:
        if self.peer is not None and self.peer.transport is not None \
                and self.peer.transport.can_write_eof():
            self.peer.transport.write_eof()  # half-close passes through
            return True
        return None

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.close()

    # the peer cannot keep up: stop reading what it would have to write
    def pause_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.pause_reading()

    def resume_writing(self) -> None:
        if self.peer is not None and self.peer.transport is not None:
            self.peer.transport.resume_reading()


def attach(client: asyncio.Transport, early: bytes = b"") -> Pipe:
    """Make the client's connection one side of a tunnel, now: what it sends from here on is
    kept until the other side is there."""
    near = Pipe()
    near.transport = client
    client.set_protocol(near)
    if early:
        near.early.append(early)
    return near


async def connect_tunnel(proxy: Proxy, near: Pipe, request: bytes, refusal: bytes) -> None:
    """Open the backend side (the first backend that accepts, as a request's attempts do),
    send it what came before the tunnel (an upgrade request; nothing in TCP mode) and join the
    two sides; with no backend, `refusal` to the client and close."""
    tried: set[Backend] = set()
    loop = asyncio.get_running_loop()
    for _ in range(proxy.settings.attempts):
        choice = proxy.balancer.choose(tried)
        if choice is None:
            break
        backend = choice[1]
        tried.add(backend)
        try:
            _, far = await asyncio.wait_for(loop.create_connection(Pipe, *backend),
                                            proxy.settings.connect_timeout)
        except (TimeoutError, OSError):
            proxy.backend_down(backend)
            continue
        assert far.transport is not None
        keepalive(far.transport)
        if request:
            far.transport.write(request)
        if near.transport is None:  # the client left meanwhile
            far.transport.close()
            return
        far.join(near)
        near.join(far)
        proxy.stats.tunnels += 1
        return
    if near.transport is not None and not near.transport.is_closing():
        if refusal:
            near.transport.write(refusal)
        near.transport.close()


class TcpClient(asyncio.Protocol):
    """TCP mode: every connection is a tunnel to one backend from its first byte."""

    def __init__(self, proxy: Proxy) -> None:
        self.proxy = proxy

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        near = attach(transport)  # type: ignore[arg-type]
        self.proxy.spawn(connect_tunnel(self.proxy, near, b"", b""))
