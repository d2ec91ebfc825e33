// libFuzzer target: the model-file loader (core/estimators/model_io.h) on arbitrary bytes, and
// the estimators built from what it accepts (as `knnctl` does with a local model file).
//
// A model file ends in a CRC-32, so random mutations almost never get past the checksum. Each
// input is therefore parsed twice: as it is (magic, version, length and checksum checks), and
// "sealed": its payload (the bytes after a 20-byte header when the input starts with the magic,
// else the whole input) wrapped in a correct header and checksum, which sends the mutations into
// the payload parser. An accepted file must serialize to a file of its size that parses to the
// same model, and an estimator is built from it (FromModel validates parameters and labels).
#include <cstddef>
#include <cstdint>
#include <string>
#include <string_view>

#include "core/base/crc32.h"
#include "core/base/thread_pool.h"
#include "core/estimators/kneighbors_classifier.h"
#include "core/estimators/kneighbors_regressor.h"
#include "core/estimators/model_io.h"
#include "core/estimators/outlier_detector.h"
#include "fuzz/fuzz_check.h"

namespace {

using knncluster::Model;

constexpr size_t kMagicSize = 8;
constexpr size_t kHeaderSize = 20;  // magic, u32 version, u64 payload length

void AppendLittleEndian(uint64_t v, int bytes, std::string* out) {
  for (int i = 0; i < bytes; ++i) out->push_back(static_cast<char>((v >> (8 * i)) & 0xff));
}

// `input` with a correct header and checksum around its payload.
std::string Seal(std::string_view input) {
  std::string_view payload = input;
  if (input.size() >= kHeaderSize + 4 &&
      input.substr(0, kMagicSize) == std::string_view(knncluster::kModelMagic, kMagicSize)) {
    payload = input.substr(kHeaderSize, input.size() - kHeaderSize - 4);
  }
  std::string file(knncluster::kModelMagic, kMagicSize);
  AppendLittleEndian(knncluster::kModelFormatVersion, 4, &file);
  AppendLittleEndian(payload.size(), 8, &file);
  file.append(payload.data(), payload.size());
  AppendLittleEndian(knncluster::Crc32(file), 4, &file);
  return file;
}

knncluster::ThreadPool* Pool() {
  static knncluster::ThreadPool* pool = new knncluster::ThreadPool(2);  // harness only
  return pool;
}

void BuildEstimator(Model model) {
  absl::Status status;
  switch (model.task) {
    case Model::Task::kClassifier:
      status = knncluster::KNeighborsClassifier::FromModel(std::move(model)).status();
      break;
    case Model::Task::kRegressor:
      status = knncluster::KNeighborsRegressor::FromModel(std::move(model)).status();
      break;
    case Model::Task::kOutlier:
      status = knncluster::OutlierDetector::FromModel(std::move(model), Pool()).status();
      break;
  }
  // A model file that parses may still hold parameters or labels no estimator accepts; that is
  // the caller's data, never our bug.
  FUZZ_CHECK(status.ok() || status.code() == absl::StatusCode::kInvalidArgument ||
             status.code() == absl::StatusCode::kFailedPrecondition);
}

void ParseAndCheck(std::string_view bytes) {
  absl::StatusOr<Model> model = knncluster::ParseModel(bytes, "fuzz.knnmodel");
  if (!model.ok()) {
    FUZZ_CHECK(model.status().code() == absl::StatusCode::kInvalidArgument ||
               model.status().code() == absl::StatusCode::kDataLoss);
    return;
  }
  FUZZ_CHECK(model->X.values().size() == model->X.rows() * model->X.cols());
  // What parses serializes to a file that parses to the same model, byte for byte. (Not always
  // the input's bytes: a reader ignores the threshold's value when has_threshold is 0.)
  const std::string again = knncluster::SerializeModel(*model);
  absl::StatusOr<Model> reparsed = knncluster::ParseModel(again, "re-serialized");
  FUZZ_CHECK(reparsed.ok());
  FUZZ_CHECK(knncluster::SerializeModel(*reparsed) == again);
  FUZZ_CHECK(again.size() == bytes.size());
  BuildEstimator(*std::move(model));
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  const std::string_view bytes(reinterpret_cast<const char*>(data), size);
  ParseAndCheck(bytes);
  ParseAndCheck(Seal(bytes));
  return 0;
}
