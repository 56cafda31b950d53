// Gradient checkpointing and LoRA dropout on the tiny-sdxl fixture: with
// checkpointing on, the loss and every LoRA gradient equal those of the plain
// backward (UNet and CLIP text encoder, with and without dropout, LoRA in the
// first transformer block behind frozen layers included); dropout masks are
// replayed in the recompute; inference is unchanged.
#include "check.h"        // TEST_CASE, CHECK, CHECK_CLOSE, CHECK_THROWS_WITH
#include "test_support.h" // golden, load_tiny_unet, load_text_encoder, run_golden_unet, max_abs_diff

#include "io/safetensors.h"        // io::load_safetensors
#include "models/clip.h"           // ClipTextModel
#include "models/configs.h"        // UNetConfig, ClipTextConfig
#include "models/grad_checkpoint.h" // checkpoint, set_gradient_checkpointing
#include "models/layers.h"         // Linear, LinearImpl, LoraSlot
#include "models/state_dict.h"     // load_state_dict
#include "models/unet.h"           // UNet2DConditionModel

#include <torch/torch.h>

#include <ATen/CPUGeneratorImpl.h> // at::make_generator<at::CPUGeneratorImpl>

#include <algorithm>  // std::max
#include <functional> // std::function
#include <iostream>   // std::cerr measured diffs
#include <set>
#include <string>
#include <vector>

using namespace sdxl;
using namespace sdxl::models;
using namespace sdxl::test; // test_support.h

