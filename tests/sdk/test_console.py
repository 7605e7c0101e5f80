"""The admin console (`/console` on the admin listener), driven by Debian's
Chromium through Playwright, against a real `keyward serve` and the fake
provider: sign-in, keys, usage, revocation, alerts, credentials and audit
verification; then the security properties over raw HTTP: no page or change
without a session, CSRF and cross-origin refusals, session fixation, sign-out,
expiry, admin-key revocation, and escaping of everything a client or caller
can choose (key names, owners, alert texts, audit details)."""

import json
import re
import sqlite3
import time
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlencode

import openai
import pytest

from conftest import free_port, make_gateway, raw_request

SCREENSHOTS = Path(__file__).resolve().parents[2] / "target" / "console-screenshots"
COOKIE = "__Host-keyward_console"
PAGES = ["/console/keys", "/console/keys/new", "/console/credentials", "/console/usage",
         "/console/alerts", "/console/audit", "/console/keys/key_none"]
# Markup a caller could try to smuggle into a page through what it names.
XSS = '"><script>window.__xss=1</script><img src=x onerror="window.__xss=2">'


def console_gateway(keyward_bin, fake, d, extra="", vault_max_age=None):
    admin_port = free_port()
    gw = make_gateway(keyward_bin, fake, d, extra_config=f'\n[admin]\nlisten = "127.0.0.1:{admin_port}"\n{extra}')
    if vault_max_age:
        text = gw.config.read_text()
        gw.config.write_text(re.sub(r'(master_key_file = "[^"]*")', rf'\1\nmax_age = "{vault_max_age}"', text, count=1))
    gw.admin_url = f"http://127.0.0.1:{admin_port}"
    admin = json.loads(gw.cli("admin", "create", "--name", "console-operator", "--json").stdout)
    gw.traffic_secrets.append(admin["key"])
    gw.admin = admin
    gw.start()
    return gw


@pytest.fixture(scope="module")
def console(keyward_bin, fake, tmp_path_factory):
    gw = console_gateway(keyward_bin, fake, tmp_path_factory.mktemp("console"))
    yield gw
    gw.stop()


# ---------------------------------------------------------------------------
# raw HTTP sessions


class Tags(HTMLParser):
    """Every start tag of a page with its attribute names."""

    def __init__(self):
        super().__init__()
        self.seen = []

    def handle_starttag(self, tag, attrs):
        self.seen.append((tag, [n for n, _ in attrs]))


class Session:
    """A console session over raw HTTP: the cookie and the page's CSRF token."""

    def __init__(self, gw, cookie):
        self.gw, self.cookie = gw, cookie

    def get(self, path, headers=None):
        h = {"Cookie": f"{COOKIE}={self.cookie}", **(headers or {})}
        return raw_request(self.gw.admin_url + path, headers=h)

    def csrf(self, path="/console/keys"):
        status, _, body = self.get(path)
        assert status == 200, (status, body[:300])
        m = re.search(rb'name="csrf" value="([0-9a-f]{64})"', body)
        assert m, body[:500]
        return m.group(1).decode()

    def post(self, path, fields, origin=True, headers=None):
        h = {"Cookie": f"{COOKIE}={self.cookie}", "Content-Type": "application/x-www-form-urlencoded"}
        if origin:
            h["Origin"] = self.gw.admin_url
        h.update(headers or {})
        return raw_request(self.gw.admin_url + path, "POST", urlencode(fields).encode(), h)


def sign_in(gw, key=None, cookie=None):
    """Signs in over raw HTTP; returns the new session (or the failed answer)."""
    h = {"Content-Type": "application/x-www-form-urlencoded", "Origin": gw.admin_url}
    if cookie:
        h["Cookie"] = f"{COOKIE}={cookie}"
    status, headers, body = raw_request(gw.admin_url + "/console/sign-in", "POST",
                                        urlencode({"admin_key": key or gw.admin["key"]}).encode(), h)
    if status != 303:
        return status, body
    set_cookie = headers["set-cookie"]
    m = re.match(rf"{COOKIE}=([A-Za-z0-9_-]{{43}});", set_cookie)
    assert m, set_cookie
    return Session(gw, m.group(1)), set_cookie


def key_state(gw, key_id):
    keys = json.loads(gw.cli("keys", "list", "--json").stdout)
    return next(k for k in keys if k["id"] == key_id)


