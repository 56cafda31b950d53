// Reads the entries of a tar archive (ustar, with pax path and size records), for tests
// that check what a download holds without unpacking it to disk.
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

function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = Number(data.toString('ascii', at, space));
    const record = data.toString('utf8', space + 1, at + length - 1);
    const equals = record.indexOf('=');
    records.set(record.slice(0, equals), record.slice(equals + 1));
    at += length;
  }
  return records;
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
