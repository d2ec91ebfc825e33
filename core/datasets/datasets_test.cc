// Tests for core/datasets: the embedded digits data, the CSV reader and the .npy reader/writer.
// Oracles: scikit-learn's load_digits() (numbers computed once with Debian python3-sklearn and
// pasted here) and .npy fixtures written by numpy (tests/data/npy/make_fixtures.py).
#include <cmath>
#include <cstdint>
#include <cstdio>
#include <limits>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_join.h"
#include "core/datasets/csv.h"
#include "core/datasets/dataset.h"
#include "core/datasets/io_internal.h"
#include "core/datasets/npy.h"
#include "gmock/gmock.h"
#include "gtest/gtest.h"

namespace knncluster {
namespace {

using ::testing::ElementsAre;
using ::testing::ElementsAreArray;
using ::testing::HasSubstr;

// Asserts `s` is InvalidArgument with exactly `message`.
void ExpectInvalid(const absl::Status& s, const std::string& message) {
  EXPECT_EQ(s.code(), absl::StatusCode::kInvalidArgument) << s;
  EXPECT_EQ(s.message(), message);
}

std::vector<double> Row(const Matrix& m, size_t i) {
  return std::vector<double>(m.row(i), m.row(i) + m.cols());
}

// ---------------------------------------------------------------------------------------------
// digits

TEST(DigitsTest, ShapeNamesAndFirstAndLastRows) {
  absl::StatusOr<Dataset> ds = LoadDigits();
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->name, "digits");
  EXPECT_EQ(ds->size(), 1797u);
  EXPECT_EQ(ds->dim(), 64u);
  ASSERT_EQ(ds->targets.size(), 1797u);
  EXPECT_TRUE(ds->class_names.empty());
  ASSERT_EQ(ds->feature_names.size(), 64u);
  EXPECT_EQ(ds->feature_names[0], "pixel_0_0");
  EXPECT_EQ(ds->feature_names[9], "pixel_1_1");
  EXPECT_EQ(ds->feature_names[63], "pixel_7_7");
  // sklearn: load_digits().data[0], .target[0]
  EXPECT_THAT(Row(ds->features, 0),
              ElementsAreArray({0, 0, 5,  13, 9,  1,  0, 0, 0, 0, 13, 15, 10, 15, 5, 0,
                                0, 3, 15, 2,  0,  11, 8, 0, 0, 4, 12, 0,  0,  8,  8, 0,
                                0, 5, 8,  0,  0,  9,  8, 0, 0, 4, 11, 0,  1,  12, 7, 0,
                                0, 2, 14, 5,  10, 12, 0, 0, 0, 0, 6,  13, 10, 0,  0, 0}));
  EXPECT_EQ(ds->targets[0], 0.0);
  // sklearn: .data[-1], .target[-1], and row 1000 (pixel sum 268, target 1)
  EXPECT_THAT(Row(ds->features, 1796),
              ElementsAreArray({0, 0, 10, 14, 8,  1,  0, 0, 0, 2, 16, 14, 6,  1,  0, 0,
                                0, 0, 15, 15, 8,  15, 0, 0, 0, 0, 5,  16, 16, 10, 0, 0,
                                0, 0, 12, 15, 15, 12, 0, 0, 0, 4, 16, 6,  4,  16, 6, 0,
                                0, 8, 16, 10, 8,  16, 8, 0, 0, 1, 8,  12, 14, 12, 1, 0}));
  EXPECT_EQ(ds->targets[1796], 8.0);
  double row1000 = 0;
  for (size_t j = 0; j < 64; ++j) row1000 += ds->features.at(1000, j);
  EXPECT_EQ(row1000, 268.0);
  EXPECT_EQ(ds->targets[1000], 1.0);
  EXPECT_THAT(std::vector<double>(ds->targets.begin(), ds->targets.begin() + 5),
              ElementsAre(0, 1, 2, 3, 4));
}

TEST(DigitsTest, LabelCountsAndPixelSumMatchScikitLearn) {
  absl::StatusOr<Dataset> ds = LoadDigits();
  ASSERT_TRUE(ds.ok()) << ds.status();
  std::vector<int> counts(10, 0);
  for (double t : ds->targets) {
    ASSERT_TRUE(t >= 0 && t <= 9 && t == std::floor(t)) << t;
    ++counts[static_cast<int>(t)];
  }
  // np.bincount(load_digits().target)
  EXPECT_THAT(counts, ElementsAre(178, 182, 177, 183, 181, 182, 181, 179, 174, 180));
  double sum = 0;
  double max = 0;
  for (double v : ds->features.values()) {
    sum += v;
    max = std::max(max, v);
  }
  EXPECT_EQ(sum, 561718.0);  // int(load_digits().data.sum())
  EXPECT_EQ(max, 16.0);
}

TEST(DigitsTest, LoadBuiltinByName) {
  absl::StatusOr<Dataset> ds = LoadBuiltin("digits");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->size(), 1797u);
  EXPECT_THAT(BuiltinDatasetNames(), ElementsAre("digits"));
}

