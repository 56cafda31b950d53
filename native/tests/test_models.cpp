// The SDXL model family against the golden tensors that diffusers / transformers
// computed from the tiny-sdxl fixture: UNet (batch 1 with every intermediate,
// batch 2), VAE encode/decode, both text encoders, unmerged LoRA slots, and
// the strict state-dict loader's error report.
#include "check.h"        // TEST_CASE, CHECK, CHECK_CLOSE, CHECK_THROWS_WITH
#include "test_support.h" // tiny_dir, golden_dir, golden, load_tiny_unet, load_text_encoder

#include "io/safetensors.h"   // io::load_safetensors, io::SafetensorsFile
#include "models/clip.h"      // ClipTextModel
#include "models/configs.h"   // UNetConfig, VaeConfig, ClipTextConfig, read_json_file
#include "models/state_dict.h" // load_state_dict, count_parameters
#include "models/unet.h"      // UNet2DConditionModel
#include "models/vae.h"       // AutoencoderKL

#include <torch/torch.h>

#include <iostream> // std::cerr diff report
#include <map>
#include <string>

using namespace sdxl;
using namespace sdxl::models;
using sdxl::test::golden;
using sdxl::test::golden_dir;
using sdxl::test::load_text_encoder;
using sdxl::test::load_tiny_unet;
using sdxl::test::tiny_dir;

namespace {

// Tolerances from the fixture's README (independent float32 implementations).
constexpr double kUNetVaeTolerance = 1e-4;
constexpr double kTextEncoderTolerance = 1e-5;

const torch::Tensor& golden_tensor(const std::string& name) {
  auto it = golden().find(name);
  if (it == golden().end()) throw std::runtime_error("golden tensor missing: " + name);
  return it->second;
}

double max_abs_diff(const torch::Tensor& a, const torch::Tensor& b) {
  if (a.sizes() != b.sizes()) {
    std::cerr << "    shape mismatch " << a.sizes() << " vs " << b.sizes() << "\n";
    return std::numeric_limits<double>::infinity();
  }
  return (a.to(torch::kDouble) - b.to(torch::kDouble)).abs().max().item<double>();
}

// Compares `value` with the golden tensor `name`, printing the measured diff.
void check_against_golden(const std::string& name, const torch::Tensor& value, double tolerance) {
  const double diff = max_abs_diff(value, golden_tensor(name));
  std::cerr << "    " << name << " max|diff| " << diff << "\n";
  CHECK_CLOSE(diff, 0.0, tolerance);
}

// A TraceFn that keeps every intermediate by name.
struct TraceCollector {
  std::map<std::string, torch::Tensor> values;
  TraceFn fn() {
    return [this](const std::string& name, const torch::Tensor& value) { values[name] = value.clone(); };
  }
};

// Every golden tensor under `prefix` that the trace also produced is compared; returns how many.
int check_traced(const TraceCollector& trace, const std::string& prefix, double tolerance) {
  int compared = 0;
  for (const auto& [name, value] : golden()) {
    if (name.compare(0, prefix.size(), prefix) != 0) continue;
    auto traced = trace.values.find(name);
    CHECK(traced != trace.values.end());
    if (traced == trace.values.end()) {
      std::cerr << "    not traced: " << name << "\n";
      continue;
    }
    check_against_golden(name, traced->second, tolerance);
    ++compared;
  }
  return compared;
}

AutoencoderKL load_vae() {
  AutoencoderKL vae(VaeConfig::from_file(tiny_dir() + "/vae/config.json"), torch::kFloat);
  load_state_dict(*vae, io::load_safetensors(tiny_dir() + "/vae/diffusion_pytorch_model.safetensors"), "vae");
  return vae;
}

} // namespace

// ----------------------------------------------------------------------------
// UNet

TEST_CASE(unet_loads_float16_file_into_float32_parameters) {
  auto unet = load_tiny_unet();
  const auto file = io::SafetensorsFile::open(tiny_dir() + "/unet/diffusion_pytorch_model.safetensors");
  CHECK(file.tensor("conv_in.weight").scalar_type() == torch::kHalf);
  CHECK(unet->conv_in->weight.scalar_type() == torch::kFloat);
  CHECK(torch::equal(unet->conv_in->weight, file.tensor("conv_in.weight").to(torch::kFloat)));
  CHECK(unet->named_parameters().size() == file.keys().size());
  CHECK(count_parameters(*unet) == 3968324); // golden.json storage.checks.unet.params
}

TEST_CASE(unet_matches_diffusers_block_by_block) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny_unet();
  TraceCollector trace;
  const TraceFn trace_fn = trace.fn();
  torch::Tensor out = unet->forward(golden_tensor("unet.in.sample"), golden_tensor("unet.in.timestep"),
                                    golden_tensor("unet.in.encoder_hidden_states"),
                                    golden_tensor("unet.in.text_embeds"), golden_tensor("unet.in.time_ids"),
                                    &trace_fn);
  CHECK(check_traced(trace, "unet.dbg.", kUNetVaeTolerance) == 14);
  check_against_golden("unet.out.sample", out, kUNetVaeTolerance);
}

