"""A tiny HTTP app that says which instance and location answered; used by demos and tests."""

import json
import os
import socketserver
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

IDENTITY = {
    "instance": os.environ.get("ONEPANE_INSTANCE_ID", "?"),
    "location": os.environ.get("ONEPANE_LOCATION", "?"),
}
BODY = json.dumps(IDENTITY).encode()


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    wbufsize = 65536  # head and body leave in one write, as one segment

    def do_GET(self) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(BODY)))
        self.send_header("X-Served-By", IDENTITY["location"])
        self.end_headers()
        self.wfile.write(BODY)

    do_HEAD = do_GET

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
