"""A webhook receiver on loopback that answers 200 at once and logs every delivery.

`python -m drills.receiver --port P --log FILE`: each POST appends one JSON line (receipt time,
the event id header, the signature header, the raw body) and is flushed before the answer, so
what the log holds was acknowledged. The drills verify signatures and ids afterwards.
"""

from __future__ import annotations

import argparse
import json
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import IO, Any


def serve(port: int, log: IO[str]) -> ThreadingHTTPServer:
    lock = threading.Lock()

    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def do_GET(self) -> None:
            self._answer(200)

        def do_POST(self) -> None:
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            line = json.dumps(
                {
                    "at": time.time(),
                    "id": self.headers.get("CryptoCity-Event-Id"),
                    "signature": self.headers.get("CryptoCity-Signature"),
                    "body": body.decode(errors="replace"),
                }
            )
            with lock:
                log.write(line + "\n")
                log.flush()
            self._answer(200)

        def _answer(self, status: int) -> None:
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, format: str, *args: Any) -> None:
            return  # one line per delivery is in the log file already

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    server.daemon_threads = True
    return server


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m drills.receiver")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--log", type=Path, required=True)
    args = parser.parse_args(argv)
    with args.log.open("a") as log:
        server = serve(args.port, log)
        try:
            server.serve_forever()
        except KeyboardInterrupt:
            pass
        finally:
            server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
