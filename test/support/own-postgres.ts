// A Postgres server of the test's own, for tests that stop the database under a running
// service: initdb into a temporary folder as the `postgres` user, started on a free port of
// 127.0.0.1, stopped the way a crash or a failover stops it (`pg_ctl stop -m immediate`),
// started again on the same folder and port, and removed after the test. Where it cannot be
// made (no Postgres binaries, or neither root nor the postgres user), `skipReason` says why.
import { execFile } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import type { TestContext } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** The newest Postgres's bin folder of Debian's layout, or one on PATH (undefined: none). */
function postgresBin(): string | undefined {
  const root = '/usr/lib/postgresql';
  const versions = fs.existsSync(root) ? fs.readdirSync(root).filter((v) => /^\d+$/.test(v)).sort((a, b) => Number(b) - Number(a)) : [];
  for (const version of versions) {
    const bin = path.join(root, version, 'bin');
    if (fs.existsSync(path.join(bin, 'pg_ctl'))) return bin;
  }
  for (const dir of (process.env.PATH ?? '').split(path.delimiter)) {
    if (fs.existsSync(path.join(dir, 'pg_ctl')) && fs.existsSync(path.join(dir, 'initdb'))) return dir;
  }
  return undefined;
}

/** How to run a server binary as the postgres user: directly when we are that user, through runuser as root. */
function asPostgres(): ((command: string, args: string[]) => [string, string[]]) | undefined {
  const user = os.userInfo().username;
  if (user === 'postgres') return (command, args) => [command, args];
  if (process.getuid?.() === 0) return (command, args) => ['runuser', ['-u', 'postgres', '--', command, ...args]];
  return undefined;
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = net.createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as net.AddressInfo;
      server.close(() => resolve(port));
    });
  });
}

export class OwnPostgres {
  readonly url: string;
  readonly #bin: string;
  readonly #as: (command: string, args: string[]) => [string, string[]];
  readonly #dir: string;
  readonly #port: number;

  private constructor(bin: string, as: (command: string, args: string[]) => [string, string[]], dir: string, port: number) {
    this.#bin = bin;
    this.#as = as;
    this.#dir = dir;
    this.#port = port;
    this.url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  }

  /** Why this machine cannot make one, or undefined when it can. */
  static skipReason(): string | undefined {
    if (postgresBin() === undefined) return 'no Postgres server binaries (initdb, pg_ctl) on this machine';
    if (asPostgres() === undefined) return 'initdb must run as the postgres user: run the tests as root or as postgres';
    return undefined;
  }

  /** Makes and starts one; it is stopped and removed after `t`. */
  static async create(t: TestContext): Promise<OwnPostgres> {
    const bin = postgresBin()!;
    const as = asPostgres()!;
    // Under /tmp: the postgres user must reach the folder, which a root-only TMPDIR would not let it.
    const base = fs.mkdtempSync(path.join('/tmp', 'sdxl-own-postgres-'));
    fs.chmodSync(base, 0o755);
    const dir = path.join(base, 'data');
    await run('chown', ['postgres', base]);
    const server = new OwnPostgres(bin, as, dir, await freePort());
    t.after(() => server.destroy(base));
    await server.#pg('initdb', ['-D', dir, '-U', 'postgres', '-A', 'trust', '--no-sync', '-E', 'UTF8']);
    await server.start();
    return server;
  }

  async #pg(binary: string, args: string[]): Promise<void> {
    const [command, argv] = this.#as(path.join(this.#bin, binary), args);
    await run(command, argv, { cwd: '/tmp' });
  }

  /** Starts the server on its folder and port, and waits until it takes connections. */
  async start(): Promise<void> {
    const options = `-p ${this.#port} -c listen_addresses=127.0.0.1 -k ${path.dirname(this.#dir)} -c fsync=off`;
    await this.#pg('pg_ctl', ['start', '-D', this.#dir, '-w', '-t', '60', '-l', path.join(path.dirname(this.#dir), 'server.log'), '-o', options]);
  }

  /** Stops it as a crash would: every backend killed at once, no checkpoint, the next start recovers from the WAL. */
  async crash(): Promise<void> {
    await this.#pg('pg_ctl', ['stop', '-D', this.#dir, '-m', 'immediate', '-w']);
  }

  /** The server's own log, for failure messages. */
  log(): string {
    const file = path.join(path.dirname(this.#dir), 'server.log');
    return fs.existsSync(file) ? fs.readFileSync(file, 'utf8') : '';
  }

  async destroy(base: string): Promise<void> {
    await this.#pg('pg_ctl', ['stop', '-D', this.#dir, '-m', 'immediate']).catch(() => {});
    fs.rmSync(base, { recursive: true, force: true });
  }
}
