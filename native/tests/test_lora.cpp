// LoRA files in the three fixture layouts (kohya with SGM names, kohya with
// diffusers names, peft) load to the same normalized adapter, and applying it
// unmerged to the tiny UNet reproduces diffusers' merged-LoRA output.
#include "check.h"
#include "test_support.h" // tiny_dir, golden, load_tiny_unet, run_golden_unet, scratch_path

#include "io/safetensors.h"    // load_safetensors, save_safetensors
#include "lora/apply.h"        // apply_lora, clear_loras, lora_targets
#include "lora/lora_file.h"    // load_lora_file
#include "models/clip.h"       // ClipTextModel
#include "models/configs.h"    // UNetConfig, ClipTextConfig
#include "models/layers.h"     // LinearImpl
#include "models/state_dict.h" // load_state_dict
#include "models/unet.h"       // UNet2DConditionModel

#include <nlohmann/json.hpp> // peft metadata

#include <algorithm>  // std::replace, std::any_of
#include <fstream>    // a file that is not safetensors
#include <map>
#include <stdexcept>  // std::invalid_argument
#include <string>
#include <vector>

using namespace sdxl;
using namespace sdxl::test; // test_support.h

namespace {

constexpr double kUNetTolerance = 1e-4; // fixtures README: independent float32 UNet
constexpr int64_t kFixtureModules = 224;
constexpr double kFixtureScale = 0.5; // alpha 2 / rank 4

std::string lora_dir() { return fixtures_dir() + "/tiny-sdxl-golden/lora"; }
const char* kFixtureFiles[] = {"tiny_lora_kohya.safetensors", "tiny_lora_kohya_diffusers_names.safetensors",
                               "tiny_lora_peft.safetensors"};

torch::TensorOptions meta() { return torch::TensorOptions().device(torch::kMeta); }

// The tiny models' Linear paths, from models built on the meta device (no memory).
const lora::LoraTargets& tiny_targets() {
  static const lora::LoraTargets targets = [] {
    models::UNet2DConditionModel unet(models::UNetConfig::from_file(tiny_dir() + "/unet/config.json"), meta());
    models::ClipTextModel te1(models::ClipTextConfig::from_file(tiny_dir() + "/text_encoder/config.json"), meta());
    models::ClipTextModel te2(models::ClipTextConfig::from_file(tiny_dir() + "/text_encoder_2/config.json"), meta());
    return lora::lora_targets(unet.get(), te1.get(), te2.get());
  }();
  return targets;
}

} // namespace

// ----------------------------------------------------------------------------
// Loading

TEST_CASE(three_fixture_layouts_load_to_the_same_adapter) {
  std::vector<lora::LoraFile> files;
  for (const char* name : kFixtureFiles) files.push_back(lora::load_lora_file(lora_dir() + "/" + name, tiny_targets()));
  CHECK(files[0].layout == lora::LoraLayout::KohyaSgm);
  CHECK(files[1].layout == lora::LoraLayout::KohyaDiffusers);
  CHECK(files[2].layout == lora::LoraLayout::Peft);
  for (const auto& file : files) {
    CHECK(static_cast<int64_t>(file.modules.size()) == kFixtureModules);
    for (const auto& module : file.modules) {
      CHECK(module.component == "unet");
      CHECK(module.rank == 4);
      CHECK_CLOSE(module.alpha / static_cast<double>(module.rank), kFixtureScale, 1e-12);
    }
  }
  for (size_t f = 1; f < files.size(); ++f) {
    if (files[f].modules.size() != files[0].modules.size()) continue;
    for (size_t i = 0; i < files[0].modules.size(); ++i) {
      const auto& a = files[0].modules[i];
      const auto& b = files[f].modules[i];
      CHECK(a.module_path == b.module_path);
      CHECK(torch::equal(a.down, b.down) && torch::equal(a.up, b.up));
    }
  }
  CHECK(files[0].modules.front().module_path == "down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_k");
}

TEST_CASE(unknown_module_names_are_listed) {
  io::TensorMap tensors = io::load_safetensors(lora_dir() + "/tiny_lora_kohya.safetensors");
  tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_z.lora_down.weight"] = torch::zeros({4, 64});
  tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_z.lora_up.weight"] = torch::zeros({64, 4});
  tensors["something_else"] = torch::zeros({1});
  const std::string path = scratch_path("unknown_kohya.safetensors");
  io::save_safetensors(path, tensors);
  CHECK_THROWS_WITH(lora::load_lora_file(path, tiny_targets()),
                    "3 keys name no module of the model: lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_z.lora_down.weight, "
                    "lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_z.lora_up.weight, something_else");

  io::TensorMap peft = io::load_safetensors(lora_dir() + "/tiny_lora_peft.safetensors");
  peft["unet.down_blocks.7.attentions.0.proj_in.lora_A.weight"] = torch::zeros({4, 64});
  const std::string peft_path = scratch_path("unknown_peft.safetensors");
  io::save_safetensors(peft_path, peft);
  CHECK_THROWS_WITH(lora::load_lora_file(peft_path, tiny_targets()), "unet.down_blocks.7.attentions.0.proj_in.lora_A.weight");
  CHECK_THROWS_WITH(lora::load_lora_file(fixtures_dir() + "/tiny-sdxl/unet/diffusion_pytorch_model.safetensors", tiny_targets()),
                    "not a LoRA file");
}

