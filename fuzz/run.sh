#!/usr/bin/env bash
# Runs Spate's fuzz targets (cargo-fuzz / libFuzzer) for a given time each.
#
#   fuzz/run.sh [--seconds N] [--seeds] [TARGET...]
#
#   --seconds N   run each target N seconds (default 60)
#   --seeds       (re)write the committed seed corpora fuzz/corpus/<target>/ from the real
#                 encoders (other files there, e.g. inputs kept from findings, stay), then exit
#   TARGET        request, batch, recovery, controller_frame, admin_http (default: all)
#
# Each target starts from its committed seeds (fuzz/corpus/<target>, read-only) plus its
# working corpus (fuzz/target/corpus/<target>, where new inputs go; not committed). A crash
# leaves its input in fuzz/artifacts/<target>/ and makes the script exit non-zero; reproduce
# with `cargo +nightly fuzz run <target> fuzz/artifacts/<target>/<file>`. Logs and a summary
# line per target (execs, coverage, corpus; summary.txt and summary.jsonl) go to
# fuzz/target/logs/.
#
# Needs cargo-fuzz and a nightly toolchain (FUZZ_TOOLCHAIN, default +nightly). Where only
# stable exists, FUZZ_TOOLCHAIN=+stable RUSTC_BOOTSTRAP=1 lets stable take the -Z flags.
# Runs under `nice` when FUZZ_NICE is set (e.g. FUZZ_NICE=19).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

ALL_TARGETS=(request batch recovery controller_frame admin_http sasl)
SECONDS_EACH=60
SEEDS=0
TARGETS=()
while [ $# -gt 0 ]; do
  case "$1" in
    --seconds) SECONDS_EACH="$2"; shift 2 ;;
    --seconds=*) SECONDS_EACH="${1#*=}"; shift ;;
    --seeds) SEEDS=1; shift ;;
    -h|--help) sed -n '2,20p' "$0"; exit 0 ;;
    -*) echo "unknown option $1" >&2; exit 2 ;;
    *) TARGETS+=("$1"); shift ;;
  esac
done
[ ${#TARGETS[@]} -gt 0 ] || TARGETS=("${ALL_TARGETS[@]}")

TOOLCHAIN="${FUZZ_TOOLCHAIN:-+nightly}"
NICE=()
[ -n "${FUZZ_NICE:-}" ] && NICE=(nice -n "$FUZZ_NICE")
if ! cargo "$TOOLCHAIN" fuzz --version >/dev/null 2>&1; then
  echo "cargo-fuzz or the $TOOLCHAIN toolchain is missing: cargo install cargo-fuzz --locked" >&2
  exit 2
fi

# The longest input each target tries (libFuzzer's -max_len).
max_len() {
  case "$1" in
    recovery) echo 65536 ;;
    admin_http) echo 4096 ;;
    *) echo 16384 ;;
  esac
}

# glommio (the recovery target) locks memory for its io_uring rings.
ulimit -l unlimited 2>/dev/null || ulimit -l "$(ulimit -H -l)" 2>/dev/null || true

LOGS="fuzz/target/logs"
mkdir -p "$LOGS"
if ! "${NICE[@]}" cargo "$TOOLCHAIN" fuzz build -O >"$LOGS/build.log" 2>&1; then
  tail -n 40 "$LOGS/build.log" >&2
  echo "building the fuzz targets failed (log: $LOGS/build.log)" >&2
  exit 1
fi

if [ "$SEEDS" = 1 ]; then
  for target in "${TARGETS[@]}"; do
    mkdir -p "fuzz/corpus/$target" fuzz/target/empty
    SPATE_FUZZ_SEEDS="fuzz/corpus/$target" cargo "$TOOLCHAIN" fuzz run -O "$target" \
      fuzz/target/empty -- -runs=0
  done
  exit 0
fi

failed=()
for target in "${TARGETS[@]}"; do
  work="fuzz/target/corpus/$target"
  mkdir -p "$work" "fuzz/artifacts/$target"
  log="$LOGS/$target.log"
  echo "==> $target: ${SECONDS_EACH}s (log: $log)"
  status=0
  "${NICE[@]}" cargo "$TOOLCHAIN" fuzz run -O "$target" "$work" "fuzz/corpus/$target" -- \
    -max_total_time="$SECONDS_EACH" -max_len="$(max_len "$target")" -timeout=30 \
    -rss_limit_mb=2048 -print_final_stats=1 >"$log" 2>&1 || status=$?
  execs=$(grep -o 'stat::number_of_executed_units: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  rate=$(grep -o 'stat::average_exec_per_sec: *[0-9]*' "$log" | grep -o '[0-9]*$' || true)
  last=$(grep -E '^#[0-9]+[[:space:]]+(DONE|pulse|NEW|REDUCE|INITED)' "$log" | tail -n 1 || true)
  cov=$(sed -n 's/.* cov: \([0-9]*\).*/\1/p' <<<"$last")
  ft=$(sed -n 's/.* ft: \([0-9]*\).*/\1/p' <<<"$last")
  corp=$(sed -n 's/.* corp: \([0-9]*\/[0-9a-zA-Z]*\).*/\1/p' <<<"$last")
  rss=$(sed -n 's/.* rss: \([0-9]*\)Mb.*/\1/p' <<<"$last")
  summary="$target: exit=$status execs=${execs:-?} exec/s=${rate:-?} cov=${cov:-?} ft=${ft:-?} corpus=${corp:-?} rss=${rss:-?}Mb"
  echo "    $summary"
  echo "$summary" >>"$LOGS/summary.txt"
  printf '{"target":"%s","seconds":%s,"exit":%s,"execs":%s,"exec_per_s":%s,"cov":%s,"ft":%s,"corpus":"%s","rss_mb":%s,"commit":"%s"}\n' \
    "$target" "$SECONDS_EACH" "$status" "${execs:-null}" "${rate:-null}" "${cov:-null}" \
    "${ft:-null}" "${corp:-}" "${rss:-null}" "$(git rev-parse --short HEAD 2>/dev/null)" \
    >>"$LOGS/summary.jsonl"
  if [ "$status" != 0 ]; then
    failed+=("$target")
    grep -E 'panicked|ERROR: libFuzzer|SUMMARY|Test unit written' "$log" | head -n 8 | sed 's/^/    /'
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz targets failed: ${failed[*]} (inputs in fuzz/artifacts/)" >&2
  exit 1
fi
