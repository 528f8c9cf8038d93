// A private PostgreSQL cluster for tests and local runs: loopback only, trust auth, durability traded for speed.
import { execFile, execFileSync } from 'node:child_process';
import { randomUUID } from 'node:crypto';
import {
  appendFileSync,
  chownSync,
  existsSync,
  mkdirSync,
  readdirSync,
  readFileSync,
  rmSync,
  statSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { acceptsConnections, cacheDir, freePort, postgresBinDir } from './tools.js';

export interface PostgresOptions {
  /** Cluster directory; created with initdb when missing, reused when already initialised. */
  dataDir?: string;
  /** Port on 127.0.0.1; a free one when omitted. Ignored when a server is already running on dataDir. */
  port?: number;
}

export interface PostgresServer {
  /** e.g. postgres://postgres@127.0.0.1:PORT/postgres */
  url: string;
  /** Stops the server, unless another live process is still using it (see takeLease). */
  stop(): Promise<void>;
}

const host = '127.0.0.1';
const runningAsRoot = process.getuid?.() === 0;

export async function startPostgres(opts: PostgresOptions = {}): Promise<PostgresServer> {
  const binDir = postgresBinDir();
  const dataDir = opts.dataDir ?? defaultDataDir();
  const port = (await portOfRunningServer(dataDir)) ?? (await startServer(binDir, dataDir, opts.port));
  const lease = takeLease(dataDir);
  return {
    url: urlFor(port),
    stop: async () => {
      releaseLease(lease);
      if (otherUsersRemain(dataDir) || (await portOfRunningServer(dataDir)) === undefined) return;
      await runAsPostgres(join(binDir, 'pg_ctl'), ['stop', '-D', dataDir, '-s', '-w', '-m', 'fast']);
    },
  };
}

/** initdb when needed, then start the server in the background (it outlives this process until stopped). */
async function startServer(binDir: string, dataDir: string, port?: number): Promise<number> {
  prepareDataDir(dataDir);
  if (!existsSync(join(dataDir, 'PG_VERSION'))) {
    await runAsPostgres(join(binDir, 'initdb'), [
      '-D',
      dataDir,
      '-U',
      'postgres',
      '--auth=trust',
      '--encoding=UTF8',
      '--no-locale',
      '--no-sync',
    ]);
  }
  writeSettings(dataDir);

  port ??= await freePort(host);
  const logFile = join(dataDir, 'server.log');
  try {
    await runAsPostgres(join(binDir, 'pg_ctl'), [
      'start',
      '-D',
      dataDir,
      '-s',
      '-w',
      '-t',
      '60',
      '-l',
      logFile,
      '-o',
      `-p ${port}`,
    ]);
    return port;
  } catch (err) {
    // Another process may have started it at the same moment: use theirs.
    const startedByOther = await portOfRunningServer(dataDir);
    if (startedByOther !== undefined) return startedByOther;
    throw new Error(`${(err as Error).message}\nserver log (${logFile}):\n${tail(logFile)}`);
  }
}

// Several processes may share one cluster (parallel test runs, `npm start`): each holds a lease file,
// and stop() only stops the server when no other live process holds one.
function takeLease(dataDir: string): string {
  const leaseDir = join(dataDir, 'mailroom-leases');
  mkdirSync(leaseDir, { recursive: true });
  const lease = join(leaseDir, `${process.pid}-${randomUUID()}`);
  writeFileSync(lease, '');
  return lease;
}

function releaseLease(lease: string) {
  rmSync(lease, { force: true });
}

function otherUsersRemain(dataDir: string): boolean {
  const leaseDir = join(dataDir, 'mailroom-leases');
  return readdirSync(leaseDir).some((lease) => {
    if (isAlive(Number(lease.split('-')[0]))) return true;
    rmSync(join(leaseDir, lease), { force: true }); // left by a process that died without stopping
    return false;
  });
}

function urlFor(port: number): string {
  return `postgres://postgres@${host}:${port}/postgres`;
}

/** `$CACHE/postgres-test`, unless we are root and the postgres OS user cannot reach the cache (e.g. under /root, mode 0700). */
function defaultDataDir(): string {
  const inCache = join(cacheDir(), 'postgres-test');
  if (!runningAsRoot) return inCache;
  mkdirSync(cacheDir(), { recursive: true });
  try {
    execFileSync('runuser', ['-u', 'postgres', '--', 'test', '-x', cacheDir()], { cwd: '/' });
    return inCache;
  } catch {
    return join(tmpdir(), 'mailroom-postgres-test');
  }
}

/** Creates dataDir and, as root, hands it to the postgres OS user (PostgreSQL refuses to run as root). */
function prepareDataDir(dataDir: string) {
  mkdirSync(dataDir, { recursive: true });
  if (!runningAsRoot) return;
  const { uid, gid } = postgresOsUser();
  if (statSync(dataDir).uid !== uid) chownSync(dataDir, uid, gid);
  try {
    execFileSync('runuser', ['-u', 'postgres', '--', 'test', '-w', dataDir], { cwd: '/' });
  } catch {
    throw new Error(
      `the postgres OS user cannot write ${dataDir} (a parent directory may be private, like /root); pick another dataDir`,
    );
  }
}

/** Settings live in an included file that is rewritten on every start, so changes here reach existing clusters. */
function writeSettings(dataDir: string) {
  const settingsFile = join(dataDir, 'mailroom.conf');
  writeFileSync(
    settingsFile,
    [
      `listen_addresses = '${host}'`,
      `unix_socket_directories = '${dataDir.replaceAll("'", "''")}'`, // keep sockets out of shared /var/run/postgresql
      'max_connections = 200',
      // Test data: losing it in an OS crash is fine, waiting on disk is not.
      'fsync = off',
      'synchronous_commit = off',
      'full_page_writes = off',
      '',
    ].join('\n'),
  );
  if (runningAsRoot) {
    const { uid, gid } = postgresOsUser();
    chownSync(settingsFile, uid, gid);
  }
  const mainConfig = join(dataDir, 'postgresql.conf');
  const include = "include_if_exists = 'mailroom.conf'";
  if (!readFileSync(mainConfig, 'utf8').includes(include)) appendFileSync(mainConfig, `\n${include}\n`);
}

/** Port of a server still running on dataDir (e.g. left by an interrupted run), if any. */
async function portOfRunningServer(dataDir: string): Promise<number | undefined> {
  let lines: string[];
  try {
    lines = readFileSync(join(dataDir, 'postmaster.pid'), 'utf8').split('\n');
  } catch {
    return undefined;
  }
  // postmaster.pid: line 1 is the pid, line 4 the port.
  const pid = Number(lines[0]);
  const port = Number(lines[3]);
  if (!pid || !port || !isAlive(pid)) return undefined;
  return (await acceptsConnections(host, port)) ? port : undefined;
}

function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (err) {
    return (err as NodeJS.ErrnoException).code === 'EPERM'; // alive, owned by another user
  }
}

/** Runs a PostgreSQL program as the postgres OS user when we are root, directly otherwise. */
async function runAsPostgres(program: string, args: string[]): Promise<void> {
  const [command, commandArgs] = runningAsRoot ? ['runuser', ['-u', 'postgres', '--', program, ...args]] : [program, args];
  try {
    await promisify(execFile)(command, commandArgs, { cwd: '/' }); // cwd: the postgres user may not be able to enter ours
  } catch (err) {
    const { stderr, stdout } = err as { stderr?: string; stdout?: string };
    throw new Error(`${[program, ...args].join(' ')} failed: ${(stderr || stdout || (err as Error).message).trim()}`);
  }
}

let cachedPostgresUser: { uid: number; gid: number } | undefined;
function postgresOsUser(): { uid: number; gid: number } {
  cachedPostgresUser ??= {
    uid: Number(execFileSync('id', ['-u', 'postgres'], { encoding: 'utf8' })),
    gid: Number(execFileSync('id', ['-g', 'postgres'], { encoding: 'utf8' })),
  };
  return cachedPostgresUser;
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}
