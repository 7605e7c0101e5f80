"""Each official SDK through `keyward serve` to the fake provider: routing, the
real credential sent the provider's way, the Keyward key never forwarded, and
streaming (incremental) through every SDK."""

import time

import pytest

from conftest import AZURE_API_VERSION, assert_clean_upstream, marker


def one(fake, mk, route=None):
    recs = fake.wait_for(mk)
    assert len(recs) == 1, f"expected exactly one upstream request carrying {mk}, got {[(r.method, r.raw_path) for r in recs]}"
    if route:
        assert recs[0].route == route, f"upstream request went to {recs[0].method} {recs[0].raw_path}, expected route {route}"
    return recs[0]


# ---------------------------------------------------------------------------
# OpenAI


def test_openai_chat_routes_with_prod_credential(gateway, fake):
    mk = marker()
    r = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": mk}]
    )
    assert r.choices[0].message.content == "fake-openai reply model=gpt-4o-mini"
    assert r.usage.total_tokens == 18
    rec = one(fake, mk, "openai.chat.completions")
    assert rec.path == "/v1/chat/completions"
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-prod']}"
    assert rec.json["model"] == "gpt-4o-mini"
    assert rec.json["messages"][0]["content"] == mk
    assert_clean_upstream(fake, [rec], gateway)


def test_openai_glob_model(gateway, fake):
    mk = marker()
    r = gateway.openai(gateway.key("globs")).chat.completions.create(
        model="gpt-4o-2024-08-06", messages=[{"role": "user", "content": mk}]
    )
    assert r.choices[0].message.content.endswith("model=gpt-4o-2024-08-06")
    one(fake, mk, "openai.chat.completions")


def test_openai_chat_stream(gateway, fake):
    mk = marker()
    stream = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": mk}], stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello from the fake stream model=gpt-4o"
    assert usage is not None and usage.total_tokens == 17
    rec = one(fake, mk, "openai.chat.completions")
    assert rec.json.get("stream") is True
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-prod']}"
    assert_clean_upstream(fake, [rec], gateway)


def test_openai_chat_stream_is_incremental(gateway, fake):
    """The first chunk reaches the SDK while the fake is still producing the rest."""
    mk = marker()
    stream = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} SLOW_STREAM"}], stream=True
    )
    first_at, text = None, ""
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            if first_at is None:
                first_at = time.monotonic()
            text += chunk.choices[0].delta.content
    rec = one(fake, mk)
    assert text.endswith("model=gpt-4o-mini")
    assert rec.stream_done_at is not None
    assert first_at < rec.stream_done_at - 0.8, (
        f"first chunk arrived {first_at - rec.stream_done_at:+.2f}s relative to the end of the upstream stream: the gateway buffers"
    )


def test_openai_completions(gateway, fake):
    mk = marker()
    r = gateway.openai(gateway.key("all-prod")).completions.create(model="gpt-4o-mini", prompt=mk)
    assert r.choices[0].text == "fake-openai reply model=gpt-4o-mini"
    rec = one(fake, mk, "openai.completions")
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-prod']}"


def test_openai_embeddings(gateway, fake):
    mk = marker()
    c = gateway.openai(gateway.key("all-prod"))
    r = c.embeddings.create(model="text-embedding-3-small", input=[mk, "second"])
    assert len(r.data) == 2 and len(r.data[0].embedding) == 4
    rec = one(fake, mk, "openai.embeddings")
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-prod']}"
    r = c.embeddings.create(model="text-embedding-3-small", input="x", encoding_format="float")
    assert r.data[0].embedding[1] == pytest.approx(0.2)


def test_openai_responses(gateway, fake):
    mk = marker()
    c = gateway.openai(gateway.key("all-prod"))
    r = c.responses.create(model="gpt-4o-mini", input=mk)
    assert r.output_text == "fake-openai reply model=gpt-4o-mini"
    rec = one(fake, mk, "openai.responses")
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-prod']}"
    assert_clean_upstream(fake, [rec], gateway)


def test_openai_responses_stream(gateway, fake):
    mk = marker()
    c = gateway.openai(gateway.key("all-prod"))
    types, deltas = [], []
    for ev in c.responses.create(model="gpt-4o", input=mk, stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
    assert types[0] == "response.created" and types[-1] == "response.completed", types
    assert "".join(deltas) == "Hello from the fake stream model=gpt-4o"
    one(fake, mk, "openai.responses")
    mk2 = marker()
    with c.responses.stream(model="gpt-4o", input=mk2) as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert final.output_text == "Hello from the fake stream model=gpt-4o"
    one(fake, mk2, "openai.responses")


def test_openai_models_lists_only_allowed(gateway):
    ids = [m.id for m in gateway.openai(gateway.key("gpt-mini-only")).models.list()]
    assert "gpt-4o-mini" in ids, ids
    bad = [i for i in ids if i.startswith(("claude", "gemini", "llama", "azure"))]
    assert not bad, f"/v1/models lists models the key may not use: {bad}"


# ---------------------------------------------------------------------------
# OpenAI-compatible (groq) and Azure


def test_openai_compatible_provider(gateway, fake):
    mk = marker()
    r = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="llama-3.1-8b-instant", messages=[{"role": "user", "content": mk}]
    )
    assert r.choices[0].message.content == "fake-openai reply model=llama-3.1-8b-instant"
    rec = one(fake, mk, "openai.chat.completions")
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['groq-key']}"
    assert_clean_upstream(fake, [rec], gateway)