# ---------------------------------------------------------------------------
# the browser


@pytest.fixture(scope="module")
def chromium():
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        browser = p.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                  "--disable-background-networking", "--disable-component-update", "--disable-sync"],
        )
        yield browser
        browser.close()


def shot(page, name):
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    page.screenshot(path=str(SCREENSHOTS / f"{name}.png"), full_page=True)


def page_checks(page):
    """What every console page must hold: no layout shift, every control labelled."""
    unlabelled = page.evaluate("""() => [...document.querySelectorAll(
        'input:not([type=hidden]), select, textarea')].filter(e => !e.labels.length && !e.getAttribute('aria-label'))
        .map(e => e.name)""")
    assert unlabelled == [], f"{page.url}: controls without a label: {unlabelled}"
    shift = page.evaluate("""() => new Promise(done => {
        let total = 0;
        new PerformanceObserver(list => { for (const e of list.getEntries()) total += e.value; })
            .observe({type: 'layout-shift', buffered: true});
        setTimeout(() => done(total), 300);
    })""")
    assert shift == 0, f"{page.url}: layout shift {shift}"


def test_console_end_to_end_in_chromium(console, chromium):
    gw = console
    ctx = chromium.new_context(viewport={"width": 1366, "height": 900})
    page = ctx.new_page()
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    console_errors = []
    # (the one failed sign-in below answers 401, on purpose)
    page.on("console", lambda m: m.type == "error" and "status of 401" not in m.text and console_errors.append(m.text))

    # Signed out: every page leads to the sign-in form.
    page.goto(gw.admin_url + "/console/usage")
    assert page.url.endswith("/console/sign-in")
    page_checks(page)
    shot(page, "01-sign-in")
    page.fill("#admin_key", "kw_admin_not_a_real_key")
    page.click("button[type=submit]")
    assert "not a valid admin key" in page.text_content("main")
    page.fill("#admin_key", gw.admin["key"])
    page.click("button[type=submit]")
    assert page.url.endswith("/console/keys"), page.url
    # The admin key is nowhere the page's script can reach; the cookie is HttpOnly.
    assert page.evaluate("document.cookie") == ""
    assert page.evaluate("localStorage.length + sessionStorage.length") == 0
    cookie = next(c for c in ctx.cookies() if c["name"] == COOKIE)
    assert cookie["httpOnly"] and cookie["secure"] and cookie["sameSite"] == "Strict"
    assert gw.admin["key"] not in page.content()

    # Create a key with the keyboard-reachable form; the secret is shown once.
    page.click("text=Create a key")
    page.fill("input[name=name]", "console-made")
    page.fill("input[name=owner]", "team-console")
    page.fill("input[name=daily_budget]", "5")
    page.fill("input[name=rpm]", "600")
    page_checks(page)
    shot(page, "02-create-key")
    page.click("button:has-text('Create key')")
    secret = page.text_content("#secret").strip()
    assert secret.startswith("kw_prod_"), secret
    gw.traffic_secrets.append(secret)
    assert "applied by 1 running server(s)" in page.text_content("main")
    page.click("button[data-copy=secret]")
    page.wait_for_function("document.querySelector('button[data-copy=secret]').textContent !== 'Copy'")
    shot(page, "03-key-created")
    key_id = re.search(r"key_[A-Za-z0-9]+", page.text_content("main code")).group(0)

    # The key works at once through the OpenAI SDK.
    client = gw.openai(secret)
    r = client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi from the console"}])
    assert r.choices[0].message.content

    # The call shows in usage (written within a second or so).
    deadline = time.monotonic() + 15
    while True:
        page.goto(gw.admin_url + "/console/usage?by=key&metric=requests&days=7")
        row = page.locator("table tr", has_text="console-made")
        if row.count() and row.first.locator("td").nth(1).text_content().strip() == "1":
            break
        assert time.monotonic() < deadline, page.text_content("main")
        time.sleep(0.5)
    assert page.locator("figure.chart svg rect.s0").count() >= 1
    assert "key console-made" in page.text_content("main"), "the key's daily budget is listed"
    assert page.locator("meter").count() >= 1
    page_checks(page)
    shot(page, "04-usage")

    # The list shows it with owner, limits and last use; sorting and search work.
    # (last use reaches the store within 5 s)
    deadline = time.monotonic() + 10
    while True:
        page.goto(gw.admin_url + "/console/keys?q=console-made")
        row = page.locator("tbody tr", has_text="console-made")
        assert row.count() == 1
        text = row.text_content()
        if "ago" in text or time.monotonic() > deadline:
            break
        time.sleep(0.5)
    assert "team-console" in text and "600 rpm" in text and "$5.00/day" in text and "ago" in text, text
    page.goto(gw.admin_url + "/console/keys?sort=name&dir=asc")
    assert page.locator("th[aria-sort=ascending]").text_content().strip() == "Name"
    page_checks(page)
    shot(page, "05-keys")

    # Revoke it with a reason: the next call gets 401.
    page.goto(gw.admin_url + f"/console/keys/{key_id}")
    page_checks(page)
    shot(page, "06-key")
    page.fill("#revoke-reason", "leaked in a screenshot")
    page.click("button:has-text('Revoke for good')")
    assert "Key revoked: applied by 1 running server(s)." in page.text_content("main")
    assert "leaked in a screenshot" in page.text_content("main")
    with pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model="gpt-4o-mini", messages=[{"role": "user", "content": "again"}])

    # An alert appears: a canary key is used. Acknowledge it; resume a suspended key from it.
    canary = json.loads(gw.cli("keys", "create", "--name", "decoy", "--env", "prod", "--models", "*",
                               "--canary", "--json").stdout)
    gw.traffic_secrets.append(canary["key"])
    status = raw_request(f"{gw.url}/v1/models", headers={"Authorization": f"Bearer {canary['key']}"})[0]
    assert status in (401, 403), status
    deadline = time.monotonic() + 10
    while True:
        page.goto(gw.admin_url + "/console/alerts")
        if page.locator("tbody tr", has_text="canary_key_used").count():
            break
        assert time.monotonic() < deadline
        time.sleep(0.3)
    gw.cli("keys", "suspend", canary["id"], "--reason", "investigating")
    page.reload()
    alert_row = page.locator("tbody tr", has_text="canary_key_used").first
    assert "critical" in alert_row.text_content()
    page_checks(page)
    shot(page, "07-alerts")
    alert_row.locator("button:has-text('Resume key')").click()
    assert "Key resumed" in page.text_content("main")
    assert key_state(gw, canary["id"]).get("suspended_at") is None
    page.locator("tbody tr", has_text="canary_key_used").first.locator("button:has-text('Acknowledge')").click()
    assert "Alert acknowledged" in page.text_content("main")
    assert page.locator("tbody tr", has_text="canary_key_used").count() == 0
    page.goto(gw.admin_url + "/console/alerts?show=all")
    assert "acknowledged" in page.locator("tbody tr", has_text="canary_key_used").first.text_content()

    # Credentials: versions and users, never values; rotate by pasting a new one.
    page.goto(gw.admin_url + "/console/credentials")
    html = page.content()
    for value in gw.creds.values():
        assert value not in html
    row = page.locator("tbody tr", has_text="openai-prod")
    assert "openai (environment prod)" in row.text_content()
    page_checks(page)
    shot(page, "08-credentials")
    new_value = "sk-fakeprov-rotated-" + secret[-8:]
    gw.traffic_secrets.append(new_value)
    row.locator("input[type=password]").fill(new_value)
    row.locator("button:has-text('Store')").click()
    assert "Credential stored" in page.text_content("main")
    assert new_value not in page.content()
    row = page.locator("tbody tr", has_text="openai-prod")
    assert "v2 current" in row.text_content() and "rotation overdue" not in row.text_content()

    # Audit: filtered, verified; then tampered with in the store and flagged.
    page.goto(gw.admin_url + f"/console/audit?key={key_id}")
    text = page.text_content("main")
    assert "Chain verified" in page.text_content("#verification")
    assert "keys.create" in text and "keys.revoke" in text and "console:" in text
    page.goto(gw.admin_url + "/console/audit?action=console.")
    assert "console.sign_in" in page.text_content("main")
    page_checks(page)
    shot(page, "09-audit")
    db = sqlite3.connect(gw.db)
    seq = db.execute("SELECT seq FROM audit_log WHERE action = 'keys.revoke' AND target = ?", (key_id,)).fetchone()[0]
    db.execute("UPDATE audit_log SET details = '{\"reason\":\"nothing happened\"}' WHERE seq = ?", (seq,))
    db.commit()
    db.close()
    page.reload()
    verdict = page.text_content("#verification")
    assert f"Verification failed at entry {seq}" in verdict and "changed" in verdict, verdict
    shot(page, "10-audit-tampered")

    # A phone: the pages fit and keep working.
    phone = chromium.new_context(viewport={"width": 390, "height": 844}, is_mobile=True, has_touch=True)
    phone.add_cookies([{**cookie}])
    mp = phone.new_page()
    for path, name in [("/console/keys", "11-phone-keys"), ("/console/usage", "12-phone-usage")]:
        mp.goto(gw.admin_url + path)
        assert mp.url.endswith(path)
        width = mp.evaluate("document.documentElement.scrollWidth")
        assert width <= 390, f"{path} is {width}px wide on a 390px phone (tables scroll inside their box)"
        shot(mp, name)
    phone.close()

    # Keyboard: the first Tab reaches the skip link, which moves focus to the content.
    page.goto(gw.admin_url + "/console/keys")
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.textContent") == "Skip to content"
    page.keyboard.press("Tab")
    assert page.evaluate("document.activeElement.getAttribute('href')") == "/console/keys"

    # Sign out: the session is gone, the pages ask for sign-in again.
    page.click("button:has-text('Sign out')")
    assert page.url.endswith("/console/sign-in")
    page.goto(gw.admin_url + "/console/keys")
    assert page.url.endswith("/console/sign-in")
    assert dialogs == [] and console_errors == [], (dialogs, console_errors)
    ctx.close()


