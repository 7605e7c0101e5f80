#!/usr/bin/env bash
# Gateway overhead and throughput: Keyward beside LiteLLM's proxy, same mock, same
# load, one run, using the shared harness (../shared/bench/gateway, read-only).
#
#   bench/gateway.sh [RATE ...]          default rates: 100 300 1000
#
# Needs nginx (mock), oha, and for the peer a LiteLLM venv (see the harness README).
# PEER=0 measures Keyward only; REDACTION_COMPARE=1 adds a run with redaction off
# (REDACTION_ORDER="off on" runs it first); LIMITS_COMPARE=1 runs Keyward twice, with
# a key that has no limits and with one that has every limit and a budget
# (LIMITS_ORDER="on off" swaps the order); WATCH_COMPARE=1 runs Keyward with the
# anomaly detectors on and off ([watch] enabled; WATCH_ORDER="off on" swaps);
# CLUSTER_COMPARE=1 runs the limited, budgeted key with its counters in this
# process and in Redis ([cluster] redis_url = $REDIS_URL, default the local
# redis://127.0.0.1:6379/; CLUSTER_ORDER="redis local" swaps).
# PROXY_FLOOR=1 adds a run through nginx as a bare reverse proxy to the mock
# (keep-alive upstream, no key checks, no parsing; NGINX_WORKERS=1 or 2): what
# relaying a request costs on this machine with nothing else done, the floor
# for any gateway's throughput next to the mock's own.
# Usage is metered in every run. Results land under ${BENCH_HOME:-~/.cache/keyward-bench}.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
harness=${HARNESS:-$here/../shared/bench/gateway}
bench_home=${BENCH_HOME:-$HOME/.cache/keyward-bench}
rates=${*:-100 300 1000}
port=${KEYWARD_PORT:-4100}

(cd "$here" && cargo build --release -q -p keyward)
kw=$here/target/release/keyward
work=$(mktemp -d)
cleanup() {
  [ -n "${kw_pid:-}" ] && kill "$kw_pid" 2>/dev/null || true
  "$harness/stop-mock.sh" >/dev/null 2>&1 || true
  [ "${PEER:-1}" = 1 ] && "$harness/stop-litellm.sh" >/dev/null 2>&1 || true
  rm -rf "$work"
}
trap cleanup EXIT
"$harness/start-mock.sh"

# run_keyward LABEL [REDACTION] [VARIANT]: one harness run of Keyward; REDACTION=off
# turns secret screening off both ways (the default screens and redacts both ways);
# VARIANT=limits-on gives the key rate, token and concurrency limits and a daily and
# monthly budget, none of which the run reaches, so every request passes every check;
# VARIANT=watch-off turns the anomaly detectors off.
run_keyward() {
  local label=$1 redaction=${2:-} variant=${3:-}
  local dir=$work/$label
  mkdir -p "$dir"
  cat > "$dir/keyward.toml" <<TOML
[server]
listen = "127.0.0.1:$port"
[store]
url = "sqlite://keyward.db"
[vault]
master_key_file = "master.key"
[[providers]]
name = "mock"
kind = "openai"
base_url = "http://127.0.0.1:18080/v1"
credential = "mock-upstream"
models = ["gpt-4o-mini", "gpt-4o-mini-sse"]
TOML
  if [ "$redaction" = off ]; then
    printf '[redaction]\ninbound = "off"\noutbound = "off"\n' >> "$dir/keyward.toml"
  fi
  if [ "$variant" = watch-off ]; then
    printf '[watch]\nenabled = false\n' >> "$dir/keyward.toml"
  fi
  if [ "$variant" = limits-redis ]; then
    printf '[cluster]\nredis_url = "%s"\nkey_prefix = "keyward-bench-%s:"\n' \
      "${REDIS_URL:-redis://127.0.0.1:6379/}" "$$-$label" >> "$dir/keyward.toml"
  fi
  "$kw" init --config "$dir/keyward.toml" >/dev/null
  printf 'sk-mock-upstream-dummy' | "$kw" vault put mock-upstream --config "$dir/keyward.toml" >/dev/null
  local key created
  created=$("$kw" keys create --config "$dir/keyward.toml" --name bench --env prod --models '*' --json)
  key=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["key"])' <<<"$created")
  if [ "$variant" = limits-on ] || [ "$variant" = limits-redis ]; then
    local id
    id=$(python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])' <<<"$created")
    "$kw" keys update "$id" --config "$dir/keyward.toml" --rpm 100000000 --tpm 100000000000 \
      --concurrency 100000 --daily-budget 1000000 --monthly-budget 1000000 >/dev/null
  fi
  "$kw" serve --config "$dir/keyward.toml" 2>"$dir/serve.log" &
  kw_pid=$!
  for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$port/readyz" 2>/dev/null && break; sleep 0.1; done
  GATEWAY_URL=http://127.0.0.1:$port GATEWAY_KEY=$key GATEWAY_PIDS=$kw_pid "$harness/run.sh" "$label" $rates
  kill "$kw_pid"; wait "$kw_pid" 2>/dev/null || true; kw_pid=
}

