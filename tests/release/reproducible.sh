#!/usr/bin/env bash
# scripts/release twice from the same commit, in different directories (export, build and output
# paths all differ): every file of the two releases must be the same bytes, and each release
# complete. Slow (four release builds, two of them cross-compiled), so label `release`:
# scripts/test runs it only with RSTASKER_TEST_RELEASE=1.
set -euo pipefail
root=$(cd "$(dirname "$0")/../.." && pwd)
commit=${1:-HEAD}
# Resolved once: HEAD may move while the releases build.
commit=$(git -C "$root" rev-parse --verify --quiet "$commit^{commit}") || {
  echo "$root is not a git checkout with ${1:-HEAD}: there is no commit to release"
  exit 1
}
work=$(mktemp -d "${TMPDIR:-/tmp}/rstasker-reproducible.XXXXXX")
trap 'rm -rf "$work"' EXIT

# The second release compiles everything afresh (no ccache): objects the first took from the
# cache came from other directories, so a path that leaked into them would show as a difference.
for run in first second; do
  mkdir -p "$work/$run/tmp"
  echo "==> $run release of $commit"
  cache=()
  [ "$run" = second ] && cache=(CCACHE_DISABLE=1)
  env "${cache[@]}" TMPDIR="$work/$run/tmp" "$root/scripts/release" --out "$work/$run/dist" \
    "$commit"
done

status=0
for file in redshift-tasker-x86_64.zip redshift-tasker-arm64.zip tasker.yaml query-runner.yaml \
  SHA256SUMS; do
  for run in first second; do
    [ -s "$work/$run/dist/$file" ] || { echo "FAIL: the $run release has no $file"; status=1; }
  done
done
(cd "$work/first/dist" && sha256sum -c --quiet SHA256SUMS) || { echo "FAIL: SHA256SUMS"; status=1; }
if ! diff -r "$work/first/dist" "$work/second/dist"; then
  echo "FAIL: two releases of $commit differ"
  status=1
fi
[ "$status" -eq 0 ] && echo "two releases of $commit are the same bytes:" &&
  cat "$work/first/dist/SHA256SUMS"
exit "$status"
