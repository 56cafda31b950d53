// README's configuration table lists every environment variable the service reads, with
// the default src/config.ts really applies.
import assert from 'node:assert/strict';
import fs from 'node:fs';
import path from 'node:path';
import { test } from 'node:test';
import { EnvSchema } from '../src/config.js';
import { projectRoot } from '../src/paths.js';

test('the configuration table documents every variable and its default', () => {
  const readme = fs.readFileSync(path.join(projectRoot, 'README.md'), 'utf8');
  const rows = new Map<string, string>();
  for (const match of readme.matchAll(/^\| `([A-Z_]+)` \| ([^|]*) \|/gm)) rows.set(match[1]!, match[2]!.trim());
  for (const [name, schema] of Object.entries(EnvSchema.properties)) {
    const documented = rows.get(name);
    assert.ok(documented !== undefined, `README lists ${name}`);
    const fallback = (schema as { default?: unknown }).default;
    if (fallback === '' || fallback === undefined) assert.equal(documented, '(unset)', name);
    else assert.equal(documented, `\`${String(fallback)}\``, `README default of ${name}`);
  }
  for (const name of rows.keys()) assert.ok(name in EnvSchema.properties, `README lists ${name}, which the service does not read`);
});
