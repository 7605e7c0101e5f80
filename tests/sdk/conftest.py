"""Fixtures for the end-to-end SDK tests of `keyward serve`.

Session scope: the binary is built once, one fake provider and one gateway run
for the whole session (CI time matters). Everything lives in temp dirs, every
port is picked free on 127.0.0.1 and nothing talks to any other address.

Nothing here skips: a missing dependency or a gateway that does not start is a
failure with a message.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import secrets
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))

from fake_provider import FakeProvider  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
AZURE_API_VERSION = "2024-10-21"

try:  # a missing SDK is a failure, never a skip
    import anthropic  # noqa: F401
    import openai  # noqa: F401
    from google import genai  # noqa: F401
except ImportError as e:  # pragma: no cover
    raise RuntimeError(
        f"SDK test dependency missing ({e}); install with: "
        "target/tools/sdk-venv/bin/pip install -r tests/sdk/requirements.txt"
    ) from e


def marker(tag: str = "mk") -> str:
    """A unique string to put in a prompt and find again in the fake's records."""
    return f"{tag}-{secrets.token_hex(6)}"


def free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sha256_forms(secret: str) -> list[str]:
    """Plausible stored forms of a secret's hash (hex and base64 of sha256)."""
    import base64

    d = hashlib.sha256(secret.encode()).digest()
    return [d.hex(), base64.b64encode(d).decode().rstrip("="), base64.urlsafe_b64encode(d).decode().rstrip("=")]


# ---------------------------------------------------------------------------
# the binary


@pytest.fixture(scope="session")
def keyward_bin() -> Path:
    """target/debug/keyward, built once per session (KEYWARD_BIN overrides)."""
    override = os.environ.get("KEYWARD_BIN")
    if override:
        p = Path(override)
        if not p.is_file():
            pytest.fail(f"KEYWARD_BIN={override} does not exist")
        return p
    try:
        r = subprocess.run(
            ["cargo", "build", "-q", "-p", "keyward"], cwd=REPO, capture_output=True, text=True, timeout=1800
        )
    except FileNotFoundError:
        pytest.fail("cargo not found on PATH: cannot build the keyward binary for the SDK tests")
    if r.returncode != 0:
        pytest.fail(f"`cargo build -q -p keyward` failed (exit {r.returncode}):\n{r.stderr[-4000:]}")
    p = REPO / "target" / "debug" / "keyward"
    if not p.is_file():
        pytest.fail(f"cargo build succeeded but {p} is missing")
    return p


# ---------------------------------------------------------------------------
# the fake provider


@pytest.fixture(scope="session")
def fake():
    fp = FakeProvider().start()
    yield fp
    fp.stop()


@pytest.fixture(scope="session")
def decoy():
    """A second fake on loopback: a redirect target that must never be reached."""
    fp = FakeProvider().start()
    yield fp
    fp.stop()


# ---------------------------------------------------------------------------
# the gateway


