#include "coordinator/dataset_store.h"

#include <stdlib.h>
#include <unistd.h>

#include <atomic>
#include <cmath>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <limits>
#include <string>
#include <thread>
#include <vector>

#include "absl/strings/str_cat.h"
#include "core/base/crc32.h"
#include "core/base/durable_file.h"
#include "core/datasets/dataset.h"
#include "core/model_selection/split.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster::coordinator {
namespace {

namespace fs = std::filesystem;
using ::testing::ElementsAre;
using ::testing::HasSubstr;
using ::testing::IsEmpty;

// A fresh directory per test, removed afterwards.
class DatasetStoreTest : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string dir = absl::StrCat(::testing::TempDir(), "dataset_store_XXXXXX");
    ASSERT_NE(mkdtemp(dir.data()), nullptr);
    root_ = dir;
    dir_ = dir + "/data";  // Open creates it
    Reopen();
  }
  void TearDown() override {
    store_.reset();
    std::error_code ec;
    fs::remove_all(root_, ec);
  }
  void Reopen() {
    store_.reset();
    auto store = DatasetStore::Open(dir_);
    ASSERT_TRUE(store.ok()) << store.status();
    store_ = *std::move(store);
  }
  // Files and directories under datasets/, by name.
  std::vector<std::string> DatasetDirEntries() const {
    std::vector<std::string> out;
    for (const auto& e : fs::directory_iterator(dir_ + "/datasets")) {
      out.push_back(e.path().filename().string());
    }
    std::sort(out.begin(), out.end());
    return out;
  }

  // Uploads `x` (with numeric `labels` if non-empty) in chunks of `chunk` rows.
  absl::StatusOr<DatasetMeta> Upload(const std::string& name, const Matrix& x,
                                     const std::vector<double>& labels, size_t chunk,
                                     bool replace = false) {
    UploadHeader h;
    h.name = name;
    h.cols = x.cols();
    h.labels = labels.empty() ? LabelKind::kNone : LabelKind::kNumeric;
    h.replace = replace;
    auto w = store_->BeginUpload(h);
    if (!w.ok()) return w.status();
    for (size_t b = 0; b < x.rows(); b += chunk) {
      const size_t e = std::min(x.rows(), b + chunk);
      absl::Span<const double> l;
      if (!labels.empty()) l = absl::MakeConstSpan(labels).subspan(b, e - b);
      absl::Status s = (*w)->Append(x.view().Slice(b, e), l, {});
      if (!s.ok()) return s;
    }
    return (*w)->Commit();
  }

  std::string root_, dir_;
  std::unique_ptr<DatasetStore> store_;
};

bool BitwiseEqual(const Matrix& a, const Matrix& b) {
  return a.rows() == b.rows() && a.cols() == b.cols() &&
         std::memcmp(a.data(), b.data(), a.rows() * a.cols() * sizeof(double)) == 0;
}

// Values that a text round trip or a careless conversion would change.
Matrix Awkward(size_t rows, size_t cols) {
  Matrix m(rows, cols);
  const double specials[] = {-0.0, 5e-324, 1.7976931348623157e308, 0.1, -1.0 / 3.0, 1e-300};
  for (size_t i = 0; i < rows; ++i) {
    for (size_t j = 0; j < cols; ++j) {
      m.at(i, j) = (i * cols + j) % 7 == 0 ? specials[(i + j) % 6]
                                           : std::sin(static_cast<double>(i * 31 + j)) * 1e3;
    }
  }
  return m;
}