TEST_CASE(missing_half_of_a_pair_is_an_error) {
  io::TensorMap tensors = io::load_safetensors(lora_dir() + "/tiny_lora_kohya.safetensors");
  tensors.erase("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_k.lora_up.weight");
  const std::string path = scratch_path("half_pair.safetensors");
  io::save_safetensors(path, tensors);
  CHECK_THROWS_WITH(lora::load_lora_file(path, tiny_targets()),
                    "mid_block.attentions.0.transformer_blocks.0.attn1.to_k lacks its up matrix");
}

// A check (check_lora) collects every problem, one line naming its key, and keeps the rest.
TEST_CASE(problems_are_collected_when_asked) {
  io::TensorMap tensors = io::load_safetensors(lora_dir() + "/tiny_lora_kohya.safetensors");
  tensors.erase("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_k.lora_up.weight");
  tensors["lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q.lora_up.weight"] = torch::zeros({64, 3});
  tensors["lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_z.lora_down.weight"] = torch::zeros({4, 64});
  const std::string path = scratch_path("problems.safetensors");
  io::save_safetensors(path, tensors);
  std::vector<std::string> problems;
  const lora::LoraFile file = lora::load_lora_file(path, tiny_targets(), &problems);
  CHECK(file.modules.size() == static_cast<size_t>(kFixtureModules - 2));
  CHECK(problems.size() == 3);
  const auto mentions = [&](const std::string& text) {
    return std::any_of(problems.begin(), problems.end(), [&](const std::string& p) { return p.find(text) != std::string::npos; });
  };
  CHECK(mentions("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_z.lora_down.weight: names no module"));
  CHECK(mentions("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_k.lora_down.weight: unet module "
                 "mid_block.attentions.0.transformer_blocks.0.attn1.to_k lacks its up matrix"));
  CHECK(mentions("lora_unet_middle_block_1_transformer_blocks_0_attn1_to_q.lora_up.weight [64, 3]"));

  // Not safetensors at all: a bad argument, whoever asks.
  const std::string text = scratch_path("not_a_lora.safetensors");
  std::ofstream(text) << "hello";
  std::vector<std::string> none;
  CHECK_THROWS_WITH(lora::load_lora_file(text, tiny_targets(), &none), "Not a readable safetensors LoRA file");
  bool invalid_argument = false;
  try {
    lora::load_lora_file(text, tiny_targets());
  } catch (const std::invalid_argument&) {
    invalid_argument = true;
  }
  CHECK(invalid_argument);
}

// peft alpha: per-module alpha_pattern beats lora_alpha; without metadata alpha = rank.
TEST_CASE(peft_alpha_sources) {
  const io::TensorMap tensors = io::load_safetensors(lora_dir() + "/tiny_lora_peft.safetensors");
  const std::string bare = scratch_path("peft_no_metadata.safetensors");
  io::save_safetensors(bare, tensors);
  for (const auto& module : lora::load_lora_file(bare, tiny_targets()).modules) CHECK(module.alpha == 4.0);

  nlohmann::json config = {{"unet.lora_alpha", 2.0}, {"unet.r", 4},
                           {"unet.alpha_pattern", {{"attn2.to_q", 8.0}}}};
  const std::string patterned = scratch_path("peft_alpha_pattern.safetensors");
  io::save_safetensors(patterned, tensors, {{"lora_adapter_metadata", config.dump()}});
  int patterned_modules = 0;
  for (const auto& module : lora::load_lora_file(patterned, tiny_targets()).modules) {
    const bool is_pattern = module.module_path.size() > 10 &&
                            module.module_path.compare(module.module_path.size() - 10, 10, "attn2.to_q") == 0;
    CHECK(module.alpha == (is_pattern ? 8.0 : 2.0));
    patterned_modules += is_pattern ? 1 : 0;
  }
  CHECK(patterned_modules == 28);
}

