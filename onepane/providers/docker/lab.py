"""Docker hosts for tests, benches and demos: container hosts onepane reaches only over IP.

Each host is a network namespace with its own mount namespace and its own dockerd (with the
containerd it starts), listening on TCP with mutual TLS at the host's address
(`tcp://10.200.<index>.2:2376`), with its own data root, exec root and /etc/docker — what a
separate machine looks like to onepane. Containers sit on dockerd's own bridge inside the
namespace (10.202.<index>.0/24, never routed out) and are reached at the ports dockerd publishes
on the host's address. The lab makes a CA, a server certificate per host (its address as subject
alternative name) and onepane's client certificate, returned as the location's credentials.

dockerd is started with `nsenter --net` and a private mount namespace, not `ip netns exec`: the
latter remounts /sys and hides the cgroup hierarchy dockerd needs. No image is ever pulled: the
lab builds a busybox-static image archive (`busybox_archive`) that tests import.
"""

from __future__ import annotations

import contextlib
import gzip
import hashlib
import io
import json
import os
import shutil
import signal
import subprocess
import tarfile
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

from ...errors import PermanentProviderError
from ..dcnet import CATCH_ALL, DataCenterNet, ensure_catch_all, ip
from ..vm.hostlab import LabCA, _write

PORT = 2376
SSH_PORT = 22
START_TIMEOUT_S = 60.0
BUSYBOX = Path("/bin/busybox")


@dataclass
class DockerHost:
    name: str
    net: DataCenterNet
    root: Path
    proc: subprocess.Popen[bytes] | None = None
    pid: int = 0
    sshd: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        return self.net.inside

    @property
    def url(self) -> str:
        return f"tcp://{self.address}:{PORT}"

    @property
    def socket(self) -> Path:
        """The lab's own way in (the host's UNIX socket), for checks that are not onepane's."""
        return self.root / "docker.sock"

    @property
    def cgroup_parent(self) -> str:
        """Where this host's containers' processes are (cgroupfs): what its teardown empties,
        whatever its dockerd still knows."""
        return f"/onepane-{self.net.ns}"

    @property
    def ssh_url(self) -> str:
        return f"ssh://root@{self.address}:{SSH_PORT}"

    def spec(self, ssh: bool = False) -> dict[str, str]:
        return {"name": self.name, "url": self.ssh_url if ssh else self.url}

    @property
    def known_hosts(self) -> str:
        """The host's SSH key as a known_hosts line (what an operator gives onepane)."""
        key = (self.root / "ssh" / "host_key.pub").read_text().split()
        name = self.address if SSH_PORT == 22 else f"[{self.address}]:{SSH_PORT}"
        return f"{name} {key[0]} {key[1]}\n"

    def kill_daemon(self) -> None:
        """dockerd and its containerd die at once (kill -9 of their process group), as when
        the host's daemons crash; the containers' shims run on (as they do on a real host)."""
        if self.pid:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.pid, signal.SIGKILL)
        if self.proc is not None:
            with contextlib.suppress(subprocess.TimeoutExpired):
                self.proc.wait(10)

    def docker(self, *args: str, stdin: bytes | None = None) -> str:
        """The docker CLI against this host's own socket (the lab's view, not onepane's)."""
        proc = subprocess.run(["docker", "-H", f"unix://{self.socket}", *args], input=stdin,
                              capture_output=True, check=False, timeout=60)
        if proc.returncode != 0:
            raise PermanentProviderError(f"docker {' '.join(args)}: {proc.stderr.decode()}")
        return proc.stdout.decode()


