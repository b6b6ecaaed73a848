#!/usr/bin/env bash
# booking-bench beside pgbench on the same machine, in the same run.
#
#   bash bench/compare.sh [ROUNDS] [-- booking-bench options]
#
# Needs a release build (`cargo build --release --workspace --bins`), PostgreSQL answering
# on PGHOST:PGPORT (default 127.0.0.1:5432, user postgres) and pgbench. Creates two
# throwaway databases (booking_bench, booking_pgbench, dropped at the end), starts the
# release stack on the first, then alternates rounds: booking-bench at 16 clients, then
# pgbench's built-in tpcb-like script at 16 clients in both its default (simple query)
# protocol and -M prepared. Prints each round, the ratio edits/s ÷ TPS per round, and
# where the CPU went (milliseconds per edit by process, from booking-bench).
set -euo pipefail
cd "$(dirname "$0")/.."

ROUNDS=${1:-3}
shift || true
[[ "${1:-}" == "--" ]] && shift
export PGHOST=${PGHOST:-127.0.0.1} PGPORT=${PGPORT:-5432} PGUSER=${PGUSER:-postgres}
CLIENTS=16
BENCH_DB=booking_bench
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
cleanup() {
    if [[ -n "$stack" ]]; then
        kill -INT "$stack" 2>/dev/null || true
        wait "$stack" 2>/dev/null || true
    fi
    psql -qX -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "DROP DATABASE IF EXISTS $PGBENCH_DB" >/dev/null 2>&1 || true
    rm -rf "$mail"
}
trap cleanup EXIT

psql -qX -c "DROP DATABASE IF EXISTS $BENCH_DB" -c "CREATE DATABASE $BENCH_DB" \
    -c "DROP DATABASE IF EXISTS $PGBENCH_DB" -c "CREATE DATABASE $PGBENCH_DB" >/dev/null 2>&1
pgbench -i -s 16 -q "$PGBENCH_DB" >/dev/null 2>&1
# Flush what the initialisation wrote (~250 MB) before measuring anything, so the checkpoint
# it triggers does not run during the first rounds of either benchmark.
psql -qX -c "CHECKPOINT" >/dev/null

log="$mail/stack.log"
RUST_LOG=warn "$BIN/booking-stack" --no-demo --mail-dir "$mail" \
    --database-url "postgres://$PGUSER@$PGHOST:$PGPORT/$BENCH_DB" >"$log" 2>&1 &
stack=$!
# booking-stack prints its guide once all three services answer health checks.
for _ in $(seq 200); do
    grep -q "The stack is up" "$log" && break
    kill -0 "$stack" 2>/dev/null || { cat "$log" >&2; exit 1; }
    sleep 0.3
done
grep -q "The stack is up" "$log" || { echo "the stack did not come up" >&2; cat "$log" >&2; exit 1; }

tps() { pgbench -c "$CLIENTS" -j 2 -T 10 "$@" "$PGBENCH_DB" 2>/dev/null | sed -n 's/^tps = \([0-9.]*\).*/\1/p'; }

printf '%-6s %9s %7s %7s %13s %15s %8s %8s\n' round edits/s p50_ms p99_ms tps_simple tps_prepared ratio_s ratio_p
for round in $(seq "$ROUNDS"); do
    # pgbench vacuums its tables before each run; give the stack's database the same from
    # the second round on (the first starts on empty tables, whose statistics a VACUUM would
    # fix at "empty" for the planner), as autovacuum would in production (it may be off on
    # a CI machine).
    [[ $round -gt 1 ]] && psql -qX -d "$BENCH_DB" -c "VACUUM ANALYZE" >/dev/null
    json=$("$BIN/booking-bench" --concurrency "$CLIENTS" --duration 10s --json "$@" 2>/dev/null | tail -1)
    simple=$(tps)
    prepared=$(tps -M prepared)
    python3 - "$round" "$json" "$simple" "$prepared" "$mail/rounds.jsonl" <<'EOF'
import json, sys
round_, summary, simple, prepared = sys.argv[1], json.loads(sys.argv[2]), float(sys.argv[3]), float(sys.argv[4])
with open(sys.argv[5], "a") as rounds:
    rounds.write(json.dumps({"summary": summary, "simple": simple, "prepared": prepared}) + "\n")
eps = summary["edits_per_sec"]
print(f"{round_:<6} {eps:9.0f} {summary['p50_ms']:7.1f} {summary['p99_ms']:7.1f} {simple:13.0f} {prepared:15.0f} "
      f"{eps / simple:8.3f} {eps / prepared:8.3f}")
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
EOF
