"""Metering through the official SDKs: usage read from every provider's answers,
whole and streamed; OpenAI chat streams asked for usage without the client seeing
the extra chunk; `keyward usage` and the admin API report what the fake said."""

from __future__ import annotations

import json
import time

from conftest import marker, raw_request

# The fake's usage figures (fake_provider.py) and the shipped prices, in
# pico-dollars per token.
PRICES = {
    "gpt-4o-mini": (150_000, 600_000),
    "claude-3-5-haiku-latest": (800_000, 4_000_000),
    "gemini-2.0-flash": (100_000, 400_000),
    "text-embedding-3-small": (20_000, 0),
}


def totals(gateway, by: str, key_id: str | None = None, want_requests: int = 0):
    """`keyward usage --by BY --format json`, waiting for the batch writer."""
    deadline = time.monotonic() + 10
    while True:
        rows = json.loads(gateway.cli("usage", "--by", by, "--since", "1h", "--format", "json").stdout)
        if key_id is None:
            return rows
        mine = [r for r in rows if r["group"] == key_id]
        if (mine and mine[0]["requests"] >= want_requests) or time.monotonic() > deadline:
            return mine


def test_usage_and_spend_match_what_the_provider_reported(gateway, fake):
    k = gateway.create_key("metered", env="prod", models="*")
    oa = gateway.openai(k["key"])
    mk = marker()
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    assert r.usage.prompt_tokens == 11

    # A stream that did not ask for usage: the gateway asks, and hides the answer.
    mk = marker()
    chunks = list(oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}], stream=True))
    assert all(c.usage is None for c in chunks), "the client got a usage chunk it did not ask for"
    assert all(c.choices for c in chunks), "an empty-choices chunk reached the client"
    rec = fake.wait_for(mk)[0]
    assert rec.json["stream_options"] == {"include_usage": True}

    # A stream that asked for usage gets it, as from the provider.
    chunks = list(
        oa.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}], stream=True,
            stream_options={"include_usage": True},
        )
    )
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6

    with gateway.anthropic(k["key"]).messages.stream(
        model="claude-3-5-haiku-latest", max_tokens=64, messages=[{"role": "user", "content": marker()}]
    ) as s:
        assert s.get_final_message().usage.output_tokens == 6
    text = "".join(c.text or "" for c in gateway.genai(k["key"], "v1beta").models.generate_content_stream(
        model="gemini-2.0-flash", contents=marker()))
    assert text.startswith("Hello")
    oa.embeddings.create(model="text-embedding-3-small", input=marker())

    mine = totals(gateway, "key", k["id"], want_requests=6)
    assert len(mine) == 1, mine
    t = mine[0]
    assert (t["requests"], t["input_tokens"], t["output_tokens"]) == (6, 11 * 3 + 12 + 6 + 4, 7 + 6 + 6 + 6 + 7 + 0), t
    expected = (
        33 * PRICES["gpt-4o-mini"][0] + 19 * PRICES["gpt-4o-mini"][1]
        + 12 * PRICES["claude-3-5-haiku-latest"][0] + 6 * PRICES["claude-3-5-haiku-latest"][1]
        + 6 * PRICES["gemini-2.0-flash"][0] + 7 * PRICES["gemini-2.0-flash"][1]
        + 4 * PRICES["text-embedding-3-small"][0]
    )
    assert t["cost_pico"] == expected, t
    assert t["unpriced"] == 0 and t["incomplete"] == 0, t

    # The same through the admin API, by model.
    admin = json.loads(gateway.cli("admin", "create", "--name", "usage-reader", "--json").stdout)
    gateway.traffic_secrets.append(admin["key"])
    status, _, body = raw_request(
        f"{gateway.url}/admin/v1/usage?by=model&since=1h", headers={"Authorization": f"Bearer {admin['key']}"}
    )
    assert status == 200, body
    by_model = {r["group"]: r for r in json.loads(body)}
    assert by_model["claude-3-5-haiku-latest"]["output_tokens"] >= 6
    status, _, body = raw_request(
        f"{gateway.url}/admin/v1/usage?by=colour", headers={"Authorization": f"Bearer {admin['key']}"}
    )
    assert status == 400 and b"by" in body

    gateway.cli("keys", "update", k["id"], "--owner", "team-metered")
    owners = {r["group"]: r for r in totals(gateway, "owner")}
    assert owners["team-metered"]["requests"] == 6, owners
    csv = gateway.cli("usage", "--by", "model", "--since", "1h", "--format", "csv").stdout.splitlines()
    assert csv[0].startswith("group,requests,input_tokens")
    assert any(line.startswith("gemini-2.0-flash,") for line in csv)


def test_prices_lists_the_shipped_table(gateway):
    rows = json.loads(gateway.cli("prices", "--json").stdout)
    assert len(rows) >= 100
    assert {"openai", "anthropic", "google", "mistral", "deepseek", "xai", "groq"} <= {r["provider"] for r in rows}