@dataclass
class Gateway:
    bin: Path
    dir: Path
    config: Path
    db: Path
    log_path: Path
    out_path: Path
    url: str = ""
    port: int = 0
    proc: subprocess.Popen | None = None
    creds: dict = field(default_factory=dict)  # vault name -> plaintext
    keys: dict = field(default_factory=dict)  # our label -> {"id":..., "key":...}
    cli_outputs: list = field(default_factory=list)  # every CLI stdout/stderr, for leak checks
    traffic_secrets: list = field(default_factory=list)  # secrets tests sent through, for leak checks
    env: dict = field(default_factory=dict)  # extra environment for `serve`
    _clients: list = field(default_factory=list)

    # -- CLI ------------------------------------------------------------
    def cli(self, *args: str, input: str | None = None, check: bool = True) -> subprocess.CompletedProcess:
        cmd = [str(self.bin), *args, "--config", str(self.config)]
        r = subprocess.run(cmd, input=input, capture_output=True, text=True, timeout=60, cwd=self.dir)
        self.cli_outputs.append(r.stdout)
        self.cli_outputs.append(r.stderr)
        if check and r.returncode != 0:
            pytest.fail(f"`keyward {' '.join(args)}` exited {r.returncode}\nstdout: {r.stdout}\nstderr: {r.stderr}")
        return r

    def create_key(self, label: str, *, env: str = "prod", models: str | None = "*", providers=None, endpoints=None,
                   cidrs=None, expires=None, redact_inbound=None, redact_outbound=None) -> dict:
        args = ["keys", "create", "--name", label, "--env", env]
        if models is not None:
            args += ["--models", models]
        if providers:
            args += ["--providers", providers]
        if endpoints:
            args += ["--endpoints", endpoints]
        if cidrs:
            args += ["--cidrs", cidrs]
        if expires:
            args += ["--expires", expires]
        if redact_inbound:
            args += ["--redact-inbound", redact_inbound]
        if redact_outbound:
            args += ["--redact-outbound", redact_outbound]
        args.append("--json")
        r = self.cli(*args)
        try:
            obj = json.loads(r.stdout)
        except ValueError:
            pytest.fail(f"`keyward keys create --json` printed non-JSON: {r.stdout!r}")
        assert set(obj) >= {"id", "key"}, obj
        assert obj["id"].startswith("key_"), obj
        assert obj["key"].startswith(f"kw_{env}_"), obj
        self.keys[label] = obj
        return obj

    def wait_usable(self, key: str, timeout: float = 5.0):
        """Keys created while the server runs are picked up by its periodic reload."""
        deadline = time.monotonic() + timeout
        while True:
            status = raw_request(f"{self.url}/v1/models", headers={"Authorization": f"Bearer {key}"})[0]
            if status == 200:
                return
            if time.monotonic() > deadline:
                pytest.fail(f"a key created while the server runs was still refused ({status}) after {timeout}s")
            time.sleep(0.05)

    def key(self, label: str) -> str:
        return self.keys[label]["key"]

    def all_client_keys(self) -> list[str]:
        return [k["key"] for k in self.keys.values()]

    def all_secrets(self) -> list[str]:
        return self.all_client_keys() + list(self.creds.values()) + self.traffic_secrets

    # -- process ----------------------------------------------------------
    def start(self, timeout: float = 20.0):
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        text = self.config.read_text()
        # The [server] listen line comes first; an [admin] listen is left alone.
        text = re.sub(r'listen = "127\.0\.0\.1:\d+"', f'listen = "127.0.0.1:{self.port}"', text, count=1)
        self.config.write_text(text)
        env = dict(os.environ)
        env.setdefault("RUST_LOG", "debug")
        env.update(self.env)
        env.pop("HTTP_PROXY", None)
        env.pop("HTTPS_PROXY", None)
        env.pop("http_proxy", None)
        env.pop("https_proxy", None)
        self._log = open(self.log_path, "ab")
        self._out = open(self.out_path, "ab")
        self.proc = subprocess.Popen(
            [str(self.bin), "serve", "--config", str(self.config)],
            stdout=self._out, stderr=self._log, stdin=subprocess.DEVNULL, cwd=self.dir, env=env,
        )
        deadline = time.monotonic() + timeout
        last = None
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                pytest.fail(f"`keyward serve` exited with {self.proc.returncode} before becoming ready:\n{self.log_tail()}")
            try:
                with urllib.request.urlopen(f"{self.url}/readyz", timeout=2) as resp:
                    if resp.status == 200:
                        return
                    last = resp.status
            except urllib.error.HTTPError as e:
                last = e.code
            except OSError as e:
                last = repr(e)
            time.sleep(0.1)
        self.stop()
        pytest.fail(f"`keyward serve` not ready after {timeout}s (last /readyz: {last}):\n{self.log_tail()}")

    def stop(self):
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        for f in (getattr(self, "_log", None), getattr(self, "_out", None)):
            if f:
                f.close()

    def log_text(self) -> str:
        out = self.log_path.read_bytes() if self.log_path.exists() else b""
        out += self.out_path.read_bytes() if self.out_path.exists() else b""
        return out.decode("utf-8", "replace")

    def log_tail(self, n: int = 4000) -> str:
        return self.log_text()[-n:]

    # -- SDK clients (kept referenced: a dropped genai.Client closes itself) --
    def openai(self, key: str, **kw):
        import openai

        c = openai.OpenAI(base_url=f"{self.url}/v1", api_key=key, max_retries=0, timeout=20, **kw)
        self._clients.append(c)
        return c

    def azure(self, key: str, **kw):
        import openai

        c = openai.AzureOpenAI(azure_endpoint=self.url, api_key=key, api_version=AZURE_API_VERSION, max_retries=0, timeout=20, **kw)
        self._clients.append(c)
        return c

    def anthropic(self, key: str, **kw):
        import anthropic

        c = anthropic.Anthropic(base_url=self.url, api_key=key, max_retries=0, timeout=20, **kw)
        self._clients.append(c)
        return c

    def anthropic_xkey(self, key: str):
        """Anthropic SDK sending the key as `x-api-key` (older SDKs' way) instead of a bearer token."""
        import anthropic

        c = anthropic.Anthropic(base_url=self.url, api_key=None, default_headers={"X-Api-Key": key}, max_retries=0, timeout=20)
        self._clients.append(c)
        return c

    def genai(self, key: str, api_version: str | None = None):
        from google import genai
        from google.genai import types

        c = genai.Client(api_key=key, http_options=types.HttpOptions(base_url=self.url, api_version=api_version, timeout=20_000))
        self._clients.append(c)
        return c


