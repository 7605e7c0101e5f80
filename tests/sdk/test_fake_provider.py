"""Self-test of the fake provider: the official SDKs pointed DIRECTLY at it.

Proves the fake speaks each SDK's protocol (streaming included) so that a
failure in the gateway tests is the gateway's, not the fake's.
"""

import time

import anthropic
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from fake_provider import FakeProvider

CRED = "sk-fakeprov-direct-0123456789abcdef"


@pytest.fixture(scope="module")
def direct_fake():
    fp = FakeProvider().start()
    yield fp
    fp.stop()


def oai(fake):
    return openai.OpenAI(base_url=f"{fake.url}/v1", api_key=CRED, max_retries=0, timeout=10)


def test_openai_chat(direct_fake):
    r = oai(direct_fake).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi direct-chat"}])
    assert r.choices[0].message.content == "fake-openai reply model=gpt-4o-mini"
    assert r.usage.total_tokens == 18
    rec = direct_fake.matching("direct-chat")[-1]
    assert rec.route == "openai.chat.completions"
    assert rec.headers["authorization"] == f"Bearer {CRED}"


def test_openai_chat_stream(direct_fake):
    stream = oai(direct_fake).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "direct-stream"}], stream=True, stream_options={"include_usage": True}
    )
    text, usage = "", None
    for chunk in stream:
        if chunk.choices:
            text += chunk.choices[0].delta.content or ""
        if chunk.usage:
            usage = chunk.usage
    assert text == "Hello from the fake stream model=gpt-4o"
    assert usage is not None and usage.completion_tokens == 6


def test_openai_chat_stream_is_incremental(direct_fake):
    stream = oai(direct_fake).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "direct-slow SLOW_STREAM"}], stream=True
    )
    first_at = None
    for chunk in stream:
        if first_at is None and chunk.choices and chunk.choices[0].delta.content:
            first_at = time.monotonic()
    rec = direct_fake.matching("direct-slow")[-1]
    assert first_at is not None and rec.stream_done_at is not None
    assert first_at < rec.stream_done_at - 1.0


def test_openai_completions_embeddings_models(direct_fake):
    c = oai(direct_fake)
    assert c.completions.create(model="gpt-4o-mini", prompt="direct-cmpl").choices[0].text.endswith("model=gpt-4o-mini")
    e = c.embeddings.create(model="text-embedding-3-small", input=["a", "b"])
    assert len(e.data) == 2 and len(e.data[0].embedding) == 4
    e = c.embeddings.create(model="text-embedding-3-small", input="a", encoding_format="float")
    assert e.data[0].embedding[1] == pytest.approx(0.2)
    ids = [m.id for m in c.models.list()]
    assert "gpt-4o-mini" in ids


def test_openai_responses(direct_fake):
    c = oai(direct_fake)
    r = c.responses.create(model="gpt-4o-mini", input="direct-resp")
    assert r.output_text == "fake-openai reply model=gpt-4o-mini"
    deltas = []
    types = []
    for ev in c.responses.create(model="gpt-4o-mini", input="direct-resp-stream", stream=True):
        types.append(ev.type)
        if ev.type == "response.output_text.delta":
            deltas.append(ev.delta)
    assert types[0] == "response.created" and types[-1] == "response.completed"
    assert "".join(deltas) == "Hello from the fake stream model=gpt-4o-mini"
    with c.responses.stream(model="gpt-4o-mini", input="direct-resp-helper") as s:
        for _ in s:
            pass
        final = s.get_final_response()
    assert final.output_text == "Hello from the fake stream model=gpt-4o-mini"


def test_openai_error_echoes_key(direct_fake):
    with pytest.raises(openai.AuthenticationError) as ei:
        oai(direct_fake).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "ECHO_KEY"}])
    assert CRED in str(ei.value)