// Text-encoder LoRAs: kohya lora_te1_/lora_te2_ and peft text_encoder./text_encoder_2.,
// with or without transformers' "text_model." prefix.
TEST_CASE(text_encoder_names_resolve) {
  const lora::LoraTargets& targets = tiny_targets();
  const auto has = [](const std::vector<std::string>& paths, const std::string& path) {
    return std::find(paths.begin(), paths.end(), path) != paths.end();
  };
  const std::string te1_q = has(targets.text_encoder, "text_model.encoder.layers.0.self_attn.q_proj")
                                ? "text_model.encoder.layers.0.self_attn.q_proj"
                                : "encoder.layers.0.self_attn.q_proj";
  CHECK(has(targets.text_encoder, te1_q));
  const int64_t te1_hidden = 24, te2_hidden = 40, rank = 2;
  io::TensorMap kohya = {
      {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_down.weight", torch::ones({rank, te1_hidden})},
      {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.lora_up.weight", torch::ones({te1_hidden, rank})},
      {"lora_te1_text_model_encoder_layers_0_self_attn_q_proj.alpha", torch::tensor(1.0)},
      {"lora_te2_text_model_encoder_layers_2_mlp_fc1.lora_down.weight", torch::ones({rank, te2_hidden})},
      {"lora_te2_text_model_encoder_layers_2_mlp_fc1.lora_up.weight", torch::ones({2 * te2_hidden, rank})},
  };
  const std::string kohya_path = scratch_path("te_kohya.safetensors");
  io::save_safetensors(kohya_path, kohya);
  const lora::LoraFile kohya_file = lora::load_lora_file(kohya_path, targets);
  CHECK(kohya_file.modules.size() == 2);
  if (kohya_file.modules.size() == 2) {
    CHECK(kohya_file.modules[0].component == "text_encoder" && kohya_file.modules[0].module_path == te1_q);
    CHECK(kohya_file.modules[0].alpha == 1.0);
    CHECK(kohya_file.modules[1].component == "text_encoder_2");
    CHECK(kohya_file.modules[1].alpha == 2.0); // no alpha: alpha = rank
  }
  io::TensorMap peft = {
      {"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_A.weight", torch::ones({rank, te1_hidden})},
      {"text_encoder.text_model.encoder.layers.0.self_attn.q_proj.lora_B.weight", torch::ones({te1_hidden, rank})},
      {"text_encoder_2.encoder.layers.1.self_attn.out_proj.lora_A.weight", torch::ones({rank, te2_hidden})},
      {"text_encoder_2.encoder.layers.1.self_attn.out_proj.lora_B.weight", torch::ones({te2_hidden, rank})},
  };
  const std::string peft_path = scratch_path("te_peft.safetensors");
  io::save_safetensors(peft_path, peft);
  const lora::LoraFile peft_file = lora::load_lora_file(peft_path, targets);
  CHECK(peft_file.modules.size() == 2);
  if (peft_file.modules.size() == 2) {
    CHECK(peft_file.modules[0].module_path == te1_q);
    CHECK(has(targets.text_encoder_2, peft_file.modules[1].module_path));
  }
}

// What the trainer writes reads back the same in every layout, UNet and text encoders.
TEST_CASE(saved_files_load_back_in_every_layout) {
  lora::LoraFile source = lora::load_lora_file(lora_dir() + "/tiny_lora_peft.safetensors", tiny_targets());
  const std::string te1_path = tiny_targets().text_encoder.back();
  const std::string te2_path = tiny_targets().text_encoder_2.front();
  source.modules.push_back({"text_encoder", te1_path, torch::randn({2, 24}), torch::randn({24, 2}), 1.0, 2, "", ""});
  source.modules.push_back({"text_encoder_2", te2_path, torch::randn({3, 40}), torch::randn({40, 3}), 6.0, 3, "", ""});
  const io::UNetLayout layout = io::UNetLayout::from_diffusers_keys(tiny_targets().unet);
  for (const auto layout_kind : {lora::LoraLayout::KohyaSgm, lora::LoraLayout::KohyaDiffusers, lora::LoraLayout::Peft}) {
    const std::string path = scratch_path(std::string("saved_") + lora::to_string(layout_kind) + ".safetensors");
    lora::save_lora_file(path, source.modules, layout_kind, layout, {{"trained_by", "test"}});
    CHECK(io::SafetensorsFile::open(path).metadata().at("trained_by") == "test");
    const lora::LoraFile loaded = lora::load_lora_file(path, tiny_targets());
    CHECK(loaded.layout == layout_kind);
    CHECK(loaded.modules.size() == source.modules.size());
    std::map<std::string, const lora::LoraModule*> by_path;
    for (const auto& module : loaded.modules) by_path[module.component + ":" + module.module_path] = &module;
    for (const auto& module : source.modules) {
      const auto found = by_path.find(module.component + ":" + module.module_path);
      CHECK(found != by_path.end());
      if (found == by_path.end()) continue;
      CHECK(torch::equal(found->second->down, module.down) && torch::equal(found->second->up, module.up));
      CHECK(found->second->alpha == module.alpha && found->second->rank == module.rank);
    }
  }
  // kohya SGM names as ComfyUI expects them.
  const auto saved = io::SafetensorsFile::open(scratch_path("saved_kohya-sgm.safetensors"));
  CHECK(saved.contains("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_out_0.lora_down.weight"));
  CHECK(saved.contains("lora_te1_" + std::string(te1_path.rfind("text_model.", 0) == 0 ? "" : "text_model_") +
                       [&] { std::string flat = te1_path; std::replace(flat.begin(), flat.end(), '.', '_'); return flat; }() +
                       ".alpha"));
}

// ----------------------------------------------------------------------------
// Applying to the tiny UNet

TEST_CASE(applied_lora_matches_diffusers_merged_output_and_clears) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  std::vector<torch::Tensor> weights_before;
  for (const auto& parameter : unet->parameters()) weights_before.push_back(parameter.detach().clone());
  const torch::Tensor base = run_golden_unet(unet);
  CHECK_CLOSE(max_abs_diff(base, golden().at("unet.out.sample")), 0.0, kUNetTolerance);

  const torch::Tensor& expected = golden().at("lora.unet.out.sample_merged");
  for (const char* name : kFixtureFiles) {
    const lora::LoraFile file = lora::load_lora_file(lora_dir() + "/" + name, tiny_targets());
    lora::apply_lora(unet.get(), nullptr, nullptr, file, 1.0);
    const double diff = max_abs_diff(run_golden_unet(unet), expected);
    std::cerr << "    " << name << ": max|diff| vs lora.unet.out.sample_merged " << diff << "\n";
    CHECK_CLOSE(diff, 0.0, kUNetTolerance);

    lora::clear_loras(unet.get(), nullptr, nullptr);
    CHECK(torch::equal(run_golden_unet(unet), base));
  }
  const auto parameters = unet->parameters();
  CHECK(parameters.size() == weights_before.size());
  for (size_t i = 0; i < parameters.size() && i < weights_before.size(); ++i)
    CHECK(torch::equal(parameters[i], weights_before[i]));
}

// Two applications at half scale each equal one at full scale.
TEST_CASE(lora_scale_is_user_scale_times_alpha_over_rank) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  const lora::LoraFile file = lora::load_lora_file(lora_dir() + "/tiny_lora_peft.safetensors", tiny_targets());
  lora::apply_lora(unet.get(), nullptr, nullptr, file, 0.5);
  lora::apply_lora(unet.get(), nullptr, nullptr, file, 0.5);
  int slots = 0;
  for (const auto& item : unet->named_modules("", false))
    if (auto* linear = item.value()->as<models::LinearImpl>()) {
      for (const auto& slot : linear->loras) CHECK_CLOSE(slot.scale, 0.25, 1e-12);
      slots += static_cast<int>(linear->loras.size());
    }
  CHECK(slots == 2 * kFixtureModules);
  CHECK_CLOSE(max_abs_diff(run_golden_unet(unet), golden().at("lora.unet.out.sample_merged")), 0.0, kUNetTolerance);
}

