# Run at build time (cmake -DSRC=... -DOUT=... -P git_hash.cmake): writes OUT, a header defining
# STRATA_GIT_HASH as the source tree's commit ("<12 hex digits>", "-dirty" appended when tracked
# files differ from it; "unknown" outside a git checkout), touching OUT only when it changed so that
# a build recompiles only when the commit did.
execute_process(COMMAND git -C "${SRC}" rev-parse --short=12 HEAD
                OUTPUT_VARIABLE hash RESULT_VARIABLE rc
                OUTPUT_STRIP_TRAILING_WHITESPACE ERROR_QUIET)
if(NOT rc EQUAL 0 OR hash STREQUAL "")
  set(hash "unknown")
else()
  execute_process(COMMAND git -C "${SRC}" diff --quiet HEAD --
                  RESULT_VARIABLE dirty ERROR_QUIET)
  if(NOT dirty EQUAL 0)
    string(APPEND hash "-dirty")
  endif()
endif()
file(WRITE "${OUT}.tmp" "// Generated at build time by cmake/git_hash.cmake.\n#pragma once\n#define STRATA_GIT_HASH \"${hash}\"\n")
execute_process(COMMAND ${CMAKE_COMMAND} -E copy_if_different "${OUT}.tmp" "${OUT}")
file(REMOVE "${OUT}.tmp")
