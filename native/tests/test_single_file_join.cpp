// join_single_file, the inverse of split_single_file: the tiny single files split and
// join back bit for bit, the tiny diffusers folders join into the tiny single files, and
// the full-size SDXL-base / SD 1.5 diffusers key tables join into exactly the official
// SGM / LDM key tables (meta tensors: shapes without memory).
#include "check.h"
#include "test_support.h" // meta_tensors // TEST_CASE, CHECK, CHECK_THROWS_WITH, fixtures_dir

#include "io/key_conversion.h" // join_single_file, split_single_file, SplitCheckpoint
#include "io/safetensors.h"    // load_safetensors, TensorMap
#include "models/configs.h"    // UNetConfig, VaeConfig, ClipTextConfig, ModelFamily

#include <nlohmann/json.hpp> // *_keys.json, diffusers_to_ldm_key_map.json

#include <iterator> // std::next
#include <set>      // weightless entry names
#include <sstream>  // std::ostringstream shape messages
#include <string>
#include <vector>

using sdxl::io::SingleFileExpectations;
using sdxl::io::SplitCheckpoint;
using sdxl::io::TensorMap;
using sdxl::models::ModelFamily;
using sdxl::test::fixtures_dir;

using sdxl::test::meta_tensors;

namespace {

constexpr int kMaxReported = 20; // differing keys named per comparison

std::string sdxl_keys_dir() { return fixtures_dir() + "/sdxl-base-keys"; }
std::string sd15_keys_dir() { return fixtures_dir() + "/sd15-base-keys"; }
std::string tiny_sdxl_dir() { return fixtures_dir() + "/tiny-sdxl"; }
std::string tiny_sd15_dir() { return fixtures_dir() + "/tiny-sd15"; }
std::string tiny_sdxl_file() { return fixtures_dir() + "/tiny-sdxl-single-file/tiny_sdxl_sgm.safetensors"; }
std::string tiny_sd15_file() { return fixtures_dir() + "/tiny-sd15-single-file/tiny_sd15.safetensors"; }

// Expectations from a diffusers folder's configs (the single files carry none).
SingleFileExpectations expectations(ModelFamily family, const std::string& unet, const std::string& vae,
                                    const std::string& text_encoder, const std::string& text_encoder_2) {
  using namespace sdxl::models;
  return SingleFileExpectations::from_configs(family, UNetConfig::from_file(unet), VaeConfig::from_file(vae),
                                              ClipTextConfig::from_file(text_encoder),
                                              ClipTextConfig::from_file(text_encoder_2));
}

SingleFileExpectations sdxl_base_expectations() {
  const std::string dir = sdxl_keys_dir();
  return expectations(ModelFamily::Sdxl, dir + "/unet_config.json", dir + "/vae_config.json",
                      dir + "/text_encoder_config.json", dir + "/text_encoder_2_config.json");
}

SingleFileExpectations sd15_base_expectations() {
  const std::string dir = sd15_keys_dir();
  return expectations(ModelFamily::Sd1, dir + "/unet_config.json", dir + "/vae_config.json",
                      dir + "/text_encoder_config.json", dir + "/text_encoder_config.json");
}

SingleFileExpectations tiny_sdxl_expectations() {
  const std::string dir = tiny_sdxl_dir();
  return expectations(ModelFamily::Sdxl, dir + "/unet/config.json", dir + "/vae/config.json",
                      dir + "/text_encoder/config.json", dir + "/text_encoder_2/config.json");
}

SingleFileExpectations tiny_sd15_expectations() {
  const std::string dir = tiny_sd15_dir();
  return expectations(ModelFamily::Sd1, dir + "/unet/config.json", dir + "/vae/config.json",
                      dir + "/text_encoder/config.json", dir + "/text_encoder/config.json");
}

// A diffusers folder's components as their files hold them (dtype and key prefixes untouched).
SplitCheckpoint load_folder(const std::string& dir, bool sdxl) {
  SplitCheckpoint components;
  components.unet = sdxl::io::load_safetensors(dir + "/unet/diffusion_pytorch_model.safetensors");
  components.vae = sdxl::io::load_safetensors(dir + "/vae/diffusion_pytorch_model.safetensors");
  components.text_encoder = sdxl::io::load_safetensors(dir + "/text_encoder/model.safetensors");
  if (sdxl) components.text_encoder_2 = sdxl::io::load_safetensors(dir + "/text_encoder_2/model.safetensors");
  return components;
}

// A single file less the entries split_single_file drops: they hold no weights, so a
// join cannot give them back (position_ids, logit_scale, markers, DDPM buffers, EMA copy).
TensorMap weighted_entries(const TensorMap& file) {
  static const std::set<std::string> weightless = {
      "v_pred", "ztsnr", "betas", "alphas_cumprod", "alphas_cumprod_prev", "sqrt_alphas_cumprod",
      "sqrt_one_minus_alphas_cumprod", "log_one_minus_alphas_cumprod", "sqrt_recip_alphas_cumprod",
      "sqrt_recipm1_alphas_cumprod", "posterior_variance", "posterior_log_variance_clipped", "posterior_mean_coef1",
      "posterior_mean_coef2", "logvar"};
  const auto ends_with = [](const std::string& text, const std::string& end) {
    return text.size() >= end.size() && text.compare(text.size() - end.size(), end.size(), end) == 0;
  };
  TensorMap kept;
  for (const auto& [key, tensor] : file)
    if (!weightless.count(key) && key.rfind("model_ema.", 0) != 0 && !ends_with(key, ".position_ids") &&
        !ends_with(key, ".logit_scale"))
      kept[key] = tensor;
  return kept;
}

// Reports a difference by name, at most kMaxReported per comparison.
struct Reporter {
  std::string what;
  int count = 0;
  void operator()(const std::string& message) {
    if (++count <= kMaxReported) sdxl::test::report_failure(__FILE__, __LINE__, what + ": " + message);
  }
};

// Same keys and shapes, every difference named.
void check_same_layout(const TensorMap& got, const TensorMap& expected, const std::string& what) {
  Reporter report{what};
  for (const auto& [key, tensor] : expected) {
    const auto found = got.find(key);
    if (found == got.end()) {
      report("missing " + key);
    } else if (found->second.sizes() != tensor.sizes()) {
      std::ostringstream message;
      message << "shape of " << key << ": " << found->second.sizes() << ", expected " << tensor.sizes();
      report(message.str());
    }
  }
  for (const auto& [key, tensor] : got)
    if (!expected.count(key)) report("unexpected " + key);
  CHECK(got.size() == expected.size());
}

// Same keys, dtypes and shapes, contiguous, values bit for bit.
void check_identical(const TensorMap& got, const TensorMap& expected, const std::string& what) {
  check_same_layout(got, expected, what);
  Reporter report{what};
  for (const auto& [key, tensor] : expected) {
    const auto found = got.find(key);
    if (found == got.end() || found->second.sizes() != tensor.sizes()) continue; // reported above
    const torch::Tensor& value = found->second;
    if (value.scalar_type() != tensor.scalar_type()) report("dtype of " + key);
    else if (!value.is_contiguous()) report("not contiguous: " + key);
    else if (!torch::equal(value, tensor)) report("values of " + key);
  }
}

// Same keys and shapes, values equal once both sides are float32 (a folder's float32 VAE
// and text encoders against a float16 file: the fixtures' weights were rounded through
// float16, so the upcast is exact).
void check_same_values(const TensorMap& got, const TensorMap& expected, const std::string& what) {
  check_same_layout(got, expected, what);
  Reporter report{what};
  for (const auto& [key, tensor] : expected) {
    const auto found = got.find(key);
    if (found == got.end() || found->second.sizes() != tensor.sizes()) continue; // reported above
    if (!torch::equal(found->second.to(torch::kFloat), tensor.to(torch::kFloat))) report("values of " + key);
  }
}

// The dtype every joined key under `prefix` has, or "mixed".
std::string dtype_under(const TensorMap& tensors, const std::string& prefix) {
  std::set<std::string> dtypes;
  for (const auto& [key, tensor] : tensors)
    if (key.rfind(prefix, 0) == 0) dtypes.insert(c10::toString(tensor.scalar_type()));
  return dtypes.size() == 1 ? *dtypes.begin() : "mixed";
}

TensorMap with_prefix(const TensorMap& tensors, const std::string& prefix) {
  TensorMap out;
  for (const auto& [key, tensor] : tensors) out[prefix + key] = tensor;
  return out;
}

TensorMap without_prefix(const TensorMap& tensors, const std::string& prefix) {
  TensorMap out;
  for (const auto& [key, tensor] : tensors) out[key.rfind(prefix, 0) == 0 ? key.substr(prefix.size()) : key] = tensor;
  return out;
}

} // namespace

