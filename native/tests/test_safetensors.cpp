// Tests of the .safetensors reader and writer: round trips of every dtype,
// the reference fixtures, and malformed files written by the test itself.
#include "check.h"
#include "io/safetensors.h"

#include <torch/torch.h> // tensors to round-trip

#include <cstdio>   // std::fopen, std::fwrite, std::remove
#include <cstdlib>  // mkdtemp
#include <filesystem> // std::filesystem::remove_all
#include <fstream>  // reading written files back as bytes
#include <iterator> // std::istreambuf_iterator
#include <string>

using sdxl::io::SafetensorsFile;
using sdxl::io::TensorMap;

namespace {

// ----------------------------------------------------------------------------
// Helpers

// A scratch folder for the files the tests write, removed at exit.
struct ScratchDir {
  std::string path;
  ScratchDir() {
    char pattern[] = "/tmp/sdxl-test-safetensors-XXXXXX";
    const char* made = mkdtemp(pattern);
    if (made == nullptr) throw std::runtime_error("mkdtemp failed");
    path = made;
  }
  ~ScratchDir() { std::filesystem::remove_all(path); }
};

std::string temp_dir() {
  static const ScratchDir dir;
  return dir.path;
}

// Writes the 8-byte little-endian header length (or `declared_length` when given),
// the header text and `data_bytes` bytes of data.
std::string write_raw(const std::string& name, const std::string& header, size_t data_bytes,
                      int64_t declared_length = -1) {
  const std::string path = temp_dir() + "/" + name;
  std::FILE* out = std::fopen(path.c_str(), "wb");
  uint64_t length = declared_length >= 0 ? static_cast<uint64_t>(declared_length) : header.size();
  for (int i = 0; i < 8; ++i, length >>= 8) std::fputc(static_cast<int>(length & 0xff), out);
  std::fwrite(header.data(), 1, header.size(), out);
  for (size_t i = 0; i < data_bytes; ++i) std::fputc(static_cast<int>(i & 0xff), out);
  std::fclose(out);
  return path;
}

std::string read_bytes(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

} // namespace

// ----------------------------------------------------------------------------
// Round trips

TEST_CASE(round_trip_every_dtype_and_metadata) {
  TensorMap tensors;
  const auto values = torch::arange(-6, 6, torch::kFloat64).reshape({3, 4}); // [3, 4]
  tensors["f64"] = values * 0.1;
  tensors["f32"] = (values * 0.25).to(torch::kFloat32);
  tensors["f16"] = (values * 0.5).to(torch::kFloat16);
  tensors["bf16"] = (values * 2).to(torch::kBFloat16);
  tensors["i64"] = (values * 1e10).to(torch::kInt64);
  tensors["i32"] = (values * 1000).to(torch::kInt32);
  tensors["i16"] = (values * 100).to(torch::kInt16);
  tensors["i8"] = values.to(torch::kInt8);
  tensors["u8"] = (values + 200).to(torch::kUInt8);
  tensors["bool"] = values.gt(0);
  tensors["scalar"] = torch::tensor(3.5f);                                 // []
  tensors["empty"] = torch::zeros({0, 5});                                 // [0, 5]
  tensors["strided"] = torch::arange(12, torch::kFloat32).reshape({3, 4}).t(); // non-contiguous [4, 3]
  const std::map<std::string, std::string> metadata = {{"format", "pt"}, {"note", "ünïcode \"quoted\""}};

  const std::string path = temp_dir() + "/round_trip.safetensors";
  sdxl::io::save_safetensors(path, tensors, metadata);
  const auto file = SafetensorsFile::open(path);

  CHECK(file.metadata() == metadata);
  CHECK(file.keys().size() == tensors.size());
  CHECK(file.info("f16").dtype == "F16");
  CHECK(file.info("bf16").dtype == "BF16");
  CHECK(file.info("bool").dtype == "BOOL");
  CHECK(file.info("strided").shape == std::vector<int64_t>({4, 3}));
  for (const auto& [name, expected] : tensors) {
    const auto loaded = file.tensor(name);
    CHECK(loaded.scalar_type() == expected.scalar_type());
    CHECK(loaded.sizes() == expected.sizes());
    CHECK(torch::equal(loaded, expected));
  }
  const auto all = sdxl::io::load_safetensors(path);
  CHECK(all.size() == tensors.size());
  CHECK(torch::equal(all.at("i64"), tensors.at("i64")));

  // The header is 8-byte aligned, padded with spaces, and keys come sorted.
  const std::string bytes = read_bytes(path);
  uint64_t header_length = 0;
  for (int i = 7; i >= 0; --i) header_length = (header_length << 8) | static_cast<uint8_t>(bytes[i]);
  CHECK(header_length % 8 == 0);
  const std::string header = bytes.substr(8, header_length);
  CHECK(header.find("\"__metadata__\"") != std::string::npos);
  CHECK(header.find("\"bf16\"") < header.find("\"f16\""));
  CHECK(header.find_last_not_of(' ') == header.rfind('}'));
}

TEST_CASE(save_overwrites_atomically_and_rejects_unstorable_tensors) {
  const std::string path = temp_dir() + "/overwrite.safetensors";
  sdxl::io::save_safetensors(path, {{"a", torch::ones({2})}});
  sdxl::io::save_safetensors(path, {{"b", torch::zeros({3})}});
  const auto file = SafetensorsFile::open(path);
  CHECK(file.keys() == std::vector<std::string>({"b"}));
  CHECK(file.metadata().empty());
  CHECK_THROWS_WITH(sdxl::io::save_safetensors(path, {{"c", torch::ones({2}, torch::kComplexFloat)}}), "'c'");
  CHECK_THROWS_WITH(sdxl::io::save_safetensors(path, {{"__metadata__", torch::ones({2})}}), "__metadata__");
  CHECK(SafetensorsFile::open(path).keys() == std::vector<std::string>({"b"})); // untouched by the failures
  CHECK_THROWS_WITH(sdxl::io::save_safetensors("/nonexistent-dir/x.safetensors", {{"a", torch::ones({1})}}),
                    "/nonexistent-dir/x.safetensors");
}

// ----------------------------------------------------------------------------
// Reference fixtures

TEST_CASE(reads_tiny_sdxl_unet) {
  const auto file = SafetensorsFile::open(sdxl::test::fixtures_dir() + "/tiny-sdxl/unet/diffusion_pytorch_model.safetensors");
  CHECK(file.metadata().at("format") == "pt");
  CHECK(file.keys().size() == 838);
  CHECK(file.contains("conv_in.weight"));
  CHECK(!file.contains("__metadata__"));
  const auto& info = file.info("conv_in.weight");
  CHECK(info.dtype == "F16");
  CHECK(info.shape == std::vector<int64_t>({32, 4, 3, 3}));
  CHECK(info.end - info.begin == 32 * 4 * 3 * 3 * 2);
  const auto weight = file.tensor("conv_in.weight"); // [32, 4, 3, 3]
  CHECK(weight.scalar_type() == torch::kFloat16);
  // First values as numpy reads them from the same bytes.
  const auto first = weight.flatten().slice(0, 0, 3).to(torch::kFloat32);
  CHECK_CLOSE(first[0].item<float>(), 0.1037, 1e-4);
  CHECK_CLOSE(first[1].item<float>(), -0.0508, 1e-4);
  CHECK_CLOSE(first[2].item<float>(), -0.03888, 1e-4);
  const auto all = file.tensors();
  CHECK(all.size() == 838);
  for (const auto& [name, tensor] : all) CHECK(tensor.scalar_type() == torch::kFloat16);
  CHECK_THROWS_WITH(file.tensor("no.such.weight"), "no.such.weight");
}

TEST_CASE(reads_lora_files_with_metadata) {
  const std::string lora_dir = sdxl::test::fixtures_dir() + "/tiny-sdxl-golden/lora";
  const auto kohya = SafetensorsFile::open(lora_dir + "/tiny_lora_kohya.safetensors");
  CHECK(kohya.metadata().at("ss_network_alpha") == "2.0");
  CHECK(kohya.metadata().at("ss_network_dim") == "4");
  CHECK(kohya.keys().size() == 224 * 3);
  const auto alpha = kohya.tensor("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.alpha"); // []
  CHECK(alpha.dim() == 0);
  CHECK_CLOSE(alpha.item<float>(), 2.0, 0);
  const auto down = kohya.tensor("lora_unet_input_blocks_4_1_transformer_blocks_0_attn1_to_k.lora_down.weight");
  CHECK(down.size(0) == 4);

  const auto peft = SafetensorsFile::open(lora_dir + "/tiny_lora_peft.safetensors");
  CHECK(peft.metadata().at("lora_adapter_metadata").find("\"unet.lora_alpha\": 2.0") != std::string::npos);
  CHECK(peft.keys().size() == 224 * 2);
}

// ----------------------------------------------------------------------------
// Malformed files

TEST_CASE(rejects_missing_and_short_files) {
  CHECK_THROWS_WITH(SafetensorsFile::open(temp_dir() + "/does-not-exist.safetensors"), "does-not-exist.safetensors: cannot open");
  CHECK_THROWS_WITH(SafetensorsFile::open(temp_dir()), "not a regular file");
  const std::string tiny = temp_dir() + "/tiny.safetensors";
  std::FILE* out = std::fopen(tiny.c_str(), "wb");
  std::fwrite("abc", 1, 3, out);
  std::fclose(out);
  CHECK_THROWS_WITH(SafetensorsFile::open(tiny), "too short");
}

TEST_CASE(rejects_truncated_file) {
  const std::string path = temp_dir() + "/full.safetensors";
  sdxl::io::save_safetensors(path, {{"weight", torch::ones({16, 16})}});
  const std::string bytes = read_bytes(path);
  const std::string truncated = temp_dir() + "/truncated.safetensors";
  std::FILE* out = std::fopen(truncated.c_str(), "wb");
  std::fwrite(bytes.data(), 1, bytes.size() - 100, out);
  std::fclose(out);
  CHECK_THROWS_WITH(SafetensorsFile::open(truncated), "tensor 'weight': data_offsets [0, 1024] run past the end");

  const std::string cut_header = temp_dir() + "/cut_header.safetensors";
  out = std::fopen(cut_header.c_str(), "wb");
  std::fwrite(bytes.data(), 1, 20, out);
  std::fclose(out);
  CHECK_THROWS_WITH(SafetensorsFile::open(cut_header), "runs past the end of the file");
}

TEST_CASE(rejects_huge_header_length) {
  const auto path = write_raw("huge.safetensors", "{}", 0, int64_t{1} << 40);
  CHECK_THROWS_WITH(SafetensorsFile::open(path), "exceeds the limit");
}

TEST_CASE(rejects_non_json_and_non_object_headers) {
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("garbage.safetensors", "{\"a\": [1, 2", 0)), "not valid JSON");
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("array.safetensors", "[1, 2]", 0)), "not a JSON object");
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("entry.safetensors", R"({"w": 5})", 0)), "tensor 'w'");
}

