// The full-size SDXL-base 1.0 architecture, built on the meta device (no
// weights allocated): every parameter name and shape must equal the diffusers /
// transformers state-dict tables in sdxl-base-keys/, from the shipped configs
// and from our sdxl_base() factories alike.
#include "check.h" // TEST_CASE, CHECK, fixtures_dir

#include "models/clip.h"       // ClipTextModel
#include "models/configs.h"    // UNetConfig, VaeConfig, ClipTextConfig, read_json_file
#include "models/state_dict.h" // normalize_state_dict_keys, count_parameters
#include "models/unet.h"       // UNet2DConditionModel
#include "models/vae.h"        // AutoencoderKL

#include <torch/torch.h>

#include <iostream> // std::cerr mismatch report
#include <string>

using namespace sdxl;
using namespace sdxl::models;

namespace {

constexpr int64_t kSdxlBaseUNetParameters = 2567463684; // the figure diffusers reports for SDXL-base
constexpr int kMaxReported = 10;                        // mismatches printed per component

std::string keys_dir() { return test::fixtures_dir() + "/sdxl-base-keys"; }

const torch::TensorOptions kMeta = torch::TensorOptions().dtype(torch::kFloat).device(torch::kMeta);

// Compares the module's parameters with `<component>_keys.json` and summary.json.
void check_component(const torch::nn::Module& module, const std::string& component) {
  const auto table = read_json_file(keys_dir() + "/" + component + "_keys.json");
  const auto summary = read_json_file(keys_dir() + "/summary.json")[component];

  // The table as a (meta) state dict, normalised as load_state_dict would read it.
  StateDict file;
  for (const auto& [key, shape] : table["keys"].items()) {
    file[key] = torch::empty(shape.get<std::vector<int64_t>>(), kMeta);
  }
  const StateDict normalized = normalize_state_dict_keys(module, file);
  CHECK(normalized.size() == file.size());

  const auto parameters = module.named_parameters(/*recurse=*/true);
  int mismatches = 0;
  auto report = [&](const std::string& what) {
    if (++mismatches <= kMaxReported) std::cerr << "    " << component << ": " << what << "\n";
  };
  for (const auto& item : parameters) {
    auto found = normalized.find(item.key());
    if (found == normalized.end()) {
      report("not in the table: " + item.key());
    } else if (found->second.sizes() != item.value().sizes()) {
      report("shape differs: " + item.key());
    }
  }
  for (const auto& [key, value] : normalized) {
    if (!parameters.contains(key)) report("not in the model: " + key);
  }
  CHECK(mismatches == 0);
  CHECK(static_cast<int64_t>(parameters.size()) == summary["num_tensors"].get<int64_t>());
  CHECK(count_parameters(module) == summary["num_params"].get<int64_t>());
  for (const auto& parameter : module.parameters()) CHECK(parameter.device().is_meta());
  std::cerr << "    " << component << ": " << parameters.size() << " tensors, " << count_parameters(module)
            << " parameters\n";
}

} // namespace

// ----------------------------------------------------------------------------
// From the shipped configs

TEST_CASE(unet_from_config_matches_sdxl_base_keys) {
  UNet2DConditionModel unet(UNetConfig::from_file(keys_dir() + "/unet_config.json"), kMeta);
  check_component(*unet, "unet");
  CHECK(count_parameters(*unet) == kSdxlBaseUNetParameters);
}

TEST_CASE(vae_from_config_matches_sdxl_base_keys) {
  AutoencoderKL vae(VaeConfig::from_file(keys_dir() + "/vae_config.json"), kMeta);
  check_component(*vae, "vae");
}

TEST_CASE(text_encoders_from_config_match_sdxl_base_keys) {
  ClipTextModel te1(ClipTextConfig::from_file(keys_dir() + "/text_encoder_config.json"), kMeta);
  check_component(*te1, "text_encoder");
  ClipTextModel te2(ClipTextConfig::from_file(keys_dir() + "/text_encoder_2_config.json"), kMeta);
  check_component(*te2, "text_encoder_2");
}

// ----------------------------------------------------------------------------
// From the built-in factories (single-file checkpoints carry no config)

TEST_CASE(sdxl_base_factories_match_sdxl_base_keys) {
  UNet2DConditionModel unet(UNetConfig::sdxl_base(), kMeta);
  check_component(*unet, "unet");
  CHECK(count_parameters(*unet) == kSdxlBaseUNetParameters);
  AutoencoderKL vae(VaeConfig::sdxl_base(), kMeta);
  check_component(*vae, "vae");
  ClipTextModel te1(ClipTextConfig::sdxl_base_text_encoder(), kMeta);
  check_component(*te1, "text_encoder");
  ClipTextModel te2(ClipTextConfig::sdxl_base_text_encoder_2(), kMeta);
  check_component(*te2, "text_encoder_2");
}

TEST_CASE(sdxl_base_factories_equal_the_shipped_configs) {
  const UNetConfig from_file = UNetConfig::from_file(keys_dir() + "/unet_config.json");
  const UNetConfig factory = UNetConfig::sdxl_base();
  CHECK(from_file.block_out_channels == factory.block_out_channels);
  CHECK(from_file.num_attention_heads == factory.num_attention_heads);
  CHECK(from_file.transformer_layers_per_block == factory.transformer_layers_per_block);
  CHECK(from_file.layers_per_block == factory.layers_per_block);
  CHECK(from_file.cross_attention_dim == factory.cross_attention_dim);
  CHECK(from_file.addition_time_embed_dim == factory.addition_time_embed_dim);
  CHECK(from_file.projection_class_embeddings_input_dim == factory.projection_class_embeddings_input_dim);
  CHECK(from_file.upcast_attention == factory.upcast_attention);
  CHECK(from_file.down_block_types == factory.down_block_types);
  CHECK(from_file.up_block_types == factory.up_block_types);
  const VaeConfig vae_file = VaeConfig::from_file(keys_dir() + "/vae_config.json");
  CHECK(vae_file.block_out_channels == VaeConfig::sdxl_base().block_out_channels);
  CHECK(vae_file.scaling_factor == VaeConfig::sdxl_base().scaling_factor);
  CHECK(vae_file.force_upcast == VaeConfig::sdxl_base().force_upcast);
  const ClipTextConfig te2_file = ClipTextConfig::from_file(keys_dir() + "/text_encoder_2_config.json");
  const ClipTextConfig te2 = ClipTextConfig::sdxl_base_text_encoder_2();
  CHECK(te2_file.hidden_size == te2.hidden_size && te2_file.num_hidden_layers == te2.num_hidden_layers &&
        te2_file.hidden_act == te2.hidden_act && te2_file.with_projection == te2.with_projection &&
        te2_file.projection_dim == te2.projection_dim && te2_file.intermediate_size == te2.intermediate_size);
  const ClipTextConfig te1_file = ClipTextConfig::from_file(keys_dir() + "/text_encoder_config.json");
  const ClipTextConfig te1 = ClipTextConfig::sdxl_base_text_encoder();
  CHECK(te1_file.hidden_size == te1.hidden_size && te1_file.num_hidden_layers == te1.num_hidden_layers &&
        te1_file.hidden_act == te1.hidden_act && te1_file.with_projection == te1.with_projection);
}

SDXL_TEST_MAIN()
