"""A local OIDC issuer on loopback for the identity tests: it publishes a JWKS,
signs tokens with its test keys (RSA, P-256, Ed25519, each with a `kid`),
rotates them, can sign with a key it never published, and can go down.

It also plays GitHub Actions' token service (`/github-token`), which hands the
running job its OIDC token when asked with the job's request token.

Keys are made when the issuer starts; nothing here is committed."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import secrets
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, rsa


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


class SigningKey:
    def __init__(self, alg: str):
        self.alg = alg
        self.kid = f"{alg.lower()}-{secrets.token_hex(4)}"
        if alg == "RS256":
            self.private = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        elif alg == "ES256":
            self.private = ec.generate_private_key(ec.SECP256R1())
        elif alg == "EdDSA":
            self.private = ed25519.Ed25519PrivateKey.generate()
        else:
            raise ValueError(alg)

    def jwk(self) -> dict:
        return json.loads(jwt.algorithms.get_default_algorithms()[self.alg].to_jwk(self.private.public_key())) | {
            "kid": self.kid, "use": "sig", "alg": self.alg,
        }

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )


class Issuer:
    def __init__(self, algs=("RS256", "ES256", "EdDSA")):
        self.keys = {a: SigningKey(a) for a in algs}
        self.published = list(self.keys.values())
        self.down = False
        self.jwks_fetches = 0
        self.github_job_token = secrets.token_urlsafe(24)
        self.github_subject_token: str | None = None
        self.github_audiences: list[str] = []
        issuer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *a):
                pass

            def do_GET(self):
                u = urlsplit(self.path)
                if u.path == "/jwks.json":
                    issuer.jwks_fetches += 1
                    if issuer.down:
                        self.send_response(503)
                        self.end_headers()
                        return
                    body = json.dumps({"keys": [k.jwk() for k in issuer.published]}).encode()
                elif u.path == "/github-token":
                    if self.headers.get("authorization") != f"Bearer {issuer.github_job_token}":
                        self.send_response(401)
                        self.end_headers()
                        return
                    issuer.github_audiences += parse_qs(u.query).get("audience", [])
                    body = json.dumps({"count": 1, "value": issuer.github_subject_token}).encode()
                else:
                    self.send_response(404)
                    self.end_headers()
                    return
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self):
        self.server.shutdown()

    def jwks(self) -> dict:
        return {"keys": [k.jwk() for k in self.published]}

    def claims(self, **over) -> dict:
        now = int(time.time())
        c = {"iss": self.url, "aud": "keyward-app", "sub": f"user-{secrets.token_hex(4)}",
             "iat": now, "nbf": now, "exp": now + 600}
        c.update(over)
        return {k: v for k, v in c.items() if v is not None}

    def sign(self, claims: dict, alg: str = "RS256", key: SigningKey | None = None, headers: dict | None = None) -> str:
        key = key or self.keys[alg]
        return jwt.encode(claims, key.private, algorithm=key.alg, headers={"kid": key.kid, **(headers or {})})

    def rotate(self, alg: str = "RS256") -> SigningKey:
        """A new key for `alg`, published beside the old ones and used from now on."""
        new = SigningKey(alg)
        self.keys[alg] = new
        self.published.append(new)
        return new


def unsigned(claims: dict) -> str:
    """`alg: none`: no signature at all."""
    head = b64url(json.dumps({"alg": "none", "typ": "JWT"}).encode())
    return f"{head}.{b64url(json.dumps(claims).encode())}."


def hs256_with(secret: bytes, claims: dict, kid: str | None = None) -> str:
    """HS256 over the token with `secret` (e.g. an issuer's public key, the
    classic algorithm-confusion attack)."""
    header = {"alg": "HS256", "typ": "JWT"} | ({"kid": kid} if kid else {})
    signing_input = f"{b64url(json.dumps(header).encode())}.{b64url(json.dumps(claims).encode())}"
    sig = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{b64url(sig)}"


def tamper(token: str) -> str:
    """The same header and signature over different claims."""
    h, p, s = token.split(".")
    claims = json.loads(base64.urlsafe_b64decode(p + "=" * (-len(p) % 4)))
    claims["sub"] = "someone-else"
    return f"{h}.{b64url(json.dumps(claims).encode())}.{s}"