def start_daemon(host: DockerHost, index: int, tls: Path) -> None:
    for d in ("etc", "data", "exec"):
        (host.root / d).mkdir(parents=True, exist_ok=True)
    script = (f"mount --bind {host.root / 'etc'} /etc/docker && exec dockerd "
              "--iptables=false --ip-masq=false --ip6tables=false "
              f"--bip 10.202.{index}.1/24 --data-root {host.root / 'data'} "
              f"--exec-root {host.root / 'exec'} --pidfile {host.root / 'dockerd.pid'} "
              f"--containerd-namespace onepane-{host.name} "
              f"--containerd-plugins-namespace onepane-{host.name}-plugins "
              f"--cgroup-parent {host.cgroup_parent} "
              f"-H unix://{host.socket} -H tcp://{host.address}:{PORT} --tlsverify "
              f"--tlscacert {tls / 'ca.pem'} --tlscert {tls / 'cert.pem'} "
              f"--tlskey {tls / 'key.pem'}")
    for attempt in (1, 2):
        try:
            proc = _started(
                host, "dockerd", host.root / "dockerd.log",
                ["unshare", "-m", "--propagation", "private", "sh", "-c", script],
                lambda: subprocess.run(["docker", "-H", f"unix://{host.socket}", "version", "-f",
                                        "{{.Server.Version}}"],
                                       capture_output=True, check=False).returncode == 0)
            break
        except PermanentProviderError as exc:
            # dockerd gives the containerd it starts a few seconds, then exits: on a busy
            # machine (a whole ./test) that once was not enough. Once more, then it is real.
            if attempt == 2 or "timeout waiting for containerd to start" not in exc.detail:
                raise
    host.proc, host.pid = proc, proc.pid


def _started(host: DockerHost, what: str, log_path: Path, argv: list[str],
             ready: Callable[[], bool]) -> subprocess.Popen[bytes]:
    """`argv` in the host's network namespace, in a session of its own, once `ready()`."""
    log = log_path.open("ab")
    proc = subprocess.Popen(["nsenter", f"--net=/run/netns/{host.net.ns}", *argv], stdout=log,
                            stderr=log, stdin=subprocess.DEVNULL, start_new_session=True)
    log.close()
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise PermanentProviderError(f"{what} of {host.name} exited: "
                                         f"{log_path.read_text()[-2000:]}")
        if ready():
            return proc
        time.sleep(0.05)
    proc.kill()
    raise PermanentProviderError(f"{what} of {host.name} was not ready within "
                                 f"{START_TIMEOUT_S:.0f} s")


def start_host(name: str, index: int, root: Path, ca: LabCA) -> DockerHost:
    if shutil.which("dockerd") is None:
        raise PermanentProviderError("docker hosts need dockerd (apt-get install docker.io)")
    net = DataCenterNet(f"dock-{name}", index, owner=str(root))
    net.setup()
    host = DockerHost(name, net, root / name)
    tls = host.root / "tls"
    cert, key = ca.issue(net.inside, ip=net.inside)
    _write(tls / "ca.pem", ca.pem)
    _write(tls / "cert.pem", cert)
    _write(tls / "key.pem", key, 0o600)
    start_daemon(host, index, tls)
    return host


def start_sshd(host: DockerHost, client_public_key: str) -> None:
    """sshd in the host's namespace, letting in one key, its sessions pointed at the host's
    dockerd (DOCKER_HOST): what `ssh://` Docker hosts are (`docker system dial-stdio`)."""
    d = host.root / "ssh"
    d.mkdir(parents=True, exist_ok=True)
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(d / "host_key")],
                   check=True, capture_output=True)
    _write(d / "authorized_keys", client_public_key + "\n", 0o600)
    _write(d / "sshd_config", f"""Port {SSH_PORT}
ListenAddress {host.address}
HostKey {d / 'host_key'}
AuthorizedKeysFile {d / 'authorized_keys'}
PermitRootLogin prohibit-password
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
StrictModes no
PidFile {d / 'sshd.pid'}
MaxSessions 64
SetEnv DOCKER_HOST=unix://{host.socket}
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege separation directory
    host.sshd = _started(
        host, "sshd", d / "sshd.log", ["/usr/sbin/sshd", "-D", "-e", "-f", str(d / "sshd_config")],
        lambda: bool(subprocess.run(["nsenter", f"--net=/run/netns/{host.net.ns}", "ss", "-Hltn",
                                     f"sport = :{SSH_PORT}"], capture_output=True, text=True,
                                    check=False).stdout.strip()))


def ssh_client_key() -> tuple[str, str]:
    """(private key in OpenSSH's PEM form, public key line): onepane's key for ssh:// hosts."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519
    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                                serialization.NoEncryption()).decode()
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH,
                                           serialization.PublicFormat.OpenSSH).decode()
    return private, public