TEST_F(DatasetStoreTest, ChunkedUploadReadsBackBitwiseAcrossReopen) {
  const Matrix x = Awkward(1000, 7);
  std::vector<double> y(1000);
  for (size_t i = 0; i < y.size(); ++i) y[i] = static_cast<double>(i % 3) + 0.25;
  UploadHeader h{"awkward", 7, LabelKind::kNumeric, {"a", "b", "c", "d", "e", "f", "g"}, false};
  auto w = store_->BeginUpload(h);
  ASSERT_TRUE(w.ok()) << w.status();
  size_t b = 0;
  for (size_t chunk : {1, 99, 400, 0, 500}) {  // uneven, with an empty chunk
    ASSERT_TRUE(
        (*w)->Append(x.view().Slice(b, b + chunk), absl::MakeConstSpan(y).subspan(b, chunk), {})
            .ok());
    b += chunk;
    EXPECT_EQ((*w)->rows(), b);
  }
  auto meta = (*w)->Commit();
  ASSERT_TRUE(meta.ok()) << meta.status();
  EXPECT_EQ(meta->name, "awkward");
  EXPECT_EQ(meta->rows, 1000u);
  EXPECT_EQ(meta->cols, 7u);
  EXPECT_EQ(meta->labels, LabelKind::kNumeric);
  EXPECT_EQ(meta->feature_names, h.feature_names);
  EXPECT_TRUE(meta->view_of.empty());

  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "as uploaded" : "after reopening the store");
    auto all = store_->ReadRows("awkward", 0, 1000);
    ASSERT_TRUE(all.ok()) << all.status();
    EXPECT_TRUE(BitwiseEqual(*all, x));
    auto some = store_->ReadRows("awkward", 37, 512);
    ASSERT_TRUE(some.ok()) << some.status();
    EXPECT_TRUE(BitwiseEqual(*some, Matrix::CopyOf(x.view().Slice(37, 512))));
    auto none = store_->ReadRows("awkward", 1000, 1000);
    ASSERT_TRUE(none.ok());
    EXPECT_EQ(none->rows(), 0u);
    EXPECT_EQ(none->cols(), 7u);
    auto labels = store_->ReadLabels("awkward");
    ASSERT_TRUE(labels.ok()) << labels.status();
    EXPECT_EQ(*labels, y);
    auto described = store_->Describe("awkward");
    ASSERT_TRUE(described.ok());
    EXPECT_EQ(described->rows, 1000u);
    EXPECT_EQ(described->feature_names, h.feature_names);
    Reopen();
  }
  EXPECT_THAT(DatasetDirEntries(), ElementsAre("awkward"));
  EXPECT_TRUE(fs::exists(dir_ + "/datasets/awkward/features.f64"));
  EXPECT_EQ(fs::file_size(dir_ + "/datasets/awkward/features.f64"), 1000u * 7 * 8);
}

TEST_F(DatasetStoreTest, StringLabelsBecomeSortedClassNamesAndCodes) {
  UploadHeader h{"pets", 1, LabelKind::kString, {}, false};
  auto w = store_->BeginUpload(h);
  ASSERT_TRUE(w.ok());
  const std::vector<std::vector<std::string>> chunks = {
      {"cat", "dog"}, {"Dog", "\xc3\xa9mu", "cat"}, {"ant", "", "dog"}};
  double v = 0;
  for (const auto& names : chunks) {
    std::vector<double> rows;
    for (size_t i = 0; i < names.size(); ++i) rows.push_back(v++);
    ASSERT_TRUE((*w)->Append(MatrixView(rows.data(), rows.size(), 1), {}, names).ok());
  }
  auto meta = (*w)->Commit();
  ASSERT_TRUE(meta.ok()) << meta.status();
  // Byte order, as numpy.unique sorts: "" < "Dog" < "ant" < "cat" < "dog" < "ém√".
  const std::vector<std::string> sorted = {"", "Dog", "ant", "cat", "dog", "\xc3\xa9mu"};
  EXPECT_EQ(meta->class_names, sorted);
  EXPECT_EQ(meta->labels, LabelKind::kString);
  for (int pass = 0; pass < 2; ++pass) {
    auto codes = store_->ReadLabels("pets");
    ASSERT_TRUE(codes.ok()) << codes.status();
    EXPECT_THAT(*codes, ElementsAre(3, 4, 1, 5, 3, 2, 0, 4));
    EXPECT_EQ(store_->Describe("pets")->class_names, sorted);
    Reopen();
  }
  EXPECT_FALSE(fs::exists(dir_ + "/datasets/pets/labels.tmp"));
}

// Digits uploaded in chunks, as a client would.
class DigitsStoreTest : public DatasetStoreTest {
 protected:
  void SetUp() override {
    DatasetStoreTest::SetUp();
    auto digits = LoadDigits();
    ASSERT_TRUE(digits.ok()) << digits.status();
    digits_ = *std::move(digits);
    auto meta = Upload("digits", digits_.features, digits_.targets, 256);
    ASSERT_TRUE(meta.ok()) << meta.status();
  }
  Dataset digits_;
};

std::vector<double> GatherLabels(const std::vector<double>& y, const std::vector<int64_t>& rows) {
  std::vector<double> out;
  for (int64_t r : rows) out.push_back(y[static_cast<size_t>(r)]);
  return out;
}

