// safePost against real local servers on 127.0.0.1: what it sends, every spelling of a forbidden
// address refused before a connection is made, names that resolve (through an injected lookup)
// to loopback, redirects not followed, timeouts, and the cap on the response body kept.
import assert from 'node:assert/strict';
import type { LookupAddress } from 'node:dns';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { after, before, beforeEach, describe, test } from 'node:test';
import { AddressPolicy, parseAllowedHosts } from '../../src/webhooks/address-policy.js';
import { type HostLookup, safePost, WebhookDeliveryError, type WebhookDeliveryErrorCode } from '../../src/webhooks/safe-post.js';

interface ReceivedRequest {
  method: string;
  url: string;
  headers: http.IncomingHttpHeaders;
  body: string;
}

interface Receiver {
  port: number;
  origin: string;
  /** TCP connections accepted, so a test can tell "refused before connecting" from "refused later". */
  connections: number;
  requests: ReceivedRequest[];
  respond: (request: ReceivedRequest, response: http.ServerResponse) => void;
  reset(): void;
  close(): Promise<void>;
}

const ok = (_request: ReceivedRequest, response: http.ServerResponse) => {
  response.writeHead(200, { 'content-type': 'text/plain', 'x-receiver': 'yes' }).end('thanks');
};

async function startReceiver(): Promise<Receiver> {
  const receiver: Receiver = {
    port: 0,
    origin: '',
    connections: 0,
    requests: [],
    respond: ok,
    reset() {
      receiver.connections = 0;
      receiver.requests = [];
      receiver.respond = ok;
    },
    close: () => new Promise((resolve) => {
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const received = { method: request.method ?? '', url: request.url ?? '', headers: request.headers, body: Buffer.concat(chunks).toString() };
      receiver.requests.push(received);
      receiver.respond(received, response);
    });
  });
  server.on('connection', () => { receiver.connections += 1; });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.port = (server.address() as AddressInfo).port;
  receiver.origin = `http://127.0.0.1:${receiver.port}`;
  return receiver;
}

/** A resolver that knows a few made-up names, and counts how often it is asked. */
function fakeDns(records: Record<string, LookupAddress[]>): HostLookup & { calls: string[] } {
  const calls: string[] = [];
  const lookup = async (hostname: string) => {
    calls.push(hostname);
    const found = records[hostname];
    if (found === undefined) throw Object.assign(new Error(`getaddrinfo ENOTFOUND ${hostname}`), { code: 'ENOTFOUND' });
    return found;
  };
  return Object.assign(lookup, { calls });
}

const loopbackOnly: LookupAddress[] = [{ address: '127.0.0.1', family: 4 }];

/** Asserts that `promise` rejects with a WebhookDeliveryError of `code`, and returns it. */
async function refusal(promise: Promise<unknown>, code: WebhookDeliveryErrorCode): Promise<WebhookDeliveryError> {
  try {
    await promise;
  } catch (error) {
    assert.ok(error instanceof WebhookDeliveryError, `expected a WebhookDeliveryError, got ${String(error)}`);
    assert.equal(error.code, code, error.message);
    return error;
  }
  assert.fail(`expected ${code}, but the delivery succeeded`);
}

const noPrivate = new AddressPolicy({ allowHttp: true, allowedHosts: [] });
// The way WEBHOOK_ALLOWED_HOSTS lets tests (and on-premises receivers) through.
const allowLoopback = new AddressPolicy({ allowHttp: true, allowedHosts: parseAllowedHosts('127.0.0.1') });
const body = JSON.stringify({ type: 'training_run.succeeded', id: 'run_1' });

let receiver: Receiver;
let second: Receiver;

before(async () => {
  receiver = await startReceiver();
  second = await startReceiver();
});
after(async () => {
  await receiver.close();
  await second.close();
});
beforeEach(() => {
  receiver.reset();
  second.reset();
});

