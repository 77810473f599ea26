"""Test hosts on one machine: Linux network namespaces joined by a bridge (make test-cluster).

Each host is a network namespace with one veth link to a bridge, which lives in a namespace of
its own (the switch). The subnet exists only inside these namespaces: the root namespace gets no
interface and no address, so nothing started here can reach, or be reached from, anything but
these hosts. Every name carries the id of the process that created it, which lets a later run
remove what a killed run left behind without touching a live run's hosts.

    python -m tests.cluster.hosts clean    # remove the hosts and work folders of dead runs

Needs root (or CAP_NET_ADMIN and CAP_SYS_ADMIN) and iproute2.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

PREFIX = "arenact"
# A /24 that only exists inside the namespaces made here; the switch routes nothing elsewhere.
SUBNET = "10.213.47"
SWITCH = "sw"
_CLONE_NEWNET = 0x40000000


class HostError(RuntimeError):
    """A command on a test host failed; the message carries its output."""


def _ip(*args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(["ip", *args], capture_output=True, text=True, timeout=30)
    if check and done.returncode != 0:
        raise HostError(f"ip {' '.join(args)}: {done.stderr.strip() or done.returncode}")
    return done


def netns_names() -> list[str]:
    # Lines read "NAME" or "NAME (id: N)".
    return [line.split()[0] for line in _ip("netns", "list").stdout.splitlines() if line.strip()]


def netns_delete(name: str) -> None:
    """Kill what still runs in the namespace (only this module's hosts get here), then delete it."""
    for _ in range(50):
        pids = [int(p) for p in _ip("netns", "pids", name, check=False).stdout.split()]
        if not pids:
            break
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.1)
    _ip("netns", "delete", name, check=False)


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def leftovers_remove() -> list[str]:
    """Remove the namespaces and work folders of runs whose process is gone."""
    removed = []
    pattern = re.compile(rf"^{PREFIX}(\d+)-")
    for name in netns_names():
        match = pattern.match(name)
        if match and not _pid_alive(int(match.group(1))):
            netns_delete(name)
            removed.append(name)
    for folder in Path(tempfile.gettempdir()).glob(f"{PREFIX}*-*"):
        match = pattern.match(folder.name)
        if match and folder.is_dir() and not _pid_alive(int(match.group(1))):
            shutil.rmtree(folder, ignore_errors=True)
            removed.append(str(folder))
    return removed


@dataclass
class Service:
    """A process started on a host, in a process group of its own; its output goes to `log`."""

    name: str
    host: Host
    process: subprocess.Popen[bytes]
    log: Path
    log_start: int = 0  # where this process's output begins in a log shared with earlier ones
    stop_signal: int = signal.SIGTERM

    @property
    def alive(self) -> bool:
        return self.process.poll() is None

    def signal(self, signum: int) -> None:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.process.pid, signum)

    def kill(self) -> None:
        """SIGKILL the whole group: the host loses the process without any goodbye."""
        self.signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self, timeout: float = 10) -> None:
        if self.alive:
            self.signal(self.stop_signal)
            try:
                self.process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                self.kill()
        # Whatever the leader left behind in its group goes too.
        self.signal(signal.SIGKILL)

    def log_text(self, *, last: int | None = 4000, since_start: bool = False) -> str:
        try:
            with open(self.log, "rb") as log:
                log.seek(self.log_start if since_start else 0)
                text = log.read().decode(errors="replace")
        except OSError:
            return ""
        return text[-last:] if last else text

    def wait_for(self, ready: Callable[[], bool], *, timeout: float, what: str) -> None:
        """Poll `ready` until it holds; fail with the log if the process exits or time runs out."""
        deadline = time.monotonic() + timeout
        last_error = ""
        while True:
            try:
                if ready():
                    return
            except Exception as exc:  # Not ready yet: refused, reset, timed out, ...
                last_error = f" (last: {type(exc).__name__}: {exc})"
            if not self.alive:
                raise HostError(
                    f"{self.name} on {self.host.name} exited: {what}\n{self.log_text()}"
                )
            if time.monotonic() > deadline:
                raise HostError(
                    f"{self.name} on {self.host.name}: {what}{last_error}\n{self.log_text()}"
                )
            time.sleep(0.2)


