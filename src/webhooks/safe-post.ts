// One webhook POST that cannot be turned against the service's own network. The host name is
// resolved inside the socket's own `lookup`, every address it resolves to is checked against the
// AddressPolicy, and the socket is handed exactly the addresses that were checked: nothing
// resolves the name a second time, so DNS rebinding cannot swap a public address for a private
// one between the check and the connect. IP-literal hosts are checked without DNS. The URL's host
// name stays the Host header and the TLS server name, so certificates are verified against it.
// Redirects are never followed: a 3xx is an answer like any other non-2xx, returned as it came.
import { lookup as dnsLookup } from 'node:dns/promises';
import type { LookupAddress } from 'node:dns';
import http, { type IncomingHttpHeaders } from 'node:http';
import https from 'node:https';
import type { LookupFunction } from 'node:net';
import { performance } from 'node:perf_hooks';
import { type AddressPolicy, parseHostAddress } from './address-policy.js';

/** Bytes of the response body kept (as bodyPrefix) when the caller does not say. */
export const DEFAULT_MAX_RESPONSE_BYTES = 1024;
/** Bytes of the response body read and thrown away after the kept prefix before the connection is cut. */
export const MAX_DRAINED_RESPONSE_BYTES = 64 * 1024;

export type WebhookDeliveryErrorCode =
  /** Not http(s), http without allowHttp, credentials in the URL, or not a URL at all. */
  | 'url_refused'
  /** The host is, or resolves to, an address the policy forbids. */
  | 'forbidden_address'
  /** The host name did not resolve (or resolved to nothing usable). */
  | 'dns_failed'
  /** No response status within timeoutMs, counting resolution and connection. */
  | 'timeout'
  /** Refused, reset, TLS failure: no response status came back. */
  | 'connection_failed';

/** A delivery that got no HTTP answer; `host` is the URL's host, `address` the refused or failed address when known. */
export class WebhookDeliveryError extends Error {
  override name = 'WebhookDeliveryError';
  readonly code: WebhookDeliveryErrorCode;
  readonly host: string;
  readonly address: string | undefined;
  constructor(code: WebhookDeliveryErrorCode, message: string, details: { host: string; address?: string | undefined; cause?: unknown }) {
    super(message, details.cause === undefined ? undefined : { cause: details.cause });
    this.code = code;
    this.host = details.host;
    this.address = details.address;
  }
}

/** Resolves a host name to all its addresses; dns.lookup (the system resolver) unless a test injects one. */
export type HostLookup = (hostname: string) => Promise<readonly LookupAddress[]>;

export interface SafePostOptions {
  body: string | Uint8Array;
  /** Request headers; content-length is set from the body. */
  headers?: Readonly<Record<string, string>>;
  /** Total time for resolution, connection and the response status; the body is read only until then too. */
  timeoutMs: number;
  /** Bytes of the response body kept as bodyPrefix (default 1024). */
  maxResponseBytes?: number;
  policy: AddressPolicy;
  lookup?: HostLookup;
}

export interface SafePostResult {
  /** The receiver's status, 3xx included (never followed). */
  status: number;
  headers: IncomingHttpHeaders;
  /** The start of the response body as UTF-8, at most maxResponseBytes bytes (a cut character is dropped). */
  bodyPrefix: string;
  /** Milliseconds from the start of the delivery to the response status. */
  latencyMs: number;
}

const systemLookup: HostLookup = (hostname) => dnsLookup(hostname, { all: true });