TEST_CASE(unet_matches_diffusers_for_a_batch_of_two) {
  torch::NoGradGuard no_grad;
  auto unet = load_tiny_unet();
  torch::Tensor out = unet->forward(golden_tensor("unet_b2.in.sample"), golden_tensor("unet_b2.in.timestep"),
                                    golden_tensor("unet_b2.in.encoder_hidden_states"),
                                    golden_tensor("unet_b2.in.text_embeds"), golden_tensor("unet_b2.in.time_ids"));
  check_against_golden("unet_b2.out.sample", out, kUNetVaeTolerance);
}

TEST_CASE(unet_with_unmerged_peft_lora_matches_diffusers) {
  // The peft file names modules by their diffusers path, which is our module path.
  torch::NoGradGuard no_grad;
  auto unet = load_tiny_unet();
  const auto lora_info = read_json_file(golden_dir() + "/golden.json")["lora"];
  const double scale = lora_info["alpha"].get<double>() / lora_info["rank"].get<double>();
  const io::TensorMap lora = io::load_safetensors(golden_dir() + "/lora/tiny_lora_peft.safetensors");
  const std::string prefix = "unet.", a_suffix = ".lora_A.weight", b_suffix = ".lora_B.weight";
  auto modules = unet->named_modules();
  int attached = 0;
  for (const auto& [key, down] : lora) {
    if (key.size() < a_suffix.size() || key.compare(key.size() - a_suffix.size(), a_suffix.size(), a_suffix) != 0)
      continue;
    const std::string path = key.substr(prefix.size(), key.size() - prefix.size() - a_suffix.size());
    auto* linear = modules[path]->as<LinearImpl>();
    CHECK(linear != nullptr);
    if (linear == nullptr) continue;
    linear->loras.push_back({down.to(torch::kFloat), lora.at(prefix + path + b_suffix).to(torch::kFloat), scale});
    ++attached;
  }
  CHECK(attached == lora_info["module_count"].get<int>());
  const torch::Tensor base_weight = unet->down_blocks[1]->attentions[0]->blocks[0]->attn1->to_q->weight.clone();
  torch::Tensor out = unet->forward(golden_tensor("unet.in.sample"), golden_tensor("unet.in.timestep"),
                                    golden_tensor("unet.in.encoder_hidden_states"),
                                    golden_tensor("unet.in.text_embeds"), golden_tensor("unet.in.time_ids"));
  check_against_golden("lora.unet.out.sample_merged", out, kUNetVaeTolerance);
  CHECK(torch::equal(base_weight, unet->down_blocks[1]->attentions[0]->blocks[0]->attn1->to_q->weight));
}

// ----------------------------------------------------------------------------
// VAE

TEST_CASE(vae_encode_matches_diffusers) {
  torch::NoGradGuard no_grad;
  auto vae = load_vae();
  TraceCollector trace;
  const TraceFn trace_fn = trace.fn();
  LatentDistribution posterior = vae->encode(golden_tensor("vae.in.image"), &trace_fn);
  check_against_golden("vae.enc.moments", posterior.moments, kUNetVaeTolerance);
  check_against_golden("vae.enc.mean", posterior.mean, kUNetVaeTolerance);
  check_against_golden("vae.enc.logvar", posterior.logvar, kUNetVaeTolerance);
  check_against_golden("vae.enc.std", posterior.std(), kUNetVaeTolerance);
  check_against_golden("vae.enc.sample", posterior.sample(golden_tensor("vae.enc.eps")), kUNetVaeTolerance);
  CHECK(check_traced(trace, "vae.dbg.encoder.", kUNetVaeTolerance) == 6);
  CHECK(check_traced(trace, "vae.dbg.quant_conv", kUNetVaeTolerance) == 1);
  CHECK_CLOSE(vae->config().scaling_factor, 0.13025, 1e-12);
}

TEST_CASE(vae_decode_matches_diffusers) {
  torch::NoGradGuard no_grad;
  auto vae = load_vae();
  TraceCollector trace;
  const TraceFn trace_fn = trace.fn();
  torch::Tensor image = vae->decode(golden_tensor("vae.dec.in"), &trace_fn);
  check_against_golden("vae.dec.out", image, kUNetVaeTolerance);
  CHECK(check_traced(trace, "vae.dbg.decoder.", kUNetVaeTolerance) == 4);
  CHECK(check_traced(trace, "vae.dbg.post_quant_conv", kUNetVaeTolerance) == 1);
}

// ----------------------------------------------------------------------------
// Text encoders

TEST_CASE(text_encoder_matches_transformers) {
  torch::NoGradGuard no_grad;
  auto te1 = load_text_encoder("text_encoder"); // file keys without "text_model."
  CHECK(!te1->text_projection);
  ClipTextOutput out = te1->forward(golden_tensor("te1.in.input_ids"));
  CHECK(out.hidden_states.size() == 4);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    check_against_golden("te1.hidden_states." + std::to_string(i), out.hidden_states[i], kTextEncoderTolerance);
  }
  check_against_golden("te1.out.last_hidden_state", out.last_hidden_state, kTextEncoderTolerance);
  check_against_golden("te1.out.pooler_output", out.pooled_output, kTextEncoderTolerance);
  CHECK(!out.text_embeds.defined());
}

