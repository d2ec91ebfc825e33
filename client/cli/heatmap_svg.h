// A heatmap as a standalone SVG document: a grid of coloured cells (one per x value and y value,
// the value printed in each), labelled axes with tick labels, a title, and a colour scale with its
// minimum and maximum. knnctl grid-search --heatmap draws cv_results' mean test score over two
// parameters with it (the tutorial's n_neighbors x p).
//
// Cells are <rect class="cell"> elements carrying data-x, data-y and data-value (the value's
// shortest round-trip decimal), so scripts can read the figure back; a missing value (NaN) is a
// grey cell of class "cell missing" with no text. All text is XML-escaped.
// Thread-safe: a pure function.
#ifndef KNNCLUSTER_CLIENT_CLI_HEATMAP_SVG_H_
#define KNNCLUSTER_CLIENT_CLI_HEATMAP_SVG_H_

#include <string>
#include <vector>

#include "absl/status/statusor.h"

namespace knncluster::cli {

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

// Text with &, <, >, " and ' escaped for XML.
std::string XmlEscape(const std::string& text);

}  // namespace knncluster::cli

#endif  // KNNCLUSTER_CLIENT_CLI_HEATMAP_SVG_H_
