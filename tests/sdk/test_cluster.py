"""Three `keyward serve` replicas on one PostgreSQL database and their own
`redis-server`, driven with the official OpenAI SDK: limits and budgets exact
across replicas, changes visible everywhere when the command returns, jobs run
once, Redis and a replica killed and restarted mid-traffic."""

from __future__ import annotations

import json
import re
import secrets
import signal
import subprocess
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import openai
import pytest

from prometheus_client.openmetrics.parser import text_string_to_metric_families

from conftest import AZURE_API_VERSION, CONFIG_TEMPLATE, Gateway, free_port, marker, raw_request
from oidc_issuer import Issuer

PG_ADMIN = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-d", "postgres", "-v", "ON_ERROR_STOP=1", "-qc"]
# gpt-4o-mini: 11 input and 7 output tokens from the fake provider.
REAL_COST = 11 * 150_000 + 7 * 600_000


class RedisServer:
    """A redis-server of this module's own on a free port, keeping nothing on disk."""

    def __init__(self, d: Path):
        self.port = free_port()
        self.dir = d
        self.proc = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/"

    def start(self):
        self.proc = subprocess.Popen(
            ["redis-server", "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=self.dir,
        )
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            r = subprocess.run(["redis-cli", "-p", str(self.port), "ping"], capture_output=True, text=True)
            if r.stdout.strip() == "PONG":
                return
            time.sleep(0.05)
        pytest.fail(f"redis-server did not start on port {self.port}")

    def kill(self):
        self.proc.kill()
        self.proc.wait(5)


@pytest.fixture(scope="module")
def cluster(keyward_bin, fake, tmp_path_factory):
    d = tmp_path_factory.mktemp("cluster")
    db = f"keyward_cluster_{secrets.token_hex(4)}"
    r = subprocess.run([*PG_ADMIN, f"CREATE DATABASE {db}"], capture_output=True, text=True)
    if r.returncode != 0:
        pytest.fail(f"PostgreSQL must run on 127.0.0.1:5432 for the cluster tests (.ci/run starts it): {r.stderr}")
    redis = RedisServer(d)
    redis.start()
    text = CONFIG_TEMPLATE.format(db="unused", master=d / "master.key", fake=fake.url, azure_version=AZURE_API_VERSION)
    text = text.replace('url = "sqlite://unused"', f'url = "postgres://postgres@127.0.0.1:5432/{db}"')
    # Credential-age alerts: a job that must run on one replica only.
    text = text.replace(f'master_key_file = "{d / "master.key"}"', f'master_key_file = "{d / "master.key"}"\nmax_age = "1s"')
    text += f'\n[cluster]\nredis_url = "{redis.url}"\n'
    # Identity: a user issuer and a CI issuer, their keys in files (every replica
    # reads the same set).
    issuer = Issuer(algs=("ES256",))
    issuer.close()
    (d / "jwks.json").write_text(json.dumps(issuer.jwks()))
    text += f"""
[[identity.issuers]]
name = "app"
issuer = "{issuer.url}"
audience = ["keyward-app"]
jwks_file = "{d / 'jwks.json'}"
algorithms = ["ES256"]
[[identity.issuers.rules]]
environment = "prod"
models = ["gpt-4o-mini"]
rpm = 6

[[identity.issuers]]
name = "ci"
issuer = "https://ci.example"
audience = ["keyward"]
jwks_file = "{d / 'jwks.json'}"
algorithms = ["ES256"]
use = "exchange"
[[identity.issuers.rules]]
environment = "prod"
models = ["gpt-4o-mini"]
ttl = "5m"
"""
    replicas = []
    for i in range(3):
        rd = d / f"r{i}"
        rd.mkdir()
        cfg = rd / "keyward.toml"
        admin_port = free_port()
        cfg.write_text(text + f'\n[admin]\nlisten = "127.0.0.1:{admin_port}"\n')
        g = Gateway(bin=keyward_bin, dir=rd, config=cfg, db=rd / "unused.db",
                    log_path=rd / "serve.stderr.log", out_path=rd / "serve.stdout.log")
        g.admin_url = f"http://127.0.0.1:{admin_port}"
        replicas.append(g)
    first = replicas[0]
    first.cli("init")
    h = secrets.token_hex(8)
    creds = {"openai-prod": f"sk-fakeprov-openai-prod-{h}", "openai-dev": f"sk-fakeprov-openai-dev-{h}",
             "anthropic-key": f"sk-ant-fakeprov-anthropic-{h}", "gemini-key": f"AIzaFakeprovGemini{h}",
             "azure-key": f"fakeprov-azure-{h}", "groq-key": f"gsk_fakeprov_groq_{h}"}
    for name, value in creds.items():
        first.cli("vault", "put", name, input=value + "\n")
    for g in replicas:
        g.creds = creds
        g.start()
    yield {"replicas": replicas, "redis": redis, "db": db, "issuer": issuer}
    for g in replicas:
        g.stop()
        for c in g._clients:
            c.close()
    redis.kill()
    subprocess.run([*PG_ADMIN, f"DROP DATABASE IF EXISTS {db} WITH (FORCE)"], capture_output=True)


def chat(gw: Gateway, key: str, **extra):
    return gw.openai(key).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}], **extra
    )


