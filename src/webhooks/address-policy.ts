// Which addresses a webhook may be delivered to. A tenant chooses the URL, so without a policy a
// webhook is a request the service makes into its own network on the tenant's behalf (SSRF): to
// the cloud metadata service, to Postgres, to admin ports on loopback. Loopback, private,
// link-local and other special-purpose addresses are refused unless an operator allows them by
// name, address or CIDR (WEBHOOK_ALLOWED_HOSTS). IP literals are recognised in every spelling a
// URL parser or the system resolver accepts (0x7f.1, 2130706433, ::ffff:7f00:1), and IPv6
// addresses that carry an IPv4 address (mapped, compatible, NAT64, 6to4, Teredo) are judged by
// the IPv4 address they carry, since that is where the packets end up.
import { BlockList, isIPv6 } from 'node:net';

/** An IP literal in its canonical spelling: dotted-quad IPv4, or compressed lower-case IPv6 (RFC 5952). */
export interface HostAddress {
  family: 4 | 6;
  address: string;
}

/** A WEBHOOK_ALLOWED_HOSTS entry that is neither a host name, an IP address nor a CIDR. */
export class AllowedHostError extends Error {
  override name = 'AllowedHostError';
}

/**
 * The IP address `host` spells, or undefined when it is a name (or nothing). Accepts what WHATWG
 * URL and inet_aton accept for IPv4: one to four parts, each decimal, octal (leading 0) or hex
 * (0x), the last part filling the remaining bytes (127.1, 2130706433, 0177.0.0.1, 0x7f.1), and an
 * optional trailing dot. IPv6 with or without brackets, with an embedded dotted IPv4 and with a
 * zone id (dropped: it names an interface, not another address).
 */
export function parseHostAddress(host: string): HostAddress | undefined {
  const ipv4 = parseIPv4(host);
  if (ipv4 !== undefined) return { family: 4, address: formatIPv4(ipv4) };
  const ipv6 = parseIPv6(host);
  if (ipv6 !== undefined) return { family: 6, address: formatIPv6(ipv6) };
  return undefined;
}

function parseIPv4(host: string): number | undefined {
  const parts = host.split('.');
  // A trailing dot is the fully-qualified spelling; both parsers drop it.
  if (parts.length > 1 && parts[parts.length - 1] === '') parts.pop();
  if (parts.length > 4) return undefined;
  const numbers: number[] = [];
  for (const part of parts) {
    const value = parseIPv4Part(part);
    if (value === undefined) return undefined;
    numbers.push(value);
  }
  const last = numbers.pop();
  if (last === undefined || last >= 256 ** (4 - numbers.length)) return undefined;
  let value = last;
  for (const [index, part] of numbers.entries()) {
    if (part > 255) return undefined;
    value += part * 256 ** (3 - index);
  }
  return value;
}

function parseIPv4Part(part: string): number | undefined {
  // "0x" alone is 0 to WHATWG URL; recognising more spellings than needed only means more get checked.
  if (/^0x[0-9a-f]*$/i.test(part)) return part.length === 2 ? 0 : parseInt(part.slice(2), 16);
  if (/^0[0-7]+$/.test(part)) return parseInt(part, 8);
  if (/^(0|[1-9][0-9]*)$/.test(part)) return Number(part);
  return undefined;
}

function formatIPv4(value: number): string {
  return [24, 16, 8, 0].map((shift) => Math.floor(value / 2 ** shift) % 256).join('.');
}

/** The eight 16-bit groups of an IPv6 address, or undefined. */
function parseIPv6(host: string): number[] | undefined {
  let text = host.startsWith('[') && host.endsWith(']') ? host.slice(1, -1) : host;
  const zone = text.indexOf('%');
  if (zone !== -1) text = text.slice(0, zone);
  // Node's validator does the grammar; what passes it is safe to split below.
  if (!isIPv6(text)) return undefined;
  const [head = '', tail] = text.split('::');
  const headGroups = groupsOf(head);
  const tailGroups = tail === undefined ? [] : groupsOf(tail);
  if (headGroups === undefined || tailGroups === undefined) return undefined;
  const missing = 8 - headGroups.length - tailGroups.length;
  if (missing < 0 || (tail === undefined && missing !== 0)) return undefined;
  return [...headGroups, ...new Array<number>(missing).fill(0), ...tailGroups];
}

