// Where the server binaries obtained by scripts/ensure-tools.sh live.
import { spawn } from 'node:child_process';
import { randomInt } from 'node:crypto';
import { accessSync, constants, readdirSync, readFileSync, realpathSync } from 'node:fs';
import { connect, createServer } from 'node:net';
import { homedir } from 'node:os';
import { delimiter, dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';

const ensureToolsScript = fileURLToPath(new URL('../ensure-tools.sh', import.meta.url));

/** Cache shared by every clone of the repo: `$MAILROOM_CACHE`, else `$XDG_CACHE_HOME/mailroom`, else `~/.cache/mailroom`. */
export function cacheDir(): string {
  return process.env.MAILROOM_CACHE || join(process.env.XDG_CACHE_HOME || join(homedir(), '.cache'), 'mailroom');
}

export type Tool = 'node' | 'temporal' | 'temporal-test-server' | 'postgres' | 'dovecot' | 'postfix';

/** Runs scripts/ensure-tools.sh for the given tools, or all of them (idempotent; obtains only what is missing). */
export async function ensureTools(tools: Tool[] = []): Promise<void> {
  const child = spawn('bash', [ensureToolsScript, ...tools], { stdio: 'inherit' });
  const exitCode = await new Promise<number | null>((resolve, reject) => {
    child.once('error', reject);
    child.once('exit', resolve);
  });
  if (exitCode !== 0) throw new Error(`scripts/ensure-tools.sh failed (exit code ${exitCode}); see its output above`);
}

/** `temporal` from PATH if there is one, else the one ensure-tools.sh built into the cache. */
export function temporalCliPath(): string {
  return findOnPath('temporal') ?? join(cacheDir(), 'bin', 'temporal');
}

/** Wrapper script around Temporal's Java time-skipping test server, for `executable: { type: 'existing-path' }`. */
export function timeSkippingServerPath(): string {
  return join(cacheDir(), 'bin', 'temporal-test-server');
}

/** Directory holding initdb, pg_ctl and postgres: the newest /usr/lib/postgresql/<version>/bin, else from PATH. */
export function postgresBinDir(): string {
  const versions = safeReaddir('/usr/lib/postgresql')
    .filter((name) => /^\d+$/.test(name))
    .sort((a, b) => Number(b) - Number(a));
  const candidates = versions.map((version) => join('/usr/lib/postgresql', version, 'bin'));
  const initdbOnPath = findOnPath('initdb');
  if (initdbOnPath) candidates.push(dirname(realpathSync(initdbOnPath)));

  const binDir = candidates.find((dir) => ['initdb', 'pg_ctl', 'postgres'].every((name) => isExecutable(join(dir, name))));
  if (!binDir) {
    throw new Error('PostgreSQL server binaries not found: run scripts/ensure-tools.sh, install PostgreSQL, or set DATABASE_URL');
  }
  return binDir;
}

const sbinDirs = ['/usr/sbin', '/usr/local/sbin'];

/** `dovecot` from PATH, else from the sbin directories a user's PATH often lacks (Debian: /usr/sbin/dovecot). */
export function dovecotBinary(): string {
  return findOnPath('dovecot', sbinDirs) ?? missingDovecot();
}

/** `doveadm`, Dovecot's admin tool (Debian: /usr/bin/doveadm), searched like dovecotBinary(). */
export function doveadmBinary(): string {
  return findOnPath('doveadm', sbinDirs) ?? missingDovecot();
}

/** `postfix`, the command that starts and stops a Postfix instance (Debian: /usr/sbin/postfix), searched like dovecotBinary(). */
export function postfixBinary(): string {
  const found = findOnPath('postfix', sbinDirs);
  if (!found) throw new Error('Postfix not found: run scripts/ensure-tools.sh postfix (Debian/Ubuntu: apt-get install postfix)');
  return found;
}

/** `postqueue`, Postfix's queue tool (Debian: /usr/sbin/postqueue). */
export function postqueueBinary(): string {
  const found = findOnPath('postqueue', sbinDirs);
  if (!found) throw new Error('Postfix not found: run scripts/ensure-tools.sh postfix (Debian/Ubuntu: apt-get install postfix)');
  return found;
}

function missingDovecot(): never {
  throw new Error('Dovecot not found: run scripts/ensure-tools.sh dovecot (Debian/Ubuntu: apt-get install dovecot-imapd)');
}

/**
 * A TCP port that is free on host right now, for servers that cannot pick their own. It is taken from outside the
 * kernel's ephemeral range: an outgoing connection takes its local port from that range, and on a busy machine one
 * took a port between this check and the server's bind ("address already in use").
 */
export async function freePort(host = '127.0.0.1'): Promise<number> {
  const [ephemeralLow, ephemeralHigh] = ephemeralPortRange();
  const below = Math.max(0, ephemeralLow - FIRST_PICKED_PORT);
  const above = Math.max(0, 65_535 - ephemeralHigh);
  for (let attempt = 0; attempt < 20 && below + above > 0; attempt++) {
    const pick = randomInt(below + above);
    const port = pick < below ? FIRST_PICKED_PORT + pick : ephemeralHigh + 1 + (pick - below);
    if (await canListen(host, port)) return port;
  }
  return listenOn(host, 0); // every pick was taken: let the kernel choose
}

// Below it sit the well-known services' ports (PostgreSQL 5432, Temporal 7233, …).
const FIRST_PICKED_PORT = 10_000;

/** The ports the kernel hands out to outgoing connections and to listen(0); Linux's default where it cannot be read. */
function ephemeralPortRange(): [number, number] {
  try {
    const [low, high] = readFileSync('/proc/sys/net/ipv4/ip_local_port_range', 'utf8').trim().split(/\s+/).map(Number);
    if (Number.isInteger(low) && Number.isInteger(high)) return [low!, high!];
  } catch {
    // Not Linux.
  }
  return [32_768, 60_999];
}

async function canListen(host: string, port: number): Promise<boolean> {
  try {
    await listenOn(host, port);
    return true;
  } catch {
    return false;
  }
}

/** Listens on host:port, closes again and returns the port that was bound. */
async function listenOn(host: string, port: number): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, resolve);
  });
  const bound = (server.address() as { port: number }).port;
  await new Promise((resolve) => server.close(resolve));
  return bound;
}

/** Whether something accepts TCP connections on host:port (a cheap check before slower protocol-level ones). */
export function acceptsConnections(host: string, port: number, timeoutMs = 1_000): Promise<boolean> {
  return new Promise((resolve) => {
    const socket = connect({ host, port, timeout: timeoutMs });
    const finish = (accepted: boolean) => {
      socket.destroy();
      resolve(accepted);
    };
    socket.once('connect', () => finish(true));
    socket.once('error', () => finish(false));
    socket.once('timeout', () => finish(false));
  });
}

function findOnPath(command: string, extraDirs: string[] = []): string | undefined {
  return [...(process.env.PATH ?? '').split(delimiter).filter(Boolean), ...extraDirs]
    .map((dir) => join(dir, command))
    .find(isExecutable);
}

function isExecutable(path: string): boolean {
  try {
    accessSync(path, constants.X_OK);
    return true;
  } catch {
    return false;
  }
}

function safeReaddir(dir: string): string[] {
  try {
    return readdirSync(dir);
  } catch {
    return [];
  }
}
