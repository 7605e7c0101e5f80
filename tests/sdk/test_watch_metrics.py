"""Watching the gateway: Prometheus metrics on the admin listener (parsed with the
official Prometheus client's OpenMetrics parser), the admin API moved off the
client port, and JSON access logs that carry no secret."""

from __future__ import annotations

import json
import time

import openai

import pytest
from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import free_port, make_gateway, marker, raw_request
from test_redaction import github_token


@pytest.fixture(scope="module")
def watched(keyward_bin, fake, tmp_path_factory):
    admin_port = free_port()
    gw = make_gateway(
        keyward_bin, fake, tmp_path_factory.mktemp("watched"),
        extra_config=f'\n[admin]\nlisten = "127.0.0.1:{admin_port}"\n',
        env={"KEYWARD_LOG_FORMAT": "json", "KEYWARD_LOG": "info"},
    )
    gw.admin_url = f"http://127.0.0.1:{admin_port}"
    gw.start()
    yield gw
    gw.stop()


def scrape(gw) -> dict:
    """`/metrics`, parsed: {(metric sample name, frozenset(labels)): value}."""
    status, headers, body = raw_request(f"{gw.admin_url}/metrics")
    assert status == 200, body
    assert headers["content-type"].startswith("application/openmetrics-text"), headers
    text = body.decode()
    samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[(s.name, frozenset(s.labels.items()))] = s.value
    samples[("_text", frozenset())] = text
    return samples


def value(samples: dict, name: str, **labels) -> float:
    """The sum of the samples of `name` whose labels include `labels`."""
    want = set(labels.items())
    return sum(v for (n, ls), v in samples.items() if n == name and n != "_text" and want <= set(ls))


def test_metrics_count_requests_tokens_spend_refusals_and_secrets(watched, fake):
    k = watched.create_key("watched", env="prod", models="*")
    watched.cli("keys", "update", k["id"], "--rpm", "2")  # the third request is refused
    oa = watched.openai(k["key"])
    r = oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    assert r.usage.prompt_tokens == 11
    # A secret in the prompt is redacted (and counted by rule).
    secret = github_token()
    watched.traffic_secrets.append(secret)
    oa.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": f"{marker()} token {secret}"}])
    # A refusal by the rate limit.
    status, _, _ = raw_request(
        f"{watched.url}/v1/chat/completions", "POST",
        json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "x"}]}).encode(),
        {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"},
    )
    assert status == 429

    deadline = time.monotonic() + 5
    while True:
        m = scrape(watched)
        if value(m, "keyward_tokens_total", key_id=k["id"], kind="output") >= 14 or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    ok = dict(provider="openai", model="gpt-4o-mini", key_id=k["id"])
    assert value(m, "keyward_requests_total", status="200", **ok) == 2, m[("_text", frozenset())]
    assert value(m, "keyward_requests_total", status="429", key_id=k["id"]) == 1
    assert value(m, "keyward_tokens_total", kind="input", **ok) == 22
    assert value(m, "keyward_tokens_total", kind="output", **ok) == 14
    # 22 input and 14 output tokens at gpt-4o-mini's $0.15 and $0.60 per million.
    assert value(m, "keyward_spend_dollars_total", **ok) == pytest.approx((22 * 0.15 + 14 * 0.60) / 1e6)
    assert value(m, "keyward_limit_refusals_total", limit="requests", scope="key") == 1
    assert value(m, "keyward_secrets_found_total", direction="inbound", action="redact") >= 1
    assert value(m, "keyward_gateway_added_seconds_count", provider="openai") == 2
    assert value(m, "keyward_request_duration_seconds_count", provider="openai") == 3  # the 429 too
    assert value(m, "keyward_store_up") == 1
    assert value(m, "keyward_upstream_up", provider="openai") == 1
    # A provider answering 5xx shows as down until it answers again.
    k2 = watched.create_key("watched-upstream", env="prod", models="*")
    with pytest.raises(openai.InternalServerError):
        watched.openai(k2["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "FAIL_500"}])
    assert value(scrape(watched), "keyward_upstream_up", provider="openai") == 0
    assert value(scrape(watched), "keyward_upstream_errors_total", provider="openai", error="5xx") >= 1
    watched.openai(k2["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    m = scrape(watched)
    assert value(m, "keyward_upstream_up", provider="openai") == 1
    # Key ids only: no key, credential or traffic secret in any label or value.
    for s in watched.all_secrets():
        assert s not in m[("_text", frozenset())]


def test_the_admin_api_and_metrics_live_only_on_the_admin_listener(watched):
    admin = json.loads(watched.cli("admin", "create", "--name", "watcher", "--json").stdout)
    watched.traffic_secrets.append(admin["key"])
    auth = {"Authorization": f"Bearer {admin['key']}"}
    assert raw_request(f"{watched.admin_url}/admin/v1/keys", headers=auth)[0] == 200
    assert raw_request(f"{watched.url}/admin/v1/keys", headers=auth)[0] == 404
    assert raw_request(f"{watched.url}/metrics")[0] == 404
    status, _, body = raw_request(f"{watched.admin_url}/nothing-here")
    assert status == 404 and b"admin listener" in body


def test_json_logs_have_one_object_a_line_and_no_secrets(watched):
    k = watched.create_key("json-logs", env="prod", models="*")
    mk = marker()
    watched.openai(k["key"]).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    time.sleep(0.3)  # the log thread writes behind the request
    lines = [line for line in watched.log_path.read_text().splitlines() if line.strip()]
    objects = [json.loads(line) for line in lines]  # every line is JSON
    requests = [o for o in objects if o.get("message") == "request" and o.get("key_id") == k["id"]]
    assert requests, lines[-5:]
    assert requests[-1]["status"] == 200 and requests[-1]["model"] == "gpt-4o-mini", requests[-1]
    assert {"timestamp", "level", "request_id"} <= set(requests[-1]), requests[-1]
    text = "\n".join(lines)
    for s in watched.all_secrets():
        assert s not in text


def test_an_unknown_log_format_is_refused_with_the_choices(watched):
    import os
    import subprocess

    out = subprocess.run(
        [str(watched.bin), "serve", "--config", str(watched.config), "--listen", f"127.0.0.1:{free_port()}"],
        env={**os.environ, "KEYWARD_LOG_FORMAT": "yaml"}, capture_output=True, text=True, timeout=20,
    )
    assert out.returncode != 0 and "`json` or `text`" in out.stderr, out.stderr
