#!/usr/bin/env bash
# `sudo make demo`: build the lab, scan it for real, show what came back, tear it down.
set -euo pipefail
cd "$(dirname "$0")/.."
ZB="$PWD/.venv/bin/zbanner-xdp"
PY="$PWD/.venv/bin/python"
out=$(mktemp -d /tmp/zbanner-demo.XXXXXX)
cleanup() { "$ZB" lab down >/dev/null 2>&1 || true; }
trap cleanup EXIT INT TERM

"$ZB" lab up
# The lab lives in 198.18.0.0/15, which the default blocklist reserves:
# scans of it pass an empty blocklist of their own.
: >"$out/empty-blocklist"
scan() {  # scan NAME ARGS… — always inside the lab's scanner namespace
  local name=$1; shift
  ip netns exec zbl-scan "$ZB" --blocklist "$out/empty-blocklist" --cooldown 2 \
    -o "$out/$name.jsonl" --metadata "$out/$name.meta.json" "$@"
}

echo
echo "== SYN scan: 4 x /24 (open, RST-only, silent, blackholed) x ports 22,80,443 at 20K pps"
scan syn --rate 20K scan 198.18.0.0/24 198.18.1.0/24 198.18.2.0/24 198.19.2.0/24 -p 22,80,443
"$PY" scripts/show.py "$out/syn.jsonl" "$out/syn.meta.json"

# vsftpd forks per connection behind a 32-deep backlog: grab it gently.
for spec in "http 80 10K" "tls 443 10K" "ssh 22 2K" "ftp 21 500" "redis 6379 10K"; do
  set -- $spec
  echo
  echo "== Banner grab, probe $1, port $2: 198.18.0.0/26 at $3 pps"
  scan "$1" --rate "$3" -q scan 198.18.0.0/26 -p "$2" --probe "$1"
  "$PY" scripts/show.py "$out/$1.jsonl" "$out/$1.meta.json" "$1"
done

echo
echo "== Liveness: SYN + ICMP echo + DNS + NTP in one scan, tarpit check, over every kind of lab range"
scan live --rate 5K -q scan 198.18.0.0/28 198.18.1.0/28 198.18.2.0/28 198.18.3.0/28 198.18.4.5 \
  198.19.0.0/28 198.19.1.0/28 198.19.3.0/28 -p 22,80,443 --probe synscan,icmp-echo,udp-dns,udp-ntp --tarpit-check
"$ZB" report "$out/live.jsonl" --json "$out/live.report.json"
echo
echo "Results and metadata kept in $out"
