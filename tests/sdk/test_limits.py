"""Rate and concurrency limits through the official SDKs: exact counts under
parallel load, 429s in each provider's format with the headers its SDK reads,
SDKs that back off and retry by themselves, and limit changes that apply at once."""

from __future__ import annotations

import json
import threading
import time
from concurrent.futures import ThreadPoolExecutor

from conftest import marker, raw_request


def chat_body(content: str) -> bytes:
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": content}]}).encode()


def test_requests_per_minute_are_exact_under_parallel_load(gateway):
    k = gateway.create_key("rpm-five", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--rpm", "5")

    def call(_):
        return raw_request(
            f"{gateway.url}/v1/chat/completions", "POST", chat_body(marker()),
            {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"},
        )

    with ThreadPoolExecutor(20) as pool:
        results = list(pool.map(call, range(20)))
    statuses = sorted(r[0] for r in results)
    assert statuses.count(200) == 5 and statuses.count(429) == 15, statuses
    status, headers, body = next(r for r in results if r[0] == 429)
    assert headers["x-ratelimit-limit-requests"] == "5"
    assert headers["x-ratelimit-remaining-requests"] == "0"
    assert 1 <= int(headers["retry-after"]) <= 60
    err = json.loads(body)["error"]
    assert err["code"] == "rate_limit_exceeded" and "5 requests per minute" in err["message"]
    listed = gateway.cli("keys", "list").stdout
    assert "5 rpm" in next(line for line in listed.splitlines() if line.startswith(k["id"]))

    # Removed with `keys update`: the next request is served at once.
    gateway.cli("keys", "update", k["id"], "--rpm", "none")
    assert call(0)[0] == 200


def test_anthropic_clients_get_anthropic_rate_limit_errors(gateway):
    k = gateway.create_key("rpm-one-anthropic", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--rpm", "1")
    body = json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 8, "messages": [{"role": "user", "content": "x"}]}).encode()
    hdrs = {"x-api-key": k["key"], "anthropic-version": "2023-06-01", "content-type": "application/json"}
    assert raw_request(f"{gateway.url}/v1/messages", "POST", body, hdrs)[0] == 200
    status, headers, out = raw_request(f"{gateway.url}/v1/messages", "POST", body, hdrs)
    assert status == 429
    assert json.loads(out)["error"]["type"] == "rate_limit_error"
    assert headers["anthropic-ratelimit-requests-limit"] == "1"
    assert headers["anthropic-ratelimit-requests-reset"].endswith("Z")
    assert "retry-after" in headers


def test_sdks_back_off_and_retry_on_a_concurrency_limit(gateway, fake):
    k = gateway.create_key("one-at-a-time", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--concurrency", "1")
    holder = gateway.openai(k["key"])
    held = threading.Event()

    def hold_the_slot():
        stream = holder.chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{marker()} SLOW_STREAM"}], stream=True
        )
        for i, _ in enumerate(stream):
            if i == 0:
                held.set()

    t = threading.Thread(target=hold_the_slot)
    t.start()
    assert held.wait(10)
    # The slot is taken: without retries the SDK sees the 429 itself ...
    import openai

    try:
        gateway.openai(k["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a second request in flight was served")
    except openai.RateLimitError as e:
        assert e.response.headers["retry-after"] == "1"
    # ... and with them it waits and gets through once the stream ends.
    mk = marker()
    started = time.monotonic()
    r = gateway.openai(k["key"]).with_options(max_retries=4).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": mk}]
    )
    assert r.choices[0].message.content
    assert time.monotonic() - started >= 0.5, "the SDK did not have to wait"
    assert len(fake.wait_for(mk)) == 1
    t.join(10)

    # The Anthropic SDK does the same.
    gateway.cli("keys", "update", k["id"], "--concurrency", "none", "--rpm", "1")
    ant = gateway.anthropic(k["key"])  # max_retries=0: the 429 reaches the test
    ant.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": "x"}])
    import anthropic

    try:
        ant.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": "x"}])
        raise AssertionError("a second request within the minute was served")
    except anthropic.RateLimitError as e:
        assert int(e.response.headers["retry-after"]) >= 1


def test_owner_and_environment_limits_are_refused_in_config_when_malformed(gateway, tmp_path):
    bad = tmp_path / "bad.toml"
    bad.write_text('[[limits]]\nowner = "a"\nenvironment = "prod"\nrpm = 5\n')
    import subprocess

    out = subprocess.run([str(gateway.bin), "config", "check", "--config", str(bad)], capture_output=True, text=True)
    assert out.returncode == 2 and "either `owner` or `environment`" in out.stderr, out.stderr


def test_a_budget_is_never_overspent_by_parallel_requests(gateway, fake):
    # $0.0001 a day; each request reserves ~24 µ$ (its bytes and max_tokens at
    # gpt-4o-mini prices) and really costs 5.85 µ$ (11 + 7 tokens).
    k = gateway.create_key("budget-tiny", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--daily-budget", "0.0001")
    real_cost = 11 * 150_000 + 7 * 600_000

    def call(_):
        body = json.dumps({"model": "gpt-4o-mini", "max_tokens": 10, "messages": [{"role": "user", "content": marker()}]}).encode()
        return raw_request(
            f"{gateway.url}/v1/chat/completions", "POST", body,
            {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"},
        )

    with ThreadPoolExecutor(100) as pool:
        results = list(pool.map(call, range(100)))
    served = sum(1 for r in results if r[0] == 200)
    refused = [r for r in results if r[0] == 429]
    assert served + len(refused) == 100, sorted({r[0] for r in results})
    assert 1 <= served and served * real_cost <= 100_000_000, served
    assert refused, "the budget refused nothing"
    err = json.loads(refused[0][2])["error"]
    assert err["code"] == "insufficient_quota" and "daily spend budget" in err["message"], err
    # Spend as recorded: exactly the served requests, within the budget.
    deadline = time.monotonic() + 10
    while True:
        rows = json.loads(gateway.cli("usage", "--by", "key", "--since", "1h", "--format", "json").stdout)
        mine = [r for r in rows if r["group"] == k["id"]]
        if (mine and mine[0]["requests"] == served) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine[0]["cost_pico"] == served * real_cost <= 100_000_000, mine
    assert "$0.000100/day" in next(l for l in gateway.cli("keys", "list").stdout.splitlines() if l.startswith(k["id"]))
    # The refusals raised one alert: the budget is exhausted for the day.
    deadline = time.monotonic() + 5
    while True:
        alerts = [a for a in json.loads(gateway.cli("alerts", "list", "--json").stdout) if a["key_id"] == k["id"]]
        if alerts or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    exhausted = [a for a in alerts if a["kind"] == "budget_exhausted"]
    assert len(exhausted) == 1, alerts
    assert exhausted[0]["alert"]["baseline"] == {"budget_pico": 100_000_000, "period": "daily"}, exhausted


def test_a_budgeted_request_without_an_output_bound_gets_one_and_unpriced_models_are_refused(gateway, fake):
    k = gateway.create_key("budget-bound", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--daily-budget", "1")
    mk = marker()
    status, headers, _ = raw_request(
        f"{gateway.url}/v1/chat/completions", "POST", chat_body(mk),
        {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"},
    )
    assert status == 200
    bound = int(headers["x-keyward-max-tokens"])
    assert 1 <= bound <= 32_768
    assert fake.wait_for(mk)[0].json["max_completion_tokens"] == bound
    body = json.dumps({"model": "gpt-4o-mystery", "messages": [{"role": "user", "content": "x"}]}).encode()
    status, _, out = raw_request(
        f"{gateway.url}/v1/chat/completions", "POST", body,
        {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"},
    )
    assert status == 403 and b"No known price" in out, out


def test_a_stream_that_reports_no_usage_is_charged_its_worst_case(gateway):
    # The key name is escaped, so nothing that scans the bytes for `"stream"` sees
    # it; the stream then carries no usage. It must not cost nothing.
    k = gateway.create_key("budget-no-usage", env="prod", models="*")
    gateway.cli("keys", "update", k["id"], "--daily-budget", "0.00005")
    body = (
        '{"model": "gpt-4o-mini", "max_tokens": 20, "\\u0073tream": true, '
        '"messages": [{"role": "user", "content": "' + marker() + '"}]}'
    ).encode()
    hdrs = {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"}
    status, _, out = raw_request(f"{gateway.url}/v1/chat/completions", "POST", body, hdrs)
    assert status == 200 and b"data:" in out
    status, _, out = raw_request(f"{gateway.url}/v1/chat/completions", "POST", body, hdrs)
    assert status == 429 and b"insufficient_quota" in out, (status, out[:300])


def test_a_request_blocked_for_a_secret_costs_no_budget(gateway):
    from test_redaction import github_token

    k = gateway.create_key("budget-block", env="prod", models="*", redact_inbound="block")
    gateway.cli("keys", "update", k["id"], "--daily-budget", "0.00005")
    secret = github_token()
    gateway.traffic_secrets.append(secret)
    hdrs = {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"}

    def body(content):
        return json.dumps({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": content}]}).encode()

    # Each worst case is about two thirds of the budget: had the blocked request
    # reserved and kept it, the clean one after it would be refused.
    assert raw_request(f"{gateway.url}/v1/chat/completions", "POST", body(f"key {secret} {marker()}"), hdrs)[0] == 400
    assert raw_request(f"{gateway.url}/v1/chat/completions", "POST", body(marker()), hdrs)[0] == 200
