"""Client-key authentication and scope through the official SDKs: unknown,
expired and revoked keys (401), models / providers / endpoints / CIDRs /
environments outside the key (403), each in the provider's own error format so
the SDK raises its usual exception, with a request id and no secret in it."""

import json
import time

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from conftest import REQUEST_ID_RE, assert_no_secret_in, marker, raw_request


def check_gateway_error(gateway, exc, *, extra=()):
    """A gateway-made refusal: mentions a request id, leaks nothing."""
    texts = [str(exc)]
    resp = getattr(exc, "response", None)
    if resp is not None:
        try:
            texts.append(resp.text)
        except Exception:
            pass
        texts += [f"{k}: {v}" for k, v in resp.headers.items()]
    body = getattr(exc, "body", None) or getattr(exc, "details", None)
    if body is not None:
        texts.append(json.dumps(body, default=str))
    blob = "\n".join(texts)
    assert_no_secret_in(blob, gateway.all_secrets() + list(extra), "gateway error")
    assert REQUEST_ID_RE.search(str(exc)), f"error message has no request id: {exc}"


def nothing_upstream(fake, mk):
    time.sleep(0.05)
    assert fake.matching(mk) == [], "a refused request reached the provider"


# ---------------------------------------------------------------------------
# authentication (401)


def test_no_key_is_401(gateway, fake):
    mk = marker()
    body = json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": mk}]}).encode()
    status, _, out = raw_request(f"{gateway.url}/v1/chat/completions", "POST", body, {"Content-Type": "application/json"})
    assert status == 401, out
    assert json.loads(out)["error"].get("message"), out
    nothing_upstream(fake, mk)


@pytest.mark.parametrize("bogus", ["kw_prod_" + "A" * 40, "sk-not-a-keyward-key", "kw_prod_"])
def test_unknown_key_openai(gateway, fake, bogus):
    mk = marker()
    with pytest.raises(openai.AuthenticationError) as ei:
        gateway.openai(bogus).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    check_gateway_error(gateway, ei.value, extra=[bogus] if len(bogus) > 10 else [])
    nothing_upstream(fake, mk)


def test_unknown_key_anthropic(gateway, fake):
    mk = marker()
    bogus = "kw_prod_" + "B" * 40
    with pytest.raises(anthropic.AuthenticationError) as ei:
        gateway.anthropic(bogus).messages.create(model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": mk}])
    check_gateway_error(gateway, ei.value, extra=[bogus])
    assert ei.value.body.get("type") == "error" and ei.value.body["error"].get("type") == "authentication_error", ei.value.body
    nothing_upstream(fake, mk)


def test_unknown_key_gemini(gateway, fake):
    mk = marker()
    bogus = "kw_prod_" + "C" * 40
    c = gateway.genai(bogus, "v1beta")
    with pytest.raises(genai_errors.ClientError) as ei:
        c.models.generate_content(model="gemini-2.0-flash", contents=mk)
    assert ei.value.code == 401, ei.value
    check_gateway_error(gateway, ei.value, extra=[bogus])
    nothing_upstream(fake, mk)


def test_expired_key_is_401(gateway, fake):
    k = gateway.create_key("expires-soon", env="prod", models="*", expires="3s")
    expires_at = time.monotonic() + 3.0
    gateway.wait_usable(k["key"])
    c = gateway.openai(k["key"])
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    assert r.choices[0].message.content.endswith("gpt-4o-mini")  # works before it expires
    time.sleep(max(0.0, expires_at - time.monotonic()) + 0.3)
    mk = marker()
    with pytest.raises(openai.AuthenticationError) as ei:
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    check_gateway_error(gateway, ei.value)
    nothing_upstream(fake, mk)


def test_revoked_key_fails_within_one_second(gateway, fake):
    k = gateway.create_key("to-revoke", env="prod", models="*")
    gateway.wait_usable(k["key"])
    c = gateway.openai(k["key"])
    r = c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    assert r.choices[0].message.content.endswith("model=gpt-4o-mini")  # works right before

    gateway.cli("keys", "revoke", k["id"], "--reason", "sdk-test")
    revoked_at = time.monotonic()
    last = None
    while True:
        try:
            c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
            last = "succeeded"
        except openai.AuthenticationError as e:
            check_gateway_error(gateway, e)
            break
        if time.monotonic() - revoked_at > 1.0:
            pytest.fail(f"revoked key still accepted {time.monotonic() - revoked_at:.2f}s after `keys revoke` returned (last: {last})")
        time.sleep(0.05)
    # and the list shows it revoked, with the reason
    listed = {o["id"]: o for o in json.loads(gateway.cli("keys", "list", "--json").stdout)}
    assert listed[k["id"]]["revoked_at"], listed[k["id"]]
    assert listed[k["id"]]["revoke_reason"] == "sdk-test"


# ---------------------------------------------------------------------------
# scope (403)


def test_model_outside_globs_openai(gateway, fake):
    mk = marker()
    with pytest.raises(openai.PermissionDeniedError) as ei:
        gateway.openai(gateway.key("gpt-mini-only")).chat.completions.create(model="gpt-4o", messages=[{"role": "user", "content": mk}])
    check_gateway_error(gateway, ei.value)
    nothing_upstream(fake, mk)


def test_model_outside_globs_anthropic(gateway, fake):
    mk = marker()
    with pytest.raises(anthropic.PermissionDeniedError) as ei:
        gateway.anthropic(gateway.key("gpt-mini-only")).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": mk}]
        )
    check_gateway_error(gateway, ei.value)
    assert ei.value.body["error"]["type"] == "permission_error", ei.value.body
    nothing_upstream(fake, mk)