TEST_F(DigitsStoreTest, SplitEqualsTrainTestSplitAndViewsGatherBaseRows) {
  auto split = store_->Split("digits", TestSize::Fraction(0.2), 1337, true, "digits-train",
                             "digits-test", false);
  ASSERT_TRUE(split.ok()) << split.status();
  auto oracle = TrainTestSplit(1797, TestSize::Fraction(0.2), 1337, true);
  ASSERT_TRUE(oracle.ok());
  EXPECT_EQ(split->train_indices, oracle->train);
  EXPECT_EQ(split->test_indices, oracle->test);
  EXPECT_EQ(split->train.rows, 1437u);
  EXPECT_EQ(split->test.rows, 360u);
  EXPECT_EQ(split->train.view_of, "digits");
  EXPECT_EQ(split->test.view_of, "digits");
  EXPECT_EQ(split->train.cols, 64u);
  EXPECT_EQ(split->train.labels, LabelKind::kNumeric);

  for (int pass = 0; pass < 2; ++pass) {
    SCOPED_TRACE(pass == 0 ? "as split" : "after reopening the store");
    auto train = store_->ReadRows("digits-train", 0, 1437);
    ASSERT_TRUE(train.ok()) << train.status();
    EXPECT_TRUE(BitwiseEqual(*train, Matrix::Gather(digits_.features, oracle->train)));
    auto test = store_->ReadRows("digits-test", 0, 360);
    ASSERT_TRUE(test.ok()) << test.status();
    EXPECT_TRUE(BitwiseEqual(*test, Matrix::Gather(digits_.features, oracle->test)));
    // A range inside a view is that range of the view's rows.
    auto middle = store_->ReadRows("digits-train", 100, 117);
    ASSERT_TRUE(middle.ok());
    const std::vector<int64_t> rows(oracle->train.begin() + 100, oracle->train.begin() + 117);
    EXPECT_TRUE(BitwiseEqual(*middle, Matrix::Gather(digits_.features, rows)));
    EXPECT_EQ(*store_->ReadLabels("digits-train"), GatherLabels(digits_.targets, oracle->train));
    EXPECT_EQ(*store_->ReadLabels("digits-test"), GatherLabels(digits_.targets, oracle->test));
    std::vector<std::string> names;
    for (const DatasetMeta& m : store_->List()) names.push_back(m.name);
    EXPECT_THAT(names, ElementsAre("digits", "digits-test", "digits-train"));
    Reopen();
  }
  // Views hold indices, not rows.
  EXPECT_FALSE(fs::exists(dir_ + "/datasets/digits-train/features.f64"));
  EXPECT_EQ(fs::file_size(dir_ + "/datasets/digits-train/indices.i64"), 1437u * 8);
}

TEST_F(DigitsStoreTest, UnshuffledSplitIsContiguous) {
  auto split =
      store_->Split("digits", TestSize::Count(97), std::nullopt, false, "head", "tail", false);
  ASSERT_TRUE(split.ok()) << split.status();
  auto oracle = TrainTestSplit(1797, TestSize::Count(97), std::nullopt, false);
  EXPECT_EQ(split->train_indices, oracle->train);
  EXPECT_EQ(split->test_indices, oracle->test);
  auto tail = store_->ReadRows("tail", 0, 97);
  ASSERT_TRUE(tail.ok());
  EXPECT_TRUE(BitwiseEqual(*tail, Matrix::CopyOf(digits_.features.view().Slice(1700, 1797))));
}

TEST_F(DigitsStoreTest, SplitOfAViewResolvesToBaseRows) {
  auto first = store_->Split("digits", TestSize::Fraction(0.2), 1337, true, "train", "test", false);
  ASSERT_TRUE(first.ok());
  auto second = store_->Split("train", TestSize::Count(100), 7, true, "fit", "valid", false);
  ASSERT_TRUE(second.ok()) << second.status();
  // Positions within "train", as scikit-learn would return them for train's rows.
  auto oracle = TrainTestSplit(1437, TestSize::Count(100), 7, true);
  EXPECT_EQ(second->train_indices, oracle->train);
  EXPECT_EQ(second->test_indices, oracle->test);
  EXPECT_EQ(second->train.view_of, "digits");  // no chains: the base, not "train"
  EXPECT_EQ(second->test.rows, 100u);
  const Matrix train_rows = Matrix::Gather(digits_.features, first->train_indices);
  const std::vector<double> train_labels = GatherLabels(digits_.targets, first->train_indices);
  for (int pass = 0; pass < 2; ++pass) {
    auto valid = store_->ReadRows("valid", 0, 100);
    ASSERT_TRUE(valid.ok()) << valid.status();
    EXPECT_TRUE(BitwiseEqual(*valid, Matrix::Gather(train_rows, oracle->test)));
    auto fit = store_->ReadRows("fit", 0, 1337);
    ASSERT_TRUE(fit.ok()) << fit.status();
    EXPECT_TRUE(BitwiseEqual(*fit, Matrix::Gather(train_rows, oracle->train)));
    EXPECT_EQ(*store_->ReadLabels("valid"), GatherLabels(train_labels, oracle->test));
    Reopen();
  }
  // The intermediate view can go: the new views depend on the base only.
  EXPECT_TRUE(store_->Delete("train").ok());
  EXPECT_TRUE(store_->ReadRows("fit", 0, 10).ok());
}

