"""A real HTTP server on 127.0.0.1 for download tests (nothing leaves the machine).

Routes map a URL path to a list of replies, served in order (the last one repeats):
an int is an HTTP error status, bytes a 200 with a correct Content-Length,
:class:`ShortRead` a 200 whose Content-Length promises more than is sent, and
:class:`Cut` a 200 whose body is cut with a too-small or no Content-Length.
"""
import threading
from collections import Counter
from contextlib import contextmanager
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass(frozen=True)
class ShortRead:
    """A 200 reply whose Content-Length promises more than the body: the peer hangs up."""

    body: bytes


class Server:
    """Replies per URL path, in order; the last one repeats. Unknown paths get 404."""

    def __init__(self, port: int):
        self.base_url = f"http://127.0.0.1:{port}"
        self.routes: dict[str, list] = {}
        self.hits: Counter = Counter()
        self.lock = threading.Lock()

    @property
    def url_template(self) -> str:
        return self.base_url + "/{pdb_id}.cif.gz"

    def next_reply(self, path: str):
        with self.lock:
            self.hits[path] += 1
            replies = self.routes.get(path, [404])
            return replies[min(self.hits[path], len(replies)) - 1]


@dataclass(frozen=True)
class Cut:
    """A 200 reply carrying only ``body`` (a cut file) and declaring it whole: with
    ``content_length=True`` a Content-Length equal to the cut length (too small for
    the file), else none at all (the connection closes after the body)."""

    body: bytes
    content_length: bool


class Handler(BaseHTTPRequestHandler):
    def do_GET(self):
        reply = self.server.state.next_reply(self.path)
        if isinstance(reply, int):
            self.send_error(reply)
            return
        body = reply.body if isinstance(reply, (ShortRead, Cut)) else reply
        self.send_response(200)
        if not isinstance(reply, Cut) or reply.content_length:
            declared = len(body) + (1000 if isinstance(reply, ShortRead) else 0)
            self.send_header("Content-Length", str(declared))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args):
        pass




@contextmanager
def local_server():
    """Yield the :class:`Server` state of a threaded HTTP server on 127.0.0.1."""
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    httpd.state = Server(httpd.server_address[1])
    # A short poll interval so that shutdown() at teardown does not wait 0.5 s.
    serve = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True)
    serve.start()
    try:
        yield httpd.state
    finally:
        httpd.shutdown()
        httpd.server_close()
