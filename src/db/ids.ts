// Resource ids: a type prefix plus a 26-character ULID (Crockford base32 of a 48-bit
// millisecond timestamp and 80 random bits), e.g. ds_01JD3Q5V8Z6ZK2W7M4N1T0X9PA.
// Time-ordered, so "ORDER BY id" is creation order and a keyset cursor is just an id;
// monotonic inside one process so ids made in the same millisecond still sort by creation.
import { randomBytes } from 'node:crypto';

export type IdPrefix = 'tn' | 'key' | 'ds' | 'img' | (string & {});

const CROCKFORD = '0123456789ABCDEFGHJKMNPQRSTVWXYZ';
const RANDOM_BITS = 80n;
const RANDOM_MAX = (1n << RANDOM_BITS) - 1n;
const ULID_LENGTH = 26;

/** The pattern of an id with `prefix` (for schemas and cursor checks). */
export function idPattern(prefix: string): string {
  return `^${prefix}_[0-9A-HJKMNP-TV-Z]{${ULID_LENGTH}}$`;
}

let lastTime = -1;
let lastRandom = 0n;

function encode(value: bigint, length: number): string {
  let out = '';
  for (let i = 0; i < length; i++) {
    out = CROCKFORD[Number(value & 31n)]! + out;
    value >>= 5n;
  }
  return out;
}

export function newId(prefix: IdPrefix): string {
  let time = Date.now();
  let random: bigint;
  if (time <= lastTime && lastRandom < RANDOM_MAX) {
    time = lastTime;
    random = lastRandom + 1n;
  } else {
    random = BigInt('0x' + randomBytes(10).toString('hex'));
  }
  lastTime = time;
  lastRandom = random;
  // 130 bits: 48 of time above 80 of randomness; the top two bits stay zero.
  return `${prefix}_${encode((BigInt(time) << RANDOM_BITS) | random, ULID_LENGTH)}`;
}
