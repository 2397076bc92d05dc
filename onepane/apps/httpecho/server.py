"""A tiny HTTP app that says which instance and location answered; used by demos and tests.

GET /reach?host=H&port=P[&timeout=S] answers whether this instance can open a TCP connection
to H:P (at most 5 s): network policy (security groups' egress rules, an application's tiers)
tried from where the instance stands, not from the operator's machine.
"""

import json
import os
import socket
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

IDENTITY = {
    "instance": os.environ.get("ONEPANE_INSTANCE_ID", "?"),
    "location": os.environ.get("ONEPANE_LOCATION", "?"),
}
BODY = json.dumps(IDENTITY).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # head and body leave in one write, as one segment

    def do_GET(self) -> None:
        if self.path.startswith("/reach?"):
            self.reach()
            return
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("X-Served-By", IDENTITY["location"])
        self.end_headers()
        self.wfile.write(BODY)

    do_HEAD = do_GET

    def reach(self) -> None:
        query = parse_qs(urlsplit(self.path).query)
        try:
            host, port = query["host"][0], int(query["port"][0])
            timeout = min(5.0, float(query.get("timeout", ["1"])[0]))
        except (KeyError, ValueError):
            self.answer(400, {"error": "give host=, port= (a number) and optionally timeout="})
            return
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            self.answer(200, {**IDENTITY, "reached": True})
        except OSError as exc:
            self.answer(200, {**IDENTITY, "reached": False,
                              "error": str(exc) or type(exc).__name__})

    def answer(self, status: int, body: dict) -> None:
        data = json.dumps(body).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, *args: object) -> None:
        pass


class Server(ThreadingHTTPServer):
    daemon_threads = True
    request_queue_size = 256

    def server_bind(self) -> None:
        # Skip getfqdn(): in a namespace without DNS it can stall for seconds.
        socketserver.TCPServer.server_bind(self)
        self.server_name, self.server_port = str(self.server_address[0]), self.server_address[1]


if __name__ == "__main__":
    Server((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Handler).serve_forever()
