"""One libvirtd per `vm` location, running inside the location's network namespace.

A data center has its own hypervisor: its VMs' taps land on the location's bridge, cutting the
location cuts its VMs, and a live move is a real migration between two libvirt daemons (libvirt
refuses to migrate a domain to the host it is already on). Each daemon gets a private mount
namespace whose /etc/libvirt, /run/libvirt, /var/lib/libvirt and /var/log/libvirt are folders of
the location, so two daemons never share a socket, a domain definition or a lock. The
capability cache is shared: QEMU's capability probe costs seconds and is the same everywhere.

The daemons are started in their own session and outlive onepane, like the VMs they run; a
restarted onepane finds them by their socket.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from pathlib import Path

from ...errors import PermanentProviderError

SOCKET_PATH_MAX = 100  # a UNIX socket's path holds 107 bytes; this leaves room for libvirt's names
PRIVATE_DIRS = {"etc": "/etc/libvirt", "run": "/run/libvirt", "lib": "/var/lib/libvirt",
                "log": "/var/log/libvirt", "cache": "/var/cache/libvirt"}
SHARED_CACHE = Path(os.environ.get("ONEPANE_LIBVIRT_CACHE", "/var/cache/onepane/libvirt"))
START_TIMEOUT_S = 60.0


def require_libvirt() -> None:
    """libvirtd looks its QEMU user up before it reads qemu.conf, so the user must exist even
    though onepane's qemu.conf runs QEMU as root."""
    missing = [p for p in ("/usr/sbin/libvirtd", "/usr/sbin/virtlogd") if not os.path.exists(p)]
    if missing:
        raise PermanentProviderError(
            f"vm locations need libvirt ({', '.join(missing)} missing): install libvirt-daemon "
            "libvirt-daemon-driver-qemu qemu-system-x86, or start onepane with ./run")
    try:
        import pwd
        pwd.getpwnam("libvirt-qemu")
    except KeyError:
        raise PermanentProviderError("vm locations need the libvirt-qemu system user "
                                     "(useradd --system libvirt-qemu; ./run creates it)") from None


