"""Secrets in traffic, through the official SDKs: redacted before the provider sees
them (prompts, system prompts, tool calls and results, Gemini contents), redacted
from responses whole and streamed (also when split across many events), blocked
with the SDK's usual error, alerted, or left alone, per key. Counted and audited."""

from __future__ import annotations

import binascii
import json
import secrets
import string
import time
import urllib.request

import pytest

import fake_provider
from conftest import marker

BASE62 = string.digits + string.ascii_uppercase + string.ascii_lowercase


def github_token() -> str:
    """A well-formed classic GitHub token (valid CRC32 checksum), random per call."""
    body = "".join(secrets.choice(string.ascii_letters + string.digits) for _ in range(30))
    n = binascii.crc32(body.encode())
    crc = ""
    for _ in range(6):
        crc = BASE62[n % 62] + crc
        n //= 62
    return f"ghp_{body}{crc}"


@pytest.fixture
def token(gateway):
    t = github_token()
    gateway.traffic_secrets.append(t)
    return t


MARK = "[REDACTED:github-classic-pat]"
LEAK_MARK = "[REDACTED:anthropic-api-key]"


def upstream(fake, mk):
    recs = fake.wait_for(mk)
    assert len(recs) == 1, f"expected one upstream request carrying {mk}, got {len(recs)}"
    return recs[0]


# --- inbound ------------------------------------------------------------------


def test_openai_prompt_and_tool_call_arguments_are_redacted_before_the_provider(gateway, fake, token):
    mk = marker()
    c = gateway.openai(gateway.key("all-prod"))
    r = c.chat.completions.create(
        model="gpt-4o-mini",
        messages=[
            {"role": "system", "content": f"deploy with {token}"},
            {
                "role": "assistant",
                "content": None,
                "tool_calls": [
                    {"id": "call_1", "type": "function",
                     "function": {"name": "deploy", "arguments": json.dumps({"token": token})}}
                ],
            },
            {"role": "tool", "tool_call_id": "call_1", "content": f"ok, used {token}"},
            {"role": "user", "content": f"ECHO_PROMPT {mk} my key is {token} thanks"},
        ],
    )
    rec = upstream(fake, mk)
    body = rec.body.decode()
    assert token not in body
    req = rec.json
    assert req["messages"][0]["content"] == f"deploy with {MARK}"
    assert json.loads(req["messages"][1]["tool_calls"][0]["function"]["arguments"]) == {"token": MARK}
    assert req["messages"][2]["content"] == f"ok, used {MARK}"
    # The fake echoes the prompt it received: the client sees the redacted form.
    assert r.choices[0].message.content == f"ECHO_PROMPT {mk} my key is {MARK} thanks"


def test_anthropic_system_and_tool_result_blocks_are_redacted(gateway, fake, token):
    mk = marker()
    c = gateway.anthropic(gateway.key("all-prod"))
    c.messages.create(
        model="claude-3-5-haiku-latest",
        max_tokens=64,
        system=[{"type": "text", "text": f"the ci token is {token}"}],
        messages=[
            {"role": "user", "content": f"{mk} run the tool"},
            {"role": "assistant", "content": [{"type": "tool_use", "id": "tu_1", "name": "env", "input": {"t": token}}]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "tu_1", "content": f"TOKEN={token}"}]},
        ],
    )
    rec = upstream(fake, mk)
    assert token not in rec.body.decode()
    req = rec.json
    assert req["system"][0]["text"] == f"the ci token is {MARK}"
    assert req["messages"][1]["content"][0]["input"] == {"t": MARK}
    assert req["messages"][2]["content"][0]["content"] == f"TOKEN={MARK}"


def test_gemini_contents_are_redacted(gateway, fake, token):
    mk = marker()
    c = gateway.genai(gateway.key("all-prod"))
    c.models.generate_content(model="gemini-2.0-flash", contents=f"{mk} here: {token}")
    rec = upstream(fake, mk)
    assert token not in rec.body.decode()
    assert rec.json["contents"][0]["parts"][0]["text"] == f"{mk} here: {MARK}"


def test_block_policy_refuses_with_the_sdks_usual_error_naming_the_rule(gateway, fake, token):
    import anthropic
    import openai
    from google.genai import errors

    mk = marker()
    with pytest.raises(openai.BadRequestError) as e:
        gateway.openai(gateway.key("block-in")).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} {token}"}]
        )
    assert "github-classic-pat" in str(e.value) and token not in str(e.value)
    with pytest.raises(anthropic.BadRequestError) as e:
        gateway.anthropic(gateway.key("block-in")).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": f"{mk} {token}"}]
        )
    assert "github-classic-pat" in str(e.value) and token not in str(e.value)
    with pytest.raises(errors.ClientError) as e:
        gateway.genai(gateway.key("block-in")).models.generate_content(model="gemini-2.0-flash", contents=f"{mk} {token}")
    assert e.value.code == 400 and "github-classic-pat" in str(e.value)
    assert fake.matching(mk) == [], "a blocked request reached the provider"
    # Without a secret, the same key works.
    gateway.openai(gateway.key("block-in")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": "hello"}]
    )


