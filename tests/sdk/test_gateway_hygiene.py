"""Hygiene of `keyward serve`: provider errors reach the client scrubbed of the
credential, the upstream cannot be redirected by the request, internal-looking
paths are 404, oversized bodies are 413 and malformed JSON 400, each in the
provider's own error format."""

import json
import time

import anthropic
import openai
import pytest
from google.genai import errors as genai_errors

from conftest import REQUEST_ID_RE, assert_no_secret_in, marker, raw_request


def exc_blob(exc) -> str:
    parts = [str(exc), repr(exc)]
    resp = getattr(exc, "response", None)
    if resp is not None:
        try:
            parts.append(resp.text)
        except Exception:
            pass
        parts += [f"{k}: {v}" for k, v in resp.headers.items()]
    for attr in ("body", "details", "message"):
        v = getattr(exc, attr, None)
        if v is not None:
            parts.append(json.dumps(v, default=str))
    return "\n".join(parts)


# ---------------------------------------------------------------------------
# provider errors that echo the credential are scrubbed


def _assert_fake_echoed(fake, mk, cred):
    recs = fake.wait_for(mk)
    assert recs, "the ECHO_KEY request never reached the fake provider"
    assert cred in recs[0].as_text(), "the fake did not get the real credential, so the scrub test proves nothing"


def test_scrub_openai(gateway, fake):
    mk = marker()
    with pytest.raises(openai.APIStatusError) as ei:
        gateway.openai(gateway.key("all-prod")).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} ECHO_KEY"}]
        )
    _assert_fake_echoed(fake, mk, gateway.creds["openai-prod"])
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "scrubbed OpenAI provider error")


def test_scrub_openai_stream(gateway, fake):
    mk = marker()
    with pytest.raises(openai.APIStatusError) as ei:
        for _ in gateway.openai(gateway.key("all-dev")).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} ECHO_KEY"}], stream=True
        ):
            pass
    _assert_fake_echoed(fake, mk, gateway.creds["openai-dev"])
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "scrubbed OpenAI provider error (stream)")


def test_scrub_groq(gateway, fake):
    mk = marker()
    with pytest.raises(openai.APIStatusError) as ei:
        gateway.openai(gateway.key("all-prod")).chat.completions.create(
            model="llama-3.1-8b-instant", messages=[{"role": "user", "content": f"{mk} ECHO_KEY"}]
        )
    _assert_fake_echoed(fake, mk, gateway.creds["groq-key"])
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "scrubbed openai-compatible provider error")


def test_scrub_azure(gateway, fake):
    mk = marker()
    with pytest.raises(openai.APIStatusError) as ei:
        gateway.azure(gateway.key("all-prod")).chat.completions.create(
            model="azure-gpt-4o", messages=[{"role": "user", "content": f"{mk} ECHO_KEY"}]
        )
    _assert_fake_echoed(fake, mk, gateway.creds["azure-key"])
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "scrubbed Azure provider error")


def test_scrub_anthropic(gateway, fake):
    mk = marker()
    with pytest.raises(anthropic.APIStatusError) as ei:
        gateway.anthropic(gateway.key("all-prod")).messages.create(
            model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": f"{mk} ECHO_KEY"}]
        )
    _assert_fake_echoed(fake, mk, gateway.creds["anthropic-key"])
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "scrubbed Anthropic provider error")


def test_scrub_gemini(gateway, fake):
    mk = marker()
    c = gateway.genai(gateway.key("all-prod"))
    with pytest.raises(genai_errors.APIError) as ei:
        c.models.generate_content(model="gemini-2.0-flash", contents=f"{mk} ECHO_KEY")
    _assert_fake_echoed(fake, mk, gateway.creds["gemini-key"])
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "scrubbed Gemini provider error")


def test_provider_5xx_passes_through_as_error(gateway, fake):
    mk = marker()
    with pytest.raises(openai.APIStatusError) as ei:
        gateway.openai(gateway.key("all-prod")).chat.completions.create(
            model="gpt-4o-mini", messages=[{"role": "user", "content": f"{mk} FAIL_500"}]
        )
    assert ei.value.status_code >= 500, ei.value
    assert_no_secret_in(exc_blob(ei.value), gateway.all_secrets(), "provider 5xx error")


# ---------------------------------------------------------------------------
# the upstream cannot be redirected


def _chat_body(mk, **extra):
    return json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": mk}], **extra}).encode()


@pytest.mark.parametrize(
    "how",
    ["absolute-url", "host-header", "base_url-query", "forwarded-headers", "body-fields", "double-slash-path"],
)
def test_upstream_cannot_be_redirected(gateway, fake, decoy, how):
    mk = marker()
    evil = f"127.0.0.1:{decoy.port}"
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {gateway.key('all-prod')}"}
    target = None
    url = f"{gateway.url}/v1/chat/completions"
    body = _chat_body(mk)
    if how == "absolute-url":
        target = f"http://{evil}/v1/chat/completions"
    elif how == "host-header":
        headers["Host"] = evil
    elif how == "base_url-query":
        url += f"?base_url=http://{evil}/v1&api_base=http://{evil}/v1&upstream=http://{evil}"
    elif how == "forwarded-headers":
        headers.update({"X-Forwarded-Host": evil, "X-Forwarded-Proto": "http", "Forwarded": f"host={evil};proto=http",
                        "X-Original-URL": f"http://{evil}/v1/chat/completions", "X-Rewrite-URL": f"http://{evil}/"})
    elif how == "body-fields":
        body = _chat_body(mk, base_url=f"http://{evil}/v1", api_base=f"http://{evil}/v1", url=f"http://{evil}/")
    elif how == "double-slash-path":
        target = f"//{evil}/v1/chat/completions"
    status, _, out = raw_request(url, "POST", body, headers, target=target)
    time.sleep(0.1)
    assert decoy.snapshot() == [], f"{how}: the gateway sent a request to the decoy: {[r.raw_path for r in decoy.snapshot()]}"
    if status == 200:
        recs = fake.wait_for(mk)
        assert len(recs) == 1 and recs[0].route == "openai.chat.completions", (how, [r.raw_path for r in recs])
    else:
        assert 400 <= status < 500, (how, status, out)
    assert_no_secret_in(out.decode("utf-8", "replace"), gateway.all_secrets(), f"{how} response")


