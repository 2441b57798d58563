#!/usr/bin/env bash
# Reaction time of the whole autoscaling pipeline on a real Docker engine (issue 9, "Figures"):
# from a load step that needs 2 → 4 replicas to the added replicas ready (health check passing),
# with 1 s cgroup collection for the scheduler's containers and shipping batches no older than
# 1 s. The service is busybox httpd whose CGI script burns ~0.1 s of CPU per request, each
# replica limited to 0.25 core; four curl loops on loopback are the load.
#
#   bench/autoscaler/reaction.sh            # 5 trials, release binary (built if missing)
#   TRIALS=10 bench/autoscaler/reaction.sh
#   TIDEWATCH=target/debug/tidewatch bench/autoscaler/reaction.sh
#
# Output: one line per trial and a summary (p50, max) on stdout.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
TIDEWATCH=${TIDEWATCH:-$ROOT/target/release/tidewatch}
TRIALS=${TRIALS:-5}
SERVICE=tw-bench-burn
INSTANCE=bench-autoscaler-reaction
IMAGE=tidewatch-test/busybox
PORT=${PORT:-19790}
ENDPOINT=${ENDPOINT:-19791}
WORK=$(mktemp -d /tmp/tw-reaction.XXXXXX)

if [[ ! -x $TIDEWATCH ]]; then
    (cd "$ROOT" && cargo build --release -p tidewatch --bin tidewatch) >&2
fi
docker image inspect "$IMAGE" >/dev/null 2>&1 ||
    tar -C "$(dirname "$(readlink -f /bin/busybox)")" -c busybox | docker import - "$IMAGE" >/dev/null

server_pid=""
load_pids=()
cleanup() {
    for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    [[ -n $server_pid ]] && kill "$server_pid" 2>/dev/null && wait "$server_pid" 2>/dev/null || true
    docker ps -aq --filter "label=tidewatch.scheduler=$INSTANCE" | xargs -r docker rm -f >/dev/null
    docker network ls -q --filter "label=tidewatch.scheduler=$INSTANCE" | xargs -r docker network rm >/dev/null 2>&1 || true
    rm -rf "$WORK"
}
trap cleanup EXIT

cat >"$WORK/tidewatch.yaml" <<EOF
collector:
  docker: {include: {labels: ["tidewatch.scheduler=$INSTANCE"]}}
  host: {enabled: false}
scheduler:
  instance: $INSTANCE
  reconcile_interval: 250ms
  services:
    - name: $SERVICE
      image: $IMAGE
      command: ["/busybox", "sh", "-c", "mkdir -p /www/cgi-bin && echo ok > /www/index.html && printf '#!/busybox sh\\\\ni=0\\\\nwhile [ \$i -lt 30000 ]; do i=\$((i+1)); done\\\\necho Content-Type: text/plain\\\\necho\\\\necho burnt\\\\n' > /www/cgi-bin/burn && chmod +x /www/cgi-bin/burn && exec /busybox httpd -f -p 8080 -h /www"]
      ports: [{container: 8080, endpoint: $ENDPOINT}]
      resources: {limits: {cpus: 0.25, memory: 32MiB}}
      healthcheck: {http: /, interval: 500ms, timeout: 1s, retries: 2}
      stop_grace_period: 2s
      replicas: 2
      autoscale:
        min_replicas: 2
        max_replicas: 4
        metrics: [{cpu: {target_utilization: 50}}]
        behavior:
          scale_down: {stabilization_window: 10s, policies: [{type: Percent, value: 100, period: 1s}]}
EOF

"$TIDEWATCH" --config "$WORK/tidewatch.yaml" up --listen "127.0.0.1:$PORT" --data-dir "$WORK/data" \
    >"$WORK/server.log" 2>&1 &
server_pid=$!

ready() {
    curl -sf "http://127.0.0.1:$PORT/api/v1/services/$SERVICE" |
        python3 -c 'import json,sys; d=json.load(sys.stdin); d=d.get("data", d); print(d["ready"])' 2>/dev/null || echo 0
}
wait_ready() { # wait until exactly $1 replicas are ready, at most $2 seconds
    local deadline=$((SECONDS + $2))
    while ((SECONDS < deadline)); do
        [[ $(ready) == "$1" ]] && return 0
        sleep 0.1
    done
    return 1
}
now() { date +%s.%N; }

wait_ready 2 120 || { echo "service never had 2 ready replicas; log: $WORK/server.log" >&2; exit 2; }
results=()
for trial in $(seq "$TRIALS"); do
    wait_ready 2 180 || { echo "trial $trial: not back at 2 replicas" >&2; exit 2; }
    sleep 5 # a quiet baseline in the rate window
    t0=$(now)
    load_pids=()
    for _ in 1 2 3 4; do
        (while :; do curl -s -o /dev/null "http://127.0.0.1:$ENDPOINT/cgi-bin/burn"; done) &
        load_pids+=($!)
    done
    if wait_ready 4 120; then
        t1=$(now)
        r=$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }')
        results+=("$r")
        echo "trial $trial: load step → 4 replicas ready in ${r} s"
    else
        echo "trial $trial: 4 replicas not ready within 120 s" >&2
    fi
    for p in "${load_pids[@]}"; do kill "$p" 2>/dev/null || true; done
    wait "${load_pids[@]}" 2>/dev/null || true
    load_pids=()
    if [[ ${EXPLAIN:-0} == 1 ]]; then
        "$TIDEWATCH" autoscaler explain "$SERVICE" --server "127.0.0.1:$PORT" | sed 's/^/    /'
    fi
done
printf '%s\n' "${results[@]}" | sort -n | awk '
    { v[NR] = $1 }
    END { if (NR == 0) exit 1; printf "trials %d: p50 %.1f s, max %.1f s (goal ≤ 10 s)\n", NR, v[int((NR + 1) / 2)], v[NR] }'
