# Sourced by scripts/test and scripts/demo: installs what the project needs when it is missing.
# Debian packages come from apt (after `apt-get update`); moto comes from pip when absent.

rstasker_debian_packages=(
  build-essential cmake pkg-config git
  libcurl4-openssl-dev libssl-dev nlohmann-json3-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpq-dev libcpp-httplib-dev postgresql
  python3 python3-pip zip unzip
  libre2-dev busybox-static
  clang libclang-rt-14-dev  # libFuzzer (-fsanitize=fuzzer) for the targets in tests/fuzz
)

rstasker_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

rstasker_install_debian_packages() {
  local missing=()
  local pkg
  for pkg in "${rstasker_debian_packages[@]}"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing missing packages: ${missing[*]}"
    rstasker_as_root apt-get update
    rstasker_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends \
      "${missing[@]}"
  fi
}

rstasker_install_moto() {
  if python3 -c "import moto.server, boto3" 2>/dev/null && command -v cfn-lint >/dev/null; then
    return 0
  fi
  echo "==> installing moto[server], boto3 and cfn-lint with pip"
  python3 -m pip install --quiet "moto[server]" boto3 cfn-lint ||
    python3 -m pip install --quiet --break-system-packages "moto[server]" boto3 cfn-lint || {
      echo "warning: could not install moto with pip; tests that need it will fail" >&2
      return 1
    }
}

rstasker_install_all() {
  rstasker_install_debian_packages
  rstasker_install_moto || true
}
