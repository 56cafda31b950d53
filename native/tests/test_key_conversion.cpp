// Key conversion against the real layouts: the full-size SDXL-base SGM key
// table must convert to exactly diffusers' keys and shapes (meta tensors, no
// memory), and the tiny SGM single file to the tiny diffusers folder's tensors,
// bit for bit after upcasting.
#include "check.h"

#include "io/key_conversion.h" // split_sgm_checkpoint, unet_diffusers_to_sgm
#include "io/safetensors.h"    // load_safetensors
#include "models/configs.h"    // UNetConfig, VaeConfig, ClipTextConfig

#include <nlohmann/json.hpp> // *_keys.json, golden.json

#include <fstream> // std::ifstream
#include <set>
#include <string>
#include <vector>

using sdxl::io::SgmExpectations;
using sdxl::io::SplitCheckpoint;
using sdxl::io::TensorMap;
using sdxl::io::UNetLayout;
using sdxl::test::fixtures_dir;

namespace {

nlohmann::json read_json(const std::string& path) {
  std::ifstream in(path);
  if (!in) throw std::runtime_error("cannot open " + path);
  return nlohmann::json::parse(in);
}

std::string base_keys_dir() { return fixtures_dir() + "/sdxl-base-keys"; }
std::string tiny_dir() { return fixtures_dir() + "/tiny-sdxl"; }

// A key table ({"keys": {name: shape}}) as meta tensors: shapes without memory.
TensorMap meta_tensors(const std::string& path) {
  TensorMap tensors;
  const nlohmann::json keys = read_json(path).at("keys");
  for (auto entry = keys.begin(); entry != keys.end(); ++entry)
    tensors[entry.key()] = torch::empty(entry->get<std::vector<int64_t>>(), torch::TensorOptions().device(torch::kMeta));
  return tensors;
}

// Same keys and shapes; every difference is reported by name.
void check_same_layout(const TensorMap& got, const TensorMap& expected, const std::string& component) {
  CHECK(got.size() == expected.size());
  int reported = 0;
  for (const auto& [key, tensor] : expected) {
    const auto found = got.find(key);
    if (found == got.end()) {
      if (reported++ < 10) sdxl::test::report_failure(__FILE__, __LINE__, component + ": missing " + key);
    } else if (found->second.sizes() != tensor.sizes()) {
      if (reported++ < 10) sdxl::test::report_failure(__FILE__, __LINE__, component + ": shape of " + key);
    }
  }
  for (const auto& [key, tensor] : got)
    if (!expected.count(key) && reported++ < 10)
      sdxl::test::report_failure(__FILE__, __LINE__, component + ": unexpected " + key);
}

SgmExpectations base_expectations() {
  using namespace sdxl::models;
  return SgmExpectations::from_configs(UNetConfig::from_file(base_keys_dir() + "/unet_config.json"),
                                       VaeConfig::from_file(base_keys_dir() + "/vae_config.json"),
                                       ClipTextConfig::from_file(base_keys_dir() + "/text_encoder_config.json"),
                                       ClipTextConfig::from_file(base_keys_dir() + "/text_encoder_2_config.json"));
}

SgmExpectations tiny_expectations() {
  using namespace sdxl::models;
  return SgmExpectations::from_configs(UNetConfig::from_file(tiny_dir() + "/unet/config.json"),
                                       VaeConfig::from_file(tiny_dir() + "/vae/config.json"),
                                       ClipTextConfig::from_file(tiny_dir() + "/text_encoder/config.json"),
                                       ClipTextConfig::from_file(tiny_dir() + "/text_encoder_2/config.json"));
}

// Bit-identical after both sides are upcast to float32.
void check_same_values(const TensorMap& got, const TensorMap& expected, const std::string& component) {
  CHECK(got.size() == expected.size());
  int reported = 0;
  for (const auto& [key, tensor] : expected) {
    const auto found = got.find(key);
    const bool equal = found != got.end() && found->second.sizes() == tensor.sizes() &&
                       torch::equal(found->second.to(torch::kFloat), tensor.to(torch::kFloat));
    if (!equal && reported++ < 10) sdxl::test::report_failure(__FILE__, __LINE__, component + ": differs at " + key);
  }
}

} // namespace

