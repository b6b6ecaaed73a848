#!/usr/bin/env bash
# booking-bench beside pgbench on the same machine, in the same run.
#
#   bash bench/compare.sh [ROUNDS] [-- booking-bench options]
#
# Needs a release build (`cargo build --release --workspace --bins`), PostgreSQL answering
# on PGHOST:PGPORT (default 127.0.0.1:5432, user postgres) and pgbench. Creates two
# throwaway databases (booking_bench, booking_pgbench, dropped at the end), starts the
# release stack on the first, then alternates rounds: booking-bench at 16 clients against
# the plain-text stack and against the mutual-TLS one (each its own database; one stack runs
# at a time, the order swapped every round), then pgbench's built-in tpcb-like script at 16
# clients in both its default (simple query) protocol and -M prepared. Prints each round,
# the ratio edits/s ÷ TPS per round, where the CPU went (milliseconds per edit by process,
# from booking-bench) and what TLS costs.
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
shift || true
[[ "${1:-}" == "--" ]] && shift
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
CLIENTS=16
BENCH_DB=booking_bench
TLS_DB=booking_bench_tls
PGBENCH_DB=booking_pgbench
BIN=target/release
for tool in "$BIN/booking-stack" "$BIN/booking-bench"; do
    [[ -x "$tool" ]] || { echo "missing $tool: run cargo build --release --workspace --bins" >&2; exit 2; }
done
command -v pgbench >/dev/null || { echo "pgbench not found (Debian: postgresql-client)" >&2; exit 2; }

# The mail sink stands in for an SMTP relay on another host: keep it in memory (tmpfs) when
# the machine has one, so creating .eml files on a disk filesystem is not measured.
mail=$(mktemp -d -p /dev/shm 2>/dev/null || mktemp -d)
stack=
stop_stack() {
    if [[ -n "$stack" ]]; then
        kill -INT "$stack" 2>/dev/null || true
        wait "$stack" 2>/dev/null || true
        stack=
    fi
}
cleanup() {
    stop_stack
    psql -qX -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "DROP DATABASE IF EXISTS $TLS_DB" \
        -c "DROP DATABASE IF EXISTS $PGBENCH_DB" >/dev/null 2>&1 || true
    rm -rf "$mail"
}
trap cleanup EXIT

psql -qX -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "CREATE DATABASE $BENCH_DB" \
    -c "DROP DATABASE IF EXISTS $TLS_DB" -c "CREATE DATABASE $TLS_DB" \
    -c "DROP DATABASE IF EXISTS $PGBENCH_DB" -c "CREATE DATABASE $PGBENCH_DB" >/dev/null 2>&1
pgbench -i -s 16 -q "$PGBENCH_DB" >/dev/null 2>&1
# Flush what the initialisation wrote (~250 MB) before measuring anything, so the checkpoint
# it triggers does not run during the first rounds of either benchmark.
psql -qX -c "CHECKPOINT" >/dev/null

# start_stack off|on: the release stack in plain text on BENCH_DB, or with mutual TLS on
# TLS_DB (certificates made anew in $mail/certs at each start).
start_stack() {
    local log="$mail/stack.log" flags=(--insecure) db=$BENCH_DB policy=
    # With mutual TLS the benchmark's clients present the stack's `staff` certificate, which
    # bench-policy.json lists as a client that books and puts floor plans (as an operator
    # lists a booking front end): every call goes through the access check.
    [[ $1 == on ]] && flags=(--cert-dir "$mail/certs") && db=$TLS_DB && policy=$PWD/bench/bench-policy.json
    env ${policy:+AUTHZ_POLICY=$policy} RUST_LOG=warn "$BIN/booking-stack" --no-demo --mail-dir "$mail" "${flags[@]}" \
        --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$db" >"$log" 2>&1 &
    stack=$!
    # booking-stack prints its guide once all three services answer health checks.
    for _ in $(seq 200); do
        grep -q "The stack is up" "$log" && break
        kill -0 "$stack" 2>/dev/null || { cat "$log" >&2; exit 1; }
        sleep 0.3
    done
    grep -q "The stack is up" "$log" || { echo "the stack did not come up" >&2; cat "$log" >&2; exit 1; }
}

# bench off|on ROUND: one booking-bench run against a fresh stack of that kind.
bench() {
    start_stack "$1"
    local db=$BENCH_DB tls=()
    [[ $1 == on ]] && db=$TLS_DB && tls=(--cert-dir "$mail/certs")
    # pgbench vacuums its tables before each run; give the stack's database the same from
    # the second round on (the first starts on empty tables, whose statistics a VACUUM would
    # fix at "empty" for the planner), as autovacuum would in production (it may be off on
    # a CI machine).
    [[ $2 -gt 1 ]] && psql -qX -d "$db" -c "VACUUM ANALYZE" >/dev/null
    "$BIN/booking-bench" --concurrency "$CLIENTS" --duration 10s --json "${tls[@]}" "${BENCH_ARGS[@]}" 2>/dev/null | tail -1
    stop_stack
}
BENCH_ARGS=("$@")

tps() { pgbench -c "$CLIENTS" -j 2 -T 10 "$@" "$PGBENCH_DB" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }

