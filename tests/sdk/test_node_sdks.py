"""The official OpenAI and Anthropic Node SDKs through the gateway (tests/sdk/node,
installed by scripts/test with `npm ci`): streamed usage metered, the extra usage
chunk kept from a client that did not ask for it, and 429s that the SDKs back off
from and retry by themselves."""

from __future__ import annotations

import json
import os
import subprocess
import threading
from pathlib import Path

from conftest import marker
from test_identity import wait_for
from test_metering import PRICES, totals

NODE_DIR = Path(__file__).parent / "node"


def node(gateway, key: str, action: str, content: str, retries: int = 0) -> dict:
    """Runs one SDK call in Node and returns what the SDK saw."""
    assert (NODE_DIR / "node_modules" / "openai").is_dir(), "run `npm ci` in tests/sdk/node (scripts/test does)"
    env = {**os.environ, "KEYWARD_URL": gateway.url, "KEYWARD_KEY": key, "MAX_RETRIES": str(retries)}
    out = subprocess.run(
        ["node", str(NODE_DIR / "clients.mjs"), action, content],
        env=env, capture_output=True, text=True, timeout=60,
    )
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_node_sdks_stream_and_are_metered_exactly(gateway, fake):
    k = gateway.create_key("node-metered", env="prod", models="*")
    whole = node(gateway, k["key"], "openai-chat", marker())
    assert whole["ok"] and whole["usage"]["prompt_tokens"] == 11, whole

    # A stream that did not ask for usage: asked upstream, hidden from the SDK.
    mk = marker()
    seen = node(gateway, k["key"], "openai-stream", mk)
    assert seen["ok"] and seen["chunks"] > 0 and seen["text"].startswith("Hello"), seen
    assert seen["usageChunks"] == 0 and seen["emptyChoices"] == 0, seen
    assert fake.wait_for(mk)[0].json["stream_options"] == {"include_usage": True}

    asked = node(gateway, k["key"], "openai-stream-usage", marker())
    assert asked["usage"]["completion_tokens"] == 6, asked
    streamed = node(gateway, k["key"], "anthropic-stream", marker())
    assert streamed["usage"]["output_tokens"] == 6, streamed

    t = totals(gateway, "key", k["id"], want_requests=4)[0]
    assert (t["requests"], t["input_tokens"], t["output_tokens"]) == (4, 11 * 3 + 12, 7 + 6 + 6 + 6), t
    assert t["cost_pico"] == (
        33 * PRICES["gpt-4o-mini"][0] + 19 * PRICES["gpt-4o-mini"][1]
        + 12 * PRICES["claude-3-5-haiku-latest"][0] + 6 * PRICES["claude-3-5-haiku-latest"][1]
    ), t
    assert t["incomplete"] == 0, t


def test_node_sdks_back_off_and_retry_while_the_key_is_at_its_limit(gateway, fake):
    k = gateway.create_key("node-one-at-a-time", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--concurrency", "1")

    def refusals(path: str) -> int:
        """The key's requests to `path` refused at its limit, from the server's
        request log (the audit log groups repeated refusals into one entry)."""
        return sum(
            1 for line in gateway.log_text().splitlines()
            if " request " in line and f"path={path} status=429 key_id=\"{k['id']}\"" in line
        )

    def hold_the_slot(mk: str, held: threading.Event):
        stream = gateway.openai(k["key"]).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": mk}], stream=True
        )
        for i, _ in enumerate(stream):
            if i == 0:
                held.set()

    for sdk, action, error_class, path in [
        ("openai", "openai-chat", "RateLimitError", "/v1/chat/completions"),
        ("anthropic", "anthropic-message", "RateLimitError", "/v1/messages"),
    ]:
        # The slot stays taken until the test lets the holder's stream end.
        holding, held = marker(), threading.Event()
        release = fake.hold(holding)
        holder = threading.Thread(target=hold_the_slot, args=(holding, held))
        holder.start()
        try:
            assert held.wait(10)
            refused = node(gateway, k["key"], action, marker())
            assert not refused["ok"] and refused["status"] == 429, (sdk, refused)
            assert refused["errorClass"] == error_class and refused["retryAfter"] == "1", (sdk, refused)
            wait_for(lambda: refusals(path) == 1, "the refusal audited")
            # With retries the SDK backs off, comes back, and gets through once
            # the slot is free: it is freed only after a retried attempt was refused.
            mk, served = marker(), {}
            caller = threading.Thread(
                target=lambda: served.update(node(gateway, k["key"], action, mk, retries=5))
            )
            caller.start()
            wait_for(lambda: refusals(path) >= 2, "the SDK's first attempt refused")
            assert not fake.matching(mk), (sdk, "no attempt passed while the slot was taken")
        finally:
            release.set()
            holder.join(10)
        caller.join(60)
        assert served.get("ok") and served["text"], (sdk, served)
        assert len(fake.wait_for(mk)) == 1, sdk
