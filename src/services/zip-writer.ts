// A streaming writer of "stored" (uncompressed) zip archives (APPNOTE 6.3.x §4.3): each
// entry is yielded as local header + bytes as soon as it is known, the central directory
// at the end, so an archive of large images never sits in memory whole. Photos do not
// deflate and captions are tiny, so storing costs little. No zip64: callers keep archives
// under 4 GiB (ZIP_MAX_BYTES).

export interface ZipEntry {
  /** Path inside the archive, with / separators. */
  name: string;
  data: Buffer;
  /** Modification time written to the headers; defaults to now. */
  modified?: Date;
}

/** Largest archive without zip64 offsets and sizes. */
export const ZIP_MAX_BYTES = 0xffff_ffff;

const LOCAL_HEADER = 0x04034b50;
const CENTRAL_HEADER = 0x02014b50;
const END_OF_CENTRAL_DIRECTORY = 0x06054b50;
const VERSION_NEEDED = 10; // 1.0: stored entries
const MADE_BY_UNIX = (3 << 8) | 20;
const FLAG_UTF8_NAMES = 0x0800;
const METHOD_STORE = 0;
const FILE_MODE = 0o100644;
const MAX_ENTRIES = 0xffff;

// CRC-32 (IEEE 802.3, reflected polynomial 0xEDB88320), table-driven.
const CRC_TABLE = (() => {
  const table = new Uint32Array(256);
  for (let n = 0; n < 256; n++) {
    let c = n;
    for (let k = 0; k < 8; k++) c = c & 1 ? 0xedb88320 ^ (c >>> 1) : c >>> 1;
    table[n] = c >>> 0;
  }
  return table;
})();

export function crc32(data: Uint8Array): number {
  let crc = 0xffffffff;
  for (let i = 0; i < data.length; i++) crc = CRC_TABLE[(crc ^ data[i]!) & 0xff]! ^ (crc >>> 8);
  return (crc ^ 0xffffffff) >>> 0;
}

/** MS-DOS date and time (local fields of the UTC time, 2-second resolution, from 1980). */
function dosDateTime(date: Date): { date: number; time: number } {
  const year = Math.max(1980, date.getUTCFullYear());
  return {
    date: ((year - 1980) << 9) | ((date.getUTCMonth() + 1) << 5) | date.getUTCDate(),
    time: (date.getUTCHours() << 11) | (date.getUTCMinutes() << 5) | Math.floor(date.getUTCSeconds() / 2),
  };
}

/** Yields the bytes of a stored zip holding `entries`, in order; throws past 4 GiB or 65535 entries. */
export async function* storedZip(entries: AsyncIterable<ZipEntry> | Iterable<ZipEntry>): AsyncGenerator<Buffer> {
  const centrals: Buffer[] = [];
  let offset = 0;
  let count = 0;
  for await (const entry of entries) {
    if (++count > MAX_ENTRIES) throw new Error(`a zip without zip64 holds at most ${MAX_ENTRIES} entries`);
    const name = Buffer.from(entry.name, 'utf8');
    const crc = crc32(entry.data);
    const { date, time } = dosDateTime(entry.modified ?? new Date());
    const size = entry.data.length;
    if (offset + 30 + name.length + size > ZIP_MAX_BYTES) throw new Error('the zip would exceed 4 GiB');

    const local = Buffer.alloc(30);
    local.writeUInt32LE(LOCAL_HEADER, 0);
    local.writeUInt16LE(VERSION_NEEDED, 4);
    local.writeUInt16LE(FLAG_UTF8_NAMES, 6);
    local.writeUInt16LE(METHOD_STORE, 8);
    local.writeUInt16LE(time, 10);
    local.writeUInt16LE(date, 12);
    local.writeUInt32LE(crc, 14);
    local.writeUInt32LE(size, 18); // compressed size = size: stored
    local.writeUInt32LE(size, 22);
    local.writeUInt16LE(name.length, 26);
    local.writeUInt16LE(0, 28); // extra field length
    yield Buffer.concat([local, name]);
    yield entry.data;

    const central = Buffer.alloc(46);
    central.writeUInt32LE(CENTRAL_HEADER, 0);
    central.writeUInt16LE(MADE_BY_UNIX, 4);
    central.writeUInt16LE(VERSION_NEEDED, 6);
    central.writeUInt16LE(FLAG_UTF8_NAMES, 8);
    central.writeUInt16LE(METHOD_STORE, 10);
    central.writeUInt16LE(time, 12);
    central.writeUInt16LE(date, 14);
    central.writeUInt32LE(crc, 16);
    central.writeUInt32LE(size, 20);
    central.writeUInt32LE(size, 24);
    central.writeUInt16LE(name.length, 28);
    // extra length, comment length, disk number, internal attributes: 0
    central.writeUInt32LE((FILE_MODE << 16) >>> 0, 38);
    central.writeUInt32LE(offset, 42);
    centrals.push(central, name);
    offset += local.length + name.length + size;
  }
  const directory = Buffer.concat(centrals);
  if (offset + directory.length + 22 > ZIP_MAX_BYTES) throw new Error('the zip would exceed 4 GiB');
  const end = Buffer.alloc(22);
  end.writeUInt32LE(END_OF_CENTRAL_DIRECTORY, 0);
  end.writeUInt16LE(count, 8);
  end.writeUInt16LE(count, 10);
  end.writeUInt32LE(directory.length, 12);
  end.writeUInt32LE(offset, 16);
  yield Buffer.concat([directory, end]);
}
