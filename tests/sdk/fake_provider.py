"""A fake LLM provider on loopback that speaks just enough of the OpenAI,
Anthropic, Gemini and Azure OpenAI HTTP APIs for the official SDKs, and
records every request it receives so tests can assert what reached it.

Standard library only. Bound to 127.0.0.1 on a free port.

Magic words in a request body change the reply:
  ECHO_KEY     -> 401 in the provider's error format whose message contains
                  the credential the fake received (to test error scrubbing)
  SLOW_STREAM  -> streaming replies wait SLOW_DELAY seconds between chunks
  FAIL_500     -> 500 in the provider's error format
  LEAK_BACK    -> the reply text holds LEAK_SECRET (a credential the client never
                  sent), streamed in 7-character pieces so it spans many events
  ECHO_PROMPT  -> the reply text is the prompt string as the fake received it,
                  streamed in 5-character pieces
  PROSE        -> the reply is ordinary prose streamed a word per event
                  (PROSE_PIECES)
"""

from __future__ import annotations

import base64
import json
import re
import secrets
import string
import struct
import threading
import time
import uuid
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

FAST_DELAY = 0.02
SLOW_DELAY = 0.25
# The longest a stream waits for FakeProvider.hold's event to be set.
HOLD_LIMIT = 30.0
STREAM_PIECES = ["Hello", " from", " the", " fake", " stream"]
PROSE_PIECES = ["Hello", " from", " Keyward", ".", " The", " answer", " is", " 42", "!", "\n", "Don", "'t", " worry", "."]

# An Anthropic-format API key made up per run: what a model might repeat from its
# context. Tests assert that no client ever receives it through the gateway.
LEAK_SECRET = "sk-ant-api03-" + "".join(
    secrets.choice(string.ascii_letters + string.digits) for _ in range(93)
) + "AA"


def _strings(v):
    if isinstance(v, str):
        yield v
    elif isinstance(v, list):
        for x in v:
            yield from _strings(x)
    elif isinstance(v, dict):
        for x in v.values():
            yield from _strings(x)


def scripted_pieces(body_text: str, req) -> list[str] | None:
    """The streamed reply pieces a magic word asks for, else None."""

    def split(s: str, n: int) -> list[str]:
        return [s[i:i + n] for i in range(0, len(s), n)] or [""]

    if "LEAK_BACK" in body_text:
        return split(f"Sure. The deploy key is {LEAK_SECRET} and that is all.", 7)
    if "PROSE" in body_text:
        return list(PROSE_PIECES)
    if "ECHO_PROMPT" in body_text:
        prompt = next((s for s in _strings(req) if "ECHO_PROMPT" in s), "")
        return split(prompt, 5)
    return None


@dataclass
class Recorded:
    """One request as the fake received it."""

    method: str
    path: str  # path without the query string
    raw_path: str  # the request target exactly as received
    query: dict  # name -> list of values
    headers: dict  # lower-cased name -> value (last one wins)
    header_list: list  # [(name, value)] as received
    body: bytes
    route: str = ""  # e.g. "openai.chat", "anthropic.messages", "gemini.generate"
    received_at: float = 0.0  # time.monotonic()
    stream_first_chunk_at: float | None = None
    stream_done_at: float | None = None
    frame_sent_at: list = field(default_factory=list)  # time.monotonic() as each frame went out
    request_id: str = ""  # the id this fake sent back (x-request-id / request-id)

    @property
    def json(self):
        try:
            return json.loads(self.body or b"null")
        except ValueError:
            return None

    def as_text(self) -> str:
        """Everything the fake saw, as one string, for leak checks."""
        parts = [self.method, self.raw_path]
        parts += [f"{k}: {v}" for k, v in self.header_list]
        parts.append(self.body.decode("utf-8", "replace"))
        return "\n".join(parts)