# ---------------------------------------------------------------------------
# security over raw HTTP


def test_no_page_or_change_without_a_session(console):
    gw = console
    for path in PAGES + ["/console/usage?by=owner", "/console/audit?actor=x"]:
        for cookie in (None, "A" * 43, "not-a-session"):
            h = {"Cookie": f"{COOKIE}={cookie}"} if cookie else {}
            status, headers, body = raw_request(gw.admin_url + path, headers=h)
            assert status == 303 and headers["location"] == "/console/sign-in", (path, status, body[:200])
            assert b"<table" not in body
            if cookie:
                assert "Max-Age=0" in headers.get("set-cookie", ""), "a dead cookie is cleared"
    victim = gw.create_key("victim", env="prod")
    for path in ["/console/keys", f"/console/keys/{victim['id']}/revoke", "/console/credentials/openai-prod",
                 "/console/alerts/x/ack", "/console/sign-out"]:
        status, _, body = raw_request(gw.admin_url + path, "POST", b"reason=x&value=y&name=n&env=prod&models=*",
                                      {"Content-Type": "application/x-www-form-urlencoded", "Origin": gw.admin_url})
        assert status == 403, (path, status, body[:200])
    assert key_state(gw, victim["id"])["revoked_at"] is None
    # The admin API stays on bearer keys: a console cookie is not one.
    s, _ = sign_in(gw)
    status, _, _ = s.get("/admin/v1/keys")
    assert status == 401