TEST(DigitsTest, UnknownBuiltinIsNotFoundListingKnownNames) {
  absl::StatusOr<Dataset> ds = LoadBuiltin("iris");
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kNotFound);
  EXPECT_EQ(ds.status().message(), "unknown built-in dataset \"iris\"; known: digits");
}

// ---------------------------------------------------------------------------------------------
// CSV: successful parses

CsvOptions Label(LabelColumn label) {
  CsvOptions o;
  o.label = std::move(label);
  return o;
}

TEST(CsvTest, NoHeaderUnlabeledByDefault) {
  absl::StatusOr<Dataset> ds = ParseCsv("1,2,3\n4,5,6\n", "t.csv");
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->name, "t.csv");
  EXPECT_EQ(ds->size(), 2u);
  EXPECT_EQ(ds->dim(), 3u);
  EXPECT_THAT(ds->features.values(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_TRUE(ds->targets.empty());
  EXPECT_TRUE(ds->feature_names.empty());
}

TEST(CsvTest, LabelByLastIndexFirstIndexAndName) {
  const std::string text = "a,b,y\n1,2,0\n3,4,1\n5,6,1\n";
  absl::StatusOr<Dataset> last = ParseCsv(text, "t.csv", Label(LabelColumn::Index(-1)));
  ASSERT_TRUE(last.ok()) << last.status();
  EXPECT_THAT(last->features.values(), ElementsAre(1, 2, 3, 4, 5, 6));
  EXPECT_THAT(last->targets, ElementsAre(0, 1, 1));
  EXPECT_THAT(last->feature_names, ElementsAre("a", "b"));
  EXPECT_TRUE(last->class_names.empty());

  absl::StatusOr<Dataset> first = ParseCsv(text, "t.csv", Label(LabelColumn::Index(0)));
  ASSERT_TRUE(first.ok()) << first.status();
  EXPECT_THAT(first->features.values(), ElementsAre(2, 0, 4, 1, 6, 1));
  EXPECT_THAT(first->targets, ElementsAre(1, 3, 5));
  EXPECT_THAT(first->feature_names, ElementsAre("b", "y"));

  absl::StatusOr<Dataset> by_name = ParseCsv(text, "t.csv", Label(LabelColumn::Name("b")));
  ASSERT_TRUE(by_name.ok()) << by_name.status();
  EXPECT_THAT(by_name->features.values(), ElementsAre(1, 0, 3, 1, 5, 1));
  EXPECT_THAT(by_name->targets, ElementsAre(2, 4, 6));
  EXPECT_THAT(by_name->feature_names, ElementsAre("a", "y"));

  absl::StatusOr<Dataset> middle = ParseCsv(text, "t.csv", Label(LabelColumn::Index(-2)));
  ASSERT_TRUE(middle.ok()) << middle.status();
  EXPECT_THAT(middle->targets, ElementsAre(2, 4, 6));
}

TEST(CsvTest, ExplicitHeaderTrueAndFalse) {
  CsvOptions o;
  o.header = true;
  absl::StatusOr<Dataset> named = ParseCsv("0,1\n2,3\n", "t.csv", o);  // numeric names
  ASSERT_TRUE(named.ok()) << named.status();
  EXPECT_THAT(named->feature_names, ElementsAre("0", "1"));
  EXPECT_THAT(named->features.values(), ElementsAre(2, 3));

  o.header = false;
  ExpectInvalid(ParseCsv("x,y\n2,3\n", "t.csv", o).status(), "t.csv:1:1: \"x\" is not a number");
}

TEST(CsvTest, StringLabelsBecomeSortedClassNames) {
  // No header: the first record's only text is its label, and later labels are text too.
  const std::string text =
      "5.1,3.5,setosa\n"
      "6.3,3.3,virginica\n"
      "5.8,2.7,versicolor\n"
      "4.9,3.0,setosa\n"
      "6.0,2.2,\"virginica\"\n";
  absl::StatusOr<Dataset> ds = ParseCsv(text, "iris.csv", Label(LabelColumn::Last()));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->size(), 5u);
  EXPECT_TRUE(ds->feature_names.empty());
  EXPECT_THAT(ds->class_names, ElementsAre("setosa", "versicolor", "virginica"));
  EXPECT_THAT(ds->targets, ElementsAre(0, 2, 1, 0, 2));
  EXPECT_THAT(Row(ds->features, 0), ElementsAre(5.1, 3.5));
}

