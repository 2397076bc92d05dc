"""Live moves of one busy guest back and forth, counted by whether the guest survives each.

Written after the application drill at locations of remote hosts (tests/e2e/test_hosts_apps.py)
saw moved guests' kernels panic seconds after they resumed (2026-12-07). This takes onepane's
application machinery, its data plane and the network filters out of the picture: one guest
(the test disk, TCG) under an open-loop load of CGI requests straight to its address, moved
live N times with the provider's own calls, and after every move asked whether it still
answers and whether its console shows a panic. A crashed guest is replaced and the moves go on.

    .venv/bin/python bench/hostmoves.py [--moves 20] [--mode across|hosts|single]
        [--rate R] [--fetch | --peer [--client]] [--filter]

`--fetch`: each request makes the guest fetch from itself (two CGIs); `--peer`: the requests go
to a second guest that stays at the first location and fetches from the moving one, so every
move happens under guest-to-guest traffic, as an application's tier moves do (`--client`: the
other way round, the moving guest fetching from the peer); `--filter`: the
moving guest in a security group (its libvirt network filter moves with it).

  across  two locations of one remote host each (HostsProvider.live_migrate, what an
          application's tier move does)
  hosts   two remote hosts of one location (HostMoves.move, what a host evacuation does)
  single  two single-host vm locations on this machine (VmProvider.live_migrate)

RESULT host_move_guest_crashes   guests that panicked or stopped answering (target 0)
"""

from __future__ import annotations

import argparse
import hashlib
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
from bench.common import answers_http, result, wait_until
from onepane.providers.base import InstanceSpec, Provider
from onepane.providers.vm.hostlab import host_lab
from onepane.providers.vm.hostmoves import HostMoves
from onepane.providers.vm.hosts import HostsProvider
from onepane.providers.vm.provider import VmProvider

ROOT = Path(__file__).resolve().parent.parent
HOSTS = {"mv1": 205, "mv2": 206}
SINGLE = {"mvs-a": 209, "mvs-b": 210}
BOUND_S = 120.0
# a move: (provider now holding the guest, its id) -> the provider holding it afterwards
Mover = Callable[[Provider, str], Provider]
IMAGES: dict[str, str] = {}  # location -> the guest image's id there


@contextmanager
def across(out: Path, disk: Path) -> Iterator[tuple[Provider, Mover]]:
    with host_lab(HOSTS) as lab, pair([HostsProvider(f"mv-{h.name}", out / "state", {"hosts": [h.spec()]},
                             lab.credentials()) for h in lab.hosts], disk) as moving:
        yield moving


@contextmanager
def hosts(out: Path, disk: Path) -> Iterator[tuple[Provider, Mover]]:
    with host_lab(HOSTS) as lab:
        p = HostsProvider("mv-hosts", out / "state", {"hosts": lab.specs()}, lab.credentials())
        p.setup()
        IMAGES[p.location] = p.import_disk("img-mv", "guest", disk, "qcow2", _sha(disk),
                                           lambda _f: None)

        def move(src: Provider, pid: str) -> Provider:
            host = p.locate(pid)
            assert host is not None
            dst = next(h for h in p.up_hosts() if h != host[0])
            HostMoves(p).move(pid, host[0], p, dst, BOUND_S, lambda *_a: None)
            return p
        try:
            yield p, move
        finally:
            p.teardown()


@contextmanager
def single(out: Path, disk: Path) -> Iterator[tuple[Provider, Mover]]:
    with pair([VmProvider(name, out / "state", {"index": index})
               for name, index in SINGLE.items()], disk) as moving:
        yield moving


