"""Alerts end to end: a key used from a new network (requests from other loopback
sources) and a burst of failed logins raise alerts; a real webhook receiver on
loopback gets them signed, after the gateway retried through its failures; an
alert it refuses is kept as undeliverable and listed by `keyward alerts list` and
`GET /admin/v1/alerts`."""

from __future__ import annotations

import hashlib
import hmac
import http.client
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from conftest import free_port, make_gateway, marker, raw_request


class Receiver:
    """A webhook receiver: answers 503 to the first `fail_first` deliveries, 400
    to alerts of the kinds in `refuse`, 200 otherwise; keeps what it got."""

    def __init__(self, fail_first: int, refuse: set[str]):
        self.got: list[tuple[dict, bytes]] = []
        self.answers: list[int] = []
        self.fail_first = fail_first
        self.refuse = refuse
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):
                body = self.rfile.read(int(self.headers["content-length"]))
                receiver.got.append(({k.lower(): v for k, v in self.headers.items()}, body))
                if len(receiver.got) <= receiver.fail_first:
                    code = 503
                elif json.loads(body).get("kind") in receiver.refuse:
                    code = 400
                else:
                    code = 200
                receiver.answers.append(code)
                self.send_response(code)
                self.send_header("content-length", "0")
                self.end_headers()

            def log_message(self, *a):
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}/hook"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def delivered(self, kind: str) -> list[tuple[dict, bytes]]:
        return [
            (h, b) for (h, b), code in zip(self.got, self.answers)
            if code == 200 and json.loads(b).get("kind") == kind
        ]


@pytest.fixture(scope="module")
def alerting(keyward_bin, fake, tmp_path_factory):
    receiver = Receiver(fail_first=2, refuse={"failed_auth_burst"})
    admin_port = free_port()
    gw = make_gateway(
        keyward_bin, fake, tmp_path_factory.mktemp("alerting"),
        extra_config=(
            f'\n[admin]\nlisten = "127.0.0.1:{admin_port}"\n'
            f'\n[alerts]\nwebhook_url = "{receiver.url}"\nsigning_secret = "alerts-signing"\n'
            '\n[watch]\nwarmup = "0s"\nfailed_auth_burst = 5\n'
        ),
    )
    gw.signing = secrets.token_hex(24)
    gw.creds["alerts-signing"] = gw.signing
    gw.cli("vault", "put", "alerts-signing", input=gw.signing + "\n")
    gw.admin_url = f"http://127.0.0.1:{admin_port}"
    gw.receiver = receiver
    gw.start()
    yield gw
    gw.stop()
    receiver.server.shutdown()


