// A minimal PNG encoder for validation samples: 8-bit RGB, no interlace,
// filter type 0 on every row, and a zlib stream of stored (uncompressed)
// deflate blocks, so it needs no compression library. Files come out about
// width * height * 3 bytes (3 MiB at 1024x1024); the service may re-encode.
// Formats: PNG (RFC 2083 / W3C PNG spec), zlib (RFC 1950), deflate (RFC 1951).
#pragma once

#include <cstddef> // size_t
#include <cstdint> // int64_t, uint8_t, uint32_t
#include <string>
#include <vector>

namespace sdxl::train {

// CRC-32 as PNG and zlib's crc32() define it (reflected 0xEDB88320, init and final xor 0xFFFFFFFF).
// Pass a previous result as `crc` to continue over more bytes.
uint32_t crc32(const uint8_t* data, size_t size, uint32_t crc = 0);

// Adler-32 (RFC 1950); pass a previous result as `adler` to continue.
uint32_t adler32(const uint8_t* data, size_t size, uint32_t adler = 1);

// The whole PNG file. rgb: width * height * 3 bytes, row-major.
// Throws std::invalid_argument for non-positive or too large sizes or a buffer of the wrong length.
std::vector<uint8_t> encode_png(int64_t width, int64_t height, const std::vector<uint8_t>& rgb);

// Writes encode_png's bytes to path + ".tmp", then renames it to path, so readers never see half a file.
// Throws std::runtime_error (naming the path) when writing or renaming fails.
void write_png(const std::string& path, int64_t width, int64_t height, const std::vector<uint8_t>& rgb);

} // namespace sdxl::train