def test_azure_sdk(gateway, fake):
    mk = marker()
    c = gateway.azure(gateway.key("all-prod"))
    r = c.chat.completions.create(model="azure-gpt-4o", messages=[{"role": "user", "content": mk}])
    assert r.choices[0].message.content == "fake-azure reply model=azure-gpt-4o"
    rec = one(fake, mk, "azure.chat.completions")
    assert rec.path == "/openai/deployments/azure-gpt-4o/chat/completions"
    assert rec.query.get("api-version") == [AZURE_API_VERSION]
    assert rec.headers.get("api-key") == gateway.creds["azure-key"]
    assert_clean_upstream(fake, [rec], gateway)


def test_azure_sdk_stream(gateway, fake):
    mk = marker()
    c = gateway.azure(gateway.key("all-prod"))
    text = "".join(
        (ch.choices[0].delta.content or "") if ch.choices else ""
        for ch in c.chat.completions.create(model="azure-gpt-4o", messages=[{"role": "user", "content": mk}], stream=True)
    )
    assert text == "Hello from the fake stream model=azure-gpt-4o"
    rec = one(fake, mk, "azure.chat.completions")
    assert rec.headers.get("api-key") == gateway.creds["azure-key"]


def test_openai_sdk_can_reach_azure_model_via_v1(gateway, fake):
    """A model routed to an azure-openai provider, asked for on /v1/chat/completions,
    goes to the deployment URL with the api-key header."""
    mk = marker()
    r = gateway.openai(gateway.key("all-prod")).chat.completions.create(
        model="azure-gpt-4o", messages=[{"role": "user", "content": mk}]
    )
    assert r.choices[0].message.content == "fake-azure reply model=azure-gpt-4o"
    rec = one(fake, mk, "azure.chat.completions")
    assert rec.query.get("api-version") == [AZURE_API_VERSION]
    assert rec.headers.get("api-key") == gateway.creds["azure-key"]


# ---------------------------------------------------------------------------
# Anthropic


def test_anthropic_messages(gateway, fake):
    mk = marker()
    m = gateway.anthropic(gateway.key("all-prod")).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": mk}]
    )
    assert m.content[0].text == "fake-anthropic reply model=claude-3-5-haiku-latest"
    rec = one(fake, mk, "anthropic.messages")
    assert rec.path == "/v1/messages"
    assert rec.headers.get("x-api-key") == gateway.creds["anthropic-key"]
    assert "anthropic-version" in rec.headers
    assert_clean_upstream(fake, [rec], gateway)


def test_anthropic_key_in_x_api_key_header(gateway, fake):
    mk = marker()
    m = gateway.anthropic_xkey(gateway.key("all-prod")).messages.create(
        model="claude-sonnet-4", max_tokens=64, messages=[{"role": "user", "content": mk}]
    )
    assert m.content[0].text.endswith("model=claude-sonnet-4")
    rec = one(fake, mk, "anthropic.messages")
    assert rec.headers.get("x-api-key") == gateway.creds["anthropic-key"]
    assert_clean_upstream(fake, [rec], gateway)


def test_anthropic_count_tokens(gateway, fake):
    mk = marker()
    r = gateway.anthropic(gateway.key("all-prod")).messages.count_tokens(
        model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": mk}]
    )
    assert r.input_tokens == 12
    rec = one(fake, mk, "anthropic.count_tokens")
    assert rec.headers.get("x-api-key") == gateway.creds["anthropic-key"]


def test_anthropic_stream(gateway, fake):
    mk = marker()
    c = gateway.anthropic(gateway.key("all-prod"))
    with c.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": mk}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from the fake stream model=claude-3-5-haiku-latest"
    assert final.stop_reason == "end_turn"
    rec = one(fake, mk, "anthropic.messages")
    assert rec.headers.get("x-api-key") == gateway.creds["anthropic-key"]


def test_anthropic_stream_is_incremental(gateway, fake):
    mk = marker()
    c = gateway.anthropic(gateway.key("all-prod"))
    first_at = None
    with c.messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": f"{mk} SLOW_STREAM"}]
    ) as s:
        for piece in s.text_stream:
            if first_at is None and piece:
                first_at = time.monotonic()
    rec = one(fake, mk)
    assert first_at < rec.stream_done_at - 0.8, "Anthropic stream was buffered by the gateway"