def test_model_outside_globs_gemini(gateway, fake):
    mk = marker()
    c = gateway.genai(gateway.key("globs"))
    with pytest.raises(genai_errors.ClientError) as ei:
        c.models.generate_content(model="gemini-2.0-flash", contents=mk)
    assert ei.value.code == 403, ei.value
    check_gateway_error(gateway, ei.value)
    nothing_upstream(fake, mk)


def test_glob_key_allows_both_families(gateway, fake):
    c = gateway.anthropic(gateway.key("globs"))
    m = c.messages.create(model="claude-opus-4", max_tokens=5, messages=[{"role": "user", "content": marker()}])
    assert m.content[0].text.endswith("model=claude-opus-4")


def test_model_not_served_by_any_provider(gateway, fake):
    """Allowed by the key's '*', but no provider lists it: refused, nothing upstream."""
    mk = marker()
    with pytest.raises(openai.APIStatusError) as ei:
        gateway.openai(gateway.key("all-prod")).chat.completions.create(model="mistral-large", messages=[{"role": "user", "content": mk}])
    assert 400 <= ei.value.status_code < 500, ei.value
    check_gateway_error(gateway, ei.value)
    nothing_upstream(fake, mk)


def test_provider_not_allowed(gateway, fake):
    k = gateway.key("openai-provider-only")
    r = gateway.openai(k).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    assert r.choices[0].message.content.endswith("gpt-4o-mini")
    mk = marker()
    with pytest.raises(anthropic.PermissionDeniedError) as ei:
        gateway.anthropic(k).messages.create(model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": mk}])
    check_gateway_error(gateway, ei.value)
    mk2 = marker()
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai(k).chat.completions.create(model="llama-3.1-8b-instant", messages=[{"role": "user", "content": mk2}])
    nothing_upstream(fake, mk)
    nothing_upstream(fake, mk2)


def test_endpoint_not_allowed(gateway, fake):
    k = gateway.key("chat-endpoint-only")
    r = gateway.openai(k).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    assert r.choices[0].message.content.endswith("gpt-4o-mini")
    mk = marker()
    with pytest.raises(openai.PermissionDeniedError) as ei:
        gateway.openai(k).embeddings.create(model="text-embedding-3-small", input=mk)
    check_gateway_error(gateway, ei.value)
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai(k).responses.create(model="gpt-4o-mini", input=mk)
    with pytest.raises(anthropic.PermissionDeniedError):
        gateway.anthropic(k).messages.create(model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": mk}])
    nothing_upstream(fake, mk)


def test_cidr_allows_loopback(gateway, fake):
    r = gateway.openai(gateway.key("cidr-local")).chat.completions.create(
        model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}]
    )
    assert r.choices[0].message.content.endswith("gpt-4o-mini")


