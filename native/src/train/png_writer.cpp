// PNG encoding with stored deflate blocks, and the atomic file write.
#include "train/png_writer.h"

#include <algorithm>  // std::min
#include <array>      // the CRC table
#include <cerrno>     // errno
#include <cstring>    // std::strerror
#include <filesystem> // rename, remove
#include <fstream>    // std::ofstream
#include <stdexcept>  // std::invalid_argument, std::runtime_error

namespace sdxl::train {

namespace {

constexpr uint8_t kSignature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
constexpr int64_t kMaxSide = 0x7FFFFFFF;       // PNG stores sides as 31-bit values
constexpr size_t kMaxStoredBlock = 65535;       // a stored block's LEN is 16 bits
constexpr uint32_t kAdlerModulus = 65521;       // largest prime below 2^16
constexpr size_t kAdlerRun = 5552;              // longest run before the 32-bit sums could overflow
constexpr uint8_t kZlibHeader[2] = {0x78, 0x01}; // deflate, 32 KiB window, no dictionary, "fastest" level

std::array<uint32_t, 256> make_crc_table() {
  std::array<uint32_t, 256> table{};
  for (uint32_t n = 0; n < 256; ++n) {
    uint32_t c = n;
    for (int k = 0; k < 8; ++k) c = (c & 1) ? 0xEDB88320u ^ (c >> 1) : c >> 1;
    table[n] = c;
  }
  return table;
}

void put_u32_be(std::vector<uint8_t>& out, uint32_t value) {
  out.push_back(static_cast<uint8_t>(value >> 24));
  out.push_back(static_cast<uint8_t>(value >> 16));
  out.push_back(static_cast<uint8_t>(value >> 8));
  out.push_back(static_cast<uint8_t>(value));
}

// length, type, data, CRC over type and data.
void put_chunk(std::vector<uint8_t>& out, const char type[4], const std::vector<uint8_t>& data) {
  put_u32_be(out, static_cast<uint32_t>(data.size()));
  const size_t type_at = out.size();
  out.insert(out.end(), type, type + 4);
  out.insert(out.end(), data.begin(), data.end());
  put_u32_be(out, crc32(out.data() + type_at, 4 + data.size()));
}

// Filter byte 0 ("None") before each row of width * 3 bytes.
std::vector<uint8_t> filtered_rows(int64_t width, int64_t height, const std::vector<uint8_t>& rgb) {
  const size_t row = static_cast<size_t>(width) * 3;
  std::vector<uint8_t> raw;
  raw.reserve((row + 1) * static_cast<size_t>(height));
  for (int64_t y = 0; y < height; ++y) {
    raw.push_back(0);
    const auto begin = rgb.begin() + static_cast<std::ptrdiff_t>(static_cast<size_t>(y) * row);
    raw.insert(raw.end(), begin, begin + static_cast<std::ptrdiff_t>(row));
  }
  return raw;
}

// zlib header, stored blocks of at most 65535 bytes (header byte BFINAL | BTYPE 00 << 1, then
// LEN and its one's complement NLEN, little-endian), Adler-32 of the raw bytes, big-endian.
std::vector<uint8_t> zlib_stored(const std::vector<uint8_t>& raw) {
  std::vector<uint8_t> out(kZlibHeader, kZlibHeader + 2);
  out.reserve(2 + raw.size() + 5 * (raw.size() / kMaxStoredBlock + 1) + 4);
  size_t offset = 0;
  do {
    const size_t length = std::min(kMaxStoredBlock, raw.size() - offset);
    const bool last = offset + length == raw.size();
    out.push_back(last ? 1 : 0);
    out.push_back(static_cast<uint8_t>(length));
    out.push_back(static_cast<uint8_t>(length >> 8));
    out.push_back(static_cast<uint8_t>(~length));
    out.push_back(static_cast<uint8_t>(~length >> 8));
    out.insert(out.end(), raw.begin() + static_cast<std::ptrdiff_t>(offset),
               raw.begin() + static_cast<std::ptrdiff_t>(offset + length));
    offset += length;
  } while (offset < raw.size());
  put_u32_be(out, adler32(raw.data(), raw.size()));
  return out;
}

} // namespace

uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc) {
  static const std::array<uint32_t, 256> table = make_crc_table();
  crc = ~crc;
  for (size_t i = 0; i < size; ++i) crc = table[(crc ^ data[i]) & 0xFF] ^ (crc >> 8);
  return ~crc;
}

uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler) {
  uint32_t a = adler & 0xFFFF, b = adler >> 16;
  while (size > 0) {
    const size_t run = std::min(size, kAdlerRun);
    for (size_t i = 0; i < run; ++i) {
      a += data[i];
      b += a;
    }
    a %= kAdlerModulus;
    b %= kAdlerModulus;
    data += run;
    size -= run;
  }
  return (b << 16) | a;
}

std::vector<uint8_t> encode_png(int64_t width, int64_t height, const std::vector<uint8_t>& rgb) {
  if (width <= 0 || height <= 0 || width > kMaxSide || height > kMaxSide)
    throw std::invalid_argument("encode_png: size must be 1.." + std::to_string(kMaxSide) + " per side, got " +
                                std::to_string(width) + "x" + std::to_string(height));
  const uint64_t row = static_cast<uint64_t>(width) * 3 + 1;
  if (row * static_cast<uint64_t>(height) > (uint64_t{1} << 31) - 1024)
    throw std::invalid_argument("encode_png: " + std::to_string(width) + "x" + std::to_string(height) +
                                " is too large for one IDAT chunk");
  const size_t expected = static_cast<size_t>(width) * static_cast<size_t>(height) * 3;
  if (rgb.size() != expected)
    throw std::invalid_argument("encode_png: expected " + std::to_string(expected) + " RGB bytes for " +
                                std::to_string(width) + "x" + std::to_string(height) + ", got " +
                                std::to_string(rgb.size()));

  std::vector<uint8_t> header;
  put_u32_be(header, static_cast<uint32_t>(width));
  put_u32_be(header, static_cast<uint32_t>(height));
  header.insert(header.end(), {8, 2, 0, 0, 0}); // bit depth 8, color type 2 (RGB), deflate, filter 0, no interlace

  std::vector<uint8_t> png(kSignature, kSignature + 8);
  put_chunk(png, "IHDR", header);
  put_chunk(png, "IDAT", zlib_stored(filtered_rows(width, height, rgb)));
  put_chunk(png, "IEND", {});
  return png;
}

void write_png(const std::string& path, int64_t width, int64_t height, const std::vector<uint8_t>& rgb) {
  const std::vector<uint8_t> png = encode_png(width, height, rgb);
  const std::string temporary = path + ".tmp";
  {
    std::ofstream file(temporary, std::ios::binary | std::ios::trunc);
    if (!file) throw std::runtime_error("write_png: cannot open " + temporary + ": " + std::strerror(errno));
    file.write(reinterpret_cast<const char*>(png.data()), static_cast<std::streamsize>(png.size()));
    file.close();
    if (!file) {
      std::error_code ignored;
      std::filesystem::remove(temporary, ignored);
      throw std::runtime_error("write_png: cannot write " + temporary);
    }
  }
  std::error_code error;
  std::filesystem::rename(temporary, path, error);
  if (error) {
    std::error_code ignored;
    std::filesystem::remove(temporary, ignored);
    throw std::runtime_error("write_png: cannot rename " + temporary + " to " + path + ": " + error.message());
  }
}

} // namespace sdxl::train
