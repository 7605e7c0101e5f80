"""Runs last (file name): after every other test has pushed traffic through the
gateway, no client key and no provider credential is in `keys list`, the CLI's
output, the server's log, the database files, or anything the provider got."""

import json
import re

from conftest import assert_clean_upstream, assert_no_secret_in, sha256_forms, marker


def _warm(gateway):
    """Make sure there was traffic even when this module runs alone."""
    gateway.openai(gateway.key("all-prod")).chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": marker()}])
    gateway.anthropic(gateway.key("all-dev")).messages.create(
        model="claude-3-5-haiku-latest", max_tokens=5, messages=[{"role": "user", "content": marker()}]
    )


def test_keys_list_has_no_key_material(gateway):
    _warm(gateway)
    r = gateway.cli("keys", "list", "--json")
    listed = json.loads(r.stdout)
    assert isinstance(listed, list)
    by_id = {o["id"]: o for o in listed}
    for label, k in gateway.keys.items():
        assert k["id"] in by_id, f"key {label} ({k['id']}) missing from `keys list`"
        o = by_id[k["id"]]
        for f in ["id", "name", "environment", "models", "providers", "endpoints", "source_cidrs", "created_at",
                  "expires_at", "revoked_at", "revoke_reason", "hint"]:
            assert f in o, f"`keys list` entry lacks {f}: {o}"
        assert o["name"] == label
        for field, value in o.items():
            assert "hash" not in field.lower(), f"`keys list` exposes a hash field {field}"
    assert by_id[gateway.keys["all-dev"]["id"]]["environment"] == "dev"
    prod = by_id[gateway.keys["all-prod"]["id"]]
    assert prod["expires_at"], "default expiry (90 days) missing"
    if isinstance(prod["expires_at"], (int, float)) and isinstance(prod["created_at"], (int, float)):
        assert abs(prod["expires_at"] - prod["created_at"] - 90 * 86400) < 120, prod
    for label, k in gateway.keys.items():
        hint = by_id[k["id"]]["hint"] or ""
        assert len(hint.rstrip("…").removeprefix("kw_prod_").removeprefix("kw_dev_").removeprefix("kw_staging_")) <= 8, (
            f"`keys list` hint reveals too much of the key: {hint!r}"
        )
    hashes = [h for k in gateway.all_client_keys() for h in sha256_forms(k)]
    assert_no_secret_in(r.stdout + r.stderr, gateway.all_secrets() + hashes, "`keys list --json`")
    r2 = gateway.cli("keys", "list")
    assert_no_secret_in(r2.stdout + r2.stderr, gateway.all_secrets() + hashes, "`keys list`")


def test_cli_output_never_shows_credentials(gateway):
    blob = "\n".join(gateway.cli_outputs)
    assert_no_secret_in(blob, list(gateway.creds.values()), "CLI output")


def test_server_log_has_no_secrets(gateway):
    _warm(gateway)
    log = gateway.log_text()
    assert log.strip(), "the server logged nothing at all"
    hashes = [h for k in gateway.all_client_keys() for h in sha256_forms(k)]
    assert_no_secret_in(log, gateway.all_secrets() + hashes, "server log (stderr/stdout)")


def test_database_files_have_no_plaintext_secrets(gateway):
    _warm(gateway)
    files = sorted(p for p in gateway.db.parent.iterdir() if p.name.startswith(gateway.db.name))
    assert gateway.db in files, f"database {gateway.db} not created (found {[p.name for p in gateway.db.parent.iterdir()]})"
    for p in files:
        data = p.read_bytes()
        for s in gateway.all_secrets():
            for enc in (s.encode(), s.encode("utf-16-le")):
                assert enc not in data, f"{p.name} contains a plaintext secret ({s[:12]}...)"
    # and no other file in the data dir or the config holds them either
    for p in [*gateway.db.parent.rglob("*"), gateway.config]:
        if p.is_file():
            data = p.read_bytes()
            for s in gateway.all_secrets():
                assert s.encode() not in data, f"{p} contains a plaintext secret ({s[:12]}...)"


def test_master_key_file_mode(gateway):
    mk = gateway.db.parent / "master.key"
    assert mk.is_file(), "vault master key file was not created"
    assert mk.stat().st_mode & 0o077 == 0, f"master key file mode is {oct(mk.stat().st_mode & 0o777)}, want 0600"


def test_provider_never_received_a_keyward_key(gateway, fake):
    recs = fake.snapshot()
    assert recs, "the fake provider got no request at all"
    assert_clean_upstream(fake, recs, gateway)
    for r in recs:
        assert not re.search(r"kw_(prod|dev|staging)_", r.as_text()), f"something Keyward-key-like reached the provider: {r.raw_path}"
