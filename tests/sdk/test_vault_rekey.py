"""`keyward vault rekey` while the server runs: SDK traffic keeps flowing with the
same provider credentials, and the master key file is replaced."""

from __future__ import annotations

import os
import stat

from conftest import marker


def test_rekey_while_serving_keeps_every_sdk_working(gateway, fake):
    key_file = gateway.dir / "data" / "master.key"
    before = key_file.read_text()
    c = gateway.openai(gateway.key("all-prod"))
    a = gateway.anthropic(gateway.key("all-prod"))
    c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])

    r = gateway.cli("vault", "rekey")
    assert "re-wrapped" in r.stderr, r.stderr
    after = key_file.read_text()
    assert after != before
    assert stat.S_IMODE(os.stat(key_file).st_mode) == 0o600
    assert not (gateway.dir / "data" / "master.key.new").exists()
    for secret in (before.strip(), after.strip()):
        assert secret not in r.stdout + r.stderr

    for _ in range(5):
        mk = marker()
        c.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": mk}])
        rec = fake.wait_for(mk)[0]
        assert rec.headers["authorization"] == f"Bearer {gateway.creds['openai-prod']}"
        mk = marker()
        a.messages.create(model="claude-3-5-haiku-latest", max_tokens=8, messages=[{"role": "user", "content": mk}])
        assert fake.wait_for(mk)[0].headers["x-api-key"] == gateway.creds["anthropic-key"]

    # A credential stored after the rekey is sealed under the new key and served.
    gateway.traffic_secrets.append(gateway.creds["groq-key"])
    gateway.creds["groq-key"] = gateway.creds["groq-key"] + "-v2"
    gateway.cli("vault", "rotate", "groq-key", input=gateway.creds["groq-key"] + "\n")
    gateway.cli("audit", "verify")
    import time

    deadline = time.monotonic() + 3
    while True:
        mk = marker()
        gateway.openai(gateway.key("all-prod")).chat.completions.create(
            model="llama-3.1-8b", messages=[{"role": "user", "content": mk}]
        )
        got = fake.wait_for(mk)[0].headers["authorization"]
        if got == f"Bearer {gateway.creds['groq-key']}" or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert got == f"Bearer {gateway.creds['groq-key']}"
