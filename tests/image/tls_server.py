"""An HTTPS server on a free 127.0.0.1 port that answers every request with 404 and prints
"METHOD PATH" for each one that got through the TLS handshake. It prints its port first, then
serves until killed. For tests/image/check.sh, which points the image's S3 client at it.

    tls_server.py CERT_CHAIN KEY
"""

import http.server
import ssl
import sys


class NotFound(http.server.BaseHTTPRequestHandler):
    def answer(self) -> None:
        print(self.command, self.path, flush=True)
        self.send_response(404)
        self.send_header("Content-Length", "0")
        self.end_headers()

    do_GET = do_HEAD = do_PUT = do_POST = do_DELETE = answer

    def log_message(self, format: str, *args: object) -> None:
        """Quiet: stdout holds only the requests."""


def main(cert: str, key: str) -> None:
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotFound)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    print(server.server_address[1], flush=True)
    server.serve_forever()


if __name__ == "__main__":
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    main(sys.argv[1], sys.argv[2])
