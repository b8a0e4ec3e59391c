#!/usr/bin/env bash
# Checks everything in deploy/ that can be checked without a running replica.
#
#   deploy/check.sh                   all checks; installs promtool, systemd-analyze and jq from
#                                     Debian's packages when missing (apt-get update once first)
#   deploy/check.sh --quick           skip the checks that build container images
#   deploy/check.sh --list-metrics    print, one per line, every notary_* series name that the
#                                     dashboard and the alert rules query, exactly as written there
#                                     (e.g. notary_requests_total, notary_fsync_duration_seconds_bucket),
#                                     and exit; a running replica's /metrics must export each one
#   deploy/check.sh --list-metrics --all   the same plus the names from other exporters the rules
#                                     use (Prometheus' own `up`, node_exporter's node_filesystem_*)
#
# What is checked:
#   1. promtool check config (both scrape configs), check rules, test rules (alerts_test.yml)
#   2. every alert has summary, description and a runbook_url whose anchor is a heading of
#      docs/OPERATIONS.md; the unit tests cover at least three alerts
#   3. the dashboard is valid JSON, its panels have unique ids, take the data source from the
#      $datasource variable, and query only names of the metrics contract below (so do the rules)
#   4. systemd-analyze verify of the unit, sysusers and tmpfiles snippets applied, and the
#      unit's offline security exposure, all in a scratch root directory (see check_systemd)
#   5. shell scripts parse (bash -n); compose.yml is valid (docker-compose config)
#   6. with Docker: the base image exists or is made (build-base-image.sh); the notaryd image
#      builds (from the real binary if one is built, else a stand-in script), runs as `notary`,
#      has its health check, and the health check reports an unreachable replica as unhealthy;
#      the Prometheus image builds from Debian's package and its promtool accepts our config.
#      Without Docker these are skipped with a message.
set -euo pipefail

here="$(cd "$(dirname "$0")" && pwd)"
repo="$(cd "$here/.." && pwd)"
dashboard="$here/grafana/notary-dashboard.json"
rules="$here/prometheus/alerts.yml"
rules_test="$here/prometheus/alerts_test.yml"
ops="$repo/docs/OPERATIONS.md"
unit="$here/systemd/notaryd.service"

# The metrics contract: every series name a replica exports (histograms as their _bucket,
# _sum and _count series, counters with _total), as agreed for issue 9.
contract() {
  local h
  printf '%s\n' notary_build_info notary_committed_height notary_consensus_round \
    notary_is_leader notary_has_quorum notary_round_changes_total notary_blocks_committed_total \
    notary_peers_connected notary_peer_up notary_peer_rtt_seconds notary_peer_sent_bytes_total \
    notary_peer_received_bytes_total notary_frames_rejected_total notary_requests_total \
    notary_requests_in_flight notary_admission_limit notary_db_size_bytes \
    notary_tls_cert_expiry_timestamp_seconds \
    notary_equivocations_total notary_signing_halted notary_peer_batches_total
  for h in notary_commit_latency_seconds notary_round_duration_seconds \
    notary_request_duration_seconds notary_request_queue_seconds notary_batch_size_requests \
    notary_signing_duration_seconds notary_fsync_duration_seconds; do
    printf '%s\n' "${h}_bucket" "${h}_sum" "${h}_count"
  done
}

# The PromQL expressions of alerts.yml: each `expr:` value, folded lines included.
rule_exprs() {
  awk '
    function indent(s) { match(s, /^ */); return RLENGTH }
    /^[[:space:]]*#/ { next }
    inexpr && (NF == 0 || indent($0) > keyind) { print; next }
    { inexpr = 0 }
    /^[[:space:]]*(- )?expr:/ {
      keyind = indent($0); line = $0; sub(/^[[:space:]]*(- )?expr:[[:space:]]*/, "", line)
      print line; inexpr = 1
    }' "$rules"
}

# The dashboard's queries: panel targets and template-variable queries.
dashboard_exprs() {
  grep -E '"(expr|query|definition)":' "$dashboard"
}

