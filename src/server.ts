// Runs the service: config from the environment, listen, and a graceful stop. On SIGTERM
// or SIGINT the server stops accepting connections, lets in-flight requests finish
// (at most SHUTDOWN_GRACE_MS), then closes the database; exit code 0.
import closeWithGrace from 'close-with-grace';
import { buildApp } from './app.js';
import { ConfigError, loadConfig, type Config } from './config.js';
import { issueFirstApiKey } from './services/api-keys.js';

function printFirstKey(key: string, tenant: string): void {
  // Plain stdout, not the JSON log: a person reads this once and copies the key.
  process.stdout.write(
    [
      '',
      '================================================================',
      `First start: created tenant "${tenant}" and its API key (shown only now):`,
      '',
      `  API_KEY=${key}`,
      '',
      'Use it as: curl -H "Authorization: Bearer $API_KEY" ...',
      'More keys: npm run create-api-key -- --tenant NAME',
      '================================================================',
      '',
    ].join('\n') + '\n',
  );
}

async function main(config: Config): Promise<void> {
  const app = await buildApp(config);
  await app.ready();

  if (app.db.kind === 'pglite') {
    const first = await issueFirstApiKey(app.db);
    if (first) printFirstKey(first.key, first.tenant.name);
  }

  closeWithGrace({ delay: config.shutdownGraceMs, logger: app.log }, async ({ signal, err }) => {
    if (err) app.log.error({ err }, 'closing after an error');
    else app.log.info({ signal }, 'closing: finishing in-flight requests');
    await app.close();
    app.log.info('closed');
  });

  await app.listen({ port: config.port, host: config.host });
  app.log.info({ role: config.role, training_slots: config.training.slots, generation_slots: config.generation.slots }, 'serving');
}

/** A configuration the service cannot run with (also one found at start: TRAIN_DEVICES=all without GPUs) is one line and exit 1. */
function refuseConfig(error: unknown): never {
  if (!(error instanceof ConfigError)) throw error;
  console.error(error.message);
  process.exit(1);
}

let config: Config;
try {
  config = loadConfig();
} catch (error) {
  refuseConfig(error);
}
await main(config).catch(refuseConfig);
