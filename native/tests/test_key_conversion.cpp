// Key conversion against the real layouts: the full-size SDXL-base SGM and SD 1.5
// LDM key tables must convert to exactly diffusers' keys and shapes (meta tensors,
// no memory), and the tiny single files to the tiny diffusers folders' tensors,
// bit for bit after upcasting.
#include "check.h"
#include "test_support.h" // meta_tensors

#include "io/key_conversion.h" // split_single_file, single_file_kind, unet_diffusers_to_sgm
#include "io/safetensors.h"    // load_safetensors
#include "models/configs.h"    // UNetConfig, VaeConfig, ClipTextConfig

#include <nlohmann/json.hpp> // *_keys.json, golden.json

#include <set>
#include <string>
#include <vector>

using sdxl::io::SingleFileExpectations;
using sdxl::models::ModelFamily;
using sdxl::io::SplitCheckpoint;
using sdxl::io::TensorMap;
using sdxl::io::UNetLayout;
using sdxl::test::fixtures_dir;

using sdxl::test::meta_tensors;

namespace {

std::string base_keys_dir() { return fixtures_dir() + "/sdxl-base-keys"; }
std::string tiny_dir() { return fixtures_dir() + "/tiny-sdxl"; }
std::string sd15_keys_dir() { return fixtures_dir() + "/sd15-base-keys"; }
std::string tiny_sd15_dir() { return fixtures_dir() + "/tiny-sd15"; }

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

SingleFileExpectations base_expectations() {
  using namespace sdxl::models;
  return SingleFileExpectations::from_configs(ModelFamily::Sdxl, UNetConfig::from_file(base_keys_dir() + "/unet_config.json"),
                                       VaeConfig::from_file(base_keys_dir() + "/vae_config.json"),
                                       ClipTextConfig::from_file(base_keys_dir() + "/text_encoder_config.json"),
                                       ClipTextConfig::from_file(base_keys_dir() + "/text_encoder_2_config.json"));
}

SingleFileExpectations tiny_expectations() {
  using namespace sdxl::models;
  return SingleFileExpectations::from_configs(ModelFamily::Sdxl, UNetConfig::from_file(tiny_dir() + "/unet/config.json"),
                                       VaeConfig::from_file(tiny_dir() + "/vae/config.json"),
                                       ClipTextConfig::from_file(tiny_dir() + "/text_encoder/config.json"),
                                       ClipTextConfig::from_file(tiny_dir() + "/text_encoder_2/config.json"));
}

SingleFileExpectations sd15_expectations() {
  using namespace sdxl::models;
  const ClipTextConfig text = ClipTextConfig::from_file(sd15_keys_dir() + "/text_encoder_config.json");
  return SingleFileExpectations::from_configs(ModelFamily::Sd1, UNetConfig::from_file(sd15_keys_dir() + "/unet_config.json"),
                                              VaeConfig::from_file(sd15_keys_dir() + "/vae_config.json"), text, text);
}

SingleFileExpectations tiny_sd15_expectations() {
  using namespace sdxl::models;
  const ClipTextConfig text = ClipTextConfig::from_file(tiny_sd15_dir() + "/text_encoder/config.json");
  return SingleFileExpectations::from_configs(ModelFamily::Sd1, UNetConfig::from_file(tiny_sd15_dir() + "/unet/config.json"),
                                              VaeConfig::from_file(tiny_sd15_dir() + "/vae/config.json"), text, text);
}

std::vector<std::string> keys_of(const TensorMap& tensors) {
  std::vector<std::string> keys;
  for (const auto& [key, tensor] : tensors) keys.push_back(key);
  return keys;
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
  CHECK(sdxl::io::single_file_kind(keys_of(sgm), "sdxl").family == ModelFamily::Sdxl);
  CHECK(sdxl::io::single_file_kind(keys_of(sgm), "sdxl").layout == "sgm-single-file");
  const SplitCheckpoint split = sdxl::io::split_single_file(sgm, base_expectations());
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
  const SplitCheckpoint split = sdxl::io::split_single_file(sgm, base_expectations());
  CHECK(split.text_encoder.size() == 196);
  CHECK(split.text_encoder_2.size() == 517);
}

TEST_CASE(unknown_keys_are_listed) {
  TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  sgm["model.diffusion_model.input_blocks.1.0.mystery.weight"] = torch::empty({4}, meta);
  sgm["cond_stage_model.something"] = torch::empty({4}, meta);
  CHECK_THROWS_WITH(sdxl::io::split_single_file(sgm, base_expectations()),
                    "SGM checkpoint: 2 keys not recognised: cond_stage_model.something, model.diffusion_model.input_blocks.1.0.mystery.weight");
}

TEST_CASE(layer_counts_are_checked_against_the_config) {
  const TensorMap sgm = meta_tensors(base_keys_dir() + "/sgm_single_file_keys.json");
  SingleFileExpectations expect = base_expectations();
  expect.text_encoder_2_layers = 24;
  CHECK_THROWS_WITH(sdxl::io::split_single_file(sgm, expect), "text encoder 2 (conditioner.embedders.1) has 32 layers, the config expects 24");
  expect = base_expectations();
  expect.unet.layers_per_block = {3, 3, 3}; // the file has 2 per level
  CHECK_THROWS_WITH(sdxl::io::split_single_file(sgm, expect), "not recognised");
  expect = base_expectations();
  expect.unet.layers_per_block = {2, 2, 1};
  CHECK_THROWS_WITH(sdxl::io::split_single_file(sgm, expect), "not recognised");
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
  const nlohmann::json golden = sdxl::models::read_json_file(fixtures_dir() + "/tiny-sdxl-golden/golden.json");
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
  const SplitCheckpoint split = sdxl::io::split_single_file(sgm, tiny_expectations());
  check_same_values(split.unet, sdxl::io::load_safetensors(tiny_dir() + "/unet/diffusion_pytorch_model.safetensors"), "unet");
  check_same_values(split.vae, sdxl::io::load_safetensors(tiny_dir() + "/vae/diffusion_pytorch_model.safetensors"), "vae");
  check_same_values(split.text_encoder, sdxl::io::load_safetensors(tiny_dir() + "/text_encoder/model.safetensors"), "text_encoder");
  check_same_values(split.text_encoder_2, sdxl::io::load_safetensors(tiny_dir() + "/text_encoder_2/model.safetensors"), "text_encoder_2");
  CHECK(split.unet.size() == 838 && split.vae.size() == 244);
  CHECK(split.text_encoder.size() == 52 && split.text_encoder_2.size() == 53);
}

// ----------------------------------------------------------------------------
// SD 1.x: the LDM layout of v1-5-pruned-emaonly.safetensors

TEST_CASE(sd15_ldm_keys_convert_to_diffusers_keys) {
  const TensorMap ldm = meta_tensors(sd15_keys_dir() + "/ldm_single_file_keys.json");
  CHECK(ldm.size() == 1130);
  const sdxl::io::SingleFileKind kind = sdxl::io::single_file_kind(keys_of(ldm), "v1-5");
  CHECK(kind.family == ModelFamily::Sd1 && kind.layout == "ldm-single-file" && !kind.v_prediction_marker);
  const SplitCheckpoint split = sdxl::io::split_single_file(ldm, sd15_expectations());
  check_same_layout(split.unet, meta_tensors(sd15_keys_dir() + "/unet_keys.json"), "unet");
  check_same_layout(split.vae, meta_tensors(sd15_keys_dir() + "/vae_keys.json"), "vae");
  check_same_layout(split.text_encoder, meta_tensors(sd15_keys_dir() + "/text_encoder_keys.json"), "text_encoder");
  CHECK(split.text_encoder_2.empty());
  // 1x1-conv projections stay convolutions, as diffusers keeps them.
  CHECK(split.unet.at("down_blocks.0.attentions.0.proj_in.weight").sizes() == torch::IntArrayRef({320, 320, 1, 1}));
}

TEST_CASE(sd15_published_file_extras_are_dropped) {
  TensorMap ldm = meta_tensors(sd15_keys_dir() + "/ldm_single_file_keys.json");
  const auto meta = torch::TensorOptions().device(torch::kMeta);
  for (const char* buffer : {"betas", "alphas_cumprod", "posterior_mean_coef2", "logvar"}) ldm[buffer] = torch::empty({1000}, meta);
  ldm["cond_stage_model.transformer.text_model.embeddings.position_ids"] = torch::empty({1, 77}, meta);
  ldm["model_ema.decay"] = torch::empty({}, meta);
  ldm["model_ema.diffusion_modelinput_blocks00weight"] = torch::empty({320, 4, 3, 3}, meta);
  const SplitCheckpoint split = sdxl::io::split_single_file(ldm, sd15_expectations());
  CHECK(split.unet.size() == 686 && split.vae.size() == 248 && split.text_encoder.size() == 196);
}

TEST_CASE(sd15_diffusers_to_ldm_key_map_round_trips) {
  // The fixture's map pairs every diffusers UNet key with its LDM key.
  const UNetLayout layout = sd15_expectations().unet;
  CHECK(!layout.added_embedding);
  const nlohmann::json map = sdxl::models::read_json_file(sd15_keys_dir() + "/diffusers_to_ldm_key_map.json");
  int unet_pairs = 0, bad = 0;
  for (const auto& row : map.at("rows")) { // [component, diffusers_key, ldm_key, ldm_shape, transform]
    if (row.at(0).get<std::string>() != "unet") continue;
    const std::string diffusers = row.at(1).get<std::string>(), ldm = row.at(2).get<std::string>();
    const std::string sgm = ldm.substr(std::string(sdxl::io::kSgmUNetPrefix).size());
    if ((sdxl::io::unet_diffusers_to_sgm(diffusers, layout) != sgm || sdxl::io::unet_sgm_to_diffusers(sgm, layout) != diffusers) &&
        bad++ < 5)
      sdxl::test::report_failure(__FILE__, __LINE__, diffusers + " -> " + sgm);
    ++unet_pairs;
  }
  CHECK(unet_pairs == 686);
}

TEST_CASE(tiny_sd15_single_file_equals_tiny_folder) {
  const TensorMap ldm = sdxl::io::load_safetensors(fixtures_dir() + "/tiny-sd15-single-file/tiny_sd15.safetensors");
  const SplitCheckpoint split = sdxl::io::split_single_file(ldm, tiny_sd15_expectations());
  check_same_values(split.unet, sdxl::io::load_safetensors(tiny_sd15_dir() + "/unet/diffusion_pytorch_model.safetensors"), "unet");
  check_same_values(split.vae, sdxl::io::load_safetensors(tiny_sd15_dir() + "/vae/diffusion_pytorch_model.safetensors"), "vae");
  // The folder keeps transformers 4's "text_model." prefix; the split file has none (the loader takes both).
  TensorMap text_encoder;
  for (const auto& [key, tensor] : sdxl::io::load_safetensors(tiny_sd15_dir() + "/text_encoder/model.safetensors"))
    text_encoder[key.substr(std::string("text_model.").size())] = tensor;
  check_same_values(split.text_encoder, text_encoder, "text_encoder");
  CHECK(split.unet.size() == 684 && split.vae.size() == 244 && split.text_encoder.size() == 52);
}

TEST_CASE(single_files_of_no_known_family_are_refused_naming_what_they_hold) {
  CHECK_THROWS_WITH(sdxl::io::single_file_kind({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight",
                                                "lora_te_text_model_encoder_layers_0_self_attn_q_proj.alpha"},
                                               "x.safetensors"),
                    "x.safetensors is not a Stable Diffusion checkpoint of a known family");
  CHECK_THROWS_WITH(sdxl::io::single_file_kind({"lora_unet_down_blocks_0_attentions_0_proj_in.lora_down.weight"}, "x"),
                    "found lora_unet_*");
  CHECK_THROWS_WITH(sdxl::io::single_file_kind({"encoder.conv_in.weight", "decoder.conv_out.bias"}, "vae.safetensors"),
                    "found decoder.conv_out.*, encoder.conv_in.*");
  CHECK_THROWS_WITH(sdxl::io::single_file_kind({"model.diffusion_model.out.2.bias",
                                                "cond_stage_model.model.transformer.resblocks.0.attn.in_proj_weight"},
                                               "v2-1_768.safetensors"),
                    "SD 2.x single file");
  // SDXL v-prediction fine-tunes mark themselves.
  const sdxl::io::SingleFileKind kind = sdxl::io::single_file_kind(
      {"model.diffusion_model.out.2.bias", "conditioner.embedders.0.transformer.text_model.final_layer_norm.bias",
       "v_pred", "ztsnr"},
      "noob.safetensors");
  CHECK(kind.family == ModelFamily::Sdxl && kind.v_prediction_marker && kind.zero_terminal_snr_marker);
}

SDXL_TEST_MAIN()
