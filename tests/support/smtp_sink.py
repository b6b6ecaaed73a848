"""A real SMTP server (aiosmtpd) for the email tests.

Every accepted message is written to DIR/NNNNNN.eml (atomically, envelope in
X-Sink-* headers). Behaviour is read from DIR/mode before every command, so a test
can switch it while the server runs:

  accept        accept everything (default)
  reject        answer 550 to RCPT TO (a permanent refusal)
  tempfail      answer 451 to RCPT TO (a transient refusal)
  slow:SECONDS  wait that long before accepting DATA

Usage: python3 smtp_sink.py --port PORT --dir DIR
Prints "ready PORT" on stdout once it accepts connections.
"""

import argparse
import asyncio
import itertools
import os
import sys
import time

from aiosmtpd.controller import Controller


def read_mode(directory):
    try:
        with open(os.path.join(directory, "mode"), encoding="utf-8") as f:
            return f.read().strip() or "accept"
    except FileNotFoundError:
        return "accept"


class Sink:
    def __init__(self, directory):
        self.directory = directory
        existing = [int(n[:-4]) for n in os.listdir(directory) if n.endswith(".eml") and n[:-4].isdigit()]
        self.counter = itertools.count(max(existing, default=0) + 1)

    async def handle_RCPT(self, server, session, envelope, address, rcpt_options):
        mode = read_mode(self.directory)
        if mode == "reject":
            return "550 5.1.1 mailbox unavailable (test sink rejects)"
        if mode == "tempfail":
            return "451 4.3.0 try again later (test sink)"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server, session, envelope):
        mode = read_mode(self.directory)
        if mode.startswith("slow:"):
            await asyncio.sleep(float(mode.split(":", 1)[1]))
        n = next(self.counter)
        header = (
            f"X-Sink-Mail-From: {envelope.mail_from}\r\n"
            f"X-Sink-Rcpt-To: {','.join(envelope.rcpt_tos)}\r\n"
            f"X-Sink-Received-At: {time.time():.6f}\r\n"
        ).encode()
        content = envelope.original_content or envelope.content
        if isinstance(content, str):
            content = content.encode()
        path = os.path.join(self.directory, f"{n:06d}.eml")
        tmp = path + ".tmp"
        with open(tmp, "wb") as f:
            f.write(header + content)
        os.replace(tmp, path)
        return "250 OK message accepted"


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--dir", required=True)
    args = parser.parse_args()
    os.makedirs(args.dir, exist_ok=True)
    controller = Controller(Sink(args.dir), hostname="127.0.0.1", port=args.port, enable_SMTPUTF8=True)
    controller.start()
    print(f"ready {args.port}", flush=True)
    try:
        sys.stdin.read()  # runs until the test closes stdin or kills the process
    finally:
        controller.stop()


if __name__ == "__main__":
    main()
