# The coordinator's on-disk dataset catalog (pure C++: core + Abseil, no gRPC).
add_library(knn_dataset_store STATIC dataset_store.cc)
knn_target_options(knn_dataset_store)
target_link_libraries(knn_dataset_store PUBLIC knn_core)
knn_test(dataset_store_test SOURCES dataset_store_test.cc
         LIBS knn_dataset_store)