// ----------------------------------------------------------------------------
// Full-size SDXL base: keys and shapes

TEST_CASE(sdxl_base_sgm_keys_convert_to_diffusers_keys) {
  const TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  CHECK(sgm.size() == 2513);
  CHECK(sdxl::io::is_sgm_checkpoint({sgm.begin()->first, "model.diffusion_model.out.2.bias"}));
  const SplitCheckpoint split = sdxl::io::split_sgm_checkpoint(sgm, base_expectations());
  check_same_layout(split.unet, meta_tensors(base_keys_dir() + "/unet_keys.json"), "unet");
  check_same_layout(split.vae, meta_tensors(base_keys_dir() + "/vae_keys.json"), "vae");
  check_same_layout(split.text_encoder, meta_tensors(base_keys_dir() + "/text_encoder_keys.json"), "text_encoder");
  check_same_layout(split.text_encoder_2, meta_tensors(base_keys_dir() + "/text_encoder_2_keys.json"), "text_encoder_2");
  CHECK(split.unet.begin()->second.device().is_meta());
}

TEST_CASE(weightless_entries_are_dropped) {
  TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  sgm["conditioner.embedders.1.model.logit_scale"] = torch::empty({}, meta);
  sgm["conditioner.embedders.0.transformer.text_model.embeddings.position_ids"] = torch::empty({1, 77}, meta);
  const SplitCheckpoint split = sdxl::io::split_sgm_checkpoint(sgm, base_expectations());
  CHECK(split.text_encoder.size() == 196);
  CHECK(split.text_encoder_2.size() == 517);
}

TEST_CASE(unknown_keys_are_listed) {
  TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  sgm["model.diffusion_model.input_blocks.1.0.mystery.weight"] = torch::empty({4}, meta);
  sgm["cond_stage_model.something"] = torch::empty({4}, meta);
  CHECK_THROWS_WITH(sdxl::io::split_sgm_checkpoint(sgm, base_expectations()),
                    "2 keys not recognised: cond_stage_model.something, model.diffusion_model.input_blocks.1.0.mystery.weight");
}

TEST_CASE(layer_counts_are_checked_against_the_config) {
  const TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  SgmExpectations expect = base_expectations();
  expect.text_encoder_2_layers = 24;
  CHECK_THROWS_WITH(sdxl::io::split_sgm_checkpoint(sgm, expect), "text encoder 2 (conditioner.embedders.1) has 32 layers, the config expects 24");
  expect = base_expectations();
  expect.unet.layers_per_block = {3, 3, 3}; // the file has 2 per level
  CHECK_THROWS_WITH(sdxl::io::split_sgm_checkpoint(sgm, expect), "not recognised");
  expect = base_expectations();
  expect.unet.layers_per_block = {2, 2, 1};
  CHECK_THROWS_WITH(sdxl::io::split_sgm_checkpoint(sgm, expect), "not recognised");
}

// ----------------------------------------------------------------------------
// UNet module paths both ways

