"""A local Microsoft Graph and identity platform, served over HTTPS in a thread of the test.

It speaks the parts we use: OpenID discovery and the client-credentials token endpoint (tokens
expire, and can be revoked), subscriptions (create, renew, delete), messages, the folder delta
query with paging, reply, and injected failures (429 with ``Retry-After``, 503, …). Every
request is recorded, so tests assert what our code asked Graph to do.
"""

import datetime as dt
import ipaddress
import itertools
import json
import re
import ssl
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, unquote, urlsplit

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

TENANT = "84bd8158-6d4d-4958-8b9f-9d6445542f95"
PAGE_SIZE = 2


def self_signed(directory: Path) -> tuple[Path, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "127.0.0.1")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(days=1))
        .not_valid_after(now + dt.timedelta(days=3650))  # tests move the clock years ahead
        .add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), False
        )
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), True)
        .sign(key, hashes.SHA256())
    )
    cert_path, key_path = directory / "graph-stub.pem", directory / "graph-stub.key"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
    )
    return cert_path, key_path


@dataclass
class Recorded:
    method: str
    path: str
    query: dict
    body: object
    headers: dict
    at: float


@dataclass
class GraphStub:
    token_ttl: int = 3600
    subscriptions: dict = field(default_factory=dict)
    messages: dict = field(default_factory=dict)  # id -> message
    changes: list = field(default_factory=list)  # message ids in the order they arrived or changed
    replies: list = field(default_factory=list)
    requests: list = field(default_factory=list)
    tokens: dict = field(default_factory=dict)  # token -> expiry (time.time())
    faults: list = field(default_factory=list)  # (method, path regex, status, headers, times left)
    base_url: str = ""
    authority_url: str = ""
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count = field(default_factory=lambda: itertools.count(1))

    # --- what a test arranges -------------------------------------------------------------
    def touch(self, message_id: str):
        """An old message changed (read, flagged): it comes round in the next delta again."""
        self.changes.append(message_id)

    def add_message(
        self,
        *,
        subject: str,
        conversation: str = "conv-1",
        body: str = "",
        sender="dana@example.com",
        received=None,
    ):
        """A message arriving in the mailbox now (or at ``received``); returns its id."""
        n = next(self._ids)
        received = received or dt.datetime.now(dt.UTC)
        message_id = f"AAMkAG-msg-{n}="
        self.messages[message_id] = {
            "id": message_id,
            "subject": subject,
            "conversationId": conversation,
            "receivedDateTime": received.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "from": {"emailAddress": {"name": sender.split("@")[0].title(), "address": sender}},
            "bodyPreview": (body or subject)[:255],
            "body": {"contentType": "text", "content": body or f"Body of {subject}"},
            "internetMessageId": f"<{n}@example.com>",
        }
        self.changes.append(message_id)
        return message_id

    def fail(self, method: str, path: str, status: int, *, headers=None, times: int = 1, body=None):
        """The next ``times`` requests matching answer ``status`` (``path`` is a regex)."""
        self.faults.append([method, re.compile(path), status, headers or {}, times, body])

    def revoke_tokens(self):
        self.tokens.clear()

    def calls(self, method: str, path: str = "") -> list[Recorded]:
        return [r for r in self.requests if r.method == method and re.search(path, r.path)]

    def token_requests(self) -> int:
        return len(self.calls("POST", r"/oauth2/v2\.0/token$"))

    def subscription(self) -> dict:
        [only] = self.subscriptions.values()
        return only

    # --- what the server answers ----------------------------------------------------------
    def answer(self, method: str, path: str, query: dict, body, headers: dict):
        for fault in self.faults:
            if fault[0] == method and fault[1].search(path) and fault[4] > 0:
                fault[4] -= 1
                return fault[2], fault[3], fault[5] or {"error": {"code": "injected", "message": "Injected."}}
        if path == f"/{TENANT}/v2.0/.well-known/openid-configuration":
            return 200, {}, self.openid_configuration()
        if path == f"/{TENANT}/oauth2/v2.0/token":
            token = uuid.uuid4().hex
            self.tokens[token] = time.time() + self.token_ttl
            return 200, {}, {"token_type": "Bearer", "expires_in": self.token_ttl, "access_token": token}
        auth = headers.get("authorization", "")
        if self.tokens.get(auth.removeprefix("Bearer "), 0) <= time.time():
            return (
                401,
                {},
                {"error": {"code": "InvalidAuthenticationToken", "message": "Access token has expired."}},
            )
        return self.graph(method, path.removeprefix("/v1.0"), query, body)

    def openid_configuration(self) -> dict:
        root = f"{self.authority_url}/{TENANT}"
        return {
            "issuer": f"{root}/v2.0",
            "authorization_endpoint": f"{root}/oauth2/v2.0/authorize",
            "token_endpoint": f"{root}/oauth2/v2.0/token",
        }

    def graph(self, method: str, path: str, query: dict, body):
        if path == "/subscriptions" and method == "POST":
            sub_id = str(uuid.uuid4())
            self.subscriptions[sub_id] = {**body, "id": sub_id}
            return 201, {}, self.subscriptions[sub_id]
        if match := re.fullmatch(r"/subscriptions/([^/]+)", path):
            sub_id = unquote(match[1])
            if sub_id not in self.subscriptions:
                return 404, {}, {"error": {"code": "ResourceNotFound", "message": "No such subscription."}}
            if method == "PATCH":
                self.subscriptions[sub_id]["expirationDateTime"] = body["expirationDateTime"]
                return 200, {}, self.subscriptions[sub_id]
            if method == "DELETE":
                del self.subscriptions[sub_id]
                return 204, {}, None
        if match := re.fullmatch(r"/users/([^/]+)/messages/([^/]+)/reply", path):
            self.replies.append({"mailbox": unquote(match[1]), "messageId": unquote(match[2]), **body})
            return 202, {}, None
        if match := re.fullmatch(r"/users/([^/]+)/messages/([^/]+)", path):
            message = self.messages.get(unquote(match[2]))
            if message is None:
                return 404, {}, {"error": {"code": "ErrorItemNotFound", "message": "Not found."}}
            return 200, {}, message
        if match := re.fullmatch(r"/users/([^/]+)/mailFolders/([^/]+)/messages/delta", path):
            return 200, {}, self.delta(path, query)
        return 404, {}, {"error": {"code": "BadRequest", "message": f"Unknown route {method} {path}"}}

    def delta(self, path: str, query: dict) -> dict:
        """Messages that arrived or changed after a watermark, ``PAGE_SIZE`` a page."""
        ids = list(self.changes)
        if "$deltatoken" in query:
            start = int(query["$deltatoken"][0])
        elif "$skiptoken" in query:
            start = int(query["$skiptoken"][0])
        else:  # an initial round: only what arrived since the filter's instant
            since = query["$filter"][0].removeprefix("receivedDateTime ge ")
            start = next(
                (i for i, m in enumerate(ids) if self.messages[m]["receivedDateTime"] >= since), len(ids)
            )
        page = ids[start : start + PAGE_SIZE]
        answer = {
            "value": [{"id": m, "receivedDateTime": self.messages[m]["receivedDateTime"]} for m in page]
        }
        link = f"{self.base_url}{path}"
        if start + PAGE_SIZE < len(ids):
            answer["@odata.nextLink"] = f"{link}?$skiptoken={start + PAGE_SIZE}"
        else:
            answer["@odata.deltaLink"] = f"{link}?$deltatoken={len(ids)}"
        return answer


def serve(stub: GraphStub, directory: Path):
    """Start the stub on an ephemeral port; returns (server, CA bundle path)."""
    cert, key = self_signed(directory)

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args):
            pass

        def handle_any(self):
            url = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            content_type = self.headers.get("Content-Type", "")
            if raw and "json" in content_type:
                body = json.loads(raw)
            else:
                body = {k: v[0] for k, v in parse_qs(raw.decode()).items()} if raw else None
            query = parse_qs(url.query)
            headers = {k.lower(): v for k, v in self.headers.items()}
            with stub.lock:
                stub.requests.append(Recorded(self.command, url.path, query, body, headers, time.time()))
                status, extra, payload = stub.answer(self.command, url.path, query, body, headers)
            data = b"" if payload is None else json.dumps(payload).encode()
            self.send_response(status)
            for name, value in extra.items():
                self.send_header(name, value)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        do_GET = do_POST = do_PATCH = do_DELETE = handle_any

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(cert, key)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    root = f"https://127.0.0.1:{server.server_address[1]}"
    stub.base_url, stub.authority_url = f"{root}/v1.0", root
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, cert
