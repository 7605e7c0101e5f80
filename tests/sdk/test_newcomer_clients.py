"""What a newcomer and real clients ran into (issue 11), through the official SDKs:
changes that apply at once, Gemini batch embeddings, provider request ids, model
lookups, tokens that are not held back, and compressed responses."""

from __future__ import annotations

import gzip
import json
import statistics
import time

import pytest

from conftest import marker, raw_request


def one(fake, mk, route=None):
    recs = fake.wait_for(mk)
    assert len(recs) == 1, recs
    if route:
        assert recs[0].route == route, recs[0].route
    return recs[0]


# ---------------------------------------------------------------------------
# changes apply on return


def test_a_key_works_on_the_first_request_after_create_and_rotate(gateway):
    k = gateway.create_key("fresh-at-once", env="prod", models="*")
    for _ in range(5):
        status = raw_request(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {k['key']}"})[0]
        assert status == 200, "a key just printed by `keys create` was refused"
    r = gateway.cli("keys", "rotate", k["id"], "--grace", "0s", "--json")
    new = json.loads(r.stdout)["key"]
    gateway.traffic_secrets.append(new)
    assert raw_request(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {new}"})[0] == 200
    assert raw_request(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {k['key']}"})[0] == 401


def test_admin_keys_apply_at_once_both_ways(gateway):
    admin = json.loads(gateway.cli("admin", "create", "--name", "at-once", "--json").stdout)
    gateway.traffic_secrets.append(admin["key"])
    auth = {"Authorization": f"Bearer {admin['key']}"}
    assert raw_request(f"{gateway.url}/admin/v1/keys", headers=auth)[0] == 200
    # Created through the admin API: usable on the answer.
    body = json.dumps({"name": "via-api", "env": "prod", "models": ["*"]}).encode()
    status, _, out = raw_request(f"{gateway.url}/admin/v1/keys", "POST", body, {**auth, "Content-Type": "application/json"})
    assert status == 201, out
    created = json.loads(out)
    gateway.keys["via-api"] = created
    assert raw_request(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {created['key']}"})[0] == 200
    # Rotated through the admin API.
    status, _, out = raw_request(
        f"{gateway.url}/admin/v1/keys/{created['id']}/rotate", "POST", b'{"grace": "0s"}', {**auth, "Content-Type": "application/json"}
    )
    assert status == 200, out
    rotated = json.loads(out)
    gateway.traffic_secrets.append(rotated["key"])
    assert raw_request(f"{gateway.url}/v1/models", headers={"Authorization": f"Bearer {rotated['key']}"})[0] == 200
    # Typos are refused by the API as by the CLI.
    for bad in ({"endpoints": ["chat.completion"]}, {"providers": ["opneai"]}):
        body = json.dumps({"name": "typo", "env": "prod", "models": ["*"], **bad}).encode()
        status, _, out = raw_request(f"{gateway.url}/admin/v1/keys", "POST", body, {**auth, "Content-Type": "application/json"})
        assert status == 400, (bad, out)
    # Unknown admin paths answer in the admin error format.
    status, headers, out = raw_request(f"{gateway.url}/admin/v1/nope", headers=auth)
    assert status == 404 and headers["content-type"].startswith("application/json")
    assert "admin API" in json.loads(out)["error"]["message"]
    gateway.cli("admin", "revoke", admin["id"])
    assert raw_request(f"{gateway.url}/admin/v1/keys", headers=auth)[0] == 401, "a revoked admin key still worked"


def test_vault_rotate_is_used_by_the_next_request(gateway, fake):
    new = gateway.creds["groq-key"] + "-rotated"
    gateway.cli("vault", "rotate", "groq-key", input=new + "\n")
    gateway.creds["groq-key-rotated"] = new
    mk = marker()
    gateway.openai(gateway.key("all-prod")).chat.completions.create(model="llama-3-8b", messages=[{"role": "user", "content": mk}])
    assert one(fake, mk).headers["authorization"] == f"Bearer {new}"
    audit = gateway.cli("audit", "search", "--action", "vault.rotate", "--target", "groq-key", "--since", "1h", "--json").stdout
    entries = [json.loads(line) for line in audit.splitlines()]
    assert entries and isinstance(entries[-1]["details"], dict), audit


# ---------------------------------------------------------------------------
# real clients


def test_gemini_embeddings_one_text_and_a_batch(gateway, fake):
    c = gateway.genai(gateway.key("all-prod"), "v1beta")
    mk = marker()
    r = c.models.embed_content(model="gemini-embedding-001", contents=mk)
    assert r.embeddings and r.embeddings[0].values == pytest.approx([0.1, 0.2, 0.3, 0.4])
    rec = fake.wait_for(mk)[0]
    assert rec.route in ("gemini.embed", "gemini.batch_embed"), rec.route
    mk2 = marker()
    r = c.models.embed_content(model="gemini-embedding-001", contents=[mk2, "second", "third"])
    assert len(r.embeddings) == 3
    assert fake.wait_for(mk2)[0].route == "gemini.batch_embed"


def test_a_batch_naming_another_model_is_refused(gateway):
    body = json.dumps({"requests": [{"model": "models/gemini-ultra-secret", "content": {"parts": [{"text": "x"}]}}]}).encode()
    status, _, out = raw_request(
        f"{gateway.url}/v1beta/models/gemini-2.0-flash:batchEmbedContents", "POST", body,
        {"x-goog-api-key": gateway.key("all-prod"), "Content-Type": "application/json"},
    )
    assert status == 400, out


def test_provider_request_ids_reach_the_sdks(gateway, fake):
    mk = marker()
    raw = gateway.openai(gateway.key("all-prod")).chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": mk}]
    )
    rec = one(fake, mk)
    assert raw.headers["x-request-id"] == rec.request_id
    assert raw.parse()._request_id == rec.request_id
    assert raw.headers["x-keyward-request-id"].startswith("req_")

    mk = marker()
    msg = gateway.anthropic(gateway.key("all-prod")).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=16, messages=[{"role": "user", "content": mk}]
    )
    assert msg._request_id == one(fake, mk).request_id

    # A refusal made by Keyward itself carries Keyward's id where each SDK looks.
    status, headers, _ = raw_request(
        f"{gateway.url}/v1/messages", "POST", b"{}", {"x-api-key": "kw_prod_nope", "anthropic-version": "2023-06-01"}
    )
    assert status == 401 and headers["request-id"] == headers["x-keyward-request-id"]


def test_models_can_be_looked_up_one_by_one(gateway):
    key = gateway.key("all-prod")
    m = gateway.openai(key).models.retrieve("gpt-4o-mini")
    assert m.id == "gpt-4o-mini"
    # Configured only through the glob `gpt-4o*`: found too.
    assert gateway.openai(key).models.retrieve("gpt-4o-2024-08-06").id == "gpt-4o-2024-08-06"
    import openai

    with pytest.raises(openai.NotFoundError):
        gateway.openai(key).models.retrieve("gpt-2-nonexistent")
    with pytest.raises(openai.NotFoundError):
        gateway.openai(gateway.key("gpt-mini-only")).models.retrieve("gpt-4o")
    assert gateway.anthropic(key).models.retrieve("claude-3-5-haiku-latest").id == "claude-3-5-haiku-latest"
    g = gateway.genai(key, "v1beta").models.get(model="gemini-2.0-flash")
    assert g.name == "models/gemini-2.0-flash"


def test_each_streamed_token_arrives_with_its_upstream_frame(gateway, fake):
    """With outbound redaction on (the default), no token waits for the next one."""
    from fake_provider import PROSE_PIECES

    mk = marker()
    stream = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} PROSE SLOW_STREAM"}], stream=True
    )
    arrivals = []  # (time, text) of each content delta
    for chunk in stream:
        if not chunk.choices:
            continue
        delta = chunk.choices[0].delta
        if delta.role is None and delta.content is not None:
            assert delta.content != "", "an empty delta was sent"
            arrivals.append((time.monotonic(), delta.content))
    rec = one(fake, mk)
    assert [t for _, t in arrivals] == PROSE_PIECES, "each piece should arrive as its own delta"
    # Frame 0 is the role chunk; frame i + 1 carries piece i.
    lags = [at - rec.frame_sent_at[i + 1] for i, (at, _) in enumerate(arrivals)]
    shown = [round(lag * 1000, 1) for lag in lags]
    # Before the fix each token came with the next frame, 250 ms later.
    assert max(lags) < 0.1, f"a token waited for the next frame: lags {shown} ms"
    assert statistics.median(lags) < 0.005, f"median lag over 5 ms: {shown} ms"