// ----------------------------------------------------------------------------
// Tiny single files: split then join gives the file back

TEST_CASE(tiny_sdxl_single_file_round_trips_bit_for_bit) {
  const TensorMap file = sdxl::io::load_safetensors(tiny_sdxl_file());
  const SingleFileExpectations expect = tiny_sdxl_expectations();
  const TensorMap joined = sdxl::io::join_single_file(sdxl::io::split_single_file(file, expect), expect);
  check_identical(joined, weighted_entries(file), "tiny SDXL");
  CHECK(joined.size() == 1175);
  // The tiny OpenCLIP projection is not square (hidden 40, projection 32): stored [H, P].
  CHECK(joined.at("conditioner.embedders.1.model.text_projection").sizes() == torch::IntArrayRef({40, 32}));
  CHECK(joined.at("conditioner.embedders.1.model.transformer.resblocks.0.attn.in_proj_weight").sizes() ==
        torch::IntArrayRef({120, 40}));
}

TEST_CASE(tiny_sd15_single_file_round_trips_bit_for_bit) {
  const TensorMap file = sdxl::io::load_safetensors(tiny_sd15_file());
  const SingleFileExpectations expect = tiny_sd15_expectations();
  const TensorMap joined = sdxl::io::join_single_file(sdxl::io::split_single_file(file, expect), expect);
  check_identical(joined, weighted_entries(file), "tiny SD 1.5");
  CHECK(joined.size() == 980);
}

