# lambda-zip: build/redshift-tasker-<arch>.zip for Lambda's provided.al2023 runtime (bootstrap,
# the binary, and every shared library it needs; see scripts/package-lambda).
#
# The zip always holds an optimised binary without sanitizers. In a Release, RelWithDebInfo or
# MinSizeRel build without RSTASKER_SANITIZE that is this build's redshift-tasker; otherwise (a
# sanitizer or Debug build, as scripts/test makes) the target first builds redshift-tasker alone
# in <build>/lambda-release, configured Release without sanitizers, and packages that one.
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

if(NOT RSTASKER_SANITIZE AND CMAKE_BUILD_TYPE MATCHES "^(Release|RelWithDebInfo|MinSizeRel)$")
  add_custom_command(OUTPUT ${RSTASKER_LAMBDA_ZIP}
    COMMAND ${lambda_packager} $<TARGET_FILE:redshift-tasker> ${RSTASKER_LAMBDA_ZIP}
    DEPENDS redshift-tasker ${lambda_packager}
    COMMENT "Packaging the Lambda zip ${RSTASKER_LAMBDA_ZIP}"
    VERBATIM)
  add_custom_target(lambda-zip DEPENDS ${RSTASKER_LAMBDA_ZIP})
else()
  include(ProcessorCount)
  ProcessorCount(lambda_jobs)
  if(lambda_jobs EQUAL 0)
    set(lambda_jobs 2)
  endif()
  set(lambda_release_dir ${CMAKE_BINARY_DIR}/lambda-release)
  # Runs every time; the nested build is incremental, so an up-to-date one costs seconds. It
  # inherits RSTASKER_WERROR: the optimiser's flow analysis (-Wmaybe-uninitialized and the like)
  # runs only in an optimised build, so this is where those warnings are caught.
  add_custom_target(lambda-zip
    COMMAND ${CMAKE_COMMAND} -S ${PROJECT_SOURCE_DIR} -B ${lambda_release_dir}
      -G "${CMAKE_GENERATOR}" -DCMAKE_BUILD_TYPE=Release
      -DCMAKE_CXX_COMPILER=${CMAKE_CXX_COMPILER} -DRSTASKER_SANITIZE=OFF
      -DRSTASKER_WERROR=${RSTASKER_WERROR} -DRSTASKER_BUILD_TESTS=OFF
      -DRSTASKER_BUILD_BENCH=OFF -DRSTASKER_BUILD_LOCAL=OFF
    # Its own parallelism, not the outer make's jobserver (which a nested cmake --build cannot join).
    COMMAND ${CMAKE_COMMAND} -E env --unset=MAKEFLAGS --unset=MFLAGS --unset=MAKELEVEL
      ${CMAKE_COMMAND} --build ${lambda_release_dir} --target redshift-tasker -j ${lambda_jobs}
    COMMAND ${lambda_packager} ${lambda_release_dir}/redshift-tasker ${RSTASKER_LAMBDA_ZIP}
    BYPRODUCTS ${RSTASKER_LAMBDA_ZIP}
    COMMENT "Building a release redshift-tasker in ${lambda_release_dir} for the Lambda zip"
    VERBATIM)
endif()