def outcome(gw: Gateway, key: str, **extra) -> int:
    """The HTTP status the SDK saw for one chat call."""
    try:
        chat(gw, key, **extra)
        return 200
    except openai.APIStatusError as e:
        return e.status_code


def test_a_job_runs_on_one_replica_only(cluster):
    # Each credential is older than max_age (1 s): the overdue alert comes once,
    # from the replica holding the job's lease, not once per replica.
    first = cluster["replicas"][0]
    deadline = time.monotonic() + 20
    while True:
        alerts = [a for a in json.loads(first.cli("alerts", "list", "--json").stdout)
                  if a["kind"] == "credential_rotation_overdue"]
        names = {a["alert"]["credential"] for a in alerts}
        if len(names) == 6 or time.monotonic() > deadline:
            break
        time.sleep(0.2)
    assert len(names) == 6, alerts
    time.sleep(2)  # time for any other replica to alert too
    alerts = [a for a in json.loads(first.cli("alerts", "list", "--json").stdout)
              if a["kind"] == "credential_rotation_overdue"]
    per_credential = {}
    for a in alerts:
        per_credential[a["alert"]["credential"]] = per_credential.get(a["alert"]["credential"], 0) + 1
    assert set(per_credential.values()) == {1}, per_credential


def test_rate_limits_are_exact_across_replicas(cluster):
    replicas = cluster["replicas"]
    k = replicas[0].create_key("cluster-rpm", env="prod", models="*")
    replicas[0].cli("keys", "update", k["id"], "--rpm", "10")
    with ThreadPoolExecutor(30) as pool:
        statuses = list(pool.map(lambda i: outcome(replicas[i % 3], k["key"]), range(30)))
    assert statuses.count(200) == 10 and statuses.count(429) == 20, sorted(statuses)


def test_per_user_limits_are_exact_across_replicas_and_exchanged_keys_work_everywhere_at_once(cluster):
    replicas, issuer = cluster["replicas"], cluster["issuer"]
    token = issuer.sign(issuer.claims(sub="cluster-user"), alg="ES256")
    with ThreadPoolExecutor(18) as pool:
        statuses = list(pool.map(lambda i: outcome(replicas[i % 3], token), range(18)))
    assert statuses.count(200) == 6 and statuses.count(429) == 12, sorted(statuses)
    # A key exchanged on one replica is served by the others the moment it is returned.
    now = int(time.time())
    ci = issuer.sign({"iss": "https://ci.example", "aud": "keyward", "sub": "pipeline-7",
                      "iat": now, "exp": now + 300}, alg="ES256")
    from urllib.parse import urlencode
    status, _, body = raw_request(f"{replicas[0].url}/v1/token", "POST", urlencode({
        "grant_type": "urn:ietf:params:oauth:grant-type:token-exchange", "subject_token": ci,
        "subject_token_type": "urn:ietf:params:oauth:token-type:jwt"}).encode(),
        {"Content-Type": "application/x-www-form-urlencoded"})
    assert status == 200, body
    out = json.loads(body)
    assert out["servers_confirmed"] == 3
    assert [outcome(g, out["access_token"]) for g in replicas[1:]] == [200, 200]