def test_whole_responses_are_compressed_when_asked_streams_are_not(gateway):
    key = gateway.key("all-prod")
    auth = {"Authorization": f"Bearer {key}", "Content-Type": "application/json"}
    # A long answer (the fake repeats the prompt) is compressed when asked for ...
    prose = " ".join(["the quick brown fox jumps over the lazy dog"] * 40)
    long_chat = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": f"ECHO_PROMPT {marker()} {prose}"}]}).encode()
    status, headers, body = raw_request(f"{gateway.url}/v1/chat/completions", "POST", long_chat, {**auth, "Accept-Encoding": "gzip"})
    assert status == 200 and headers.get("content-encoding") == "gzip", headers
    assert prose in json.loads(gzip.decompress(body))["choices"][0]["message"]["content"]
    assert len(body) < len(prose) / 2
    # ... and only then.
    status, headers, _ = raw_request(f"{gateway.url}/v1/chat/completions", "POST", long_chat, auth)
    assert status == 200 and "content-encoding" not in headers
    # A short answer (under 1 KiB) is not worth compressing.
    status, headers, body = raw_request(f"{gateway.url}/v1/models", headers={**auth, "Accept-Encoding": "gzip"})
    assert status == 200 and "content-encoding" not in headers and len(body) < 1024, (headers, len(body))
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": marker()}]}).encode()
    status, headers, out = raw_request(
        f"{gateway.url}/v1/chat/completions", "POST", body,
        {"Authorization": f"Bearer {key}", "Accept-Encoding": "gzip", "Content-Type": "application/json"},
    )
    assert status == 200 and "content-encoding" not in headers and b"data:" in out


