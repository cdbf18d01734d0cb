"""Baseline: CPython's asynchat line echo server (terminator b"\\n").

    python3 -W ignore bench/servers/asynchat_echo.py PORT

The same program as asynchat_echo.ts: collect_incoming_data keeps the pieces
of a line and found_terminator pushes them back with the newline. Like
asyncore_echo.py it uses asyncore.loop(use_poll=True), since select() cannot
watch descriptors past FD_SETSIZE (1024), and it is served by that file's
listener.
"""

import asynchat

from asyncore_echo import main


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


if __name__ == "__main__":
    main(LineEcho)