def test_cidr_refuses_other_source(gateway, fake):
    mk = marker()
    with pytest.raises(openai.PermissionDeniedError) as ei:
        gateway.openai(gateway.key("cidr-elsewhere")).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": mk}]
        )
    check_gateway_error(gateway, ei.value)
    nothing_upstream(fake, mk)


def test_x_forwarded_for_does_not_bypass_cidr(gateway, fake):
    mk = marker()
    with pytest.raises(openai.PermissionDeniedError):
        gateway.openai(gateway.key("cidr-elsewhere"), default_headers={"X-Forwarded-For": "192.0.2.7", "X-Real-IP": "192.0.2.7"}).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": mk}]
        )
    nothing_upstream(fake, mk)


# ---------------------------------------------------------------------------
# environments


def test_dev_key_gets_dev_credential(gateway, fake):
    mk = marker()
    gateway.openai(gateway.key("all-dev")).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    rec = fake.wait_for(mk)[0]
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-dev']}"
    assert gateway.creds["openai-prod"] not in rec.as_text()


def test_prod_key_gets_prod_credential(gateway, fake):
    mk = marker()
    gateway.openai(gateway.key("all-prod")).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    rec = fake.wait_for(mk)[0]
    assert rec.headers.get("authorization") == f"Bearer {gateway.creds['openai-prod']}"
    assert gateway.creds["openai-dev"] not in rec.as_text()


def test_environment_without_credential_is_403(gateway, fake):
    mk = marker()
    with pytest.raises(openai.PermissionDeniedError) as ei:
        gateway.openai(gateway.key("all-staging")).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
    check_gateway_error(gateway, ei.value)
    nothing_upstream(fake, mk)
    # a provider whose credential is shared by every environment still works for it
    m = gateway.anthropic(gateway.key("all-staging")).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": marker()}]
    )
    assert m.content[0].text.endswith("claude-3-5-haiku-latest")


def test_dev_key_on_azure_and_gemini_uses_shared_credential(gateway, fake):
    mk = marker()
    c = gateway.genai(gateway.key("all-dev"))
    c.models.generate_content(model="gemini-2.0-flash", contents=mk)
    assert fake.wait_for(mk)[0].headers.get("x-goog-api-key") == gateway.creds["gemini-key"]


def test_azure_api_key_header_auth_refusal(gateway, fake):
    """AzureOpenAI sends the Keyward key as `api-key`; scope applies there too."""
    mk = marker()
    with pytest.raises(openai.PermissionDeniedError) as ei:
        gateway.azure(gateway.key("gpt-mini-only")).chat.completions.create(
            model="azure-gpt-4o", messages=[{"role": "user", "content": mk}]
        )
    check_gateway_error(gateway, ei.value)
    with pytest.raises(openai.AuthenticationError):
        gateway.azure("kw_prod_" + "D" * 40).chat.completions.create(model="azure-gpt-4o", messages=[{"role": "user", "content": mk}])
    nothing_upstream(fake, mk)


def test_behind_a_trusted_proxy_the_forwarded_client_address_is_checked(keyward_bin, fake, tmp_path):
    from conftest import make_gateway

    gw = make_gateway(keyward_bin, fake, tmp_path)
    text = gw.config.read_text().replace('listen = "127.0.0.1:0"\n', 'listen = "127.0.0.1:0"\ntrusted_proxies = ["127.0.0.1/32"]\n', 1)
    gw.config.write_text(text)
    k = gw.create_key("behind-proxy", env="prod", models="*", cidrs="192.0.2.0/24")
    gw.start()
    try:
        def call(xff):
            headers = {"X-Forwarded-For": xff} if xff else {}
            return gw.openai(k["key"], default_headers=headers).chat.completions.create(
                model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}]
            )

        # The proxy (loopback, trusted) says the client is in the key's network.
        assert call("192.0.2.7").choices[0].message.content.endswith("gpt-4o-mini")
        # Without the header the client is the proxy itself: refused.
        with pytest.raises(openai.PermissionDeniedError):
            call(None)
        # A client-forged first entry does not help: the hop the proxy saw counts.
        with pytest.raises(openai.PermissionDeniedError):
            call("192.0.2.7, 198.51.100.1")
    finally:
        gw.stop()
