#include "core/model_selection/heatmap_svg.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>
#include <string>
#include <vector>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"
#include "absl/strings/str_join.h"
#include "core/base/status_macros.h"
#include "core/index/metric.h"
#include "core/index/neighbor_index.h"

namespace knncluster {
namespace {

bool IsNumericKey(const std::string& key) { return key != "algorithm" && key != "weights"; }

double ParamValueOrder(const NeighborsParams& p, const std::string& key) {
  if (key == "leaf_size") return p.leaf_size;
  if (key == "n_neighbors") return p.n_neighbors;
  return p.p;
}


// viridis at five stops: perceptually uniform, readable in grey and by most colour-blind eyes.
constexpr std::array<std::array<double, 3>, 5> kStops = {{{68, 1, 84},
                                                          {59, 82, 139},
                                                          {33, 145, 140},
                                                          {94, 201, 98},
                                                          {253, 231, 37}}};

std::array<double, 3> Colour(double t) {
  t = std::clamp(t, 0.0, 1.0) * (kStops.size() - 1);
  const size_t i = std::min(static_cast<size_t>(t), kStops.size() - 2);
  const double f = t - static_cast<double>(i);
  std::array<double, 3> c;
  for (int k = 0; k < 3; ++k) c[k] = kStops[i][k] + f * (kStops[i + 1][k] - kStops[i][k]);
  return c;
}

std::string Hex(const std::array<double, 3>& c) {
  return absl::StrFormat("#%02x%02x%02x", static_cast<int>(std::lround(c[0])),
                         static_cast<int>(std::lround(c[1])), static_cast<int>(std::lround(c[2])));
}

// Dark text on light cells, light text on dark ones (relative luminance).
const char* TextColour(const std::array<double, 3>& c) {
  const double lum = (0.2126 * c[0] + 0.7152 * c[1] + 0.0722 * c[2]) / 255.0;
  return lum > 0.45 ? "#000000" : "#ffffff";
}

std::string Shortest(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

// What a cell shows: 4 decimals, or 4 significant digits for large magnitudes.
std::string CellText(double v) {
  return std::fabs(v) >= 1000 ? absl::StrFormat("%.4g", v) : absl::StrFormat("%.4f", v);
}

// Rough width of text in 12px sans-serif, for the layout.
int TextWidth(const std::string& s) { return static_cast<int>(s.size()) * 7; }

}  // namespace

std::string XmlEscape(const std::string& text) {
  std::string out;
  out.reserve(text.size());
  for (char c : text) {
    switch (c) {
      case '&': out += "&amp;"; break;
      case '<': out += "&lt;"; break;
      case '>': out += "&gt;"; break;
      case '"': out += "&quot;"; break;
      case '\'': out += "&apos;"; break;
      default: out += c;
    }
  }
  return out;
}

absl::StatusOr<std::string> HeatmapSvg(const Heatmap& h) {
  const size_t nx = h.x_labels.size(), ny = h.y_labels.size();
  if (nx == 0 || ny == 0) {
    return absl::InvalidArgumentError("heatmap: needs at least one x and one y value");
  }
  if (h.values.size() != ny) {
    return absl::InvalidArgumentError(absl::StrFormat(
        "heatmap: values has %d rows, expected %d (one per y value)", h.values.size(), ny));
  }
  double lo = INFINITY, hi = -INFINITY;
  for (size_t r = 0; r < ny; ++r) {
    if (h.values[r].size() != nx) {
      return absl::InvalidArgumentError(absl::StrFormat(
          "heatmap: values row %d has %d columns, expected %d (one per x value)", r,
          h.values[r].size(), nx));
    }
    for (double v : h.values[r]) {
      if (std::isnan(v)) continue;
      if (std::isinf(v)) return absl::InvalidArgumentError("heatmap: values must be finite");
      lo = std::min(lo, v);
      hi = std::max(hi, v);
    }
  }
  const bool any = lo <= hi;

  // Layout (pixels).
  int max_x_label = 0, max_y_label = 0;
  for (const auto& l : h.x_labels) max_x_label = std::max(max_x_label, TextWidth(l));
  for (const auto& l : h.y_labels) max_y_label = std::max(max_y_label, TextWidth(l));
  const int cell_w = std::max(64, max_x_label + 12), cell_h = 36;
  const int left = 40 + max_y_label + 12;
  const int top = h.subtitle.empty() ? 48 : 66;
  const int grid_w = static_cast<int>(nx) * cell_w, grid_h = static_cast<int>(ny) * cell_h;
  const int legend_x = left + grid_w + 28, legend_w = 16;
  const int legend_h = std::max(grid_h, 120);
  const std::string lo_text = any ? CellText(lo) : "", hi_text = any ? CellText(hi) : "";
  const int legend_text_w = std::max(TextWidth(lo_text), TextWidth(hi_text)) + 12;
  const int width = std::max({legend_x + std::max(legend_w + 8 + legend_text_w,
                                                  TextWidth(h.value_name)) + 24,
                              TextWidth(h.title) + 40, TextWidth(h.subtitle) + 40});
  const int height = top + std::max(grid_h, legend_h) + 64;

  std::string s;
  absl::StrAppendFormat(&s,
                        "<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n"
                        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"%d\" height=\"%d\" "
                        "viewBox=\"0 0 %d %d\" font-family=\"sans-serif\" font-size=\"12\">\n",
                        width, height, width, height);
  absl::StrAppendFormat(&s, "<title>%s</title>\n", XmlEscape(h.title));
  absl::StrAppendFormat(&s, "<rect width=\"%d\" height=\"%d\" fill=\"#ffffff\"/>\n", width, height);
  absl::StrAppendFormat(&s,
                        "<text class=\"title\" x=\"%d\" y=\"26\" text-anchor=\"middle\" "
                        "font-size=\"15\" font-weight=\"bold\">%s</text>\n",
                        width / 2, XmlEscape(h.title));
  if (!h.subtitle.empty()) {
    absl::StrAppendFormat(&s,
                          "<text class=\"subtitle\" x=\"%d\" y=\"46\" text-anchor=\"middle\" "
                          "fill=\"#444444\">%s</text>\n",
                          width / 2, XmlEscape(h.subtitle));
  }

  // Cells.
  s += "<g class=\"cells\">\n";
  for (size_t r = 0; r < ny; ++r) {
    for (size_t c = 0; c < nx; ++c) {
      const double v = h.values[r][c];
      const int x = left + static_cast<int>(c) * cell_w, y = top + static_cast<int>(r) * cell_h;
      const std::string where = absl::StrCat(h.x_name, "=", h.x_labels[c], ", ", h.y_name, "=",
                                             h.y_labels[r]);
      if (std::isnan(v)) {
        absl::StrAppendFormat(&s,
                              "<rect class=\"cell missing\" x=\"%d\" y=\"%d\" width=\"%d\" "
                              "height=\"%d\" fill=\"#dddddd\" stroke=\"#ffffff\" data-x=\"%s\" "
                              "data-y=\"%s\"><title>%s: no candidate</title></rect>\n",
                              x, y, cell_w, cell_h, XmlEscape(h.x_labels[c]),
                              XmlEscape(h.y_labels[r]), XmlEscape(where));
        continue;
      }
      const auto colour = Colour(hi > lo ? (v - lo) / (hi - lo) : 0.5);
      absl::StrAppendFormat(&s,
                            "<rect class=\"cell\" x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" "
                            "fill=\"%s\" stroke=\"#ffffff\" data-x=\"%s\" data-y=\"%s\" "
                            "data-value=\"%s\"><title>%s: %s</title></rect>\n",
                            x, y, cell_w, cell_h, Hex(colour), XmlEscape(h.x_labels[c]),
                            XmlEscape(h.y_labels[r]), Shortest(v), XmlEscape(where), Shortest(v));
      absl::StrAppendFormat(&s,
                            "<text class=\"value\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                            "dominant-baseline=\"central\" fill=\"%s\">%s</text>\n",
                            x + cell_w / 2, y + cell_h / 2, TextColour(colour), CellText(v));
    }
  }
  s += "</g>\n";

  // Axes: tick labels and titles.
  s += "<g class=\"x-axis\">\n";
  for (size_t c = 0; c < nx; ++c) {
    absl::StrAppendFormat(&s,
                          "<text class=\"tick\" x=\"%d\" y=\"%d\" text-anchor=\"middle\">%s</text>\n",
                          left + static_cast<int>(c) * cell_w + cell_w / 2, top + grid_h + 18,
                          XmlEscape(h.x_labels[c]));
  }
  absl::StrAppendFormat(&s,
                        "<text class=\"axis-title\" x=\"%d\" y=\"%d\" text-anchor=\"middle\" "
                        "font-weight=\"bold\">%s</text>\n</g>\n",
                        left + grid_w / 2, top + grid_h + 42, XmlEscape(h.x_name));
  s += "<g class=\"y-axis\">\n";
  for (size_t r = 0; r < ny; ++r) {
    absl::StrAppendFormat(&s,
                          "<text class=\"tick\" x=\"%d\" y=\"%d\" text-anchor=\"end\" "
                          "dominant-baseline=\"central\">%s</text>\n",
                          left - 8, top + static_cast<int>(r) * cell_h + cell_h / 2,
                          XmlEscape(h.y_labels[r]));
  }
  absl::StrAppendFormat(&s,
                        "<text class=\"axis-title\" x=\"18\" y=\"%d\" text-anchor=\"middle\" "
                        "font-weight=\"bold\" transform=\"rotate(-90 18 %d)\">%s</text>\n</g>\n",
                        top + grid_h / 2, top + grid_h / 2, XmlEscape(h.y_name));

  // Colour scale: the maximum at the top.
  s += "<defs><linearGradient id=\"scale\" x1=\"0\" y1=\"1\" x2=\"0\" y2=\"0\">\n";
  for (size_t i = 0; i < kStops.size(); ++i) {
    absl::StrAppendFormat(&s, "<stop offset=\"%g\" stop-color=\"%s\"/>\n",
                          static_cast<double>(i) / (kStops.size() - 1), Hex(kStops[i]));
  }
  s += "</linearGradient></defs>\n<g class=\"legend\">\n";
  absl::StrAppendFormat(&s,
                        "<text class=\"legend-title\" x=\"%d\" y=\"%d\">%s</text>\n", legend_x,
                        top - 10, XmlEscape(h.value_name));
  absl::StrAppendFormat(&s,
                        "<rect x=\"%d\" y=\"%d\" width=\"%d\" height=\"%d\" fill=\"url(#scale)\" "
                        "stroke=\"#888888\"/>\n",
                        legend_x, top, legend_w, legend_h);
  if (any) {
    absl::StrAppendFormat(&s,
                          "<text class=\"legend-max\" x=\"%d\" y=\"%d\" "
                          "dominant-baseline=\"hanging\">%s</text>\n",
                          legend_x + legend_w + 6, top, hi_text);
    absl::StrAppendFormat(&s, "<text class=\"legend-min\" x=\"%d\" y=\"%d\">%s</text>\n",
                          legend_x + legend_w + 6, top + legend_h, lo_text);
  }
  s += "</g>\n</svg>\n";
  return s;
}

// ---- cv_results_ as a heatmap ----------------------------------------------------------------

const char* const kGridParamKeys[5] = {"algorithm", "leaf_size", "n_neighbors", "p", "weights"};

std::string ShortestDecimal(double v) {
  char buf[64];
  auto r = std::to_chars(buf, buf + sizeof(buf), v);
  return std::string(buf, r.ptr);
}

std::string GridParamText(const NeighborsParams& p, const std::string& key) {
  if (key == "algorithm") return AlgorithmName(p.algorithm);
  if (key == "leaf_size") return absl::StrCat(p.leaf_size);
  if (key == "n_neighbors") return absl::StrCat(p.n_neighbors);
  if (key == "p") return Minkowski::Create(p.p).value().ToString();
  return WeightsName(p.weights);
}

std::vector<std::string> GridKeysOf(const CvResults& cv, size_t c) {
  if (c < cv.param_keys.size()) return cv.param_keys[c];
  return std::vector<std::string>(std::begin(kGridParamKeys), std::end(kGridParamKeys));
}

std::vector<std::string> GridVaryingKeys(const CvResults& cv) {
  std::vector<std::string> out;
  for (const char* key : kGridParamKeys) {
    for (size_t c = 0; c < cv.params.size(); ++c) {
      const auto keys = GridKeysOf(cv, c);
      if (std::find(keys.begin(), keys.end(), key) != keys.end()) {
        out.push_back(key);
        break;
      }
    }
  }
  return out;
}

bool GridHasKey(const CvResults& cv, size_t c, const std::string& key) {
  const auto keys = GridKeysOf(cv, c);
  return std::find(keys.begin(), keys.end(), key) != keys.end();
}

std::string GridParamsText(const NeighborsParams& p, const std::vector<std::string>& keys) {
  if (keys.empty()) return "the base parameters";
  return absl::StrJoin(keys, ", ", [&](std::string* s, const std::string& key) {
    absl::StrAppend(s, key, "=", GridParamText(p, key));
  });
}

absl::StatusOr<Heatmap> CvResultsHeatmap(const CvResults& cv, std::string x, std::string y) {
  const std::vector<std::string> keys = GridVaryingKeys(cv);
  if (keys.empty()) {
    return absl::InvalidArgumentError(
        "--heatmap: the grid varies no parameter (give --param KEY=VALUES)");
  }
  auto distinct = [&](const std::string& key) {
    std::vector<std::string> seen;
    for (size_t c = 0; c < cv.params.size(); ++c) {
      if (!GridHasKey(cv, c, key)) continue;
      const std::string v = GridParamText(cv.params[c], key);
      if (std::find(seen.begin(), seen.end(), v) == seen.end()) seen.push_back(v);
    }
    return seen.size();
  };
  auto check = [&](const std::string& flag, const std::string& key) -> absl::Status {
    if (std::find(keys.begin(), keys.end(), key) != keys.end()) return absl::OkStatus();
    return absl::InvalidArgumentError(absl::StrCat(flag, ": \"", key,
                                                   "\" is not a parameter the grid varies (",
                                                   absl::StrJoin(keys, ", "), ")"));
  };
  auto most = [&](const std::string& except) {
    std::string best;
    size_t best_n = 0;
    for (const std::string& key : keys) {
      if (key == except) continue;
      if (distinct(key) > best_n) best = key, best_n = distinct(key);
    }
    return best;
  };
  if (!x.empty()) KNN_RETURN_IF_ERROR(check("--heatmap-x", x));
  if (!y.empty()) KNN_RETURN_IF_ERROR(check("--heatmap-y", y));
  if (!x.empty() && x == y) {
    return absl::InvalidArgumentError("--heatmap-y: must differ from --heatmap-x");
  }
  if (x.empty()) x = most(y);
  if (y.empty()) y = most(x);  // empty when the grid varies one key: one row

  // Each axis's values: numbers ascending, names in the order the grid lists them.
  auto axis = [&](const std::string& key) {
    std::vector<std::pair<double, std::string>> values;
    for (size_t c = 0; c < cv.params.size(); ++c) {
      if (!GridHasKey(cv, c, key)) continue;
      std::pair<double, std::string> v{
          IsNumericKey(key) ? ParamValueOrder(cv.params[c], key) : static_cast<double>(values.size()),
          GridParamText(cv.params[c], key)};
      bool found = false;
      for (const auto& e : values) found = found || e.second == v.second;
      if (!found) values.push_back(v);
    }
    std::stable_sort(values.begin(), values.end(),
                     [](const auto& a, const auto& b) { return a.first < b.first; });
    std::vector<std::string> labels;
    for (auto& v : values) labels.push_back(std::move(v.second));
    return labels;
  };
  Heatmap h;
  h.x_name = x;
  h.y_name = y;
  h.x_labels = axis(x);
  h.y_labels = y.empty() ? std::vector<std::string>{"all"} : axis(y);
  h.values.assign(h.y_labels.size(), std::vector<double>(h.x_labels.size(), NAN));
  size_t shared = 0;
  for (size_t c = 0; c < cv.params.size(); ++c) {
    if (!GridHasKey(cv, c, x) || (!y.empty() && !GridHasKey(cv, c, y))) continue;
    const auto col = std::find(h.x_labels.begin(), h.x_labels.end(),
                               GridParamText(cv.params[c], x)) - h.x_labels.begin();
    const auto row = y.empty() ? 0
                               : std::find(h.y_labels.begin(), h.y_labels.end(),
                                           GridParamText(cv.params[c], y)) - h.y_labels.begin();
    double& cell = h.values[row][col];
    if (std::isnan(cell)) {
      cell = cv.mean_test_score[c];
    } else {
      ++shared;
      cell = std::max(cell, cv.mean_test_score[c]);
    }
  }
  const std::string scoring = ScoringName(cv.scoring);
  const size_t folds = cv.split_test_scores.empty() ? 0 : cv.split_test_scores[0].size();
  h.title = absl::StrCat("GridSearchCV: mean ", scoring, " over ", x, y.empty() ? "" : " x ", y);
  h.subtitle = absl::StrFormat("%d-fold cross-validation; best %s at %s", folds,
                               ShortestDecimal(cv.best_score),
                               GridParamsText(cv.best_params, GridKeysOf(cv, cv.best_index)));
  if (shared > 0) {
    std::vector<std::string> others;
    for (const std::string& key : keys) {
      if (key != x && key != y) others.push_back(key);
    }
    absl::StrAppend(&h.subtitle, "; each cell the best over ", absl::StrJoin(others, ", "));
  }
  h.value_name = absl::StrCat("mean ", scoring);
  return h;
}

}  // namespace knncluster