list_metrics() {
  local all="$1"
  {
    rule_exprs | grep -oE 'notary_[a-z0-9_]+' || true
    dashboard_exprs | grep -oE 'notary_[a-z0-9_]+' || true
    if [ "$all" = 1 ]; then
      rule_exprs | grep -oE '(node_[a-z0-9_]+|\bup\b)' || true
      dashboard_exprs | grep -oE 'node_[a-z0-9_]+' || true
    fi
  } | sort -u
}

quick=0
list=0
all=0
for arg in "$@"; do
  case "$arg" in
    --quick) quick=1 ;;
    --list-metrics) list=1 ;;
    --all) all=1 ;;
    -h|--help) sed -n '2,30p' "$0"; exit 0 ;;
    *) echo "check.sh: unknown argument $arg" >&2; exit 2 ;;
  esac
done
if [ "$list" = 1 ]; then
  list_metrics "$all"
  exit 0
fi

failures=0
ok() { echo "  ok    $*"; }
fail() { echo "  FAIL  $*"; failures=$((failures + 1)); }
skip() { echo "  skip  $*"; }
section() { echo "== $*"; }

# --- tools -------------------------------------------------------------------------------
ensure_tools() {
  local need=()
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  command -v systemd-analyze >/dev/null 2>&1 || need+=(systemd)
  command -v jq >/dev/null 2>&1 || need+=(jq)
  [ ${#need[@]} -eq 0 ] && return 0
  echo "check.sh: installing ${need[*]} from Debian's packages" >&2
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq
  # policy-rc.d keeps the prometheus package from starting a server on this machine.
  local policy=/usr/sbin/policy-rc.d made_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 0755 "$policy" && made_policy=1
  fi
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  [ "$made_policy" = 1 ] && $sudo rm -f "$policy"
  return 0
}

# --- 1. Prometheus -----------------------------------------------------------------------
check_prometheus() {
  section "Prometheus configuration and alert rules (promtool $(promtool --version 2>&1 | awk 'NR==1{print $3}'))"
  local f out
  for f in "$here"/prometheus/prometheus*.yml; do
    if out="$(promtool check config "$f" 2>&1)"; then ok "promtool check config ${f#"$repo"/}"; else fail "promtool check config ${f#"$repo"/}"; echo "$out"; fi
  done
  if out="$(promtool check rules "$rules" 2>&1)"; then
    ok "promtool check rules: $(echo "$out" | grep -oE '[0-9]+ rules found')"
  else fail "promtool check rules"; echo "$out"; fi
  if out="$(cd "$here/prometheus" && promtool test rules alerts_test.yml 2>&1)"; then
    ok "promtool test rules alerts_test.yml"
  else fail "promtool test rules alerts_test.yml"; echo "$out"; fi
}

# --- 2. Alert annotations and runbooks ---------------------------------------------------
check_runbooks() {
  section "Alert annotations and runbook anchors in docs/OPERATIONS.md"
  local name block anchor missing tested
  local alerts
  alerts="$(grep -oE '^[[:space:]]*- alert: [A-Za-z0-9]+' "$rules" | awk '{print $3}')"
  for name in $alerts; do
    block="$(awk -v n="$name" '
      $0 ~ "- alert: " n "$" { on = 1; print; next }
      on && /- alert: / { exit }
      on { print }' "$rules")"
    missing=""
    for key in summary description runbook_url; do
      grep -q "^[[:space:]]*$key:" <<<"$block" || missing="$missing $key"
    done
    anchor="$(echo "$name" | tr '[:upper:]' '[:lower:]')"
    grep -q "runbook_url: \"docs/OPERATIONS.md#$anchor\"" <<<"$block" || missing="$missing runbook_url=docs/OPERATIONS.md#$anchor"
    if [ ! -f "$ops" ] || ! grep -qE "^#{2,4} $name\$" "$ops"; then missing="$missing heading-in-OPERATIONS.md"; fi
    if [ -z "$missing" ]; then ok "$name"; else fail "$name: missing$missing"; fi
  done
  tested="$(grep -oE 'alertname: [A-Za-z0-9]+' "$rules_test" | awk '{print $2}' | sort -u)"
  if [ "$(echo "$tested" | grep -c .)" -ge 3 ]; then
    ok "alerts_test.yml covers $(echo "$tested" | grep -c .) alerts: $(echo $tested)"
  else fail "alerts_test.yml covers fewer than 3 alerts"; fi
}

# --- 3. Dashboard ------------------------------------------------------------------------
check_dashboard() {
  section "Grafana dashboard"
  if ! jq empty "$dashboard" 2>/dev/null; then fail "notary-dashboard.json is not valid JSON"; return; fi
  ok "valid JSON: $(jq '[.panels[] | select(.type != "row")] | length' "$dashboard") panels"
  local dup
  dup="$(jq -r '[.panels[].id] | group_by(.) | map(select(length > 1)) | flatten | .[]' "$dashboard")"
  if [ -z "$dup" ]; then ok "panel ids unique"; else fail "duplicate panel ids: $dup"; fi
  if jq -e '.templating.list[] | select(.name == "datasource" and .type == "datasource" and .query == "prometheus")' "$dashboard" >/dev/null; then
    ok "data source is the variable \$datasource"
  else fail "no \$datasource variable of type datasource"; fi
  local stray
  stray="$(jq -r '.panels[] | select(.type != "row") | select((.datasource.uid // "") != "${datasource}" or any(.targets[]; (.datasource.uid // "") != "${datasource}")) | .title' "$dashboard")"
  if [ -z "$stray" ]; then ok "every panel and query uses \${datasource}"; else fail "panels not on \${datasource}: $stray"; fi
  local empty
  empty="$(jq -r '.panels[] | select(.type != "row") | select((.targets | length) == 0 or any(.targets[]; (.expr // "") == "")) | .title' "$dashboard")"
  if [ -z "$empty" ]; then ok "every panel has queries"; else fail "panels without a query: $empty"; fi
  local want queries absent=""
  queries="$(dashboard_exprs)"
  for want in notary_committed_height notary_requests_total notary_request_duration_seconds_bucket \
    notary_round_changes_total notary_peers_connected notary_fsync_duration_seconds_bucket \
    notary_signing_duration_seconds_bucket notary_has_quorum notary_requests_in_flight; do
    case "$queries" in *"$want"*) ;; *) absent="$absent $want" ;; esac
  done
  if [ -z "$absent" ]; then
    ok "the first-look panels are there (height, outcomes, latency, round changes, peers, fsync, signing, quorum, in flight)"
  else fail "no panel queries$absent"; fi
}