// ----------------------------------------------------------------------------
// Tiny diffusers folders join into the tiny single files
// (tiny-sdxl's text_encoder has no "text_model.", its text_encoder_2 and tiny-sd15's
// text_encoder have it)

TEST_CASE(tiny_sdxl_folder_joins_into_the_tiny_sgm_file) {
  const TensorMap joined = sdxl::io::join_single_file(load_folder(tiny_sdxl_dir(), true), tiny_sdxl_expectations());
  check_same_values(joined, weighted_entries(sdxl::io::load_safetensors(tiny_sdxl_file())), "tiny-sdxl folder");
  // Dtypes are kept: the folder's UNet is float16, the rest float32.
  CHECK(dtype_under(joined, sdxl::io::kSgmUNetPrefix) == "Half");
  CHECK(dtype_under(joined, sdxl::io::kSgmVaePrefix) == "Float");
  CHECK(dtype_under(joined, sdxl::io::kSgmTextEncoderPrefix) == "Float");
  CHECK(dtype_under(joined, sdxl::io::kSgmTextEncoder2Prefix) == "Float");
}

TEST_CASE(tiny_sd15_folder_joins_into_the_tiny_ldm_file) {
  const TensorMap joined = sdxl::io::join_single_file(load_folder(tiny_sd15_dir(), false), tiny_sd15_expectations());
  check_same_values(joined, weighted_entries(sdxl::io::load_safetensors(tiny_sd15_file())), "tiny-sd15 folder");
  CHECK(dtype_under(joined, sdxl::io::kSgmUNetPrefix) == "Half");
  CHECK(dtype_under(joined, sdxl::io::kLdmTextEncoderPrefix) == "Float");
}

