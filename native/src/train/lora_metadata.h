// The header metadata a trained LoRA file carries, so the tools people load
// adapters with (ComfyUI, AUTOMATIC1111, civitai, kohya's own) show how it was
// trained: kohya sd-scripts' ss_* keys (train_network.py; every value is
// Python's str() of the argument, so floats read "0.0001", "16.0", "5e-05",
// booleans "True"/"False" and unset options "None") and the Stability AI
// ModelSpec keys (modelspec.*, as kohya's library/sai_model_spec.py writes
// them for a LoRA of the base model's family).
//
// Plus the dataset's SHA-256 under our own key, kDatasetHashKey: kohya has no
// such key, and a key of our own keeps kohya's ss_* namespace theirs.
#pragma once

#include <cstddef> // size_t
#include <cstdint> // int64_t, uint8_t, uint32_t, uint64_t
#include <map>
#include <string>
#include <vector>

#include "models/configs.h" // models::ModelFamily
#include "sdxl/engine.h"    // TrainOptions, TrainImage

namespace sdxl::train {

// Header key of dataset_hash()'s value.
inline constexpr const char* kDatasetHashKey = "sdxl_lora_service.dataset_sha256";

// Unix seconds (as Python's time.time()) when training started and when this file is written.
struct TrainingTimes {
  double started_at = 0;
  double finished_at = 0;
};

// What the metadata says of the base model (kohya's --v2, --v_parameterization,
// --zero_terminal_snr; SDXL's own scripts).
struct BaseModelTraits {
  models::ModelFamily family = models::ModelFamily::Sdxl;
  bool v_prediction = false;
  bool zero_terminal_snr = false;
};

// Every ss_* and modelspec.* key for a LoRA of `base` trained with `options` after
// `steps_done` optimizer steps; options.metadata is merged last, so a caller's
// entry wins. lora::save_lora_file's own ss_network_dim / ss_network_alpha
// are overwritten by these (same meaning, kohya's formatting).
std::map<std::string, std::string> lora_metadata(const TrainOptions& options, const std::string& dataset_hash,
                                                 int64_t steps_done, const TrainingTimes& times,
                                                 const BaseModelTraits& base = {});

// The header of a fine-tuned model's single file (method "full"): the ModelSpec keys
// for a model of the base's family (its architecture without "/lora"), the trigger
// phrase and the dataset hash, options.metadata last. No dates: the same run gives the
// same file, interrupted or not.
std::map<std::string, std::string> model_metadata(const TrainOptions& options, const std::string& dataset_hash,
                                                  const BaseModelTraits& base);

// Lowercase hex SHA-256 over the images in order. Each image contributes, as
// little-endian 64-bit lengths and numbers: len(name), name, width, height,
// len(rgb), rgb (or, with no rgb, len(key), key), len(caption), caption; the count of
// images comes first. Any change of pixels, caption, name or order changes the hash.
std::string dataset_hash(const std::vector<TrainImage>& images);

// ----------------------------------------------------------------------------
// Helpers, public for the tests

// Python's repr()/str() of a float: shortest round-trip digits, "16.0",
// "0.0001", "5e-05", "1e+16".
std::string python_float(double value);

// ISO-8601 UTC date and time of unix seconds, whole seconds: "2024-05-01T12:34:56+00:00".
std::string iso8601_utc(double unix_seconds);

// SHA-256 (FIPS 180-4), incremental.
class Sha256 {
 public:
  Sha256();
  void update(const void* data, size_t size);
  void update(const std::string& text) { update(text.data(), text.size()); }
  std::string hex_digest(); // finishes the hash; the object is spent afterwards

 private:
  void compress(const uint8_t* block); // one 64-byte block

  uint32_t state_[8];
  uint8_t buffer_[64];
  size_t buffered_ = 0;
  uint64_t total_bytes_ = 0;
};

} // namespace sdxl::train