class FakeProvider:
    def __init__(self):
        self._lock = threading.Lock()
        self.requests: list[Recorded] = []
        self._holds: dict[str, threading.Event] = {}
        self.server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -------------------------------------------------------
    def start(self) -> "FakeProvider":
        fake = self

        class Handler(_Handler):
            provider = fake

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self._thread = threading.Thread(target=self.server.serve_forever, name="fake-provider", daemon=True)
        self._thread.start()
        return self

    def stop(self):
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    @property
    def port(self) -> int:
        return self.server.server_address[1]

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- recording -------------------------------------------------------
    def record(self, rec: Recorded):
        with self._lock:
            self.requests.append(rec)

    def snapshot(self) -> list[Recorded]:
        with self._lock:
            return list(self.requests)

    def clear(self):
        with self._lock:
            self.requests.clear()

    def hold(self, marker: str) -> threading.Event:
        """Streams whose request carries `marker` stop before their last frame
        until the returned event is set (at most HOLD_LIMIT seconds): a stream,
        and whatever the gateway holds for it, kept open as long as a test needs."""
        released = threading.Event()
        with self._lock:
            self._holds[marker] = released
        return released

    def held_by(self, rec: Recorded) -> threading.Event | None:
        """The event a stream for `rec` waits on before its last frame, if any."""
        text = rec.body.decode("utf-8", "replace")
        with self._lock:
            return next((ev for mk, ev in self._holds.items() if mk in text), None)

    def matching(self, marker: str) -> list[Recorded]:
        """Requests whose raw path, headers or body contain marker."""
        return [r for r in self.snapshot() if marker in r.as_text()]

    def wait_for(self, marker: str, count: int = 1, timeout: float = 5.0) -> list[Recorded]:
        deadline = time.monotonic() + timeout
        while True:
            found = self.matching(marker)
            if len(found) >= count or time.monotonic() > deadline:
                return found
            time.sleep(0.02)


# ---------------------------------------------------------------------------
# reply builders


def _now() -> int:
    return int(time.time())


def reply_text(kind: str, model: str) -> str:
    return f"fake-{kind} reply model={model}"


def openai_error(status: int, message: str, etype: str, code: str | None, param=None):
    return status, {"error": {"message": message, "type": etype, "param": param, "code": code}}


def anthropic_error(status: int, etype: str, message: str):
    return status, {"type": "error", "error": {"type": etype, "message": message}, "request_id": "req_fake"}


def gemini_error(status: int, gstatus: str, message: str):
    return status, {"error": {"code": status, "message": message, "status": gstatus}}


def chat_completion(model: str, kind: str = "openai", text: str | None = None):
    return {
        "id": "chatcmpl-" + uuid.uuid4().hex[:16],
        "object": "chat.completion",
        "created": _now(),
        "model": model,
        "system_fingerprint": "fp_fake",
        "choices": [
            {
                "index": 0,
                "message": {"role": "assistant", "content": text if text is not None else reply_text(kind, model), "refusal": None},
                "logprobs": None,
                "finish_reason": "stop",
            }
        ],
        "usage": {"prompt_tokens": 11, "completion_tokens": 7, "total_tokens": 18},
    }


def chat_chunks(model: str, kind: str, include_usage: bool, pieces: list[str] | None = None):
    cid = "chatcmpl-" + uuid.uuid4().hex[:16]
    base = {"id": cid, "object": "chat.completion.chunk", "created": _now(), "model": model, "system_fingerprint": "fp_fake"}
    out = [dict(base, choices=[{"index": 0, "delta": {"role": "assistant", "content": ""}, "logprobs": None, "finish_reason": None}])]
    pieces = pieces if pieces is not None else STREAM_PIECES + [f" model={model}"]
    for p in pieces:
        out.append(dict(base, choices=[{"index": 0, "delta": {"content": p}, "logprobs": None, "finish_reason": None}]))
    out.append(dict(base, choices=[{"index": 0, "delta": {}, "logprobs": None, "finish_reason": "stop"}]))
    if include_usage:
        out.append(dict(base, choices=[], usage={"prompt_tokens": 11, "completion_tokens": len(pieces), "total_tokens": 11 + len(pieces)}))
    return out


def completion(model: str):
    return {
        "id": "cmpl-" + uuid.uuid4().hex[:16],
        "object": "text_completion",
        "created": _now(),
        "model": model,
        "choices": [{"text": reply_text("openai", model), "index": 0, "logprobs": None, "finish_reason": "stop"}],
        "usage": {"prompt_tokens": 5, "completion_tokens": 7, "total_tokens": 12},
    }


