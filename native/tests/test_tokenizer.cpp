// The CLIP tokenizer against token ids from the reference implementations:
// OpenAI's SimpleTokenizer on the real 49408-token vocabulary
// (clip-tokenizer/golden.json) and Hugging Face's tokenizers on the tiny
// SDXL tokenizers (tiny-sdxl-golden/golden.json), through both loading paths.
#include "check.h"

#include "io/safetensors.h" // load_safetensors: te1.in.input_ids
#include "io/tokenizer.h"   // ClipTokenizer

#include <nlohmann/json.hpp> // golden.json

#include <fstream> // std::ifstream
#include <string>
#include <vector>

using sdxl::io::ClipTokenizer;
using sdxl::test::fixtures_dir;

namespace {

constexpr int64_t kRealBos = 49406;
constexpr int64_t kRealEos = 49407;
constexpr int64_t kRealVocabSize = 49408;

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

std::vector<int64_t> ids_of(const torch::Tensor& tensor) {
  const torch::Tensor flat = tensor.to(torch::kLong).contiguous().view({-1});
  return std::vector<int64_t>(flat.data_ptr<int64_t>(), flat.data_ptr<int64_t>() + flat.numel());
}

std::string describe(const std::vector<int64_t>& ids) {
  std::string text;
  for (const int64_t id : ids) text += std::to_string(id) + " ";
  return text;
}

// Reports the first mismatching case by its text, so a failure says what broke.
void check_ids(const std::string& text, const std::vector<int64_t>& got, const std::vector<int64_t>& expected) {
  if (got != expected) {
    sdxl::test::report_failure(__FILE__, __LINE__,
                               "\"" + text + "\": got [" + describe(got) + "] expected [" + describe(expected) + "]");
  }
}

std::string tiny_dir(const char* tokenizer) { return fixtures_dir() + "/tiny-sdxl/" + tokenizer; }

} // namespace

// ----------------------------------------------------------------------------
// Real CLIP vocabulary vs OpenAI's reference tokenizer

TEST_CASE(real_vocab_matches_openai_reference) {
  const ClipTokenizer tokenizer = ClipTokenizer::from_dir(fixtures_dir() + "/clip-tokenizer");
  CHECK(tokenizer.vocab_size() == kRealVocabSize);
  CHECK(tokenizer.bos_id() == kRealBos);
  CHECK(tokenizer.eos_id() == kRealEos);
  const nlohmann::json golden = read_json(fixtures_dir() + "/clip-tokenizer/golden.json");
  int cases = 0;
  for (const auto& item : golden.at("cases")) {
    const std::string text = item.at("text").get<std::string>();
    check_ids(text, tokenizer.encode(text), item.at("ids").get<std::vector<int64_t>>());
    ++cases;
  }
  CHECK(cases == 18);
}

TEST_CASE(real_vocab_sdxl_framing_truncates_to_75_and_pads) {
  const ClipTokenizer tokenizer = ClipTokenizer::from_dir(fixtures_dir() + "/clip-tokenizer");
  const nlohmann::json golden = read_json(fixtures_dir() + "/clip-tokenizer/golden.json");
  for (const auto& item : golden.at("cases")) {
    const std::string text = item.at("text").get<std::string>();
    std::vector<int64_t> ids = item.at("ids").get<std::vector<int64_t>>();
    if (ids.size() > 75) ids.resize(75);
    std::vector<int64_t> expected{kRealBos};
    expected.insert(expected.end(), ids.begin(), ids.end());
    expected.push_back(kRealEos);
    expected.resize(77, kRealEos); // clip-tokenizer/ pads with <|endoftext|> (no tokenizer_config.json)
    check_ids(text, tokenizer.frame(text), expected);
  }
}

TEST_CASE(html_unescape_can_be_turned_off) {
  ClipTokenizer tokenizer = ClipTokenizer::from_dir(fixtures_dir() + "/clip-tokenizer");
  const std::vector<int64_t> unescaped = tokenizer.encode("&amp;");
  CHECK(unescaped.size() == 1 && unescaped[0] == tokenizer.token_id("&</w>"));
  tokenizer.set_unescape_html(false);
  CHECK(tokenizer.encode("&amp;").size() > 1);
}

// ----------------------------------------------------------------------------
// Tiny SDXL tokenizers vs Hugging Face (golden.json)

TEST_CASE(tiny_tokenizers_read_special_tokens) {
  for (const bool json_path : {false, true}) {
    const ClipTokenizer te1 = json_path ? ClipTokenizer::from_tokenizer_json(tiny_dir("tokenizer"))
                                        : ClipTokenizer::from_vocab_and_merges(tiny_dir("tokenizer"));
    const ClipTokenizer te2 = json_path ? ClipTokenizer::from_tokenizer_json(tiny_dir("tokenizer_2"))
                                        : ClipTokenizer::from_vocab_and_merges(tiny_dir("tokenizer_2"));
    CHECK(te1.vocab_size() == 1002 && te2.vocab_size() == 1002);
    CHECK(te1.bos_id() == 1000 && te1.eos_id() == 1001 && te1.pad_id() == 1001);
    CHECK(te2.bos_id() == 1000 && te2.eos_id() == 1001 && te2.pad_id() == 0);
  }
}

