#include "core/model_selection/heatmap_svg.h"

#include <cmath>
#include <string>
#include <vector>

#include "gtest/gtest.h"

namespace knncluster {
namespace {

size_t Count(const std::string& s, const std::string& what) {
  size_t n = 0;
  for (size_t at = s.find(what); at != std::string::npos; at = s.find(what, at + 1)) ++n;
  return n;
}

// A small well-formedness check: tags nest and close, attributes are quoted, text holds no raw
// '<' and every '&' starts one of the five predefined entities. (knnctl_test.py parses the real
// output with Python's xml.etree as well.)
::testing::AssertionResult WellFormed(const std::string& xml) {
  std::vector<std::string> open;
  size_t i = 0;
  auto entity_ok = [&](size_t at) {
    for (const char* e : {"&amp;", "&lt;", "&gt;", "&quot;", "&apos;"}) {
      if (xml.compare(at, std::string(e).size(), e) == 0) return true;
    }
    return false;
  };
  while (i < xml.size()) {
    if (xml[i] == '&' && !entity_ok(i)) {
      return ::testing::AssertionFailure() << "bare & at " << i;
    }
    if (xml[i] != '<') {
      ++i;
      continue;
    }
    const size_t end = xml.find('>', i);
    if (end == std::string::npos) return ::testing::AssertionFailure() << "unclosed tag at " << i;
    std::string tag = xml.substr(i + 1, end - i - 1);
    if (tag.find('<') != std::string::npos) {
      return ::testing::AssertionFailure() << "'<' inside a tag at " << i;
    }
    if (Count(tag, "\"") % 2 != 0) return ::testing::AssertionFailure() << "odd quotes: " << tag;
    for (size_t k = 0; k < tag.size(); ++k) {
      if (tag[k] == '&' && !entity_ok(i + 1 + k)) {
        return ::testing::AssertionFailure() << "bare & in a tag: " << tag;
      }
    }
    if (tag[0] == '?') {
      // declaration
    } else if (tag[0] == '/') {
      const std::string name = tag.substr(1);
      if (open.empty() || open.back() != name) {
        return ::testing::AssertionFailure() << "</" << name << "> closes "
                                             << (open.empty() ? "nothing" : open.back());
      }
      open.pop_back();
    } else if (tag.back() != '/') {
      open.push_back(tag.substr(0, tag.find_first_of(" \n")));
    }
    i = end + 1;
  }
  if (!open.empty()) return ::testing::AssertionFailure() << "<" << open.back() << "> not closed";
  return ::testing::AssertionSuccess();
}

Heatmap Tutorial() {
  Heatmap h;
  h.title = "GridSearchCV: mean accuracy over n_neighbors x p";
  h.x_name = "n_neighbors";
  h.y_name = "p";
  for (int k = 2; k < 20; k += 2) h.x_labels.push_back(std::to_string(k));
  h.y_labels = {"1", "2", "3"};
  h.values.assign(3, std::vector<double>(9, 0.95));
  h.values[1][0] = 0.9671711544413494;
  h.values[0][8] = 0.9410;
  return h;
}

TEST(HeatmapSvgTest, CellsLabelsValuesAndScale) {
  auto svg = HeatmapSvg(Tutorial());
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_TRUE(WellFormed(*svg));
  EXPECT_EQ(svg->rfind("<?xml", 0), 0u);
  EXPECT_NE(svg->find("xmlns=\"http://www.w3.org/2000/svg\""), std::string::npos);
  EXPECT_EQ(Count(*svg, "<rect class=\"cell\""), 27u);
  EXPECT_EQ(Count(*svg, "<text class=\"value\""), 27u);
  EXPECT_EQ(Count(*svg, "<text class=\"tick\""), 12u);  // 9 x ticks + 3 y ticks
  EXPECT_NE(svg->find(">n_neighbors</text>"), std::string::npos);
  EXPECT_NE(svg->find(">p</text>"), std::string::npos);
  EXPECT_NE(svg->find(">18</text>"), std::string::npos);
  // The best cell: its exact value as data, 4 decimals as text.
  EXPECT_NE(svg->find("data-x=\"2\" data-y=\"2\" data-value=\"0.9671711544413494\""),
            std::string::npos);
  EXPECT_NE(svg->find(">0.9672</text>"), std::string::npos);
  // The colour scale's ends: the minimum and maximum values.
  EXPECT_NE(svg->find("class=\"legend-max\""), std::string::npos);
  EXPECT_NE(svg->find(">0.9672</text>\n<text class=\"legend-min\""), std::string::npos);
  EXPECT_NE(svg->find("class=\"legend-min\" x="), std::string::npos);
  EXPECT_NE(svg->find(">0.9410</text>\n</g>"), std::string::npos);
  EXPECT_NE(svg->find("<linearGradient"), std::string::npos);
  // The extremes get the scale's end colours.
  EXPECT_NE(svg->find("fill=\"#fde725\" stroke=\"#ffffff\" data-x=\"2\" data-y=\"2\""),
            std::string::npos);
  EXPECT_NE(svg->find("fill=\"#440154\" stroke=\"#ffffff\" data-x=\"18\" data-y=\"1\""),
            std::string::npos);
}

TEST(HeatmapSvgTest, EscapesTextAndShowsMissingCells) {
  Heatmap h;
  h.title = "a < b & \"c\"";
  h.x_name = "weights";
  h.y_name = "algorithm";
  h.x_labels = {"uniform", "distance"};
  h.y_labels = {"<kd_tree>", "brute"};
  h.values = {{0.5, NAN}, {0.25, 0.75}};
  auto svg = HeatmapSvg(h);
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_TRUE(WellFormed(*svg));
  EXPECT_NE(svg->find("a &lt; b &amp; &quot;c&quot;"), std::string::npos);
  EXPECT_NE(svg->find("&lt;kd_tree&gt;"), std::string::npos);
  EXPECT_EQ(svg->find("<kd_tree>"), std::string::npos);
  EXPECT_EQ(Count(*svg, "<rect class=\"cell\""), 3u);
  EXPECT_EQ(Count(*svg, "<rect class=\"cell missing\""), 1u);
  EXPECT_EQ(Count(*svg, "<text class=\"value\""), 3u);
  EXPECT_EQ(XmlEscape("'&'"), "&apos;&amp;&apos;");
}

TEST(HeatmapSvgTest, OneValueAndLargeMagnitudes) {
  Heatmap h;
  h.x_name = "n_neighbors";
  h.y_name = "";
  h.x_labels = {"1"};
  h.y_labels = {"all"};
  h.values = {{-12345.678}};
  auto svg = HeatmapSvg(h);
  ASSERT_TRUE(svg.ok()) << svg.status();
  EXPECT_TRUE(WellFormed(*svg));
  EXPECT_NE(svg->find(">-1.235e+04</text>"), std::string::npos);
  EXPECT_EQ(Count(*svg, "<rect class=\"cell\""), 1u);
}

TEST(HeatmapSvgTest, ShapeErrors) {
  Heatmap h = Tutorial();
  h.values.pop_back();
  EXPECT_EQ(HeatmapSvg(h).status().message(),
            "heatmap: values has 2 rows, expected 3 (one per y value)");
  h = Tutorial();
  h.values[2].push_back(1);
  EXPECT_EQ(HeatmapSvg(h).status().message(),
            "heatmap: values row 2 has 10 columns, expected 9 (one per x value)");
  h = Tutorial();
  h.x_labels.clear();
  EXPECT_FALSE(HeatmapSvg(h).ok());
  h = Tutorial();
  h.values[0][0] = INFINITY;
  EXPECT_FALSE(HeatmapSvg(h).ok());
}

}  // namespace
}  // namespace knncluster
