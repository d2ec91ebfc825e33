// Matrix: a dense row-major matrix of doubles that owns its storage, and MatrixView, a borrowed
// read-only window onto one (or onto any row-major buffer). These are the one representation
// of feature data in the core library: datasets, indexes and estimators all speak it.
//
// Thread safety: a const Matrix / MatrixView may be read from any number of threads.
#ifndef KNNCLUSTER_CORE_BASE_MATRIX_H_
#define KNNCLUSTER_CORE_BASE_MATRIX_H_

#include <cassert>
#include <cstddef>
#include <cstdint>
#include <utility>
#include <vector>

#include "absl/types/span.h"

namespace knncluster {

// A borrowed, read-only, row-major view: `rows` rows of `cols` doubles, row i at data + i*cols.
// REQUIRES: the viewed storage outlives the view.
class MatrixView {
 public:
  MatrixView() = default;
  MatrixView(const double* data, size_t rows, size_t cols) : data_(data), rows_(rows), cols_(cols) {}

  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  bool empty() const { return rows_ == 0; }
  const double* data() const { return data_; }
  const double* row(size_t i) const {
    assert(i < rows_);
    return data_ + i * cols_;
  }
  double at(size_t i, size_t j) const { return row(i)[j]; }
  absl::Span<const double> row_span(size_t i) const { return {row(i), cols_}; }
  // Rows [begin, end) as a view.
  MatrixView Slice(size_t begin, size_t end) const {
    assert(begin <= end && end <= rows_);
    return MatrixView(data_ + begin * cols_, end - begin, cols_);
  }

 private:
  const double* data_ = nullptr;
  size_t rows_ = 0;
  size_t cols_ = 0;
};

// An owning row-major matrix. Movable and copyable (copies are explicit deep copies of data).
class Matrix {
 public:
  Matrix() = default;
  Matrix(size_t rows, size_t cols) : rows_(rows), cols_(cols), data_(rows * cols, 0.0) {}
  // REQUIRES: values.size() == rows * cols.
  Matrix(size_t rows, size_t cols, std::vector<double> values)
      : rows_(rows), cols_(cols), data_(std::move(values)) {
    assert(data_.size() == rows_ * cols_);
  }
  // A deep copy of a view.
  static Matrix CopyOf(MatrixView v) {
    return Matrix(v.rows(), v.cols(), std::vector<double>(v.data(), v.data() + v.rows() * v.cols()));
  }
  // The rows of `v` listed in `rows`, in that order.
  static Matrix Gather(MatrixView v, absl::Span<const int64_t> rows) {
    Matrix m(rows.size(), v.cols());
    for (size_t i = 0; i < rows.size(); ++i) {
      const double* src = v.row(static_cast<size_t>(rows[i]));
      std::copy(src, src + v.cols(), m.row(i));
    }
    return m;
  }

  size_t rows() const { return rows_; }
  size_t cols() const { return cols_; }
  bool empty() const { return rows_ == 0; }
  double* data() { return data_.data(); }
  const double* data() const { return data_.data(); }
  double* row(size_t i) {
    assert(i < rows_);
    return data_.data() + i * cols_;
  }
  const double* row(size_t i) const {
    assert(i < rows_);
    return data_.data() + i * cols_;
  }
  double& at(size_t i, size_t j) { return row(i)[j]; }
  double at(size_t i, size_t j) const { return row(i)[j]; }
  MatrixView view() const { return MatrixView(data_.data(), rows_, cols_); }
  operator MatrixView() const { return view(); }  // NOLINT: a Matrix is usable wherever a view is
  const std::vector<double>& values() const { return data_; }

 private:
  size_t rows_ = 0;
  size_t cols_ = 0;
  std::vector<double> data_;
};

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_BASE_MATRIX_H_
