#include "client/cli/heatmap_svg.h"

#include <algorithm>
#include <array>
#include <charconv>
#include <cmath>

#include "absl/status/status.h"
#include "absl/strings/str_cat.h"
#include "absl/strings/str_format.h"

namespace knncluster::cli {
namespace {

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

}  // namespace knncluster::cli
