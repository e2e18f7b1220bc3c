"""A TCP relay on 127.0.0.1 that a test can cut, hang and restore, to fake a broker's trouble.

* ``cut()``: open connections are closed and new ones are accepted and closed at once, the
  way a client sees a broker that went away (connection reset / refused on reconnect).
* ``hang()``: the broker is there but never answers, like one stuck on a full disk or
  stopped with SIGSTOP: new connections are accepted and then left unanswered, and nothing
  more flows on the open ones, in either direction (not even a close).
* ``restore()``: relay again; what waited during a hang flows on (held connections are
  relayed to the target then, as a broker waking up would answer them).
"""

from __future__ import annotations

import contextlib
import socket
import threading


class TcpProxy:
    """Relay 127.0.0.1:<port> to ``target``; ``cut()``, ``hang()`` and ``restore()`` the link."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self._target = (target_host, target_port)
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._cut = threading.Event()
        self._flowing = threading.Event()  # clear while hung
        self._flowing.set()
        self._closing = threading.Event()
        self._lock = threading.Lock()
        self._sockets: set[socket.socket] = set()
        self._held: list[socket.socket] = []  # accepted while hung, not relayed yet
        self.connections = 0  # relayed to the target
        self.held_connections = 0  # accepted while hung
        threading.Thread(target=self._accept_loop, daemon=True, name="tcp-proxy").start()

    def cut(self) -> None:
        """Drop every relayed connection and refuse new ones until restored."""
        self._cut.set()
        self._flowing.set()  # a relay stuck in a hang must see its sockets closed and end
        with self._lock:
            doomed = list(self._sockets) + self._held
            self._sockets.clear()
            self._held.clear()
        for sock in doomed:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()

    def hang(self) -> None:
        """Accept but never answer; freeze the open connections (until restored)."""
        with self._lock:
            self._flowing.clear()

    def restore(self) -> None:
        """Relay again; connections held during a hang are relayed now."""
        with self._lock:
            held, self._held = self._held, []
            self._cut.clear()
            self._flowing.set()
        for client in held:
            self._relay(client)

    def close(self) -> None:
        """Stop the proxy."""
        self._closing.set()
        self.cut()
        self._listener.close()

    def _accept_loop(self) -> None:
        while not self._closing.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            if self._cut.is_set():
                client.close()
                continue
            with self._lock:
                if not self._flowing.is_set():
                    self._held.append(client)
                    self.held_connections += 1
                    continue
            self._relay(client)

    def _relay(self, client: socket.socket) -> None:
        try:
            upstream = socket.create_connection(self._target, timeout=5)
        except OSError:
            client.close()
            return
        upstream.settimeout(None)
        self.connections += 1
        with self._lock:
            self._sockets.update({client, upstream})
        for source, sink in ((client, upstream), (upstream, client)):
            threading.Thread(target=self._pump, args=(source, sink), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket) -> None:
        try:
            while True:
                data = source.recv(65536)
                self._flowing.wait()  # hung: hold what came (and a close) until restored
                if not data:
                    break
                sink.sendall(data)
        except OSError:
            pass
        finally:
            for sock in (source, sink):
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
                with self._lock:
                    self._sockets.discard(sock)