describe('safePost delivery', () => {
  test('POSTs the body and headers and returns status, headers, body prefix and latency', async () => {
    const result = await safePost(`${receiver.origin}/hooks/in?x=1#fragment`, {
      body,
      headers: { 'content-type': 'application/json', 'Content-Length': '1', 'x-signature': 'v1,abc' },
      timeoutMs: 5000,
      policy: allowLoopback,
    });
    assert.equal(result.status, 200);
    assert.equal(result.headers['x-receiver'], 'yes');
    assert.equal(result.bodyPrefix, 'thanks');
    assert.ok(result.latencyMs >= 0 && result.latencyMs < 5000, String(result.latencyMs));
    assert.equal(receiver.requests.length, 1);
    const [request] = receiver.requests;
    assert.equal(request!.method, 'POST');
    assert.equal(request!.url, '/hooks/in?x=1');
    assert.equal(request!.body, body);
    assert.equal(request!.headers['content-type'], 'application/json');
    assert.equal(request!.headers['content-length'], String(Buffer.byteLength(body)), 'set from the body, not the caller');
    assert.equal(request!.headers['x-signature'], 'v1,abc');
  });

  test('a non-2xx status is an answer, not an error', async () => {
    receiver.respond = (_request, response) => response.writeHead(503).end('busy');
    const result = await safePost(receiver.origin, { body, timeoutMs: 5000, policy: allowLoopback });
    assert.equal(result.status, 503);
    assert.equal(result.bodyPrefix, 'busy');
  });

  test('a 302 to a private address is returned as 302 and not followed', async () => {
    receiver.respond = (_request, response) => response.writeHead(302, { location: `${second.origin}/internal/admin` }).end();
    const result = await safePost(`${receiver.origin}/hook`, { body, timeoutMs: 5000, policy: allowLoopback });
    assert.equal(result.status, 302);
    assert.equal(result.headers.location, `${second.origin}/internal/admin`);
    assert.equal(receiver.requests.length, 1);
    assert.equal(second.connections, 0, 'the redirect target sees nothing, although it is even on the allow list');
  });

  test('keeps 1 KiB of the response body by default, and maxResponseBytes when given', async () => {
    receiver.respond = (_request, response) => response.writeHead(200).end('a'.repeat(10_000));
    const result = await safePost(receiver.origin, { body, timeoutMs: 5000, policy: allowLoopback });
    assert.equal(result.bodyPrefix, 'a'.repeat(1024));

    const short = await safePost(receiver.origin, { body, timeoutMs: 5000, policy: allowLoopback, maxResponseBytes: 10 });
    assert.equal(short.bodyPrefix, 'a'.repeat(10));

    receiver.respond = (_request, response) => response.writeHead(200).end('é'.repeat(100));
    const cut = await safePost(receiver.origin, { body, timeoutMs: 5000, policy: allowLoopback, maxResponseBytes: 5 });
    assert.equal(cut.bodyPrefix, 'éé', 'the character cut in half is dropped, not mangled');
  });

  test('an endless response body is cut off after a bounded drain, the answer kept', async () => {
    let written = 0;
    receiver.respond = (_request, response) => {
      response.writeHead(200);
      const chunk = Buffer.alloc(64 * 1024, 'b');
      const pump = () => {
        while (!response.destroyed && response.write(chunk)) written += chunk.length;
        if (!response.destroyed) response.once('drain', pump);
      };
      response.on('error', () => {});
      pump();
    };
    const started = Date.now();
    const result = await safePost(receiver.origin, { body, timeoutMs: 10_000, policy: allowLoopback });
    assert.equal(result.status, 200);
    assert.equal(result.bodyPrefix, 'b'.repeat(1024));
    assert.ok(Date.now() - started < 5000, 'returned long before the timeout');
    assert.ok(written < 64 * 1024 * 1024, `read no more than a bounded amount (server wrote ${written})`);
  });
});

