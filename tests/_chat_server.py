"""An OpenAI-compatible chat server on 127.0.0.1 whose answers a test writes as a function of the prompt
(a real HTTP round trip through the `openai` client, as the generators meet vLLM or TGI)."""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@contextlib.contextmanager
def chat_server(answer: Callable[[str], str]) -> Iterator[str]:
    """Serve chat completions answering each request's last user message with `answer(text)`; yields the URL."""

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):  # keep test output clean
            """Silence per-request logging."""

        def do_POST(self):  # noqa: N802 - http.server API
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            content = body["messages"][-1]["content"]
            message = {"role": "assistant", "content": answer(content)}
            out = json.dumps({"id": "x", "object": "chat.completion",
                              "choices": [{"index": 0, "message": message}]}).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(out)))
            self.end_headers()
            self.wfile.write(out)

    srv = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=srv.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{srv.server_address[1]}"
    finally:
        srv.shutdown()