namespace {

// Checkpointing re-runs the same float32 CPU ops on the same values, but a
// checkpointed block sums the gradient contributions to its input before they
// meet those from outside it (a UNet skip connection), where the plain graph
// adds all of them in one buffer: float32 rounding apart, the gradients agree.
// Measured on the tiny UNet: max|diff| 4e-10 against gradients up to 7e-4, in
// the down blocks only; the CLIP layers (no skips) and the losses are bitwise equal.
constexpr double kCheckpointTolerance = 1e-6;
constexpr double kCheckpointRelativeTolerance = 1e-5; // of the largest gradient: float32 eps times a few sums
constexpr double kUNetTolerance = 1e-4; // fixtures README: independent float32 UNet
constexpr int64_t kLoraRank = 4;
constexpr double kLoraScale = 0.5;
constexpr double kLoraInitStd = 0.1; // up is non-zero (unlike peft's init) so every tensor gets a gradient
constexpr double kDropout = 0.1;

at::Generator seeded(uint64_t seed) { return at::make_generator<at::CPUGeneratorImpl>(seed); }

bool ends_with(const std::string& text, const std::string& suffix) {
  return text.size() >= suffix.size() && text.compare(text.size() - suffix.size(), suffix.size(), suffix) == 0;
}

// Attaches one trainable LoRA slot (random down and up, requires_grad) to every
// Linear whose path ends with one of `suffixes`; returns the slots' tensors in module order.
std::vector<torch::Tensor> attach_loras(torch::nn::Module& model, const std::vector<std::string>& suffixes,
                                        double dropout, const at::Generator& dropout_generator) {
  at::Generator init = seeded(1234);
  std::vector<torch::Tensor> tensors;
  for (const auto& item : model.named_modules()) {
    auto* linear = item.value()->as<LinearImpl>();
    if (linear == nullptr) continue;
    bool targeted = false;
    for (const auto& suffix : suffixes) targeted = targeted || ends_with(item.key(), suffix);
    if (!targeted) continue;
    LoraSlot slot{torch::randn({kLoraRank, linear->in_features}, init) * kLoraInitStd,
                  torch::randn({linear->out_features, kLoraRank}, init) * kLoraInitStd, kLoraScale};
    slot.down.requires_grad_(true);
    slot.up.requires_grad_(true);
    slot.dropout = dropout;
    slot.generator = dropout_generator;
    tensors.push_back(slot.down);
    tensors.push_back(slot.up);
    linear->loras.push_back(slot);
  }
  return tensors;
}

const std::vector<std::string> kUNetAttentionProjections = {".to_q", ".to_k", ".to_v", ".to_out.0"};
const std::vector<std::string> kClipAttentionProjections = {".q_proj", ".k_proj", ".v_proj", ".out_proj"};

// Nodes named `name` in the graph behind `root`.
int count_graph_nodes(const torch::Tensor& root, const std::string& name) {
  std::set<torch::autograd::Node*> seen;
  std::vector<torch::autograd::Node*> pending;
  if (root.grad_fn()) pending.push_back(root.grad_fn().get());
  int count = 0;
  while (!pending.empty()) {
    torch::autograd::Node* node = pending.back();
    pending.pop_back();
    if (!seen.insert(node).second) continue;
    if (node->name() == name) ++count;
    for (const auto& edge : node->next_edges()) {
      if (edge.function) pending.push_back(edge.function.get());
    }
  }
  return count;
}

// One backward: the loss, a copy of each tensor's gradient (undefined if none
// came), and how many checkpointed blocks the graph held.
struct BackwardResult {
  double loss = 0;
  std::vector<torch::Tensor> grads;
  int checkpointed_blocks = 0;
};

BackwardResult run_backward(const std::function<torch::Tensor()>& loss_fn, std::vector<torch::Tensor>& trained) {
  for (auto& tensor : trained) tensor.mutable_grad() = torch::Tensor();
  torch::Tensor loss = loss_fn();
  BackwardResult result;
  result.loss = loss.item<double>();
  result.checkpointed_blocks = count_graph_nodes(loss, "CheckpointBackward");
  loss.backward();
  for (const auto& tensor : trained) result.grads.push_back(tensor.grad().defined() ? tensor.grad().clone() : torch::Tensor());
  return result;
}

// Loss and every gradient of the two runs agree (bitwise when `bitwise`); each gradient exists and is non-zero.
void check_same_gradients(const BackwardResult& plain, const BackwardResult& checkpointed, bool expect_bitwise) {
  CHECK(plain.checkpointed_blocks == 0);
  CHECK(plain.grads.size() == checkpointed.grads.size());
  std::cerr << "    loss " << plain.loss << " vs " << checkpointed.loss << " (|diff| "
            << std::abs(plain.loss - checkpointed.loss) << ")\n";
  CHECK_CLOSE(plain.loss, checkpointed.loss, kCheckpointTolerance);
  double worst = 0, largest = 0;
  bool bitwise = plain.loss == checkpointed.loss;
  for (size_t i = 0; i < plain.grads.size() && i < checkpointed.grads.size(); ++i) {
    CHECK(plain.grads[i].defined() && checkpointed.grads[i].defined());
    if (!plain.grads[i].defined() || !checkpointed.grads[i].defined()) continue;
    const double magnitude = plain.grads[i].abs().max().item<double>();
    CHECK(magnitude > 0);
    largest = std::max(largest, magnitude);
    worst = std::max(worst, max_abs_diff(plain.grads[i], checkpointed.grads[i]));
    bitwise = bitwise && torch::equal(plain.grads[i], checkpointed.grads[i]);
  }
  std::cerr << "    " << plain.grads.size() << " LoRA gradients up to " << largest << ", max|diff| " << worst
            << (bitwise ? " (bitwise equal)" : "") << "\n";
  CHECK_CLOSE(worst, 0.0, kCheckpointTolerance);
  CHECK(worst <= kCheckpointRelativeTolerance * largest);
  if (expect_bitwise) CHECK(bitwise);
}

// The UNet on the golden inputs, loss = mean squared error against a fixed target.
torch::Tensor unet_loss(UNet2DConditionModel& unet) {
  const torch::Tensor& sample = golden().at("unet.in.sample"); // [1, 4, 16, 16]
  torch::Tensor prediction = unet->forward(sample, golden().at("unet.in.timestep"),
                                           golden().at("unet.in.encoder_hidden_states"),
                                           golden().at("unet.in.text_embeds"), golden().at("unet.in.time_ids"));
  torch::Tensor target = torch::randn(sample.sizes(), seeded(7)); // [1, 4, 16, 16]
  return torch::mse_loss(prediction, target);
}

// Transformer blocks (all holding LoRA): 2 x 2 in down 1, 2 x 3 in down 2, 3 in
// the mid block, 3 x 3 + 3 x 2 in the up blocks: 28. Resnets: 17, of which the 3
// before the first transformer see only frozen inputs and run unchecked: 14.
constexpr int kUNetCheckpointedBlocks = 28 + 14;

// The first transformer block's LoRA: its input comes from frozen layers only.
LinearImpl& first_transformer_to_q(UNet2DConditionModel& unet) {
  return *unet->down_blocks[1]->attentions[0]->blocks[0]->attn1->to_q;
}

} // namespace

