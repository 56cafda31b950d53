// The trainable LoRA network on the tiny SDXL: which Linears it adapts (the
// golden LoRA's 224 UNet modules by default), peft's init (A uniform within
// 1/sqrt(in) from the seed, B zero, so outputs do not move), checkpoint state,
// and that what save_trained_lora writes loads back through lora::load_lora_file
// + apply_lora to the same outputs as the in-memory network, with kohya's key
// names. detach() must restore the models bit for bit.
#include "check.h"
#include "test_support.h" // tiny_dir, golden, load_tiny_unet, load_text_encoder, scratch_path

#include "io/key_conversion.h" // io::UNetLayout
#include "io/safetensors.h"    // load_safetensors, SafetensorsFile
#include "lora/apply.h"        // apply_lora, lora_targets
#include "lora/lora_file.h"    // load_lora_file
#include "models/clip.h"       // ClipTextModel
#include "models/configs.h"    // UNetConfig, ClipTextConfig
#include "models/layers.h"     // LinearImpl, LoraSlot
#include "models/state_dict.h" // load_state_dict
#include "models/unet.h"       // UNet2DConditionModel
#include "train/lora_metadata.h" // lora_metadata
#include "train/lora_network.h"  // LoraNetwork, save_trained_lora

#include <ATen/CPUGeneratorImpl.h> // at::detail::createCPUGenerator

#include <cmath>      // std::sqrt
#include <map>
#include <set>
#include <string>
#include <vector>

using namespace sdxl;
using namespace sdxl::test; // test_support.h
using train::LoraNetwork;
using train::LoraNetworkOptions;

namespace {

constexpr int64_t kGoldenUNetModules = 224;   // tiny_lora_kohya.safetensors
constexpr int64_t kTinyTextEncoderLayers = 3; // both tiny text encoders
constexpr double kRoundTripTolerance = 1e-6;
constexpr uint64_t kSeed = 1234;

std::string golden_lora_dir() { return fixtures_dir() + "/tiny-sdxl-golden/lora"; }

torch::Tensor text_ids() { return torch::tensor({{0, 320, 500, 700, 1001, 1, 1}}, torch::kLong); } // [1, 7], tiny vocab 1002

torch::Tensor run_text_encoder(models::ClipTextModel& model) {
  torch::NoGradGuard no_grad;
  return model->forward(text_ids()).last_hidden_state; // [1, 7, hidden]
}

at::Generator seeded(uint64_t seed) { return at::detail::createCPUGenerator(seed); }

// Gives every B (up) matrix random values, as training would, in place.
void randomize_up(const std::vector<torch::Tensor>& parameters, uint64_t seed) {
  at::Generator generator = seeded(seed);
  torch::NoGradGuard no_grad;
  for (size_t i = 1; i < parameters.size(); i += 2) // (down, up) pairs
    parameters[i].copy_(torch::randn(parameters[i].sizes(), generator) * 0.05);
}

int64_t count_slots(torch::nn::Module& model) {
  int64_t slots = 0;
  for (const auto& item : model.named_modules("", false))
    if (auto* linear = item.value()->as<models::LinearImpl>()) slots += static_cast<int64_t>(linear->loras.size());
  return slots;
}

int64_t count_linears_ending_with(const std::vector<std::string>& paths, const std::string& suffix) {
  int64_t count = 0;
  for (const auto& path : paths)
    if (path.size() > suffix.size() && path.compare(path.size() - suffix.size(), suffix.size(), suffix) == 0 &&
        path[path.size() - suffix.size() - 1] == '.')
      ++count;
  return count;
}

std::set<std::string> keys_of(const std::string& path) {
  const auto keys = io::SafetensorsFile::open(path).keys();
  return {keys.begin(), keys.end()};
}

} // namespace

// ----------------------------------------------------------------------------
// Attaching