def test_azure(direct_fake):
    c = openai.AzureOpenAI(azure_endpoint=direct_fake.url, api_key=CRED, api_version="2024-10-21", max_retries=0, timeout=10)
    r = c.chat.completions.create(model="my-deploy", messages=[{"role": "user", "content": "direct-azure"}])
    assert r.choices[0].message.content == "fake-azure reply model=my-deploy"
    rec = direct_fake.matching("direct-azure")[-1]
    assert rec.path == "/openai/deployments/my-deploy/chat/completions"
    assert rec.query["api-version"] == ["2024-10-21"]
    assert rec.headers["api-key"] == CRED
    text = "".join(
        (ch.choices[0].delta.content or "") if ch.choices else ""
        for ch in c.chat.completions.create(model="my-deploy", messages=[{"role": "user", "content": "x"}], stream=True)
    )
    assert text.endswith("model=my-deploy")


def ant(fake):
    return anthropic.Anthropic(base_url=fake.url, api_key=CRED, max_retries=0, timeout=10)


def test_anthropic_messages(direct_fake):
    c = ant(direct_fake)
    m = c.messages.create(model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": "direct-ant"}])
    assert m.content[0].text == "fake-anthropic reply model=claude-3-5-haiku-latest"
    rec = direct_fake.matching("direct-ant")[-1]
    # anthropic 2.x sends the api key as a bearer token
    assert rec.headers.get("authorization") == f"Bearer {CRED}"
    # and the x-api-key way (what the gateway must send upstream) works too
    c2 = anthropic.Anthropic(base_url=direct_fake.url, api_key=None, default_headers={"X-Api-Key": CRED}, max_retries=0)
    c2.messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "direct-ant-xkey"}])
    rec = direct_fake.matching("direct-ant-xkey")[-1]
    assert rec.headers["x-api-key"] == CRED and "authorization" not in rec.headers
    assert c.messages.count_tokens(model="claude-3-5-haiku-latest", messages=[{"role": "user", "content": "x"}]).input_tokens == 12


def test_anthropic_stream(direct_fake):
    c = ant(direct_fake)
    with c.messages.stream(model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": "direct-ant-s"}]) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from the fake stream model=claude-3-5-haiku-latest"
    assert final.stop_reason == "end_turn" and final.usage.output_tokens == 6
    raw_types = [
        e.type
        for e in c.messages.create(
            model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": "x"}], stream=True
        )
    ]
    assert raw_types[0] == "message_start" and raw_types[-1] == "message_stop"


def test_anthropic_error_echoes_key(direct_fake):
    with pytest.raises(anthropic.AuthenticationError) as ei:
        ant(direct_fake).messages.create(model="claude-x", max_tokens=5, messages=[{"role": "user", "content": "ECHO_KEY"}])
    assert CRED in str(ei.value)


def gem(fake, version=None):
    return genai.Client(api_key=CRED, http_options=genai_types.HttpOptions(base_url=fake.url, api_version=version))


@pytest.mark.parametrize("version", [None, "v1beta"])
def test_gemini_generate_and_stream(direct_fake, version):
    c = gem(direct_fake, version)
    r = c.models.generate_content(model="gemini-2.0-flash", contents=f"direct-gem-{version}")
    assert r.text == "fake-gemini reply model=gemini-2.0-flash"
    rec = direct_fake.matching(f"direct-gem-{version}")[-1]
    assert rec.route == "gemini.generate"
    assert rec.headers["x-goog-api-key"] == CRED
    text = "".join(ch.text or "" for ch in c.models.generate_content_stream(model="gemini-2.0-flash", contents=f"direct-gs-{version}"))
    assert text == "Hello from the fake stream model=gemini-2.0-flash"
    rec = direct_fake.matching(f"direct-gs-{version}")[-1]
    assert rec.route == "gemini.stream" and rec.query.get("alt") == ["sse"]


def test_gemini_list_models(direct_fake):
    c = gem(direct_fake, "v1beta")  # keep a reference: a dropped genai.Client closes its transport
    names = [m.name for m in c.models.list()]
    assert "models/gemini-2.0-flash" in names


def test_gemini_error_echoes_key(direct_fake):
    with pytest.raises(genai_errors.ClientError) as ei:
        c = gem(direct_fake)
        c.models.generate_content(model="gemini-2.0-flash", contents="ECHO_KEY")
    assert CRED in str(ei.value)
