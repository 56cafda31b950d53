// The service as `npm run bench` starts it: from the environment, on a free loopback port,
// with a fresh tenant. Prints one line "BENCH_READY {json}" with the URL and API key, and
// closes cleanly on SIGTERM. Not meant to be run by hand.
import { randomBytes } from 'node:crypto';
import { buildApp } from '../src/app.js';
import { loadConfig } from '../src/config.js';
import { issueApiKey } from '../src/services/api-keys.js';

const LOOPBACK = '127.0.0.1';

const config = loadConfig({ ...process.env, HOST: LOOPBACK, PORT: '0' });
const app = await buildApp(config);
await app.listen({ host: LOOPBACK, port: 0 });
const address = app.server.address();
if (address === null || typeof address === 'string') throw new Error('expected a TCP address');
const issued = await issueApiKey(app.db, `bench-${randomBytes(4).toString('hex')}`);
process.stdout.write(`BENCH_READY ${JSON.stringify({ url: `http://${LOOPBACK}:${address.port}`, apiKey: issued.key, database: app.db.kind })}\n`);

const stop = async (): Promise<void> => {
  await app.close();
  process.exit(0);
};
process.once('SIGTERM', () => void stop());
process.once('SIGINT', () => void stop());