TEST(CsvTest, MixedLabelsAreAllStringsSortedByBytes) {
  absl::StatusOr<Dataset> ds =
      ParseCsv("x,label\n1,b\n2,10\n3,B\n4,2\n5,b\n", "t.csv", Label(LabelColumn::Name("label")));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->class_names, ElementsAre("10", "2", "B", "b"));  // numpy.unique order
  EXPECT_THAT(ds->targets, ElementsAre(3, 0, 2, 1, 3));
}

TEST(CsvTest, HeaderDetectedWhenOnlyTheLabelNameIsText) {
  // "0,1,label" over numeric labels: a header with numeric-looking feature names.
  absl::StatusOr<Dataset> ds =
      ParseCsv("0,1,label\n7,8,1\n9,10,0\n", "t.csv", Label(LabelColumn::Last()));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->feature_names, ElementsAre("0", "1"));
  EXPECT_THAT(ds->features.values(), ElementsAre(7, 8, 9, 10));
  EXPECT_THAT(ds->targets, ElementsAre(1, 0));
}

TEST(CsvTest, QuotesCrlfSpacesBlankLinesBomAndOtherDelimiters) {
  const std::string text =
      "\xEF\xBB\xBF\"first, col\" ; \"say \"\"hi\"\"\";label\r\n"
      "\r\n"
      "  +1.5 ; \" 2e3 \" ; \"a;b\"\r\n"
      "-0.25;.5;\"multi\nline\"\r\n";
  CsvOptions o = Label(LabelColumn::Name("label"));
  o.delimiter = ';';
  absl::StatusOr<Dataset> ds = ParseCsv(text, "t.csv", o);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_THAT(ds->feature_names, ElementsAre("first, col", "say \"hi\""));
  EXPECT_THAT(ds->features.values(), ElementsAre(1.5, 2000, -0.25, 0.5));
  EXPECT_THAT(ds->class_names, ElementsAre("a;b", "multi\nline"));
  EXPECT_THAT(ds->targets, ElementsAre(0, 1));

  CsvOptions tabs;
  tabs.delimiter = '\t';
  absl::StatusOr<Dataset> tsv = ParseCsv("1\t2\n3\t4", "t.tsv", tabs);  // no final newline
  ASSERT_TRUE(tsv.ok()) << tsv.status();
  EXPECT_THAT(tsv->features.values(), ElementsAre(1, 2, 3, 4));
}

TEST(CsvTest, NonFiniteAcceptedOnlyWhenAllowed) {
  const std::string text = "a,b\n1,nan\n-inf,Infinity\n";
  ExpectInvalid(ParseCsv(text, "t.csv").status(),
                "t.csv:2:2 (column \"b\"): non-finite value \"nan\" (set "
                "CsvOptions.allow_nonfinite to accept it)");
  CsvOptions o;
  o.allow_nonfinite = true;
  absl::StatusOr<Dataset> ds = ParseCsv(text, "t.csv", o);
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_TRUE(std::isnan(ds->features.at(0, 1)));
  EXPECT_EQ(ds->features.at(1, 0), -std::numeric_limits<double>::infinity());
  EXPECT_EQ(ds->features.at(1, 1), std::numeric_limits<double>::infinity());
}

// ---------------------------------------------------------------------------------------------
// CSV: errors name file:line:column