def test_alert_policy_forwards_unchanged_and_off_does_nothing(gateway, fake, token):
    mk = marker()
    gateway.openai(gateway.key("alert-in")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} {token}"}]
    )
    assert token in upstream(fake, mk).body.decode()
    log = gateway.log_text()
    assert "secret_in_traffic" in log, "alert policy raised no alert"
    mk2 = marker()
    r = gateway.openai(gateway.key("redact-off")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk2} LEAK_BACK"}]
    )
    assert fake_provider.LEAK_SECRET in r.choices[0].message.content


# --- outbound -----------------------------------------------------------------


def test_openai_stream_with_a_secret_split_across_events_is_redacted(gateway, fake):
    mk = marker()
    stream = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} LEAK_BACK"}], stream=True,
        stream_options={"include_usage": True},
    )
    text, finish, usage = "", None, None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
            finish = chunk.choices[0].finish_reason or finish
        usage = chunk.usage or usage
    assert text == f"Sure. The deploy key is {LEAK_MARK} and that is all."
    assert finish == "stop" and usage is not None


def test_openai_whole_and_responses_api_are_redacted(gateway, fake):
    c = gateway.openai(gateway.key("all-prod"))
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{marker()} LEAK_BACK"}])
    assert r.choices[0].message.content == f"Sure. The deploy key is {LEAK_MARK} and that is all."
    deltas = []
    with c.responses.stream(model="gpt-4o", input=f"{marker()} LEAK_BACK") as s:
        for ev in s:
            if ev.type == "response.output_text.delta":
                deltas.append(ev.delta)
        final = s.get_final_response()
    assert "".join(deltas) == f"Sure. The deploy key is {LEAK_MARK} and that is all."
    assert final.output_text == "".join(deltas)


def test_anthropic_stream_is_redacted_and_framing_stays_valid(gateway, fake):
    c = gateway.anthropic(gateway.key("all-prod"))
    with c.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": f"{marker()} LEAK_BACK"}]
    ) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == f"Sure. The deploy key is {LEAK_MARK} and that is all."
    assert final.content[0].text == text and final.stop_reason == "end_turn"


def test_gemini_stream_is_redacted(gateway, fake):
    c = gateway.genai(gateway.key("all-prod"))
    text = "".join(
        ch.text or "" for ch in c.models.generate_content_stream(model="gemini-2.0-flash", contents=f"{marker()} LEAK_BACK")
    )
    assert text == f"Sure. The deploy key is {LEAK_MARK} and that is all."


def test_block_outbound_ends_the_stream_with_the_sdks_error(gateway, fake):
    import openai

    c = gateway.openai(gateway.key("block-out"))
    with pytest.raises(openai.APIError) as e:
        for _ in c.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{marker()} LEAK_BACK"}], stream=True
        ):
            pass
    assert "anthropic-api-key" in str(e.value)
    assert fake_provider.LEAK_SECRET not in str(e.value)
    with pytest.raises(openai.APIStatusError) as e:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{marker()} LEAK_BACK"}])
    assert e.value.status_code == 502


def test_raw_stream_bytes_never_hold_the_secret(gateway, fake):
    """Below the SDKs: no prefix of the secret long enough to matter reaches the wire."""
    body = json.dumps({"model": "gpt-4o-mini", "stream": True, "messages": [{"role": "user", "content": "LEAK_BACK"}]})
    req = urllib.request.Request(
        f"{gateway.url}/v1/chat/completions", data=body.encode(), method="POST",
        headers={"Authorization": f"Bearer {gateway.key('all-prod')}", "Content-Type": "application/json"},
    )
    with urllib.request.urlopen(req, timeout=20) as resp:
        raw = resp.read().decode()
    events = [e for e in raw.split("\n\n") if e.strip()]
    assert events[-1] == "data: [DONE]"
    text = ""
    for e in events[:-1]:
        d = json.loads(e.removeprefix("data: "))
        if d["choices"]:
            text += d["choices"][0]["delta"].get("content") or ""
    assert fake_provider.LEAK_SECRET[13:40] not in text
    assert LEAK_MARK in text


# --- accounting -------------------------------------------------------------------


def test_redactions_are_counted_per_key_and_rule_and_audited_without_the_secret(gateway, fake, token):
    gateway.openai(gateway.key("globs")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"one {token} two {token}"}]
    )
    admin = json.loads(gateway.cli("admin", "create", "--name", "redaction-test", "--json").stdout)
    gateway.traffic_secrets.append(admin["key"])
    from conftest import raw_request

    # A running server picks up a new admin key within a second.
    deadline = time.monotonic() + 3
    while True:
        status, _, body = raw_request(f"{gateway.url}/admin/v1/redactions", headers={"Authorization": f"Bearer {admin['key']}"})
        if status != 401 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert status == 200, body
    counts = json.loads(body)
    key_id = gateway.keys["globs"]["id"]
    mine = [c for c in counts if c["key_id"] == key_id]
    assert mine == [
        {"key_id": key_id, "rule": "github-classic-pat", "direction": "inbound", "action": "redact", "count": 2}
    ], counts
    def rules(e):
        d = e.get("details")
        return (json.loads(d) if isinstance(d, str) else d or {}).get("rules")

    # Traffic events reach the log through the server's audit queue: wait for it.
    deadline = time.monotonic() + 5
    while True:
        out = gateway.cli("audit", "search", "--action", "traffic.secret_redacted", "--json").stdout
        assert token not in out
        entries = [json.loads(line) for line in out.splitlines() if line.strip()]
        found = any(e.get("actor") == key_id and rules(e) == {"github-classic-pat": 2} for e in entries)
        if found or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert found, out
