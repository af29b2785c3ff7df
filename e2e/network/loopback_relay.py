"""A server on the host's loopback, reachable at the same address from inside the nodes' network
namespaces: ``127.0.0.1:PORT`` in each node namespace relays to ``127.0.0.1:PORT`` on the host.

With several nodes each node is a network namespace whose ``127.0.0.1`` is its own, so a registry
on the host's loopback (``127.0.0.1:PORT``, the only place a server may listen here) is not
reachable from a node's containerd. This relay opens a listening socket in each node's namespace
(``setns`` into it, ``bind``, ``setns`` back: a socket stays in the namespace it was made in),
then accepts there and connects to the host's loopback: image references stay
``127.0.0.1:PORT/...``, the same on the host (docker push, helm push) and on every node. Nothing
listens on any other address. The relay is a host process: pulling a node's cable
(``node partition``) does not cut it.

    python3 loopback_relay.py PORT NETNS...   (NETNS: a name under /run/netns)

Standard library only: it is started as a script (the harness's daemons run from the state
directory, without this checkout on the import path)."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import sys
import threading

CLONE_NEWNET = 0x40000000
_libc = ctypes.CDLL(None, use_errno=True)


def _setns(fd: int) -> None:
    if _libc.setns(fd, CLONE_NEWNET) != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"setns: {os.strerror(err)}")


def listeners(port: int, namespaces: list[str]) -> list[socket.socket]:
    """A socket listening on ``127.0.0.1:port`` in each namespace (the calling thread returns to
    its own namespace after)."""
    home = os.open("/proc/self/ns/net", os.O_RDONLY)
    made = []
    try:
        for ns in namespaces:
            fd = os.open(f"/run/netns/{ns}", os.O_RDONLY)
            try:
                _setns(fd)
                s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                s.bind(("127.0.0.1", port))
                s.listen(64)
                made.append(s)
            finally:
                _setns(home)
                os.close(fd)
    finally:
        os.close(home)
    return made


def _pump(src: socket.socket, dst: socket.socket) -> None:
    try:
        while data := src.recv(65536):
            dst.sendall(data)
    except OSError:
        pass
    finally:
        for s, how in ((dst, socket.SHUT_WR), (src, socket.SHUT_RD)):
            with contextlib.suppress(OSError):
                s.shutdown(how)


def _serve_one(client: socket.socket, port: int) -> None:
    try:
        upstream = socket.create_connection(("127.0.0.1", port), timeout=10)
    except OSError as e:
        print(f"relay: 127.0.0.1:{port} on the host: {e}", file=sys.stderr, flush=True)
        client.close()
        return
    upstream.settimeout(None)
    back = threading.Thread(target=_pump, args=(upstream, client), daemon=True)
    back.start()
    _pump(client, upstream)
    back.join()
    client.close()
    upstream.close()


def _accept(listener: socket.socket, port: int) -> None:
    while True:
        client, _ = listener.accept()
        threading.Thread(target=_serve_one, args=(client, port), daemon=True).start()


def main(argv: list[str]) -> int:
    if len(argv) < 2 or not argv[0].isdigit():
        print("usage: loopback_relay.py PORT NETNS...", file=sys.stderr)
        return 2
    port = int(argv[0])
    socks = listeners(port, argv[1:])  # before any thread: setns applies to this thread only
    print(f"relaying 127.0.0.1:{port} in {', '.join(argv[1:])} to the host's", flush=True)
    for s in socks:
        threading.Thread(target=_accept, args=(s, port), daemon=True).start()
    signal.sigwait({signal.SIGTERM, signal.SIGINT})
    return 0


if __name__ == "__main__":
    signal.pthread_sigmask(signal.SIG_BLOCK, {signal.SIGTERM, signal.SIGINT})
    sys.exit(main(sys.argv[1:]))