# ---------------------------------------------------------------------------
# Gemini


@pytest.mark.parametrize("version", [None, "v1beta"], ids=["sdk-default-version", "v1beta"])
def test_gemini_generate(gateway, fake, version):
    mk = marker()
    c = gateway.genai(gateway.key("all-prod"), version)
    r = c.models.generate_content(model="gemini-2.0-flash", contents=mk)
    assert r.text == "fake-gemini reply model=gemini-2.0-flash"
    rec = one(fake, mk, "gemini.generate")
    assert rec.path.endswith("/models/gemini-2.0-flash:generateContent")
    assert rec.headers.get("x-goog-api-key") == gateway.creds["gemini-key"]
    assert_clean_upstream(fake, [rec], gateway)


@pytest.mark.parametrize("version", [None, "v1beta"], ids=["sdk-default-version", "v1beta"])
def test_gemini_stream(gateway, fake, version):
    mk = marker()
    c = gateway.genai(gateway.key("all-prod"), version)
    text = "".join(ch.text or "" for ch in c.models.generate_content_stream(model="gemini-2.0-flash", contents=mk))
    assert text == "Hello from the fake stream model=gemini-2.0-flash"
    rec = one(fake, mk, "gemini.stream")
    assert rec.query.get("alt") == ["sse"]
    assert rec.headers.get("x-goog-api-key") == gateway.creds["gemini-key"]
    assert_clean_upstream(fake, [rec], gateway)


def test_gemini_stream_is_incremental(gateway, fake):
    mk = marker()
    c = gateway.genai(gateway.key("all-prod"), "v1beta")
    first_at = None
    for ch in c.models.generate_content_stream(model="gemini-2.0-flash", contents=f"{mk} SLOW_STREAM"):
        if first_at is None and ch.text:
            first_at = time.monotonic()
    rec = one(fake, mk)
    assert first_at < rec.stream_done_at - 0.8, "Gemini stream was buffered by the gateway"


def test_gemini_key_in_query(gateway, fake):
    """`?key=` is accepted from the client and not forwarded as such."""
    import json
    import urllib.request

    mk = marker()
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": mk}]}]}).encode()
    req = urllib.request.Request(
        f"{gateway.url}/v1beta/models/gemini-2.0-flash:generateContent?key={gateway.key('all-prod')}",
        data=body, headers={"Content-Type": "application/json"}, method="POST",
    )
    with urllib.request.urlopen(req, timeout=10) as resp:
        out = json.loads(resp.read())
    assert out["candidates"][0]["content"]["parts"][0]["text"] == "fake-gemini reply model=gemini-2.0-flash"
    rec = one(fake, mk, "gemini.generate")
    assert rec.headers.get("x-goog-api-key") == gateway.creds["gemini-key"]
    assert_clean_upstream(fake, [rec], gateway)


def test_gemini_list_models(gateway, fake):
    c = gateway.genai(gateway.key("all-prod"), "v1beta")
    names = [m.name for m in c.models.list()]
    assert any(n in ("models/gemini-2.0-flash", "gemini-2.0-flash") for n in names), names
    assert not [n for n in names if "gpt" in n or "claude" in n], f"/v1beta/models lists non-Gemini models: {names}"
    c2 = gateway.genai(gateway.key("globs"), "v1beta")
    names = [m.name for m in c2.models.list()]
    assert not [n for n in names if "gemini" in n], f"/v1beta/models lists models the key may not use: {names}"
    for r in fake.snapshot():
        assert_clean_upstream(fake, [r], gateway)


def test_gemini_stream_key_in_query(gateway, fake):
    """`:streamGenerateContent?alt=sse&key=...`: alt=sse reaches the provider, the Keyward key does not."""
    import json

    from conftest import raw_request

    mk = marker()
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": mk}]}]}).encode()
    status, headers, out = raw_request(
        f"{gateway.url}/v1beta/models/gemini-2.0-flash:streamGenerateContent?alt=sse&key={gateway.key('all-prod')}",
        "POST", body, {"Content-Type": "application/json"},
    )
    assert status == 200, out[:300]
    assert headers.get("content-type", "").startswith("text/event-stream"), headers
    texts = [
        json.loads(line[len(b"data: "):])["candidates"][0]["content"]["parts"][0]["text"]
        for line in out.splitlines() if line.startswith(b"data: ")
    ]
    assert "".join(texts) == "Hello from the fake stream model=gemini-2.0-flash"
    rec = one(fake, mk, "gemini.stream")
    assert rec.query.get("alt") == ["sse"]
    assert "key" not in rec.query or rec.query["key"] == [gateway.creds["gemini-key"]]
    assert_clean_upstream(fake, [rec], gateway)
