#!/usr/bin/env bash
# Run the atheris fuzz targets of fuzzing/ (make fuzz, make fuzz-smoke; fuzzing/README.md).
#
#   scripts/fuzz.sh SECONDS [TARGET...]     each target for SECONDS (default: every target)
#
# Each target starts from its seed corpus, fuzzing/corpus/TARGET/ (read only), and grows its
# own corpus in $FUZZ_OUT/TARGET/corpus/, which later runs start from too. A crash or a
# broken invariant leaves the input in $FUZZ_OUT/TARGET/crashes/ and fails the run; turn it
# into a regression (fuzzing/README.md says how) before fixing it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."

PY=${PY:-.venv/bin/python}
FUZZ_OUT=${FUZZ_OUT:-fuzzing/out}
seconds=${1:?usage: scripts/fuzz.sh SECONDS [TARGET...]}
shift
if [ $# -eq 0 ]; then
  set -- $(cd fuzzing && ls fuzz_*.py | sed 's/^fuzz_//; s/\.py$//')
fi

if ! "$PY" -c 'import atheris' 2>/dev/null; then
  echo "fuzz: atheris is not installed in $PY (make fuzz installs the 'fuzz' extra)" >&2
  exit 2
fi

failed=()
for target in "$@"; do
  script=fuzzing/fuzz_$target.py
  [ -f "$script" ] || { echo "fuzz: no target $target ($script)" >&2; exit 2; }
  out=$FUZZ_OUT/$target
  mkdir -p "$out/corpus" "$out/crashes"
  # a dictionary of the format's tokens, where there is one, helps past the parsing
  dict=()
  [ -f "fuzzing/$target.dict" ] && dict=(-dict="fuzzing/$target.dict")
  echo "== fuzz $target for ${seconds}s (corpus: $out/corpus)"
  # -timeout: one input taking 10 s is a bug (hang); -rss_limit_mb: so is 2 GiB of memory.
  if "$PY" "$script" -max_total_time="$seconds" -timeout=10 -rss_limit_mb=2048 \
      -artifact_prefix="$out/crashes/" -print_final_stats=1 "${dict[@]}" \
      "$out/corpus" "fuzzing/corpus/$target" >"$out/log" 2>&1; then
    runs=$(awk '/^stat::number_of_executed_units:/ {print $2}' "$out/log")
    rss=$(awk '/^stat::peak_rss_mb:/ {print $2}' "$out/log")
    echo "   ${runs:-?} runs, peak RSS ${rss:-?} MiB, corpus $(ls "$out/corpus" | wc -l) inputs"
  else
    failed+=("$target")
    tail -n 40 "$out/log"
    echo "fuzz: $target FAILED; inputs: $(ls "$out/crashes")"
  fi
done

if [ ${#failed[@]} -gt 0 ]; then
  echo "fuzz: ${#failed[@]} target(s) failed: ${failed[*]}" >&2
  exit 1
fi
echo "fuzz: $# target(s), ${seconds}s each, no failure"