TEST_CASE(text_encoder_keys_join_with_or_without_text_model_prefix) {
  const SingleFileExpectations expect = tiny_sdxl_expectations();
  const SplitCheckpoint folder = load_folder(tiny_sdxl_dir(), true);
  const TensorMap reference = sdxl::io::join_single_file(folder, expect);

  // The other way round: text_encoder with "text_model.", text_encoder_2 without
  // (text_projection.weight is never under it), plus position_ids buffers, which hold no weight.
  SplitCheckpoint flipped = folder;
  flipped.text_encoder = with_prefix(folder.text_encoder, "text_model.");
  flipped.text_encoder_2 = without_prefix(folder.text_encoder_2, "text_model.");
  CHECK(flipped.text_encoder_2.count("embeddings.token_embedding.weight") == 1);
  flipped.text_encoder["text_model.embeddings.position_ids"] = torch::arange(77).unsqueeze(0);
  flipped.text_encoder_2["embeddings.position_ids"] = torch::arange(77).unsqueeze(0);
  check_identical(sdxl::io::join_single_file(flipped, expect), reference, "flipped text_model. prefixes");

  // Both spellings of one key in one encoder: refused, not silently overwritten.
  SplitCheckpoint both = folder;
  both.text_encoder["text_model.final_layer_norm.bias"] = folder.text_encoder.at("final_layer_norm.bias");
  CHECK_THROWS_WITH(sdxl::io::join_single_file(both, expect),
                    "(a second tensor for conditioner.embedders.0.transformer.text_model.final_layer_norm.bias)");
  both = folder;
  both.text_encoder_2["final_layer_norm.bias"] = folder.text_encoder_2.at("text_model.final_layer_norm.bias");
  CHECK_THROWS_WITH(sdxl::io::join_single_file(both, expect), "(a second tensor for text_model.final_layer_norm.bias)");
}

// ----------------------------------------------------------------------------
// Full size: the diffusers key tables join into the official single-file tables

TEST_CASE(sdxl_base_diffusers_keys_join_into_the_sgm_table) {
  const std::string dir = sdxl_keys_dir();
  SplitCheckpoint components;
  components.unet = meta_tensors(dir + "/unet_keys.json");
  components.vae = meta_tensors(dir + "/vae_keys.json");
  components.text_encoder = meta_tensors(dir + "/text_encoder_keys.json");
  components.text_encoder_2 = meta_tensors(dir + "/text_encoder_2_keys.json");
  const TensorMap joined = sdxl::io::join_single_file(components, sdxl_base_expectations());
  check_same_layout(joined, meta_tensors(dir + "/sgm_single_file_keys.json"), "SDXL base");
  CHECK(joined.size() == 2513);
  for (const auto& [key, tensor] : joined)
    if (!tensor.device().is_meta()) sdxl::test::report_failure(__FILE__, __LINE__, "allocated: " + key);
}