def embeddings(model: str, inputs, encoding_format):
    if isinstance(inputs, str) or (isinstance(inputs, list) and inputs and isinstance(inputs[0], int)):
        inputs = [inputs]
    data = []
    for i, _ in enumerate(inputs or []):
        vec = [0.1 * (i + 1), 0.2, 0.3, 0.4]
        if encoding_format == "base64":
            emb = base64.b64encode(struct.pack(f"<{len(vec)}f", *vec)).decode()
        else:
            emb = vec
        data.append({"object": "embedding", "index": i, "embedding": emb})
    return {"object": "list", "data": data, "model": model, "usage": {"prompt_tokens": 4, "total_tokens": 4}}


def openai_models():
    return {
        "object": "list",
        "data": [
            {"id": m, "object": "model", "created": 1700000000, "owned_by": "fake"}
            for m in ["gpt-4o-mini", "gpt-4o", "text-embedding-3-small"]
        ],
    }


def _response_message(item_id: str, text: str, status: str):
    return {
        "id": item_id,
        "type": "message",
        "role": "assistant",
        "status": status,
        "content": [{"type": "output_text", "text": text, "annotations": [], "logprobs": []}] if text is not None else [],
    }


def _response_obj(rid: str, model: str, status: str, output: list, usage: bool):
    obj = {
        "id": rid,
        "object": "response",
        "created_at": _now(),
        "status": status,
        "model": model,
        "output": output,
        "parallel_tool_calls": True,
        "tool_choice": "auto",
        "tools": [],
        "error": None,
        "incomplete_details": None,
        "instructions": None,
        "metadata": {},
        "temperature": 1.0,
        "top_p": 1.0,
        "text": {"format": {"type": "text"}},
    }
    if usage:
        obj["usage"] = {
            "input_tokens": 9,
            "input_tokens_details": {"cached_tokens": 0},
            "output_tokens": 6,
            "output_tokens_details": {"reasoning_tokens": 0},
            "total_tokens": 15,
        }
    return obj


def response_nonstream(model: str, text: str | None = None):
    rid = "resp_" + uuid.uuid4().hex
    item = _response_message("msg_" + uuid.uuid4().hex, text if text is not None else reply_text("openai", model), "completed")
    return _response_obj(rid, model, "completed", [item], True)


def response_events(model: str, pieces: list[str] | None = None):
    rid = "resp_" + uuid.uuid4().hex
    iid = "msg_" + uuid.uuid4().hex
    pieces = pieces if pieces is not None else STREAM_PIECES + [f" model={model}"]
    full = "".join(pieces)
    seq = iter(range(10_000))
    ev = []
    ev.append({"type": "response.created", "sequence_number": next(seq), "response": _response_obj(rid, model, "in_progress", [], False)})
    ev.append({"type": "response.in_progress", "sequence_number": next(seq), "response": _response_obj(rid, model, "in_progress", [], False)})
    ev.append(
        {
            "type": "response.output_item.added",
            "sequence_number": next(seq),
            "output_index": 0,
            "item": {"id": iid, "type": "message", "role": "assistant", "status": "in_progress", "content": []},
        }
    )
    ev.append(
        {
            "type": "response.content_part.added",
            "sequence_number": next(seq),
            "item_id": iid,
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": [], "logprobs": []},
        }
    )
    for p in pieces:
        ev.append(
            {
                "type": "response.output_text.delta",
                "sequence_number": next(seq),
                "item_id": iid,
                "output_index": 0,
                "content_index": 0,
                "delta": p,
                "logprobs": [],
            }
        )
    ev.append(
        {
            "type": "response.output_text.done",
            "sequence_number": next(seq),
            "item_id": iid,
            "output_index": 0,
            "content_index": 0,
            "text": full,
            "logprobs": [],
        }
    )
    ev.append(
        {
            "type": "response.content_part.done",
            "sequence_number": next(seq),
            "item_id": iid,
            "output_index": 0,
            "content_index": 0,
            "part": {"type": "output_text", "text": full, "annotations": [], "logprobs": []},
        }
    )
    done_item = _response_message(iid, full, "completed")
    ev.append({"type": "response.output_item.done", "sequence_number": next(seq), "output_index": 0, "item": done_item})
    ev.append(
        {"type": "response.completed", "sequence_number": next(seq), "response": _response_obj(rid, model, "completed", [done_item], True)}
    )
    return ev


def anthropic_message(model: str, text: str | None = None):
    return {
        "id": "msg_" + uuid.uuid4().hex[:24],
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [{"type": "text", "text": text if text is not None else reply_text("anthropic", model)}],
        "stop_reason": "end_turn",
        "stop_sequence": None,
        "usage": {"input_tokens": 12, "output_tokens": 8},
    }