def test_budgets_are_exact_across_replicas(cluster):
    replicas = cluster["replicas"]
    k = replicas[0].create_key("cluster-budget", env="prod", models="*")
    replicas[0].cli("keys", "update", k["id"], "--daily-budget", "0.0001")
    with ThreadPoolExecutor(100) as pool:
        statuses = list(pool.map(lambda i: outcome(replicas[i % 3], k["key"], max_tokens=10), range(100)))
    served = statuses.count(200)
    assert served + statuses.count(429) == 100, sorted(set(statuses))
    assert served >= 1 and statuses.count(429) >= 1, statuses
    assert served * REAL_COST <= 100_000_000
    # The usage every replica recorded: exactly the served requests, within budget.
    deadline = time.monotonic() + 10
    while True:
        rows = json.loads(replicas[1].cli("usage", "--by", "key", "--since", "1h", "--format", "json").stdout)
        mine = [r for r in rows if r["group"] == k["id"]]
        if (mine and mine[0]["requests"] == served) or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert mine and mine[0]["cost_pico"] == served * REAL_COST <= 100_000_000, mine


def test_revocation_suspension_and_rotation_apply_on_every_replica_when_the_command_returns(cluster):
    replicas = cluster["replicas"]
    first = replicas[0]
    k = first.create_key("cluster-changes", env="prod", models="*")
    assert [outcome(g, k["key"]) for g in replicas] == [200, 200, 200]

    first.cli("keys", "suspend", k["id"], "--reason", "cluster test")
    assert [outcome(g, k["key"]) for g in replicas] == [401, 401, 401]
    first.cli("keys", "resume", k["id"])
    assert [outcome(g, k["key"]) for g in replicas] == [200, 200, 200]

    rotated = json.loads(first.cli("keys", "rotate", k["id"], "--grace", "0s", "--json").stdout)
    first.keys["cluster-changes-new"] = rotated
    assert [outcome(g, rotated["key"]) for g in replicas] == [200, 200, 200]
    assert [outcome(g, k["key"]) for g in replicas] == [401, 401, 401]

    r = first.cli("keys", "revoke", rotated["id"])
    assert "applied by 3 running server(s)" in r.stderr, r.stderr
    assert [outcome(g, rotated["key"]) for g in replicas] == [401, 401, 401]

    # Every replica measured how long the changes took to reach it: well under a
    # second (pushed by NOTIFY, not found by the 200 ms poll alone).
    for g in replicas:
        status, _, body = raw_request(f"{g.admin_url}/metrics")
        assert status == 200
        samples = {s.name: s.value for f in text_string_to_metric_families(body.decode()) for s in f.samples
                   if s.name.startswith("keyward_change_apply_seconds")}
        assert samples["keyward_change_apply_seconds_count"] >= 5, samples
        assert samples["keyward_change_apply_seconds_sum"] / samples["keyward_change_apply_seconds_count"] < 0.5, samples


