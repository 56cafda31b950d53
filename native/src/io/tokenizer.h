// CLIP's byte-level BPE tokenizer, as the pipelines' `tokenizer/` (and SDXL's
// `tokenizer_2/`) folders describe it (vocab.json + merges.txt, or tokenizer.json),
// equal to OpenAI's reference SimpleTokenizer on ordinary text and to Hugging Face's
// CLIPTokenizer on the special-token quirk SDXL and SD 2.x depend on:
//   SDXL's tokenizer_2 and SD 2.x's tokenizer pad with "!" (id 0), so Hugging Face
//   treats "!" as a special token and turns every "!" of a prompt into id 0 before
//   BPE ("!!!" -> 0 0 0).
// Any special token (bos, eos, pad, unk, and added tokens marked special) is
// cut out of the text first and maps straight to its id.
//
// Text cleanup before BPE: HTML entities unescaped, whitespace runs collapsed
// to one space, stripped, lowercased (Unicode simple case mapping). Not done:
// ftfy's mojibake repair and NFC normalisation (prompts are expected in NFC).
#pragma once

#include <cstdint>       // int64_t
#include <map>           // std::map vocabulary and merge ranks
#include <mutex>         // std::mutex guarding the BPE cache
#include <memory>        // std::shared_ptr cache state
#include <string>
#include <unordered_map> // BPE cache
#include <utility>       // std::pair merge keys
#include <vector>

namespace sdxl::io {

class ClipTokenizer {
 public:
  // Stable Diffusion frames every prompt to this many ids: [bos] + ids[:75] + [eos] + pads.
  static constexpr int64_t kMaxLength = 77;

  // Loads a tokenizer folder: vocab.json + merges.txt when present, else
  // tokenizer.json; special tokens from tokenizer_config.json,
  // special_tokens_map.json and tokenizer.json's added_tokens.
  static ClipTokenizer from_dir(const std::string& dir);
  // Same, but forces one of the two loading paths (for tests).
  static ClipTokenizer from_vocab_and_merges(const std::string& dir);
  static ClipTokenizer from_tokenizer_json(const std::string& dir);

  // Raw BPE ids of a text, without bos/eos framing or truncation.
  std::vector<int64_t> encode(const std::string& text) const;
  // The pipelines' framing: [bos] + encode(prompt)[:75] + [eos], padded to 77 with pad_id().
  std::vector<int64_t> frame(const std::string& prompt) const;

  int64_t bos_id() const { return bos_id_; }
  int64_t eos_id() const { return eos_id_; }
  int64_t pad_id() const { return pad_id_; }
  int64_t unk_id() const { return unk_id_; }
  int64_t vocab_size() const { return static_cast<int64_t>(vocab_.size()); }
  // OpenAI's reference (and transformers 4 with ftfy) unescapes HTML entities
  // ("&amp;" -> "&"); Hugging Face's tokenizer.json path does not. On by default.
  void set_unescape_html(bool unescape) { unescape_html_ = unescape; }
  // The id of a vocabulary entry (e.g. "a</w>"); throws when absent.
  int64_t token_id(const std::string& token) const;

 private:
  struct SpecialToken {
    std::string text;
    int64_t id = 0;
  };

  ClipTokenizer() = default;
  void finish_setup(const std::string& dir, const std::vector<SpecialToken>& added_special);
  // BPE of one pre-tokenized word (already byte-encoded), space-joined symbols.
  std::string bpe(const std::string& word) const;
  void encode_plain(const std::string& cleaned_text, std::vector<int64_t>& ids) const;

  std::map<std::string, int64_t> vocab_;                       // token string -> id
  std::map<std::pair<std::string, std::string>, int64_t> merge_ranks_; // (left, right) -> rank
  std::vector<SpecialToken> special_tokens_;                   // longest text first
  int64_t bos_id_ = 0, eos_id_ = 0, pad_id_ = 0, unk_id_ = 0;
  bool unescape_html_ = true;
  // Word -> BPE result; shared so copies of a tokenizer share one cache.
  struct Cache {
    std::mutex mutex;
    std::unordered_map<std::string, std::string> words;
  };
  std::shared_ptr<Cache> cache_ = std::make_shared<Cache>();
};

} // namespace sdxl::io
