"""Baseline: CPython's asynchat line echo server (terminator b"\\n").

    python3 -W ignore bench/servers/asynchat_echo.py PORT

The same program as asynchat_echo.ts: collect_incoming_data keeps the pieces
of a line and found_terminator pushes them back with the newline. Like
asyncore_echo.py it uses asyncore.loop(use_poll=True), since select() cannot
watch descriptors past FD_SETSIZE (1024).
"""

import asynchat
import asyncore
import socket
import sys


class LineEcho(asynchat.async_chat):
    def __init__(self, sock):
        super().__init__(sock)
        self.set_terminator(b"\n")
        self.pieces = []

    def collect_incoming_data(self, data):
        self.pieces.append(data)

    def found_terminator(self):
        self.push(b"".join(self.pieces) + b"\n")
        self.pieces = []


class EchoServer(asyncore.dispatcher):
    def __init__(self, port):
        super().__init__()
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        LineEcho(sock)


def main():
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = EchoServer(port)
    print(f"listening on 127.0.0.1:{server.socket.getsockname()[1]}", flush=True)
    try:
        asyncore.loop(timeout=30.0, use_poll=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