def test_changes_need_the_sessions_csrf_token_and_this_origin(console):
    gw = console
    victim = gw.create_key("csrf-victim", env="prod")
    s, _ = sign_in(gw)
    other, _ = sign_in(gw)
    token = s.csrf()
    path = f"/console/keys/{victim['id']}/revoke"
    refusals = [
        ({"reason": "csrf"}, True, None),  # no token
        ({"reason": "csrf", "csrf": "0" * 64}, True, None),  # a wrong one
        ({"reason": "csrf", "csrf": other.csrf()}, True, None),  # another session's
        ({"reason": "csrf", "csrf": token}, False, None),  # neither Origin nor Sec-Fetch-Site
        ({"reason": "csrf", "csrf": token}, False, {"Origin": "http://evil.example"}),
        ({"reason": "csrf", "csrf": token}, False, {"Origin": "null"}),
        ({"reason": "csrf", "csrf": token}, False, {"Sec-Fetch-Site": "cross-site"}),
        ({"reason": "csrf", "csrf": token}, True, {"Sec-Fetch-Site": "same-site"}),
    ]
    for fields, origin, headers in refusals:
        status, _, body = s.post(path, fields, origin=origin, headers=headers)
        assert status == 403, (fields, headers, status, body[:200])
        assert b"Nothing was changed" in body
    assert key_state(gw, victim["id"])["revoked_at"] is None
    # A sign-in from another site is refused too (login CSRF).
    status, _, _ = raw_request(gw.admin_url + "/console/sign-in", "POST",
                               urlencode({"admin_key": gw.admin["key"]}).encode(),
                               {"Content-Type": "application/x-www-form-urlencoded", "Origin": "http://evil.example"})
    assert status == 403
    # The same change with the token, from this origin, goes through.
    status, headers, _ = s.post(path, {"reason": "done right", "csrf": token})
    assert status == 303 and "done=revoked" in headers["location"]
    assert key_state(gw, victim["id"])["revoked_at"] is not None
    assert b"Key revoked: applied by 1" in s.get(headers["location"])[2]
    # A notice cannot be forged by a link: without this session's tag it says nothing.
    other_key = gw.create_key("notice-victim", env="prod")
    for q in ["done=revoked&servers=9", "done=revoked&servers=9&tag=" + "0" * 32,
              headers["location"].split("?", 1)[1].replace("servers=1", "servers=9")]:
        body = s.get(f"/console/keys/{other_key['id']}?{q}")[2]
        assert b"Key revoked" not in body, q
    assert b"Key revoked" not in other.get(headers["location"])[2], "another session's tag"
    # Signing in again ends the session the browser had.
    again, _ = sign_in(gw, cookie=other.cookie)
    assert other.get("/console/keys")[0] == 303 and again.get("/console/keys")[0] == 200