def test_a_console_session_opened_on_one_replica_works_on_the_others_and_ends_everywhere(cluster):
    """Behind a load balancer a browser's requests reach any replica: the session is
    in the store, and sign-out on one replica ends it on all."""
    from urllib.parse import urlencode

    a, b, c = cluster["replicas"]
    admin = json.loads(a.cli("admin", "create", "--name", "console-cluster", "--json").stdout)
    a.traffic_secrets.append(admin["key"])
    status, headers, _ = raw_request(a.admin_url + "/console/sign-in", "POST", urlencode({"admin_key": admin["key"]}).encode(),
                                     {"Content-Type": "application/x-www-form-urlencoded", "Origin": a.admin_url})
    assert status == 303, status
    cookie = headers["set-cookie"].split(";")[0]
    for g in (a, b, c):
        status, _, body = raw_request(g.admin_url + "/console/keys", headers={"Cookie": cookie})
        assert status == 200, (g.admin_url, status)
    # The CSRF token is the same on every replica (derived from the session and the shared key).
    tokens = {re.search(rb'name="csrf" value="([0-9a-f]{64})"', raw_request(g.admin_url + "/console/keys",
              headers={"Cookie": cookie})[2]).group(1) for g in (a, b, c)}
    assert len(tokens) == 1
    status, _, _ = raw_request(b.admin_url + "/console/sign-out", "POST", urlencode({"csrf": tokens.pop().decode()}).encode(),
                               {"Cookie": cookie, "Content-Type": "application/x-www-form-urlencoded", "Origin": b.admin_url})
    assert status == 303
    for g in (a, b, c):
        assert raw_request(g.admin_url + "/console/keys", headers={"Cookie": cookie})[0] == 303


def test_redis_down_fails_closed_and_service_resumes_by_itself(cluster):
    replicas, redis = cluster["replicas"], cluster["redis"]
    limited = replicas[0].create_key("cluster-redis-limited", env="prod", models="*")
    replicas[0].cli("keys", "update", limited["id"], "--rpm", "1000")
    free = replicas[0].create_key("cluster-redis-free", env="prod", models="*")
    assert outcome(replicas[0], limited["key"]) == 200

    redis.kill()
    try:
        for g in replicas:
            with pytest.raises(openai.APIStatusError) as e:
                chat(g, limited["key"])
            assert e.value.status_code == 503
            err = e.value.body if isinstance(e.value.body, dict) else json.loads(e.value.response.text)["error"]
            assert "counters unreachable" in json.dumps(err), err
            # A key with no limit and no budget needs no counter: still served.
            assert outcome(g, free["key"]) == 200
        assert "cannot reach the limit counters" in replicas[0].log_text()
    finally:
        redis.start()
    deadline = time.monotonic() + 15
    while outcome(replicas[1], limited["key"]) != 200:
        assert time.monotonic() < deadline, "service did not resume after Redis came back"
        time.sleep(0.2)
    assert [outcome(g, limited["key"]) for g in replicas] == [200, 200, 200]


def test_a_replica_killed_and_restarted_serves_the_changes_it_missed(cluster):
    replicas = cluster["replicas"]
    first, victim = replicas[0], replicas[2]
    k = first.create_key("cluster-restart", env="prod", models="*")
    assert outcome(victim, k["key"]) == 200

    victim.proc.send_signal(signal.SIGKILL)
    victim.proc.wait(5)
    # While it is down the others serve; a revocation waits only for live ones.
    assert outcome(replicas[1], k["key"]) == 200
    time.sleep(3.5)  # its heartbeat goes stale
    r = first.cli("keys", "revoke", k["id"])
    assert "applied by 2 running server(s)" in r.stderr, r.stderr
    victim.stop()
    victim.start()
    assert outcome(victim, k["key"]) == 401

    # A graceful restart loses no usage record: everything served is recorded.
    k2 = first.create_key("cluster-restart-usage", env="prod", models="*")
    for _ in range(5):
        assert outcome(victim, k2["key"]) == 200
    victim.stop()
    victim.start()
    rows = json.loads(first.cli("usage", "--by", "key", "--since", "1h", "--format", "json").stdout)
    mine = [r for r in rows if r["group"] == k2["id"]]
    assert mine and mine[0]["requests"] == 5, mine