def restart_daemon(host: DockerHost) -> None:
    """dockerd again, after kill_daemon: what a host that came back does. The killed
    containerd may linger as a zombie here (this machine's init does not reap it), and dockerd
    would wait for it behind its pid file: the stale file goes first."""
    pid_file = host.root / "exec" / "containerd" / "containerd.pid"
    with contextlib.suppress(FileNotFoundError, ValueError):
        pid = int(pid_file.read_text().strip())
        status = Path(f"/proc/{pid}/status")
        if not status.exists() or "\nState:\tZ" in status.read_text():
            pid_file.unlink()
    start_daemon(host, host.net.index, host.root / "tls")


def stop_host(host: DockerHost) -> None:
    """Remove its containers (through its own socket), stop its daemon, remove its namespace."""
    with contextlib.suppress(Exception):
        ids = host.docker("ps", "-aq").split()
        if ids:
            host.docker("rm", "-f", *ids)
    if host.sshd is not None and host.sshd.poll() is None:
        host.sshd.kill()
        host.sshd.wait(5)
    if host.proc is not None and host.proc.poll() is None:
        host.proc.terminate()
        try:
            host.proc.wait(20)
        except subprocess.TimeoutExpired:
            host.proc.kill()
            host.proc.wait(5)
    # a container whose shim died with a killed daemon lives on in its own namespaces, out of
    # the host's: its processes are found by their cgroup
    kill_cgroup(host.cgroup_parent)
    # containerd's shims and anything else it left in the namespace go with the namespace
    host.net.teardown()
    with contextlib.suppress(Exception):
        subprocess.run(["umount", "-R", str(host.root / "data")], capture_output=True,
                       check=False)


def kill_cgroup(parent: str) -> None:
    """SIGKILL every process under `parent` in each cgroup v1 hierarchy, then remove the
    groups (deepest first) once they are empty."""
    roots = [d / parent.lstrip("/") for d in Path("/sys/fs/cgroup").iterdir()
             if (d / parent.lstrip("/")).is_dir()]
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        pids = {p for root in roots for procs in root.rglob("cgroup.procs")
                for p in procs.read_text().split()}
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError, ValueError):
                os.kill(int(pid), signal.SIGKILL)
        time.sleep(0.05)
    for root in roots:
        for d in sorted((x for x in root.rglob("*") if x.is_dir()), key=lambda x: -len(x.parts)):
            with contextlib.suppress(OSError):
                d.rmdir()
        with contextlib.suppress(OSError):
            root.rmdir()


@dataclass
class DockerLab:
    hosts: list[DockerHost]
    ca: LabCA
    root: Path
    ssh_key: str = ""  # onepane's private key for ssh:// hosts, when the lab runs sshd

    def host(self, name: str) -> DockerHost:
        return next(h for h in self.hosts if h.name == name)

    def specs(self, *names: str, ssh: bool = False) -> list[dict[str, str]]:
        return [h.spec(ssh) for h in self.hosts if not names or h.name in names]

    def credentials(self, ssh: bool = False) -> dict[str, str]:
        """TLS (the default), or the SSH key and the hosts' keys for ssh:// hosts."""
        if ssh:
            return {"ssh_key": self.ssh_key,
                    "ssh_known_hosts": "".join(h.known_hosts for h in self.hosts)}
        return self.ca.credentials()


@contextlib.contextmanager
def docker_lab(hosts: dict[str, int], ssh: bool = False) -> Iterator[DockerLab]:
    """name -> index (10.200.<index>.0/24). Needs root and dockerd (and sshd for `ssh`:
    every host then also answers ssh:// with onepane's key)."""
    had = CATCH_ALL in ip("route", "show", "type", "blackhole", check=False).stdout
    ensure_catch_all()
    root = Path(tempfile.mkdtemp(prefix="onepane-docker-"))
    ca = LabCA()
    started: list[DockerHost] = []
    private, public = ssh_client_key() if ssh else ("", "")
    try:
        for name, index in hosts.items():
            started.append(start_host(name, index, root, ca))
            if ssh:
                start_sshd(started[-1], public)
        yield DockerLab(started, ca, root, private)
    finally:
        for host in started:
            stop_host(host)
        shutil.rmtree(root, ignore_errors=True)
        if not had:
            ip("route", "del", "blackhole", CATCH_ALL, check=False)


# ---- a test image, built by hand (nothing is pulled) -----------------------------------------

