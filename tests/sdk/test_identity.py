"""Identity: end users' tokens from trusted OIDC issuers on API calls (official
SDKs, per-user limits and budgets, CORS for browser apps, the example page in
headless Chromium), every kind of defective token refused and audited, the
issuer's key set rotated, flooded with unknown `kid`s and down; and CI tokens
(GitHub-shaped, Kubernetes-shaped) exchanged for short-lived keys at
POST /v1/token and with `keyward token exchange`."""

from __future__ import annotations

import base64
import functools
import http.server
import json
import os
import secrets
import shutil
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import quote, urlencode

import pytest

from conftest import REPO, free_port, make_gateway, marker, raw_request
from oidc_issuer import Issuer, hs256_with, tamper, unsigned

EXCHANGE = "urn:ietf:params:oauth:grant-type:token-exchange"
JWT_TYPE = "urn:ietf:params:oauth:token-type:jwt"


@pytest.fixture(scope="module")
def idp():
    app, github, dead = Issuer(), Issuer(), Issuer()
    dead.down = True
    yield {"app": app, "github": github, "dead": dead}
    for i in (app, github, dead):
        i.close()


@pytest.fixture(scope="module")
def page_origin():
    return f"http://127.0.0.1:{free_port()}"


@pytest.fixture(scope="module")
def idgw(keyward_bin, fake, tmp_path_factory, idp, page_origin):
    d = tmp_path_factory.mktemp("identity")
    k8s = Issuer(algs=("ES256",))
    k8s.close()  # only its keys are used: the key set is a file
    (d / "k8s-jwks.json").write_text(json.dumps(k8s.jwks()))
    app, github, dead = idp["app"], idp["github"], idp["dead"]
    extra = f"""
[[identity.issuers]]
name = "app"
issuer = "{app.url}"
audience = ["keyward-app"]
jwks_url = "{app.url}/jwks.json"
clock_skew = "30s"
allowed_origins = ["{page_origin}"]

[[identity.issuers.rules]]
claims = {{ plan = "pro" }}
environment = "prod"
models = ["gpt-4o-mini", "claude-*", "gemini-*"]
rpm = 2

[[identity.issuers.rules]]
claims = {{ plan = ["free", "trial"] }}
environment = "prod"
models = ["gpt-4o-mini"]
owner = "free-users"
daily_budget = 0.00003

[[identity.issuers.rules]]
claims = {{ plan = "browser" }}
environment = "prod"
models = ["gpt-4o-mini"]

[[identity.issuers]]
name = "svc"
issuer = "https://svc.example"
audience = ["keyward-svc"]
hs256_secret = "svc-hmac"
algorithms = ["HS256"]
allowed_origins = ["https://other.example"]

[[identity.issuers.rules]]
environment = "prod"
models = ["gpt-4o-mini"]

[[identity.issuers]]
name = "dead"
issuer = "{dead.url}"
audience = ["keyward-app"]
jwks_url = "{dead.url}/jwks.json"

[[identity.issuers.rules]]
environment = "prod"
models = ["*"]

[[identity.issuers]]
name = "github"
issuer = "{github.url}"
audience = ["keyward"]
jwks_url = "{github.url}/jwks.json"
use = "exchange"

[[identity.issuers.rules]]
claims = {{ repository = "acme/app", ref = "refs/heads/main", environment = "production" }}
environment = "prod"
models = ["gpt-4o-mini"]
ttl = "5m"
daily_budget = 1.0

[[identity.issuers]]
name = "k8s"
issuer = "https://kubernetes.default.svc.cluster.local"
audience = ["keyward"]
jwks_file = "{d / 'k8s-jwks.json'}"
algorithms = ["ES256"]
use = "exchange"

[[identity.issuers.rules]]
claims = {{ "kubernetes.io/namespace" = "ci", "kubernetes.io/serviceaccount/name" = "builder" }}
environment = "dev"
models = ["gpt-4o-mini"]
ttl = "10m"
"""
    gw = make_gateway(keyward_bin, fake, d, extra)
    gw.svc_secret = secrets.token_urlsafe(32)
    gw.cli("vault", "put", "svc-hmac", input=gw.svc_secret + "\n")
    gw.k8s = k8s
    gw.start()
    yield gw
    gw.stop()


