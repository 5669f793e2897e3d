# Sources of runtime/ kept in their own list (workload, KV pattern, run configuration, report):
# runtime/CMakeLists.txt includes this file and adds them to strata_runtime.
set(STRATA_RUNTIME_PART_SOURCES
  src/workload.cpp
  src/kv_pattern.cpp
  src/run_config.cpp
  src/report.cpp
  src/trace.cpp
  src/temp_storage.cpp
  src/block_replay.cpp
  src/replay_sweep.cpp)