TEST_CASE(rejects_overlapping_offsets) {
  const std::string header = R"({"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},)"
                             R"("b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("overlap.safetensors", header, 12)), "'b' overlaps tensor 'a'");
}

TEST_CASE(rejects_gaps_and_uncovered_bytes) {
  const std::string gap = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]},)"
                          R"("b":{"dtype":"F32","shape":[1],"data_offsets":[8,12]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("gap.safetensors", gap, 12)), "gap of 4 bytes before tensor 'b'");
  const std::string tail = R"({"a":{"dtype":"F32","shape":[1],"data_offsets":[0,4]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("tail.safetensors", tail, 10)), "6 trailing bytes");
}

TEST_CASE(rejects_wrong_byte_length) {
  const std::string header = R"({"w":{"dtype":"F16","shape":[3,2],"data_offsets":[0,8]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("length.safetensors", header, 8)),
                    "tensor 'w': F16 [3,2] needs 12 bytes but data_offsets [0, 8] span 8");
}

TEST_CASE(rejects_offsets_past_end_and_reversed) {
  const std::string past = R"({"w":{"dtype":"U8","shape":[64],"data_offsets":[0,64]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("past.safetensors", past, 16)), "tensor 'w': data_offsets [0, 64] run past");
  const std::string reversed = R"({"w":{"dtype":"U8","shape":[0],"data_offsets":[4,0]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("reversed.safetensors", reversed, 4)), "begin > end");
  const std::string negative = R"({"w":{"dtype":"U8","shape":[1],"data_offsets":[-1,0]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("negative_offset.safetensors", negative, 1)), "non-negative integers");
}