describe('safePost refusals before connecting', () => {
  // Every spelling of a forbidden address; WHATWG URL normalises some IPv4 ones, the rest arrive raw.
  const forbidden = [
    '127.0.0.1', '2130706433', '0177.0.0.1', '0x7f.1', '127.1', '0x7f000001',
    '[::1]', '[0:0:0:0:0:0:0:1]', '[::ffff:127.0.0.1]', '[::ffff:7f00:1]', '[64:ff9b::7f00:1]', '[::127.0.0.1]', '[2002:7f00:1::1]',
    '169.254.169.254', '[::ffff:169.254.169.254]', '10.0.0.1', '172.16.0.1', '192.168.1.1', '100.64.0.1',
    '[fc00::1]', '[fe80::1]', '0.0.0.0', '0', '224.0.0.1', '255.255.255.255', '[ff02::1]', '198.18.0.1', '192.0.0.170',
  ];
  for (const host of forbidden) {
    test(`refuses http://${host}`, async () => {
      const url = `http://${host}:${receiver.port}/hook`;
      const error = await refusal(safePost(url, { body, timeoutMs: 5000, policy: noPrivate }), 'forbidden_address');
      assert.match(error.message, /forbidden address/);
      assert.ok(error.address !== undefined && error.message.includes(error.address), error.message);
      assert.equal(receiver.connections, 0);
    });
  }

  test('a name that resolves to 127.0.0.1 is refused when 127.0.0.1 is not allowed', async () => {
    const dns = fakeDns({ 'evil.test': loopbackOnly });
    const error = await refusal(safePost(`http://evil.test:${receiver.port}/hook`, { body, timeoutMs: 5000, policy: noPrivate, lookup: dns }), 'forbidden_address');
    assert.equal(error.host, 'evil.test');
    assert.equal(error.address, '127.0.0.1');
    assert.match(error.message, /evil\.test resolves to 127\.0\.0\.1, which is a forbidden address \(loopback\)/);
    assert.deepEqual(dns.calls, ['evil.test']);
    assert.equal(receiver.connections, 0);
  });

  test('a name that resolves to one public and one private address is refused', async () => {
    const dns = fakeDns({ 'evil.test': [{ address: '93.184.216.34', family: 4 }, { address: '127.0.0.1', family: 4 }] });
    const error = await refusal(safePost(`http://evil.test:${receiver.port}/`, { body, timeoutMs: 5000, policy: noPrivate, lookup: dns }), 'forbidden_address');
    assert.equal(error.address, '127.0.0.1');
    const mapped = fakeDns({ 'evil.test': [{ address: '2606:4700:4700::1111', family: 6 }, { address: '::ffff:169.254.169.254', family: 6 }] });
    await refusal(safePost(`http://evil.test:${receiver.port}/`, { body, timeoutMs: 5000, policy: noPrivate, lookup: mapped }), 'forbidden_address');
    assert.equal(receiver.connections, 0);
  });

  test('the system resolver is used when no lookup is given: localhost is refused', async () => {
    const error = await refusal(safePost(`http://localhost:${receiver.port}/`, { body, timeoutMs: 5000, policy: noPrivate }), 'forbidden_address');
    assert.match(error.message, /localhost resolves to (127\.0\.0\.1|::1)/);
    assert.equal(receiver.connections, 0);
  });

  test('plain http is refused without allowHttp, even to an allowed address', async () => {
    const httpsOnly = new AddressPolicy({ allowHttp: false, allowedHosts: ['127.0.0.1'] });
    const error = await refusal(safePost(`${receiver.origin}/hook`, { body, timeoutMs: 5000, policy: httpsOnly }), 'url_refused');
    assert.match(error.message, /plain http is not allowed/);
    assert.equal(receiver.connections, 0);
  });

  test('credentials in the URL are refused', async () => {
    const error = await refusal(safePost(`http://user:secret@127.0.0.1:${receiver.port}/`, { body, timeoutMs: 5000, policy: allowLoopback }), 'url_refused');
    assert.match(error.message, /credentials/);
    assert.doesNotMatch(error.message, /secret/);
    await refusal(safePost('ftp://127.0.0.1/', { body, timeoutMs: 5000, policy: allowLoopback }), 'url_refused');
    await refusal(safePost('no url at all', { body, timeoutMs: 5000, policy: allowLoopback }), 'url_refused');
    assert.equal(receiver.connections, 0);
  });
});