check_contract() {
  section "Queried names against the metrics contract"
  local unknown
  unknown="$(comm -23 <(list_metrics 0) <(contract | sort -u))"
  if [ -z "$unknown" ]; then
    ok "the dashboard and rules query $(list_metrics 0 | grep -c .) notary_* names, all in the contract"
  else fail "names outside the contract: $(echo $unknown)"; fi
  local unused
  unused="$(comm -13 <(list_metrics 0 | sed -E 's/_(bucket|sum|count)$//' | sort -u) <(contract | sed -E 's/_(bucket|sum|count)$//' | sort -u))"
  if [ -z "$unused" ]; then ok "every contract metric is on the dashboard or in a rule"; else echo "  note  not queried anywhere: $(echo $unused)"; fi
}

# --- 4. systemd --------------------------------------------------------------------------
# systemd-analyze verify needs no running systemd, but it checks that ExecStart's binary
# exists and loads the unit's dependencies (sysinit.target, ...). So it runs against a
# scratch root: the machine's unit directory copied in, a stand-in at ExecStart's path, the
# sysusers and tmpfiles snippets applied there (creating the notary user and
# /var/lib/notary inside the scratch root only). What this cannot check without systemd as
# PID 1: that the sandbox lets notaryd run (that takes booting the unit for real), and that
# notaryd sends READY=1.
check_systemd() {
  section "systemd unit ($(systemd-analyze --version | head -1))"
  local root out exe units
  root="$(mktemp -d /tmp/notary-systemd-root.XXXXXX)"
  trap 'rm -rf "$root"' RETURN
  units=/usr/lib/systemd/system
  [ -d "$units" ] || units=/lib/systemd/system
  mkdir -p "$root/usr/lib/systemd" "$root/etc/systemd/system"
  cp -r "$units" "$root/usr/lib/systemd/system"
  cp "$unit" "$root/etc/systemd/system/notaryd.service"
  touch "$root/etc/passwd" "$root/etc/group"
  for exe in $(grep -E '^Exec[A-Za-z]*=' "$unit" | sed -E 's/^[^=]+=[-@:+!]*//' | awk '{print $1}' | sort -u); do
    mkdir -p "$root$(dirname "$exe")"
    printf '#!/bin/sh\nexit 0\n' >"$root$exe"
    chmod 0755 "$root$exe"
  done
  if out="$(systemd-sysusers --root="$root" "$here/systemd/notary.sysusers" 2>&1)" && grep -q '^notary:' "$root/etc/passwd"; then
    ok "sysusers snippet creates the notary user"
  else fail "systemd-sysusers notary.sysusers"; echo "$out"; fi
  if out="$(systemd-tmpfiles --root="$root" --create "$here/systemd/notary.tmpfiles" 2>&1)" \
    && [ "$(stat -c %a "$root/var/lib/notary" 2>/dev/null)" = 700 ]; then
    ok "tmpfiles snippet creates /var/lib/notary (0700)"
  else fail "systemd-tmpfiles notary.tmpfiles"; echo "$out"; fi
  # verify exits 0 on unknown keys and bad values (it only warns): any output is a failure.
  out="$(systemd-analyze verify --root="$root" notaryd.service 2>&1 || echo "exit status $?")"
  if [ -z "$out" ]; then ok "systemd-analyze verify notaryd.service: no warnings"; else fail "systemd-analyze verify"; echo "$out"; fi
  local sec
  if sec="$(systemd-analyze security --offline=yes --threshold=25 --root="$root" notaryd.service 2>&1)"; then
    ok "security exposure: $(echo "$sec" | grep -oE 'exposure level for notaryd.service: [0-9.]+ [A-Z]+' | awk '{print $5, $6}') (threshold 2.5)"
  else fail "systemd-analyze security: exposure above 2.5"; echo "$sec" | grep '✗'; fi
  for key in 'Type=notify' 'User=notary' 'StateDirectory=notary' 'Restart=on-failure' \
    'NoNewPrivileges=yes' 'ProtectSystem=strict' 'CapabilityBoundingSet=$' 'TimeoutStopSec='; do
    grep -qE "^$key" "$unit" || fail "notaryd.service lacks $key"
  done
  ok "Type=notify, User=notary, StateDirectory, Restart=on-failure, hardening present"
}