function groupsOf(text: string): number[] | undefined {
  if (text === '') return [];
  const groups: number[] = [];
  for (const piece of text.split(':')) {
    if (piece.includes('.')) {
      // An embedded IPv4 is strictly dotted-quad decimal (RFC 4291 2.2), unlike a host name's.
      if (!/^\d{1,3}(\.\d{1,3}){3}$/.test(piece)) return undefined;
      const bytes = piece.split('.').map(Number);
      if (bytes.some((b) => b > 255)) return undefined;
      groups.push(bytes[0]! * 256 + bytes[1]!, bytes[2]! * 256 + bytes[3]!);
    } else {
      groups.push(parseInt(piece, 16));
    }
  }
  return groups;
}

function formatIPv6(groups: readonly number[]): string {
  // RFC 5952: compress the longest run of two or more zero groups, the first one on a tie.
  let bestStart = -1;
  let bestLength = 1;
  for (let start = 0; start < groups.length; ) {
    let end = start;
    while (end < groups.length && groups[end] === 0) end += 1;
    if (end - start > bestLength) {
      bestStart = start;
      bestLength = end - start;
    }
    start = end === start ? start + 1 : end;
  }
  const hex = groups.map((g) => g.toString(16));
  if (bestStart === -1) return hex.join(':');
  return `${hex.slice(0, bestStart).join(':')}::${hex.slice(bestStart + bestLength).join(':')}`;
}

/** Special-purpose ranges (IANA registries) a webhook must not reach, grouped under the name a refusal shows. */
const FORBIDDEN_IPV4: ReadonlyArray<readonly [string, ReadonlyArray<readonly [string, number]>]> = [
  ['broadcast', [['255.255.255.255', 32]]],
  ['"this network"', [['0.0.0.0', 8]]],
  ['loopback', [['127.0.0.0', 8]]],
  ['private', [['10.0.0.0', 8], ['172.16.0.0', 12], ['192.168.0.0', 16]]],
  ['link-local (cloud metadata)', [['169.254.0.0', 16]]],
  ['shared (CGNAT)', [['100.64.0.0', 10]]],
  ['IETF protocol assignments', [['192.0.0.0', 24]]],
  ['documentation', [['192.0.2.0', 24], ['198.51.100.0', 24], ['203.0.113.0', 24]]],
  ['benchmarking', [['198.18.0.0', 15]]],
  ['6to4 relay anycast', [['192.88.99.0', 24]]],
  ['multicast', [['224.0.0.0', 4]]],
  ['reserved', [['240.0.0.0', 4]]],
];

const FORBIDDEN_IPV6: ReadonlyArray<readonly [string, ReadonlyArray<readonly [string, number]>]> = [
  ['unspecified', [['::', 128]]],
  ['loopback', [['::1', 128]]],
  ['unique local', [['fc00::', 7]]],
  ['link-local', [['fe80::', 10]]],
  ['site-local', [['fec0::', 10]]],
  ['multicast', [['ff00::', 8]]],
  ['NAT64 local-use', [['64:ff9b:1::', 48]]],
  ['discard-only', [['100::', 64]]],
  ['documentation', [['2001:db8::', 32], ['3fff::', 20]]],
];

interface NamedRange {
  name: string;
  list: BlockList;
}

function namedRanges(table: typeof FORBIDDEN_IPV4, type: 'ipv4' | 'ipv6'): NamedRange[] {
  return table.map(([name, subnets]) => {
    const list = new BlockList();
    for (const [network, prefix] of subnets) list.addSubnet(network, prefix, type);
    return { name, list };
  });
}

const forbiddenIPv4 = namedRanges(FORBIDDEN_IPV4, 'ipv4');
const forbiddenIPv6 = namedRanges(FORBIDDEN_IPV6, 'ipv6');

