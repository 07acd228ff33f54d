#!/usr/bin/env python3
"""A faulty network between the VFS and a real S3 server: an HTTP proxy that forwards every
request to the upstream server and, at a configurable rate, answers it badly instead.

    fault_proxy.py --upstream http://127.0.0.1:5000 [--rate 0.1] [--stall 3]

Prints "listening PORT" once ready. Faults, chosen uniformly for a faulty request:
  500, 503   an S3 XML error answer (InternalError, SlowDown)
  reset      the connection closed with a TCP reset, no answer
  truncate   the upstream answer's headers (full Content-Length), half its body, then close
  short      the upstream answer with half its body and a Content-Length to match
  stall      no answer for --stall seconds (longer than the client's timeout), then close
and, only when named in `kinds`:
  lost_put   a PUT forwarded to the upstream (so it is stored), then the connection reset
             before any answer; other requests pass (a write whose outcome is unknown)
Every request also waits --latency ms plus up to --jitter ms.

Control (not forwarded): `GET /__faults` gives the counters as JSON; `POST /__faults` with a
JSON object sets any of rate, stall, latency_ms, jitter_ms, kinds. Standard library only.
"""

import argparse
import http.client
import http.server
import json
import random
import socket
import struct
import sys
import threading
import time
import urllib.parse

KINDS = ["500", "503", "reset", "truncate", "short", "stall"]
OPT_IN = ["lost_put"]
HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "te", "trailer", "upgrade",
              "proxy-authorization", "proxy-authenticate"}


class State:
    def __init__(self, args):
        self.lock = threading.Lock()
        self.config = {"rate": args.rate, "stall": args.stall, "latency_ms": args.latency,
                       "jitter_ms": args.jitter, "kinds": list(KINDS)}
        self.counts = {"requests": 0, "faults": 0, **{k: 0 for k in KINDS + OPT_IN}}
        self.random = random.Random(args.seed)

    def pick(self):
        """The fault for the next request (or None), and the delay before it."""
        with self.lock:
            self.counts["requests"] += 1
            c = self.config
            delay = (c["latency_ms"] + self.random.random() * c["jitter_ms"]) / 1000
            if c["kinds"] and self.random.random() < c["rate"]:
                kind = self.random.choice(c["kinds"])
                self.counts["faults"] += 1
                self.counts[kind] += 1
                return kind, delay, c["stall"]
            return None, delay, c["stall"]


def make_handler(state, upstream):
    target = urllib.parse.urlsplit(upstream)

    class Handler(http.server.BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, *args):
            pass

        def control(self):
            if self.command == "POST":
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                update = json.loads(body or b"{}")
                with state.lock:
                    state.config.update({k: v for k, v in update.items() if k in state.config})
            with state.lock:
                answer = json.dumps({"config": state.config, "counts": state.counts}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(answer)))
            self.end_headers()
            self.wfile.write(answer)

        def forward(self):
            length = int(self.headers.get("Content-Length", 0) or 0)
            body = self.rfile.read(length) if length else None
            conn = http.client.HTTPConnection(target.hostname, target.port, timeout=30)
            headers = {k: v for k, v in self.headers.items() if k.lower() not in HOP_BY_HOP}
            conn.request(self.command, self.path, body=body, headers=headers)
            resp = conn.getresponse()
            data = resp.read()
            conn.close()
            return resp, data

        def reply(self, resp, data, content_length=None):
            self.send_response(resp.status, resp.reason)
            for k, v in resp.getheaders():
                if k.lower() not in HOP_BY_HOP and k.lower() != "content-length":
                    self.send_header(k, v)
            self.send_header("Content-Length", str(len(data) if content_length is None else content_length))
            self.end_headers()

        def reset(self):
            # SO_LINGER with a zero timeout: close() sends RST instead of FIN.
            self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            self.close_connection = True

        def handle_any(self):
            if self.path.startswith("/__faults"):
                return self.control()
            kind, delay, stall = state.pick()
            time.sleep(delay)
            if kind in ("500", "503"):
                length = int(self.headers.get("Content-Length", 0) or 0)
                if length:
                    self.rfile.read(length)
                code, name = ("InternalError", "We encountered an internal error") if kind == "500" \
                    else ("SlowDown", "Please reduce your request rate")
                body = (f'<?xml version="1.0" encoding="UTF-8"?><Error><Code>{code}</Code>'
                        f"<Message>{name}.</Message></Error>").encode()
                self.send_response(int(kind))
                self.send_header("Content-Type", "application/xml")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)
                return
            if kind == "reset":
                return self.reset()
            if kind == "stall":
                time.sleep(stall)
                self.close_connection = True
                return
            if kind == "lost_put" and self.command == "PUT":
                self.forward()
                return self.reset()
            resp, data = self.forward()
            if kind == "truncate" and len(data) > 1:
                self.reply(resp, data)
                self.wfile.write(data[: len(data) // 2])
                self.wfile.flush()
                return self.reset()
            if kind == "short" and len(data) > 1 and resp.status in (200, 206):
                half = data[: len(data) // 2]
                self.reply(resp, half)
                self.wfile.write(half)
                return
            if self.command == "HEAD":
                # No body, and the length of the object it describes.
                self.reply(resp, data, resp.getheader("Content-Length", "0"))
                return
            self.reply(resp, data)
            self.wfile.write(data)

        do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = handle_any

    return Handler


class Server(http.server.ThreadingHTTPServer):
    daemon_threads = True

    def handle_error(self, request, client_address):
        # A client that gave up on a stalled or broken answer is the point, not news.
        if not isinstance(sys.exc_info()[1], (BrokenPipeError, ConnectionResetError)):
            super().handle_error(request, client_address)


def main():
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--upstream", required=True)
    p.add_argument("--rate", type=float, default=0.0)
    p.add_argument("--stall", type=float, default=3.0)
    p.add_argument("--latency", type=float, default=0.0, help="ms added to every request")
    p.add_argument("--jitter", type=float, default=0.0, help="up to this many ms more")
    p.add_argument("--seed", type=int, default=None)
    args = p.parse_args()
    server = Server(("127.0.0.1", 0), make_handler(State(args), args.upstream))
    print(f"listening {server.server_address[1]}", flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    sys.exit(0)


if __name__ == "__main__":
    main()
