# lambda-zip: build/redshift-tasker-<arch>.zip for Lambda's provided.al2023 runtime (bootstrap,
# the binary, and every shared library it needs; see scripts/package-lambda).
# lambda-zip-arm64 (on an x86_64 host with Debian's aarch64 cross compiler):
# build/redshift-tasker-arm64.zip, cross-compiled with cmake/aarch64-linux-gnu.cmake.
#
# The zip always holds an optimised binary without sanitizers. In a Release, RelWithDebInfo or
# MinSizeRel build without RSTASKER_SANITIZE that is this build's redshift-tasker; otherwise (a
# sanitizer or Debug build, as scripts/test makes) the target first builds redshift-tasker alone
# in <build>/lambda-release, configured Release without sanitizers, and packages that one. The
# arm64 zip is always built that way, in <build>/lambda-release-arm64.
if(CMAKE_SYSTEM_PROCESSOR MATCHES "^(x86_64|AMD64|amd64)$")
  set(RSTASKER_LAMBDA_ARCH x86_64)
elseif(CMAKE_SYSTEM_PROCESSOR MATCHES "^(aarch64|arm64|ARM64)$")
  set(RSTASKER_LAMBDA_ARCH arm64)
else()
  message(STATUS "lambda-zip: Lambda has no ${CMAKE_SYSTEM_PROCESSOR} runtime; target not defined")
  return()
endif()

set(RSTASKER_LAMBDA_ZIP ${CMAKE_BINARY_DIR}/redshift-tasker-${RSTASKER_LAMBDA_ARCH}.zip)
set(lambda_packager ${PROJECT_SOURCE_DIR}/scripts/package-lambda)

include(ProcessorCount)
ProcessorCount(lambda_jobs)
if(lambda_jobs EQUAL 0)
  set(lambda_jobs 2)
endif()

# rstasker_nested_lambda_zip(<target> <build dir> <zip> <cmake arguments...>): a target that
# configures a Release build of redshift-tasker alone in <build dir> and packages it as <zip>.
# Runs every time; the nested build is incremental, so an up-to-date one costs seconds. It
# inherits RSTASKER_WERROR: the optimiser's flow analysis (-Wmaybe-uninitialized and the like)
# runs only in an optimised build, so this is where those warnings are caught.
function(rstasker_nested_lambda_zip target dir zip)
  set(launcher)
  if(CMAKE_CXX_COMPILER_LAUNCHER)
    set(launcher "-DCMAKE_CXX_COMPILER_LAUNCHER=${CMAKE_CXX_COMPILER_LAUNCHER}")
  endif()
  add_custom_target(${target}
    COMMAND ${CMAKE_COMMAND} -S ${PROJECT_SOURCE_DIR} -B ${dir}
      -G "${CMAKE_GENERATOR}" -DCMAKE_BUILD_TYPE=Release ${launcher} ${ARGN}
      -DRSTASKER_SANITIZE=OFF -DRSTASKER_WERROR=${RSTASKER_WERROR} -DRSTASKER_BUILD_TESTS=OFF
      -DRSTASKER_BUILD_BENCH=OFF -DRSTASKER_BUILD_LOCAL=OFF
    # Its own parallelism, not the outer make's jobserver (which a nested cmake --build cannot join).
    COMMAND ${CMAKE_COMMAND} -E env --unset=MAKEFLAGS --unset=MFLAGS --unset=MAKELEVEL
      ${CMAKE_COMMAND} --build ${dir} --target redshift-tasker -j ${lambda_jobs}
    COMMAND ${lambda_packager} ${dir}/redshift-tasker ${zip}
    BYPRODUCTS ${zip}
    COMMENT "Building a release redshift-tasker in ${dir} for ${zip}"
    VERBATIM)
endfunction()

if(NOT RSTASKER_SANITIZE AND CMAKE_BUILD_TYPE MATCHES "^(Release|RelWithDebInfo|MinSizeRel)$")
  add_custom_command(OUTPUT ${RSTASKER_LAMBDA_ZIP}
    COMMAND ${lambda_packager} $<TARGET_FILE:redshift-tasker> ${RSTASKER_LAMBDA_ZIP}
    DEPENDS redshift-tasker ${lambda_packager}
    COMMENT "Packaging the Lambda zip ${RSTASKER_LAMBDA_ZIP}"
    VERBATIM)
  add_custom_target(lambda-zip DEPENDS ${RSTASKER_LAMBDA_ZIP})
else()
  rstasker_nested_lambda_zip(lambda-zip ${CMAKE_BINARY_DIR}/lambda-release ${RSTASKER_LAMBDA_ZIP}
    -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER})
endif()

# The arm64 zip from an x86_64 host, when Debian's cross compiler is installed
# (scripts/lib/deps.sh: rstasker_install_arm64_packages). RSTASKER_LAMBDA_ZIP_ARM64 stays empty
# otherwise, and RSTASKER_LAMBDA_ARM64_MISSING says why.
set(RSTASKER_LAMBDA_ZIP_ARM64 "")
set(RSTASKER_LAMBDA_ARM64_MISSING "")
if(RSTASKER_LAMBDA_ARCH STREQUAL "x86_64" AND NOT CMAKE_CROSSCOMPILING)
  find_program(RSTASKER_AARCH64_CXX aarch64-linux-gnu-g++)
  if(RSTASKER_AARCH64_CXX)
    set(RSTASKER_LAMBDA_ZIP_ARM64 ${CMAKE_BINARY_DIR}/redshift-tasker-arm64.zip)
    rstasker_nested_lambda_zip(lambda-zip-arm64 ${CMAKE_BINARY_DIR}/lambda-release-arm64
      ${RSTASKER_LAMBDA_ZIP_ARM64}
      -DCMAKE_TOOLCHAIN_FILE=${PROJECT_SOURCE_DIR}/cmake/aarch64-linux-gnu.cmake)
  else()
    string(CONCAT RSTASKER_LAMBDA_ARM64_MISSING "the aarch64 cross compiler is not installed "
      "(Debian or Ubuntu: scripts/test installs it, or apt-get install crossbuild-essential-arm64)")
  endif()
endif()
