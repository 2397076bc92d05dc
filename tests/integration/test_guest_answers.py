"""A vm location's guest policy in a real kernel (providers/vm/guestpolicy.forward_table): the
answers of a flow its location's connection tracking never saw start — which is what a flow
open across a live move is at its new location — pass by their ports (UDP) or as echo replies
(ICMP); anything else from the same guest to a peer whose rules do not allow it is dropped.

Three namespaces, no link to the host: a client guest (10.77.1.2), a server guest (10.77.2.2)
and the location between them, forwarding through the table onepane writes. The server sends
datagrams nobody asked for, so no conntrack entry exists for any of them.
"""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from onepane.providers.dcnet import CATCH_ALL
from onepane.providers.nftrules import replace_table
from onepane.providers.vm.guestpolicy import forward_table

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="network namespaces need root")
LOC, CLIENT, SERVER = "op-ans-loc", "op-ans-cli", "op-ans-srv"
CLIENT_IP, SERVER_IP = "10.77.1.2", "10.77.2.2"


def ns(name: str, *argv: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    return subprocess.run(["ip", "netns", "exec", name, *argv], capture_output=True, text=True,
                          check=check, timeout=30)


@pytest.fixture(scope="module")
def lab() -> Iterator[None]:
    had = CATCH_ALL in subprocess.run(["ip", "route", "show", "type", "blackhole"],
                                      capture_output=True, text=True).stdout
    if not had:  # before any namespace exists: nothing a test makes reaches beyond this host
        subprocess.run(["ip", "route", "add", "blackhole", CATCH_ALL], check=True)
    try:
        for name in (LOC, CLIENT, SERVER):
            subprocess.run(["ip", "netns", "add", name], check=True)
        for guest, addr, gw, link in ((CLIENT, CLIENT_IP, "10.77.1.1", "ans-c"),
                                      (SERVER, SERVER_IP, "10.77.2.1", "ans-s")):
            ns(LOC, "ip", "link", "add", link, "type", "veth", "peer", "name", "eth0",
               "netns", guest)
            ns(LOC, "ip", "addr", "add", f"{gw}/24", "dev", link)
            ns(LOC, "ip", "link", "set", link, "up")
            ns(guest, "ip", "addr", "add", f"{addr}/24", "dev", "eth0")
            ns(guest, "ip", "link", "set", "eth0", "up")
            ns(guest, "ip", "link", "set", "lo", "up")
            ns(guest, "ip", "route", "add", "default", "via", gw)
        ns(LOC, "sysctl", "-qw", "net.ipv4.ip_forward=1")
        # The server may be reached on UDP 5353 and by ICMP from the client's network; the
        # client only on TCP 22 from elsewhere: nothing from the server is allowed in.
        rules = {"srv": [{"protocol": "udp", "from_port": 5353, "to_port": 5353,
                          "cidrs": ["10.77.1.0/24"], "groups": []},
                         {"protocol": "icmp", "from_port": -1, "to_port": -1,
                          "cidrs": ["10.77.1.0/24"], "groups": []}],
                 "cli": [{"protocol": "tcp", "from_port": 22, "to_port": 22,
                          "cidrs": ["10.99.0.0/16"], "groups": []}]}
        table = forward_table(rules, {}, {"srv": SERVER_IP, "cli": CLIENT_IP}.get)
        replace_table(["ip", "netns", "exec", LOC, "nft"], "inet", "onepane_sg", table, LOC)
        yield
    finally:
        for name in (LOC, CLIENT, SERVER):
            subprocess.run(["ip", "netns", "del", name], check=False, capture_output=True)
        if not had:
            subprocess.run(["ip", "route", "del", "blackhole", CATCH_ALL], check=False)


RECEIVE = """
import socket, sys
kind = sys.argv[1]
if kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind(("0.0.0.0", 9999))
else:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
s.settimeout(float(sys.argv[2]))
print("ready", flush=True)
got = []
try:
    while True:
        data, (addr, port) = s.recvfrom(2048)
        if kind == "udp":
            got.append(data.decode())
        else:  # the IP header, then the ICMP type
            got.append(f"icmp-type-{data[(data[0] & 15) * 4]}")
except socket.timeout:
    pass
print(" ".join(sorted(got)))
"""

SEND = """
import socket, struct, sys
kind, target = sys.argv[1], sys.argv[2]
if kind == "udp":
    for sport, what in ((5353, "answer"), (5354, "other")):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind(("0.0.0.0", sport))
        s.sendto(what.encode(), (target, 9999))
else:
    def checksum(b):
        total = sum(struct.unpack("!%dH" % (len(b) // 2), b))
        total = (total >> 16) + (total & 0xFFFF)
        return ~(total + (total >> 16)) & 0xFFFF
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    for icmp_type in (0, 8):  # an echo reply nobody asked for, and an echo request
        head = struct.pack("!BBHHH", icmp_type, 0, 0, 77, 1) + b"onepane!"
        packet = head[:2] + struct.pack("!H", checksum(head)) + head[4:]
        s.sendto(packet, (target, 0))
"""


def exchange(kind: str) -> str:
    """What the client receives of what the server sends it unasked."""
    receiver = subprocess.Popen(["ip", "netns", "exec", CLIENT, sys.executable, "-c", RECEIVE,
                                 kind, "1.5"], stdout=subprocess.PIPE, text=True)
    try:
        assert receiver.stdout is not None and receiver.stdout.readline().strip() == "ready"
        ns(SERVER, sys.executable, "-c", SEND, kind, CLIENT_IP)
        out, _ = receiver.communicate(timeout=30)
    finally:
        if receiver.poll() is None:
            receiver.kill()
            receiver.wait()
    return out.strip()


def test_udp_answers_pass_by_their_port_with_no_connection_tracked(lab: None) -> None:
    assert exchange("udp") == "answer"  # from 5353, the rule's port; 5354 was dropped


def test_icmp_echo_replies_pass_and_requests_do_not(lab: None) -> None:
    assert exchange("icmp") == "icmp-type-0"  # the reply passed; the request was dropped