TEST(CsvTest, NotANumberNamesLineColumnAndHeaderName) {
  std::string text = "pixel_0,pixel_1,pixel_2,pixel_3,pixel_4,label\n";
  for (int i = 0; i < 10; ++i) text += "1,2,3,4,5,0\n";
  text += "1,2,3,4,abc,0\n";  // line 12
  ExpectInvalid(ParseCsv(text, "digits_bad.csv", Label(LabelColumn::Last())).status(),
                "digits_bad.csv:12:5 (column \"pixel_4\"): \"abc\" is not a number");
  CsvOptions no_header;
  no_header.header = false;
  ExpectInvalid(ParseCsv("1,2\n3,4x\n", "t.csv", no_header).status(),
                "t.csv:2:2: \"4x\" is not a number");
  ExpectInvalid(ParseCsv("1,2\n3,0x10\n", "t.csv", no_header).status(),
                "t.csv:2:2: \"0x10\" is not a number");
  ExpectInvalid(ParseCsv("1,2\n3,+-4\n", "t.csv", no_header).status(),
                "t.csv:2:2: \"+-4\" is not a number");
  ExpectInvalid(ParseCsv("1,2\n3,\"4\"x\n", "t.csv", no_header).status(),
                "t.csv:2:2: unexpected \"x\" after a closing quote");
}

TEST(CsvTest, RaggedRowsNameTheLine) {
  ExpectInvalid(ParseCsv("a,b,c\n1,2,3\n4,5,6\n\n7,8\n", "t.csv").status(),
                "t.csv:5: expected 3 fields, got 2");
  ExpectInvalid(ParseCsv("1,2,3\n4,5,6,7\n", "t.csv").status(),
                "t.csv:2: expected 3 fields, got 4");
}

TEST(CsvTest, EmptyFieldsAndEmptyLabelsAreErrors) {
  ExpectInvalid(ParseCsv("a,b\n1,\n", "t.csv").status(), "t.csv:2:2 (column \"b\"): empty field");
  ExpectInvalid(ParseCsv("a,b\n1,\"  \"\n", "t.csv").status(),
                "t.csv:2:2 (column \"b\"): empty field");
  ExpectInvalid(ParseCsv("a,y\n1,0\n2,\n", "t.csv", Label(LabelColumn::Last())).status(),
                "t.csv:3:2 (column \"y\"): empty label");
}

TEST(CsvTest, NumericLabelErrorsNameTheLabelColumn) {
  ExpectInvalid(ParseCsv("a,y\n1,0\n2,inf\n", "t.csv", Label(LabelColumn::Last())).status(),
                "t.csv:3:2 (column \"y\"): non-finite value \"inf\" (set "
                "CsvOptions.allow_nonfinite to accept it)");
  ExpectInvalid(ParseCsv("a,y\n1,0\n2,1e999\n", "t.csv", Label(LabelColumn::Last())).status(),
                "t.csv:3:2 (column \"y\"): \"1e999\" is out of range for a double");
}

TEST(CsvTest, EmptyInputsAreErrors) {
  ExpectInvalid(ParseCsv("", "e.csv").status(), "e.csv: file is empty");
  ExpectInvalid(ParseCsv("\n  \r\n\n", "e.csv").status(), "e.csv: file is empty");
  ExpectInvalid(ParseCsv("a,b\n", "h.csv").status(), "h.csv: no data rows after the header");
}

TEST(CsvTest, LabelColumnErrors) {
  ExpectInvalid(ParseCsv("a,b\n1,2\n", "t.csv", Label(LabelColumn::Name("species"))).status(),
                "t.csv:1: label column \"species\" not found in the header (columns: \"a\", "
                "\"b\")");
  ExpectInvalid(ParseCsv("a,a,b\n1,2,3\n", "t.csv", Label(LabelColumn::Name("a"))).status(),
                "t.csv:1: label column \"a\" is ambiguous: columns 1 and 2 both have that name");
  CsvOptions o = Label(LabelColumn::Name("b"));
  o.header = false;
  ExpectInvalid(ParseCsv("1,2\n", "t.csv", o).status(),
                "t.csv: label column \"b\" given by name, but CsvOptions.header is false");
  ExpectInvalid(ParseCsv("1,2\n", "t.csv", Label(LabelColumn::Index(2))).status(),
                "t.csv: label column index 2 is out of range for 2 columns");
  ExpectInvalid(ParseCsv("1,2\n", "t.csv", Label(LabelColumn::Index(-3))).status(),
                "t.csv: label column index -3 is out of range for 2 columns");
  ExpectInvalid(ParseCsv("1\n2\n", "t.csv", Label(LabelColumn::Last())).status(),
                "t.csv: no feature columns: the only column is the label column");
}