TEST_CASE(default_targets_adapt_the_golden_lora_modules) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  const torch::Tensor base = run_golden_unet(unet);
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  LoraNetworkOptions options;
  options.rank = 4;
  options.alpha = 2;
  options.dropout = 0.25;
  network.attach(*unet, nullptr, nullptr, options, generator);
  CHECK(network.module_count() == kGoldenUNetModules);
  CHECK(count_slots(*unet) == kGoldenUNetModules);
  CHECK(network.text_encoder_parameters().empty());
  const auto parameters = network.unet_parameters();
  CHECK(static_cast<int64_t>(parameters.size()) == 2 * kGoldenUNetModules);

  int64_t expected_count = 0;
  for (const auto& item : unet->named_modules("", false))
    if (auto* linear = item.value()->as<models::LinearImpl>())
      for (const auto& slot : linear->loras) {
        CHECK(slot.down.scalar_type() == torch::kFloat32 && slot.up.scalar_type() == torch::kFloat32);
        CHECK(slot.down.requires_grad() && slot.up.requires_grad());
        CHECK(slot.down.sizes() == torch::IntArrayRef({4, linear->in_features}));
        CHECK(slot.up.sizes() == torch::IntArrayRef({linear->out_features, 4}));
        CHECK(slot.scale == 0.5);
        CHECK(slot.dropout == 0.25);
        // peft: A ~ U(-1/sqrt(in), 1/sqrt(in)), B = 0.
        const double bound = 1.0 / std::sqrt(static_cast<double>(linear->in_features));
        CHECK(slot.down.abs().max().item<double>() <= bound * (1 + 1e-6));
        CHECK(slot.down.abs().max().item<double>() > 0.5 * bound);
        CHECK(torch::count_nonzero(slot.up).item<int64_t>() == 0);
        expected_count += 4 * (linear->in_features + linear->out_features);
      }
  CHECK(network.trainable_parameter_count() == expected_count);
  // The uniform's spread over all A values: std = bound / sqrt(3) per module.
  double sum_sq_ratio = 0, n = 0;
  for (size_t i = 0; i < parameters.size(); i += 2) {
    const double bound = 1.0 / std::sqrt(static_cast<double>(parameters[i].size(1)));
    sum_sq_ratio += (parameters[i] / bound).pow(2).sum().item<double>();
    n += static_cast<double>(parameters[i].numel());
  }
  CHECK_CLOSE(sum_sq_ratio / n, 1.0 / 3.0, 0.01);

  CHECK(torch::equal(run_golden_unet(unet), base)); // B = 0: nothing moves
}

TEST_CASE(target_lists_and_text_encoders_are_counted) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  models::ClipTextModel te1 = load_text_encoder("text_encoder");
  models::ClipTextModel te2 = load_text_encoder("text_encoder_2");
  const torch::Tensor te1_base = run_text_encoder(te1);
  const lora::LoraTargets linears = lora::lora_targets(unet.get(), te1.get(), te2.get());

  LoraNetworkOptions options;
  options.unet_targets = {"to_q", "to_k", "to_v", "to_out.0", "ff.net.0.proj", "ff.net.2", "proj_in", "proj_out"};
  options.text_encoders = true;
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  network.attach(*unet, te1.get(), te2.get(), options, generator);
  int64_t unet_expected = 0;
  for (const auto& target : options.unet_targets) {
    const int64_t count = count_linears_ending_with(linears.unet, target);
    CHECK(count > 0);
    unet_expected += count;
  }
  CHECK(count_linears_ending_with(linears.unet, "to_q") == kGoldenUNetModules / 4);
  CHECK(static_cast<int64_t>(network.unet_parameters().size()) == 2 * unet_expected);
  CHECK(count_slots(*unet) == unet_expected);
  constexpr int64_t kPerEncoder = 4 * kTinyTextEncoderLayers; // q, k, v, out per layer
  CHECK(count_slots(*te1) == kPerEncoder && count_slots(*te2) == kPerEncoder);
  CHECK(static_cast<int64_t>(network.text_encoder_parameters().size()) == 2 * 2 * kPerEncoder);
  CHECK(network.module_count() == unet_expected + 2 * kPerEncoder);
  CHECK(torch::equal(run_text_encoder(te1), te1_base));
}

TEST_CASE(same_seed_same_network) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  LoraNetworkOptions options;
  at::Generator first_generator = seeded(kSeed);
  LoraNetwork first;
  first.attach(*unet, nullptr, nullptr, options, first_generator);
  const auto first_state = first.state();
  first.detach();

  at::Generator second_generator = seeded(kSeed);
  LoraNetwork second;
  second.attach(*unet, nullptr, nullptr, options, second_generator);
  const auto second_state = second.state();
  CHECK(first_state.size() == second_state.size());
  for (const auto& [key, tensor] : first_state) CHECK(second_state.count(key) && torch::equal(second_state.at(key), tensor));
  second.detach();

  // A is drawn module by module in named_modules() order from the generator.
  at::Generator replay = seeded(kSeed);
  const auto first_a = first.unet_parameters().front();
  const double bound = 1.0 / std::sqrt(static_cast<double>(first_a.size(1)));
  CHECK(torch::allclose(first_a, torch::empty(first_a.sizes()).uniform_(-bound, bound, replay), 0, 1e-7));

  at::Generator other_generator = seeded(kSeed + 1);
  LoraNetwork other;
  other.attach(*unet, nullptr, nullptr, options, other_generator);
  CHECK(!torch::equal(other.unet_parameters().front(), first_a));
}

