# schemas/schemas.cmake - the kpschemas library: Avro codecs in the Confluent wire format.
# Included by the top-level CMakeLists.txt (after the find_package/pkg_check_modules calls).
#
# The built-in writer schemas are generated, not copied: every schemas/<id>-<Name>.avsc becomes
# `const char kp_avsc_<id>[]` in ${CMAKE_BINARY_DIR}/generated/kp_builtin_schemas.c, written by
# gen_builtins.cmake and written again whenever an .avsc file (or the generator) changes.
# registry.c lists which ids are built in and of which type.
file(GLOB KP_SCHEMAS_SRC CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.c)
file(GLOB KP_SCHEMAS_AVSC CONFIGURE_DEPENDS ${CMAKE_CURRENT_LIST_DIR}/*.avsc)
set(KP_BUILTIN_SCHEMAS_C ${CMAKE_BINARY_DIR}/generated/kp_builtin_schemas.c)

set(kp_avsc_names "")
foreach(f IN LISTS KP_SCHEMAS_AVSC)
  get_filename_component(n ${f} NAME)
  list(APPEND kp_avsc_names ${n})
endforeach()
string(REPLACE ";" "," kp_avsc_names "${kp_avsc_names}")

add_custom_command(
  OUTPUT ${KP_BUILTIN_SCHEMAS_C}
  COMMAND ${CMAKE_COMMAND} -DSCHEMA_DIR=${CMAKE_CURRENT_LIST_DIR} -DFILES=${kp_avsc_names}
          -DOUT=${KP_BUILTIN_SCHEMAS_C} -P ${CMAKE_CURRENT_LIST_DIR}/gen_builtins.cmake
  DEPENDS ${KP_SCHEMAS_AVSC} ${CMAKE_CURRENT_LIST_DIR}/gen_builtins.cmake
  COMMENT "Generating kp_builtin_schemas.c from schemas/*.avsc"
  VERBATIM)

add_library(kpschemas STATIC ${KP_SCHEMAS_SRC} ${KP_BUILTIN_SCHEMAS_C})
target_include_directories(kpschemas PUBLIC ${PROJECT_SOURCE_DIR})
target_compile_definitions(kpschemas PRIVATE KPREC_SCHEMA_DIR="${CMAKE_CURRENT_LIST_DIR}")
target_link_libraries(kpschemas PUBLIC kputil PkgConfig::AVRO PkgConfig::JANSSON PkgConfig::CURL)