TEST(CsvTest, UnterminatedQuoteNamesWhereItOpened) {
  ExpectInvalid(ParseCsv("a,b\n1,2\n3,\"4\n5,6\n", "t.csv").status(),
                "t.csv:3:2: unterminated quoted field (no closing '\"')");
}

TEST(CsvTest, InvalidDelimiterIsAnError) {
  CsvOptions o;
  o.delimiter = '"';
  ExpectInvalid(ParseCsv("1\n", "t.csv", o).status(), "t.csv: invalid CSV delimiter \"\\\"\"");
}

// ---------------------------------------------------------------------------------------------
// CSV: real files

std::string TempPath(const std::string& name) { return ::testing::TempDir() + name; }

TEST(CsvFileTest, LoadsAFileByPath) {
  const std::string path = TempPath("knn_datasets_test_small.csv");
  ASSERT_TRUE(datasets_internal::WriteFile(path, "x1,x2,kind\n0.5,1,cat\n2,3.5,dog\n").ok());
  absl::StatusOr<Dataset> ds = LoadCsv(path, Label(LabelColumn::Name("kind")));
  ASSERT_TRUE(ds.ok()) << ds.status();
  EXPECT_EQ(ds->name, "knn_datasets_test_small");
  EXPECT_THAT(ds->features.values(), ElementsAre(0.5, 1, 2, 3.5));
  EXPECT_THAT(ds->class_names, ElementsAre("cat", "dog"));
  EXPECT_THAT(ds->targets, ElementsAre(0, 1));
  EXPECT_THAT(ds->feature_names, ElementsAre("x1", "x2"));

  ASSERT_TRUE(datasets_internal::WriteFile(path, "x1,x2\n0.5,1\n2,?\n").ok());
  ExpectInvalid(LoadCsv(path).status(), path + ":3:2 (column \"x2\"): \"?\" is not a number");
  std::remove(path.c_str());
}

TEST(CsvFileTest, MissingFileIsNotFound) {
  absl::StatusOr<Dataset> ds = LoadCsv(TempPath("knn_datasets_test_no_such_file.csv"));
  EXPECT_EQ(ds.status().code(), absl::StatusCode::kNotFound) << ds.status();
  EXPECT_THAT(ds.status().message(), HasSubstr("knn_datasets_test_no_such_file.csv"));
}

TEST(CsvFileTest, DigitsWrittenAsCsvReadsBackIdentically) {
  absl::StatusOr<Dataset> digits = LoadDigits();
  ASSERT_TRUE(digits.ok()) << digits.status();
  std::string text;
  for (size_t i = 0; i < digits->size(); ++i) {
    absl::StrAppend(&text, absl::StrJoin(Row(digits->features, i), ","), ",", digits->targets[i],
                    "\r\n");
  }
  const std::string path = TempPath("knn_datasets_test_digits.csv");
  ASSERT_TRUE(datasets_internal::WriteFile(path, text).ok());
  absl::StatusOr<Dataset> back = LoadCsv(path, Label(LabelColumn::Last()));
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->features.rows(), 1797u);
  EXPECT_EQ(back->features.values(), digits->features.values());
  EXPECT_EQ(back->targets, digits->targets);
  std::remove(path.c_str());
}

// ---------------------------------------------------------------------------------------------
// .npy

std::string Fixture(const std::string& name) {
  return std::string(KNN_TEST_DATA_DIR) + "/npy/" + name;
}

std::string FixtureBytes(const std::string& name) {
  absl::StatusOr<std::string> bytes = datasets_internal::ReadFile(Fixture(name));
  EXPECT_TRUE(bytes.ok()) << bytes.status();
  return bytes.ok() ? *bytes : std::string();
}