TEST_CASE(sd15_diffusers_keys_join_into_the_ldm_table) {
  const std::string dir = sd15_keys_dir();
  SplitCheckpoint components;
  components.unet = meta_tensors(dir + "/unet_keys.json");
  components.vae = meta_tensors(dir + "/vae_keys.json");
  components.text_encoder = meta_tensors(dir + "/text_encoder_keys.json");
  const TensorMap joined = sdxl::io::join_single_file(components, sd15_base_expectations());
  check_same_layout(joined, meta_tensors(dir + "/ldm_single_file_keys.json"), "SD 1.5");
  CHECK(joined.size() == 1130);

  // Key by key against the fixture's map, naming the diffusers key that went astray.
  const nlohmann::json map = sdxl::models::read_json_file(dir + "/diffusers_to_ldm_key_map.json");
  Reporter report{"diffusers_to_ldm_key_map"};
  int rows = 0;
  for (const auto& row : map.at("rows")) { // [component, diffusers_key, ldm_key, ldm_shape, transform]
    ++rows;
    const std::string source = row.at(0).get<std::string>() + "/" + row.at(1).get<std::string>();
    const std::string ldm = row.at(2).get<std::string>();
    const std::vector<int64_t> shape = row.at(3).get<std::vector<int64_t>>();
    const auto found = joined.find(ldm);
    if (found == joined.end()) report(source + " -> " + ldm + ": not in the join");
    else if (found->second.sizes() != torch::IntArrayRef(shape)) report(source + " -> " + ldm + ": shape differs");
  }
  CHECK(rows == 1130);
}

// ----------------------------------------------------------------------------
// Errors

TEST_CASE(keys_that_cannot_be_placed_are_listed) {
  const SingleFileExpectations expect = tiny_sdxl_expectations();
  const SplitCheckpoint split = sdxl::io::split_single_file(sdxl::io::load_safetensors(tiny_sdxl_file()), expect);

  SplitCheckpoint unknown = split;
  unknown.unet["down_blocks.0.resnets.0.mystery.weight"] = torch::zeros({2});
  unknown.vae["encoder.mystery.weight"] = torch::zeros({2});
  unknown.text_encoder["text_projection.weight"] = torch::zeros({2, 2});
  unknown.text_encoder_2["text_model.encoder.layers.0.mlp.fc3.weight"] = torch::zeros({2});
  CHECK_THROWS_WITH(sdxl::io::join_single_file(unknown, expect),
                    "SGM checkpoint: 4 keys cannot be placed: unet/down_blocks.0.resnets.0.mystery.weight, "
                    "vae/encoder.mystery.weight, text_encoder/text_projection.weight, "
                    "text_encoder_2/text_model.encoder.layers.0.mlp.fc3.weight");

  SplitCheckpoint no_v = split;
  no_v.text_encoder_2.erase("text_model.encoder.layers.1.self_attn.v_proj.weight");
  CHECK_THROWS_WITH(sdxl::io::join_single_file(no_v, expect),
                    "text_encoder_2/transformer.resblocks.1.attn.in_proj_weight (needs q_proj, k_proj and v_proj");

  // A UNet with fewer blocks than its config: the join would miss keys.
  SplitCheckpoint short_unet = split;
  for (auto it = short_unet.unet.begin(); it != short_unet.unet.end();)
    it = it->first.rfind("up_blocks.2.resnets.2.", 0) == 0 ? short_unet.unet.erase(it) : std::next(it);
  CHECK_THROWS_WITH(sdxl::io::join_single_file(short_unet, expect),
                    "the UNet config expects blocks the UNet does not have: up_blocks.2.resnets.2");

  SplitCheckpoint no_vae = split;
  no_vae.vae.clear();
  CHECK_THROWS_WITH(sdxl::io::join_single_file(no_vae, expect), "a component is missing (unet 838, vae 0,");
}

TEST_CASE(sd1_takes_one_text_encoder_and_sd2_is_refused) {
  const SingleFileExpectations expect = tiny_sd15_expectations();
  SplitCheckpoint split = sdxl::io::split_single_file(sdxl::io::load_safetensors(tiny_sd15_file()), expect);
  split.text_encoder_2["text_model.final_layer_norm.bias"] = torch::zeros({2});
  CHECK_THROWS_WITH(sdxl::io::join_single_file(split, expect), "SD 1.x has one text encoder");
  split.text_encoder_2.clear();
  SingleFileExpectations sd2 = expect;
  sd2.family = ModelFamily::Sd2;
  CHECK_THROWS_WITH(sdxl::io::join_single_file(split, sd2), "SD 2.x is not joined into a single file");
}

SDXL_TEST_MAIN()