def test_session_fixation_sign_out_and_admin_key_revocation(console):
    gw = console
    planted = "P" * 43
    s, set_cookie = sign_in(gw, cookie=planted)
    assert s.cookie != planted, "sign-in must issue a fresh session id"
    for attr in ("Path=/", "Secure", "HttpOnly", "SameSite=Strict"):
        assert attr in set_cookie, set_cookie
    assert "Domain" not in set_cookie and set_cookie.startswith("__Host-")
    assert raw_request(gw.admin_url + "/console/keys", headers={"Cookie": f"{COOKIE}={planted}"})[0] == 303
    assert s.get("/console/keys")[0] == 200
    # Two sign-ins, two sessions; each id is fresh.
    s2, _ = sign_in(gw)
    assert s2.cookie not in (s.cookie, planted)
    # Only a keyed hash of the id is stored.
    db = sqlite3.connect(gw.db)
    stored = [r[0] for r in db.execute("SELECT id_hash FROM console_sessions")]
    db.close()
    assert stored and s.cookie not in stored and all(len(h) == 64 for h in stored)
    # Sign-out ends the session for good.
    status, headers, _ = s.post("/console/sign-out", {"csrf": s.csrf()})
    assert status == 303 and "Max-Age=0" in headers["set-cookie"]
    assert s.get("/console/keys")[0] == 303
    assert s2.get("/console/keys")[0] == 200
    # A wrong key is refused and audited without its value.
    wrong = "kw_admin_" + "x" * 40
    status, body = sign_in(gw, key=wrong)
    assert status == 401 and wrong.encode() not in body
    # Revoking the admin key ends the sessions it opened.
    other = json.loads(gw.cli("admin", "create", "--name", "short-lived", "--json").stdout)
    gw.traffic_secrets.append(other["key"])
    s3, _ = sign_in(gw, key=other["key"])
    assert s3.get("/console/keys")[0] == 200
    gw.cli("admin", "revoke", other["id"])
    assert s3.get("/console/keys")[0] == 303
    assert s2.get("/console/keys")[0] == 200
    # Sign-ins reach the log through the server's audit queue: allow it a moment.
    deadline = time.monotonic() + 10
    while True:
        audit = gw.cli("audit", "search", "--since", "1h", "--json").stdout
        if '"console"' in audit or time.monotonic() > deadline:
            break
        time.sleep(0.1)
    assert wrong not in audit and '"console"' in audit