def test_vault_put_on_a_terminal_prompts_without_echo(gateway, fake):
    """On a TTY, `vault put` asks for the value and does not echo what is typed."""
    import os
    import pty
    import select

    secret = "sk-typed-at-a-prompt-" + marker()
    pid, fd = pty.fork()
    if pid == 0:  # the child: a session with this pty as its terminal
        os.chdir(gateway.dir)
        os.execv(str(gateway.bin), [str(gateway.bin), "vault", "put", "typed-key", "--config", str(gateway.config)])
    seen = b""

    def read_until(needle: bytes, timeout: float = 20.0) -> bytes:
        nonlocal seen
        deadline = time.monotonic() + timeout
        while needle not in seen and time.monotonic() < deadline:
            r, _, _ = select.select([fd], [], [], 0.2)
            if r:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:
                    break
                if not chunk:
                    break
                seen += chunk
        return seen

    assert b"input hidden" in read_until(b"input hidden"), seen
    # Type once the terminal has echo off, as a person would after the prompt
    # (the prompt is printed a moment before echo is turned off).
    import termios

    deadline = time.monotonic() + 10
    while termios.tcgetattr(fd)[3] & termios.ECHO:
        assert time.monotonic() < deadline, "vault put never turned echo off"
        time.sleep(0.01)
    os.write(fd, secret.encode() + b"\n")
    read_until(b"\0")  # everything, to the end (the pty reports EIO once the child exits)
    _, status = os.waitpid(pid, 0)
    os.close(fd)
    gateway.creds["typed-key"] = secret
    assert os.waitstatus_to_exitcode(status) == 0, seen
    assert secret.encode() not in seen, "the typed secret was echoed"
    assert b"stored `typed-key` (version 1)" in seen, seen
    listed = json.loads(gateway.cli("vault", "list", "--json").stdout)
    assert any(r["name"] == "typed-key" for r in listed)
