# Included by the top-level CMakeLists.txt when KNN_FUZZ=ON, before any target is defined, so
# that every library a fuzz target links (knn_core, knn_proto, knn_rpc, the coordinator and worker
# libraries) is built with coverage instrumentation, AddressSanitizer and UndefinedBehaviorSanitizer.
# Debian's gcc-built gRPC, protobuf and Abseil shared libraries stay uninstrumented: they link
# into clang + ASan binaries fine (same libstdc++ ABI), their own code just is not checked.
if(NOT CMAKE_CXX_COMPILER_ID STREQUAL "Clang")
  message(FATAL_ERROR "KNN_FUZZ=ON needs clang (libFuzzer): configure with "
                      "-DCMAKE_CXX_COMPILER=clang++ -DCMAKE_C_COMPILER=clang")
endif()

# Build type "Fuzz": optimised enough to fuzz fast, asserts kept (no -DNDEBUG), line tables for
# symbolised stack traces.
if(NOT CMAKE_BUILD_TYPE)
  set(CMAKE_BUILD_TYPE Fuzz CACHE STRING "Build type" FORCE)
endif()
set(CMAKE_CXX_FLAGS_FUZZ "-O1 -gline-tables-only" CACHE STRING "" FORCE)
set(CMAKE_C_FLAGS_FUZZ "-O1 -gline-tables-only" CACHE STRING "" FORCE)

set(KNN_SANITIZERS address,undefined)
add_compile_options(-fsanitize=fuzzer-no-link,${KNN_SANITIZERS} -fno-sanitize-recover=all
                    -fno-omit-frame-pointer)
add_link_options(-fsanitize=${KNN_SANITIZERS})