CONFIG_TEMPLATE = """\
[server]
listen = "127.0.0.1:0"

[store]
url = "sqlite://{db}"

[vault]
master_key_file = "{master}"

[[providers]]
name = "openai"
kind = "openai"
base_url = "{fake}/v1"
credential = {{ prod = "openai-prod", dev = "openai-dev" }}
models = ["gpt-4o-mini", "gpt-4o*", "text-embedding-3-small"]

[[providers]]
name = "anthropic"
kind = "anthropic"
base_url = "{fake}"
credential = "anthropic-key"
models = ["claude-*"]

[[providers]]
name = "gemini"
kind = "gemini"
base_url = "{fake}"
credential = "gemini-key"
models = ["gemini-2.0-flash", "gemini-*"]

[[providers]]
name = "azure"
kind = "azure-openai"
base_url = "{fake}/openai"
api_version = "{azure_version}"
credential = "azure-key"
models = ["azure-gpt-4o"]

[[providers]]
name = "groq"
kind = "openai-compatible"
base_url = "{fake}/v1"
credential = "groq-key"
models = ["llama-*"]
"""


def make_gateway(keyward_bin, fake, d: Path, extra_config: str = "", env: dict | None = None) -> Gateway:
    """A gateway (not started) in `d` on the standard config plus `extra_config`,
    with every provider credential in its vault."""
    cfg = d / "keyward.toml"
    db = d / "data" / "keyward.db"
    db.parent.mkdir()
    cfg.write_text(
        CONFIG_TEMPLATE.format(db=db, master=d / "data" / "master.key", fake=fake.url, azure_version=AZURE_API_VERSION)
        + extra_config
    )
    gw = Gateway(bin=keyward_bin, dir=d, config=cfg, db=db, log_path=d / "serve.stderr.log", out_path=d / "serve.stdout.log",
                 env=env or {})

    # provider credentials: distinctive values, put in the vault via stdin
    h = secrets.token_hex(8)
    gw.creds = {
        "openai-prod": f"sk-fakeprov-openai-prod-{h}",
        "openai-dev": f"sk-fakeprov-openai-dev-{h}",
        "anthropic-key": f"sk-ant-fakeprov-anthropic-{h}",
        "gemini-key": f"AIzaFakeprovGemini{h}",
        "azure-key": f"fakeprov-azure-{h}",
        "groq-key": f"gsk_fakeprov_groq_{h}",
    }
    gw.cli("init")  # only `init` and `serve` create a store
    for name, value in gw.creds.items():
        gw.cli("vault", "put", name, input=value + "\n")
    return gw