TEST_CASE(bad_options_are_refused_and_change_nothing) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  models::ClipTextModel te1 = load_text_encoder("text_encoder");
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  LoraNetworkOptions options;
  options.unet_targets = {"to_q", "to_z"};
  CHECK_THROWS_WITH(network.attach(*unet, nullptr, nullptr, options, generator),
                    "LoRA target \"to_z\" matches no Linear module of the unet");
  options.unet_targets = {"to_out"}; // a ModuleList, not a Linear
  CHECK_THROWS_WITH(network.attach(*unet, nullptr, nullptr, options, generator), "\"to_out\"");
  options = LoraNetworkOptions{};
  options.rank = 0;
  CHECK_THROWS_WITH(network.attach(*unet, nullptr, nullptr, options, generator), "rank must be a positive integer");
  options = LoraNetworkOptions{};
  options.alpha = 0;
  CHECK_THROWS_WITH(network.attach(*unet, nullptr, nullptr, options, generator), "alpha must be positive");
  options = LoraNetworkOptions{};
  options.dropout = 1;
  CHECK_THROWS_WITH(network.attach(*unet, nullptr, nullptr, options, generator), "dropout must be in [0, 1)");
  options = LoraNetworkOptions{};
  options.text_encoders = true;
  CHECK_THROWS_WITH(network.attach(*unet, nullptr, nullptr, options, generator), "needs the model's text encoder");
  options.text_encoder_targets = {"q_proj", "fc3"};
  CHECK_THROWS_WITH(network.attach(*unet, te1.get(), te1.get(), options, generator),
                    "\"fc3\" matches no Linear module of the text_encoder");
  CHECK(count_slots(*unet) == 0 && count_slots(*te1) == 0);
  CHECK(!network.attached() && network.module_count() == 0);

  network.attach(*unet, nullptr, nullptr, LoraNetworkOptions{}, generator);
  bool threw_logic_error = false;
  try {
    network.attach(*unet, nullptr, nullptr, LoraNetworkOptions{}, generator);
  } catch (const std::logic_error&) {
    threw_logic_error = true;
  }
  CHECK(threw_logic_error);
}

// ----------------------------------------------------------------------------
// State

TEST_CASE(state_round_trips_and_is_exact) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  network.attach(*unet, nullptr, nullptr, LoraNetworkOptions{}, generator);
  randomize_up(network.unet_parameters(), 7);
  const torch::Tensor trained = run_golden_unet(unet);
  const auto state = network.state();
  CHECK(static_cast<int64_t>(state.size()) == 2 * kGoldenUNetModules);
  CHECK(state.count("unet:down_blocks.1.attentions.0.transformer_blocks.0.attn1.to_q.down"));
  CHECK(state.count("unet:mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.up"));

  // The state is a copy; changing the network does not change it.
  randomize_up(network.unet_parameters(), 8);
  CHECK(!torch::equal(run_golden_unet(unet), trained));
  network.load_state(state);
  CHECK(torch::equal(run_golden_unet(unet), trained)); // the slots see the loaded values
  for (const auto& [key, tensor] : network.state()) CHECK(torch::equal(tensor, state.at(key)));

  auto missing = state;
  missing.erase("unet:mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.up");
  CHECK_THROWS_WITH(network.load_state(missing), "lacks unet:mid_block.attentions.0.transformer_blocks.0.attn2.to_out.0.up");
  auto misshaped = state;
  misshaped["unet:mid_block.attentions.0.transformer_blocks.0.attn2.to_k.down"] = torch::zeros({3, 3});
  CHECK_THROWS_WITH(network.load_state(misshaped), "attn2.to_k.down has shape [3, 3], expected [16, ");
  auto extra = state;
  extra["unet:nothing.down"] = torch::zeros({1});
  CHECK_THROWS_WITH(network.load_state(extra), "unexpected key unet:nothing.down");
  CHECK(torch::equal(run_golden_unet(unet), trained)); // failed loads changed nothing
}