def test_gemini_model_name_cannot_escape_path(gateway, fake, decoy):
    mk = marker()
    evil = f"127.0.0.1:{decoy.port}"
    body = json.dumps({"contents": [{"role": "user", "parts": [{"text": mk}]}]}).encode()
    for model in [f"gemini-x@{evil}", "gemini-x%2F..%2F..%2Fv1%2Fmodels", f"gemini-x%40{evil}"]:
        status, _, out = raw_request(
            f"{gateway.url}/v1beta/models/{model}:generateContent", "POST", body,
            {"Content-Type": "application/json", "x-goog-api-key": gateway.key("all-prod")},
        )
        assert status < 500 or status == 502, (model, status, out)
    time.sleep(0.1)
    assert decoy.snapshot() == []
    for r in fake.matching(mk):
        assert r.path.startswith(("/v1beta/models/", "/v1/models/")), r.raw_path


# ---------------------------------------------------------------------------
# no internal endpoints


@pytest.mark.parametrize("path", ["/config", "/env", "/debug", "/debug/vars", "/debug/pprof/", "/admin", "/.env",
                                  "/vault", "/keys", "/api/keys", "/v1/config", "/server-info", "/status/config"])
def test_internal_paths_are_404(gateway, path):
    for headers in ({}, {"Authorization": f"Bearer {gateway.key('all-prod')}"}):
        status, _, out = raw_request(f"{gateway.url}{path}", "GET", headers=headers)
        assert status == 404, (path, headers.keys(), status, out[:300])
        assert_no_secret_in(out.decode("utf-8", "replace"), gateway.all_secrets(), f"GET {path}")


def test_health_endpoints(gateway):
    assert raw_request(f"{gateway.url}/healthz")[0] == 200
    assert raw_request(f"{gateway.url}/readyz")[0] == 200


# ---------------------------------------------------------------------------
# 413 and 400 in each provider's error format

BIG = 20 * 1024 * 1024


def _family_error(family: str, out: bytes, status: int):
    try:
        obj = json.loads(out)
    except ValueError:
        pytest.fail(f"{family} error body is not JSON: {out[:300]!r}")
    if family == "openai":
        assert isinstance(obj.get("error"), dict) and obj["error"].get("message"), obj
        msg = obj["error"]["message"]
    elif family == "anthropic":
        assert obj.get("type") == "error" and isinstance(obj.get("error"), dict), obj
        assert obj["error"].get("type") and obj["error"].get("message"), obj
        msg = obj["error"]["message"]
    else:
        assert isinstance(obj.get("error"), dict) and obj["error"].get("code") == status and obj["error"].get("message"), obj
        msg = obj["error"]["message"]
    assert REQUEST_ID_RE.search(msg), f"{family} error message has no request id: {msg}"
    return obj


FAMILIES = {
    "openai": ("/v1/chat/completions", lambda k: {"Authorization": f"Bearer {k}"},
               lambda mk, pad: json.dumps({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": mk + pad}]})),
    "anthropic": ("/v1/messages", lambda k: {"x-api-key": k, "anthropic-version": "2023-06-01"},
                  lambda mk, pad: json.dumps({"model": "claude-3-5-haiku-latest", "max_tokens": 5,
                                              "messages": [{"role": "user", "content": mk + pad}]})),
    "gemini": ("/v1beta/models/gemini-2.0-flash:generateContent", lambda k: {"x-goog-api-key": k},
               lambda mk, pad: json.dumps({"contents": [{"role": "user", "parts": [{"text": mk + pad}]}]})),
}


@pytest.mark.parametrize("family", list(FAMILIES))
def test_huge_body_is_413(gateway, fake, family):
    path, auth, make = FAMILIES[family]
    mk = marker()
    body = make(mk, "x" * BIG).encode()
    headers = {"Content-Type": "application/json", **auth(gateway.key("all-prod"))}
    status, _, out = raw_request(f"{gateway.url}{path}", "POST", body, headers, timeout=60)
    assert status == 413, (family, status, out[:300])
    _family_error(family, out, 413)
    assert fake.matching(mk) == [], "an oversized body reached the provider"


@pytest.mark.parametrize("family", list(FAMILIES))
def test_malformed_json_is_400(gateway, fake, family):
    path, auth, make = FAMILIES[family]
    mk = marker()
    body = make(mk, "")[:-7].encode() + b",,]"  # cut off and broken
    headers = {"Content-Type": "application/json", **auth(gateway.key("all-prod"))}
    status, _, out = raw_request(f"{gateway.url}{path}", "POST", body, headers)
    assert status == 400, (family, status, out[:300])
    _family_error(family, out, 400)
    assert fake.matching(mk) == [], "a malformed body reached the provider"
    assert_no_secret_in(out.decode("utf-8", "replace"), gateway.all_secrets(), "400 body")