def chat(gw, token: str, content: str | None = None, model: str = "gpt-4o-mini", headers: dict | None = None):
    body = json.dumps({"model": model, "max_tokens": 10,
                       "messages": [{"role": "user", "content": content or marker()}]}).encode()
    return raw_request(f"{gw.url}/v1/chat/completions", "POST", body,
                       {"Authorization": f"Bearer {token}", "Content-Type": "application/json", **(headers or {})})


def audit_entries(gw, *args: str) -> list[dict]:
    out = gw.cli("audit", "search", "--since", "1h", "--json", *args).stdout
    return [json.loads(line) for line in out.splitlines() if line.strip()]


def wait_for(pred, what: str, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while True:
        got = pred()
        if got:
            return got
        if time.monotonic() > deadline:
            pytest.fail(f"timed out waiting for {what}")
        time.sleep(0.1)


def test_user_tokens_of_every_key_type_are_served_through_the_official_sdks(idgw, idp, fake):
    app = idp["app"]
    for alg in ("RS256", "ES256", "EdDSA"):
        user = f"sdk-{alg.lower()}-{secrets.token_hex(3)}"
        token = app.sign(app.claims(sub=user, plan="pro"), alg=alg)
        mk = marker()
        out = idgw.openai(token).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
        assert out.choices[0].message.content, alg
        rec = fake.wait_for(mk)[0]
        # The provider sees its own credential, never the user's token.
        assert token not in json.dumps(rec.headers)
        assert rec.headers.get("authorization") == f"Bearer {idgw.creds['openai-prod']}"
    # The Anthropic SDK sends it as x-api-key.
    token = app.sign(app.claims(sub="anthropic-user", plan="pro"), alg="ES256")
    msg = idgw.anthropic(token).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": marker()}])
    assert msg.content[0].text
    # And Google's as x-goog-api-key, streaming.
    token = app.sign(app.claims(sub="gemini-user", plan="pro"), alg="EdDSA")
    mk = marker()
    text = "".join(ch.text or "" for ch in idgw.genai(token).models.generate_content_stream(
        model="gemini-2.0-flash", contents=mk))
    assert text and token not in json.dumps(fake.wait_for(mk)[0].headers)
    # Per-user usage records: `issuer:subject`.
    rows = wait_for(lambda: [r for r in json.loads(idgw.cli("usage", "--by", "user", "--format", "json").stdout)
                             if r["group"] == "app:anthropic-user"], "the user's usage row")
    assert rows[0]["requests"] == 1
    assert "app:sdk-rs256-" in idgw.cli("usage", "--by", "user").stdout


def test_every_defective_token_is_refused_with_a_clear_error_and_audited(idgw, idp):
    app = idp["app"]
    now = int(time.time())
    good = app.claims(plan="pro")
    rsa = app.keys["RS256"]
    stranger = Issuer(algs=("RS256",))
    stranger.close()
    cases = {
        "expired": (app.sign(app.claims(plan="pro", exp=now - 120)), 401, "expired"),
        "not yet valid": (app.sign(app.claims(plan="pro", nbf=now + 600)), 401, "not valid yet"),
        "issued in the future": (app.sign(app.claims(plan="pro", iat=now + 600)), 401, "issued in the future"),
        "wrong audience": (app.sign(app.claims(plan="pro", aud="someone-else")), 401, "another audience"),
        "unknown issuer": (stranger.sign(stranger.claims(plan="pro")), 401, "does not trust"),
        "alg none": (unsigned(good), 401, "`none`"),
        "HS256 keyed with the public key": (hs256_with(rsa.public_pem(), good, kid=rsa.kid), 401, "`HS256`"),
        "bad signature": (tamper(app.sign(good)), 401, "signature is invalid"),
        "unknown kid": (app.sign(good, key=stranger.keys["RS256"]), 401, "does not publish"),
        "too large": (app.sign(app.claims(plan="pro", pad="x" * 20_000)), 401, "over 16384 bytes"),
        "no exp": (app.sign(app.claims(plan="pro", exp=None)), 401, "`exp`"),
        "no sub": (app.sign(app.claims(plan="pro", sub=None)), 401, "`sub`"),
        "no matching rule": (app.sign(app.claims(plan="enterprise")), 403, "No rule"),
        "exchange-only issuer": (idp["github"].sign(idp["github"].claims(aud="keyward")), 403, "POST /v1/token"),
    }
    for name, (token, status, says) in cases.items():
        got, _, body = chat(idgw, token)
        err = json.loads(body)["error"]
        assert got == status, (name, got, body)
        assert says in err["message"], (name, err)
        assert token not in body.decode(), name
    codes = ("token_expired", "token_not_yet_valid", "token_issued_in_future", "token_wrong_audience",
                 "token_unknown_issuer", "token_algorithm_not_allowed", "token_bad_signature",
                 "token_unknown_key", "token_too_large", "token_missing_claim", "token_no_rule", "token_wrong_use")

    def audited():
        entries = audit_entries(idgw, "--action", "request.refused")
        return entries if set(codes) <= {e["details"]["reason"] for e in entries} else None

    entries = wait_for(audited, "every refusal in the audit log")
    actors = {e["actor"] for e in entries if e["details"]["reason"].startswith("token_")}
    assert "issuer:app" in actors and "anonymous" in actors, actors
    # Tokens never reach the audit log or the server's log.
    everything = idgw.cli("audit", "export").stdout + idgw.log_text()
    for token, _, _ in cases.values():
        assert token not in everything
        signature = token.split(".")[2]
        assert not signature or signature[:40] not in everything


def test_rules_set_scope_and_each_user_has_own_limits(idgw, idp):
    app = idp["app"]
    alice = app.sign(app.claims(sub="alice", plan="pro"))
    bob = app.sign(app.claims(sub="bob", plan="pro"))
    assert [chat(idgw, alice)[0] for _ in range(2)] == [200, 200]
    status, headers, body = chat(idgw, alice)
    assert status == 429, body
    err = json.loads(body)["error"]
    assert "user `app:alice`" in err["message"] and "2 requests per minute" in err["message"], err
    assert int(headers["retry-after"]) >= 1
    # Bob is his own user: not limited by Alice's calls.
    assert chat(idgw, bob)[0] == 200
    # The rule's scope: free users may not use other models.
    free = app.sign(app.claims(sub="carol", plan="free"))
    status, _, body = chat(idgw, free, model="gpt-4o")
    assert status == 403 and b"gpt-4o" in body, body
    wait_for(lambda: [e for e in audit_entries(idgw, "--action", "request.refused")
                      if e["actor"] == "app:alice" and e["details"]["reason"] == "rate_limited"],
             "alice's refusal audited under her name")


def test_each_user_has_an_exact_daily_budget(idgw, idp):
    app = idp["app"]
    # $0.00003 a day per free user; each request reserves ~24 µ$ and costs
    # 5.85 µ$ (11 + 7 tokens of gpt-4o-mini): a few are served, then 429.
    import openai

    dave = idgw.openai(app.sign(app.claims(sub="dave", plan="free"))).with_options(max_retries=0)
    statuses, refusal = [], None
    for _ in range(10):
        try:
            dave.chat.completions.create(model="gpt-4o-mini", max_tokens=10,
                                         messages=[{"role": "user", "content": marker()}])
            statuses.append(200)
        except openai.RateLimitError as e:
            statuses.append(429)
            refusal = refusal or e
    assert 200 in statuses and 429 in statuses, statuses
    first_refusal = statuses.index(429)
    assert all(s == 429 for s in statuses[first_refusal:]), statuses
    err = refusal.body
    assert err["code"] == "insufficient_quota" and "user `app:dave`" in err["message"], err
    # Another user of the same rule has a budget of their own.
    erin = app.sign(app.claims(sub="erin", plan="trial"))
    assert chat(idgw, erin)[0] == 200
    rows = wait_for(lambda: [r for r in json.loads(idgw.cli("usage", "--by", "user", "--format", "json").stdout)
                             if r["group"] == "app:dave" and r["requests"] == statuses.count(200)], "dave's usage")
    assert 0 < rows[0]["cost_pico"] <= 30_000_000
    # Owners group the rule's users together.
    owners = json.loads(idgw.cli("usage", "--by", "owner", "--format", "json").stdout)
    assert any(r["group"] == "free-users" and r["requests"] >= 2 for r in owners), owners


def test_hs256_only_with_the_vault_secret_and_origins_per_issuer(idgw, idp, page_origin):
    claims = {"iss": "https://svc.example", "aud": "keyward-svc", "sub": "batch-job",
              "exp": int(time.time()) + 300}
    good = hs256_with(idgw.svc_secret.encode(), claims)
    assert chat(idgw, good)[0] == 200
    status, _, body = chat(idgw, hs256_with(b"not-the-secret", claims))
    assert status == 401 and b"signature is invalid" in body
    # A page on another issuer's origin may not use an `app` token ...
    app = idp["app"]
    token = app.sign(app.claims(sub="frank", plan="browser"))
    status, headers, body = chat(idgw, token, headers={"Origin": "https://other.example"})
    assert status == 403 and b"web origin" in body, body
    # ... but the answer is readable there (the origin is allowed for `svc`).
    assert headers["access-control-allow-origin"] == "https://other.example"
    status, headers, _ = chat(idgw, token, headers={"Origin": page_origin})
    assert status == 200 and headers["access-control-allow-origin"] == page_origin
    assert "access-control-allow-credentials" not in headers
    assert "x-keyward-request-id" in headers["access-control-expose-headers"]


def test_cors_preflight_names_allowed_origins_only(idgw, page_origin):
    def preflight(origin):
        return raw_request(f"{idgw.url}/v1/chat/completions", "OPTIONS", None, {
            "Origin": origin, "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "authorization, content-type, x-stainless-os",
        })

    status, headers, _ = preflight(page_origin)
    assert status == 204
    assert headers["access-control-allow-origin"] == page_origin
    assert "POST" in headers["access-control-allow-methods"]
    assert headers["access-control-allow-headers"] == "authorization, content-type, x-stainless-os"
    assert "access-control-allow-credentials" not in headers
    status, headers, _ = preflight("https://evil.example")
    assert status == 403 and "access-control-allow-origin" not in headers
    # A request from an origin no issuer lists gets no CORS headers at all.
    status, headers, _ = raw_request(f"{idgw.url}/v1/models", "GET", None, {"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in headers


def test_key_rotation_unknown_kid_floods_and_an_issuer_that_is_down(idgw, idp):
    app = idp["app"]
    old = app.keys["ES256"]
    assert chat(idgw, app.sign(app.claims(plan="browser"), alg="ES256"))[0] == 200
    # The issuer rotates: a token with the new kid makes the gateway fetch the set again.
    fetched = app.jwks_fetches
    app.rotate("ES256")
    time.sleep(10.5)  # past the refetch rate limit of the previous test's unknown kid
    assert chat(idgw, app.sign(app.claims(plan="browser"), alg="ES256"))[0] == 200
    assert app.jwks_fetches == fetched + 1
    # Tokens from the old key still verify (it is still published).
    assert chat(idgw, app.sign(app.claims(plan="browser"), key=old))[0] == 200
    # A flood of made-up kids costs the issuer at most one fetch per 10 s.
    stranger = Issuer(algs=("RS256",))
    stranger.close()
    fetched = app.jwks_fetches
    forged = app.sign(app.claims(plan="browser"), key=stranger.keys["RS256"])
    for _ in range(30):
        assert chat(idgw, forged)[0] == 401
    assert app.jwks_fetches - fetched <= 1
    # The issuer goes down: cached keys still verify; a key it never got to
    # publish is refused (fail closed).
    app.down = True
    try:
        assert chat(idgw, app.sign(app.claims(plan="browser"), alg="ES256"))[0] == 200
        unseen = app.rotate("EdDSA")
        status, _, body = chat(idgw, app.sign(app.claims(plan="browser"), key=unseen))
        assert status == 401 and b"does not publish" in body, body
    finally:
        app.down = False
    # A key the issuer withdraws stops verifying, even for a token already
    # accepted (and remembered) under it, once the set is fetched again.
    withdrawn = app.keys["RS256"]
    remembered = app.sign(app.claims(plan="browser"), key=withdrawn)
    assert chat(idgw, remembered)[0] == 200
    assert chat(idgw, remembered)[0] == 200
    app.published.remove(withdrawn)
    time.sleep(10.5)  # past the refetch rate limit
    assert chat(idgw, forged)[0] == 401  # an unknown kid: the set is fetched again
    status, _, body = chat(idgw, remembered)
    assert status == 401 and b"does not publish" in body, body
    # An issuer whose keys were never fetched refuses everything: 503, not 200.
    dead = idp["dead"]
    status, _, body = chat(idgw, dead.sign(dead.claims()))
    assert status == 503 and b"cannot be fetched" in body, body


def github_claims(gh, **over):
    now = int(time.time())
    c = {"iss": gh.url, "aud": "keyward", "iat": now, "nbf": now, "exp": now + 300,
         "sub": "repo:acme/app:environment:production", "repository": "acme/app",
         "repository_owner": "acme", "ref": "refs/heads/main", "environment": "production",
         "job_workflow_ref": "acme/app/.github/workflows/deploy.yml@refs/heads/main",
         "run_id": "1234567890", "actor": "octocat", "event_name": "push", "jti": secrets.token_hex(8)}
    c.update(over)
    return c


def exchange(gw, token: str, json_body: bool = False):
    fields = {"grant_type": EXCHANGE, "subject_token": token, "subject_token_type": JWT_TYPE}
    if json_body:
        return raw_request(f"{gw.url}/v1/token", "POST", json.dumps(fields).encode(),
                           {"Content-Type": "application/json"})
    return raw_request(f"{gw.url}/v1/token", "POST", urlencode(fields).encode(),
                       {"Content-Type": "application/x-www-form-urlencoded"})


def test_github_shaped_tokens_are_exchanged_for_short_lived_scoped_keys(idgw, idp):
    gh = idp["github"]
    status, headers, body = exchange(idgw, gh.sign(github_claims(gh)))
    assert status == 200, body
    out = json.loads(body)
    assert out["access_token"].startswith("kw_prod_") and out["token_type"] == "Bearer"
    assert out["issued_token_type"] == "urn:ietf:params:oauth:token-type:access_token"
    assert out["expires_in"] == 300 and headers["cache-control"] == "no-store"
    # The key works at once, within its scope, through the SDK.
    client = idgw.openai(out["access_token"])
    assert client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    assert chat(idgw, out["access_token"], model="gpt-4o")[0] == 403
    listed = json.loads(idgw.cli("keys", "list", "--json").stdout)
    mine = next(k for k in listed if k["id"] == out["key_id"])
    assert mine["name"] == "exchanged for github:repo:acme/app:environment:production"
    assert mine["expires_at"] - int(time.time()) <= 300
    assert mine["daily_budget_pico"] == 1_000_000_000_000
    # The audit log says which claims bound it; the OIDC token is not there.
    # The audit writer is a queue: the entry lands shortly after the response.
    entry = wait_for(lambda: next((e for e in audit_entries(idgw, "--action", "token.exchange")
                                   if e["target"] == out["key_id"]), None), "the token.exchange audit entry")
    assert entry["actor"] == "exchange:github:repo:acme/app:environment:production"
    assert entry["details"]["claims"] == {"repository": "acme/app", "ref": "refs/heads/main",
                                          "environment": "production"}
    # JSON bodies work too.
    assert exchange(idgw, gh.sign(github_claims(gh)), json_body=True)[0] == 200
    # Another branch, another repository, or an expired token get nothing.
    for over, status, error in [({"ref": "refs/heads/feature"}, 403, "access_denied"),
                                ({"repository": "mallory/app"}, 403, "access_denied"),
                                ({"exp": int(time.time()) - 3600}, 400, "invalid_request")]:
        got, _, body = exchange(idgw, gh.sign(github_claims(gh, **over)))
        assert (got, json.loads(body)["error"]) == (status, error), body
    # An end user's token is not for exchanging.
    app = idp["app"]
    got, _, body = exchange(idgw, app.sign(app.claims(plan="pro")))
    assert got == 403 and b"sent on API calls" in body
    got, _, body = raw_request(f"{idgw.url}/v1/token", "POST", b"grant_type=password", {
        "Content-Type": "application/x-www-form-urlencoded"})
    assert got == 400 and json.loads(body)["error"] == "unsupported_grant_type"


def test_keyward_token_exchange_in_github_actions_and_kubernetes(idgw, idp, tmp_path):
    gh = idp["github"]
    gh.github_subject_token = gh.sign(github_claims(gh))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_")}
    env |= {"ACTIONS_ID_TOKEN_REQUEST_URL": f"{gh.url}/github-token?api-version=2.0",
            "ACTIONS_ID_TOKEN_REQUEST_TOKEN": gh.github_job_token, "KEYWARD_URL": idgw.url}
    r = subprocess.run([str(idgw.bin), "token", "exchange"], env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    key = r.stdout.strip()
    assert key.startswith("kw_prod_") and r.stdout.count("\n") == 1
    assert gh.github_audiences[-1] == "keyward"
    assert chat(idgw, key)[0] == 200
    # Kubernetes: the projected service-account token from a file.
    k8s = idgw.k8s
    now = int(time.time())
    sa = {"iss": "https://kubernetes.default.svc.cluster.local", "aud": ["keyward"], "iat": now, "nbf": now,
          "exp": now + 600, "sub": "system:serviceaccount:ci:builder",
          "kubernetes.io": {"namespace": "ci", "serviceaccount": {"name": "builder", "uid": "0d5c"},
                            "pod": {"name": "builder-7c9", "uid": "1f2e"}}}
    path = tmp_path / "token"
    path.write_text(k8s.sign(sa, alg="ES256"))
    env = {k: v for k, v in os.environ.items() if not k.startswith("ACTIONS_")}
    r = subprocess.run([str(idgw.bin), "token", "exchange", "--url", idgw.url, "--token-file", str(path), "--json"],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert out["access_token"].startswith("kw_dev_") and out["expires_in"] == 600
    assert chat(idgw, out["access_token"])[0] == 200
    # Another namespace's service account is refused, with the gateway's reason.
    sa["kubernetes.io"]["namespace"] = "default"
    path.write_text(k8s.sign(sa, alg="ES256"))
    r = subprocess.run([str(idgw.bin), "token", "exchange", "--url", idgw.url, "--token-file", str(path)],
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and r.stdout == ""
    assert "access_denied" in r.stderr and "No rule" in r.stderr, r.stderr
    # No token anywhere: a clear error.
    r = subprocess.run([str(idgw.bin), "token", "exchange", "--url", idgw.url],
                       env={k: v for k, v in env.items() if k != "KEYWARD_OIDC_TOKEN"},
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "KEYWARD_OIDC_TOKEN" in r.stderr


class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *a):
        pass


def test_the_browser_example_calls_the_gateway_with_a_user_token(idgw, idp, page_origin, fake, tmp_path):
    chromium = shutil.which("chromium")
    assert chromium, "Debian's chromium is needed (scripts/test installs it)"
    port = int(page_origin.rsplit(":", 1)[1])
    handler = functools.partial(_Quiet, directory=str(REPO / "examples" / "browser"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", port), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        app = idp["app"]
        mk = marker("browser")

        def page(token):
            frag = urlencode({"gateway": idgw.url, "token": token, "prompt": mk, "run": "1"}, quote_via=quote)
            r = subprocess.run(
                [chromium, "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                 f"--user-data-dir={tmp_path / 'profile'}", "--virtual-time-budget=10000", "--dump-dom",
                 f"{page_origin}/index.html#{frag}"],
                capture_output=True, text=True, timeout=120)
            assert r.returncode == 0, r.stderr[-2000:]
            return r.stdout

        # ES256: the RS256 key was withdrawn by the rotation test.
        dom = page(app.sign(app.claims(sub="browser-user", plan="browser"), alg="ES256"))
        assert 'data-state="ok"' in dom, dom[-3000:]
        assert fake.wait_for(mk), "the call reached the provider"
        # An expired token: the page can read the gateway's refusal (CORS on errors too).
        dom = page(app.sign(app.claims(sub="browser-user", plan="browser", exp=int(time.time()) - 3600), alg="ES256"))
        assert 'data-state="error"' in dom and "401" in dom and "expired" in dom, dom[-3000:]
    finally:
        server.shutdown()
