#!/usr/bin/env python3
"""The key directory at scale, on PostgreSQL and Redis:

  bench/cluster-scale.py [KEYS]        default 1,000,000

1. Start-up time (spawn to /readyz 200) and resident memory of one replica with
   no keys and with KEYS keys, bulk-loaded straight into the store (generated
   hashes: these keys are never presented); memory per key is the difference.
2. Three replicas under load (threads calling /v1/models on every replica with a
   real key): revocation propagation lag, from the admin API call to the first
   401 on every replica, over 100 revocations (p50, p99, max), and the admin
   call's own time (it answers once every replica applied the change).

Needs the local PostgreSQL (127.0.0.1:5432, user postgres), redis-server and
psql. Uses a database and a Redis of its own, dropped at the end.
"""

from __future__ import annotations

import http.client
import json
import os
import secrets
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

HERE = Path(__file__).resolve().parents[1]
KW = HERE / "target" / "release" / "keyward"
PSQL = ["psql", "-h", "127.0.0.1", "-U", "postgres", "-v", "ON_ERROR_STOP=1", "-q"]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def sql(db: str, text: str) -> str:
    return subprocess.run([*PSQL, "-d", db, "-tAc", text], check=True, capture_output=True, text=True).stdout


def cli(cfg: Path, *args: str, stdin: str | None = None) -> str:
    r = subprocess.run([str(KW), *args, "--config", str(cfg)], input=stdin, capture_output=True, text=True)
    if r.returncode != 0:
        sys.exit(f"keyward {' '.join(args)} failed: {r.stderr}")
    return r.stdout


def status(port: int, path: str, key: str, method: str = "GET", body: bytes | None = None) -> int:
    c = http.client.HTTPConnection("127.0.0.1", port, timeout=10)
    try:
        c.request(method, path, body=body, headers={"Authorization": f"Bearer {key}", "Content-Type": "application/json"})
        r = c.getresponse()
        r.read()
        return r.status
    finally:
        c.close()


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


class Replica:
    def __init__(self, cfg: Path, work: Path, n: int):
        self.port = free_port()
        text = cfg.read_text().replace('listen = "127.0.0.1:0"', f'listen = "127.0.0.1:{self.port}"')
        self.cfg = work / f"replica{n}.toml"
        self.cfg.write_text(text)
        self.log = open(work / f"replica{n}.log", "wb")
        self.started = time.monotonic()
        self.proc = subprocess.Popen([str(KW), "serve", "--config", str(self.cfg)], stdout=self.log,
                                     stderr=self.log, env={**os.environ, "RUST_LOG": "warn"})
        while True:
            try:
                if status(self.port, "/readyz", "") == 200:
                    break
            except OSError:
                pass
            if self.proc.poll() is not None:
                sys.exit(f"replica {n} exited; see {work}/replica{n}.log")
            time.sleep(0.02)
        self.ready_s = time.monotonic() - self.started

    def stop(self):
        self.proc.terminate()
        self.proc.wait(30)


