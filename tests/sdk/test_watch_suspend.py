"""The suspend policy end to end: a key's usual hours come from the usage records
already in the store (a restart forgets nothing); a burst far above them raises a
request spike, and under `on_anomaly = "suspend"` the key is suspended at once,
with the alert as its reason, until `keys resume`."""

from __future__ import annotations

import json
import sqlite3
import time

from conftest import make_gateway, marker, raw_request


# Columns named: the table grows (subject and owner came later).
USAGE_INSERT = (
    "INSERT INTO usage_records (at_ms, request_id, key_id, environment, provider, model, endpoint, status, "
    "input_tokens, output_tokens, cached_input_tokens, cache_write_tokens, reasoning_tokens, cost_pico, complete) "
    "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
)


def test_a_request_spike_suspends_the_key_under_the_suspend_policy(keyward_bin, fake, tmp_path):
    gw = make_gateway(
        keyward_bin, fake, tmp_path,
        extra_config='\n[watch]\nwarmup = "1h"\non_anomaly = "suspend"\n',
    )
    k = gw.create_key("habitual", env="prod", models="*")
    # Ten requests an hour for the last twelve hours, as the server recorded them.
    hour_ms = 3_600_000
    this_hour = int(time.time() * 1000) // hour_ms * hour_ms
    db = sqlite3.connect(gw.db)
    rows = [
        (this_hour - h * hour_ms + 60_000 + i * 1000, f"req_seed_{h}_{i}", k["id"], "prod", "openai", "gpt-4o-mini",
         "chat.completions", 200, 11, 7, 0, 0, 0, 5_850_000, 1)
        for h in range(1, 13) for i in range(10)
    ]
    db.executemany(USAGE_INSERT, rows)
    db.commit()
    db.close()
    gw.start()
    try:
        body = lambda: json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker()}]}).encode()
        hdrs = {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"}
        statuses = [raw_request(f"{gw.url}/v1/chat/completions", "POST", body(), hdrs)[0] for _ in range(60)]
        # 50 is the spike (4 × a usual 10 is under the floor of 50): served up to
        # it, refused soon after.
        assert statuses[:49] == [200] * 49, statuses
        deadline = time.monotonic() + 5
        while raw_request(f"{gw.url}/v1/chat/completions", "POST", body(), hdrs)[0] != 401:
            assert time.monotonic() < deadline, "the key was not suspended"
            time.sleep(0.1)
        listed = gw.cli("keys", "list").stdout
        row = next(line for line in listed.splitlines() if line.startswith(k["id"]))
        assert "suspended" in row, listed
        alerts = json.loads(gw.cli("alerts", "list", "--json").stdout)
        spike = next(a for a in alerts if a["kind"] == "request_spike")
        assert spike["key_id"] == k["id"] and spike["alert"]["suspended"] is True, spike
        assert spike["alert"]["baseline"]["median_per_active_hour"] == 10, spike
        assert spike["alert"]["baseline"]["metric"] == "requests", spike
        audit = gw.cli("audit", "search", "--since", "1h").stdout
        assert "keys.suspend" in audit and "keyward-watch" in audit, audit
        # Resumed by hand, it works again.
        gw.cli("keys", "resume", k["id"])
        deadline = time.monotonic() + 5
        while raw_request(f"{gw.url}/v1/chat/completions", "POST", body(), hdrs)[0] != 200:
            assert time.monotonic() < deadline, "the key stayed suspended after resume"
            time.sleep(0.1)
    finally:
        gw.stop()


def seed_habits(gw, key_id: str):
    """Ten requests an hour for the last twelve hours, as the server recorded them."""
    hour_ms = 3_600_000
    this_hour = int(time.time() * 1000) // hour_ms * hour_ms
    db = sqlite3.connect(gw.db)
    rows = [
        (this_hour - h * hour_ms + 60_000 + i * 1000, f"req_seed_{key_id}_{h}_{i}", key_id, "prod", "openai",
         "gpt-4o-mini", "chat.completions", 200, 11, 7, 0, 0, 0, 5_850_000, 1)
        for h in range(1, 13) for i in range(10)
    ]
    db.executemany(USAGE_INSERT, rows)
    db.commit()
    db.close()


def test_a_keys_own_policy_overrides_the_servers(keyward_bin, fake, tmp_path):
    # The server only alerts; one key is set to be suspended on an anomaly.
    gw = make_gateway(keyward_bin, fake, tmp_path, extra_config='\n[watch]\nwarmup = "1h"\n')
    strict = gw.create_key("strict", env="prod", models="*")
    lenient = gw.create_key("lenient", env="prod", models="*")
    gw.cli("keys", "policy", strict["id"], "--on-anomaly", "suspend")
    listed = json.loads(gw.cli("keys", "list", "--json").stdout)
    assert next(k for k in listed if k["id"] == strict["id"])["on_anomaly"] == "suspend", listed
    seed_habits(gw, strict["id"])
    seed_habits(gw, lenient["id"])
    gw.start()
    try:
        def call(k):
            body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker()}]}).encode()
            return raw_request(f"{gw.url}/v1/chat/completions", "POST", body,
                               {"Authorization": f"Bearer {k['key']}", "Content-Type": "application/json"})[0]

        for _ in range(55):
            call(strict)
            assert call(lenient) == 200
        deadline = time.monotonic() + 5
        while call(strict) != 401:
            assert time.monotonic() < deadline, "the strict key was not suspended"
            time.sleep(0.1)
        assert call(lenient) == 200, "the server's policy only alerts"
        alerts = json.loads(gw.cli("alerts", "list", "--json").stdout)
        spikes = {a["key_id"]: a["alert"]["suspended"] for a in alerts if a["kind"] == "request_spike"}
        assert spikes == {strict["id"]: True, lenient["id"]: False}, spikes
        audit = gw.cli("audit", "search", "--since", "1h").stdout
        assert "keys.policy" in audit, audit
        # Back to the server's policy.
        gw.cli("keys", "policy", strict["id"], "--on-anomaly", "default")
        listed = json.loads(gw.cli("keys", "list", "--json").stdout)
        assert next(k for k in listed if k["id"] == strict["id"])["on_anomaly"] is None, listed
        # The admin API sets it the same way, and refuses what is not a policy.
        admin = json.loads(gw.cli("admin", "create", "--name", "policy", "--json").stdout)["key"]
        gw.traffic_secrets.append(admin)
        auth = {"Authorization": f"Bearer {admin}", "Content-Type": "application/json"}
        url = f"{gw.url}/admin/v1/keys/{lenient['id']}/policy"
        status, _, body = raw_request(url, "POST", json.dumps({"on_anomaly": "suspend"}).encode(), auth)
        assert status == 200, body
        listed = json.loads(gw.cli("keys", "list", "--json").stdout)
        assert next(k for k in listed if k["id"] == lenient["id"])["on_anomaly"] == "suspend", listed
        status, _, body = raw_request(url, "POST", json.dumps({"on_anomaly": "maybe"}).encode(), auth)
        assert status == 400 and b"alert or suspend" in body, body
    finally:
        gw.stop()