function rangeOf(ranges: readonly NamedRange[], address: string, type: 'ipv4' | 'ipv6'): string | undefined {
  return ranges.find((range) => range.list.check(address, type))?.name;
}

/** The IPv4 address an IPv6 address carries, with the name of the form, or undefined. */
function embeddedIPv4(groups: readonly number[]): { form: string; address: string } | undefined {
  const [g0, g1, g2, g3, g4, g5, g6 = 0, g7 = 0] = groups;
  const low = formatIPv4(g6 * 65536 + g7);
  const zeroUpTo = (n: number) => groups.slice(0, n).every((g) => g === 0);
  if (zeroUpTo(5) && g5 === 0xffff) return { form: 'IPv4-mapped', address: low };
  if (zeroUpTo(4) && g4 === 0xffff && g5 === 0) return { form: 'IPv4-translated', address: low };
  // ::a.b.c.d, deprecated but still routed by some stacks; :: and ::1 fall in 0.0.0.0/8 here too.
  if (zeroUpTo(6)) return { form: 'IPv4-compatible', address: low };
  if (g0 === 0x64 && g1 === 0xff9b && g2 === 0 && g3 === 0 && g4 === 0 && g5 === 0) return { form: 'NAT64', address: low };
  if (g0 === 0x2002) return { form: '6to4', address: formatIPv4((g1 ?? 0) * 65536 + (g2 ?? 0)) };
  // Teredo carries the client's address with every bit inverted.
  if (g0 === 0x2001 && g1 === 0) return { form: 'Teredo', address: formatIPv4((~(g6 * 65536 + g7)) >>> 0) };
  return undefined;
}

/**
 * The name of the special-purpose range `ip` lies in ("loopback", "private", "NAT64 form of
 * 127.0.0.1: loopback"), or undefined for an ordinary public address. Something that is not an IP
 * address is answered as forbidden: a caller that asks about it has lost track of what it connects to.
 */
export function forbiddenRange(ip: string): string | undefined {
  const ipv4 = parseIPv4(ip);
  if (ipv4 !== undefined) return rangeOf(forbiddenIPv4, formatIPv4(ipv4), 'ipv4');
  const groups = parseIPv6(ip);
  if (groups === undefined) return 'not an IP address';
  const own = rangeOf(forbiddenIPv6, formatIPv6(groups), 'ipv6');
  if (own !== undefined) return own;
  const embedded = embeddedIPv4(groups);
  if (embedded === undefined) return undefined;
  const carried = rangeOf(forbiddenIPv4, embedded.address, 'ipv4');
  return carried === undefined ? undefined : `${embedded.form} form of ${embedded.address}: ${carried}`;
}

/** Whether a webhook must not connect to `ip` (any spelling parseHostAddress accepts) unless allowed. */
export function isForbiddenAddress(ip: string): boolean {
  return forbiddenRange(ip) !== undefined;
}

/** The entries of a comma-separated WEBHOOK_ALLOWED_HOSTS value; blanks are ignored. */
export function parseAllowedHosts(value: string | undefined): string[] {
  return (value ?? '').split(',').map((entry) => entry.trim()).filter((entry) => entry !== '');
}

export interface AddressPolicyOptions {
  /** Whether plain http:// URLs may be used (tests, private networks); https only otherwise. */
  allowHttp: boolean;
  /** Host names, IP addresses and CIDRs that may be reached even though they are forbidden addresses. */
  allowedHosts: readonly string[];
}

/** Decides whether a webhook URL may be used, and whether an address it resolves to may be connected to. */
export class AddressPolicy {
  readonly allowHttp: boolean;
  readonly #allowedNames = new Set<string>();
  readonly #allowedIPv4 = new BlockList();
  readonly #allowedIPv6 = new BlockList();

  /** Throws AllowedHostError naming an entry that is not a host name, IP address or CIDR. */
  constructor(options: AddressPolicyOptions) {
    this.allowHttp = options.allowHttp;
    for (const entry of options.allowedHosts) this.#allow(entry.trim().toLowerCase());
  }

