# Toolchain file: cross-compiles for 64-bit ARM Linux (Lambda's arm64, Graviton) on a Debian or
# Ubuntu x86_64 host, with Debian's cross compiler (crossbuild-essential-arm64) and the arm64
# multiarch libraries (libcurl4-openssl-dev:arm64, ...) under /usr/lib/aarch64-linux-gnu.
# scripts/package-lambda --arch arm64 builds with it; scripts/lib/deps.sh installs what it needs.
set(CMAKE_SYSTEM_NAME Linux)
set(CMAKE_SYSTEM_PROCESSOR aarch64)
set(CMAKE_LIBRARY_ARCHITECTURE aarch64-linux-gnu)
set(CMAKE_C_COMPILER aarch64-linux-gnu-gcc)
set(CMAKE_CXX_COMPILER aarch64-linux-gnu-g++)
set(CMAKE_STRIP aarch64-linux-gnu-strip)

# Multiarch: the target's libraries sit beside the host's under the same prefix, so the search
# stays in /usr but only in the target's directories (CMake adds lib/<CMAKE_LIBRARY_ARCHITECTURE>).
set(CMAKE_FIND_ROOT_PATH_MODE_PROGRAM NEVER)
# pkg-config must read the target's .pc files only (the host's would name x86_64 libraries).
set(ENV{PKG_CONFIG_LIBDIR} "/usr/lib/aarch64-linux-gnu/pkgconfig:/usr/share/pkgconfig")
set(ENV{PKG_CONFIG_PATH} "")
