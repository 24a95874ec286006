#!/usr/bin/env bash
# Lints every CloudFormation template under cfn/ with cfn-lint: no errors, no warnings
# (informational findings are allowed). Skips (exit 77) when cfn-lint is absent, unless
# RSTASKER_REQUIRE_SERVERS=1 (CI), where a missing linter is a failure.
set -euo pipefail
cd "$(dirname "$0")/../.."

if ! command -v cfn-lint >/dev/null; then
  echo "cfn-lint is not installed (pip install cfn-lint); not linting the templates"
  [ "${RSTASKER_REQUIRE_SERVERS:-0}" = 1 ] && exit 1
  exit 77
fi

# cfn/cdk is the CDK package (its JSON files are not templates; scripts/check lints its app's).
mapfile -t templates < <(find cfn -path cfn/cdk -prune -o -type f \( -name '*.yaml' -o -name '*.yml' -o -name '*.json' \) -print | LC_ALL=C sort)
if [ "${#templates[@]}" -eq 0 ]; then
  echo "no templates under cfn/"
  exit 1
fi
echo "cfn-lint $(cfn-lint --version | awk '{print $2}') on: ${templates[*]}"
status=0
cfn-lint --format parseable -- "${templates[@]}" || status=$?
# cfn-lint's exit status is a bit mask: 1 fatal, 2 error, 4 warning, 8 informational.
if (( status & 7 )); then
  echo "cfn-lint found problems (exit status $status)"
  exit 1
fi
echo "no errors or warnings"