TEST(NpyTest, ReadsEachDtype) {
  absl::StatusOr<Matrix> f4 = LoadNpy(Fixture("f4_2x3.npy"));
  ASSERT_TRUE(f4.ok()) << f4.status();
  EXPECT_EQ(f4->rows(), 2u);
  EXPECT_EQ(f4->cols(), 3u);
  EXPECT_THAT(f4->values(), ElementsAre(1.5, -2, 3.25, 0, 0.125, 100));

  absl::StatusOr<Matrix> f8 = LoadNpy(Fixture("f8_2x3.npy"));
  ASSERT_TRUE(f8.ok()) << f8.status();
  EXPECT_THAT(f8->values(), ElementsAre(1.5, -2, 3.25, 0.1, 1e-300, -1e300));  // bit-exact

  absl::StatusOr<Matrix> i4 = LoadNpy(Fixture("i4_2x3.npy"));
  ASSERT_TRUE(i4.ok()) << i4.status();
  EXPECT_THAT(i4->values(), ElementsAre(1, -7, 2147483647.0, -2147483648.0, 0, 42));

  absl::StatusOr<Matrix> i8 = LoadNpy(Fixture("i8_2x3.npy"));
  ASSERT_TRUE(i8.ok()) << i8.status();
  EXPECT_THAT(i8->values(),
              ElementsAre(9007199254740992.0, -5, 0, -9007199254740992.0, 7, 123456789012.0));
}

TEST(NpyTest, ReadsFormatVersions2And3) {
  for (const char* name : {"f8_v2.npy", "f8_v3.npy"}) {
    absl::StatusOr<Matrix> m = LoadNpy(Fixture(name));
    ASSERT_TRUE(m.ok()) << name << ": " << m.status();
    EXPECT_EQ(m->rows(), 2u) << name;
    EXPECT_THAT(m->values(), ElementsAre(1.5, -2, 3.25, 0, 0.125, 100)) << name;
  }
}

TEST(NpyTest, OneDimensionalIsAColumnAndAVector) {
  absl::StatusOr<Matrix> m = LoadNpy(Fixture("f8_vector.npy"));
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_EQ(m->rows(), 4u);
  EXPECT_EQ(m->cols(), 1u);
  absl::StatusOr<std::vector<double>> v = LoadNpyVector(Fixture("f8_vector.npy"));
  ASSERT_TRUE(v.ok()) << v.status();
  EXPECT_THAT(*v, ElementsAre(0, 1, 2, 1));
  absl::StatusOr<std::vector<double>> column = LoadNpyVector(Fixture("f8_column.npy"));
  ASSERT_TRUE(column.ok()) << column.status();
  EXPECT_THAT(*column, ElementsAre(3, 4));
  ExpectInvalid(
      LoadNpyVector(Fixture("f8_2x3.npy")).status(),
      Fixture("f8_2x3.npy") + ": expected a vector of shape (n,) or (n, 1), got shape (2, 3)");
}

TEST(NpyTest, UnsupportedLayoutsAndDtypesAreClearErrors) {
  ExpectInvalid(LoadNpy(Fixture("f8_fortran.npy")).status(),
                Fixture("f8_fortran.npy") +
                    ": the array is Fortran-ordered; save it with np.ascontiguousarray");
  ExpectInvalid(LoadNpy(Fixture("f8_bigendian.npy")).status(),
                Fixture("f8_bigendian.npy") +
                    ": dtype '>f8' is big-endian, which is not supported; convert with "
                    "arr.astype('<f8')");
  ExpectInvalid(LoadNpy(Fixture("object.npy")).status(),
                Fixture("object.npy") +
                    ": dtype '|O' is an object array (pickled Python objects), which is never "
                    "loaded; save a numeric array (supported: <f4, <f8, <i4, <i8)");
  ExpectInvalid(LoadNpy(Fixture("u1_2x3.npy")).status(),
                Fixture("u1_2x3.npy") +
                    ": unsupported dtype '|u1' (supported: <f4, <f8, <i4, <i8); convert with "
                    "arr.astype('<f8')");
  ExpectInvalid(
      LoadNpy(Fixture("f8_3d.npy")).status(),
      Fixture("f8_3d.npy") + ": shape (2, 2, 2) has 3 dimensions; expected a 1-D or 2-D array");
  ExpectInvalid(
      LoadNpy(Fixture("f8_scalar.npy")).status(),
      Fixture("f8_scalar.npy") + ": shape () has 0 dimensions; expected a 1-D or 2-D array");
  ExpectInvalid(LoadNpy(Fixture("i8_inexact.npy")).status(),
                Fixture("i8_inexact.npy") +
                    ": row 0, column 1 (0-based): 9007199254740993 is not exactly "
                    "representable as a double");
}