@dataclass
class Host:
    name: str
    netns: str
    address: str
    log_dir: Path
    services: list[Service] = field(default_factory=list)

    def argv(self, command: Sequence[str]) -> list[str]:
        return ["ip", "netns", "exec", self.netns, *command]

    def run(
        self,
        command: Sequence[str],
        *,
        env: dict[str, str],
        timeout: float = 120,
        cwd: Path | None = None,
    ) -> subprocess.CompletedProcess[str]:
        """Run a command on this host to its end; raise with its output if it fails."""
        done = subprocess.run(
            self.argv(command), env=env, cwd=cwd, capture_output=True, text=True, timeout=timeout
        )
        if done.returncode != 0:
            raise HostError(
                f"{self.name}: {' '.join(command)} exited with {done.returncode}\n"
                f"{done.stdout[-3000:]}\n{done.stderr[-3000:]}"
            )
        return done

    def start(
        self,
        name: str,
        command: Sequence[str],
        *,
        env: dict[str, str],
        cwd: Path | None = None,
        stop_signal: int = signal.SIGTERM,
    ) -> Service:
        """Start a long-running process on this host, in a new session (its own group).

        Its output goes to LOG_DIR/<host>-<name>.log, after that of earlier runs of it."""
        log = self.log_dir / f"{self.name}-{name}.log"
        with open(log, "ab") as out:
            start = out.tell()
            process = subprocess.Popen(
                self.argv(command),
                env=env,
                cwd=cwd,
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        service = Service(
            name=name, host=self, process=process, log=log, log_start=start,
            stop_signal=stop_signal,
        )  # fmt: skip
        self.services.append(service)
        return service


class Cluster:
    """Hosts on a private bridge. `up()` builds them; `down()` removes everything, always safe.

    `hosts` maps each host's name to the last byte of its address in SUBNET.
    """

    def __init__(self, hosts: dict[str, int], *, log_dir: Path) -> None:
        self.id = f"{PREFIX}{os.getpid()}"
        self.switch = f"{self.id}-{SWITCH}"
        log_dir.mkdir(parents=True, exist_ok=True)
        for old in log_dir.glob("*.log"):
            old.unlink()  # the previous run's
        self.workdir = Path(tempfile.mkdtemp(prefix=f"{self.id}-"))
        self.hosts = {
            name: Host(name=name, netns=f"{self.id}-{name}", address=f"{SUBNET}.{byte}",
                       log_dir=log_dir)
            for name, byte in hosts.items()
        }  # fmt: skip

    def __getitem__(self, name: str) -> Host:
        return self.hosts[name]

    def up(self) -> None:
        leftovers_remove()
        _ip("netns", "add", self.switch)
        _ip("-n", self.switch, "link", "add", "name", "br0", "type", "bridge")
        _ip("-n", self.switch, "link", "set", "dev", "br0", "up")
        for host in self.hosts.values():
            _ip("netns", "add", host.netns)
            _ip("-n", host.netns, "link", "set", "dev", "lo", "up")
            # Both ends are created inside namespaces: the root namespace never sees them.
            _ip("-n", self.switch, "link", "add", "name", host.name, "type", "veth",
                "peer", "name", "eth0", "netns", host.netns)  # fmt: skip
            _ip("-n", self.switch, "link", "set", "dev", host.name, "master", "br0", "up")
            _ip("-n", host.netns, "addr", "add", f"{host.address}/24", "dev", "eth0")
            _ip("-n", host.netns, "link", "set", "dev", "eth0", "up")

    def link_set(self, name: str, *, up: bool) -> None:
        """Plug the host's cable in or out (its port on the switch)."""
        _ip("-n", self.switch, "link", "set", "dev", name, "up" if up else "down")

    @contextlib.contextmanager
    def entered(self, name: str) -> Iterator[Host]:
        """Move this thread into the host's namespace: sockets opened meanwhile are the host's.

        Threads started meanwhile by this thread inherit the namespace too.
        """
        libc = ctypes.CDLL("libc.so.6", use_errno=True)
        home = os.open("/proc/thread-self/ns/net", os.O_RDONLY)
        target = os.open(f"/run/netns/{self.hosts[name].netns}", os.O_RDONLY)
        try:
            if libc.setns(target, _CLONE_NEWNET) != 0:
                raise OSError(ctypes.get_errno(), f"setns into {name}")
            try:
                yield self.hosts[name]
            finally:
                if libc.setns(home, _CLONE_NEWNET) != 0:
                    raise OSError(ctypes.get_errno(), "setns back")
        finally:
            os.close(target)
            os.close(home)

    def down(self) -> None:
        """Stop every service (last started first), delete every namespace and the work folder."""
        for host in reversed(list(self.hosts.values())):
            for service in reversed(host.services):
                with contextlib.suppress(Exception):
                    service.stop(timeout=5)
        for name in [h.netns for h in self.hosts.values()] + [self.switch]:
            if name in netns_names():
                netns_delete(name)
        shutil.rmtree(self.workdir, ignore_errors=True)


def main(argv: list[str]) -> int:
    if argv[1:] != ["clean"]:
        print(__doc__, file=sys.stderr)
        return 2
    for name in leftovers_remove():
        print(f"removed {name}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
