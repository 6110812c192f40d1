"""A local OpenAI-compatible chat-completions server for tests: a real HTTP server.

Each request pops the next scripted reply (status, JSON body, extra headers, delay); every
request's headers and body are recorded. When the script is empty it answers a plain
completion with usage.
"""

import json
import socket
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Reply:
    status: int = 200
    body: dict = field(default_factory=dict)
    headers: dict = field(default_factory=dict)
    delay: float = 0.0


def completion(content="Done.", *, tool_calls=None, prompt_tokens=12, completion_tokens=5, cached_tokens=0):
    message = {"role": "assistant", "content": content}
    if tool_calls:
        message["tool_calls"] = tool_calls
    return {
        "id": "c1",
        "object": "chat.completion",
        "created": 0,
        "model": "stub",
        "choices": [
            {"index": 0, "finish_reason": "tool_calls" if tool_calls else "stop", "message": message}
        ],
        "usage": {
            "prompt_tokens": prompt_tokens,
            "completion_tokens": completion_tokens,
            "total_tokens": prompt_tokens + completion_tokens,
            "prompt_tokens_details": {"cached_tokens": cached_tokens},
        },
    }


def tool_call(name, arguments, call_id="call_1"):
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": json.dumps(arguments)}}


class ModelStub:
    def __init__(self):
        self.replies: list[Reply] = []
        self.requests: list[dict] = []
        self.lock = threading.Lock()
        self.disconnected = threading.Event()
        stub = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_POST(self):  # noqa: N802
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])) or b"{}")
                with stub.lock:
                    stub.requests.append(
                        {
                            "peer": self.client_address[1],
                            "path": self.path,
                            "headers": {k.lower(): v for k, v in self.headers.items()},
                            "body": body,
                        }
                    )
                    reply = stub.replies.pop(0) if stub.replies else Reply(body=completion())
                if reply.delay:
                    # a slow model: give up early when the client hangs up
                    deadline = time.monotonic() + reply.delay
                    self.connection.settimeout(0.05)
                    while time.monotonic() < deadline:
                        try:
                            if self.connection.recv(1, socket.MSG_PEEK) == b"":  # closed by the client
                                stub.disconnected.set()
                                return
                        except TimeoutError:
                            continue
                        except OSError:
                            stub.disconnected.set()
                            return
                    self.connection.settimeout(None)
                data = json.dumps(reply.body).encode()
                self.send_response(reply.status)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(data)))
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.end_headers()
                self.wfile.write(data)

            def log_message(self, *args):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/v1"

    def start(self):
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self):
        self.server.shutdown()
        self.server.server_close()
