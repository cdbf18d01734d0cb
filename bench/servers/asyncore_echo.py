"""Baseline: CPython's asyncore echo server (a dispatcher with its own buffer).

    python3 -W ignore bench/servers/asyncore_echo.py PORT

It uses asyncore.loop(use_poll=True): select() cannot watch descriptors past
FD_SETSIZE (1024), which the 1000- and 10,000-connection scenarios need.
"""

import asyncore
import socket
import sys


class EchoHandler(asyncore.dispatcher):
    def __init__(self, sock):
        super().__init__(sock)
        self.buffer = b""

    def handle_read(self):
        data = self.recv(65536)
        if data:
            self.buffer += data

    def writable(self):
        return len(self.buffer) > 0

    def handle_write(self):
        sent = self.send(self.buffer)
        self.buffer = self.buffer[sent:]

    def handle_close(self):
        self.close()


class EchoServer(asyncore.dispatcher):
    """Listens on 127.0.0.1 and serves each connection with `handler`."""

    def __init__(self, port, handler):
        super().__init__()
        self.handler = handler
        self.create_socket(socket.AF_INET, socket.SOCK_STREAM)
        self.set_reuse_addr()
        self.bind(("127.0.0.1", port))
        self.listen(1024)

    def handle_accepted(self, sock, addr):
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        self.handler(sock)


def main(handler):
    port = int(sys.argv[1]) if len(sys.argv) > 1 else 0
    server = EchoServer(port, handler)
    print(f"listening on 127.0.0.1:{server.socket.getsockname()[1]}", flush=True)
    try:
        asyncore.loop(timeout=30.0, use_poll=True)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main(EchoHandler)
