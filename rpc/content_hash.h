// The content hash of a dataset: how a worker's dataset cache (grid search, replicated mode)
// names what it holds, so a dataset is sent to a worker once, whatever it is called, and a
// changed dataset is never mistaken for the old one.
//
// Lowercase hex SHA-256 (OpenSSL) of: "knncluster-dataset-v1", rows, cols, has_labels (uint64
// little-endian each), the row-major feature values, then the labels (IEEE-754 doubles,
// little-endian). Equal bytes give equal hashes across machines and processes.
#ifndef KNNCLUSTER_RPC_CONTENT_HASH_H_
#define KNNCLUSTER_RPC_CONTENT_HASH_H_

#include <string>

#include "absl/types/span.h"
#include "core/base/matrix.h"

namespace knncluster::rpc {

// `labels` empty: an unlabeled dataset. REQUIRES: labels empty or one per row.
std::string DatasetContentHash(MatrixView features, absl::Span<const double> labels);

}  // namespace knncluster::rpc

#endif  // KNNCLUSTER_RPC_CONTENT_HASH_H_
