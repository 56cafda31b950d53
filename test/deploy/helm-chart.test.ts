// The Helm chart helm/sdxl-lora-service, checked without helm: Chart.yaml, values.yaml against
// values.schema.json (as `helm install` validates them), the `## @param` documentation, and every
// template rendered by test/deploy/helm-render (Go's text/template, Helm's own engine, with the few
// Helm functions the chart uses) for the defaults, examples/gpu-values.yaml and a values set that
// turns every optional part on. The renderer is built with `go build` (Debian: golang-go).
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { after, before, test } from 'node:test';
import { Ajv, type ErrorObject } from 'ajv';
import { parseAllDocuments, parseDocument } from 'yaml';
import { EnvSchema } from '../../src/config.js';
import { projectRoot } from '../../src/paths.js';

// ---- helpers: files and values

type Obj = Record<string, unknown>;
const chartDir = path.join(projectRoot, 'helm', 'sdxl-lora-service');
const rendererSource = path.join(projectRoot, 'test', 'deploy', 'helm-render', 'main.go');
const packageVersion = (JSON.parse(fs.readFileSync(path.join(projectRoot, 'package.json'), 'utf8')) as { version: string }).version;

function isObj(value: unknown): value is Obj {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** One YAML file as Kubernetes and Helm read it (YAML 1.1: `on` is a boolean); any error or warning fails. */
function readYaml(file: string): Obj {
  const doc = parseDocument(fs.readFileSync(file, 'utf8'), { version: '1.1' });
  assert.deepEqual([...doc.errors, ...doc.warnings].map(String), [], `${file} parses cleanly`);
  const value: unknown = doc.toJS();
  assert.ok(isObj(value), `${file} is a map`);
  return value;
}

const defaults = readYaml(path.join(chartDir, 'values.yaml'));
const gpuExample = readYaml(path.join(chartDir, 'examples', 'gpu-values.yaml'));
const chartYaml = readYaml(path.join(chartDir, 'Chart.yaml'));
const schema = JSON.parse(fs.readFileSync(path.join(chartDir, 'values.schema.json'), 'utf8')) as Obj;

/** Helm's merge of a -f file over the chart's values: maps merge key by key, lists and scalars replace, null deletes. */
function mergeValues(base: Obj, override: Obj): Obj {
  const out: Obj = { ...base };
  for (const [key, value] of Object.entries(override)) {
    if (value === null) delete out[key];
    else if (isObj(value) && isObj(out[key])) out[key] = mergeValues(out[key], value);
    else out[key] = value;
  }
  return out;
}

const ajv = new Ajv({ allErrors: true, strict: false });
const validateValues = ajv.compile(schema);

/** Schema errors of merged values as "path message (detail)" lines; [] when valid. */
function schemaErrors(values: Obj): string[] {
  if (validateValues(values)) return [];
  return (validateValues.errors ?? []).map((e: ErrorObject) => {
    const detail = e.params.additionalProperty ?? e.params.propertyName ?? e.params.allowedValues ?? '';
    return `${e.instancePath || '/'} ${e.message ?? ''} ${detail === '' ? '' : `(${String(detail)})`}`.trim();
  });
}

// ---- helpers: the renderer

/** The go binary: PATH, then Debian's and the upstream tarball's places. */
function findGo(): string {
  for (const candidate of [process.env.GO, 'go', '/usr/lib/go-1.19/bin/go', '/usr/lib/go/bin/go', '/usr/local/go/bin/go']) {
    if (candidate && spawnSync(candidate, ['version']).status === 0) return candidate;
  }
  throw new Error('Go is needed to build test/deploy/helm-render (Helm\'s template engine): apt-get install -y golang-go');
}

const workDir = fs.mkdtempSync(path.join(os.tmpdir(), 'helm-chart-test-'));
after(() => fs.rmSync(workDir, { recursive: true, force: true }));
let renderer = '';

before(() => {
  const go = findGo();
  renderer = path.join(workDir, 'helm-render');
  // Build cache outside HOME (it may be read-only) but kept across runs; the program is stdlib only.
  const goHome = path.join(os.tmpdir(), 'sdxl-lora-service-go');
  const env = {
    ...process.env,
    GOCACHE: process.env.GOCACHE ?? path.join(goHome, 'cache'),
    GOPATH: process.env.GOPATH ?? path.join(goHome, 'path'),
    GOFLAGS: '',
    GOTOOLCHAIN: 'local',
    CGO_ENABLED: '0',
  };
  const build = spawnSync(go, ['build', '-o', renderer, rendererSource], { cwd: workDir, env, encoding: 'utf8' });
  assert.equal(build.status, 0, `go build of helm-render failed:\n${build.stderr}`);
});

interface EnvVar { name: string; value?: unknown; valueFrom?: { secretKeyRef?: { name: string; key: string }; [k: string]: unknown } }
interface Probe { httpGet?: { path: string; port: string | number }; periodSeconds?: number; failureThreshold?: number }
interface Container {
  name: string; image: string; command?: string[]; args?: string[];
  env?: EnvVar[]; envFrom?: { configMapRef?: { name: string } }[];
  ports?: { name: string; containerPort: number }[];
  volumeMounts?: { name: string; mountPath: string; readOnly?: boolean }[];
  startupProbe?: Probe; readinessProbe?: Probe; livenessProbe?: Probe;
  resources?: { requests?: Obj; limits?: Obj };
  securityContext?: Obj & { capabilities?: { drop?: string[] } };
}
interface Volume { name: string; emptyDir?: Obj; persistentVolumeClaim?: { claimName: string }; secret?: { secretName: string; items?: { key: string; path: string }[] } }
interface PodSpec {
  containers: Container[]; volumes?: Volume[]; securityContext?: Obj & { seccompProfile?: { type: string } };
  serviceAccountName?: string; terminationGracePeriodSeconds?: number; restartPolicy?: string;
  nodeSelector?: Obj; tolerations?: Obj[]; imagePullSecrets?: { name: string }[]; runtimeClassName?: string;
}
interface PodTemplate { metadata: { labels: Record<string, string>; annotations?: Record<string, string> }; spec: PodSpec }
interface Resource {
  apiVersion: string; kind: string; source: string;
  metadata: { name: string; labels?: Record<string, string>; annotations?: Record<string, string> };
  // The rest of each kind is read through the small accessors below.
  spec?: any; data?: Record<string, unknown>;
}

interface Rendered { docs: Resource[]; notes: string; values: Obj }

/** Renders the chart as `helm install RELEASE -f ...` would: values merged, checked against the schema, then templated. */
function render(overrides: Obj[] = [], options: { release?: string; skipSchema?: boolean } = {}): Rendered {
  const values = overrides.reduce(mergeValues, defaults);
  if (!options.skipSchema) assert.deepEqual(schemaErrors(values), [], 'values pass values.schema.json');
  const result = runRenderer(values, options.release ?? 'sdxl');
  assert.equal(result.status, 0, `helm-render failed:\n${result.stderr}`);
  return { docs: splitManifests(result.stdout), notes: fs.readFileSync(result.notesFile, 'utf8'), values };
}

/** The renderer's error for values that must not render. */
function renderError(overrides: Obj[]): string {
  const result = runRenderer(overrides.reduce(mergeValues, defaults), 'sdxl');
  assert.notEqual(result.status, 0, 'rendering fails');
  return result.stderr;
}

function runRenderer(values: Obj, release: string, chart = chartDir) {
  const dir = fs.mkdtempSync(path.join(workDir, 'run-'));
  const valuesFile = path.join(dir, 'values.json');
  const chartFile = path.join(dir, 'chart.json');
  const notesFile = path.join(dir, 'NOTES.txt');
  fs.writeFileSync(valuesFile, JSON.stringify(values));
  fs.writeFileSync(chartFile, JSON.stringify(chartYaml));
  const args = ['-chart', chart, '-chart-json', chartFile, '-values', valuesFile, '-release', release, '-namespace', 'lora', '-notes', notesFile];
  const result = spawnSync(renderer, args, { encoding: 'utf8' });
  return { status: result.status, stdout: result.stdout, stderr: result.stderr, notesFile };
}

/** `# Source:` chunks, each parsed as YAML 1.1 documents; any error or warning fails, empty documents are dropped. */
function splitManifests(stdout: string): Resource[] {
  const docs: Resource[] = [];
  const chunks = stdout.split(/^# Source: (.+)$/m);
  for (let i = 1; i < chunks.length; i += 2) {
    const source = chunks[i]!;
    for (const doc of parseAllDocuments(chunks[i + 1]!, { version: '1.1' })) {
      assert.deepEqual([...doc.errors, ...doc.warnings].map(String), [], `${source} is valid YAML`);
      const value: unknown = doc.toJS();
      if (value === null) continue;
      assert.ok(isObj(value), `${source} holds a map`);
      docs.push({ ...(value as Omit<Resource, 'source'>), source });
    }
  }
  return docs;
}

// ---- helpers: reading rendered resources

function ofKind(docs: Resource[], kind: string): Resource[] {
  return docs.filter((doc) => doc.kind === kind);
}

/** The one resource of a kind whose component label (api, worker, migrate) or name matches. */
function one(docs: Resource[], kind: string, component?: string): Resource {
  const found = ofKind(docs, kind).filter((doc) => component === undefined || doc.metadata.labels?.['app.kubernetes.io/component'] === component);
  assert.equal(found.length, 1, `one ${kind}${component ? ` (${component})` : ''}`);
  return found[0]!;
}

function pod(workload: Resource): PodTemplate {
  return workload.spec.template as PodTemplate;
}

function mainContainer(workload: Resource): Container {
  const containers = pod(workload).spec.containers;
  assert.equal(containers.length, 1, `${workload.metadata.name} has one container`);
  return containers[0]!;
}

/** Variables a container gets: its ConfigMaps (envFrom) first, then env, as the kubelet applies them. */
function effectiveEnv(docs: Resource[], container: Container): Map<string, EnvVar> {
  const env = new Map<string, EnvVar>();
  for (const from of container.envFrom ?? []) {
    const configMap = ofKind(docs, 'ConfigMap').find((doc) => doc.metadata.name === from.configMapRef?.name);
    assert.ok(configMap, `ConfigMap ${from.configMapRef?.name} exists`);
    for (const [name, value] of Object.entries(configMap.data ?? {})) env.set(name, { name, value });
  }
  for (const entry of container.env ?? []) env.set(entry.name, entry);
  return env;
}

function workloads(docs: Resource[]): Resource[] {
  return docs.filter((doc) => doc.kind === 'Deployment' || doc.kind === 'Job');
}

function matches(selector: Record<string, string>, labels: Record<string, string> | undefined): boolean {
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

/**
 * What the API server and controllers would connect: selectors find pods, named ports exist, claims,
 * ConfigMaps and ServiceAccounts are the chart's or the ones the values name.
 */
function checkReferences(rendered: Rendered, external: { claims?: string[]; serviceAccounts?: string[] } = {}): void {
  const { docs } = rendered;
  const deployments = ofKind(docs, 'Deployment');
  const names = (kind: string) => ofKind(docs, kind).map((doc) => doc.metadata.name);
  for (const deployment of deployments) {
    assert.ok(matches(deployment.spec.selector.matchLabels, pod(deployment).metadata.labels), `${deployment.metadata.name} selects its own pods`);
  }
  for (const workload of workloads(docs)) {
    const spec = pod(workload).spec;
    const volumes = new Map((spec.volumes ?? []).map((volume) => [volume.name, volume]));
    for (const container of spec.containers) {
      const portNames = (container.ports ?? []).map((port) => port.name);
      for (const probe of [container.startupProbe, container.readinessProbe, container.livenessProbe]) {
        const port = probe?.httpGet?.port;
        if (typeof port === 'string') assert.ok(portNames.includes(port), `${workload.metadata.name} probes port ${port}, which it declares`);
        if (typeof port === 'number') assert.ok(container.ports?.some((p) => p.containerPort === port), `${workload.metadata.name} declares port ${port}`);
      }
      for (const mount of container.volumeMounts ?? []) assert.ok(volumes.has(mount.name), `${workload.metadata.name} mounts volume ${mount.name}, which it has`);
    }
    for (const volume of volumes.values()) {
      const claim = volume.persistentVolumeClaim?.claimName;
      if (claim) assert.ok(names('PersistentVolumeClaim').includes(claim) || external.claims?.includes(claim), `claim ${claim} exists or is given`);
    }
    const account = spec.serviceAccountName;
    if (account) assert.ok(names('ServiceAccount').includes(account) || external.serviceAccounts?.includes(account), `ServiceAccount ${account} exists or is given`);
  }
  for (const service of ofKind(docs, 'Service')) {
    const selected = deployments.filter((deployment) => matches(service.spec.selector, pod(deployment).metadata.labels));
    assert.equal(selected.length, 1, `Service ${service.metadata.name} selects one Deployment's pods`);
    const ports = mainContainer(selected[0]!).ports ?? [];
    for (const port of service.spec.ports as { name: string; targetPort: string }[]) {
      assert.ok(ports.some((p) => p.name === port.targetPort), `Service ${service.metadata.name} targets port ${port.targetPort}, which the pods declare`);
    }
  }
  for (const pdb of ofKind(docs, 'PodDisruptionBudget')) {
    assert.equal(deployments.filter((d) => matches(pdb.spec.selector.matchLabels, pod(d).metadata.labels)).length, 1, `PDB ${pdb.metadata.name} covers one Deployment`);
  }
  for (const hpa of ofKind(docs, 'HorizontalPodAutoscaler')) assert.ok(names('Deployment').includes(hpa.spec.scaleTargetRef.name), 'the HPA scales a Deployment of the chart');
  for (const ingress of ofKind(docs, 'Ingress')) {
    for (const rule of ingress.spec.rules as { http: { paths: { backend: { service: { name: string; port: { name: string } } } }[] } }[]) {
      for (const { backend } of rule.http.paths) {
        const service = ofKind(docs, 'Service').find((s) => s.metadata.name === backend.service.name);
        assert.ok(service, `the Ingress routes to Service ${backend.service.name}`);
        assert.ok((service.spec.ports as { name: string }[]).some((p) => p.name === backend.service.port.name), 'on a port the Service has');
      }
    }
  }
  for (const monitor of ofKind(docs, 'ServiceMonitor')) {
    const expressions = (monitor.spec.selector.matchExpressions ?? []) as { key: string; operator: string; values: string[] }[];
    const selected = ofKind(docs, 'Service').filter(
      (s) => matches(monitor.spec.selector.matchLabels, s.metadata.labels) && expressions.every((e) => e.operator === 'In' && e.values.includes(s.metadata.labels?.[e.key] ?? '')),
    );
    assert.deepEqual(selected.map((s) => s.metadata.labels?.['app.kubernetes.io/component']).sort(), ['api', 'worker'], 'the ServiceMonitor scrapes the api and worker Services');
    for (const endpoint of monitor.spec.endpoints as { port: string }[]) {
      for (const service of selected) assert.ok((service.spec.ports as { name: string }[]).some((p) => p.name === endpoint.port), `${service.metadata.name} has port ${endpoint.port}`);
    }
  }
}

// ---- the values sets rendered below

/** Every optional part on: Ingress, ServiceMonitor with a token, HPA, existing claims and ServiceAccount, the Anthropic key. */
const everything: Obj = {
  imagePullSecrets: [{ name: 'regcred' }],
  config: { LOG_LEVEL: 'debug', CAPTION_DEFAULT_PROVIDER: 'anthropic' },
  anthropic: { existingSecret: 'sdxl-anthropic' },
  persistence: { data: { existingClaim: 'shared-data' }, models: { existingClaim: 'shared-models' } },
  tmpVolume: { sizeLimit: '8Gi' },
  serviceAccount: { create: false, name: 'sdxl-runner' },
  api: { autoscaling: { enabled: true } },
  worker: { preloadModels: ['stable-diffusion-xl-base-1.0', 'sd_xl_refiner_1.0.safetensors'], extraEnv: [{ name: 'MODEL_CACHE_BYTES', value: '34359738368' }] },
  ingress: {
    enabled: true,
    className: 'nginx',
    annotations: { 'nginx.ingress.kubernetes.io/proxy-body-size': '100m' },
    hosts: [{ host: 'sdxl.example.com', paths: [{ path: '/', pathType: 'Prefix' }] }],
    tls: [{ secretName: 'sdxl-tls', hosts: ['sdxl.example.com'] }],
  },
  metrics: { token: { existingSecret: 'sdxl-metrics' }, serviceMonitor: { enabled: true, labels: { release: 'prometheus' } } },
};

let rendered: { defaults: Rendered; gpu: Rendered; everything: Rendered };
before(() => {
  rendered = { defaults: render(), gpu: render([gpuExample]), everything: render([everything]) };
});

function allRenders(): [string, Rendered][] {
  return Object.entries(rendered);
}

// ---- Chart.yaml, values.yaml, values.schema.json

test('Chart.yaml: apiVersion v2, an application, appVersion = package.json version', () => {
  assert.equal(chartYaml.apiVersion, 'v2');
  assert.equal(chartYaml.name, 'sdxl-lora-service');
  assert.equal(chartYaml.type, 'application');
  assert.match(String(chartYaml.version), /^\d+\.\d+\.\d+$/);
  assert.equal(chartYaml.appVersion, packageVersion);
  assert.ok(typeof chartYaml.description === 'string' && chartYaml.description.length > 0);
});

test('values.yaml and examples/gpu-values.yaml pass values.schema.json (draft-07)', () => {
  assert.equal(schema.$schema, 'http://json-schema.org/draft-07/schema#');
  assert.deepEqual(schemaErrors(defaults), []);
  assert.deepEqual(schemaErrors(mergeValues(defaults, gpuExample)), []);
  assert.deepEqual(schemaErrors(mergeValues(defaults, everything)), []);
});

test('values.schema.json refuses wrong values and says where', () => {
  const cases: [Obj, string][] = [
    [{ worker: { replicaCount: -1 } }, '/worker/replicaCount must be >= 0'],
    [{ image: { pullPolicy: 'Sometimes' } }, '/image/pullPolicy must be equal to one of the allowed values'],
    [{ imagePullPolicy: 'Always' }, '/ must NOT have additional properties (imagePullPolicy)'],
    [{ api: { replicas: 3 } }, '/api must NOT have additional properties (replicas)'],
    [{ service: { type: 'ExternalName' } }, '/service/type must be equal to one of the allowed values'],
    [{ worker: { trainDevice: 'gpu' } }, '/worker/trainDevice must match pattern'],
    [{ worker: { terminationGracePeriodSeconds: 5 } }, '/worker/terminationGracePeriodSeconds must be >= 15'],
    [{ worker: { gpu: { count: 0 } } }, '/worker/gpu/count must be >= 1'],
    [{ config: { DATABASE_POOL_MAX: 10 } }, '/config/DATABASE_POOL_MAX must be string'],
    [{ config: { ROLE: 'all' } }, '/config property name must be valid (ROLE)'],
    [{ database: { existingSecret: '' } }, '/database/existingSecret must match pattern'],
  ];
  for (const [override, expected] of cases) {
    const errors = schemaErrors(mergeValues(defaults, override));
    assert.ok(errors.some((line) => line.startsWith(expected)), `${JSON.stringify(override)} fails with "${expected}", got:\n${errors.join('\n')}`);
  }
});

test('the schema bounds the worker slots as src/config.ts does', () => {
  const worker = ((schema.properties as Obj).worker as { properties: Record<string, { minimum?: number; maximum?: number }> }).properties;
  const env = EnvSchema.properties as Record<string, { minimum?: number; maximum?: number }>;
  for (const [key, variable] of [['trainingSlots', 'TRAINING_SLOTS'], ['generationSlots', 'GENERATION_SLOTS'], ['captionJobs', 'CAPTION_WORKER_JOBS'], ['webhookSlots', 'WEBHOOK_SLOTS']] as const) {
    assert.equal(worker[key]?.minimum, env[variable]?.minimum, `${key} minimum`);
    assert.equal(worker[key]?.maximum, env[variable]?.maximum, `${key} maximum`);
  }
});

test('every ## @param names a key of values.yaml, in the keys\' order, and every leaf key has one', () => {
  const text = fs.readFileSync(path.join(chartDir, 'values.yaml'), 'utf8');
  const documented = [...text.matchAll(/^\s*## @param (\S+) \S/gm)].map((match) => match[1]!);
  // Key paths in document order; a leaf is a scalar, a list or an empty map.
  const keys: string[] = [];
  const leaves: string[] = [];
  const walk = (node: Obj, prefix: string) => {
    for (const [key, value] of Object.entries(node)) {
      const at = prefix + key;
      keys.push(at);
      if (isObj(value) && Object.keys(value).length > 0) walk(value, `${at}.`);
      else leaves.push(at);
    }
  };
  walk(defaults, '');
  for (const name of documented) assert.ok(keys.includes(name), `@param ${name} is a key of values.yaml`);
  assert.deepEqual(documented, keys.filter((key) => documented.includes(key)), '@param lines follow the order of the keys');
  // A documented object the schema passes through to Kubernetes (a probe, a security context) covers its children.
  const passThrough = (key: string) => String(schemaAt(key)?.description ?? '').includes('passed through');
  for (const leaf of leaves) {
    const parts = leaf.split('.');
    const covered = parts.some((_, i) => {
      const ancestor = parts.slice(0, i + 1).join('.');
      return documented.includes(ancestor) && (ancestor === leaf || passThrough(ancestor));
    });
    assert.ok(covered, `${leaf} has a ## @param`);
  }
});

/** The schema node of a values key path, following $ref into definitions. */
function schemaAt(keyPath: string): Obj | undefined {
  const resolve = (node: Obj | undefined): Obj | undefined => {
    const ref = node?.$ref;
    return typeof ref === 'string' ? resolve((schema.definitions as Obj)[ref.replace('#/definitions/', '')] as Obj) : node;
  };
  let node = resolve(schema);
  for (const part of keyPath.split('.')) {
    const properties = node?.properties as Obj | undefined;
    node = resolve((properties?.[part] ?? (isObj(node?.additionalProperties) ? node.additionalProperties : undefined)) as Obj | undefined);
  }
  return node;
}

// ---- rendered manifests

test('defaults render the expected resources, each named and labelled, and their references resolve', () => {
  const { docs } = rendered.defaults;
  const kinds = docs.map((doc) => doc.kind).sort();
  assert.deepEqual(kinds, ['ConfigMap', 'Deployment', 'Deployment', 'Job', 'PersistentVolumeClaim', 'PersistentVolumeClaim', 'PodDisruptionBudget', 'PodDisruptionBudget', 'Service', 'Service', 'ServiceAccount']);
  for (const [name, { docs: all }] of allRenders()) {
    for (const doc of all) {
      const where = `${name}: ${doc.source} ${doc.kind}`;
      assert.ok(doc.apiVersion && doc.kind && doc.metadata.name, `${where} has apiVersion, kind and name`);
      assert.ok(doc.metadata.name.length <= 63, `${where} name fits a DNS label`);
      assert.equal(doc.metadata.labels?.['app.kubernetes.io/name'], 'sdxl-lora-service', `${where} labels`);
      assert.equal(doc.metadata.labels?.['app.kubernetes.io/instance'], 'sdxl', `${where} labels`);
      assert.equal(doc.metadata.labels?.['app.kubernetes.io/managed-by'], 'Helm', `${where} labels`);
      assert.equal(doc.metadata.labels?.['app.kubernetes.io/version'], packageVersion, `${where} labels`);
    }
    const ids = all.map((doc) => `${doc.kind}/${doc.metadata.name}`);
    assert.equal(new Set(ids).size, ids.length, `${name}: no two resources share kind and name`);
  }
  checkReferences(rendered.defaults);
  checkReferences(rendered.gpu);
  checkReferences(rendered.everything, { claims: ['shared-data', 'shared-models'], serviceAccounts: ['sdxl-runner'] });
});

test('pods run as the image\'s non-root user on a read-only root file system with a writable /tmp', () => {
  for (const [name, { docs }] of allRenders()) {
    for (const workload of workloads(docs)) {
      const where = `${name}: ${workload.metadata.name}`;
      const spec = pod(workload).spec;
      assert.equal(spec.securityContext?.runAsNonRoot, true, where);
      assert.equal(spec.securityContext?.runAsUser, 10001, where);
      assert.equal(spec.securityContext?.runAsGroup, 10001, where);
      assert.equal(spec.securityContext?.fsGroup, 10001, where);
      assert.equal(spec.securityContext?.seccompProfile?.type, 'RuntimeDefault', where);
      for (const container of spec.containers) {
        assert.equal(container.securityContext?.readOnlyRootFilesystem, true, where);
        assert.equal(container.securityContext?.allowPrivilegeEscalation, false, where);
        assert.equal(container.securityContext?.runAsNonRoot, true, where);
        assert.deepEqual(container.securityContext?.capabilities?.drop, ['ALL'], where);
        const tmp = container.volumeMounts?.find((mount) => mount.mountPath === '/tmp');
        assert.ok(tmp, `${where} mounts /tmp`);
        assert.ok(spec.volumes?.find((volume) => volume.name === tmp.name)?.emptyDir, `${where} /tmp is an emptyDir`);
      }
    }
  }
  const tmp = pod(one(rendered.everything.docs, 'Deployment', 'worker')).spec.volumes?.find((volume) => volume.name === 'tmp');
  assert.equal(tmp?.emptyDir?.sizeLimit, '8Gi');
});

test('api and worker: roles, listening address, shared volumes, probes, no migration at start', () => {
  const { docs } = rendered.defaults;
  for (const role of ['api', 'worker']) {
    const deployment = one(docs, 'Deployment', role);
    const container = mainContainer(deployment);
    const env = effectiveEnv(docs, container);
    assert.equal(env.get('ROLE')?.value, role);
    assert.equal(env.get('HOST')?.value, '0.0.0.0');
    assert.equal(env.get('PORT')?.value, '3000');
    assert.deepEqual(container.ports, [{ name: 'http', containerPort: 3000, protocol: 'TCP' }]);
    assert.equal(env.get('MIGRATE_ON_START')?.value, 'false', `${role} pods leave migrations to the Job`);
    assert.equal(env.get('DATA_DIR')?.value, '/data');
    assert.equal(env.get('MODELS_DIR')?.value, '/models');
    const mounts = Object.fromEntries((container.volumeMounts ?? []).map((mount) => [mount.mountPath, mount.name]));
    assert.equal(mounts['/data'], 'data');
    assert.equal(mounts['/models'], 'models');
    assert.equal(container.startupProbe?.httpGet?.path, '/readyz', `${role} startup probe`);
    assert.equal(container.readinessProbe?.httpGet?.path, '/readyz', `${role} readiness probe`);
    assert.equal(container.livenessProbe?.httpGet?.path, '/healthz', `${role} liveness probe`);
    assert.equal(container.image, `sdxl-lora-service:${packageVersion}`);
    const database = env.get('DATABASE_URL')?.valueFrom?.secretKeyRef;
    assert.deepEqual(database, { name: 'sdxl-lora-service-database', key: 'DATABASE_URL' }, `${role} reads DATABASE_URL from the Secret`);
    assert.ok(pod(deployment).metadata.annotations?.['checksum/config']?.match(/^[0-9a-f]{64}$/), `${role} pods roll with the ConfigMap`);
    assert.equal(env.has('ANTHROPIC_API_KEY_FILE'), false, 'no Anthropic key unless configured');
    assert.equal(env.has('METRICS_TOKEN'), false, 'no metrics token unless configured');
  }
  const worker = mainContainer(one(docs, 'Deployment', 'worker'));
  const startup = worker.startupProbe!;
  assert.ok((startup.failureThreshold ?? 3) * (startup.periodSeconds ?? 10) >= 600, 'workers get at least 10 minutes to load models');
  const workerEnv = effectiveEnv(docs, worker);
  assert.deepEqual(['GENERATION_SLOTS', 'CAPTION_WORKER_JOBS', 'WEBHOOK_SLOTS'].map((name) => workerEnv.get(name)?.value), ['1', '2', '16']);
  assert.equal(workerEnv.has('TRAINING_SLOTS'), false, 'TRAINING_SLOTS unset: one per training device');
  assert.equal(workerEnv.has('TRAIN_DEVICE'), false, 'TRAIN_DEVICE unset: the engine picks cuda when it sees a GPU');
  assert.equal(workerEnv.has('TRAIN_DEVICES'), false, 'no GPU asked: no device list');
  assert.equal(one(docs, 'Deployment', 'api').spec.replicas, 2);
  assert.equal(one(docs, 'Deployment', 'worker').spec.strategy.rollingUpdate.maxSurge, 0, 'a rollout needs no spare GPU');
});

test('every variable the chart sets is one the service reads (src/config.ts), set once, as a string', () => {
  const known = new Set(Object.keys(EnvSchema.properties));
  for (const [name, { docs }] of allRenders()) {
    for (const configMap of ofKind(docs, 'ConfigMap')) {
      for (const [key, value] of Object.entries(configMap.data ?? {})) {
        assert.ok(known.has(key), `${name}: ConfigMap sets ${key}, which src/config.ts does not read`);
        assert.equal(typeof value, 'string', `${name}: ConfigMap ${key} is a string`);
      }
    }
    for (const workload of workloads(docs)) {
      for (const container of pod(workload).spec.containers) {
        const names = (container.env ?? []).map((entry) => entry.name);
        assert.equal(new Set(names).size, names.length, `${name}: ${workload.metadata.name} sets each variable once`);
        for (const entry of container.env ?? []) {
          assert.ok(known.has(entry.name), `${name}: ${workload.metadata.name} sets ${entry.name}, which src/config.ts does not read`);
          assert.ok(typeof entry.value === 'string' || entry.valueFrom, `${name}: ${workload.metadata.name} ${entry.name} is a string or from a Secret`);
        }
      }
    }
  }
});

test('SHUTDOWN_GRACE_MS is terminationGracePeriodSeconds minus 10 s', () => {
  const grace = (docs: Resource[], role: string) => {
    const deployment = one(docs, 'Deployment', role);
    return [pod(deployment).spec.terminationGracePeriodSeconds, effectiveEnv(docs, mainContainer(deployment)).get('SHUTDOWN_GRACE_MS')?.value];
  };
  assert.deepEqual(grace(rendered.defaults.docs, 'worker'), [120, '110000']);
  assert.deepEqual(grace(rendered.defaults.docs, 'api'), [30, '20000']);
  const { docs } = render([{ worker: { terminationGracePeriodSeconds: 600 }, api: { terminationGracePeriodSeconds: 45 } }]);
  assert.deepEqual(grace(docs, 'worker'), [600, '590000']);
  assert.deepEqual(grace(docs, 'api'), [45, '35000']);
});

test('the migration Job is a pre-install/pre-upgrade hook that needs no other resource of the chart', () => {
  for (const [name, { docs }] of allRenders()) {
    const job = one(docs, 'Job', 'migrate');
    assert.deepEqual(job.metadata.annotations, {
      'helm.sh/hook': 'pre-install,pre-upgrade',
      'helm.sh/hook-weight': '0',
      'helm.sh/hook-delete-policy': 'before-hook-creation,hook-succeeded',
    });
    const spec = pod(job).spec;
    const container = mainContainer(job);
    assert.deepEqual(container.args, ['node', 'dist/src/cli/migrate.js']);
    assert.equal(container.command, undefined, 'the image\'s entrypoint (tini) stays');
    assert.equal(spec.restartPolicy, 'Never');
    // At pre-install nothing but hooks and your Secrets exists: no ConfigMap, claim or chart ServiceAccount.
    assert.equal(container.envFrom, undefined, `${name}: the Job's variables are inline`);
    assert.ok(!spec.volumes?.some((volume) => volume.persistentVolumeClaim), `${name}: the Job mounts no claim`);
    assert.equal(spec.serviceAccountName, undefined, `${name}: the Job runs under the namespace's default ServiceAccount`);
    // ...and the same variables the ConfigMap gives the pods.
    const configMap = one(docs, 'ConfigMap');
    const env = effectiveEnv(docs, container);
    for (const [key, value] of Object.entries(configMap.data ?? {})) assert.equal(env.get(key)?.value, value, `${name}: the Job has ${key} as the pods do`);
    assert.equal(env.get('DATABASE_URL')?.valueFrom?.secretKeyRef?.name, 'sdxl-lora-service-database');
    assert.equal(env.has('METRICS_TOKEN'), false);
  }
  const withAccount = render([{ migrate: { serviceAccountName: 'migrator' } }]);
  assert.equal(pod(one(withAccount.docs, 'Job', 'migrate')).spec.serviceAccountName, 'migrator');
});

test('migrate.enabled=false: no Job, and every pod migrates at start', () => {
  const { docs } = render([{ migrate: { enabled: false } }]);
  assert.equal(ofKind(docs, 'Job').length, 0);
  assert.equal(one(docs, 'ConfigMap').data?.MIGRATE_ON_START, 'true');
});

test('GPU example: workers ask for nvidia.com/gpu on GPU nodes with the CUDA image; the api does not', () => {
  const { docs } = rendered.gpu;
  const worker = one(docs, 'Deployment', 'worker');
  const container = mainContainer(worker);
  assert.equal(container.resources?.limits?.['nvidia.com/gpu'], 1);
  assert.equal(container.resources?.limits?.memory, '64Gi', 'the values\' limits stay beside the GPU');
  assert.deepEqual(pod(worker).spec.tolerations, (gpuExample.worker as Obj).tolerations);
  assert.deepEqual(pod(worker).spec.nodeSelector, { 'nvidia.com/gpu.present': 'true' });
  assert.equal(container.image, `sdxl-lora-service:${packageVersion}-cuda`);
  const env = effectiveEnv(docs, container);
  assert.equal(env.get('TRAIN_DEVICES')?.value, 'cuda:0', 'the pod\'s one GPU');
  assert.equal(env.has('TRAIN_DEVICE'), false);
  assert.equal(env.get('PRELOAD_MODELS')?.value, 'stable-diffusion-xl-base-1.0');
  assert.equal(one(docs, 'Deployment', 'worker').spec.replicas, 2);

  const api = mainContainer(one(docs, 'Deployment', 'api'));
  assert.equal(api.resources?.limits?.['nvidia.com/gpu'], undefined);
  assert.equal(api.image, `sdxl-lora-service:${packageVersion}`);
  assert.equal(pod(one(docs, 'Deployment', 'api')).spec.tolerations, undefined);

  const cpu = mainContainer(one(rendered.defaults.docs, 'Deployment', 'worker'));
  assert.equal(cpu.resources?.limits?.['nvidia.com/gpu'], undefined, 'no GPU unless worker.gpu.enabled');
  assert.equal(pod(one(rendered.defaults.docs, 'Deployment', 'worker')).spec.tolerations, undefined);

  const mig = render([gpuExample, { worker: { gpu: { count: 2, resourceName: 'nvidia.com/mig-3g.40gb' }, runtimeClassName: 'nvidia' } }]);
  const migWorker = one(mig.docs, 'Deployment', 'worker');
  assert.equal(mainContainer(migWorker).resources?.limits?.['nvidia.com/mig-3g.40gb'], 2);
  assert.equal(pod(migWorker).spec.runtimeClassName, 'nvidia');
});

test('worker.gpu.count: the GPU limit and TRAIN_DEVICES cuda:0..N-1; trainDevice and trainingSlots override', () => {
  const workerOf = (overrides: Obj[]) => {
    const { docs } = render([gpuExample, ...overrides]);
    const container = mainContainer(one(docs, 'Deployment', 'worker'));
    return { limits: container.resources?.limits, env: effectiveEnv(docs, container) };
  };
  const four = workerOf([{ worker: { gpu: { count: 4 } } }]);
  assert.equal(four.limits?.['nvidia.com/gpu'], 4);
  assert.equal(four.env.get('TRAIN_DEVICES')?.value, 'cuda:0,cuda:1,cuda:2,cuda:3');
  assert.equal(four.env.has('TRAINING_SLOTS'), false, 'one run per GPU unless set');
  const capped = workerOf([{ worker: { gpu: { count: 2 }, trainingSlots: 1 } }]);
  assert.equal(capped.env.get('TRAINING_SLOTS')?.value, '1');
  assert.equal(workerOf([{ worker: { trainingSlots: 0 } }]).env.get('TRAINING_SLOTS')?.value, '0', 'a worker pod that trains nothing');
  const shared = workerOf([{ worker: { trainDevice: 'cuda' } }]);
  assert.equal(shared.env.get('TRAIN_DEVICE')?.value, 'cuda');
  assert.equal(shared.env.has('TRAIN_DEVICES'), false, 'never both (the service refuses both)');
  assert.ok(schemaErrors(mergeValues(defaults, { worker: { gpu: { count: 0 } } })).some((line) => line.startsWith('/worker/gpu/count')));
});

test('optional parts: Ingress, ServiceMonitor with a token, HPA, existing claims and the Anthropic key file', () => {
  const { docs } = rendered.everything;
  for (const kind of ['Ingress', 'ServiceMonitor', 'HorizontalPodAutoscaler']) {
    assert.equal(ofKind(rendered.defaults.docs, kind).length, 0, `no ${kind} by default`);
    assert.equal(ofKind(docs, kind).length, 1, `a ${kind} when enabled`);
  }
  assert.equal(ofKind(docs, 'PersistentVolumeClaim').length, 0, 'no claim is created when existing ones are given');
  assert.equal(ofKind(docs, 'ServiceAccount').length, 0);
  for (const claim of ofKind(rendered.defaults.docs, 'PersistentVolumeClaim')) {
    assert.deepEqual(claim.spec.accessModes, ['ReadWriteMany'], `${claim.metadata.name} is shared by every replica`);
    assert.equal(claim.metadata.annotations?.['helm.sh/resource-policy'], 'keep');
    assert.equal(claim.spec.storageClassName, undefined, 'the cluster\'s default class');
  }
  const classes = render([{ persistence: { data: { storageClass: 'nfs-client', keep: false }, models: { storageClass: '-' } } }]);
  const claims = Object.fromEntries(ofKind(classes.docs, 'PersistentVolumeClaim').map((claim) => [claim.metadata.name, claim]));
  assert.equal(claims['sdxl-sdxl-lora-service-data']?.spec.storageClassName, 'nfs-client');
  assert.equal(claims['sdxl-sdxl-lora-service-data']?.metadata.annotations, undefined);
  assert.equal(claims['sdxl-sdxl-lora-service-models']?.spec.storageClassName, '', '"-": no dynamic provisioning');

  const hpa = one(docs, 'HorizontalPodAutoscaler');
  assert.equal(hpa.apiVersion, 'autoscaling/v2');
  assert.deepEqual(hpa.spec.metrics[0].resource, { name: 'cpu', target: { type: 'Utilization', averageUtilization: 70 } });
  assert.equal(one(docs, 'Deployment', 'api').spec.replicas, undefined, 'the HPA owns the api replica count');

  const ingress = one(docs, 'Ingress');
  assert.equal(ingress.spec.ingressClassName, 'nginx');
  assert.equal(ingress.spec.rules[0].host, 'sdxl.example.com');
  assert.deepEqual(ingress.spec.tls, [{ secretName: 'sdxl-tls', hosts: ['sdxl.example.com'] }]);

  const monitor = one(docs, 'ServiceMonitor');
  assert.equal(monitor.apiVersion, 'monitoring.coreos.com/v1');
  assert.equal(monitor.metadata.labels?.release, 'prometheus');
  assert.deepEqual(monitor.spec.endpoints[0], {
    port: 'http', path: '/metrics', interval: '30s', scrapeTimeout: '10s',
    authorization: { type: 'Bearer', credentials: { name: 'sdxl-metrics', key: 'token' } },
  });
  const workerService = ofKind(docs, 'Service').find((service) => service.metadata.labels?.['app.kubernetes.io/component'] === 'worker');
  assert.equal(workerService?.metadata.name, 'sdxl-sdxl-lora-service-worker');

  for (const workload of workloads(docs)) {
    const spec = pod(workload).spec;
    const container = mainContainer(workload);
    const env = effectiveEnv(docs, container);
    const where = workload.metadata.name;
    assert.deepEqual(spec.imagePullSecrets, [{ name: 'regcred' }], where);
    // ANTHROPIC_API_KEY_FILE is the Secret's key, mounted read-only.
    const file = String(env.get('ANTHROPIC_API_KEY_FILE')?.value);
    const mount = container.volumeMounts?.find((m) => file.startsWith(`${m.mountPath}/`));
    assert.ok(mount?.readOnly, `${where}: ${file} is on a read-only mount`);
    const secret = spec.volumes?.find((volume) => volume.name === mount.name)?.secret;
    assert.equal(secret?.secretName, 'sdxl-anthropic', where);
    assert.deepEqual(secret?.items, [{ key: 'api-key', path: path.posix.relative(mount.mountPath, file) }], `${where}: the file is the Secret's key`);
    if (workload.kind === 'Deployment') {
      assert.deepEqual(env.get('METRICS_TOKEN')?.valueFrom?.secretKeyRef, { name: 'sdxl-metrics', key: 'token' }, where);
      const claims = spec.volumes?.flatMap((volume) => volume.persistentVolumeClaim?.claimName ?? []);
      assert.deepEqual(claims, ['shared-data', 'shared-models'], where);
      assert.equal(spec.serviceAccountName, 'sdxl-runner', where);
    }
  }
  const worker = effectiveEnv(docs, mainContainer(one(docs, 'Deployment', 'worker')));
  assert.equal(worker.get('PRELOAD_MODELS')?.value, 'stable-diffusion-xl-base-1.0,sd_xl_refiner_1.0.safetensors');
  assert.equal(worker.get('MODEL_CACHE_BYTES')?.value, '34359738368', 'extraEnv is passed through');
});

test('pods roll when the ConfigMap changes (checksum/config)', () => {
  const checksum = (r: Rendered, role: string) => pod(one(r.docs, 'Deployment', role)).metadata.annotations?.['checksum/config'];
  const again = render();
  const changed = render([{ config: { LOG_LEVEL: 'debug' } }]);
  for (const role of ['api', 'worker']) {
    assert.equal(checksum(again, role), checksum(rendered.defaults, role), 'the same values, the same checksum');
    assert.notEqual(checksum(changed, role), checksum(rendered.defaults, role), 'a changed variable, a new checksum');
  }
  assert.equal(checksum(rendered.defaults, 'api'), checksum(rendered.defaults, 'worker'));
});

test('names stay DNS labels and distinct for the longest release name Helm allows', () => {
  const release = `r${'x'.repeat(52)}`; // 53 characters: helm's limit
  const { docs } = render([], { release });
  const ids = docs.map((doc) => `${doc.kind}/${doc.metadata.name}`);
  assert.equal(new Set(ids).size, ids.length);
  for (const doc of docs) assert.match(doc.metadata.name, /^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/, `${doc.kind} ${doc.metadata.name}`);
  assert.equal(one(docs, 'Deployment', 'api').metadata.name.endsWith('-api'), true);
  assert.equal(one(docs, 'Job', 'migrate').metadata.name.endsWith('-migrate'), true);
});

test('rendering stops where values the schema cannot relate are missing (required)', () => {
  // The schema refuses an empty name first; the template says why as well, for `helm template` users.
  assert.match(renderError([{ database: { existingSecret: '' } }]), /database\.existingSecret is required/);
  // Utilization is a share of the CPU request: no request, no HPA.
  assert.match(renderError([{ api: { autoscaling: { enabled: true }, resources: { requests: null } } }]), /api\.autoscaling needs api\.resources\.requests\.cpu/);
});

test('NOTES.txt tells how to reach the API and create the first API key', () => {
  const { notes } = rendered.defaults;
  assert.match(notes, /kubectl -n lora exec deployment\/sdxl-sdxl-lora-service-api -- node dist\/src\/cli\/create-api-key\.js --tenant NAME/);
  assert.match(notes, /port-forward service\/sdxl-sdxl-lora-service 8080:80/);
  assert.match(notes, /worker\.gpu\.enabled=false/);
  assert.doesNotMatch(notes, /<no value>|<nil>/);
  const withIngress = rendered.everything.notes;
  assert.match(withIngress, /https:\/\/sdxl\.example\.com\//);
  assert.doesNotMatch(withIngress, /captioning with Anthropic is off/);
  assert.doesNotMatch(rendered.gpu.notes, /worker\.gpu\.enabled=false/);
});

test('the renderer: an unknown function fails to parse; toYaml round-trips YAML 1.1; numbers print as Helm prints them', () => {
  const chart = fs.mkdtempSync(path.join(workDir, 'chart-'));
  fs.mkdirSync(path.join(chart, 'templates'));
  const template = path.join(chart, 'templates', 'probe.yaml');
  // A function the renderer lacks (lookup needs a cluster) stops it, so the chart cannot use one unchecked.
  fs.writeFileSync(template, '{{ lookup "v1" "Secret" .Release.Namespace "x" }}\n');
  const refused = runRenderer({}, 'sdxl', chart);
  assert.notEqual(refused.status, 0);
  assert.match(refused.stderr, /function "lookup" not defined/);

  // Strings YAML 1.1 would read as booleans, numbers or null come back as strings.
  const values = {
    strings: ['true', 'on', 'No', '10', '1e3', '0x1F', '1:20', '2024-01-01', '', 'a: b', 'x #y', '-', '~', 'null', '100Gi', '250m', 'nvidia.com/gpu', 'multi\nline', 'é'],
    numbers: [0, 3000, 1.5, 17179869184], flags: [true, false], empty: { list: [], map: {} }, nothing: null,
  };
  fs.writeFileSync(template, 'kind: Probe\nvalues:\n  {{- toYaml .Values | nindent 2 }}\nprinted: "{{ index .Values.numbers 3 }}"\n');
  const result = runRenderer(values, 'sdxl', chart);
  assert.equal(result.status, 0, result.stderr);
  const [doc] = splitManifests(result.stdout) as unknown as { values: unknown; printed: string }[];
  assert.deepEqual(doc?.values, values);
  // Helm reads values numbers as float64: printed directly a big one becomes 1.7179869184e+10 (why config values are strings).
  assert.equal(doc?.printed, '1.7179869184e+10');
});
