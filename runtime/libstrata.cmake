# libstrata: the one shared library an engine links (find_package(Strata), Strata::strata; or
# pkg-config strata). It is linked from strata_runtime's objects and the static libraries below it,
# all built with hidden symbols, so it exports only what the public headers mark STRATA_API.
# Public headers (installed to include/strata): STRATA_PUBLIC_HEADERS; they name no type of
# Strata's internals or of its dependencies.
set(STRATA_PUBLIC_HEADERS
  ${CMAKE_CURRENT_SOURCE_DIR}/include/strata/strata.h
  ${CMAKE_CURRENT_SOURCE_DIR}/include/strata/strata.hpp
  ${PROJECT_SOURCE_DIR}/runtime/core/include/strata/export.h
  ${PROJECT_SOURCE_DIR}/runtime/core/include/strata/pool_decl.h
  ${PROJECT_SOURCE_DIR}/runtime/core/include/strata/status.h
  ${CMAKE_BINARY_DIR}/generated/strata/version.h)

add_library(strata SHARED $<TARGET_OBJECTS:strata_runtime>)
add_library(Strata::strata ALIAS strata)
get_target_property(strata_runtime_deps strata_runtime LINK_LIBRARIES)
target_link_libraries(strata PRIVATE ${strata_runtime_deps})
target_include_directories(strata INTERFACE
  $<BUILD_INTERFACE:${CMAKE_CURRENT_SOURCE_DIR}/include>
  $<BUILD_INTERFACE:${PROJECT_SOURCE_DIR}/runtime/core/include>
  $<BUILD_INTERFACE:${CMAKE_BINARY_DIR}/generated>
  $<INSTALL_INTERFACE:include>)
target_compile_features(strata INTERFACE cxx_std_20)
# libstrata.map: only strata::* and strata_* are exported, whatever else is linked in.
target_link_options(strata PRIVATE LINKER:--no-undefined
                    LINKER:--version-script=${CMAKE_CURRENT_SOURCE_DIR}/libstrata.map)
set_property(TARGET strata APPEND PROPERTY LINK_DEPENDS ${CMAKE_CURRENT_SOURCE_DIR}/libstrata.map)
set_target_properties(strata PROPERTIES
  OUTPUT_NAME strata
  VERSION ${PROJECT_VERSION}
  SOVERSION ${PROJECT_VERSION_MAJOR}
  LIBRARY_OUTPUT_DIRECTORY ${CMAKE_BINARY_DIR}/lib
  CXX_VISIBILITY_PRESET hidden
  VISIBILITY_INLINES_HIDDEN ON)