  #allow(entry: string): void {
    const slash = entry.indexOf('/');
    if (slash !== -1) {
      const network = parseHostAddress(entry.slice(0, slash));
      const prefixText = entry.slice(slash + 1);
      const prefix = Number(prefixText);
      const maxPrefix = network?.family === 4 ? 32 : 128;
      if (network === undefined || !/^\d{1,3}$/.test(prefixText) || prefix > maxPrefix) {
        throw new AllowedHostError(`allowed host "${entry}" is not a valid CIDR`);
      }
      this.#listFor(network.family).addSubnet(network.address, prefix, network.family === 4 ? 'ipv4' : 'ipv6');
      return;
    }
    const ip = parseHostAddress(entry);
    if (ip !== undefined) {
      this.#listFor(ip.family).addAddress(ip.address, ip.family === 4 ? 'ipv4' : 'ipv6');
      return;
    }
    const name = withoutTrailingDot(entry);
    if (!/^[a-z0-9_-]+(\.[a-z0-9_-]+)*$/.test(name)) {
      throw new AllowedHostError(`allowed host "${entry}" is not a host name, IP address or CIDR`);
    }
    this.#allowedNames.add(name);
  }

  #listFor(family: 4 | 6): BlockList {
    return family === 4 ? this.#allowedIPv4 : this.#allowedIPv6;
  }

  /** Whether `ip` is on the allow list; an IPv4-mapped address is the IPv4 address it maps. */
  #isAllowedAddress(ip: HostAddress): boolean {
    if (ip.family === 4) return this.#allowedIPv4.check(ip.address, 'ipv4');
    if (this.#allowedIPv6.check(ip.address, 'ipv6')) return true;
    const mapped = /^::ffff:([0-9a-f]{1,4}):([0-9a-f]{1,4})$/.exec(ip.address);
    if (mapped === null) return false;
    const value = parseInt(mapped[1]!, 16) * 65536 + parseInt(mapped[2]!, 16);
    return this.#allowedIPv4.check(formatIPv4(value), 'ipv4');
  }

  /**
   * Why `url` must not be used on its face, or undefined: not http(s), http without allowHttp,
   * credentials in it, or a host that is an IP literal of a forbidden, not allowed address.
   * A host name passes here; what it resolves to is checked at connect time (checkResolved).
   */
  checkUrl(url: string | URL): string | undefined {
    let parsed: URL;
    try {
      parsed = typeof url === 'string' ? new URL(url) : url;
    } catch {
      return 'not a valid URL';
    }
    if (parsed.protocol !== 'https:' && parsed.protocol !== 'http:') return `the scheme ${parsed.protocol} is not allowed (https only)`;
    if (parsed.protocol === 'http:' && !this.allowHttp) return 'plain http is not allowed (https only)';
    // Credentials in a URL end up in logs and in the delivery's error messages.
    if (parsed.username !== '' || parsed.password !== '') return 'credentials in the URL are not allowed';
    const literal = parseHostAddress(parsed.hostname);
    return literal === undefined ? undefined : this.checkResolved(parsed.hostname, literal.address);
  }

  /**
   * Why connecting to `ip` on behalf of `host` (the URL's host name) is refused, or undefined when
   * it may go ahead: the host name is allowed, the address is allowed, or it is not forbidden.
   */
  checkResolved(host: string, ip: string): string | undefined {
    if (this.#allowedNames.has(withoutTrailingDot(host.toLowerCase()))) return undefined;
    const address = parseHostAddress(ip);
    if (address === undefined) return `${host} resolves to "${ip}", which is not an IP address`;
    if (this.#isAllowedAddress(address)) return undefined;
    const range = forbiddenRange(address.address);
    if (range === undefined) return undefined;
    const literal = parseHostAddress(host);
    const subject = literal?.address === address.address ? address.address : `${host} resolves to ${address.address}, which`;
    return `${subject} is a forbidden address (${range})`;
  }
}

function withoutTrailingDot(name: string): string {
  return name.endsWith('.') ? name.slice(0, -1) : name;
}