TEST_CASE(a_lora_that_does_not_fit_changes_nothing) {
  models::UNet2DConditionModel unet(models::UNetConfig::from_file(tiny_dir() + "/unet/config.json"), meta());
  lora::LoraFile file = lora::load_lora_file(lora_dir() + "/tiny_lora_peft.safetensors", tiny_targets());
  file.modules.back().down = torch::zeros({4, 63});
  CHECK_THROWS_WITH(lora::apply_lora(unet.get(), nullptr, nullptr, file, 1.0), "do not fit Linear(64 -> 64)");
  // A check names the file's keys and both shapes.
  const std::vector<std::string> problems = lora::fit_problems(unet.get(), nullptr, nullptr, file);
  CHECK(problems.size() == 1);
  CHECK(problems.front().find(file.modules.back().down_key + " [4, 63] / " + file.modules.back().up_key + " [64, 4]") == 0);
  file.modules.front().module_path = "down_blocks.9.nothing";
  CHECK_THROWS_WITH(lora::apply_lora(unet.get(), nullptr, nullptr, file, 1.0), "unet has no Linear down_blocks.9.nothing");
  for (const auto& item : unet->named_modules("", false))
    if (auto* linear = item.value()->as<models::LinearImpl>()) CHECK(linear->loras.empty());
}

SDXL_TEST_MAIN()