// ----------------------------------------------------------------------------
// Saving

// Saves in `layout`, detaches, applies the file and compares with the in-memory output.
void check_file_round_trip(lora::LoraLayout layout, const std::string& name) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  const torch::Tensor base = run_golden_unet(unet);
  const io::UNetLayout unet_layout = io::UNetLayout::from_config(models::UNetConfig::from_file(tiny_dir() + "/unet/config.json"));
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  LoraNetworkOptions options;
  options.rank = 4;
  options.alpha = 2;
  network.attach(*unet, nullptr, nullptr, options, generator);
  randomize_up(network.unet_parameters(), 11);
  const torch::Tensor in_memory = run_golden_unet(unet);
  CHECK(max_abs_diff(in_memory, base) > 1e-3); // the adapter really changes the output

  const std::string path = scratch_path(name);
  train::save_trained_lora(path, network, layout, unet_layout, torch::kFloat32, {{"trained_by", "test"}});
  network.detach();
  CHECK(torch::equal(run_golden_unet(unet), base));

  const lora::LoraFile file = lora::load_lora_file(path, lora::lora_targets(unet.get(), nullptr, nullptr));
  CHECK(file.layout == layout);
  CHECK(static_cast<int64_t>(file.modules.size()) == kGoldenUNetModules);
  for (const auto& module : file.modules) CHECK(module.rank == 4 && module.alpha == 2.0);
  lora::apply_lora(unet.get(), nullptr, nullptr, file, 1.0);
  const double diff = max_abs_diff(run_golden_unet(unet), in_memory);
  std::cerr << "    " << lora::to_string(layout) << ": max|diff| file vs in-memory " << diff << "\n";
  CHECK_CLOSE(diff, 0.0, kRoundTripTolerance);
  CHECK(io::SafetensorsFile::open(path).metadata().at("trained_by") == "test");
}

TEST_CASE(kohya_file_matches_in_memory_network_and_golden_key_names) {
  check_file_round_trip(lora::LoraLayout::KohyaSgm, "trained_kohya.safetensors");
  const std::set<std::string> saved = keys_of(scratch_path("trained_kohya.safetensors"));
  const std::set<std::string> golden_keys = keys_of(golden_lora_dir() + "/tiny_lora_kohya.safetensors");
  CHECK(saved.size() == 3 * kGoldenUNetModules); // lora_down, lora_up, alpha
  CHECK(saved == golden_keys);
  for (const auto& key : golden_keys)
    if (!saved.count(key)) std::cerr << "    missing golden key " << key << "\n";
}

TEST_CASE(peft_file_matches_in_memory_network) {
  check_file_round_trip(lora::LoraLayout::Peft, "trained_peft.safetensors");
  const std::set<std::string> saved = keys_of(scratch_path("trained_peft.safetensors"));
  const std::set<std::string> golden_keys = keys_of(golden_lora_dir() + "/tiny_lora_peft.safetensors");
  CHECK(saved == golden_keys);
}

TEST_CASE(text_encoder_modules_save_as_lora_te1_and_te2) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  models::ClipTextModel te1 = load_text_encoder("text_encoder");
  models::ClipTextModel te2 = load_text_encoder("text_encoder_2");
  const io::UNetLayout unet_layout = io::UNetLayout::from_config(models::UNetConfig::from_file(tiny_dir() + "/unet/config.json"));
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  LoraNetworkOptions options;
  options.text_encoders = true;
  options.rank = 2;
  options.alpha = 1;
  network.attach(*unet, te1.get(), te2.get(), options, generator);
  randomize_up(network.text_encoder_parameters(), 21);
  randomize_up(network.unet_parameters(), 22);
  const torch::Tensor te1_trained = run_text_encoder(te1), te2_trained = run_text_encoder(te2);
  const torch::Tensor unet_trained = run_golden_unet(unet);

  const std::string path = scratch_path("trained_te.safetensors");
  train::save_trained_lora(path, network, lora::LoraLayout::KohyaSgm, unet_layout, torch::kFloat32, {});
  int te1_downs = 0, te2_downs = 0;
  for (const auto& key : keys_of(path)) {
    const bool down = key.size() > 17 && key.compare(key.size() - 17, 17, ".lora_down.weight") == 0;
    if (key.rfind("lora_te1_text_model_encoder_layers_", 0) == 0) te1_downs += down;
    if (key.rfind("lora_te2_text_model_encoder_layers_", 0) == 0) te2_downs += down;
  }
  CHECK(te1_downs == 4 * kTinyTextEncoderLayers && te2_downs == 4 * kTinyTextEncoderLayers);
  CHECK(keys_of(path).count("lora_te2_text_model_encoder_layers_2_self_attn_out_proj.alpha"));

  network.detach();
  const lora::LoraFile file = lora::load_lora_file(path, lora::lora_targets(unet.get(), te1.get(), te2.get()));
  lora::apply_lora(unet.get(), te1.get(), te2.get(), file, 1.0);
  CHECK_CLOSE(max_abs_diff(run_text_encoder(te1), te1_trained), 0.0, kRoundTripTolerance);
  CHECK_CLOSE(max_abs_diff(run_text_encoder(te2), te2_trained), 0.0, kRoundTripTolerance);
  CHECK_CLOSE(max_abs_diff(run_golden_unet(unet), unet_trained), 0.0, kRoundTripTolerance);
}