def _tar_bytes(files: dict[str, tuple[bytes, int]], links: dict[str, str]) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tar:
        dirs = sorted({str(Path(p).parent) for p in [*files, *links]} - {"."})
        for d in dirs:
            info = tarfile.TarInfo(d)
            info.type, info.mode = tarfile.DIRTYPE, 0o755
            tar.addfile(info)
        for path, (data, mode) in files.items():
            info = tarfile.TarInfo(path)
            info.size, info.mode = len(data), mode
            tar.addfile(info, io.BytesIO(data))
        for path, target in links.items():
            info = tarfile.TarInfo(path)
            info.type, info.linkname = tarfile.SYMTYPE, target
            tar.addfile(info)
    return buf.getvalue()


def image_archive(dest: Path, tag: str, layer: bytes, config: dict[str, object],
                  gzip_layer: bool = False) -> Path:
    """A `docker save`-shaped archive (manifest.json, the config blob named by its digest, one
    layer) of one image: what tests import, and what hostile variants start from."""
    if gzip_layer:
        layer = gzip.compress(layer, mtime=0)
    diff_id = hashlib.sha256(gzip.decompress(layer) if gzip_layer else layer).hexdigest()
    full = {"architecture": "amd64", "os": "linux", "config": config,
            "rootfs": {"type": "layers", "diff_ids": [f"sha256:{diff_id}"]}}
    config_bytes = json.dumps(full).encode()
    config_name = hashlib.sha256(config_bytes).hexdigest() + ".json"
    layer_dir = hashlib.sha256(layer).hexdigest()
    manifest = [{"Config": config_name, "RepoTags": [tag], "Layers": [f"{layer_dir}/layer.tar"]}]
    members = {config_name: config_bytes, f"{layer_dir}/layer.tar": layer,
               f"{layer_dir}/VERSION": b"1.0", "manifest.json": json.dumps(manifest).encode()}
    with tarfile.open(dest, "w") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size, info.mode = len(data), 0o644
            tar.addfile(info, io.BytesIO(data))
    return dest


def busybox_archive(dest: Path, tag: str = "onepane-busybox:1", page: str = "hello") -> Path:
    """An image of busybox-static serving /www on port 80 (httpd in the foreground, as PID 1
    under docker's init): a web app with no registry behind it."""
    if not BUSYBOX.exists():
        raise PermanentProviderError("the test image needs busybox-static (/bin/busybox)")
    layer = _tar_bytes({"bin/busybox": (BUSYBOX.read_bytes(), 0o755),
                        "www/index.html": (f"{page}\n".encode(), 0o644)},
                       {f"bin/{tool}": "busybox" for tool in ("sh", "httpd", "sleep", "cat",
                                                              "echo", "ls", "wget")})
    return image_archive(dest, tag, layer, {
        "Cmd": ["/bin/httpd", "-f", "-p", "80", "-h", "/www"],
        "ExposedPorts": {"80/tcp": {}}, "WorkingDir": "/"})


def main() -> None:
    """Two Docker hosts to try a docker location with (root): their client certificates in
    DIR/client (Docker's DOCKER_CERT_PATH layout), a web image archive in DIR/web.tar, and the
    command that adds them to onepane. They run until Ctrl-C, then go with what they ran."""
    import argparse
    import threading
    ap = argparse.ArgumentParser(prog="python -m onepane.providers.docker.lab")
    ap.add_argument("--dir", type=Path, default=Path("/tmp/onepane-docker-lab"))
    ap.add_argument("--location", default="dc-c")
    args = ap.parse_args()
    with docker_lab({"c1": 231, "c2": 232}) as lab:
        client = args.dir / "client"
        cert, key = lab.ca.issue("onepane")
        _write(client / "ca.pem", lab.ca.pem)
        _write(client / "cert.pem", cert)
        _write(client / "key.pem", key, 0o600)
        busybox_archive(args.dir / "web.tar")
        hosts = " ".join(f"--host {h.name}={h.url}" for h in lab.hosts)
        print(f"two Docker hosts answer over TLS: {', '.join(h.url for h in lab.hosts)}\n"
              f"  onepane locations add {args.location} --provider docker {hosts} "
              f"--tls-dir {client}\n  onepane images import {args.dir / 'web.tar'} --name web\n"
              "Ctrl-C stops them.", flush=True)
        stop = threading.Event()
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        with contextlib.suppress(KeyboardInterrupt):
            stop.wait()


if __name__ == "__main__":
    main()
