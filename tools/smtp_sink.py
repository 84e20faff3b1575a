#!/usr/bin/env python3
"""A real SMTP server for the test suites (aiosmtpd), with a switchable mood.

It stores every accepted message as DIR/<n>.eml and prints, once ready,

    SMTP listening on 127.0.0.1:<port>

so a harness can start it on port 0 and read the port. Its behaviour is read
from DIR/mode before every transaction, so a test can change it while it runs:

    accept   (default) take the message, answer 250
    tempfail answer 451 (a transient failure: the sender must retry)
    reject   answer 554 (a permanent failure: the sender must give up)
    crash    store the message, then die before answering (the sender cannot
             know it was accepted; the harness restarts the server)

Usage: smtp_sink.py --dir DIR [--port N] [--host 127.0.0.1]
"""

import argparse
import asyncio
import itertools
import os
import signal
import socket
import sys

from aiosmtpd.controller import Controller


class Sink:
    def __init__(self, directory):
        self.directory = directory
        self.counter = itertools.count(1)

    def mode(self):
        try:
            with open(os.path.join(self.directory, "mode")) as f:
                return f.read().strip() or "accept"
        except FileNotFoundError:
            return "accept"

    async def handle_DATA(self, server, session, envelope):
        mode = self.mode()
        if mode == "tempfail":
            return "451 4.3.0 Try again later (test server in tempfail mode)"
        if mode == "reject":
            return "554 5.7.1 Message refused (test server in reject mode)"
        n = next(self.counter)
        while os.path.exists(os.path.join(self.directory, f"{n}.eml")):
            n = next(self.counter)
        path = os.path.join(self.directory, f"{n}.eml")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(f"X-Envelope-From: {envelope.mail_from}\r\n".encode())
            f.write(f"X-Envelope-To: {','.join(envelope.rcpt_tos)}\r\n".encode())
            f.write(envelope.original_content or envelope.content)
        os.replace(tmp, path)
        if mode == "crash":
            os._exit(17)
        return "250 2.0.0 OK: queued as %d" % n


def free_port(host):
    with socket.socket() as s:
        s.bind((host, 0))
        return s.getsockname()[1]


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--dir", required=True)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=0)
    args = p.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    port = args.port or free_port(args.host)
    controller = Controller(Sink(args.dir), hostname=args.host, port=port)
    controller.start()
    print(f"SMTP listening on {args.host}:{port}", flush=True)
    loop = asyncio.new_event_loop()
    stop = asyncio.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    loop.run_until_complete(stop.wait())
    controller.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
