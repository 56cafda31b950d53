// Reading and writing .safetensors files in tests, byte for byte as the format says: an
// 8-byte little-endian header length, the JSON header, then the tensors' bytes.
import assert from 'node:assert/strict';
import fs from 'node:fs';

export interface SafetensorsFile {
  /** __metadata__ of the header (string to string). */
  metadata: Record<string, string>;
  /** Each tensor's dtype, shape and bytes. */
  tensors: Map<string, { dtype: string; shape: number[]; data: Buffer }>;
  /** Every byte after the header. */
  data: Buffer;
}

/** Reads a .safetensors file: an 8-byte little-endian header length, the JSON header, then the tensors' bytes. */
export function readSafetensors(file: string): SafetensorsFile {
  const bytes = fs.readFileSync(file);
  assert.ok(bytes.length >= 8, `${file}: too short for a safetensors file`);
  const headerLength = Number(bytes.readBigUInt64LE(0));
  assert.ok(8 + headerLength <= bytes.length, `${file}: header length ${headerLength} past the end`);
  const header = JSON.parse(bytes.subarray(8, 8 + headerLength).toString('utf8')) as Record<string, unknown>;
  const data = bytes.subarray(8 + headerLength);
  const tensors = new Map<string, { dtype: string; shape: number[]; data: Buffer }>();
  let metadata: Record<string, string> = {};
  for (const [name, entry] of Object.entries(header)) {
    if (name === '__metadata__') {
      metadata = entry as Record<string, string>;
      continue;
    }
    const tensor = entry as { dtype: string; shape: number[]; data_offsets: [number, number] };
    const [begin, end] = tensor.data_offsets;
    assert.ok(begin <= end && end <= data.length, `${file}: ${name}'s offsets lie outside the data`);
    tensors.set(name, { dtype: tensor.dtype, shape: tensor.shape, data: data.subarray(begin, end) });
  }
  return { metadata, tensors, data };
}

/** Writes tensors (and __metadata__) as a .safetensors file, in name order, with no padding. */
export function writeSafetensors(
  file: string,
  tensors: Map<string, { dtype: string; shape: number[]; data: Buffer }>,
  metadata: Record<string, string> = {},
): void {
  const header: Record<string, unknown> = {};
  if (Object.keys(metadata).length > 0) header.__metadata__ = metadata;
  const chunks: Buffer[] = [];
  let offset = 0;
  for (const name of [...tensors.keys()].sort()) {
    const tensor = tensors.get(name)!;
    header[name] = { dtype: tensor.dtype, shape: tensor.shape, data_offsets: [offset, offset + tensor.data.length] };
    chunks.push(tensor.data);
    offset += tensor.data.length;
  }
  const json = Buffer.from(JSON.stringify(header), 'utf8');
  const length = Buffer.alloc(8);
  length.writeBigUInt64LE(BigInt(json.length));
  fs.writeFileSync(file, Buffer.concat([length, json, ...chunks]));
}
