// The training set's files on disk; see training_cache.h.
#include "train/training_cache.h"

#include <filesystem> // exists, create_directories

#include "io/safetensors.h"     // save_safetensors, SafetensorsFile
#include "train/lora_metadata.h" // Sha256

namespace sdxl::train {

namespace {

// Keys name files: the service's are hex digests with a suffix; anything else is hashed.
bool fits_file_name(const std::string& key) {
  if (key.empty() || key.size() > 128 || key.front() == '.') return false;
  for (const char c : key) {
    const bool plain = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
                       c == '_' || c == '.';
    if (!plain) return false;
  }
  return true;
}

std::string sha256_hex(const std::string& text) {
  Sha256 hash;
  hash.update(text);
  return hash.hex_digest();
}

std::string bucket_name(const Bucket& bucket) {
  return std::to_string(bucket.width) + "x" + std::to_string(bucket.height);
}

} // namespace

TrainingCache::TrainingCache(std::string root, const std::string& vae_dtype, const std::string& text_settings)
    : root_(std::move(root)),
      latents_dir_((std::filesystem::path(root_) / "latents" / ("vae-" + vae_dtype)).string()),
      prompts_dir_((std::filesystem::path(root_) / "prompts" / text_settings).string()) {}

std::string TrainingCache::latents_path(const std::string& key, const Bucket& bucket, bool flip) const {
  const std::string name = fits_file_name(key) ? key : sha256_hex(key);
  return (std::filesystem::path(latents_dir_) / bucket_name(bucket) / (name + (flip ? "-flip" : "") + ".safetensors"))
      .string();
}

std::string TrainingCache::prompt_path(const std::string& caption) const {
  return (std::filesystem::path(prompts_dir_) / (sha256_hex(caption) + ".safetensors")).string();
}

bool TrainingCache::has(const std::string& path) {
  if (!std::filesystem::exists(path)) return false;
  try {
    io::SafetensorsFile::open(path); // the header and the size it promises
    return true;
  } catch (const std::exception&) {
    std::filesystem::remove(path); // torn by a power cut (entries are written unsynced): encoded again
    return false;
  }
}

void TrainingCache::write_latents(const std::string& path, const CachedLatents& entry) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  io::save_safetensors(path, {{"latents", entry.latents}, {"time_ids", entry.time_ids}}, {}, io::Durability::kUnsynced);
}

CachedLatents TrainingCache::read_latents(const std::string& path) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  return CachedLatents{file.tensor("latents"), file.tensor("time_ids")};
}

void TrainingCache::write_prompt(const std::string& path, const models::UNetConditioning& conditioning) {
  std::filesystem::create_directories(std::filesystem::path(path).parent_path());
  io::TensorMap tensors{{"context", conditioning.context}};
  if (conditioning.text_embeds.defined()) tensors["text_embeds"] = conditioning.text_embeds;
  io::save_safetensors(path, tensors, {}, io::Durability::kUnsynced);
}

models::UNetConditioning TrainingCache::read_prompt(const std::string& path) {
  const io::SafetensorsFile file = io::SafetensorsFile::open(path);
  models::UNetConditioning conditioning;
  conditioning.context = file.tensor("context");
  if (file.contains("text_embeds")) conditioning.text_embeds = file.tensor("text_embeds");
  return conditioning;
}

uint64_t TrainingCache::latent_seed(const std::string& key, const Bucket& bucket, bool flip) {
  const std::string digest = sha256_hex(key + "\n" + bucket_name(bucket) + (flip ? "\nflip" : ""));
  return std::stoull(digest.substr(0, 16), nullptr, 16);
}

} // namespace sdxl::train
