// Method "lora": a LoRA network on the frozen model (training_method.h).
#include <filesystem> // output directory

#include "engine/runtime.h"       // parse_dtype
#include "io/key_conversion.h"    // io::UNetLayout
#include "lora/lora_file.h"       // lora::LoraLayout
#include "train/lora_network.h"   // LoraNetwork, save_trained_lora
#include "train/training_method.h"

namespace sdxl::train {

namespace {

// Tensors of `all` whose names start with `prefix`, with the prefix removed.
std::map<std::string, torch::Tensor> with_prefix_removed(const std::map<std::string, torch::Tensor>& all,
                                                         const std::string& prefix) {
  std::map<std::string, torch::Tensor> out;
  for (const auto& [name, tensor] : all) {
    if (name.rfind(prefix, 0) == 0) out[name.substr(prefix.size())] = tensor;
  }
  return out;
}

class LoraMethod : public TrainingMethod {
 public:
  LoraMethod(const TrainOptions& options, Model& model, at::Generator& init_generator,
             const at::Generator& dropout_generator)
      : options_(options), model_(model) {
    LoraNetworkOptions network_options;
    network_options.rank = options.rank;
    network_options.alpha = options.alpha;
    network_options.dropout = options.dropout;
    network_options.unet_targets = options.unet_targets;
    network_options.text_encoders = options.train_text_encoder;
    network_options.text_encoder_targets = options.text_encoder_targets;
    network_.attach(*model.unet, options.train_text_encoder ? model.text_encoder.ptr().get() : nullptr,
                    options.train_text_encoder ? module_or_null(model.text_encoder_2) : nullptr, network_options,
                    init_generator);
    network_.set_dropout_generator(dropout_generator);
  }

  std::vector<std::vector<torch::Tensor>> parameter_groups(bool split_text_encoders) const override {
    std::vector<std::vector<torch::Tensor>> groups{network_.unet_parameters()};
    if (!options_.train_text_encoder) return groups;
    if (split_text_encoders) {
      groups.push_back(network_.parameters_of("text_encoder"));
      groups.push_back(network_.parameters_of("text_encoder_2"));
    } else {
      groups.push_back(network_.text_encoder_parameters());
    }
    return groups;
  }

  int64_t trainable_parameter_count() const override { return network_.trainable_parameter_count(); }

  void save_state(std::map<std::string, torch::Tensor>& out) const override {
    for (auto& [name, tensor] : network_.state()) out["lora/" + name] = tensor;
  }

  void load_state(const std::map<std::string, torch::Tensor>& in) override {
    network_.load_state(with_prefix_removed(in, "lora/"));
  }

  std::vector<std::string> save_outputs(const RunRecord& record, TrainResult& result) const override {
    std::filesystem::create_directories(options_.output_dir);
    const io::UNetLayout layout = io::UNetLayout::from_config(model_.unet->config());
    std::map<std::string, std::string> metadata =
        lora_metadata(options_, record.dataset_hash, record.steps, TrainingTimes{}, record.base);
    // No wall-clock times: the same options and data give the same file, byte for byte,
    // whether or not the run was interrupted. A caller wanting dates passes them in options.metadata.
    for (const char* key : {"ss_training_started_at", "ss_training_finished_at", "modelspec.date"}) metadata.erase(key);
    for (const auto& [key, value] : options_.metadata) metadata[key] = value;
    // float32 reproduces the in-memory adapter exactly; float16 (kohya's usual) halves the file.
    const torch::Dtype save_dtype = parse_dtype(options_.save_dtype);
    const auto dir = std::filesystem::path(options_.output_dir);
    // sd-scripts' layouts: SGM block names for SDXL, diffusers names and lora_te_ for SD 1.x/2.x.
    const bool sdxl = model_.family == models::ModelFamily::Sdxl;
    const lora::LoraLayout kohya = sdxl ? lora::LoraLayout::KohyaSgm : lora::LoraLayout::KohyaDiffusers;
    result.lora_path = (dir / (options_.output_name + ".safetensors")).string();
    save_trained_lora(result.lora_path, network_, kohya, layout, save_dtype, metadata, /*single_text_encoder=*/!sdxl);
    std::vector<std::string> files{result.lora_path};
    if (options_.save_peft) {
      result.peft_path = (dir / (options_.output_name + "_peft.safetensors")).string();
      save_trained_lora(result.peft_path, network_, lora::LoraLayout::Peft, layout, save_dtype, metadata);
      files.push_back(result.peft_path);
    }
    return files;
  }

 private:
  const TrainOptions& options_;
  const Model& model_;
  LoraNetwork network_;
};

} // namespace

std::unique_ptr<TrainingMethod> make_lora_method(const TrainOptions& options, Model& model, at::Generator& init_generator,
                                                 const at::Generator& dropout_generator) {
  return std::make_unique<LoraMethod>(options, model, init_generator, dropout_generator);
}

} // namespace sdxl::train
