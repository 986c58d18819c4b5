// Renders chat templates and compares with Python jinja2 as transformers calls it
// (tests/data/chat_templates/*.json, written by tools/reference/render_chat_templates.py).
#include <gtest/gtest.h>
#include <unistd.h>

#include <ctime>
#include <map>
#include <nlohmann/json.hpp>

#include "mlxcpp/lm/chat_template/ast.h"
#include "mlxcpp/lm/chat_template/chat_template.h"
#include "mlxcpp/lm/tokenizer/tokenizer.h"
#include "tokenizer_test_util.h"

namespace {

using nlohmann::ordered_json;

ordered_json load(const std::string& name) {
  return ordered_json::parse(lm::testing::slurp(lm::testing::data_dir() / "chat_templates" / name));
}

std::string today(const char* fmt) {
  std::time_t t = std::time(nullptr);
  std::tm tm{};
  localtime_r(&t, &tm);
  char buf[64];
  return std::string(buf, std::strftime(buf, sizeof(buf), fmt, &tm));
}

TEST(ChatTemplate, FeaturesMatchJinja2) {
  auto ref = load("features.json");
  int n = 0;
  for (auto& c : ref["cases"]) {
    std::string name = c["name"].get<std::string>();
    SCOPED_TRACE(name);
    std::string ctx = c["context"].dump();
    if (c.contains("output")) {
      std::string want = c["output"].get<std::string>();
      // strftime_now is pinned in the reference; ours reads the clock.
      size_t p = want.find("2024-07-26");
      if (p != std::string::npos) want.replace(p, 10, today("%Y-%m-%d"));
      try {
        lm::ChatTemplate tpl(c["template"].get<std::string>());
        EXPECT_EQ(tpl.render(ctx), want) << c["template"].get<std::string>();
      } catch (const std::exception& e) {
        ADD_FAILURE() << name << ": " << e.what();
      }
    } else {
      std::string err = c["error"].get<std::string>();
      try {
        lm::ChatTemplate tpl(c["template"].get<std::string>());
        std::string out = tpl.render(ctx);
        ADD_FAILURE() << name << ": expected error '" << err << "', got output " << out;
      } catch (const std::exception& e) {
        EXPECT_NE(std::string(e.what()).find(err), std::string::npos) << e.what();
      }
    }
    ++n;
  }
  EXPECT_GE(n, 40);
}

TEST(ChatTemplate, FamiliesMatchJinja2) {
  auto ref = load("families.json");
  std::map<std::string, lm::Tokenizer> tokenizers;
  for (auto& c : ref["cases"]) {
    std::string family = c["family"].get<std::string>();
    if (!tokenizers.count(family)) {
      tokenizers.emplace(family,
                         lm::Tokenizer::from_dir(lm::testing::model_dir("tokenizers/" + family)));
    }
    const lm::Tokenizer& tok = tokenizers.at(family);
    lm::ChatOptions opt;
    opt.messages_json = c["messages"].dump();
    if (!c["tools"].is_null()) opt.tools_json = c["tools"].dump();
    opt.add_generation_prompt = c["add_generation_prompt"].get<bool>();
    opt.extra_json = c["kwargs"].dump();
    std::string what = family + "/" + c["conversation"].get<std::string>() +
                       " agp=" + std::to_string(opt.add_generation_prompt) +
                       " kwargs=" + opt.extra_json;
    if (c.contains("output")) {
      try {
        EXPECT_EQ(lm::apply_chat_template(tok, opt), c["output"].get<std::string>()) << what;
      } catch (const std::exception& e) {
        ADD_FAILURE() << what << ": " << e.what();
      }
    } else {
      try {
        std::string out = lm::apply_chat_template(tok, opt);
        ADD_FAILURE() << what << ": expected error '" << c["error"].get<std::string>() << "', got "
                      << out;
      } catch (const std::exception& e) {
        if (c["error_type"] == "TemplateError") {
          EXPECT_NE(std::string(e.what()).find(c["error"].get<std::string>()), std::string::npos)
              << what << ": " << e.what();
        }
      }
    }
  }
}

TEST(ChatTemplate, ErrorsNameLineAndColumn) {
  auto expect_error = [](const std::string& src, const std::string& needle) {
    try {
      lm::ChatTemplate tpl(src);
      tpl.render("{}");
      ADD_FAILURE() << "no error for " << src;
    } catch (const std::exception& e) {
      EXPECT_NE(std::string(e.what()).find(needle), std::string::npos) << e.what();
    }
  };
  expect_error("line one\n{% if x %}\nno end", "unexpected end of template");
  expect_error("a\nb {{ 1 + }}", "line 2, column 10");
  expect_error("{% for x in y %}{% endif %}", "endif");
  expect_error("{% frobnicate %}", "unknown or unsupported tag 'frobnicate'");
  expect_error("{{ 'a' | nofilter }}", "no filter named 'nofilter'");
  expect_error("\n\n  {{ undefined_thing.attr }}", "line 3");
  expect_error("{{ 'unterminated }}", "unterminated string");
  expect_error("{{ [1, 2] + 'x' }}", "unsupported operand");
}

}  // namespace