# REDACTION_COMPARE=1: the same run with screening off too, for the cost of
# redaction; REDACTION_ORDER="off on" swaps the order, to check that the first
# run is not favoured or penalised by running first.
# run_pair ORDER_VAR DEFAULT_ORDER MODE RUN MODE RUN: the two runs of a comparison in
# the order $ORDER_VAR gives (DEFAULT_ORDER when unset); each RUN is
# LABEL:REDACTION:VARIANT for run_keyward.
run_pair() {
  local order_var=$1 default=$2 mode label redaction variant
  local -A runs=([$3]=$4 [$5]=$6)
  for mode in ${!order_var:-$default}; do
    [ -n "${runs[$mode]:-}" ] || { echo "$order_var holds '$3' and '$5', not '$mode'" >&2; exit 2; }
    IFS=: read -r label redaction variant <<<"${runs[$mode]}"
    run_keyward "$label" "$redaction" "$variant"
  done
}

if [ "${CLUSTER_COMPARE:-0}" = 1 ]; then
  run_pair CLUSTER_ORDER "local redis" local keyward-counters-local::limits-on redis keyward-counters-redis::limits-redis
elif [ "${WATCH_COMPARE:-0}" = 1 ]; then
  run_pair WATCH_ORDER "on off" on keyward-watch-on:: off keyward-watch-off::watch-off
elif [ "${LIMITS_COMPARE:-0}" = 1 ]; then
  run_pair LIMITS_ORDER "off on" on keyward-limits-on::limits-on off keyward-limits-off::
elif [ "${REDACTION_COMPARE:-0}" = 1 ]; then
  run_pair REDACTION_ORDER "on off" on keyward:: off keyward-redaction-off:off:
else
  run_keyward keyward
fi

if [ "${PROXY_FLOOR:-0}" = 1 ]; then
  proxy_port=${PROXY_PORT:-18090}
  mkdir -p "$work/nginx/tmp"
  cat > "$work/nginx/nginx.conf" <<NGINX
worker_processes ${NGINX_WORKERS:-2};
pid nginx.pid;
error_log error.log warn;
events { worker_connections 8192; }
http {
    access_log off;
    client_body_temp_path tmp;
    proxy_temp_path tmp;
    keepalive_requests 10000000;
    upstream mock { server 127.0.0.1:18080; keepalive 256; keepalive_requests 10000000; }
    server {
        listen 127.0.0.1:$proxy_port backlog=4096 reuseport;
        location / {
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
        }
    }
}
NGINX
  nginx -p "$work/nginx/" -c "$work/nginx/nginx.conf"
  for _ in $(seq 50); do curl -fsS -o /dev/null "http://127.0.0.1:$proxy_port/health" 2>/dev/null && break; sleep 0.1; done
  GATEWAY_URL=http://127.0.0.1:$proxy_port GATEWAY_KEY=sk-mock-upstream-dummy \
    GATEWAY_PIDS="$(cat "$work/nginx/nginx.pid") $(pgrep -P "$(cat "$work/nginx/nginx.pid")" | tr '\n' ' ')" \
    "$harness/run.sh" "nginx-proxy-${NGINX_WORKERS:-2}w" $rates
  kill "$(cat "$work/nginx/nginx.pid")"
fi

if [ "${PEER:-1}" = 1 ]; then
  "$harness/start-litellm.sh"
  GATEWAY_URL=http://127.0.0.1:4000 GATEWAY_KEY=sk-bench-master-key "$harness/run.sh" litellm-1w $rates
fi
