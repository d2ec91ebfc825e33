// A heatmap as a standalone SVG document: a grid of coloured cells (one per x value and y value,
// the value printed in each), labelled axes with tick labels, a title, and a colour scale with its
// minimum and maximum. knnctl grid-search --heatmap and the coordinator's status page draw
// cv_results' mean test score over two parameters with it (the tutorial's n_neighbors x p), and
// CvResultsHeatmap (below) lays those results out as a Heatmap: one code for both.
//
// Cells are <rect class="cell"> elements carrying data-x, data-y and data-value (the value's
// shortest round-trip decimal), so scripts can read the figure back; a missing value (NaN) is a
// grey cell of class "cell missing" with no text. All text is XML-escaped.
// Thread-safe: a pure function.
#ifndef KNNCLUSTER_CORE_MODEL_SELECTION_HEATMAP_SVG_H_
#define KNNCLUSTER_CORE_MODEL_SELECTION_HEATMAP_SVG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"
#include "core/estimators/params.h"
#include "core/model_selection/grid_search.h"

namespace knncluster {

struct Heatmap {
  std::string title;
  std::string subtitle;                     // optional second line
  std::string x_name, y_name;               // axis titles
  std::vector<std::string> x_labels;        // columns, left to right
  std::vector<std::string> y_labels;        // rows, top to bottom
  std::vector<std::vector<double>> values;  // [row][column]; NaN: no value
  std::string value_name = "mean test score";  // the colour scale's title
};

// InvalidArgument when there is no cell or the matrix's shape disagrees with the labels.
absl::StatusOr<std::string> HeatmapSvg(const Heatmap& h);

// Text with &, <, >, " and ' escaped for XML (and HTML).
std::string XmlEscape(const std::string& text);

// ---- cv_results_ as a heatmap ----------------------------------------------------------------

// scikit-learn's parameter names, sorted (ParameterGrid's and cv_results_' order).
extern const char* const kGridParamKeys[5];
// The keys candidate c's grid sets (all of them when the results carry no keys).
std::vector<std::string> GridKeysOf(const CvResults& cv, size_t c);
// Every key some candidate's grid sets, in scikit-learn's order.
std::vector<std::string> GridVaryingKeys(const CvResults& cv);
bool GridHasKey(const CvResults& cv, size_t c, const std::string& key);
// A parameter's value as scikit-learn prints it ("kd_tree", "5", "inf").
std::string GridParamText(const NeighborsParams& p, const std::string& key);
// "k=v, k2=v2" for `keys`; "the base parameters" when there is none.
std::string GridParamsText(const NeighborsParams& p, const std::vector<std::string>& keys);
// The shortest decimal that reads back as the same double, as Python's repr prints it.
std::string ShortestDecimal(double v);

// The heatmap of mean test scores over keys x and y (each picked when empty: the keys with the
// most distinct values; y stays empty when the grid varies one key: one row). A cell several
// candidates share (another key varies too) shows the best of them. InvalidArgument (naming
// knnctl's --heatmap-x / --heatmap-y) when the grid varies no key, or x / y is not one it varies.
absl::StatusOr<Heatmap> CvResultsHeatmap(const CvResults& cv, std::string x, std::string y);

}  // namespace knncluster

#endif  // KNNCLUSTER_CORE_MODEL_SELECTION_HEATMAP_SVG_H_
