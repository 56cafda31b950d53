// src/server.ts as a process: the embedded first start prints a key once, and SIGTERM
// stops accepting, lets an in-flight request finish, closes the database and exits 0.
import assert from 'node:assert/strict';
import { spawn, type ChildProcess } from 'node:child_process';
import fs from 'node:fs';
import http from 'node:http';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { test } from 'node:test';
import { projectRoot } from '../src/paths.js';

/** PGlite compiles its WebAssembly on start; a loaded CI machine may take a while. */
const START_TIMEOUT_MS = 120_000;

interface RunningServer {
  child: ChildProcess;
  port: number;
  output(): string;
  exited: Promise<number | null>;
}

function startServer(dataDir: string, env: Record<string, string> = {}): Promise<RunningServer> {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: projectRoot,
    env: { ...process.env, PORT: '0', HOST: '127.0.0.1', DATA_DIR: dataDir, DATABASE_URL: '', LOG_LEVEL: 'info', ...env },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let output = '';
  const exited = new Promise<number | null>((resolve) => child.on('exit', (code) => resolve(code)));
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      child.kill('SIGKILL');
      reject(new Error(`server did not start in time:\n${output}`));
    }, START_TIMEOUT_MS);
    const onData = (chunk: Buffer) => {
      output += chunk.toString();
      const match = /Server listening at http:\/\/127\.0\.0\.1:(\d+)/.exec(output);
      if (match) {
        clearTimeout(timer);
        resolve({ child, port: Number(match[1]), output: () => output, exited });
      }
    };
    child.stdout!.on('data', onData);
    child.stderr!.on('data', onData);
    void exited.then((code) => {
      clearTimeout(timer);
      reject(new Error(`server exited with ${code} before listening:\n${output}`));
    });
  });
}

function request(port: number, method: string, url: string, headers: Record<string, string> = {}, body?: string) {
  return new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request({ host: '127.0.0.1', port, method, path: url, headers }, (res) => {
      let data = '';
      res.on('data', (c) => (data += c));
      res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function connectionRefused(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = net.connect({ host: '127.0.0.1', port });
    socket.on('connect', () => {
      socket.destroy();
      resolve(false);
    });
    socket.on('error', () => resolve(true));
  });
}

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

test('embedded server: first start prints a key once; SIGTERM lets an in-flight request finish and exits 0', { timeout: 4 * START_TIMEOUT_MS }, async (t) => {
  const dataDir = fs.mkdtempSync(path.join(os.tmpdir(), 'sdxl-server-'));
  t.after(() => fs.rmSync(dataDir, { recursive: true, force: true }));

  // ---- first start on an empty DATA_DIR
  const first = await startServer(dataDir);
  t.after(() => first.child.kill('SIGKILL'));
  const keys = [...first.output().matchAll(/API_KEY=(sdxl_[A-Za-z0-9_-]+)/g)].map((m) => m[1]!);
  assert.equal(keys.length, 1, 'exactly one key printed');
  const auth = { authorization: `Bearer ${keys[0]}` };
  const listed = await request(first.port, 'GET', '/v1/datasets', auth);
  assert.equal(listed.status, 200, 'the printed key works');
  first.child.kill('SIGTERM');
  assert.equal(await first.exited, 0);
  assert.ok(fs.existsSync(path.join(dataDir, 'pglite')), 'the embedded database lives under DATA_DIR');

  // ---- second start: same database, no new key, the old key still works
  const second = await startServer(dataDir);
  t.after(() => second.child.kill('SIGKILL'));
  assert.doesNotMatch(second.output(), /API_KEY=/);
  assert.equal((await request(second.port, 'GET', '/readyz')).status, 200);

  // ---- SIGTERM while a request is in flight: its body arrives slowly, in two halves
  const body = JSON.stringify({ name: 'sent across a shutdown', class_word: 'dog' });
  const half = Math.floor(body.length / 2);
  const inflight = new Promise<{ status: number; body: string }>((resolve, reject) => {
    const req = http.request(
      {
        host: '127.0.0.1',
        port: second.port,
        method: 'POST',
        path: '/v1/datasets',
        headers: { ...auth, 'content-type': 'application/json', 'content-length': String(Buffer.byteLength(body)) },
      },
      (res) => {
        let data = '';
        res.on('data', (c) => (data += c));
        res.on('end', () => resolve({ status: res.statusCode ?? 0, body: data }));
      },
    );
    req.on('error', reject);
    req.write(body.slice(0, half));
    // The rest follows only after the server was told to stop.
    setTimeout(() => req.end(body.slice(half)), 1500);
  });
  await sleep(500);
  second.child.kill('SIGTERM');
  await sleep(500);
  assert.equal(await connectionRefused(second.port), true, 'no new connections after SIGTERM');

  const response = await inflight;
  assert.equal(response.status, 201, response.body);
  assert.equal(JSON.parse(response.body).name, 'sent across a shutdown');
  assert.equal(await second.exited, 0);
  assert.match(second.output(), /"signal":"SIGTERM"/);
  assert.match(second.output(), /"msg":"closed"/);

  // ---- the in-flight request was committed: a third start sees it
  const third = await startServer(dataDir);
  t.after(() => third.child.kill('SIGKILL'));
  const after = await request(third.port, 'GET', '/v1/datasets', auth);
  assert.deepEqual(JSON.parse(after.body).data.map((d: { name: string }) => d.name), ['sent across a shutdown']);
  third.child.kill('SIGTERM');
  assert.equal(await third.exited, 0);
});

test('an invalid configuration stops the server with exit code 1 and names the variable', async () => {
  const child = spawn(process.execPath, ['--import', 'tsx', 'src/server.ts'], {
    cwd: projectRoot,
    env: { ...process.env, PORT: 'eighty', DATA_DIR: os.tmpdir() },
    stdio: ['ignore', 'pipe', 'pipe'],
  });
  let stderr = '';
  child.stderr.on('data', (c) => (stderr += c));
  const code = await new Promise((resolve) => child.on('exit', resolve));
  assert.equal(code, 1);
  assert.match(stderr, /PORT must be integer/);
});
