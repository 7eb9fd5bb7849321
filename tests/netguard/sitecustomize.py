"""A network guard for subprocesses: records, then refuses, every attempt to leave the machine.

Put this directory first on PYTHONPATH and set NETGUARD_LOG to a file path; every Python process
started with that environment (and every Python child it spawns) imports this module at start-up
through `site`. It wraps

    socket.socket.connect / connect_ex / sendto / sendmsg
    socket.create_connection
    socket.getaddrinfo / gethostbyname / gethostbyname_ex / gethostbyaddr

so that reaching a non-loopback address, or resolving a name other than localhost, appends one
JSON line {"event": "blocked", "kind", "target", "pid", "argv", "stack"} to NETGUARD_LOG and
raises OSError (socket.gaierror for lookups): nothing leaves, and the caller sees what an offline
machine would show. Each guarded process also writes one {"event": "armed"} line, so a test can
tell "no attempts" from "the guard never loaded".

Loopback (127.0.0.0/8, ::1), the unspecified address (0.0.0.0, ::), Unix and netlink sockets, and
numeric addresses handed to getaddrinfo (resolving a literal involves no lookup; the connect that
follows is checked) are allowed. Sockets opened from C or Rust code do not go through here; the
offline test watches those at the syscall level with strace.

Without NETGUARD_LOG the module does nothing.
"""

from __future__ import annotations

import errno
import ipaddress
import json
import os
import socket
import sys
import time
import traceback
from typing import Any

LOG = os.environ.get("NETGUARD_LOG")
PLUMBING = (
    "/socket.py",
    "/ssl.py",
    "/httpx",  # httpx, httpx2
    "/httpcore",  # httpcore, httpcore2
    "/anyio/",
    "/asyncio/",
    "/urllib3/",
    "/requests/",
    "/http/client.py",
    "/urllib/request.py",
    "/concurrent/futures/",
    "/threading.py",
)
LOCAL_NAMES = {"localhost", "localhost.localdomain", "ip6-localhost", "ip6-loopback"}


def _is_local_ip(host: str) -> bool | None:
    """True/False for an IP literal, None for a host name."""
    try:
        ip = ipaddress.ip_address(host.split("%", 1)[0])
    except ValueError:
        return None
    mapped = getattr(ip, "ipv4_mapped", None)
    if mapped is not None:
        ip = mapped
    return ip.is_loopback or ip.is_unspecified


def _is_local_host(host: Any) -> bool:
    if host is None:
        return True
    if isinstance(host, bytes | bytearray):
        host = host.decode("ascii", "replace")
    host = str(host).strip().rstrip(".").lower()
    if host == "":
        return True
    local = _is_local_ip(host.strip("[]"))
    if local is not None:
        return local
    return host in LOCAL_NAMES or host.endswith(".localhost")


def _stack() -> list[str]:
    # Who asked, not how the HTTP stack dials: library plumbing frames are left out.
    frames = [
        f
        for f in traceback.extract_stack()
        if f.filename != __file__ and not any(p in f.filename for p in PLUMBING)
    ]
    out = []
    for frame in frames[-12:]:
        path = frame.filename
        for marker in ("site-packages/", "lib/python"):
            if marker in path:
                path = path.split(marker, 1)[1]
                break
        out.append(f"{path}:{frame.lineno} in {frame.name}")
    return out


def _write(record: dict[str, Any]) -> None:
    if not LOG:
        return
    record.setdefault("pid", os.getpid())
    record.setdefault("argv", sys.argv[:4] if hasattr(sys, "argv") else [])
    record.setdefault("time", round(time.time(), 3))
    line = json.dumps(record, default=str) + "\n"
    # O_APPEND writes of one short line are atomic across processes and threads.
    fd = os.open(LOG, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line.encode())
    finally:
        os.close(fd)


def _block(kind: str, target: str, *, lookup: bool = False) -> None:
    _write({"event": "blocked", "kind": kind, "target": target, "stack": _stack()})
    message = f"netguard: blocked {kind} to {target} (offline test; see NETGUARD_LOG)"
    if lookup:
        raise socket.gaierror(socket.EAI_NONAME, message)
    raise OSError(errno.ENETUNREACH, message)


def _check_address(kind: str, family: int, address: Any) -> None:
    if family not in (socket.AF_INET, socket.AF_INET6):
        return  # AF_UNIX, AF_NETLINK, ... never leave the machine
    if not isinstance(address, tuple) or not address:
        return
    host = address[0]
    if not _is_local_host(host):
        port = address[1] if len(address) > 1 else ""
        _block(kind, f"{host}:{port}")


def _install() -> None:
    sock_cls = socket.socket
    orig_connect = sock_cls.connect
    orig_connect_ex = sock_cls.connect_ex
    orig_sendto = sock_cls.sendto
    orig_sendmsg = sock_cls.sendmsg
    orig_create_connection = socket.create_connection
    orig_getaddrinfo = socket.getaddrinfo
    orig_gethostbyname = socket.gethostbyname
    orig_gethostbyname_ex = socket.gethostbyname_ex
    orig_gethostbyaddr = socket.gethostbyaddr

    def connect(self: socket.socket, address: Any) -> None:
        _check_address("connect", self.family, address)
        return orig_connect(self, address)

    def connect_ex(self: socket.socket, address: Any) -> int:
        _check_address("connect_ex", self.family, address)
        return orig_connect_ex(self, address)

    def sendto(self: socket.socket, data: Any, *args: Any) -> int:
        if args:
            _check_address("sendto", self.family, args[-1])
        return orig_sendto(self, data, *args)

    def sendmsg(self: socket.socket, buffers: Any, *args: Any) -> int:
        if len(args) >= 3 and args[2] is not None:
            _check_address("sendmsg", self.family, args[2])
        return orig_sendmsg(self, buffers, *args)

    def create_connection(address: Any, *args: Any, **kwargs: Any) -> socket.socket:
        host, port = address[0], address[1]
        if not _is_local_host(host):
            _block("create_connection", f"{host}:{port}")
        return orig_create_connection(address, *args, **kwargs)

    def getaddrinfo(host: Any, port: Any, *args: Any, **kwargs: Any) -> Any:
        if not _is_local_host(host):
            _block("getaddrinfo", f"{host!s}:{port}", lookup=True)
        return orig_getaddrinfo(host, port, *args, **kwargs)

    def gethostbyname(host: str) -> str:
        if not _is_local_host(host):
            _block("gethostbyname", host, lookup=True)
        return orig_gethostbyname(host)

    def gethostbyname_ex(host: str) -> Any:
        if not _is_local_host(host):
            _block("gethostbyname_ex", host, lookup=True)
        return orig_gethostbyname_ex(host)

    def gethostbyaddr(host: str) -> Any:
        # A reverse lookup of anything but loopback asks DNS (socket.getfqdn() does this).
        if not _is_local_host(host):
            _block("gethostbyaddr", host, lookup=True)
        return orig_gethostbyaddr(host)

    sock_cls.connect = connect  # type: ignore[method-assign]
    sock_cls.connect_ex = connect_ex  # type: ignore[method-assign]
    sock_cls.sendto = sendto  # type: ignore[method-assign,assignment]
    sock_cls.sendmsg = sendmsg  # type: ignore[method-assign]
    socket.create_connection = create_connection  # type: ignore[assignment]
    socket.getaddrinfo = getaddrinfo
    socket.gethostbyname = gethostbyname
    socket.gethostbyname_ex = gethostbyname_ex
    socket.gethostbyaddr = gethostbyaddr
    _write({"event": "armed"})


if LOG:
    _install()
