#!/usr/bin/env bash
# Writes the homes of a 4-replica development cluster for deploy/docker/compose.yml and
# stages the notaryd binary for the image.
#
#   deploy/docker/make-cluster.sh [--out DIR] [--notaryd PATH] [--force]
#
# 1. `notaryd testnet --replicas 4 --out DIR` (dealer keys: development only);
# 2. rewrites the shared cluster file for the Compose network: replica i's peer_address
#    becomes replica-i:7000 and its api_url http://replica-i:8000 (the service names), and
#    copies it into every home so that all four stay byte for byte identical;
# 3. rewrites each notary.toml to listen on 0.0.0.0:7000 (QUIC), 0.0.0.0:8000 (API) and
#    0.0.0.0:9000 (admin: reachable on the container network, published nowhere);
# 4. chowns the homes to uid/gid 10001, the image's `notary` user (keys stay 0600);
# 5. copies notaryd to deploy/docker/bin/notaryd, the image's build context.
# DIR defaults to deploy/docker/cluster (git-ignored, never sent to docker build).
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/../.." && pwd)"
out="$here/cluster"
notaryd=""
force=0
replicas=4
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --notaryd) notaryd="$2"; shift 2 ;;
    --force) force=1; shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "make-cluster: unknown argument $1" >&2; exit 2 ;;
  esac
done

if [ -z "$notaryd" ]; then
  for candidate in "$repo/target/release/notaryd" "$repo/target/debug/notaryd" "$(command -v notaryd || true)"; do
    if [ -n "$candidate" ] && [ -x "$candidate" ]; then notaryd="$candidate"; break; fi
  done
fi
if [ -z "$notaryd" ] || [ ! -x "$notaryd" ]; then
  echo "make-cluster: no notaryd binary; build it (cargo build --release -p notary-node) or pass --notaryd PATH" >&2
  exit 2
fi

if [ -e "$out" ] && [ -n "$(ls -A "$out" 2>/dev/null)" ]; then
  if [ "$force" -ne 1 ]; then
    echo "make-cluster: $out is not empty (it holds a cluster's keys); pass --force to replace it" >&2
    exit 2
  fi
  rm -rf "$out"
fi

"$notaryd" testnet --replicas "$replicas" --out "$out" --base-port 7000 >&2

# The shared cluster file: one rewrite, then the same bytes into every home.
shared="$out/cluster.toml"
for i in $(seq 0 $((replicas - 1))); do
  sed -i \
    -e "s|\"127\\.0\\.0\\.1:$((7000 + i))\"|\"replica-$i:7000\"|" \
    -e "s|\"http://127\\.0\\.0\\.1:$((7100 + i))\"|\"http://replica-$i:8000\"|" \
    "$shared"
done
if grep -n '127\.0\.0\.1' "$shared" >&2; then
  echo "make-cluster: loopback addresses left in $shared: the layout of notaryd testnet changed" >&2
  exit 1
fi
for i in $(seq 0 $((replicas - 1))); do
  home="$out/replica-$i"
  cp "$shared" "$home/config/cluster.toml"
  node="$home/config/notary.toml"
  sed -i -E \
    -e 's|^(peer[[:space:]]*=[[:space:]]*)"[^"]*"|\1"0.0.0.0:7000"|' \
    -e 's|^(api[[:space:]]*=[[:space:]]*)"[^"]*"|\1"0.0.0.0:8000"|' \
    -e 's|^(admin[[:space:]]*=[[:space:]]*)"[^"]*"|\1"0.0.0.0:9000"|' \
    "$node"
  for want in 'peer = "0.0.0.0:7000"' 'api = "0.0.0.0:8000"' 'admin = "0.0.0.0:9000"'; do
    grep -q "^$want" "$node" || { echo "make-cluster: could not set $want in $node" >&2; exit 1; }
  done
done

# The image runs as uid 10001; the homes must be its own (keys are 0600: only their owner
# can read them). Without root, let a throwaway container do the chown.
if [ "$(id -u)" -eq 0 ]; then
  chown -R 10001:10001 "$out"/replica-*
elif command -v docker >/dev/null 2>&1 && docker image inspect debian:bookworm-slim >/dev/null 2>&1; then
  docker run --rm --user 0 -v "$out:/cluster" debian:bookworm-slim sh -c 'chown -R 10001:10001 /cluster/replica-*'
else
  echo "make-cluster: cannot chown $out/replica-* to 10001:10001 (not root, no docker): do it before compose up" >&2
fi

install -d "$here/bin"
install -m 0755 "$notaryd" "$here/bin/notaryd"
echo "make-cluster: $replicas homes in $out; notaryd staged in $here/bin; next:" >&2
echo "  docker-compose -f $here/compose.yml up -d --build" >&2