class Hypervisor:
    """`listen`: also accept clients over TCP at this address (a hypervisor *host* that
    onepane reaches over the network, as in onepane.providers.vm.hostlab); its QEMU then
    takes migrations at that address too."""

    def __init__(self, location: str, namespace: str, root: Path, listen: str | None = None,
                 tls_dir: Path | None = None) -> None:
        self.location = location
        self.namespace = namespace
        self.root = root
        self.listen = listen
        # With `listen`: TLS instead of plain TCP. tls_dir holds the daemon's servercert.pem,
        # serverkey.pem, cacert.pem, and pki/ (what the daemon presents as a *client* when it
        # migrates peer-to-peer: mounted over /etc/pki in its mount namespace)
        self.tls_dir = tls_dir

    @property
    def run_dir(self) -> Path:
        """The daemons' /run/libvirt: in the state directory, or, where a socket's path there
        would not fit a UNIX address (108 bytes; a deep checkout's state directory), under
        /run/onepane, named for the location's folder (a vm location failed to start there)."""
        near = self.root / "run"
        if len(str(near / "virtlogd-admin-sock")) < SOCKET_PATH_MAX:
            return near
        return Path("/run/onepane") / ("libvirt-" + hashlib.sha256(
            str(self.root).encode()).hexdigest()[:16])

    @property
    def socket_path(self) -> Path:
        return self.run_dir / "libvirt-sock"

    @property
    def uri(self) -> str:
        return f"qemu+unix:///system?socket={self.socket_path}"

    @property
    def pid_file(self) -> Path:
        return self.run_dir / "libvirtd.pid"

    def running(self) -> bool:
        if not self.socket_path.exists():
            return False
        with socket.socket(socket.AF_UNIX) as s:
            try:
                s.connect(str(self.socket_path))
            except OSError:
                return False
        return True

    def start(self) -> None:
        """Start virtlogd and libvirtd in the namespace unless they already run; idempotent."""
        if self.running():
            return
        require_libvirt()
        self._write_config()
        SHARED_CACHE.mkdir(parents=True, exist_ok=True)
        binds = [f"mount --bind {self._dir(key)} {target}" for key, target in PRIVATE_DIRS.items()
                 if key != "cache"]
        binds.append(f"mount --bind {SHARED_CACHE} {PRIVATE_DIRS['cache']}")
        if self.tls_dir:
            binds += ["mkdir -p /etc/pki", f"mount --bind {self.tls_dir / 'pki'} /etc/pki"]
        script = "; ".join([
            *(f"mkdir -p {t}" for t in PRIVATE_DIRS.values()), *binds,
            f"/usr/sbin/virtlogd --daemon --pid-file {self.run_dir / 'virtlogd.pid'}",
            f"exec /usr/sbin/libvirtd --pid-file {self.pid_file}"
            + (" --listen" if self.listen else ""),
        ])
        env = {**os.environ, "LIBVIRT_LOG_OUTPUTS": f"3:file:{self._dir('log') / 'libvirtd.log'}"}
        with open(self._dir("log") / "libvirtd.out", "ab") as out:
            proc = subprocess.Popen(
                ["ip", "netns", "exec", self.namespace, "unshare", "--mount",
                 "--propagation", "private", "sh", "-c", script],
                stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, env=env,
                start_new_session=True)
        deadline = time.monotonic() + START_TIMEOUT_S
        while not self.running():
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = (self._dir("log") / "libvirtd.out").read_text()[-400:]
                raise PermanentProviderError(f"libvirtd for {self.location} did not start: {tail}")
            time.sleep(0.05)

    def forget(self) -> None:
        """After stop, when the location goes: its run folder, if it lives outside the state
        directory."""
        if self.run_dir != self.root / "run":
            shutil.rmtree(self.run_dir, ignore_errors=True)

    def stop(self) -> None:
        """Stop the daemons (not the VMs: stopping those is the caller's decision)."""
        for name in ("libvirtd.pid", "virtlogd.pid"):
            pid_file = self.run_dir / name
            with contextlib.suppress(FileNotFoundError, ValueError, ProcessLookupError):
                pid = int(pid_file.read_text().strip())
                os.kill(pid, signal.SIGTERM)
                deadline = time.monotonic() + 10
                while _alive(pid) and time.monotonic() < deadline:
                    time.sleep(0.05)
                if _alive(pid):
                    os.kill(pid, signal.SIGKILL)
        with contextlib.suppress(FileNotFoundError):
            self.socket_path.unlink()

    # ---- internals -----------------------------------------------------------------------

    def _dir(self, key: str) -> Path:
        d = self.run_dir if key == "run" else self.root / key
        d.mkdir(mode=0o700, parents=True, exist_ok=True)
        return d

    def _write_config(self) -> None:
        etc = self._dir("etc")
        # A stable host UUID per location: libvirt refuses a migration between two daemons
        # that report the same one.
        host_uuid = uuid.uuid5(uuid.NAMESPACE_URL, f"onepane-vm-location:{self.location}")
        daemon = (f'host_uuid = "{host_uuid}"\nunix_sock_rw_perms = "0700"\n'
                  'auth_unix_rw = "none"\nkeepalive_interval = 5\n')
        qemu = ('user = "root"\ngroup = "root"\ndynamic_ownership = 0\n'
                'security_driver = "none"\nstdio_handler = "file"\n')
        if self.listen:
            # A host's daemon: clients and peers over TCP, QEMU's migration and NBD streams
            # at the same address (without migration_host the destination advertises its
            # host name, which the source cannot resolve).
            daemon += f'listen_addr = "{self.listen}"\n'
            if self.tls_dir:
                t = self.tls_dir
                daemon += (f'listen_tls = 1\nlisten_tcp = 0\nkey_file = "{t / "serverkey.pem"}"\n'
                           f'cert_file = "{t / "servercert.pem"}"\nca_file = "{t / "cacert.pem"}"\n'
                           'tls_allowed_dn_list = ["CN=onepane", "CN=onepane-*"]\n')
            else:
                daemon += 'listen_tls = 0\nlisten_tcp = 1\nauth_tcp = "none"\n'

            qemu += f'migration_address = "{self.listen}"\nmigration_host = "{self.listen}"\n'
        (etc / "libvirtd.conf").write_text(daemon)
        (etc / "qemu.conf").write_text(qemu)
        (etc / "virtlogd.conf").write_text("")
        (etc / "libvirt.conf").write_text("")


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    with contextlib.suppress(FileNotFoundError):
        return Path(f"/proc/{pid}/stat").read_text().split()[2] != "Z"
    return False
