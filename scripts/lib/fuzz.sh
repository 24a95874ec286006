# Sourced by scripts/test and bench/fuzz: builds the libFuzzer targets of tests/fuzz (with clang,
# in a build directory of their own) and runs one of them.

rstasker_fuzz_targets=(action_event sqs_batch cfn_request redshift_user_sql sigv4_request
  runtime_http_reader)

# rstasker_fuzz_build <build dir> <jobs>
rstasker_fuzz_build() {
  local dir=$1 jobs=$2
  CC=clang CXX=clang++ cmake -S tests/fuzz -B "$dir" >/dev/null
  local targets=()
  local t
  for t in "${rstasker_fuzz_targets[@]}"; do targets+=("fuzz_$t"); done
  cmake --build "$dir" -j "$jobs" --target "${targets[@]}" >"$dir/build.log" 2>&1 || {
    tail -50 "$dir/build.log"
    return 1
  }
}

# rstasker_fuzz_run <build dir> <target> <libFuzzer options...>: runs the target on a scratch copy
# of its committed corpus (new inputs stay out of the checkout); crashes are written to
# <build dir>/crashes/<target>/. Prints "<target> <executions> <crashes>" as its last line; exits
# non-zero when it crashed.
rstasker_fuzz_run() {
  local dir=$1 target=$2
  shift 2
  local work="$dir/corpus/$target" crashes="$dir/crashes/$target" log="$dir/logs/$target.log"
  rm -rf "$crashes"
  mkdir -p "$work" "$crashes" "$dir/logs"
  local status=0
  ASAN_OPTIONS=${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1} \
    UBSAN_OPTIONS=${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1} \
    "$dir/fuzz_$target" -artifact_prefix="$crashes/" -print_final_stats=1 "$@" \
    "$work" "tests/fuzz/corpus/$target" >"$log" 2>&1 || status=$?
  local runs
  runs=$(sed -n 's/^stat::number_of_executed_units: *//p' "$log" | tail -1)
  local found
  found=$(find "$crashes" -type f | wc -l)
  echo "$target ${runs:-0} $found"
  if [ "$status" -ne 0 ]; then
    grep -E "ERROR|SUMMARY|not a named|==[0-9]+==" "$log" | head -20 >&2
  fi
  return "$status"
}