TEST(NpyTest, NonFiniteNamesRowAndColumnUnlessAllowed) {
  ExpectInvalid(LoadNpy(Fixture("f8_nan.npy")).status(),
                Fixture("f8_nan.npy") +
                    ": row 1, column 1 (0-based): non-finite value nan (pass allow_nonfinite "
                    "to accept it)");
  ExpectInvalid(LoadNpy(Fixture("f4_inf.npy")).status(),
                Fixture("f4_inf.npy") +
                    ": row 0, column 1 (0-based): non-finite value -inf (pass allow_nonfinite "
                    "to accept it)");
  absl::StatusOr<Matrix> m = LoadNpy(Fixture("f8_nan.npy"), /*allow_nonfinite=*/true);
  ASSERT_TRUE(m.ok()) << m.status();
  EXPECT_TRUE(std::isnan(m->at(1, 1)));
  EXPECT_EQ(m->at(1, 0), 3.0);
}

TEST(NpyTest, TruncatedAndTrailingBytesAreErrors) {
  const std::string bytes = FixtureBytes("f8_base_2x3.npy");
  ASSERT_EQ(bytes.size(), 128u + 48u);
  ExpectInvalid(ParseNpy(bytes.substr(0, bytes.size() - 1), "t.npy").status(),
                "t.npy: truncated .npy file: shape (2, 3) of '<f8' needs 48 data bytes, the file "
                "has 47");
  ExpectInvalid(ParseNpy(bytes.substr(0, 100), "t.npy").status(),
                "t.npy: truncated .npy file: the header claims 118 bytes but only 90 follow");
  ExpectInvalid(ParseNpy(bytes.substr(0, 9), "t.npy").status(),
                "t.npy: not a .npy file (it does not start with the magic string \"\\x93NUMPY\")");
  ExpectInvalid(ParseNpy(bytes + "xy", "t.npy").status(),
                "t.npy: 2 trailing bytes after the 48 data bytes of shape (2, 3) of '<f8'");
}

// Regression (fuzz_npy): a header of shape (4611686018427387642, 0) needs no data bytes, and was
// accepted as a matrix of 2^62 rows that EncodeNpy (and every other consumer) then looped over.
TEST(NpyTest, RowsOfZeroColumnsAreErrorsButNoRowsAreNot) {
  auto npy = [](const std::string& shape) {
    std::string header = "{'descr': '<f8', 'fortran_order': False, 'shape': " + shape + ", }\n";
    std::string out("\x93NUMPY\x01\x00", 8);
    out.push_back(static_cast<char>(header.size() & 0xff));
    out.push_back(static_cast<char>(header.size() >> 8));
    return out + header;
  };
  ExpectInvalid(ParseNpy(npy("(4611686018427387642 ,0,)"), "t.npy").status(),
                "t.npy: shape (4611686018427387642, 0) has rows of 0 columns; a matrix needs at "
                "least one column");
  ExpectInvalid(ParseNpy(npy("(3, 0)"), "t.npy").status(),
                "t.npy: shape (3, 0) has rows of 0 columns; a matrix needs at least one column");
  for (const char* empty : {"(0, 0)", "(0, 5)", "(0,)"}) {
    absl::StatusOr<Matrix> m = ParseNpy(npy(empty), "t.npy");
    ASSERT_TRUE(m.ok()) << empty << ": " << m.status();
    EXPECT_EQ(m->rows(), 0u) << empty;
  }
}