TEST_CASE(rejects_negative_and_malformed_shapes) {
  const std::string negative = R"({"w":{"dtype":"F32","shape":[-1,4],"data_offsets":[0,0]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("negative.safetensors", negative, 0)),
                    "tensor 'w': shape [-1,4] must hold non-negative integers");
  const std::string fractional = R"({"w":{"dtype":"F32","shape":[1.5],"data_offsets":[0,0]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("fractional.safetensors", fractional, 0)), "non-negative integers");
  const std::string missing = R"({"w":{"dtype":"F32","data_offsets":[0,0]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("no_shape.safetensors", missing, 0)), "tensor 'w': missing array 'shape'");
  const std::string overflow = R"({"w":{"dtype":"F64","shape":[4294967296,4294967296],"data_offsets":[0,0]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("overflow.safetensors", overflow, 0)), "too large");
}

TEST_CASE(rejects_unknown_dtype) {
  const std::string header = R"({"w":{"dtype":"F12","shape":[1],"data_offsets":[0,2]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("dtype.safetensors", header, 2)), "tensor 'w': unknown dtype 'F12'");
  const std::string missing = R"({"w":{"shape":[1],"data_offsets":[0,2]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("no_dtype.safetensors", missing, 2)), "missing string 'dtype'");
}

TEST_CASE(accepts_unrepresentable_dtypes_in_header_only) {
  const std::string header = R"({"q":{"dtype":"U32","shape":[2],"data_offsets":[0,8]}})";
  const auto file = SafetensorsFile::open(write_raw("u32.safetensors", header, 8));
  CHECK(file.info("q").dtype == "U32");
  CHECK_THROWS_WITH(file.tensor("q"), "tensor 'q' has dtype U32");
}

TEST_CASE(rejects_metadata_that_is_not_strings) {
  const std::string number = R"({"__metadata__":{"steps":100},"w":{"dtype":"U8","shape":[1],"data_offsets":[0,1]}})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("meta_number.safetensors", number, 1)),
                    "__metadata__ value of 'steps' is number, expected a string");
  const std::string array = R"({"__metadata__":["a"]})";
  CHECK_THROWS_WITH(SafetensorsFile::open(write_raw("meta_array.safetensors", array, 0)), "__metadata__ is not a JSON object");
}

TEST_CASE(bool_bytes_other_than_one_read_as_true) {
  const std::string header = R"({"b":{"dtype":"BOOL","shape":[3],"data_offsets":[0,3]}})";
  const auto path = temp_dir() + "/bool.safetensors";
  write_raw("bool.safetensors", header, 3); // data bytes 0, 1, 2
  const auto flags = SafetensorsFile::open(path).tensor("b");
  CHECK(flags.scalar_type() == torch::kBool);
  CHECK(!flags[0].item<bool>());
  CHECK(flags[1].item<bool>());
  CHECK(flags[2].item<bool>());
}

SDXL_TEST_MAIN()