TEST_CASE(unet_paths_round_trip_and_match_known_names) {
  const UNetLayout layout = base_expectations().unet;
  const TensorMap diffusers = meta_tensors(base_keys_dir() + "/unet_keys.json");
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : diffusers) keys.push_back(key);
  // The layout read off the keys equals the config's.
  const UNetLayout from_keys = UNetLayout::from_diffusers_keys(keys);
  CHECK(from_keys.layers_per_block == layout.layers_per_block);
  CHECK(from_keys.down_has_attention == layout.down_has_attention);
  CHECK(from_keys.up_has_attention == layout.up_has_attention);
  // Every parameter key converts to an SGM key of the real table and back.
  const TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  int bad = 0;
  for (const auto& key : keys) {
    const std::string sgm_key = sdxl::io::unet_diffusers_to_sgm(key, layout);
    if ((!sgm.count(sdxl::io::kSgmUNetPrefix + sgm_key) || sdxl::io::unet_sgm_to_diffusers(sgm_key, layout) != key) &&
        bad++ < 5)
      sdxl::test::report_failure(__FILE__, __LINE__, key + " -> " + sgm_key);
  }
  CHECK(sdxl::io::unet_diffusers_to_sgm("down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_out.0", layout) ==
        "input_blocks.4.1.transformer_blocks.0.attn1.to_out.0");
  CHECK(sdxl::io::unet_diffusers_to_sgm("down_blocks.0.downsamplers.0.conv", layout) == "input_blocks.3.0.op");
  CHECK(sdxl::io::unet_diffusers_to_sgm("down_blocks.0.resnets.1.time_emb_proj", layout) == "input_blocks.2.0.emb_layers.1");
  CHECK(sdxl::io::unet_diffusers_to_sgm("up_blocks.0.upsamplers.0.conv", layout) == "output_blocks.2.2.conv");
  CHECK(sdxl::io::unet_diffusers_to_sgm("up_blocks.1.upsamplers.0.conv", layout) == "output_blocks.5.2.conv");
  CHECK(sdxl::io::unet_diffusers_to_sgm("mid_block.attentions.0.proj_in", layout) == "middle_block.1.proj_in");
  CHECK(sdxl::io::unet_sgm_to_diffusers("output_blocks.8.0.skip_connection", layout) == "up_blocks.2.resnets.2.conv_shortcut");
  CHECK(sdxl::io::unet_sgm_to_diffusers("label_emb.0.0", layout) == "add_embedding.linear_1");
  CHECK_THROWS_WITH(sdxl::io::unet_sgm_to_diffusers("input_blocks.9.0.in_layers.0", layout), "input_blocks.9.0");
  CHECK_THROWS_WITH(sdxl::io::unet_diffusers_to_sgm("down_blocks.0.resnets.0.bogus", layout), "bogus");
}

// The tiny LoRA's module map (golden.json) pairs diffusers and SGM paths.
TEST_CASE(tiny_unet_paths_match_golden_lora_module_map) {
  const UNetLayout layout = tiny_expectations().unet;
  const nlohmann::json golden = read_json(fixtures_dir() + "/tiny-sdxl-golden/golden.json");
  int pairs = 0;
  for (const auto& pair : golden.at("lora").at("module_map")) {
    const std::string diffusers = pair.at(0).get<std::string>(), sgm = pair.at(1).get<std::string>();
    CHECK(sdxl::io::unet_diffusers_to_sgm(diffusers, layout) == sgm);
    CHECK(sdxl::io::unet_sgm_to_diffusers(sgm, layout) == diffusers);
    ++pairs;
  }
  CHECK(pairs == 224);
}

// ----------------------------------------------------------------------------
// Tiny single file: values

TEST_CASE(tiny_single_file_equals_tiny_folder) {
  const TensorMap sgm = sdxl::io::load_safetensors(fixtures_dir() + "/tiny-sdxl-single-file/tiny_sdxl_sgm.safetensors");
  const SplitCheckpoint split = sdxl::io::split_sgm_checkpoint(sgm, tiny_expectations());
  check_same_values(split.unet, sdxl::io::load_safetensors(tiny_dir() + "/unet/diffusion_pytorch_model.safetensors"), "unet");
  check_same_values(split.vae, sdxl::io::load_safetensors(tiny_dir() + "/vae/diffusion_pytorch_model.safetensors"), "vae");
  check_same_values(split.text_encoder, sdxl::io::load_safetensors(tiny_dir() + "/text_encoder/model.safetensors"), "text_encoder");
  check_same_values(split.text_encoder_2, sdxl::io::load_safetensors(tiny_dir() + "/text_encoder_2/model.safetensors"), "text_encoder_2");
  CHECK(split.unet.size() == 838 && split.vae.size() == 244);
  CHECK(split.text_encoder.size() == 52 && split.text_encoder_2.size() == 53);
}

SDXL_TEST_MAIN()