// ----------------------------------------------------------------------------
// checkpoint() itself

TEST_CASE(checkpoint_sends_gradients_to_leaves_inside_when_no_input_requires_grad) {
  at::Generator init = seeded(1);
  torch::Tensor weight = torch::randn({8, 8}, init).requires_grad_(true); // a leaf used inside, as a LoRA slot
  const torch::Tensor x = torch::randn({3, 8}, init);                    // frozen activations: no grad
  const CheckpointFn fn = [&](const std::vector<torch::Tensor>& in) {
    return std::vector<torch::Tensor>{torch::tanh(torch::matmul(in[0], weight)) * 2};
  };
  fn({x})[0].square().sum().backward();
  const torch::Tensor expected = weight.grad().clone();
  weight.mutable_grad() = torch::Tensor();

  torch::Tensor y = checkpoint(fn, {x})[0];
  CHECK(y.requires_grad());
  CHECK(y.grad_fn() && y.grad_fn()->name() == "CheckpointBackward");
  y.square().sum().backward();
  CHECK(weight.grad().defined());
  CHECK(weight.grad().defined() && torch::equal(weight.grad(), expected));
}

TEST_CASE(checkpoint_returns_input_gradients_and_passes_undefined_inputs) {
  at::Generator init = seeded(2);
  const torch::Tensor weight = torch::randn({8, 8}, init);
  torch::Tensor x = torch::randn({3, 8}, init).requires_grad_(true);
  const CheckpointFn fn = [&](const std::vector<torch::Tensor>& in) {
    torch::Tensor h = torch::matmul(in[0], weight);
    if (in[1].defined()) h = h + in[1];
    return std::vector<torch::Tensor>{torch::sigmoid(h), h.sum(0)};
  };
  std::vector<torch::Tensor> plain = fn({x, torch::Tensor()});
  (plain[0].sum() + plain[1].square().sum()).backward();
  const torch::Tensor expected = x.grad().clone();
  x.mutable_grad() = torch::Tensor();

  std::vector<torch::Tensor> outputs = checkpoint(fn, {x, torch::Tensor()});
  CHECK(outputs.size() == 2);
  (outputs[0].sum() + outputs[1].square().sum()).backward();
  CHECK(x.grad().defined() && torch::equal(x.grad(), expected));
}

TEST_CASE(checkpoint_without_grad_mode_is_a_plain_call) {
  torch::NoGradGuard no_grad;
  torch::Tensor weight = torch::ones({2, 2}).requires_grad_(true);
  torch::Tensor y = checkpoint([&](const std::vector<torch::Tensor>& in) {
    return std::vector<torch::Tensor>{torch::matmul(in[0], weight)};
  }, {torch::ones({1, 2})})[0];
  CHECK(!y.requires_grad());
  CHECK(torch::equal(y, torch::full({1, 2}, 2.0)));
}

// ----------------------------------------------------------------------------
// LoRA dropout

namespace {
// A Linear whose output is exactly its LoRA's dropped input: zero base weight, identity down/up.
Linear dropout_probe(int64_t features, double dropout, const at::Generator& generator) {
  Linear linear(features, features, false, torch::kFloat);
  linear->weight.zero_();
  LoraSlot slot{torch::eye(features), torch::eye(features), 1.0};
  slot.dropout = dropout;
  slot.generator = generator;
  linear->loras.push_back(slot);
  return linear;
}
} // namespace