TEST(NpyTest, BadMagicVersionAndHeaderAreErrors) {
  std::string bytes = FixtureBytes("f8_base_2x3.npy");
  std::string bad_magic = bytes;
  bad_magic[1] = 'X';
  ExpectInvalid(ParseNpy(bad_magic, "t.npy").status(),
                "t.npy: not a .npy file (it does not start with the magic string \"\\x93NUMPY\")");
  ExpectInvalid(ParseNpy("a,b\n1,2\n", "t.npy").status(),
                "t.npy: not a .npy file (it does not start with the magic string \"\\x93NUMPY\")");
  std::string v4 = bytes;
  v4[6] = 4;
  ExpectInvalid(ParseNpy(v4, "t.npy").status(),
                "t.npy: unsupported .npy format version 4.0 (supported: 1.0, 2.0, 3.0)");

  // Hand-built headers (version 1.0).
  auto npy = [](const std::string& header, const std::string& data) {
    std::string out("\x93NUMPY\x01\x00", 8);
    out.push_back(static_cast<char>(header.size() & 0xff));
    out.push_back(static_cast<char>(header.size() >> 8));
    return out + header + data;
  };
  const std::string eight(8, '\0');
  absl::StatusOr<Matrix> ok =
      ParseNpy(npy("{'descr':'<f8','fortran_order':False,'shape':(1L,)}\n", eight), "t.npy");
  ASSERT_TRUE(ok.ok()) << ok.status();
  EXPECT_THAT(ok->values(), ElementsAre(0.0));
  EXPECT_THAT(
      ParseNpy(npy("{'descr': '<f8', 'shape': (1,), }\n", eight), "t.npy").status().message(),
      HasSubstr("t.npy: .npy header lacks one of the keys 'descr', 'fortran_order', "
                "'shape'"));
  EXPECT_THAT(
      ParseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,), 'x': 1}\n", eight),
               "t.npy")
          .status()
          .message(),
      HasSubstr("t.npy: .npy header has an unexpected or repeated key 'x'"));
  EXPECT_THAT(
      ParseNpy(npy("{'descr': '<f8', 'fortran_order': maybe, 'shape': (1,)}\n", eight), "t.npy")
          .status()
          .message(),
      HasSubstr("'fortran_order' is not True or False"));
  EXPECT_THAT(
      ParseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (-1,)}\n", eight), "t.npy")
          .status()
          .message(),
      HasSubstr("'shape' is not a tuple of non-negative integers"));
  EXPECT_THAT(
      ParseNpy(npy("{'descr': [('a', '<f8')], 'fortran_order': False, 'shape': (1,)}\n", eight),
               "t.npy")
          .status()
          .message(),
      HasSubstr("structured dtype"));
  EXPECT_THAT(
      ParseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)", eight), "t.npy")
          .status()
          .message(),
      HasSubstr("t.npy: .npy header is malformed"));
  EXPECT_THAT(ParseNpy(npy("{'descr': '<f8', 'fortran_order': False, "
                           "'shape': (99999999999, 99999999999)}\n",
                           eight),
                       "t.npy")
                  .status()
                  .message(),
              HasSubstr("t.npy: shape (99999999999, 99999999999) is too large"));
  EXPECT_EQ(
      ParseNpy(npy("{'descr': '<f8', 'fortran_order': False, 'shape': (1,)}\n", eight), "t.npy")
          .status()
          .code(),
      absl::StatusCode::kOk);
}

TEST(NpyTest, EncodeMatchesNumpyByteForByteAndRoundTrips) {
  Matrix m(2, 3, {1.5, -2, 3.25, 0, 0.125, 100});
  EXPECT_EQ(EncodeNpy(m), FixtureBytes("f8_base_2x3.npy"));  // np.save of the same array

  Matrix odd(3, 2, {0.1, -0.0, 1e-308, 5e-324, -1e308, 42});
  const std::string path = TempPath("knn_datasets_test_roundtrip.npy");
  ASSERT_TRUE(SaveNpy(path, odd).ok());
  absl::StatusOr<Matrix> back = LoadNpy(path);
  ASSERT_TRUE(back.ok()) << back.status();
  EXPECT_EQ(back->rows(), 3u);
  EXPECT_EQ(back->cols(), 2u);
  EXPECT_EQ(back->values(), odd.values());
  EXPECT_TRUE(std::signbit(back->at(0, 1)));
  std::remove(path.c_str());

  absl::StatusOr<Matrix> empty = ParseNpy(EncodeNpy(Matrix(0, 4)), "e.npy");
  ASSERT_TRUE(empty.ok()) << empty.status();
  EXPECT_EQ(empty->rows(), 0u);
  EXPECT_EQ(empty->cols(), 4u);
}

TEST(NpyTest, MissingFileIsNotFound) {
  EXPECT_EQ(LoadNpy(TempPath("knn_datasets_test_missing.npy")).status().code(),
            absl::StatusCode::kNotFound);
  EXPECT_EQ(LoadNpyVector(TempPath("knn_datasets_test_missing.npy")).status().code(),
            absl::StatusCode::kNotFound);
}

}  // namespace
}  // namespace knncluster