@contextmanager
def pair(providers: list[Provider], disk: Path) -> Iterator[tuple[Provider, Mover]]:
    """Two locations, each with the guest image; a move goes to the other one."""
    a, b = providers
    for p in providers:
        p.setup()
        IMAGES[p.location] = p.import_disk("img-mv", "guest", disk, "qcow2", _sha(disk),
                                           lambda _f: None)

    def move(src: Provider, pid: str) -> Provider:
        dst = b if src is a else a
        src.live_migrate(pid, dst, BOUND_S, lambda *_a: None)
        return dst
    try:
        yield a, move
    finally:
        for p in providers:
            p.teardown()


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--moves", type=int, default=20)
    ap.add_argument("--mode", choices=("across", "hosts", "single"), default="across")
    ap.add_argument("--rate", type=float, default=10, help="CGI requests a second")
    ap.add_argument("--fetch", action="store_true",
                    help="each request makes the guest fetch from itself (two CGIs)")
    ap.add_argument("--peer", action="store_true",
                    help="the requests go to a second guest that stays where the first started "
                         "and fetches from the moving one (guest-to-guest traffic in every move)")
    ap.add_argument("--client", action="store_true",
                    help="with --peer: the requests go to the moving guest, which fetches from "
                         "the peer (the moving guest opens connections to another guest)")
    ap.add_argument("--filter", action="store_true",
                    help="the moving guest in a security group (port 80 from anywhere): its "
                         "libvirt network filter moves with it (across, hosts)")
    args = ap.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        out = Path(tmp)
        subprocess.run([str(ROOT / "scripts" / "build-test-disk.sh"), str(out / "guest")],
                       check=True, capture_output=True)
        disk = out / "guest" / "guest.qcow2"
        crashes, moved = 0, 0
        setups = {"across": across, "hosts": hosts, "single": single}
        with setups[args.mode](out, disk) as (first, move):
            holder, n = first, 0
            peer = boot(first, "peer") if args.peer else None

            def url(address: str) -> str:
                if peer is not None and args.client:
                    return f"http://{address}/cgi-bin/fetch?{peer[1]}/cgi-bin/state"
                if peer is not None:
                    return f"http://{peer[1]}/cgi-bin/fetch?{address}/cgi-bin/state"
                if args.fetch:
                    return f"http://{address}/cgi-bin/fetch?{address}/cgi-bin/state"
                return f"http://{address}/cgi-bin/state"
            pid, address = boot(holder, n)
            if args.filter:
                guard(holder, pid)
            load = loadgen(url(address), args.rate, out)
            try:
                for i in range(args.moves):
                    t0 = time.monotonic()
                    holder = move(holder, pid)
                    moved += 1
                    fine, why = survived(holder, pid, address)
                    print(f"move {i + 1}: {time.monotonic() - t0:.1f} s, "
                          f"{'answers' if fine else 'CRASHED: ' + why}", flush=True)
                    if not fine:
                        crashes += 1
                        load.send_signal(signal.SIGTERM)
                        load.wait(30)
                        holder.destroy_instance(pid)
                        n += 1
                        pid, address = boot(holder, n)
                        if args.filter:
                            guard(holder, pid)
                        load = loadgen(url(address), args.rate, out)
            finally:
                load.send_signal(signal.SIGTERM)
                load.wait(30)
                holder.destroy_instance(pid)
                if peer is not None:
                    first.destroy_instance(peer[0])
    print(f"{args.mode}: {moved} moves, {crashes} guests crashed")
    result("host_move_guest_crashes", crashes, f"of-{moved}-moves", "==", 0)


def boot(p: Provider, n: int | str) -> tuple[str, str]:
    obs = p.create_instance(InstanceSpec(onepane_id=f"inst-mv{n}", name=f"mv{n}",
                                         image=_image(p), size="vm.small"))
    address = obs.addresses[0]
    wait_until(lambda: answers_http(address), 240, "the guest did not boot")
    return obs.provider_id, address


def guard(p: Provider, pid: str) -> None:
    """The guest in a group that lets port 80 in from anywhere (a filter on its interface)."""
    assert isinstance(p, HostsProvider), "--filter needs --mode across or hosts"
    p.enforce({pid: [{"protocol": "tcp", "from_port": 80, "to_port": 80,
                      "cidrs": ["0.0.0.0/0"]}]}, {})


def loadgen(url: str, rate: float, out: Path) -> subprocess.Popen[bytes]:
    """Open-loop CGI requests (each forks in the guest), in a process of its own."""
    return subprocess.Popen([sys.executable, "-m", "onepane.traffic.openloop", url,
                             str(out / "load.json"), str(rate)],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def survived(p: Provider, pid: str, address: str) -> tuple[bool, str]:
    """Whether the moved guest answers within 20 s and its console shows no panic since."""
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if why := crash(p.console_output(pid, 8192)):
            return False, why
        if answers_http(address, timeout=2):
            time.sleep(3)  # a panic shows seconds after the guest resumed
            if why := crash(p.console_output(pid, 8192)):
                return False, why
            if answers_http(address, timeout=2):
                return True, ""
        time.sleep(0.5)
    return False, "no answer within 20 s"


def crash(console: str) -> str:
    """Where the guest's kernel crashed, from its console; empty when it did not."""
    if "Kernel panic" in console or "BUG:" in console or "Oops" in console:
        return console[console.rfind("RIP:"):][:120].replace("\n", " ")
    return ""


def _image(p: Provider) -> str:
    return IMAGES[p.location]


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


if __name__ == "__main__":
    main()