TEST_CASE(lora_dropout_zeroes_and_rescales_the_adapter_input_in_training_only) {
  constexpr double p = 0.25;
  const torch::Tensor x = torch::rand({64, 256}, seeded(3)) + 1.0; // [64, 256], no zeros
  Linear probe = dropout_probe(256, p, seeded(4));

  torch::Tensor y = probe(x); // a Module is in training mode when built
  const torch::Tensor dropped = y == 0;
  const torch::Tensor kept_scaled = (y - x / (1.0 - p)).abs() <= 1e-6;
  CHECK((dropped | kept_scaled).all().item<bool>()); // every element: 0 or x / (1 - p)
  const double dropped_fraction = dropped.to(torch::kDouble).mean().item<double>();
  std::cerr << "    dropped fraction " << dropped_fraction << " for p " << p << "\n";
  CHECK_CLOSE(dropped_fraction, p, 0.02); // 16384 draws: std 0.0034

  probe->eval();
  CHECK(torch::equal(probe(x), x)); // eval: no dropout at all
}

TEST_CASE(lora_dropout_changes_the_output_and_is_deterministic_per_seed) {
  at::Generator init = seeded(5);
  const torch::Tensor x = torch::randn({4, 32}, init);
  Linear linear(32, 16, true, torch::kFloat);
  linear->weight.copy_(torch::randn({16, 32}, init));
  linear->bias.copy_(torch::randn({16}, init));
  LoraSlot slot{torch::randn({4, 32}, init), torch::randn({16, 4}, init), kLoraScale};
  linear->loras.push_back(slot);
  const torch::Tensor without_dropout = linear(x);

  auto run = [&](uint64_t seed) {
    linear->loras[0].dropout = kDropout;
    linear->loras[0].generator = seeded(seed);
    return linear(x);
  };
  const torch::Tensor first = run(11);
  CHECK(!torch::equal(first, without_dropout));
  CHECK(torch::equal(run(11), first));  // same seed, same mask
  CHECK(!torch::equal(run(12), first)); // another seed, another mask

  linear->eval();
  CHECK(torch::equal(linear(x), without_dropout));

  linear->train();
  linear->loras[0].dropout = 1.0;
  CHECK_THROWS_WITH(linear(x), "LoRA dropout must be in [0, 1)");
}

TEST_CASE(lora_dropout_without_a_generator_uses_the_default_one) {
  const torch::Tensor x = torch::rand({8, 64}) + 1.0;
  Linear probe = dropout_probe(64, 0.5, at::Generator());
  torch::manual_seed(21);
  const torch::Tensor first = probe(x);
  torch::manual_seed(21);
  CHECK(torch::equal(probe(x), first));
  CHECK(!torch::equal(probe(x), first)); // the default generator moved on
}

// ----------------------------------------------------------------------------
// UNet

TEST_CASE(unet_lora_gradients_with_checkpointing_equal_plain_backward) {
  auto unet = load_tiny_unet();
  std::vector<torch::Tensor> trained = attach_loras(*unet, kUNetAttentionProjections, 0.0, at::Generator());
  CHECK(trained.size() == 2 * 4 * 2 * 28); // down/up x q/k/v/out x attn1/attn2 x blocks
  const torch::Tensor first_block_down = first_transformer_to_q(unet).loras[0].down;

  const BackwardResult plain = run_backward([&] { return unet_loss(unet); }, trained);
  set_gradient_checkpointing(*unet, true);
  const BackwardResult checkpointed = run_backward([&] { return unet_loss(unet); }, trained);
  std::cerr << "    checkpointed blocks " << checkpointed.checkpointed_blocks << "\n";
  CHECK(checkpointed.checkpointed_blocks == kUNetCheckpointedBlocks);
  check_same_gradients(plain, checkpointed, false);
  CHECK(first_block_down.grad().defined() && first_block_down.grad().abs().max().item<double>() > 0);
}

