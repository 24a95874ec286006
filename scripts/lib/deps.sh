# Sourced by scripts/test, scripts/demo and scripts/release: installs what the project needs when
# it is missing. Debian packages come from apt (after `apt-get update`); moto comes from pip when
# absent. On a host without apt (not Debian or Ubuntu) it says at once what to install instead.

rstasker_debian_packages=(
  build-essential cmake pkg-config git
  libcurl4-openssl-dev libssl-dev nlohmann-json3-dev libspdlog-dev
  libgtest-dev libgmock-dev libbenchmark-dev
  libpq-dev libcpp-httplib-dev postgresql
  python3 python3-pip zip unzip openssl
  libre2-dev busybox-static
  clang libclang-rt-14-dev  # libFuzzer (-fsanitize=fuzzer) for the targets in tests/fuzz
)

# What the arm64 Lambda zip needs on an x86_64 host: Debian's cross compiler, the arm64 builds of
# the libraries the binary links or bundles (multiarch, beside the amd64 ones; apt keeps both at
# the same version), and qemu-user-static to run the result in tests. Installed only by the
# commands that build or test that zip (scripts/test, scripts/release).
rstasker_arm64_debian_packages=(
  crossbuild-essential-arm64 qemu-user-static
  libcurl4-openssl-dev:arm64 libssl-dev:arm64 libspdlog-dev:arm64 libfmt-dev:arm64
  libre2-dev:arm64
)

rstasker_as_root() {
  if [ "$(id -u)" -eq 0 ]; then "$@"; else sudo "$@"; fi
}

# Fails at once, naming what to install, when this host has no apt (not Debian or Ubuntu).
# RSTASKER_NO_INSTALL=1 skips every installation (everything is there already, however installed).
rstasker_require_debian() {
  [ "${RSTASKER_NO_INSTALL:-0}" = 1 ] && return 0
  if command -v apt-get >/dev/null && command -v dpkg-query >/dev/null; then
    return 0
  fi
  local os="this host"
  if [ -r /etc/os-release ]; then
    os=$(. /etc/os-release && echo "${PRETTY_NAME:-$ID}")
  fi
  cat >&2 <<EOF
error: $os has no apt-get: these scripts install packages on Debian 12 or Ubuntu 22.04+ only.
Install these yourself, then run again with RSTASKER_NO_INSTALL=1:
  - GCC 12+ (C++20), CMake 3.22+, pkg-config, git, zip, unzip, openssl, a static busybox
  - development files of libcurl (OpenSSL flavour), OpenSSL 3, nlohmann/json 3.10+, spdlog and
    fmt, RE2, libpq, cpp-httplib, GoogleTest/GoogleMock, Google Benchmark
  - PostgreSQL server binaries, Python 3 with pip (moto[server], boto3, cfn-lint come from pip)
  - for the arm64 zip: an aarch64-linux-gnu cross GCC with arm64 glibc, libcurl, OpenSSL,
    spdlog, fmt and RE2 under /usr/lib/aarch64-linux-gnu, and qemu-aarch64-static
Or build in a Debian 12 container (docker run -it -v "\$PWD:/src" debian:12).
EOF
  return 1
}

# Installs those of the given Debian packages that are missing (quietly; apt's errors still show).
rstasker_apt_install_missing() {
  local missing=()
  local pkg
  for pkg in "$@"; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" ||
      missing+=("$pkg")
  done
  if [ "${#missing[@]}" -gt 0 ]; then
    echo "==> installing missing packages: ${missing[*]}"
    rstasker_as_root apt-get update -qq
    rstasker_as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
      --no-install-recommends "${missing[@]}" >/dev/null
  fi
}

rstasker_install_debian_packages() {
  [ "${RSTASKER_NO_INSTALL:-0}" = 1 ] && return 0
  rstasker_require_debian || exit 1
  rstasker_apt_install_missing "${rstasker_debian_packages[@]}"
}

# The arm64 cross toolchain, libraries and qemu (x86_64 hosts; an arm64 host builds natively).
rstasker_install_arm64_packages() {
  [ "${RSTASKER_NO_INSTALL:-0}" = 1 ] && return 0
  [ "$(uname -m)" = x86_64 ] || return 0
  rstasker_require_debian || exit 1
  if ! dpkg --print-foreign-architectures | grep -qx arm64; then
    # The install below runs apt-get update, which then fetches the arm64 package lists.
    echo "==> enabling Debian's arm64 multiarch (dpkg --add-architecture arm64)"
    rstasker_as_root dpkg --add-architecture arm64
  fi
  rstasker_apt_install_missing "${rstasker_arm64_debian_packages[@]}" || {
    echo "error: the arm64 packages could not be installed. Debian's archive has them; Ubuntu" \
      "serves arm64 from ports.ubuntu.com, which its apt sources must name for arm64" >&2
    exit 1
  }
}

# Node.js and npm for the CDK package (cfn/cdk). Debian's nodejs has no npm (its own package);
# a Node.js from elsewhere (NodeSource) brings npm along, and Debian's npm would conflict with it.
rstasker_install_node() {
  [ "${RSTASKER_NO_INSTALL:-0}" = 1 ] && return 0
  if command -v node >/dev/null && command -v npm >/dev/null; then
    return 0
  fi
  rstasker_require_debian || exit 1
  echo "==> installing nodejs and npm"
  rstasker_apt_install_missing nodejs npm
}

rstasker_install_moto() {
  if python3 -c "import moto.server, boto3" 2>/dev/null && command -v cfn-lint >/dev/null; then
    return 0
  fi
  [ "${RSTASKER_NO_INSTALL:-0}" = 1 ] && return 1
  echo "==> installing moto[server], boto3 and cfn-lint with pip"
  python3 -m pip install --quiet "moto[server]" boto3 cfn-lint ||
    python3 -m pip install --quiet --break-system-packages "moto[server]" boto3 cfn-lint || {
      echo "warning: could not install moto with pip; tests that need it will fail" >&2
      return 1
    }
}

rstasker_install_all() {
  rstasker_install_debian_packages
  rstasker_install_node
  rstasker_install_moto || true
}