describe('safePost through the allow list', () => {
  test('the same name is delivered when 127.0.0.1 is allowed, resolved once, Host kept', async () => {
    const dns = fakeDns({ 'evil.test': loopbackOnly });
    const result = await safePost(`http://evil.test:${receiver.port}/hook`, { body, timeoutMs: 5000, policy: allowLoopback, lookup: dns });
    assert.equal(result.status, 200);
    assert.deepEqual(dns.calls, ['evil.test'], 'the checked resolution is the one connected to');
    assert.equal(receiver.requests[0]?.headers.host, `evil.test:${receiver.port}`);
  });

  test('a host name on the allow list is delivered whatever it resolves to', async () => {
    const byName = new AddressPolicy({ allowHttp: true, allowedHosts: ['hooks.internal'] });
    const dns = fakeDns({ 'hooks.internal': loopbackOnly });
    const result = await safePost(`http://hooks.internal:${receiver.port}/`, { body, timeoutMs: 5000, policy: byName, lookup: dns });
    assert.equal(result.status, 200);
    const other = fakeDns({ 'other.internal': loopbackOnly });
    await refusal(safePost(`http://other.internal:${receiver.port}/`, { body, timeoutMs: 5000, policy: byName, lookup: other }), 'forbidden_address');
    assert.equal(receiver.requests.length, 1);
  });

  test('a CIDR on the allow list lets its addresses through', async () => {
    const loopbackNet = new AddressPolicy({ allowHttp: true, allowedHosts: ['127.0.0.0/8'] });
    const result = await safePost(`http://0x7f.1:${receiver.port}/`, { body, timeoutMs: 5000, policy: loopbackNet });
    assert.equal(result.status, 200);
  });
});

describe('safePost failures', () => {
  test('a receiver that never answers times out', async () => {
    receiver.respond = () => {};
    const started = Date.now();
    const error = await refusal(safePost(receiver.origin, { body, timeoutMs: 300, policy: allowLoopback }), 'timeout');
    assert.ok(Date.now() - started < 3000, 'the timeout ended it');
    assert.match(error.message, /no response from 127\.0\.0\.1 within 300 ms/);
    assert.equal(receiver.requests.length, 1);
  });

  test('a resolver that never answers times out too: the timeout covers the whole delivery', async () => {
    const stuck: HostLookup = () => new Promise(() => {});
    await refusal(safePost(`http://slow.test:${receiver.port}/`, { body, timeoutMs: 200, policy: allowLoopback, lookup: stuck }), 'timeout');
  });

  test('a body that stalls after the status is cut at the deadline, the answer kept', async () => {
    receiver.respond = (_request, response) => {
      response.writeHead(202);
      response.write('accepted, but');
    };
    const result = await safePost(receiver.origin, { body, timeoutMs: 300, policy: allowLoopback });
    assert.equal(result.status, 202);
    assert.equal(result.bodyPrefix, 'accepted, but');
  });

  test('a name that does not resolve is dns_failed', async () => {
    const error = await refusal(safePost('http://nowhere.test/', { body, timeoutMs: 5000, policy: allowLoopback, lookup: fakeDns({}) }), 'dns_failed');
    assert.match(error.message, /could not resolve nowhere\.test: ENOTFOUND/);
    await refusal(safePost('http://empty.test/', { body, timeoutMs: 5000, policy: allowLoopback, lookup: fakeDns({ 'empty.test': [] }) }), 'dns_failed');
  });

  test('a closed port is connection_failed', async () => {
    const closed = await startReceiver();
    await closed.close();
    const error = await refusal(safePost(`${closed.origin}/`, { body, timeoutMs: 5000, policy: allowLoopback }), 'connection_failed');
    assert.match(error.message, /ECONNREFUSED/);
    assert.match(error.message, /127\.0\.0\.1/);
  });
});
