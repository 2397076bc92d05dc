"""The smallest app onepane runs: answers HTTP on the port onepane gives it.

onepane starts it with HOST and PORT (where to listen), ONEPANE_INSTANCE_ID and ONEPANE_LOCATION in the
environment, plus the `env` of onepane-app.json; it is healthy while /healthz answers 200.
"""

import json
import os
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Hello(BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = json.dumps({"greeting": os.environ.get("GREETING", "hello"),
                           "location": os.environ.get("ONEPANE_LOCATION")}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: object) -> None:
        pass


if __name__ == "__main__":
    ThreadingHTTPServer((os.environ.get("HOST", "127.0.0.1"), int(os.environ["PORT"])), Hello).serve_forever()