TEST_CASE(saved_header_carries_the_training_metadata_and_dtype) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  const io::UNetLayout unet_layout = io::UNetLayout::from_config(models::UNetConfig::from_file(tiny_dir() + "/unet/config.json"));
  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  network.attach(*unet, nullptr, nullptr, LoraNetworkOptions{}, generator);
  TrainOptions options; // rank 16, alpha 16: the network's own defaults
  options.trigger_phrase = "sks";
  const auto metadata = train::lora_metadata(options, train::dataset_hash({}), 10, train::TrainingTimes{1.0, 2.0});
  const std::string path = scratch_path("trained_metadata.safetensors");
  train::save_trained_lora(path, network, lora::LoraLayout::KohyaSgm, unet_layout, torch::kFloat16, metadata);
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  for (const char* key : {"ss_network_module", "ss_network_dim", "ss_network_alpha", "ss_base_model_version",
                          "ss_steps", "ss_training_finished_at", "modelspec.sai_model_spec", "modelspec.architecture",
                          "modelspec.trigger_phrase", train::kDatasetHashKey}) {
    if (!file.metadata().count(key)) std::cerr << "    missing header key " << key << "\n";
    CHECK(file.metadata().count(key));
  }
  CHECK(file.metadata().at("ss_network_alpha") == "16.0"); // kohya's str(float), over save_lora_file's "16"
  CHECK(file.info("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.lora_down.weight").dtype == "F16");
  // sd-scripts saves the alpha scalars in the weights' dtype too.
  CHECK(file.info("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_q.alpha").dtype == "F16");
  // A CPU float32 network hands out copies, never its own storage.
  const auto modules = network.modules(torch::kFloat32);
  CHECK(!modules.front().down.is_same(network.unet_parameters().front()));
  CHECK(modules.front().down.data_ptr() != network.unet_parameters().front().data_ptr());
}

// ----------------------------------------------------------------------------
// Detaching

TEST_CASE(detach_restores_outputs_bitwise_and_keeps_other_slots) {
  models::UNet2DConditionModel unet = load_tiny_unet();
  const torch::Tensor base = run_golden_unet(unet);
  // An inference LoRA applied first must survive the training network's detach.
  const lora::LoraFile fixture = lora::load_lora_file(golden_lora_dir() + "/tiny_lora_peft.safetensors",
                                                      lora::lora_targets(unet.get(), nullptr, nullptr));
  lora::apply_lora(unet.get(), nullptr, nullptr, fixture, 1.0);
  const torch::Tensor with_fixture = run_golden_unet(unet);
  CHECK(!torch::equal(with_fixture, base));

  at::Generator generator = seeded(kSeed);
  LoraNetwork network;
  network.attach(*unet, nullptr, nullptr, LoraNetworkOptions{}, generator);
  CHECK(count_slots(*unet) == 2 * kGoldenUNetModules);
  randomize_up(network.unet_parameters(), 31);
  CHECK(!torch::equal(run_golden_unet(unet), with_fixture));
  network.detach();
  CHECK(!network.attached());
  CHECK(count_slots(*unet) == kGoldenUNetModules);
  CHECK(torch::equal(run_golden_unet(unet), with_fixture));
  // The tensors outlive the slots: the trained adapter can still be saved.
  CHECK(static_cast<int64_t>(network.modules(torch::kFloat32).size()) == kGoldenUNetModules);
  lora::clear_loras(unet.get(), nullptr, nullptr);
  CHECK(torch::equal(run_golden_unet(unet), base));
}

SDXL_TEST_MAIN()