def test_sessions_expire(keyward_bin, fake, tmp_path):
    gw = console_gateway(keyward_bin, fake, tmp_path, extra='console_session = "3s"\nconsole_idle = "2m"\n',
                         vault_max_age="2s")
    try:
        s, _ = sign_in(gw)
        assert s.get("/console/keys")[0] == 200
        time.sleep(3.2)
        assert s.get("/console/keys")[0] == 303
        # (and credentials older than [vault] max_age show as overdue)
        s, _ = sign_in(gw)
        body = s.get("/console/credentials")[2].decode()
        assert body.count("rotation overdue") == len(gw.creds) and "rotate every 2s" in body, body[:2000]
    finally:
        gw.stop()
    (tmp_path / "idle").mkdir()
    gw = console_gateway(keyward_bin, fake, tmp_path / "idle", extra='console_idle = "2s"\n')
    try:
        s, _ = sign_in(gw)
        time.sleep(1.0)
        assert s.get("/console/keys")[0] == 200
        time.sleep(2.3)
        assert s.get("/console/keys")[0] == 303, "idle past console_idle"
    finally:
        gw.stop()


def test_the_console_can_be_turned_off(keyward_bin, fake, tmp_path):
    gw = console_gateway(keyward_bin, fake, tmp_path, extra="console = false\n")
    try:
        for path in ["/console/sign-in", "/console/keys", "/console/assets/console.js"]:
            assert raw_request(gw.admin_url + path)[0] == 404, path
        # The admin API is still there.
        status, _, _ = raw_request(gw.admin_url + "/admin/v1/keys", headers={"Authorization": f"Bearer {gw.admin['key']}"})
        assert status == 200
    finally:
        gw.stop()


def test_everything_a_caller_names_is_escaped(console, chromium):
    gw = console
    # A key name and owner, a leak report's location (an alert text and audit details).
    made = json.loads(gw.cli("keys", "create", "--name", XSS, "--owner", "o" + XSS[:20].replace(" ", ""), "--env", "prod",
                             "--models", "*", "--json").stdout)
    gw.traffic_secrets.append(made["key"])
    status, _, body = raw_request(gw.admin_url + "/admin/v1/leaks", "POST",
                                  json.dumps({"tokens": [made["key"]], "location": XSS}).encode(),
                                  {"Authorization": f"Bearer {gw.admin['key']}", "Content-Type": "application/json"})
    assert status == 200, body
    s, _ = sign_in(gw)
    deadline = time.monotonic() + 10
    while b"leaked_key_revoked" not in s.get("/console/alerts")[2]:
        assert time.monotonic() < deadline
        time.sleep(0.3)
    for path in ["/console/keys?state=all", f"/console/keys/{made['id']}", "/console/alerts", "/console/audit",
                 "/console/usage?by=owner", f"/console/audit?key={made['id']}", "/console/audit?" + urlencode({"actor": XSS})]:
        status, headers, body = s.get(path)
        assert status == 200, (path, status)
        html = body.decode()
        assert "<script>window.__xss" not in html and "<img src=x" not in html, path
        assert "&lt;script&gt;" in html or "&#60;script&#62;" in html or path.startswith("/console/usage"), path
        # No inline script or style anywhere; the CSP forbids them besides.
        tags = Tags()
        tags.feed(html)
        assert all("src" in a for t, a in tags.seen if t == "script"), f"{path}: an inline script"
        handlers = [(t, n) for t, a in tags.seen for n in a if n.startswith("on") or n == "style"]
        assert handlers == [], f"{path}: inline handlers or styles {handlers}"
        assert not any(t == "img" for t, _ in tags.seen), path
        csp = headers["content-security-policy"]
        assert "script-src 'self'" in csp and "unsafe-inline" not in csp and "frame-ancestors 'none'" in csp
        assert headers["x-frame-options"] == "DENY" and headers["cache-control"] == "no-store"
    # In the browser: nothing runs.
    ctx = chromium.new_context()
    page = ctx.new_page()
    page.goto(gw.admin_url + "/console/sign-in")
    page.fill("#admin_key", gw.admin["key"])
    page.click("button[type=submit]")
    assert page.url.endswith("/console/keys")
    dialogs = []
    page.on("dialog", lambda d: (dialogs.append(d.message), d.dismiss()))
    for path in ["/console/keys?state=all", f"/console/keys/{made['id']}", "/console/alerts", "/console/audit"]:
        page.goto(gw.admin_url + path)
        assert page.evaluate("window.__xss") is None, path
        if "audit" not in path:  # the audit page shows details as JSON, quotes escaped
            assert XSS in page.text_content("main"), f"{path} shows the text as text"
    assert dialogs == []
    ctx.close()
