"""The built-in proxy's per-request path with recorded transports: a request or response whose
head was parsed before is not parsed again (Heads), and what is passed on stays byte for byte
what a full parse passes on, also when the same head comes split, pipelined or with more."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from bench.proxypath import Turns
from onepane.traffic import http_protocols
from onepane.traffic.http_protocols import Client, Heads, Upstream
from onepane.traffic.proxy import Proxy

REQ = b"GET /a HTTP/1.1\r\nHost: example\r\nAccept: */*\r\n\r\n"
BODY = b'{"location": "b0"}'
RESP = (b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: "
        + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class Recorder:
    """A transport that keeps what was written to it."""

    def __init__(self) -> None:
        self.written: list[bytes] = []
        self.closed = False

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def close(self) -> None:
        self.closed = True

    def is_closing(self) -> bool:
        return self.closed

    abort = close


@pytest.fixture
def rig(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Client, Recorder,
                                                                           Upstream]]:
    monkeypatch.setattr(http_protocols, "HEADS", Heads())  # a memo of this test's own
    cfg = tmp_path / "proxy.json"
    cfg.write_text(json.dumps({"listen": "127.0.0.1:1", "mode": "http", "policy": "ordered",
                               "pools": [{"name": "a", "backends": [["127.0.0.1", 9]]}]}))
    proxy = Proxy(cfg)
    proxy.loop = loop = Turns()  # type: ignore[assignment]
    up = Upstream(("127.0.0.1", 9))
    up.connection_made(Recorder())  # type: ignore[arg-type]
    proxy.pool.give(("127.0.0.1", 9), up)
    client = Client(proxy)
    near = Recorder()
    client.connection_made(near)  # type: ignore[arg-type]
    yield client, near, up
    loop.close()


def turn(client: Client) -> None:
    """The end of the loop's turn: the sends held to it leave (Proxy.send_later)."""
    client.proxy.loop.turn()  # type: ignore[attr-defined]  # the rig's loop is a Turns


def exchange(client: Client, up: Upstream, request: list[bytes],
             response: list[bytes]) -> None:
    for chunk in request:
        client.data_received(chunk)
    turn(client)
    for chunk in response:
        up.data_received(chunk)


def test_a_repeated_request_and_response_are_passed_on_unparsed_and_unchanged(
        rig: tuple[Client, Recorder, Upstream]) -> None:
    client, near, up = rig
    far: Recorder = up.transport  # type: ignore[assignment]
    exchange(client, up, [REQ], [RESP])
    heads = http_protocols.HEADS
    assert heads.plain_requests == {REQ: b"GET"}
    assert list(heads.plain_responses.values()) == [(200, len(BODY))]
    parsed = client.parser
    for _ in range(3):
        exchange(client, up, [REQ], [RESP])
        assert up.plain  # the memo answered, not the parser
    assert client.parser is parsed
    assert far.written == [REQ] * 4 and near.written == [RESP] * 4


def test_the_same_heads_split_or_pipelined_are_parsed_as_before(
        rig: tuple[Client, Recorder, Upstream]) -> None:
    client, near, up = rig
    far: Recorder = up.transport  # type: ignore[assignment]
    exchange(client, up, [REQ], [RESP])
    exchange(client, up, [REQ[:10], REQ[10:]], [RESP[:30], RESP[30:]])  # split reads
    assert not up.plain
    assert b"".join(near.written) == RESP * 2
    # two requests in one read (and a third's start): each passed on whole, in turn (the
    # first was once sent as one request of both, "GET /a/a", and the second never answered)
    client.data_received(REQ + REQ + REQ[:12])
    turn(client)
    up.data_received(RESP)
    turn(client)
    up.data_received(RESP)
    client.data_received(REQ[12:])
    turn(client)
    up.data_received(RESP)
    assert b"".join(near.written) == RESP * 5 and far.written[-3:] == [REQ, REQ, REQ]


def test_a_head_for_this_hop_is_never_remembered_as_plain(
        rig: tuple[Client, Recorder, Upstream]) -> None:
    client, near, up = rig
    far: Recorder = up.transport  # type: ignore[assignment]
    closing = REQ.replace(b"Accept:", b"Connection: keep-alive\r\nAccept:")
    chunked = b"HTTP/1.1 200 OK\r\ntransfer-encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
    for _ in range(2):
        exchange(client, up, [closing], [chunked])
    heads = http_protocols.HEADS
    assert not heads.plain_requests and not heads.plain_responses
    assert len(far.written) == 2 and all(b"Connection" not in w for w in far.written)
    assert near.written[-1].endswith(b"content-length: 2\r\n\r\nok")  # rebuilt, de-chunked


def test_a_send_to_a_backend_leaves_at_the_end_of_the_loop_s_turn(
        rig: tuple[Client, Recorder, Upstream]) -> None:
    """Requests go out together once the loop has run every callback of its turn (a backend
    then wakes for several at once: bench/proxy.py's backends spent ~25 % more CPU per request
    when each send left at once), and not at all to a connection closed meanwhile."""
    client, _, up = rig
    far: Recorder = up.transport  # type: ignore[assignment]
    client.data_received(REQ)
    assert far.written == []
    turn(client)
    assert far.written == [REQ]
    up.data_received(RESP)
    client.data_received(REQ)
    far.closed = True  # aborted before the turn ended (a hedge's loser, a dead backend)
    turn(client)
    assert far.written == [REQ]