def chat_from(gw, source: str, key: str) -> int:
    """One chat request sent from the loopback address `source`."""
    conn = http.client.HTTPConnection("127.0.0.1", gw.port, timeout=10, source_address=(source, 0))
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": marker()}]})
    conn.request("POST", "/v1/chat/completions", body, {"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
    status = conn.getresponse().status
    conn.close()
    return status


def alerts_listed(gw, *args: str) -> list[dict]:
    return json.loads(gw.cli("alerts", "list", "--json", *args).stdout)


def wait_for(predicate, timeout: float = 20.0):
    deadline = time.monotonic() + timeout
    while not (result := predicate()):
        if time.monotonic() > deadline:
            return result
        time.sleep(0.1)
    return result


def test_a_key_used_from_a_new_network_alerts_signed_after_retries(alerting):
    k = alerting.create_key("roaming", env="prod", models="*")
    assert chat_from(alerting, "127.0.1.5", k["key"]) == 200  # its first network: the baseline
    assert chat_from(alerting, "127.0.1.77", k["key"]) == 200  # the same /24: nothing
    assert chat_from(alerting, "127.0.2.9", k["key"]) == 200  # a new /24
    assert chat_from(alerting, "127.0.3.9", k["key"]) == 200  # another, within the dedupe window

    got = wait_for(lambda: alerting.receiver.delivered("new_source_network"))
    assert len(got) == 1, alerting.receiver.got
    headers, body = got[0]
    alert = json.loads(body)
    assert alert["key_id"] == k["id"] and alert["seen"]["network"] == "127.0.2.0/24", alert
    assert alert["baseline"]["networks"] == ["127.0.1.0/24"], alert
    assert k["id"] in alert["action"]
    # The signature a receiver checks: HMAC-SHA-256 over "timestamp.body".
    ts = int(headers["keyward-timestamp"])
    assert abs(time.time() - ts) < 60
    want = hmac.new(alerting.signing.encode(), f"{ts}.".encode() + body, hashlib.sha256).hexdigest()
    assert hmac.compare_digest(headers["keyward-signature"], f"v1={want}"), headers
    # Two 503s first: the third attempt got through.
    assert alerting.receiver.answers[:3] == [503, 503, 200], alerting.receiver.answers

    listed = wait_for(lambda: [a for a in alerts_listed(alerting) if a["kind"] == "new_source_network" and a["delivery"] == "delivered"])
    assert len(listed) == 1 and listed[0]["attempts"] == 3, alerts_listed(alerting)
    # The fourth network was within the dedupe window: no second alert.
    assert len([a for a in alerts_listed(alerting) if a["kind"] == "new_source_network"]) == 1
    for s in alerting.all_secrets():
        assert s.encode() not in body


def test_a_failed_login_burst_alerts_and_an_undeliverable_alert_is_kept(alerting):
    for _ in range(6):
        status, _, _ = raw_request(
            f"{alerting.url}/v1/models", headers={"Authorization": "Bearer kw_prod_notakeyatall0000000000000000"}
        )
        assert status == 401
    undelivered = wait_for(lambda: alerts_listed(alerting, "--undelivered"))
    assert [a["kind"] for a in undelivered] == ["failed_auth_burst"], undelivered
    a = undelivered[0]
    assert a["delivery"] == "undeliverable" and a["attempts"] == 1 and "400" in a["last_error"], a
    assert a["alert"]["seen"]["failures"] == 5

    admin = json.loads(alerting.cli("admin", "create", "--name", "alerts-reader", "--json").stdout)
    alerting.traffic_secrets.append(admin["key"])
    status, _, body = raw_request(
        f"{alerting.admin_url}/admin/v1/alerts?undelivered=true", headers={"Authorization": f"Bearer {admin['key']}"}
    )
    assert status == 200 and [x["kind"] for x in json.loads(body)] == ["failed_auth_burst"], body
    table = alerting.cli("alerts", "list").stdout
    assert "failed_auth_burst" in table and "undeliverable" in table and "new_source_network" in table
    status, _, body = raw_request(f"{alerting.admin_url}/metrics")
    assert b'keyward_alerts_total{kind="failed_auth_burst",severity="high"} 1' in body, body


def test_a_key_used_from_a_new_country_alerts_with_the_countries_it_knows(keyward_bin, fake, tmp_path):
    """A small GeoIP database built here maps two loopback networks to countries."""
    from mmdb_writer import MMDBWriter
    from netaddr import IPSet

    db = MMDBWriter(ip_version=4, database_type="GeoIP2-Country")
    db.insert_network(IPSet(["127.0.1.0/24", "127.0.3.0/24"]), {"country": {"iso_code": "DE"}})
    db.insert_network(IPSet(["127.0.2.0/24"]), {"country": {"iso_code": "FR"}})
    db.to_db_file(str(tmp_path / "countries.mmdb"))
    (tmp_path / "gw").mkdir()
    gw = make_gateway(
        keyward_bin, fake, tmp_path / "gw",
        extra_config=f'\n[watch]\nwarmup = "0s"\ngeoip_db = "{tmp_path / "countries.mmdb"}"\n',
    )
    gw.start()
    try:
        k = gw.create_key("travelling", env="prod", models="*")
        assert chat_from(gw, "127.0.1.5", k["key"]) == 200  # Germany: the baseline
        assert chat_from(gw, "127.0.3.5", k["key"]) == 200  # a new network, still Germany
        assert chat_from(gw, "127.0.2.5", k["key"]) == 200  # France
        got = wait_for(lambda: [a for a in alerts_listed(gw) if a["kind"] == "new_source_country"])
        assert len(got) == 1, alerts_listed(gw)
        a = got[0]["alert"]
        assert a["seen"]["country"] == "FR" and a["baseline"]["countries"] == ["DE"], a
        assert a["severity"] == "high" and a["key_id"] == k["id"]
        networks = [x for x in alerts_listed(gw) if x["kind"] == "new_source_network"]
        assert [x["alert"]["seen"]["country"] for x in networks] == ["DE"], networks
    finally:
        gw.stop()


def test_a_missing_geoip_database_stops_the_server_with_the_fix(keyward_bin, fake, tmp_path):
    import subprocess

    gw = make_gateway(keyward_bin, fake, tmp_path, extra_config='\n[watch]\ngeoip_db = "nowhere.mmdb"\n')
    out = subprocess.run([str(gw.bin), "serve", "--config", str(gw.config), "--listen", f"127.0.0.1:{free_port()}"],
                         capture_output=True, text=True, timeout=30)
    assert out.returncode != 0 and "geoip_db" in out.stderr and ".mmdb" in out.stderr, out.stderr


def test_a_new_client_family_and_a_new_model_alert_with_what_the_key_used_before(alerting):
    k = alerting.create_key("habitual-client", env="prod", models="*")
    client = alerting.openai(k["key"])
    for _ in range(3):  # the baseline: the OpenAI SDK, one model (its first use alerts nothing)
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    body = json.dumps({"model": "gpt-4o", "messages": [{"role": "user", "content": marker()}]}).encode()
    status, _, _ = raw_request(f"{alerting.url}/v1/chat/completions", "POST", body, {
        "Authorization": f"Bearer {k['key']}", "Content-Type": "application/json", "User-Agent": "curl/8.5.0"})
    assert status == 200

    def mine(kind):
        return [a for a in alerts_listed(alerting) if a["kind"] == kind and a["alert"].get("key_id") == k["id"]]

    agent = wait_for(lambda: mine("new_user_agent"))
    assert len(agent) == 1, alerts_listed(alerting)
    assert agent[0]["alert"]["seen"]["user_agent"] == "curl"
    assert agent[0]["alert"]["baseline"]["user_agents"] == ["OpenAI/Python"]
    model = wait_for(lambda: mine("new_model"))
    assert len(model) == 1 and model[0]["alert"]["baseline"]["models"] == ["gpt-4o-mini"], model
    assert model[0]["alert"]["seen"]["model"] == "gpt-4o"
