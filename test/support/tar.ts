// Reads the entries of a tar archive (ustar, with pax path and size records), for tests
// that check what a download holds without unpacking it to disk; and writes small ones
// (long names as pax records or GNU long-name entries) for tests that import them.
import { paxRecords } from '../../src/storage/tar-reader.js';

export interface TarEntry {
  name: string;
  type: 'file' | 'directory';
  data: Buffer;
}

const BLOCK = 512;

function field(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

export function readTar(archive: Buffer): TarEntry[] {
  const entries: TarEntry[] = [];
  let at = 0;
  let pax = new Map<string, string>();
  while (at + BLOCK <= archive.length) {
    const block = archive.subarray(at, at + BLOCK);
    if (block.every((byte) => byte === 0)) break;
    const prefix = field(block, 345, 155);
    const name = (prefix === '' ? '' : `${prefix}/`) + field(block, 0, 100);
    const type = String.fromCharCode(block[156]!);
    const size = Number(pax.get('size') ?? parseInt(field(block, 124, 12), 8));
    const data = archive.subarray(at + BLOCK, at + BLOCK + size);
    at += BLOCK + Math.ceil(size / BLOCK) * BLOCK;
    if (type === 'x') {
      pax = paxRecords(data);
      continue;
    }
    entries.push({ name: pax.get('path') ?? name, type: type === '5' ? 'directory' : 'file', data: Buffer.from(data) });
    pax = new Map();
  }
  return entries;
}

export interface TarSpec {
  name: string;
  data: Uint8Array | string;
  /** How a name too long for ustar is written: a pax `path` record (default) or a GNU long-name entry. */
  longName?: 'pax' | 'gnu';
  /** ustar type flag; '0' (a file) by default. */
  type?: string;
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

function tarHeader(name: string, size: number, type: string): Buffer {
  const block = Buffer.alloc(BLOCK);
  block.write(name.slice(0, 100), 0, 100, 'utf8');
  block.write(octal(0o644, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii');
  block.write(octal(0, 8), 116, 'ascii');
  block.write(octal(size, 12), 124, 'ascii');
  block.write(octal(0, 12), 136, 'ascii');
  block.write(type, 156, 'ascii');
  block.write('ustar\u000000', 257, 'ascii');
  block.fill(0x20, 148, 156);
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 'ascii');
  return block;
}

function padded(data: Buffer): Buffer[] {
  const rest = (BLOCK - (data.length % BLOCK)) % BLOCK;
  return rest === 0 ? [data] : [data, Buffer.alloc(rest)];
}

/** A tar of `entries` in order (ustar; long names as pax records or GNU long-name entries), ended by two zero blocks. */
export function buildTar(entries: TarSpec[]): Buffer {
  const parts: Buffer[] = [];
  for (const entry of entries) {
    const data = typeof entry.data === 'string' ? Buffer.from(entry.data, 'utf8') : Buffer.from(entry.data);
    if (Buffer.byteLength(entry.name) > 100) {
      if (entry.longName === 'gnu') {
        const name = Buffer.from(`${entry.name}\0`, 'utf8');
        parts.push(tarHeader('././@LongLink', name.length, 'L'), ...padded(name));
      } else {
        const body = ` path=${entry.name}\n`;
        let length = Buffer.byteLength(body);
        while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
        const record = Buffer.from(`${length}${body}`, 'utf8');
        parts.push(tarHeader('PaxHeader', record.length, 'x'), ...padded(record));
      }
    }
    parts.push(tarHeader(entry.name, data.length, entry.type ?? '0'), ...padded(data));
  }
  parts.push(Buffer.alloc(BLOCK * 2));
  return Buffer.concat(parts);
}