TEST_CASE(tiny_tokenizers_match_golden_input_ids) {
  const nlohmann::json golden = read_json(fixtures_dir() + "/tiny-sdxl-golden/golden.json");
  const auto tensors = sdxl::io::load_safetensors(fixtures_dir() + "/tiny-sdxl-golden/golden.safetensors");
  const torch::Tensor prompt_bytes = tensors.at("te.in.prompt_utf8").contiguous();
  const std::string prompt(reinterpret_cast<const char*>(prompt_bytes.data_ptr<uint8_t>()),
                           static_cast<size_t>(prompt_bytes.numel()));
  CHECK(prompt == golden.at("pipeline").at("prompt").get<std::string>());

  const std::vector<int64_t> expected_te1 = ids_of(tensors.at("te1.in.input_ids"));
  const std::vector<int64_t> expected_te2 = ids_of(tensors.at("te2.in.input_ids"));
  const auto unpadded = golden.at("tokenizer_ids_for_prompt").get<std::vector<int64_t>>();
  for (const bool json_path : {false, true}) {
    const ClipTokenizer te1 = json_path ? ClipTokenizer::from_tokenizer_json(tiny_dir("tokenizer"))
                                        : ClipTokenizer::from_vocab_and_merges(tiny_dir("tokenizer"));
    const ClipTokenizer te2 = json_path ? ClipTokenizer::from_tokenizer_json(tiny_dir("tokenizer_2"))
                                        : ClipTokenizer::from_vocab_and_merges(tiny_dir("tokenizer_2"));
    check_ids(prompt, te1.frame(prompt), expected_te1);
    check_ids(prompt, te2.frame(prompt), expected_te2);
    std::vector<int64_t> framed{te1.bos_id()};
    const std::vector<int64_t> raw = te1.encode(prompt);
    framed.insert(framed.end(), raw.begin(), raw.end());
    framed.push_back(te1.eos_id());
    check_ids(prompt, framed, unpadded);
  }
}

// The golden records each check prompt's untruncated length (with bos/eos) per
// tokenizer; tokenizer_2 differs on "!!!" (three special ids 0, not one merged token).
TEST_CASE(tiny_tokenizers_match_golden_check_prompt_lengths) {
  const nlohmann::json info = read_json(fixtures_dir() + "/tiny-sdxl-golden/golden.json").at("tokenizer");
  const auto prompts = info.at("check_prompts").get<std::vector<std::string>>();
  for (const bool json_path : {false, true}) {
    for (const char* name : {"tokenizer", "tokenizer_2"}) {
      const ClipTokenizer tokenizer = json_path ? ClipTokenizer::from_tokenizer_json(tiny_dir(name))
                                                : ClipTokenizer::from_vocab_and_merges(tiny_dir(name));
      const auto counts = info.at("checks").at(name).at("untruncated_token_counts_incl_bos_eos").get<std::vector<size_t>>();
      CHECK(counts.size() == prompts.size());
      for (size_t i = 0; i < prompts.size() && i < counts.size(); ++i) {
        const size_t got = tokenizer.encode(prompts[i]).size() + 2;
        if (got != counts[i])
          sdxl::test::report_failure(__FILE__, __LINE__, std::string(name) + " \"" + prompts[i] + "\": " +
                                                              std::to_string(got) + " tokens, expected " +
                                                              std::to_string(counts[i]));
        const std::vector<int64_t> framed = tokenizer.frame(prompts[i]);
        CHECK(framed.size() == 77);
        CHECK(framed.front() == tokenizer.bos_id());
      }
    }
  }
}

TEST_CASE(tokenizer_2_turns_every_bang_into_pad_id) {
  const ClipTokenizer te1 = ClipTokenizer::from_dir(tiny_dir("tokenizer"));
  const ClipTokenizer te2 = ClipTokenizer::from_dir(tiny_dir("tokenizer_2"));
  const std::vector<int64_t> ids2 = te2.encode("wow!!!");
  const std::vector<int64_t> word = te2.encode("wow");
  std::vector<int64_t> expected = word;
  expected.insert(expected.end(), {0, 0, 0});
  check_ids("wow!!! (tokenizer_2)", ids2, expected);
  // tokenizer 1 applies plain BPE: "!!!</w>" is not "!" "!" "!".
  const std::vector<int64_t> ids1 = te1.encode("wow!!!");
  CHECK(std::vector<int64_t>(ids1.begin(), ids1.begin() + static_cast<long>(word.size())) == word);
  CHECK(ids1.size() - word.size() != 3 || ids1.back() != 0);
}

SDXL_TEST_MAIN()