# --- 5. Scripts and Compose --------------------------------------------------------------
compose_cmd() {
  if docker compose version >/dev/null 2>&1; then echo "docker compose"
  elif command -v docker-compose >/dev/null 2>&1; then echo "docker-compose"
  fi
}

check_scripts_and_compose() {
  section "Scripts and Compose file"
  local s
  for s in "$here/check.sh" "$here"/docker/*.sh "$here/docker/notary-healthcheck"; do
    if bash -n "$s"; then ok "bash -n ${s#"$repo"/}"; else fail "bash -n ${s#"$repo"/}"; fi
  done
  local compose
  compose="$(compose_cmd)"
  if [ -z "$compose" ]; then skip "compose.yml: neither 'docker compose' nor docker-compose is installed"; return; fi
  local out
  if out="$($compose -f "$here/docker/compose.yml" --profile observability config -q 2>&1)"; then
    ok "$compose config: valid; services: $($compose -f "$here/docker/compose.yml" --profile observability config --services 2>/dev/null | tr '\n' ' ')"
  else fail "$compose config"; echo "$out"; fi
  # Services without a profile start by default: they must be exactly the 4 replicas.
  # (Read from the resolved file: docker-compose 1.x lists profiled services in --services.)
  local default
  default="$($compose -f "$here/docker/compose.yml" --profile observability config 2>/dev/null | awk '
    /^services:/ { in_s = 1; next }
    in_s && /^[^ ]/ { in_s = 0 }
    in_s && /^  [a-z0-9-]+:$/ { if (name != "" && !prof) print name; name = $1; sub(/:$/, "", name); prof = 0; next }
    in_s && /^    profiles:/ { prof = 1 }
    END { if (name != "" && !prof) print name }' | sort | tr '\n' ' ')"
  if [ "$default" = "replica-0 replica-1 replica-2 replica-3 " ]; then ok "without a profile only the 4 replicas start"
  else fail "services without a profile are '$default', want the 4 replicas"; fi
}

# --- 6. Docker ---------------------------------------------------------------------------
check_docker() {
  section "Container images"
  if [ "$quick" = 1 ]; then skip "image builds (--quick)"; return; fi
  if ! command -v docker >/dev/null 2>&1; then skip "Docker is not installed: images not built"; return; fi
  if ! docker info >/dev/null 2>&1; then skip "the Docker daemon is not reachable: images not built"; return; fi
  local out
  if out="$("$here/docker/build-base-image.sh" 2>&1)"; then ok "base image debian:bookworm-slim ($(docker image inspect -f '{{.Size}}' debian:bookworm-slim | awk '{printf "%.0f MB", $1 / 1e6}'))"
  else fail "build-base-image.sh"; echo "$out" | tail -20; return; fi

  local ctx bin tag="notaryd:check" kind
  ctx="$(mktemp -d /tmp/notary-image-ctx.XXXXXX)"
  mkdir -p "$ctx/bin"
  cp "$here/docker/Dockerfile" "$here/docker/notary-healthcheck" "$here/docker/.dockerignore" "$ctx/"
  bin="${NOTARYD:-}"
  [ -z "$bin" ] && [ -x "$repo/target/release/notaryd" ] && bin="$repo/target/release/notaryd"
  if [ -n "$bin" ] && [ -x "$bin" ]; then
    cp "$bin" "$ctx/bin/notaryd"; kind="the notaryd binary ${bin#"$repo"/}"
  else
    printf '#!/bin/sh\necho "notaryd (stand-in for check.sh)"\n' >"$ctx/bin/notaryd"; kind="a stand-in script (no target/release/notaryd yet)"
  fi
  if out="$(docker build -q -t "$tag" "$ctx" 2>&1)"; then ok "Dockerfile builds with $kind"
  else fail "docker build Dockerfile"; echo "$out" | tail -20; rm -rf "$ctx"; return; fi
  rm -rf "$ctx"
  local user hc vol
  user="$(docker image inspect -f '{{.Config.User}}' "$tag")"
  hc="$(docker image inspect -f '{{if .Config.Healthcheck}}{{join .Config.Healthcheck.Test " "}}{{end}}' "$tag")"
  vol="$(docker image inspect -f '{{range $k, $v := .Config.Volumes}}{{$k}} {{end}}' "$tag")"
  [ "$user" = "notary:notary" ] && ok "runs as $user" || fail "image user is '$user', want notary:notary"
  [ -n "$hc" ] && ok "health check: $hc" || fail "no HEALTHCHECK"
  [ "$vol" = "/var/lib/notary " ] && ok "volume: $vol" || fail "volumes are '$vol', want /var/lib/notary"
  if out="$(docker run --rm --network none --entrypoint /usr/local/bin/notary-healthcheck "$tag" 2>&1)"; then
    fail "health check passed with no replica running: $out"
  else ok "health check with no replica: unhealthy ($out)"; fi
  if [ "$(docker run --rm --entrypoint id "$tag" -u)" = "10001" ]; then ok "uid 10001 (make-cluster.sh chowns homes to it)"; else fail "uid is not 10001"; fi
  docker image rm -f "$tag" >/dev/null 2>&1 || true

  if out="$(docker build -q -t notary-prometheus:local -f "$here/docker/prometheus.Dockerfile" "$here/docker" 2>&1)"; then
    ok "prometheus.Dockerfile builds from Debian's prometheus package"
    if out="$(docker run --rm --network none -v "$here/prometheus:/etc/prometheus:ro" --entrypoint promtool notary-prometheus:local check config /etc/prometheus/prometheus.yml 2>&1)"; then
      ok "the image's promtool accepts prometheus.yml and alerts.yml as mounted by compose.yml"
    else fail "promtool in the Prometheus image"; echo "$out"; fi
  else fail "docker build prometheus.Dockerfile"; echo "$out" | tail -20; fi
}

ensure_tools
check_prometheus
check_runbooks
check_dashboard
check_contract
check_systemd
check_scripts_and_compose
check_docker

echo
if [ "$failures" -eq 0 ]; then
  echo "deploy/check.sh: all checks passed"
else
  echo "deploy/check.sh: $failures check(s) failed"
  exit 1
fi
