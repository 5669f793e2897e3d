# STRATA_SANITIZE=address,undefined (any -fsanitize= list) builds every target with those
# sanitizers, -O1 -g, frame pointers, undefined behaviour fatal (no recovery) and libstdc++'s
# checked containers (_GLIBCXX_ASSERTIONS). CUDA is off in such a build: nvcc's host code and
# ASan's shadow memory do not mix. tests/sanitize builds one in <build>/sanitize and runs tests
# there; the environments those tests need are STRATA_SANITIZE_TEST_ENV and
# STRATA_SANITIZE_MPI_TEST_ENV.
set(STRATA_SANITIZE "" CACHE STRING
    "Build with these sanitizers (e.g. address,undefined); empty: none")

# What every process of a sanitizer build runs with (ctest ENVIRONMENT lists). UBSan prints the
# stack of a finding, and a finding ends the process. UCX installs SIGSEGV/SIGBUS handlers that
# would stand in front of ASan's report: off. Open MPI's memory patcher hooks malloc and mmap as
# ASan does: off. One process (the unit tests) checks for leaks. A process started by mpiexec does
# not: Open MPI, PMIx and UCX keep thousands of start-up allocations until exit, from components
# they dlclose in MPI_Finalize and from libraries without frame pointers, so their stacks end in
# "<unknown module>" and no suppression file can name them (tried on Open MPI 4.1.4: an
# MPI_Init/Allreduce/Finalize program "leaks" 121 KB in 3,351 allocations).
set(STRATA_SANITIZE_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1:detect_stack_use_after_return=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "UCX_HANDLE_ERRORS=none")
set(STRATA_SANITIZE_MPI_TEST_ENV
  "ASAN_OPTIONS=detect_leaks=0:check_initialization_order=1:detect_stack_use_after_return=1"
  "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
  "UCX_HANDLE_ERRORS=none"
  "OMPI_MCA_memory=^patcher")
# The ThreadSanitizer pass (tests/tsan, STRATA_SANITIZE=thread): every report is printed (not only
# the first) and makes the process exit non-zero (TSan's exitcode, 66), so a finding fails its
# test; second_deadlock_stack names both acquisitions of a lock-order inversion. tests/tsan adds
# its suppressions file. Under mpiexec, Open MPI's memory patcher stays off as with ASan (it hooks
# mmap and munmap, which TSan intercepts too).
set(STRATA_TSAN_OPTIONS "halt_on_error=0:second_deadlock_stack=1:history_size=4")
# UCX's libucm patches mmap, munmap and madvise to watch memory events: glibc's madvise of an
# exiting thread's stack then enters TSan's rwlock interceptor after the thread's TSan state is
# gone, and the process dies of SIGSEGV (controller_test, which links UCX through io, crashed so
# at its first thread exit). The hooks only keep UCX's registration cache coherent, which tcp and
# shared memory do not need: off.
set(STRATA_TSAN_TEST_ENV "UCX_HANDLE_ERRORS=none" "UCX_MEM_MMAP_HOOK_MODE=none")
set(STRATA_TSAN_MPI_TEST_ENV "OMPI_MCA_memory=^patcher")

# The fuzz targets' tree (tests/fuzz, STRATA_FUZZ=ON, clang): every object carries libFuzzer's
# coverage instrumentation; the fuzz executables link the fuzzer (-fsanitize=fuzzer).
option(STRATA_FUZZ "Build the libFuzzer targets of tests/fuzz (clang only)" OFF)
set(STRATA_FUZZ_TEST_ENV "UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1"
    "ASAN_OPTIONS=detect_leaks=1:check_initialization_order=1")
if(STRATA_FUZZ)
  if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
    message(FATAL_ERROR "STRATA_FUZZ needs clang (libFuzzer), not ${CMAKE_CXX_COMPILER_ID}")
  endif()
  add_compile_options(-fsanitize=fuzzer-no-link)
endif()

if(STRATA_SANITIZE)
  if(STRATA_ENABLE_CUDA STREQUAL "ON")
    message(FATAL_ERROR "STRATA_SANITIZE needs STRATA_ENABLE_CUDA=OFF (nvcc and ASan do not mix)")
  endif()
  set(STRATA_ENABLE_CUDA OFF CACHE STRING "Build the CUDA back end: AUTO|ON|OFF" FORCE)
  set(STRATA_ENABLE_NCCL OFF CACHE STRING "Build NCCL striped loads: AUTO|ON|OFF" FORCE)
  add_compile_options(-fsanitize=${STRATA_SANITIZE} -fno-omit-frame-pointer
                      -fno-sanitize-recover=undefined -O1 -g)
  add_compile_definitions(_GLIBCXX_ASSERTIONS)
  add_link_options(-fsanitize=${STRATA_SANITIZE})
endif()