TEST_CASE(text_encoder_2_matches_transformers) {
  torch::NoGradGuard no_grad;
  auto te2 = load_text_encoder("text_encoder_2"); // file keys with "text_model."
  ClipTextOutput out = te2->forward(golden_tensor("te2.in.input_ids"));
  CHECK(out.hidden_states.size() == 4);
  for (size_t i = 0; i < out.hidden_states.size(); ++i) {
    check_against_golden("te2.hidden_states." + std::to_string(i), out.hidden_states[i], kTextEncoderTolerance);
  }
  check_against_golden("te2.out.last_hidden_state", out.last_hidden_state, kTextEncoderTolerance);
  check_against_golden("te2.out.text_embeds", out.text_embeds, kTextEncoderTolerance);

  auto te1 = load_text_encoder("text_encoder");
  ClipTextOutput out1 = te1->forward(golden_tensor("te1.in.input_ids"));
  const size_t penultimate = out.hidden_states.size() - 2;
  check_against_golden("te.out.sdxl_prompt_embeds",
                       torch::cat({out1.hidden_states[penultimate], out.hidden_states[penultimate]}, -1),
                       kTextEncoderTolerance);
}

TEST_CASE(text_encoder_loads_prefixed_and_unprefixed_files_alike) {
  torch::NoGradGuard no_grad;
  io::TensorMap plain = io::load_safetensors(tiny_dir() + "/text_encoder/model.safetensors");
  io::TensorMap prefixed;
  for (const auto& [key, value] : plain) prefixed["text_model." + key] = value;
  prefixed["text_model.embeddings.position_ids"] = torch::arange(77).unsqueeze(0); // a buffer some files keep
  prefixed["logit_scale"] = torch::tensor(2.0);
  ClipTextModel model(ClipTextConfig::from_file(tiny_dir() + "/text_encoder/config.json"), torch::kFloat);
  load_state_dict(*model, prefixed, "text_encoder");
  ClipTextOutput out = model->forward(golden_tensor("te1.in.input_ids"));
  check_against_golden("te1.out.last_hidden_state", out.last_hidden_state, kTextEncoderTolerance);
}

TEST_CASE(pooled_position_follows_transformers_eos_rule) {
  ClipTextConfig config = ClipTextConfig::from_file(tiny_dir() + "/text_encoder/config.json");
  torch::Tensor ids = torch::tensor({1000, 5, 1001, 7, 1001}, torch::kLong).unsqueeze(0);
  CHECK(ClipTextModel(config, torch::TensorOptions().device(torch::kMeta))->pooled_positions(ids).item<int64_t>() == 2);
  config.eos_token_id = 7; // a real eos id: its first occurrence
  CHECK(ClipTextModel(config, torch::TensorOptions().device(torch::kMeta))->pooled_positions(ids).item<int64_t>() == 3);
}

// ----------------------------------------------------------------------------
// Loading errors

TEST_CASE(load_state_dict_reports_every_mismatch_at_once) {
  io::TensorMap tensors = io::load_safetensors(tiny_dir() + "/vae/diffusion_pytorch_model.safetensors");
  tensors.erase("decoder.conv_out.bias");
  tensors["decoder.extra.weight"] = torch::zeros({3});
  tensors["encoder.conv_in.weight"] = torch::zeros({32, 3, 3, 4});
  AutoencoderKL vae(VaeConfig::from_file(tiny_dir() + "/vae/config.json"), torch::kFloat);
  try {
    load_state_dict(*vae, tensors, "vae");
    CHECK(false);
  } catch (const std::runtime_error& e) {
    const std::string message = e.what();
    std::cerr << "    " << message << "\n";
    CHECK(message.find("vae:") == 0);
    CHECK(message.find("missing: decoder.conv_out.bias") != std::string::npos);
    CHECK(message.find("unexpected: decoder.extra.weight") != std::string::npos);
    CHECK(message.find("wrong shape: encoder.conv_in.weight (file [32, 3, 3, 4], model [32, 3, 3, 3])") !=
          std::string::npos);
  }
}

TEST_CASE(unsupported_config_options_are_rejected) {
  nlohmann::json config = read_json_file(tiny_dir() + "/unet/config.json");
  config["class_embed_type"] = "timestep";
  CHECK_THROWS_WITH(UNetConfig::from_json(config), "class_embed_type");
  config = read_json_file(tiny_dir() + "/unet/config.json");
  config["transformer_layers_per_block"] = nlohmann::json::array({1, 2});
  CHECK_THROWS_WITH(UNetConfig::from_json(config), "transformer_layers_per_block");
  config.erase("transformer_layers_per_block"); // absent: diffusers' default of one layer per level
  CHECK(UNetConfig::from_json(config).transformer_layers_per_block == std::vector<int64_t>({1, 1, 1}));
}

SDXL_TEST_MAIN()