def anthropic_events(model: str, pieces: list[str] | None = None):
    mid = "msg_" + uuid.uuid4().hex[:24]
    pieces = pieces if pieces is not None else STREAM_PIECES + [f" model={model}"]
    ev = [
        (
            "message_start",
            {
                "type": "message_start",
                "message": {
                    "id": mid,
                    "type": "message",
                    "role": "assistant",
                    "model": model,
                    "content": [],
                    "stop_reason": None,
                    "stop_sequence": None,
                    "usage": {"input_tokens": 12, "output_tokens": 1},
                },
            },
        ),
        ("content_block_start", {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        ("ping", {"type": "ping"}),
    ]
    for p in pieces:
        ev.append(("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": p}}))
    ev.append(("content_block_stop", {"type": "content_block_stop", "index": 0}))
    ev.append(
        (
            "message_delta",
            {"type": "message_delta", "delta": {"stop_reason": "end_turn", "stop_sequence": None}, "usage": {"output_tokens": len(pieces)}},
        )
    )
    ev.append(("message_stop", {"type": "message_stop"}))
    return ev


def gemini_response(model: str, text: str, finish: bool, usage: bool = True):
    cand = {"content": {"role": "model", "parts": [{"text": text}]}, "index": 0}
    if finish:
        cand["finishReason"] = "STOP"
    obj = {"candidates": [cand], "modelVersion": model, "responseId": "fake-" + uuid.uuid4().hex[:12]}
    if usage:
        obj["usageMetadata"] = {"promptTokenCount": 6, "candidatesTokenCount": 7, "totalTokenCount": 13}
    return obj


def gemini_models():
    return {
        "models": [
            {
                "name": f"models/{m}",
                "version": "001",
                "displayName": m,
                "inputTokenLimit": 1048576,
                "outputTokenLimit": 8192,
                "supportedGenerationMethods": ["generateContent", "countTokens"],
            }
            for m in ["gemini-2.0-flash", "gemini-1.5-pro"]
        ]
    }


# ---------------------------------------------------------------------------
# the handler

_GEMINI_RE = re.compile(
    r"^/(v1|v1beta|v1alpha)/models/([^/:]+):(generateContent|streamGenerateContent|countTokens|embedContent|batchEmbedContents)$"
)