@pytest.fixture(scope="session")
def gateway(keyward_bin, fake, tmp_path_factory) -> Gateway:
    gw = make_gateway(keyward_bin, fake, tmp_path_factory.mktemp("keyward"))

    # client keys used across modules
    gw.create_key("all-prod", env="prod", models="*")
    gw.create_key("all-dev", env="dev", models="*")
    gw.create_key("all-staging", env="staging", models="*")
    gw.create_key("gpt-mini-only", env="prod", models="gpt-4o-mini")
    gw.create_key("globs", env="prod", models="gpt-4o*,claude-*")
    gw.create_key("openai-provider-only", env="prod", models="*", providers="openai")
    gw.create_key("chat-endpoint-only", env="prod", models="*", endpoints="chat.completions")
    gw.create_key("cidr-local", env="prod", models="*", cidrs="127.0.0.1/32")
    gw.create_key("cidr-elsewhere", env="prod", models="*", cidrs="192.0.2.0/24")  # TEST-NET-1: never contacted
    gw.create_key("block-in", env="prod", models="*", redact_inbound="block")
    gw.create_key("block-out", env="prod", models="*", redact_outbound="block")
    gw.create_key("alert-in", env="prod", models="*", redact_inbound="alert")
    gw.create_key("redact-off", env="prod", models="*", redact_inbound="off", redact_outbound="off")
    import fake_provider

    gw.traffic_secrets.append(fake_provider.LEAK_SECRET)

    gw.start()
    yield gw
    gw.stop()
    for c in gw._clients:
        try:
            c.close()
        except Exception:
            pass


# ---------------------------------------------------------------------------
# assertion helpers shared by the test modules


def assert_no_secret_in(text: str, secrets_: list[str], what: str):
    for s in secrets_:
        assert s not in text, f"{what} contains a secret ({s[:12]}...)"


def assert_clean_upstream(fake: FakeProvider, recs, gw: Gateway):
    """No Keyward client key in anything the provider received."""
    for r in recs:
        blob = r.as_text()
        for k in gw.all_client_keys():
            assert k not in blob, f"provider received a Keyward key in {r.method} {r.raw_path}"


REQUEST_ID_RE = re.compile(r"req_[A-Za-z0-9]{8,}|request[ _-]?id", re.I)


def raw_request(url: str, method: str = "GET", body: bytes | None = None, headers: dict | None = None,
                target: str | None = None, timeout: float = 20.0):
    """One HTTP/1.1 request with http.client; `target` overrides the request target
    verbatim (e.g. an absolute URL). Returns (status, headers dict lower-cased, body bytes)."""
    import http.client
    from urllib.parse import urlsplit

    u = urlsplit(url)
    conn = http.client.HTTPConnection(u.hostname, u.port, timeout=timeout)
    try:
        path = target if target is not None else (u.path or "/") + (f"?{u.query}" if u.query else "")
        hdrs = dict(headers or {})
        skip_host = any(k.lower() == "host" for k in hdrs)
        conn.putrequest(method, path, skip_host=skip_host, skip_accept_encoding=True)
        if body is not None and not any(k.lower() == "content-length" for k in hdrs):
            hdrs["Content-Length"] = str(len(body))
        for k, v in hdrs.items():
            conn.putheader(k, v)
        conn.endheaders()
        if body:
            view = memoryview(body)
            try:
                for i in range(0, len(body), 1 << 16):
                    conn.sock.sendall(view[i:i + (1 << 16)])
            except (BrokenPipeError, ConnectionResetError):
                pass  # the server may answer (413) before reading it all
        resp = conn.getresponse()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, resp.read()
    finally:
        conn.close()
