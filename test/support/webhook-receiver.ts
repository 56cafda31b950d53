// A webhook receiver for tests: a node:http server on 127.0.0.1 that records every request
// (headers and raw body) and answers as the test says (a status, headers, a body, or no
// answer at all), and a Standard Webhooks verification of what it got, by the npm
// `standardwebhooks` package (an implementation this project did not write).
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import type { TestContext } from 'node:test';
import { Webhook } from 'standardwebhooks';

export interface ReceivedWebhook {
  id: string;
  timestamp: string;
  signature: string;
  headers: http.IncomingHttpHeaders;
  body: string;
  /** The status this receiver answered (undefined when it hung). */
  answered?: number;
}

export interface Answer {
  status: number;
  headers?: Record<string, string>;
  body?: string;
  /** Never answer (the dispatcher's timeout ends the attempt). */
  hang?: boolean;
}

export interface Receiver {
  url: string;
  received: ReceivedWebhook[];
  /** How the next requests are answered (default: 200). */
  answer: (request: ReceivedWebhook) => Answer;
  /** Resolves once `count` requests have arrived. */
  waitFor(count: number, timeoutMs?: number): Promise<ReceivedWebhook[]>;
  close(): Promise<void>;
}

export async function startReceiver(t: TestContext, path = '/hooks'): Promise<Receiver> {
  const waiters: Array<{ count: number; resolve: () => void }> = [];
  const hung: http.ServerResponse[] = [];
  const receiver: Receiver = {
    url: '',
    received: [],
    answer: () => ({ status: 200, body: 'ok' }),
    async waitFor(count, timeoutMs = 30_000) {
      if (receiver.received.length < count) {
        await new Promise<void>((resolve, reject) => {
          const timer = setTimeout(() => reject(new Error(`the receiver got ${receiver.received.length} of ${count} webhooks in ${timeoutMs} ms`)), timeoutMs);
          waiters.push({ count, resolve: () => { clearTimeout(timer); resolve(); } });
        });
      }
      return receiver.received.slice(0, count);
    },
    close: () => new Promise<void>((resolve) => {
      for (const response of hung) response.destroy();
      server.closeAllConnections();
      server.close(() => resolve());
    }),
  };
  const server = http.createServer((request, response) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const got: ReceivedWebhook = {
        id: String(request.headers['webhook-id']),
        timestamp: String(request.headers['webhook-timestamp']),
        signature: String(request.headers['webhook-signature']),
        headers: request.headers,
        body: Buffer.concat(chunks).toString('utf8'),
      };
      const answer = request.url === path ? receiver.answer(got) : { status: 404 };
      if (answer.hang) {
        hung.push(response);
      } else {
        got.answered = answer.status;
        response.writeHead(answer.status, answer.headers ?? {}).end(answer.body ?? '');
      }
      receiver.received.push(got);
      for (const waiter of waiters.filter((w) => receiver.received.length >= w.count)) {
        waiters.splice(waiters.indexOf(waiter), 1);
        waiter.resolve();
      }
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  receiver.url = `http://127.0.0.1:${(server.address() as AddressInfo).port}${path}`;
  t.after(() => receiver.close());
  return receiver;
}

/** The payload of `webhook` as `standardwebhooks` verifies it with `secret`; throws when the signature does not verify. */
export function verified(secret: string, webhook: ReceivedWebhook): { type: string; timestamp: string; data: Record<string, unknown> } {
  return new Webhook(secret).verify(webhook.body, {
    'webhook-id': webhook.id,
    'webhook-timestamp': webhook.timestamp,
    'webhook-signature': webhook.signature,
  }) as { type: string; timestamp: string; data: Record<string, unknown> };
}

/** A clock the test moves by hand (the dispatcher's due times), starting at the real time. */
export class ManualClock {
  #offsetMs = 0;
  now(): Date {
    return new Date(Date.now() + this.#offsetMs);
  }
  advance(ms: number): void {
    this.#offsetMs += ms;
  }
}