class _Handler(BaseHTTPRequestHandler):
    provider: FakeProvider = None  # set by subclass
    protocol_version = "HTTP/1.1"
    server_version = "FakeProvider/1.0"

    def log_message(self, fmt, *args):  # quiet
        pass

    # -- body / response helpers ----------------------------------------
    def _read_body(self) -> bytes:
        te = (self.headers.get("Transfer-Encoding") or "").lower()
        if "chunked" in te:
            out = bytearray()
            while True:
                line = self.rfile.readline()
                size = int(line.split(b";")[0].strip() or b"0", 16)
                if size == 0:
                    # trailers until blank line
                    while True:
                        t = self.rfile.readline()
                        if t in (b"\r\n", b"\n", b""):
                            break
                    break
                out += self.rfile.read(size)
                self.rfile.readline()
            return bytes(out)
        length = int(self.headers.get("Content-Length") or 0)
        return self.rfile.read(length) if length else b""

    def _request_id_header(self):
        """OpenAI-style `x-request-id`; Anthropic's own `request-id` on its routes."""
        rec = getattr(self, "_rec", None)
        rid = "req_fake_" + uuid.uuid4().hex[:8]
        if rec is not None:
            rec.request_id = rid
        name = "request-id" if rec is not None and rec.route.startswith("anthropic") else "x-request-id"
        self.send_header(name, rid)

    def _send_json(self, status: int, obj, extra_headers=None):
        data = json.dumps(obj).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self._request_id_header()
        for k, v in (extra_headers or {}).items():
            self.send_header(k, v)
        self.end_headers()
        self.wfile.write(data)
        self.wfile.flush()

    def _start_stream(self):
        self.send_response(200)
        self._request_id_header()
        self.send_header("Content-Type", "text/event-stream")
        self.send_header("Cache-Control", "no-cache")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

    def _chunk(self, data: bytes):
        self.wfile.write(b"%x\r\n%s\r\n" % (len(data), data))
        self.wfile.flush()

    def _stream(self, rec: Recorded, frames: list[bytes], delay: float):
        self._start_stream()
        for i, frame in enumerate(frames):
            if i:
                time.sleep(delay)
            rec.frame_sent_at.append(time.monotonic())
            if i == len(frames) - 1:
                released = self.provider.held_by(rec)
                if released is not None:
                    released.wait(HOLD_LIMIT)
                # Stamped before the last frame goes out: a client that stops
                # reading at its end-of-stream frame may otherwise look at the
                # record before this thread gets to set it.
                rec.stream_done_at = time.monotonic()
            self._chunk(frame)
            if rec.stream_first_chunk_at is None:
                rec.stream_first_chunk_at = time.monotonic()
        if rec.stream_done_at is None:
            rec.stream_done_at = time.monotonic()
        self.wfile.write(b"0\r\n\r\n")
        self.wfile.flush()

    # -- dispatch ---------------------------------------------------------
    def do_GET(self):
        self._handle()

    def do_POST(self):
        self._handle()

    def do_PUT(self):
        self._handle()

    def do_DELETE(self):
        self._handle()

    def _handle(self):
        body = self._read_body()
        parts = urlsplit(self.path)
        rec = Recorded(
            method=self.command,
            path=parts.path,
            raw_path=self.path,
            query=parse_qs(parts.query, keep_blank_values=True),
            headers={k.lower(): v for k, v in self.headers.items()},
            header_list=list(self.headers.items()),
            body=body,
            received_at=time.monotonic(),
        )
        self.provider.record(rec)
        self._rec = rec
        try:
            self._route(rec)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _route(self, rec: Recorded):
        path, method = rec.path, rec.method
        text = rec.body.decode("utf-8", "replace")
        req = rec.json if rec.body else {}
        if not isinstance(req, dict):
            req = {}
        delay = SLOW_DELAY if "SLOW_STREAM" in text else FAST_DELAY
        script = scripted_pieces(text, req)
        whole = "".join(script) if script is not None else None

        # --- Gemini (checked first: its paths contain a colon) ---------
        m = _GEMINI_RE.match(path)
        if m and method == "POST":
            model, action = m.group(2), m.group(3)
            rec.route = "gemini." + {
                "generateContent": "generate",
                "streamGenerateContent": "stream",
                "countTokens": "count",
                "embedContent": "embed",
                "batchEmbedContents": "batch_embed",
            }[action]
            cred = rec.headers.get("x-goog-api-key") or (rec.query.get("key") or [""])[0]
            if "ECHO_KEY" in text:
                return self._send_json(*gemini_error(400, "INVALID_ARGUMENT", f"API key not valid. Please pass a valid API key. Got: {cred}"))
            if "FAIL_500" in text:
                return self._send_json(*gemini_error(500, "INTERNAL", "fake internal error"))
            if action == "countTokens":
                return self._send_json(200, {"totalTokens": 6})
            if action == "embedContent":
                return self._send_json(200, {"embedding": {"values": [0.1, 0.2, 0.3, 0.4]}})
            if action == "batchEmbedContents":
                n = len(req.get("requests") or [])
                return self._send_json(200, {"embeddings": [{"values": [0.1 * (i + 1), 0.2, 0.3, 0.4]} for i in range(n)]})
            if action == "generateContent":
                return self._send_json(200, gemini_response(model, whole if whole is not None else reply_text("gemini", model), True))
            pieces = script if script is not None else STREAM_PIECES + [f" model={model}"]
            frames = []
            for i, p in enumerate(pieces):
                last = i == len(pieces) - 1
                frames.append(b"data: " + json.dumps(gemini_response(model, p, last, usage=last)).encode() + b"\r\n\r\n")
            return self._stream(rec, frames, delay)
        if method == "GET" and path in ("/v1beta/models", "/v1/models") and (
            "x-goog-api-key" in rec.headers or "key" in rec.query or path == "/v1beta/models"
        ):
            rec.route = "gemini.models"
            return self._send_json(200, gemini_models())

        # --- Azure OpenAI ---------------------------------------------
        m = re.match(r"^/openai/deployments/([^/]+)/(chat/completions|completions|embeddings)$", path)
        if m and method == "POST":
            deployment, op = m.group(1), m.group(2)
            rec.route = "azure." + op.replace("/", ".")
            cred = rec.headers.get("api-key") or rec.headers.get("authorization", "")
            if "ECHO_KEY" in text:
                return self._send_json(
                    *openai_error(401, f"Access denied due to invalid subscription key {cred}. Make sure to provide a valid key.", "invalid_request_error", "401")
                )
            if "api-version" not in rec.query:
                return self._send_json(*openai_error(404, "Resource not found (missing api-version)", "invalid_request_error", "404"))
            return self._openai_op(rec, op, req, deployment, "azure", delay, script)

        # --- Anthropic --------------------------------------------------
        if method == "POST" and path in ("/v1/messages", "/v1/messages/count_tokens"):
            rec.route = "anthropic.messages" if path == "/v1/messages" else "anthropic.count_tokens"
            cred = rec.headers.get("x-api-key") or rec.headers.get("authorization", "").removeprefix("Bearer ")
            if "ECHO_KEY" in text:
                return self._send_json(*anthropic_error(401, "authentication_error", f"invalid x-api-key: {cred}"))
            if "FAIL_500" in text:
                return self._send_json(*anthropic_error(500, "api_error", "fake internal error"))
            if "anthropic-version" not in rec.headers:
                return self._send_json(*anthropic_error(400, "invalid_request_error", "anthropic-version header is required"))
            model = req.get("model", "")
            if path.endswith("count_tokens"):
                return self._send_json(200, {"input_tokens": 12})
            if req.get("stream"):
                frames = [f"event: {name}\ndata: {json.dumps(data)}\n\n".encode() for name, data in anthropic_events(model, script)]
                return self._stream(rec, frames, delay)
            return self._send_json(200, anthropic_message(model, whole))

        # --- OpenAI and OpenAI-compatible -----------------------------
        if method == "GET" and path == "/v1/models":
            rec.route = "openai.models"
            return self._send_json(200, openai_models())
        m = re.match(r"^/v1/(chat/completions|completions|embeddings|responses)$", path)
        if m and method == "POST":
            op = m.group(1)
            rec.route = "openai." + op.replace("/", ".")
            auth = rec.headers.get("authorization", "")
            cred = auth[7:] if auth.lower().startswith("bearer ") else auth
            if "ECHO_KEY" in text:
                return self._send_json(
                    *openai_error(
                        401,
                        f"Incorrect API key provided: {cred}. You can find your API key at https://platform.openai.com/account/api-keys.",
                        "invalid_request_error",
                        "invalid_api_key",
                    )
                )
            return self._openai_op(rec, op, req, req.get("model", ""), "openai", delay, script)

        rec.route = "unknown"
        return self._send_json(404, {"error": {"message": f"fake provider: no route for {method} {path}", "type": "not_found"}})

    def _openai_op(self, rec: Recorded, op: str, req: dict, model: str, kind: str, delay: float, script=None):
        whole = "".join(script) if script is not None else None
        text = rec.body.decode("utf-8", "replace")
        if "FAIL_500" in text:
            return self._send_json(*openai_error(500, "fake internal error", "server_error", None))
        if rec.body and not isinstance(rec.json, dict):
            return self._send_json(*openai_error(400, "fake: body is not a JSON object", "invalid_request_error", None))
        if op == "chat/completions":
            if req.get("stream"):
                include_usage = bool((req.get("stream_options") or {}).get("include_usage"))
                frames = [b"data: " + json.dumps(c).encode() + b"\n\n" for c in chat_chunks(model, kind, include_usage, script)]
                frames.append(b"data: [DONE]\n\n")
                return self._stream(rec, frames, delay)
            return self._send_json(200, chat_completion(model, kind, whole))
        if op == "completions":
            return self._send_json(200, completion(model))
        if op == "embeddings":
            return self._send_json(200, embeddings(model, req.get("input"), req.get("encoding_format")))
        if op == "responses":
            if req.get("stream"):
                frames = [f"event: {e['type']}\ndata: {json.dumps(e)}\n\n".encode() for e in response_events(model, script)]
                return self._stream(rec, frames, delay)
            return self._send_json(200, response_nonstream(model, whole))
        return self._send_json(404, {"error": {"message": "no such op"}})


if __name__ == "__main__":  # manual use: python fake_provider.py
    fp = FakeProvider().start()
    print(fp.url, flush=True)
    try:
        while True:
            time.sleep(3600)
    except KeyboardInterrupt:
        fp.stop()