TEST_F(DigitsStoreTest, DeleteAndReplaceRules) {
  ASSERT_TRUE(store_->Split("digits", TestSize::Fraction(0.25), 1, true, "a", "b", false).ok());
  absl::Status s = store_->Delete("digits");
  EXPECT_EQ(s.code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(s.message(), HasSubstr("\"a\""));  // names a view
  // Replacing a base with views fails at BeginUpload (and would again at Commit).
  UploadHeader h{"digits", 64, LabelKind::kNone, {}, true};
  auto w = store_->BeginUpload(h);
  EXPECT_EQ(w.status().code(), absl::StatusCode::kFailedPrecondition);
  // So does replacing it by a split part.
  auto split = store_->Split("a", TestSize::Count(5), 1, true, "digits", "c", true);
  EXPECT_EQ(split.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(store_->Describe("c").status().code(), absl::StatusCode::kNotFound);
  // Parts replace parts with replace, and not without.
  split = store_->Split("digits", TestSize::Fraction(0.5), 2, true, "a", "b", false);
  EXPECT_EQ(split.status().code(), absl::StatusCode::kAlreadyExists);
  split = store_->Split("digits", TestSize::Fraction(0.5), 2, true, "a", "b", true);
  ASSERT_TRUE(split.ok()) << split.status();
  EXPECT_EQ(store_->Describe("a")->rows, 898u);

  EXPECT_TRUE(store_->Delete("a").ok());
  EXPECT_EQ(store_->Delete("digits").code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_TRUE(store_->Delete("b").ok());
  EXPECT_TRUE(store_->Delete("digits").ok());
  EXPECT_EQ(store_->Describe("digits").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("digits").code(), absl::StatusCode::kNotFound);
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_THAT(DatasetDirEntries(), IsEmpty());
  Reopen();
  EXPECT_THAT(store_->List(), IsEmpty());
}

TEST_F(DatasetStoreTest, ReplaceSwapsTheWholeDataset) {
  ASSERT_TRUE(Upload("x", Matrix(10, 2, std::vector<double>(20, 1.0)), {}, 3).ok());
  EXPECT_EQ(Upload("x", Matrix(5, 3), {}, 5).status().code(), absl::StatusCode::kAlreadyExists);
  auto meta = Upload("x", Matrix(5, 3, std::vector<double>(15, 2.0)), {1, 2, 3, 4, 5}, 2, true);
  ASSERT_TRUE(meta.ok()) << meta.status();
  for (int pass = 0; pass < 2; ++pass) {
    EXPECT_EQ(store_->Describe("x")->cols, 3u);
    EXPECT_EQ(store_->Describe("x")->labels, LabelKind::kNumeric);
    EXPECT_TRUE(
        BitwiseEqual(*store_->ReadRows("x", 0, 5), Matrix(5, 3, std::vector<double>(15, 2.0))));
    Reopen();
  }
  EXPECT_THAT(DatasetDirEntries(), ElementsAre("x"));
}

// Readers never see a mixture of versions, nor lose the files, while a writer replaces and
// deletes the dataset they are reading.
TEST_F(DatasetStoreTest, ReadersSeeWholeVersionsDuringReplaceAndDelete) {
  constexpr size_t kRows = 2000, kCols = 4;
  ASSERT_TRUE(
      Upload("v", Matrix(kRows, kCols, std::vector<double>(kRows * kCols, 0.0)), {}, 500).ok());
  std::atomic<bool> stop{false};
  std::atomic<int> reads{0}, bad{0};
  std::thread reader([&] {
    while (!stop.load()) {
      auto m = store_->ReadRows("v", 0, kRows);
      if (!m.ok()) {
        if (m.status().code() != absl::StatusCode::kNotFound) ++bad;
        continue;
      }
      for (double x : m->values()) {
        if (x != m->values()[0]) {
          ++bad;
          break;
        }
      }
      ++reads;
    }
  });
  for (int version = 1; version <= 20; ++version) {
    const Matrix m(kRows, kCols, std::vector<double>(kRows * kCols, version));
    ASSERT_TRUE(Upload("v", m, {}, 700, /*replace=*/true).ok());
    if (version % 5 == 0) {
      ASSERT_TRUE(store_->Delete("v").ok());
    }
  }
  stop = true;
  reader.join();
  EXPECT_EQ(bad.load(), 0);
  EXPECT_GT(reads.load(), 0);
  EXPECT_THAT(DatasetDirEntries(), IsEmpty());  // the last version was deleted
}

TEST_F(DatasetStoreTest, ErrorsNameTheField) {
  const auto upload_error = [&](const UploadHeader& h) { return store_->BeginUpload(h).status(); };
  absl::Status s = upload_error({"", 3, LabelKind::kNone, {}, false});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("header.name"));
  for (const std::string& bad : std::vector<std::string>{
           "a/b", "..", ".hidden", "sp ace", std::string(129, 'a'), std::string("nul\0", 4)}) {
    s = upload_error({bad, 3, LabelKind::kNone, {}, false});
    EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << bad;
    EXPECT_THAT(s.message(), HasSubstr("header.name: ")) << bad;
  }
  EXPECT_TRUE(store_->BeginUpload({std::string(128, 'a'), 1, LabelKind::kNone, {}, false}).ok());
  s = upload_error({"ok", 0, LabelKind::kNone, {}, false});
  EXPECT_EQ(s.message(), "header.cols: must be >= 1, got 0");
  s = upload_error({"ok", 3, LabelKind::kNone, {"a", "b"}, false});
  EXPECT_EQ(s.message(), "header.feature_names: expected 3 names (or none), got 2");

  auto w = store_->BeginUpload({"ok", 64, LabelKind::kNumeric, {}, false});
  ASSERT_TRUE(w.ok());
  Matrix rows(100, 64);
  std::vector<double> labels(100, 1.0);
  Matrix narrow(100, 63);
  s = (*w)->Append(narrow, labels, {});
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(s.message(), "chunk.rows: expected 64 columns, got 63");
  s = (*w)->Append(rows, absl::MakeConstSpan(labels).subspan(0, 99), {});
  EXPECT_EQ(s.message(), "chunk.labels: expected 100 labels, got 99");
  s = (*w)->Append(rows, labels, {"x"});
  EXPECT_THAT(s.message(), HasSubstr("chunk.string_labels: "));
  rows.at(3, 2) = std::nan("");
  s = (*w)->Append(rows, labels, {});
  EXPECT_EQ(s.message(), "chunk.rows.values[3][2]: value nan is not finite");
  rows.at(3, 2) = 0;
  labels[7] = -std::numeric_limits<double>::infinity();
  s = (*w)->Append(rows, labels, {});
  EXPECT_EQ(s.message(), "chunk.labels[7]: value -inf is not finite");
  labels[7] = 0;
  // Rejected chunks left nothing behind; the upload goes on.
  EXPECT_EQ((*w)->rows(), 0u);
  ASSERT_TRUE((*w)->Append(rows, labels, {}).ok());
  EXPECT_EQ((*w)->rows(), 100u);
  ASSERT_TRUE((*w)->Commit().ok());
  EXPECT_EQ((*w)->Commit().status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_EQ(store_->ReadRows("ok", 0, 100)->values(), rows.values());

  // Label kinds.
  auto none = store_->BeginUpload({"none", 1, LabelKind::kNone, {}, false});
  s = (*none)->Append(Matrix(1, 1), {1.0}, {});
  EXPECT_THAT(s.message(), HasSubstr("chunk.labels: "));
  auto str = store_->BeginUpload({"str", 1, LabelKind::kString, {}, false});
  s = (*str)->Append(Matrix(2, 1), {}, {"a"});
  EXPECT_EQ(s.message(), "chunk.string_labels: expected 2 labels, got 1");
  s = (*str)->Append(Matrix(1, 1), {1.0}, {"a"});
  EXPECT_THAT(s.message(), HasSubstr("chunk.labels: "));

  // Empty uploads.
  auto empty = store_->BeginUpload({"empty", 2, LabelKind::kNone, {}, false});
  ASSERT_TRUE(empty.ok());
  auto committed = (*empty)->Commit();
  EXPECT_EQ(committed.status().code(), absl::StatusCode::kInvalidArgument);
  EXPECT_EQ(committed.status().message(), "dataset: no rows");
  EXPECT_EQ(store_->Describe("empty").status().code(), absl::StatusCode::kNotFound);

  // Duplicates.
  EXPECT_EQ(store_->BeginUpload({"ok", 64, LabelKind::kNone, {}, false}).status().code(),
            absl::StatusCode::kAlreadyExists);
  EXPECT_TRUE(store_->BeginUpload({"ok", 64, LabelKind::kNone, {}, true}).ok());

  // Unknown datasets, everywhere.
  const std::string unknown = "dataset: no dataset named \"nope\"";
  EXPECT_EQ(store_->Describe("nope").status().message(), unknown);
  EXPECT_EQ(store_->Describe("nope").status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(store_->Delete("nope").message(), unknown);
  EXPECT_EQ(store_->ReadRows("nope", 0, 1).status().message(), unknown);
  EXPECT_EQ(store_->ReadLabels("nope").status().message(), unknown);
  EXPECT_EQ(
      store_->Split("nope", TestSize::Fraction(0.2), 1, true, "a", "b", false).status().message(),
      unknown);

  // Reads and splits.
  s = store_->ReadRows("ok", 50, 101).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("rows: [50, 101)"));
  EXPECT_EQ(store_->ReadRows("ok", 60, 50).status().code(), absl::StatusCode::kInvalidArgument);
  ASSERT_TRUE(Upload("unlabeled", Matrix(3, 1), {}, 3).ok());
  EXPECT_EQ(store_->ReadLabels("unlabeled").status().code(), absl::StatusCode::kFailedPrecondition);
  s = store_->Split("ok", TestSize::Fraction(1.5), 1, true, "a", "b", false).status();
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument);
  EXPECT_THAT(s.message(), HasSubstr("test_size"));
  s = store_->Split("ok", TestSize::Count(100), 1, true, "a", "b", false).status();
  EXPECT_THAT(s.message(), HasSubstr("test_size"));
  s = store_->Split("ok", TestSize::Fraction(0.2), 1, true, "a", "a", false).status();
  EXPECT_THAT(s.message(), HasSubstr("test_name: "));
  s = store_->Split("ok", TestSize::Fraction(0.2), 1, true, "ok", "b", false).status();
  EXPECT_THAT(s.message(), HasSubstr("train_name: "));
  s = store_->Split("ok", TestSize::Fraction(0.2), 1, true, "a", "b/c", false).status();
  EXPECT_THAT(s.message(), HasSubstr("test_name: "));
  std::vector<std::string> names;
  for (const DatasetMeta& m : store_->List()) names.push_back(m.name);
  EXPECT_THAT(names, ElementsAre("ok", "unlabeled"));
}

TEST_F(DatasetStoreTest, AbortedUploadLeavesNothing) {
  {
    auto w = store_->BeginUpload({"gone", 2, LabelKind::kString, {}, false});
    ASSERT_TRUE(w.ok());
    ASSERT_TRUE((*w)->Append(Matrix(3, 2), {}, {"a", "b", "a"}).ok());
    EXPECT_THAT(DatasetDirEntries(), ElementsAre(::testing::StartsWith(".tmp-gone-")));
  }
  EXPECT_THAT(DatasetDirEntries(), IsEmpty());
  EXPECT_THAT(store_->List(), IsEmpty());
  EXPECT_EQ(store_->Describe("gone").status().code(), absl::StatusCode::kNotFound);
  // The name is free.
  EXPECT_TRUE(Upload("gone", Matrix(1, 2), {}, 1).ok());
}

TEST_F(DatasetStoreTest, CrashLeftoversAreSweptAtOpen) {
  ASSERT_TRUE(Upload("kept", Matrix(4, 2, {1, 2, 3, 4, 5, 6, 7, 8}), {}, 4).ok());
  // An upload cut short, and a replace cut short after moving the old version aside.
  fs::create_directories(dir_ + "/datasets/.tmp-half-123.4");
  std::ofstream(dir_ + "/datasets/.tmp-half-123.4/features.f64") << "partial";
  store_.reset();
  fs::rename(dir_ + "/datasets/kept", dir_ + "/datasets/.old-kept-99.1");
  Reopen();
  EXPECT_TRUE(store_->load_errors().empty());
  EXPECT_THAT(DatasetDirEntries(), ElementsAre("kept"));
  EXPECT_EQ(store_->ReadRows("kept", 0, 4)->values(),
            (std::vector<double>{1, 2, 3, 4, 5, 6, 7, 8}));
}

// Meta files written before version 2 (the durable-file format) are read as they are.
// A version-3 meta payload less its data file checksums (u64 n, n x (str, u64, u32)): the
// payload of versions 1 and 2.
std::string StripDataCrcs(const std::string& v3_payload, std::vector<std::string> files) {
  size_t tail = 8;
  for (const std::string& f : files) tail += 8 + f.size() + 8 + 4;
  return v3_payload.substr(0, v3_payload.size() - tail);
}

TEST_F(DatasetStoreTest, VersionOneMetaFilesStillLoad) {
  ASSERT_TRUE(Upload("old", Matrix(3, 2, {1, 2, 3, 4, 5, 6}), {7, 8, 9}, 2).ok());
  ASSERT_TRUE(store_->Split("old", TestSize::Count(1), 0, true, "old-a", "old-b", false).ok());
  store_.reset();
  for (const std::string name : {"old", "old-a"}) {
    const std::string path = dir_ + "/datasets/" + name + "/meta";
    std::ifstream in(path, std::ios::binary);
    std::string v3((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    ASSERT_EQ(v3[8], 3);
    const std::string payload =
        StripDataCrcs(v3.substr(32), name == "old" ? std::vector<std::string>{"features.f64",
                                                                              "labels.f64"}
                                                   : std::vector<std::string>{"indices.i64"});
    std::string v1 = v3.substr(0, 8);
    // magic | u32 1 | u64 length | payload | u32 CRC-32 of everything before it
    for (int i = 0; i < 4; ++i) v1.push_back(static_cast<char>(i == 0 ? 1 : 0));
    for (int i = 0; i < 8; ++i) v1.push_back(static_cast<char>(payload.size() >> (8 * i)));
    v1 += payload;
    const uint32_t crc = Crc32(v1);
    for (int i = 0; i < 4; ++i) v1.push_back(static_cast<char>(crc >> (8 * i)));
    std::ofstream(path, std::ios::binary | std::ios::trunc) << v1;
  }
  Reopen();
  EXPECT_TRUE(store_->load_errors().empty());
  EXPECT_EQ(store_->ReadRows("old", 0, 3)->values(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
  EXPECT_EQ(store_->ReadLabels("old-a")->size(), 2u);
  EXPECT_EQ(store_->Describe("old-a")->view_of, "old");
}

// Version 2 (a durable file without data file checksums) still loads: sizes are then the only
// check of the data files.
TEST_F(DatasetStoreTest, VersionTwoMetaFilesStillLoad) {
  ASSERT_TRUE(Upload("old", Matrix(3, 2, {1, 2, 3, 4, 5, 6}), {7, 8, 9}, 2).ok());
  store_.reset();
  const std::string path = dir_ + "/datasets/old/meta";
  std::ifstream in(path, std::ios::binary);
  std::string v3((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
  ASSERT_EQ(v3[8], 3);
  const std::string payload = StripDataCrcs(v3.substr(32), {"features.f64", "labels.f64"});
  std::ofstream(path, std::ios::binary | std::ios::trunc)
      << EncodeDurableFile(DurableFileFormat{"KNNDSET\n", 2, 2, "dataset meta file"}, payload);
  Reopen();
  EXPECT_TRUE(store_->load_errors().empty());
  EXPECT_EQ(store_->ReadRows("old", 0, 3)->values(), (std::vector<double>{1, 2, 3, 4, 5, 6}));
}

TEST_F(DatasetStoreTest, TheDirectoryIsLockedWhileOpen) {
  auto second = DatasetStore::Open(dir_);
  EXPECT_EQ(second.status().code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(second.status().message(), HasSubstr("LOCK"));
}

void FlipByte(const std::string& path, std::streamoff at) {
  std::fstream f(path, std::ios::in | std::ios::out | std::ios::binary);
  f.seekg(at);
  char c;
  f.get(c);
  f.seekp(at);
  f.put(static_cast<char>(c ^ 0x20));
}

// Decision: a dataset that fails its checks at Open does not stop the store. It is moved to
// <dir>/quarantine/ (kept for inspection, and its name freed), the other datasets load, and
// load_errors() says which file was wrong and where the dataset went.
TEST_F(DatasetStoreTest, DamagedDatasetsAreQuarantinedAtOpen) {
  ASSERT_TRUE(Upload("good", Matrix(3, 2, {1, 2, 3, 4, 5, 6}), {7, 8, 9}, 2).ok());
  ASSERT_TRUE(Upload("flipped", Matrix(3, 2), {}, 3).ok());
  ASSERT_TRUE(Upload("bitrot", Matrix(3, 2, {1, 2, 3, 4, 5, 6}), {7, 8, 9}, 2).ok());
  ASSERT_TRUE(Upload("short", Matrix(3, 2), {}, 3).ok());
  ASSERT_TRUE(Upload("future", Matrix(3, 2), {}, 3).ok());
  ASSERT_TRUE(store_->Split("good", TestSize::Count(1), 0, true, "good-a", "good-b", false).ok());
  store_.reset();
  const std::string datasets = dir_ + "/datasets/";
  FlipByte(datasets + "flipped/meta", 40);  // a payload byte
  FlipByte(datasets + "bitrot/features.f64", 9);  // same size, one bit: only the CRC sees it
  fs::resize_file(datasets + "short/features.f64", 40);
  {
    // A meta file from a newer build: version 4, with valid checksums, so the version is what
    // fails (the durable file's header: version at byte 8, header CRC at 28 over [0, 28)).
    std::ifstream in(datasets + "future/meta", std::ios::binary);
    std::string bytes((std::istreambuf_iterator<char>(in)), std::istreambuf_iterator<char>());
    bytes[8] = 4;
    const uint32_t crc = Crc32(std::string_view(bytes).substr(0, 28));
    for (int i = 0; i < 4; ++i) bytes[28 + i] = static_cast<char>(crc >> (8 * i));
    std::ofstream(datasets + "future/meta", std::ios::binary | std::ios::trunc) << bytes;
  }
  Reopen();
  std::vector<std::string> names;
  for (const DatasetMeta& m : store_->List()) names.push_back(m.name);
  EXPECT_THAT(names, ElementsAre("good", "good-a", "good-b"));
  EXPECT_EQ(store_->ReadLabels("good-a")->size(), 2u);
  ASSERT_EQ(store_->load_errors().size(), 4u);
  const std::string bitrot = std::string(store_->load_errors()[0].message());
  EXPECT_EQ(store_->load_errors()[0].code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(bitrot, HasSubstr(datasets + "bitrot/features.f64: checksum mismatch"));
  EXPECT_THAT(store_->quarantined_bases(), ElementsAre("bitrot", "flipped", "future", "short"));
  const std::string flipped = std::string(store_->load_errors()[1].message());
  const std::string future = std::string(store_->load_errors()[2].message());
  const std::string truncated = std::string(store_->load_errors()[3].message());
  EXPECT_EQ(store_->load_errors()[1].code(), absl::StatusCode::kDataLoss);
  EXPECT_THAT(flipped,
              HasSubstr(datasets + "flipped/meta: the dataset meta file's checksum does not match"));
  EXPECT_THAT(flipped, HasSubstr("moved to " + dir_ + "/quarantine/flipped-"));
  EXPECT_EQ(store_->load_errors()[2].code(), absl::StatusCode::kFailedPrecondition);
  EXPECT_THAT(future, HasSubstr(datasets + "future/meta: dataset meta file format version 4 is "
                                           "newer than this build supports (3)"));
  EXPECT_THAT(truncated, HasSubstr(datasets + "short/features.f64: expected 48 bytes, found 40"));
  EXPECT_THAT(DatasetDirEntries(), ElementsAre("good", "good-a", "good-b"));
  EXPECT_EQ(std::distance(fs::directory_iterator(dir_ + "/quarantine"), fs::directory_iterator()),
            4);
  // The names are free again.
  EXPECT_TRUE(Upload("flipped", Matrix(1, 1), {}, 1).ok());

  // A view whose base is gone is reported too (and quarantined), not loaded dangling.
  store_.reset();
  fs::remove_all(datasets + "good");
  Reopen();
  EXPECT_EQ(store_->load_errors().size(), 2u);
  EXPECT_THAT(std::string(store_->load_errors()[0].message()),
              HasSubstr("base dataset \"good\" is not loaded"));
  names.clear();
  for (const DatasetMeta& m : store_->List()) names.push_back(m.name);
  EXPECT_THAT(names, ElementsAre("flipped"));
}

// Peak resident memory (VmHWM), after resetting it; 0 if the kernel does not allow the reset.
size_t ResetPeakRss() {
  std::ofstream clear("/proc/self/clear_refs");
  clear << "5";
  clear.close();
  return clear.fail() ? 0 : 1;
}
size_t PeakRssBytes() {
  std::ifstream status("/proc/self/status");
  std::string line;
  while (std::getline(status, line)) {
    if (line.rfind("VmHWM:", 0) == 0) return std::stoul(line.substr(6)) * 1024;
  }
  return 0;
}

double LargeValue(size_t i, size_t j) {
  return static_cast<double>(i) * 8 + static_cast<double>(j) * 0.125;
}

TEST_F(DatasetStoreTest, LargeUploadStreamsWithBoundedMemory) {
  constexpr size_t kRows = 330000, kCols = 8, kChunk = 8192;  // 20.1 MiB of doubles
  const bool measured = ResetPeakRss() != 0;
  const size_t before = PeakRssBytes();
  {
    auto w = store_->BeginUpload({"large", kCols, LabelKind::kNumeric, {}, false});
    ASSERT_TRUE(w.ok());
    Matrix chunk(kChunk, kCols);
    std::vector<double> labels(kChunk);
    for (size_t b = 0; b < kRows; b += kChunk) {
      const size_t n = std::min(kChunk, kRows - b);
      for (size_t i = 0; i < n; ++i) {
        for (size_t j = 0; j < kCols; ++j) chunk.at(i, j) = LargeValue(b + i, j);
        labels[i] = static_cast<double>((b + i) % 10);
      }
      ASSERT_TRUE(
          (*w)->Append(chunk.view().Slice(0, n), absl::MakeConstSpan(labels).subspan(0, n), {})
              .ok());
    }
    auto meta = (*w)->Commit();
    ASSERT_TRUE(meta.ok()) << meta.status();
    EXPECT_EQ(meta->rows, kRows);
  }
  if (measured) {
    // The whole dataset is 20 MiB; a chunked upload needs a chunk (512 KiB) and change.
    EXPECT_LT(PeakRssBytes() - before, size_t{8} << 20);
  }
  EXPECT_EQ(fs::file_size(dir_ + "/datasets/large/features.f64"), kRows * kCols * 8);
  for (uint64_t b : {uint64_t{0}, uint64_t{123456}, uint64_t{kRows - 1000}}) {
    auto m = store_->ReadRows("large", b, b + 1000);
    ASSERT_TRUE(m.ok()) << m.status();
    for (size_t i = 0; i < 1000; ++i) {
      for (size_t j = 0; j < kCols; ++j) ASSERT_EQ(m->at(i, j), LargeValue(b + i, j));
    }
  }
  // A random split of it gathers correctly (runs of nearby rows share a read).
  auto split =
      store_->Split("large", TestSize::Fraction(0.1), 3, true, "large-train", "large-test", false);
  ASSERT_TRUE(split.ok()) << split.status();
  auto test = store_->ReadRows("large-test", 0, split->test.rows);
  ASSERT_TRUE(test.ok());
  for (size_t i = 0; i < test->rows(); ++i) {
    const size_t row = static_cast<size_t>(split->test_indices[i]);
    for (size_t j = 0; j < kCols; ++j) ASSERT_EQ(test->at(i, j), LargeValue(row, j));
  }
  auto labels = store_->ReadLabels("large-test");
  ASSERT_TRUE(labels.ok());
  for (size_t i = 0; i < labels->size(); ++i) {
    ASSERT_EQ((*labels)[i], static_cast<double>(split->test_indices[i] % 10));
  }
}

}  // namespace
}  // namespace knncluster::coordinator
