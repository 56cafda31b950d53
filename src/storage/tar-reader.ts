// Reads a tar archive (ustar, with pax `path`/`size` records and GNU long names) from a
// stream, one entry at a time: only the entry being read is ever in memory, so an archive
// of any size costs a few buffered chunks. The caller asks for each entry's data, or not
// (then it is skipped on the way to the next header).

const BLOCK = 512;
/** A pax or GNU long-name record longer than this is not a name but an attack. */
const MAX_META_BYTES = 1024 * 1024;
/** A size field whose first byte has this bit set holds a big-endian binary number (GNU). */
const BASE256_FLAG = 0x80;

export type TarEntryKind = 'file' | 'directory' | 'link' | 'other';

export interface TarEntryHeader {
  /** The entry's path: pax `path`, GNU long name, or ustar prefix/name; a leading "./" dropped. */
  path: string;
  kind: TarEntryKind;
  /** Bytes of data that follow the header. */
  size: number;
}

export class TarFormatError extends Error {
  override name = 'TarFormatError';
}

/** Buffered reads of exact byte counts from an async source of chunks. */
class ByteReader {
  readonly #source: AsyncIterator<Buffer>;
  #chunks: Buffer[] = [];
  #buffered = 0;
  #ended = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.#source = source[Symbol.asyncIterator]();
  }

  async #fill(bytes: number): Promise<void> {
    while (this.#buffered < bytes && !this.#ended) {
      const next = await this.#source.next();
      if (next.done === true) this.#ended = true;
      else if (next.value.length > 0) {
        this.#chunks.push(next.value);
        this.#buffered += next.value.length;
      }
    }
  }

  /** Exactly `bytes` bytes; fewer only at the end of the source. */
  async take(bytes: number): Promise<Buffer> {
    await this.#fill(bytes);
    const length = Math.min(bytes, this.#buffered);
    const all = this.#chunks.length === 1 ? this.#chunks[0]! : Buffer.concat(this.#chunks, this.#buffered);
    this.#chunks = length < all.length ? [all.subarray(length)] : [];
    this.#buffered -= length;
    return all.subarray(0, length);
  }

  /** Drops `bytes` bytes without keeping them; false when the source ended first. */
  async skip(bytes: number): Promise<boolean> {
    let left = bytes;
    while (left > 0) {
      if (this.#buffered === 0) await this.#fill(1);
      if (this.#buffered === 0) return false;
      const head = this.#chunks[0]!;
      if (head.length <= left) {
        this.#chunks.shift();
        this.#buffered -= head.length;
        left -= head.length;
      } else {
        this.#chunks[0] = head.subarray(left);
        this.#buffered -= left;
        left = 0;
      }
    }
    return true;
  }
}

function text(block: Buffer, offset: number, length: number): string {
  const raw = block.subarray(offset, offset + length);
  const end = raw.indexOf(0);
  return raw.subarray(0, end === -1 ? length : end).toString('utf8');
}

function number(block: Buffer, offset: number, length: number): number {
  if ((block[offset]! & BASE256_FLAG) !== 0) {
    let value = block[offset]! & ~BASE256_FLAG;
    for (let i = 1; i < length; i++) value = value * 256 + block[offset + i]!;
    return value;
  }
  const digits = text(block, offset, length).trim();
  if (digits === '') return 0;
  if (!/^[0-7]+$/.test(digits)) throw new TarFormatError(`a header field holds "${digits}", not an octal number`);
  return parseInt(digits, 8);
}

/** The checksum: every header byte summed, with the checksum field itself read as spaces. */
function checksumMatches(block: Buffer): boolean {
  let sum = 0;
  for (let i = 0; i < BLOCK; i++) sum += i >= 148 && i < 156 ? 0x20 : block[i]!;
  return sum === number(block, 148, 8);
}

/** The records of a pax extended header: "<length> <key>=<value>\n" each. */
export function paxRecords(data: Buffer): Map<string, string> {
  const records = new Map<string, string>();
  let at = 0;
  while (at < data.length) {
    const space = data.indexOf(0x20, at);
    const length = Number(data.toString('ascii', at, space));
    if (space === -1 || !Number.isInteger(length) || length <= 0 || at + length > data.length) throw new TarFormatError('a pax header record is malformed');
    const record = data.toString('utf8', space + 1, at + length - 1);
    const equals = record.indexOf('=');
    if (equals > 0) records.set(record.slice(0, equals), record.slice(equals + 1));
    at += length;
  }
  return records;
}

function kindOf(type: string): TarEntryKind {
  if (type === '0' || type === '\0' || type === '7') return 'file';
  if (type === '5') return 'directory';
  if (type === '1' || type === '2') return 'link';
  return 'other';
}

const padding = (size: number): number => (BLOCK - (size % BLOCK)) % BLOCK;

export class TarReader {
  readonly #bytes: ByteReader;
  /** Data of the current entry not read yet (skipped before the next header). */
  #unread = 0;
  #done = false;

  constructor(source: AsyncIterable<Buffer>) {
    this.#bytes = new ByteReader(source);
  }

  /** The next entry's header, or null at the end of the archive. Throws TarFormatError for a damaged or truncated archive. */
  async next(): Promise<TarEntryHeader | null> {
    if (this.#done) return null;
    if (!(await this.#bytes.skip(this.#unread))) throw new TarFormatError('the archive ends inside an entry');
    this.#unread = 0;
    let longPath: string | undefined;
    let pax = new Map<string, string>();
    for (;;) {
      const block = await this.#bytes.take(BLOCK);
      // The end-of-archive marker is two zero blocks; some writers stop after one, or none.
      if (block.length === 0 || block.every((byte) => byte === 0)) {
        this.#done = true;
        return null;
      }
      if (block.length < BLOCK) throw new TarFormatError('the archive ends inside a header');
      if (!checksumMatches(block)) throw new TarFormatError('a header\'s checksum does not match (not a tar archive, or a damaged one)');
      const type = String.fromCharCode(block[156]!);
      const headerSize = number(block, 124, 12);
      const size = pax.has('size') ? Number(pax.get('size')) : headerSize;
      if (!Number.isSafeInteger(size) || size < 0) throw new TarFormatError('an entry has an invalid size');
      if (type === 'x' || type === 'g' || type === 'L' || type === 'K') {
        // Metadata for the entry that follows (g: for every entry; only names are kept, so it is skipped).
        if (size > MAX_META_BYTES) throw new TarFormatError(`a ${type} header of ${size} bytes is too large`);
        const data = await this.#bytes.take(size + padding(size));
        if (data.length < size + padding(size)) throw new TarFormatError('the archive ends inside a header');
        if (type === 'x') pax = paxRecords(data.subarray(0, size));
        else if (type === 'L') longPath = text(data, 0, size);
        continue;
      }
      const magic = text(block, 257, 5);
      const prefix = magic === 'ustar' ? text(block, 345, 155) : '';
      const name = text(block, 0, 100);
      let path = pax.get('path') ?? longPath ?? (prefix === '' ? name : `${prefix}/${name}`);
      while (path.startsWith('./')) path = path.slice(2);
      this.#unread = size + padding(size);
      return { path, kind: kindOf(type), size };
    }
  }

  /** The current entry's data (call at most once per entry, after next()); the caller checks its size first. */
  async read(size: number): Promise<Buffer> {
    const data = await this.#bytes.take(size);
    if (data.length < size) throw new TarFormatError('the archive ends inside an entry');
    this.#unread -= size;
    return data;
  }
}
