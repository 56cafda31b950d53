// A folder as a POSIX tar (ustar, with pax records where ustar cannot say it), made as it is
// read: a full run's diffusers folder (gigabytes) is downloaded without ever being written
// as an archive. Symbolic links are followed (the untouched components of a full run's
// folder link to its base model's), so the archive holds every component and loads
// anywhere. The bytes depend only on the files' names, sizes and contents: entries sorted
// by name, mtime 0, mode 0644/0755, owner 0, so the same folder is the same archive on
// every replica and every request, and one byte range of it is cut without making the rest.
import { createReadStream } from 'node:fs';
import fs from 'node:fs/promises';
import path from 'node:path';
import { Readable } from 'node:stream';

const BLOCK = 512;
/** ustar's size field holds 11 octal digits: files of 8 GiB and more need a pax size record. */
const USTAR_MAX_SIZE = 8 ** 11 - 1;
const USTAR_NAME = 100;
const USTAR_PREFIX = 155;
/** Links followed into folders, at most (a link loop stops here). */
const MAX_DEPTH = 32;

/** One stretch of the archive: bytes made here (headers, padding), or a file's bytes. */
type Segment = { offset: number; length: number } & ({ data: Buffer } | { file: string });

export interface TarLayout {
  /** Bytes of the whole archive. */
  size: number;
  /** Files in it, with their names in the archive. */
  files: Array<{ name: string; size: number }>;
  segments: Segment[];
}

function octal(value: number, width: number): string {
  return value.toString(8).padStart(width - 1, '0') + '\0';
}

/** A pax extended-header record: "<length> <key>=<value>\n", the length counting itself. */
function paxRecord(key: string, value: string): string {
  const body = ` ${key}=${value}\n`;
  let length = Buffer.byteLength(body);
  while (String(length).length + Buffer.byteLength(body) !== length) length = String(length).length + Buffer.byteLength(body);
  return `${length}${body}`;
}

/** ustar's split of a long name into prefix and name at a '/', or undefined when none fits. */
function splitName(name: string): { prefix: string; name: string } | undefined {
  if (Buffer.byteLength(name) <= USTAR_NAME) return { prefix: '', name };
  for (let at = name.indexOf('/'); at !== -1; at = name.indexOf('/', at + 1)) {
    const prefix = name.slice(0, at);
    const rest = name.slice(at + 1);
    if (Buffer.byteLength(prefix) <= USTAR_PREFIX && Buffer.byteLength(rest) <= USTAR_NAME && rest !== '') return { prefix, name: rest };
  }
  return undefined;
}

function header(name: string, size: number, type: '0' | '5' | 'x'): Buffer {
  const block = Buffer.alloc(BLOCK);
  const split = splitName(name) ?? { prefix: '', name: name.slice(0, USTAR_NAME) };
  block.write(split.name, 0, USTAR_NAME, 'utf8');
  block.write(octal(type === '5' ? 0o755 : 0o644, 8), 100, 'ascii');
  block.write(octal(0, 8), 108, 'ascii'); // uid
  block.write(octal(0, 8), 116, 'ascii'); // gid
  block.write(octal(Math.min(size, USTAR_MAX_SIZE), 12), 124, 'ascii');
  block.write(octal(0, 12), 136, 'ascii'); // mtime
  block.write('        ', 148, 'ascii'); // the checksum counts its own field as spaces
  block.write(type, 156, 'ascii');
  block.write('ustar\0', 257, 'ascii');
  block.write('00', 263, 'ascii');
  block.write(split.prefix, 345, USTAR_PREFIX, 'utf8');
  let sum = 0;
  for (const byte of block) sum += byte;
  block.write(octal(sum, 7) + ' ', 148, 'ascii');
  return block;
}

const padding = (size: number) => (BLOCK - (size % BLOCK)) % BLOCK;

/** The header block(s) of an entry: a pax header first when its name or size does not fit ustar. */
function entryHeaders(name: string, size: number, type: '0' | '5'): Buffer {
  const records = [
    ...(splitName(name) === undefined ? [paxRecord('path', name)] : []),
    ...(size > USTAR_MAX_SIZE ? [paxRecord('size', String(size))] : []),
  ].join('');
  const own = header(name, size, type);
  if (records === '') return own;
  const data = Buffer.from(records, 'utf8');
  const paxName = `PaxHeader/${path.posix.basename(name)}`.slice(0, USTAR_NAME);
  return Buffer.concat([header(paxName, data.length, 'x'), data, Buffer.alloc(padding(data.length)), own]);
}

/**
 * What the tar of `dir` holds and where, entries named `<prefix>/<path>`; links are followed.
 * Throws (ENOENT) for a link whose target is gone.
 */
export async function folderTarLayout(dir: string, prefix: string): Promise<TarLayout> {
  const segments: Segment[] = [];
  const files: TarLayout['files'] = [];
  let offset = 0;
  const add = (segment: { data: Buffer } | { file: string; length: number }) => {
    const length = 'data' in segment ? segment.data.length : segment.length;
    if (length === 0) return;
    segments.push('data' in segment ? { offset, length, data: segment.data } : { offset, length, file: segment.file });
    offset += length;
  };
  const walk = async (folder: string, name: string, depth: number): Promise<void> => {
    if (depth > MAX_DEPTH) throw new Error(`${folder}: links nested more than ${MAX_DEPTH} deep`);
    add({ data: entryHeaders(`${name}/`, 0, '5') });
    const children = (await fs.readdir(folder)).sort((a, b) => Buffer.compare(Buffer.from(a), Buffer.from(b)));
    for (const child of children) {
      const source = path.join(folder, child);
      const stat = await fs.stat(source); // follows links
      if (stat.isDirectory()) {
        await walk(source, `${name}/${child}`, depth + 1);
      } else if (stat.isFile()) {
        add({ data: entryHeaders(`${name}/${child}`, stat.size, '0') });
        add({ file: source, length: stat.size });
        add({ data: Buffer.alloc(padding(stat.size)) });
        files.push({ name: `${name}/${child}`, size: stat.size });
      }
    }
  };
  await walk(dir, prefix, 0);
  add({ data: Buffer.alloc(2 * BLOCK) }); // the end-of-archive marker
  return { size: offset, files, segments };
}

/** The bytes of the archive, or of `range` of them (inclusive), as a stream. */
export function tarStream(layout: TarLayout, range?: { start: number; end: number }): Readable {
  const start = range?.start ?? 0;
  const end = range?.end ?? layout.size - 1;
  async function* bytes(): AsyncGenerator<Buffer> {
    for (const segment of layout.segments) {
      const last = segment.offset + segment.length - 1;
      if (last < start || segment.offset > end) continue;
      const from = Math.max(start, segment.offset) - segment.offset;
      const to = Math.min(end, last) - segment.offset;
      if ('data' in segment) {
        yield segment.data.subarray(from, to + 1);
      } else {
        let read = 0;
        for await (const chunk of createReadStream(segment.file, { start: from, end: to })) {
          read += (chunk as Buffer).length;
          yield chunk as Buffer;
        }
        // A file that shrank since the layout was made would shift every later byte.
        if (read !== to - from + 1) throw new Error(`${segment.file} changed while it was archived`);
      }
    }
  }
  return Readable.from(bytes(), { objectMode: false });
}
