// npm run build:console: type-checks the browser console (src/console, against the client
// types generated from openapi/openapi.json, so an API change that breaks it fails here),
// then bundles it with esbuild into dist/console: index.html and assets/ with content
// hashes in their names, which the service serves with a year-long cache.
import { execFileSync } from 'node:child_process';
import { createHash } from 'node:crypto';
import fs from 'node:fs/promises';
import path from 'node:path';
import { createRequire } from 'node:module';
import { pathToFileURL } from 'node:url';
import * as esbuild from 'esbuild';
import { consoleDir, openapiFile, projectRoot } from '../src/paths.js';

const sourceDir = path.join(projectRoot, 'src', 'console');
/** Where index.html points: the service mounts dist/console/assets here. */
export const ASSETS_URL_PATH = '/console/assets/';

/**
 * `import schema from 'openapi:training-params'` (a training run's params) and
 * 'openapi:generation-request' (the body of POST /v1/generations): JSON Schemas read from
 * the OpenAPI document at build time, so the console's forms and their limits are the
 * ones the API validates with.
 */
const openapiSchemas: esbuild.Plugin = {
  name: 'openapi-schemas',
  setup(build) {
    build.onResolve({ filter: /^openapi:/ }, (args) => ({ path: args.path, namespace: 'openapi' }));
    build.onLoad({ filter: /.*/, namespace: 'openapi' }, async (args) => {
      const document = JSON.parse(await fs.readFile(openapiFile, 'utf8'));
      const requestBody = (path: string) => document.paths[path].post.requestBody.content['application/json'].schema;
      const schemas: Record<string, () => unknown> = {
        'openapi:training-params': () => requestBody('/v1/training-runs').properties.params,
        'openapi:generation-request': () => requestBody('/v1/generations'),
      };
      const schema = schemas[args.path];
      if (schema === undefined) return { errors: [{ text: `unknown schema ${args.path}` }] };
      return { contents: JSON.stringify(schema()), loader: 'json', watchFiles: [openapiFile] };
    });
  },
};

function typecheck(): void {
  const tsc = createRequire(import.meta.url).resolve('typescript/bin/tsc');
  execFileSync(process.execPath, [tsc, '-p', path.join(sourceDir, 'tsconfig.json')], { stdio: 'inherit' });
}

export async function buildConsole(outDir = consoleDir): Promise<string[]> {
  const result = await esbuild.build({
    entryPoints: { app: path.join(sourceDir, 'main.tsx') },
    bundle: true,
    format: 'esm',
    target: ['es2022', 'chrome111', 'firefox114', 'safari16.4'],
    minify: true,
    sourcemap: 'linked',
    jsx: 'automatic',
    jsxImportSource: 'preact',
    outdir: path.join(outDir, 'assets'),
    entryNames: '[name]-[hash]',
    assetNames: '[name]-[hash]',
    publicPath: ASSETS_URL_PATH,
    metafile: true,
    write: false,
    plugins: [openapiSchemas],
    logLevel: 'warning',
  });
  await fs.rm(outDir, { recursive: true, force: true });
  await fs.mkdir(path.join(outDir, 'assets'), { recursive: true });
  for (const file of result.outputFiles) await fs.writeFile(file.path, file.contents);

  const outputs = Object.keys(result.metafile.outputs).map((file) => path.basename(file));
  const script = outputs.find((name) => name.endsWith('.js'));
  const style = outputs.find((name) => name.endsWith('.css'));
  if (script === undefined || style === undefined) throw new Error(`esbuild wrote no script or stylesheet: ${outputs.join(', ')}`);
  // The icon is not imported by any script: hashed and copied as it is.
  const iconBytes = await fs.readFile(path.join(sourceDir, 'icon.svg'));
  const icon = `icon-${createHash('sha256').update(iconBytes).digest('hex').slice(0, 8).toUpperCase()}.svg`;
  await fs.writeFile(path.join(outDir, 'assets', icon), iconBytes);
  outputs.push(icon);

  const template = await fs.readFile(path.join(sourceDir, 'index.html'), 'utf8');
  const html = template
    .replace('%SCRIPT%', `${ASSETS_URL_PATH}${script}`)
    .replace('%STYLE%', `${ASSETS_URL_PATH}${style}`)
    .replace('%ICON%', `${ASSETS_URL_PATH}${icon}`);
  await fs.writeFile(path.join(outDir, 'index.html'), html);
  return outputs;
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(path.resolve(process.argv[1])).href) {
  const noCheck = process.argv.includes('--no-typecheck');
  if (!noCheck) typecheck();
  const outputs = await buildConsole();
  console.log(`build:console: wrote ${path.relative(process.cwd(), consoleDir)} (index.html, ${outputs.filter((name) => !name.endsWith('.map')).join(', ')})`);
}