def main():
    n_keys = int(sys.argv[1]) if len(sys.argv) > 1 else 1_000_000
    subprocess.run(["cargo", "build", "--release", "-q", "-p", "keyward"], cwd=HERE, check=True)
    work = Path(tempfile.mkdtemp(prefix="keyward-scale-"))
    db = f"keyward_scale_{secrets.token_hex(4)}"
    sql("postgres", f"CREATE DATABASE {db}")
    redis_port = free_port()
    redis = subprocess.Popen(["redis-server", "--port", str(redis_port), "--bind", "127.0.0.1", "--save", "",
                              "--appendonly", "no"], stdout=subprocess.DEVNULL)
    replicas: list[Replica] = []
    try:
        cfg = work / "keyward.toml"
        cfg.write_text(f"""[server]
listen = "127.0.0.1:0"
[store]
url = "postgres://postgres@127.0.0.1:5432/{db}"
[vault]
master_key_file = "{work}/master.key"
[cluster]
redis_url = "redis://127.0.0.1:{redis_port}/"
[[providers]]
name = "none"
kind = "openai"
base_url = "http://127.0.0.1:9/v1"
credential = "unused"
models = ["gpt-4o-mini"]
""")
        cli(cfg, "init")
        cli(cfg, "vault", "put", "unused", stdin="sk-unused-dummy\n")
        admin = json.loads(cli(cfg, "admin", "create", "--name", "bench", "--json"))["key"]
        load_key = json.loads(cli(cfg, "keys", "create", "--name", "load", "--env", "prod", "--models", "*", "--json"))["key"]
        victims = [json.loads(cli(cfg, "keys", "create", "--name", f"victim{i}", "--env", "prod", "--models", "*", "--json"))
                   for i in range(100)]

        r = Replica(cfg, work, 0)
        time.sleep(1)
        base = (r.ready_s, rss_kib(r.proc.pid))
        r.stop()

        t = time.monotonic()
        sql(db, f"""INSERT INTO client_keys (id, key_hash, hint, name, environment, models, providers, endpoints,
                   source_cidrs, created_at, changed_gen)
                   SELECT 'key_bulk' || g, md5(g::text) || md5('x' || g::text), 'kw_prod_', 'bulk ' || g, 'prod',
                          '["*"]', '[]', '[]', '[]', 1796000000, 0 FROM generate_series(1, {n_keys}) g;
                   UPDATE meta SET value = CAST(CAST(value AS BIGINT) + 1 AS TEXT) WHERE name = 'generation';
                   ANALYZE client_keys;""")
        load_s = time.monotonic() - t

        r = Replica(cfg, work, 0)
        time.sleep(1)
        full = (r.ready_s, rss_kib(r.proc.pid))
        r.stop()
        per_key = (full[1] - base[1]) * 1024 / n_keys
        print(f"bulk load of {n_keys:,} keys into PostgreSQL: {load_s:.1f} s")
        print(f"start-up to ready: {base[0]:.2f} s with {len(victims) + 1} keys, {full[0]:.2f} s with {n_keys:,} more")
        print(f"resident memory: {base[1] / 1024:.0f} MiB, {full[1] / 1024:.0f} MiB with the keys: "
              f"{per_key:.0f} bytes per key")

        replicas = [Replica(cfg, work, i) for i in range(3)]
        stop = threading.Event()
        served = [0]

        def load(port: int):
            while not stop.is_set():
                status(port, "/v1/models", load_key)
                served[0] += 1

        threads = [threading.Thread(target=load, args=(rep.port,), daemon=True) for rep in replicas for _ in range(2)]
        for th in threads:
            th.start()
        time.sleep(1)
        lags, calls = [], []
        for v in victims:
            assert all(status(rep.port, "/v1/models", v["key"]) == 200 for rep in replicas)
            seen = {}
            t0 = time.monotonic()

            def watch(rep: Replica):
                while status(rep.port, "/v1/models", v["key"]) != 401:
                    pass
                seen[rep.port] = time.monotonic() - t0

            watchers = [threading.Thread(target=watch, args=(rep,)) for rep in replicas]
            for w in watchers:
                w.start()
            code = status(replicas[0].port, f"/admin/v1/keys/{v['id']}/revoke", admin, "POST", b"{}")
            calls.append(time.monotonic() - t0)
            assert code == 200, code
            for w in watchers:
                w.join(10)
            lags.append(max(seen.values()))
        stop.set()
        for th in threads:
            th.join(5)
        lags_ms = sorted(x * 1000 for x in lags)
        calls_ms = sorted(x * 1000 for x in calls)
        def pct(v: list[float], p: float) -> float:  # nearest rank
            return v[max(0, -(-len(v) * p // 100) - 1)]
        print(f"revocation lag to the last of 3 replicas, {len(lags)} revocations under load "
              f"({served[0]} requests served meanwhile): p50 {statistics.median(lags_ms):.1f} ms, "
              f"p99 {pct(lags_ms, 99):.1f} ms, max {lags_ms[-1]:.1f} ms")
        print(f"admin revoke call (answers once all 3 applied it): p50 {statistics.median(calls_ms):.1f} ms, "
              f"max {calls_ms[-1]:.1f} ms")
    finally:
        for rep in replicas:
            rep.stop()
        redis.kill()
        sql("postgres", f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


if __name__ == "__main__":
    main()
