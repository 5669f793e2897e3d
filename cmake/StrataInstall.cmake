# What `cmake --install build --prefix P` installs: the public headers (P/include/strata), libstrata
# (P/lib/libstrata.so.*), the CMake package (P/lib/cmake/Strata: find_package(Strata),
# Strata::strata), the pkg-config file (P/lib/pkgconfig/strata.pc) and strata-run (P/bin). The tree
# is relocatable: both package files find the prefix from where they are.
include(GNUInstallDirs)
include(CMakePackageConfigHelpers)

install(TARGETS strata EXPORT StrataTargets
        LIBRARY DESTINATION ${CMAKE_INSTALL_LIBDIR} NAMELINK_COMPONENT Development)
install(FILES ${STRATA_PUBLIC_HEADERS} DESTINATION ${CMAKE_INSTALL_INCLUDEDIR}/strata)
if(STRATA_BUILD_APPS)
  install(TARGETS strata-run RUNTIME DESTINATION ${CMAKE_INSTALL_BINDIR})
endif()

set(strata_cmake_dir ${CMAKE_INSTALL_LIBDIR}/cmake/Strata)
install(EXPORT StrataTargets NAMESPACE Strata:: DESTINATION ${strata_cmake_dir})
configure_package_config_file(cmake/StrataConfig.cmake.in
  ${CMAKE_BINARY_DIR}/generated/StrataConfig.cmake INSTALL_DESTINATION ${strata_cmake_dir})
write_basic_package_version_file(${CMAKE_BINARY_DIR}/generated/StrataConfigVersion.cmake
  COMPATIBILITY SameMinorVersion)
install(FILES ${CMAKE_BINARY_DIR}/generated/StrataConfig.cmake
              ${CMAKE_BINARY_DIR}/generated/StrataConfigVersion.cmake
        DESTINATION ${strata_cmake_dir})

file(RELATIVE_PATH STRATA_PC_TO_PREFIX /p/${CMAKE_INSTALL_LIBDIR}/pkgconfig /p)
configure_file(cmake/strata.pc.in ${CMAKE_BINARY_DIR}/generated/strata.pc @ONLY)
install(FILES ${CMAKE_BINARY_DIR}/generated/strata.pc
        DESTINATION ${CMAKE_INSTALL_LIBDIR}/pkgconfig)
