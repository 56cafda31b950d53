// Method "full": the model's own weights are trained (training_method.h): every UNet
// weight, and every text-encoder weight with train_text_encoder, as diffusers'
// train_dreambooth.py and kohya's fine_tune.py / sdxl_train.py do. An EMA of them is
// kept when asked; the result is a model (model_files.h).
#include <filesystem> // output paths
#include <optional>

#include "engine/runtime.h"        // parse_dtype
#include "train/ema.h"             // ExponentialMovingAverage
#include "train/lora_metadata.h"   // model_metadata
#include "train/model_files.h"     // write_model_folder, write_model_single_file
#include "train/training_method.h"

namespace sdxl::train {

namespace {

namespace fs = std::filesystem;

// One trained tensor: its component, its name there and the model's tensor itself.
struct TrainedWeight {
  std::string component; // "unet", "text_encoder", "text_encoder_2"
  std::string name;      // the parameter's name in its component (diffusers names)
  torch::Tensor tensor;
};

class FullMethod : public TrainingMethod {
 public:
  FullMethod(const TrainOptions& options, Model& model) : options_(options) {
    add("unet", *model.unet);
    if (options.train_text_encoder) {
      add("text_encoder", *model.text_encoder);
      if (!model.text_encoder_2.is_empty()) add("text_encoder_2", *model.text_encoder_2);
    }
    if (options.ema_decay > 0) {
      std::vector<torch::Tensor> tensors;
      std::vector<std::string> names;
      for (const auto& weight : weights_) {
        tensors.push_back(weight.tensor);
        names.push_back(key(weight));
      }
      ema_.emplace(tensors, names, options.ema_decay, options.ema_start_step, options.ema_on_cpu);
    }
  }

  std::vector<std::vector<torch::Tensor>> parameter_groups(bool split_text_encoders) const override {
    std::vector<std::vector<torch::Tensor>> groups{of("unet")};
    if (!options_.train_text_encoder) return groups;
    if (split_text_encoders) {
      groups.push_back(of("text_encoder"));
      groups.push_back(of("text_encoder_2"));
    } else {
      std::vector<torch::Tensor> encoders = of("text_encoder");
      for (auto& tensor : of("text_encoder_2")) encoders.push_back(tensor);
      groups.push_back(encoders);
    }
    return groups;
  }

  int64_t trainable_parameter_count() const override {
    int64_t count = 0;
    for (const auto& weight : weights_) count += weight.tensor.numel();
    return count;
  }

  void after_step(int64_t steps_done) override {
    if (ema_) ema_->update(steps_done);
  }

  void begin_validation() override {
    if (!ema_ || options_.validation_weights != "ema") return;
    torch::NoGradGuard no_grad;
    for (const auto& weight : weights_) trained_backup_.push_back(weight.tensor.detach().clone());
    ema_->copy_to_weights();
  }

  void end_validation() override {
    if (trained_backup_.empty()) return;
    torch::NoGradGuard no_grad;
    for (size_t i = 0; i < weights_.size(); ++i) weights_[i].tensor.detach().copy_(trained_backup_[i]);
    trained_backup_.clear();
  }

  void save_state(std::map<std::string, torch::Tensor>& out) const override {
    for (const auto& weight : weights_) out["weights/" + key(weight)] = weight.tensor.detach().to(torch::kCPU, false, true);
    if (ema_) ema_->save_state(out, "ema");
  }

  void load_state(const std::map<std::string, torch::Tensor>& in) override {
    for (const auto& weight : weights_) {
      const auto found = in.find("weights/" + key(weight));
      if (found == in.end() || found->second.sizes() != weight.tensor.sizes() ||
          found->second.scalar_type() != weight.tensor.scalar_type())
        throw std::invalid_argument("resume_from: the checkpoint lacks \"weights/" + key(weight) +
                                    "\" or holds it in another shape or dtype");
    }
    if (ema_) ema_->load_state(in, "ema");
    torch::NoGradGuard no_grad;
    for (const auto& weight : weights_) weight.tensor.detach().copy_(in.at("weights/" + key(weight)));
  }

  std::vector<std::string> save_outputs(const RunRecord& record, TrainResult& result) const override {
    fs::create_directories(options_.output_dir);
    const fs::path dir = options_.output_dir;
    const torch::Dtype dtype = parse_dtype(options_.save_dtype);
    const std::map<std::string, std::string> metadata = model_metadata(options_, record.dataset_hash, record.base);
    const bool single_file = has_single_file_layout(options_.model);
    const bool base_is_folder = fs::is_directory(options_.model.model_path);
    std::vector<std::string> files;
    if (base_is_folder) {
      result.model_dir = (dir / options_.output_name).string();
      write_model_folder(result.model_dir, options_.model.model_path, trained_components(), dtype);
      files.push_back(result.model_dir);
    }
    if (single_file) {
      result.model_path = (dir / (options_.output_name + ".safetensors")).string();
      write_model_single_file(result.model_path, options_.model, trained_components(), dtype, metadata);
      files.push_back(result.model_path);
    }
    if (ema_) {
      const TrainedComponents averaged = ema_components();
      if (single_file) {
        result.ema_model_path = (dir / (options_.output_name + "_ema.safetensors")).string();
        write_model_single_file(result.ema_model_path, options_.model, averaged, dtype, metadata);
      } else if (base_is_folder) {
        result.ema_model_path = (dir / (options_.output_name + "_ema")).string();
        write_model_folder(result.ema_model_path, options_.model.model_path, averaged, dtype);
      }
      if (!result.ema_model_path.empty()) files.push_back(result.ema_model_path);
    }
    return files;
  }

  std::map<std::string, double> metrics() const override {
    if (!ema_) return {};
    return {{"ema_state_bytes", static_cast<double>(ema_->state_bytes())}};
  }

 private:
  static std::string key(const TrainedWeight& weight) { return weight.component + "." + weight.name; }

  void add(const std::string& component, torch::nn::Module& module) {
    for (auto& item : module.named_parameters()) {
      item.value().set_requires_grad(true);
      weights_.push_back({component, item.key(), item.value()});
    }
  }

  std::vector<torch::Tensor> of(const std::string& component) const {
    std::vector<torch::Tensor> tensors;
    for (const auto& weight : weights_)
      if (weight.component == component) tensors.push_back(weight.tensor);
    return tensors;
  }

  static io::TensorMap& slot(TrainedComponents& components, const std::string& component) {
    if (component == "unet") return components.unet;
    return component == "text_encoder" ? components.text_encoder : components.text_encoder_2;
  }

  TrainedComponents trained_components() const {
    TrainedComponents components;
    for (const auto& weight : weights_) slot(components, weight.component)[weight.name] = weight.tensor.detach();
    return components;
  }

  TrainedComponents ema_components() const {
    TrainedComponents components;
    const std::map<std::string, torch::Tensor> shadows = ema_->shadows_like_weights();
    for (const auto& weight : weights_) slot(components, weight.component)[weight.name] = shadows.at(key(weight));
    return components;
  }

  const TrainOptions& options_;
  std::vector<TrainedWeight> weights_;
  std::optional<ExponentialMovingAverage> ema_;
  std::vector<torch::Tensor> trained_backup_; // the trained weights while validation uses the EMA
};

} // namespace

std::unique_ptr<TrainingMethod> make_full_method(const TrainOptions& options, Model& model) {
  return std::make_unique<FullMethod>(options, model);
}

} // namespace sdxl::train