printf '%-6s %9s %7s %7s %13s %15s %8s %8s\n' round edits/s p50_ms p99_ms tps_simple tps_prepared ratio_s ratio_p
for round in $(seq "$ROUNDS"); do
    if (( round % 2 )); then
        json=$(bench off "$round")
        tls_json=$(bench on "$round")
    else
        tls_json=$(bench on "$round")
        json=$(bench off "$round")
    fi
    simple=$(tps)
    prepared=$(tps -M prepared)
    python3 - "$round" "$json" "$simple" "$prepared" "$mail/rounds.jsonl" "$tls_json" <<'EOF'
import json, sys
round_, summary, simple, prepared = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
tls = json.loads(sys.argv[6])
with open(sys.argv[5], "a") as rounds:
    rounds.write(json.dumps({"summary": summary, "simple": simple, "prepared": prepared, "tls": tls}) + "\n")
eps = summary["edits_per_sec"]
print(f"{round_:<6} {eps:9.0f} {summary['p50_ms']:7.1f} {summary['p99_ms']:7.1f} {simple:13.0f} {prepared:15.0f} "
      f"{eps / simple:8.3f} {eps / prepared:8.3f}")
tls_cpu = tls.get("cpu_ms_per_edit", {}).get("total", 0.0)
print(f"  TLS  {tls['edits_per_sec']:9.0f} {tls['p50_ms']:7.1f} {tls['p99_ms']:7.1f}   (mutual TLS; CPU {tls_cpu:.2f} ms/edit)")
cpu = summary.get("cpu_ms_per_edit", {})
if cpu.get("total"):
    parts = "  ".join(f"{name} {ms:.2f}" for name, ms in sorted(cpu.items(), key=lambda kv: -kv[1]) if name != "total")
    cap = summary.get("cores", 1) * 1000 / cpu["total"]
    print(f"       CPU ms/edit: {parts}  (total {cpu['total']:.2f}: at most {cap:.0f} edits/s on {summary.get('cores', 1)} cores)")
rss = summary.get("peak_rss_mib", {})
if rss:
    print("       peak RSS MiB: " + "  ".join(f"{name} {mib:.1f}" for name, mib in sorted(rss.items())))
EOF
done

# The rounds together: medians, and each target of the benchmark read against them
# (figures to read, not a gate: this script fails only when it cannot measure).
python3 - "$mail/rounds.jsonl" <<'EOF'
import json, statistics, sys
rounds = [json.loads(line) for line in open(sys.argv[1])]
med = statistics.median
eps = [r["summary"]["edits_per_sec"] for r in rounds]
p99 = [r["summary"]["p99_ms"] for r in rounds]
ratio_s = med([r["summary"]["edits_per_sec"] / r["simple"] for r in rounds])
ratio_p = med([r["summary"]["edits_per_sec"] / r["prepared"] for r in rounds])
rss = {}
for r in rounds:
    for name, mib in r["summary"].get("peak_rss_mib", {}).items():
        rss[name] = max(rss.get(name, 0.0), mib)
errors = sum(r["summary"].get("errors", 0) for r in rounds)
n = len(rounds)
verdict = lambda ok: "met" if ok else "NOT met"
print(f"\nmedian of {n} round(s) at 16 clients: {med(eps):.0f} edits/s; pgbench tpcb-like "
      f"{med([r['simple'] for r in rounds]):.0f} TPS (simple), {med([r['prepared'] for r in rounds]):.0f} TPS "
      f"(-M prepared); p99 {med(p99):.1f} ms; errors {errors}")
print(f"  target edits/s >= 0.25 x pgbench TPS: {ratio_s:.3f} of simple ({verdict(ratio_s >= 0.25)}), "
      f"{ratio_p:.3f} of -M prepared ({verdict(ratio_p >= 0.25)})")
print(f"  target p99 < 25 ms: {med(p99):.1f} ms ({verdict(med(p99) < 25)}; under 25 in {sum(v < 25 for v in p99)} of {n})")
if rss:
    listed = ", ".join(f"{name} {mib:.1f}" for name, mib in sorted(rss.items()))
    print(f"  target peak RSS < 60 MiB per service: {listed} MiB ({verdict(max(rss.values()) < 60)})")
tls_eps = med([r["tls"]["edits_per_sec"] for r in rounds])
tls_p50, tls_p99 = med([r["tls"]["p50_ms"] for r in rounds]), med([r["tls"]["p99_ms"] for r in rounds])
cpu = lambda s: s.get("cpu_ms_per_edit", {}).get("total", 0.0)
tls_errors = sum(r["tls"].get("errors", 0) for r in rounds)
print(f"  mutual TLS on (alternating with off): {tls_eps:.0f} edits/s ({tls_eps / med(eps) - 1:+.1%}), "
      f"p50 {tls_p50:.1f} ms vs {med([r['summary']['p50_ms'] for r in rounds]):.1f}, p99 {tls_p99:.1f} ms vs "
      f"{med(p99):.1f}, CPU {med([cpu(r['tls']) for r in rounds]):.2f} vs {med([cpu(r['summary']) for r in rounds]):.2f} "
      f"ms/edit; errors {tls_errors}")
EOF