/** POSTs `body` to `url` under `policy`. Resolves with any HTTP answer; throws WebhookDeliveryError when there is none. */
export function safePost(url: string | URL, options: SafePostOptions): Promise<SafePostResult> {
  const started = performance.now();
  let target: URL;
  try {
    target = typeof url === 'string' ? new URL(url) : url;
  } catch (error) {
    return Promise.reject(new WebhookDeliveryError('url_refused', 'refused to deliver: not a valid URL', { host: '', cause: error }));
  }
  const host = target.hostname;
  const { policy } = options;
  const refusal = policy.checkUrl(target);
  if (refusal !== undefined) {
    // checkUrl's reason for a forbidden IP literal is checkResolved's; any other reason is about the URL itself.
    const literal = parseHostAddress(host);
    const addressRefusal = literal === undefined ? undefined : policy.checkResolved(host, literal.address);
    const code = refusal === addressRefusal ? 'forbidden_address' : 'url_refused';
    return Promise.reject(new WebhookDeliveryError(code, `refused to deliver to ${host}: ${refusal}`, { host, address: literal?.address }));
  }

  const body = typeof options.body === 'string' ? Buffer.from(options.body) : options.body;
  const headers: Record<string, string> = {};
  for (const [name, value] of Object.entries(options.headers ?? {})) {
    if (name.toLowerCase() !== 'content-length') headers[name] = value;
  }
  headers['content-length'] = String(body.byteLength);
  const maxResponseBytes = options.maxResponseBytes ?? DEFAULT_MAX_RESPONSE_BYTES;
  const resolve = options.lookup ?? systemLookup;

  return new Promise<SafePostResult>((settleOk, settleFailed) => {
    let settled = false;
    // The lookup's own refusal: the socket error that carries it may come wrapped.
    let lookupFailure: WebhookDeliveryError | undefined;
    let answer: { status: number; headers: IncomingHttpHeaders; latencyMs: number; kept: Buffer[] } | undefined;

    const fail = (error: WebhookDeliveryError): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      settleFailed(error);
    };
    const finish = (): void => {
      if (settled || answer === undefined) return;
      settled = true;
      clearTimeout(timer);
      request.destroy();
      // stream: true holds back a character cut at the end of the prefix instead of mangling it.
      const bodyPrefix = new TextDecoder().decode(Buffer.concat(answer.kept), { stream: true });
      settleOk({ status: answer.status, headers: answer.headers, bodyPrefix, latencyMs: answer.latencyMs });
    };

    // Once the status is in, the deadline only cuts the body short; the answer stands.
    const timer = setTimeout(() => {
      if (answer !== undefined) finish();
      else fail(new WebhookDeliveryError('timeout', `no response from ${host} within ${options.timeoutMs} ms`, { host }));
    }, options.timeoutMs);

    const checkedLookup: LookupFunction = (hostname, lookupOptions, callback) => {
      checkedAddresses(hostname, host, familyNumber(lookupOptions.family), policy, resolve).then(
        (addresses) => {
          if (lookupOptions.all === true) callback(null, addresses);
          else callback(null, addresses[0]!.address, addresses[0]!.family);
        },
        (error: WebhookDeliveryError) => {
          lookupFailure = error;
          callback(error, '');
        },
      );
    };

    const request = (target.protocol === 'https:' ? https : http).request({
      method: 'POST',
      protocol: target.protocol,
      // WHATWG keeps IPv6 literals bracketed; a socket wants them bare.
      hostname: host.startsWith('[') ? host.slice(1, -1) : host,
      port: target.port === '' ? undefined : Number(target.port),
      path: `${target.pathname}${target.search}`,
      headers,
      // A fresh agent per delivery: no pooled socket is ever reused for another host or address.
      agent: false,
      lookup: checkedLookup,
    });

    request.on('error', (error: NodeJS.ErrnoException & { address?: unknown; port?: unknown }) => {
      if (answer !== undefined) return finish();
      if (lookupFailure !== undefined) return fail(lookupFailure);
      if (error instanceof WebhookDeliveryError) return fail(error);
      const address = typeof error.address === 'string' ? error.address : undefined;
      const where = address === undefined ? host : `${host} (${address}${typeof error.port === 'number' ? `:${error.port}` : ''})`;
      fail(new WebhookDeliveryError('connection_failed', `could not deliver to ${where}: ${error.code ?? error.message}`, { host, address, cause: error }));
    });

    request.on('response', (response) => {
      answer = { status: response.statusCode ?? 0, headers: response.headers, latencyMs: Math.round(performance.now() - started), kept: [] };
      const kept = answer.kept;
      let keptBytes = 0;
      let seenBytes = 0;
      response.on('data', (chunk: Buffer) => {
        if (keptBytes < maxResponseBytes) {
          const piece = chunk.subarray(0, maxResponseBytes - keptBytes);
          kept.push(piece);
          keptBytes += piece.byteLength;
        }
        seenBytes += chunk.byteLength;
        // Draining a little lets a receiver finish writing; an endless body is cut off.
        if (seenBytes > maxResponseBytes + MAX_DRAINED_RESPONSE_BYTES) finish();
      });
      response.on('end', finish);
      response.on('error', finish);
      response.on('close', finish);
    });

    request.end(body);
  });
}

/** The address family a socket asks its lookup for: 4, 6, or 0 for either. */
function familyNumber(family: number | 'IPv4' | 'IPv6' | undefined): number {
  if (family === 'IPv4') return 4;
  if (family === 'IPv6') return 6;
  return family ?? 0;
}

/**
 * The addresses `hostname` resolves to, every one of them allowed by `policy` for `urlHost`;
 * throws WebhookDeliveryError (dns_failed, forbidden_address) otherwise. One forbidden address
 * refuses the host: a name that points at both a public and a private address is an attack, or a
 * mistake that would deliver to the private one some of the time.
 */
async function checkedAddresses(hostname: string, urlHost: string, family: number, policy: AddressPolicy, resolve: HostLookup): Promise<LookupAddress[]> {
  const literal = parseHostAddress(hostname);
  let resolved: readonly LookupAddress[];
  if (literal !== undefined) {
    resolved = [literal];
  } else {
    try {
      resolved = await resolve(hostname);
    } catch (error) {
      const reason = (error as NodeJS.ErrnoException).code ?? (error as Error).message;
      throw new WebhookDeliveryError('dns_failed', `could not resolve ${urlHost}: ${reason}`, { host: urlHost, cause: error });
    }
  }
  for (const { address } of resolved) {
    const refusal = policy.checkResolved(urlHost, address);
    if (refusal !== undefined) {
      throw new WebhookDeliveryError('forbidden_address', `refused to deliver to ${urlHost}: ${refusal}`, { host: urlHost, address });
    }
  }
  // Canonical spellings, so the socket connects to exactly the address that was checked.
  const addresses = resolved.flatMap(({ address }) => parseHostAddress(address) ?? []);
  const usable = family === 4 || family === 6 ? addresses.filter((a) => a.family === family) : addresses;
  if (usable.length === 0) {
    throw new WebhookDeliveryError('dns_failed', `could not resolve ${urlHost}: no ${family === 4 || family === 6 ? `IPv${family} ` : ''}address`, { host: urlHost });
  }
  return usable;
}