TEST_CASE(unet_lora_dropout_masks_are_replayed_by_the_recompute) {
  auto unet = load_tiny_unet();
  at::Generator dropout_generator = seeded(99);
  std::vector<torch::Tensor> trained = attach_loras(*unet, kUNetAttentionProjections, kDropout, dropout_generator);

  // Each run starts from the same generator state; what it leaves must not depend on the recompute.
  torch::Tensor next_draw; // the generator's next draw after a run
  auto run = [&] {
    dropout_generator.set_current_seed(99);
    BackwardResult result = run_backward([&] { return unet_loss(unet); }, trained);
    next_draw = torch::rand({16}, dropout_generator);
    return result;
  };
  const BackwardResult plain = run();
  const torch::Tensor plain_next_draw = next_draw;
  set_gradient_checkpointing(*unet, true);
  const BackwardResult checkpointed = run();
  CHECK(checkpointed.checkpointed_blocks == kUNetCheckpointedBlocks);
  check_same_gradients(plain, checkpointed, false);
  CHECK(torch::equal(next_draw, plain_next_draw));

  set_gradient_checkpointing(*unet, false); // dropout did act: a run without it differs
  for (const auto& item : unet->named_modules()) {
    if (auto* linear = item.value()->as<LinearImpl>()) {
      for (auto& slot : linear->loras) slot.dropout = 0.0;
    }
  }
  CHECK(run_backward([&] { return unet_loss(unet); }, trained).loss != plain.loss);
}

TEST_CASE(unet_lora_dropout_on_the_default_generator_is_replayed) {
  auto unet = load_tiny_unet();
  std::vector<torch::Tensor> trained = attach_loras(*unet, kUNetAttentionProjections, kDropout, at::Generator());
  auto run = [&] {
    torch::manual_seed(77);
    return run_backward([&] { return unet_loss(unet); }, trained);
  };
  const BackwardResult plain = run();
  set_gradient_checkpointing(*unet, true);
  const BackwardResult checkpointed = run();
  CHECK(checkpointed.checkpointed_blocks == kUNetCheckpointedBlocks);
  check_same_gradients(plain, checkpointed, false);
}

TEST_CASE(unet_inference_is_unchanged_with_checkpointing_set) {
  auto unet = load_tiny_unet();
  const torch::Tensor before = run_golden_unet(unet);
  set_gradient_checkpointing(*unet, true);
  const torch::Tensor after = run_golden_unet(unet);
  const double diff = max_abs_diff(after, golden().at("unet.out.sample"));
  std::cerr << "    unet.out.sample max|diff| " << diff << "\n";
  CHECK_CLOSE(diff, 0.0, kUNetTolerance);
  CHECK(torch::equal(after, before));

  // Grad mode on but evaluating: the plain path, no checkpoint nodes.
  attach_loras(*unet, kUNetAttentionProjections, kDropout, seeded(3));
  unet->eval();
  torch::Tensor eval_loss = unet_loss(unet);
  CHECK(eval_loss.requires_grad());
  CHECK(count_graph_nodes(eval_loss, "CheckpointBackward") == 0);
}

// ----------------------------------------------------------------------------
// CLIP text encoder

TEST_CASE(clip_lora_gradients_with_checkpointing_equal_plain_backward) {
  for (const double dropout : {0.0, kDropout}) {
    std::cerr << "    dropout " << dropout << "\n";
    auto text_encoder = load_text_encoder("text_encoder");
    at::Generator dropout_generator = seeded(31);
    std::vector<torch::Tensor> trained =
        attach_loras(*text_encoder, kClipAttentionProjections, dropout, dropout_generator);
    CHECK(trained.size() == 2 * 4 * 3);
    const torch::Tensor weights = torch::randn({1, 77, 24}, seeded(8)); // [1, 77, hidden]
    auto loss = [&] {
      dropout_generator.set_current_seed(31);
      ClipTextOutput out = text_encoder->forward(golden().at("te1.in.input_ids"));
      return (out.last_hidden_state * weights).sum() + out.pooled_output.square().sum();
    };
    const BackwardResult plain = run_backward(loss, trained);
    set_gradient_checkpointing(*text_encoder, true);
    const BackwardResult checkpointed = run_backward(loss, trained);
    CHECK(checkpointed.checkpointed_blocks == 3); // every layer; the first sees frozen embeddings only
    check_same_gradients(plain, checkpointed, true);
  }
}

SDXL_TEST_MAIN()
