// Runs `temporal server start-dev` (the real Temporal server, in one process, on SQLite) for tests and `npm start`.
import { spawn, type ChildProcess } from 'node:child_process';
import { setTimeout as sleep } from 'node:timers/promises';
import { Connection } from '@temporalio/client';
import proto from '@temporalio/proto';
import type { SearchAttributeType } from '@temporalio/common';
import { mailroomSearchAttributes } from '../../src/workflows/search-attributes.js';
import { acceptsConnections, freePort, temporalCliPath } from './tools.js';

export interface TemporalDevServerOptions {
  /** Frontend gRPC port; a free one when omitted. Reuse a port (with the same dbFile) to restart "the same" server. */
  port?: number;
  /** Web UI port; a free one when omitted. */
  uiPort?: number;
  /** SQLite file to persist to; in-memory when omitted. */
  dbFile?: string;
  /** Namespace to create besides "default" and to wait for. */
  namespace?: string;
  /** Forward the server's output (warnings and errors) to this process's stderr; otherwise only errors are kept, for failures. */
  log?: boolean;
  /** The Web UI's codec server (`--ui-codec-endpoint`), which decodes the encrypted payloads it shows. */
  codecEndpoint?: string;
  /** How long to wait for the frontend to answer. */
  startTimeoutMs?: number;
}

export interface TemporalDevServer {
  /** host:port of the frontend, for `Connection.connect({ address })`. */
  address: string;
  uiUrl: string;
  stop(): Promise<void>;
}

// `--search-attribute Name=Type` takes the CLI's type names, not the SDK's enum values.
const cliSearchAttributeType: Record<SearchAttributeType, string> = {
  TEXT: 'Text',
  KEYWORD: 'Keyword',
  INT: 'Int',
  DOUBLE: 'Double',
  BOOL: 'Bool',
  DATETIME: 'Datetime',
  KEYWORD_LIST: 'KeywordList',
};

const stopGracePeriodMs = 10_000;

export async function startTemporalDevServer(opts: TemporalDevServerOptions = {}): Promise<TemporalDevServer> {
  const host = '127.0.0.1';
  // Otherwise a server still listening there would look like this one being ready.
  if (opts.port !== undefined && (await acceptsConnections(host, opts.port))) {
    throw new Error(`cannot start a Temporal dev server on ${host}:${opts.port}: something is already listening there`);
  }
  for (let attempt = 1; ; attempt++) {
    const port = opts.port ?? (await freePort(host));
    const uiPort = opts.uiPort ?? (await freePort(host));
    try {
      return await startOn(host, port, uiPort, opts);
    } catch (err) {
      // A port picked here can be taken before the server binds it (or one the server picks itself): pick again.
      const portsArePicked = opts.port === undefined && opts.uiPort === undefined;
      if (!(portsArePicked && err instanceof PortTakenError && attempt < 3)) throw err;
    }
  }
}

/** The server exited because a port it was to listen on was taken meanwhile. */
class PortTakenError extends Error {}

async function startOn(host: string, port: number, uiPort: number, opts: TemporalDevServerOptions): Promise<TemporalDevServer> {
  const namespace = opts.namespace ?? 'default';
  const args = [
    'server',
    'start-dev',
    '--ip',
    host,
    '--port',
    String(port),
    '--ui-port',
    String(uiPort),
    // The server is a test fixture: durability across OS crashes is not needed, speed is.
    '--sqlite-pragma',
    'journal_mode=WAL',
    '--sqlite-pragma',
    'synchronous=OFF',
    '--log-level',
    opts.log ? 'warn' : 'error',
    ...(opts.dbFile ? ['--db-filename', opts.dbFile] : []),
    ...(opts.codecEndpoint ? ['--ui-codec-endpoint', opts.codecEndpoint] : []),
    ...(namespace !== 'default' ? ['--namespace', namespace] : []),
    ...mailroomSearchAttributes.flatMap((key) => ['--search-attribute', `${key.name}=${cliSearchAttributeType[key.type]}`]),
  ];

  // Own process group, so stop() can signal everything the CLI might spawn.
  const child = spawn(temporalCliPath(), args, { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
  const output = captureOutput(child, opts.log ?? false);
  const exited = new Promise<void>((resolve) => {
    child.once('exit', () => resolve());
    child.once('error', (err) => {
      output.append(`${err.message}\n`); // e.g. the CLI is missing: run scripts/ensure-tools.sh
      resolve();
    });
  });
  const killOnExit = () => killGroup(child, 'SIGKILL');
  process.once('exit', killOnExit); // never leave an orphaned server behind

  const stop = async () => {
    process.removeListener('exit', killOnExit);
    if (child.exitCode !== null || child.signalCode !== null) return;
    killGroup(child, 'SIGTERM');
    const stoppedInTime = await Promise.race([exited.then(() => true), sleep(stopGracePeriodMs, false, { ref: false })]);
    if (!stoppedInTime) {
      killGroup(child, 'SIGKILL');
      await exited;
    }
  };

  const address = `${host}:${port}`;
  try {
    await waitUntilServing(address, namespace, exited, opts.startTimeoutMs ?? 30_000);
  } catch (err) {
    await stop();
    const message = `Temporal dev server on ${address} did not start: ${(err as Error).message}\n${output.tail()}`;
    throw output.tail().includes('address already in use') ? new PortTakenError(message) : new Error(message);
  }
  return { address, uiUrl: `http://${host}:${uiPort}`, stop };
}

/** Whether a Temporal frontend answers at host:port within timeoutMs. */
/**
 * Registers the search attributes a server reused from an earlier start lacks (a newer Mailroom may
 * have added some): workflows that upsert an unknown attribute would fail their tasks.
 */
export async function registerMissingSearchAttributes(address: string, namespace = 'default'): Promise<string[]> {
  const connection = await Connection.connect({ address });
  try {
    const { customAttributes } = await connection.operatorService.listSearchAttributes({ namespace });
    const missing = mailroomSearchAttributes.filter((key) => !(key.name in (customAttributes ?? {})));
    if (missing.length > 0) {
      const { IndexedValueType } = proto.temporal.api.enums.v1; // a CommonJS module: no named exports under Node
      await connection.operatorService.addSearchAttributes({
        namespace,
        searchAttributes: Object.fromEntries(
          missing.map((key) => [key.name, IndexedValueType[`INDEXED_VALUE_TYPE_${key.type}`]]),
        ),
      });
    }
    return missing.map((key) => key.name);
  } finally {
    await connection.close();
  }
}

export async function isTemporalReachable(address: string, timeoutMs = 2_000): Promise<boolean> {
  const [host, port] = splitAddress(address);
  if (!(await acceptsConnections(host, port, timeoutMs))) return false; // fails fast, unlike the gRPC client's retries
  try {
    const connection = await Connection.connect({ address, connectTimeout: timeoutMs });
    await connection.close();
    return true;
  } catch {
    return false;
  }
}

async function waitUntilServing(address: string, namespace: string, exited: Promise<void>, timeoutMs: number) {
  const [host, port] = splitAddress(address);
  let serverExited = false;
  void exited.then(() => (serverExited = true));
  const deadline = Date.now() + timeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (serverExited) throw new Error('the server process exited');
    if (!(await acceptsConnections(host, port))) {
      lastError = new Error('port not open yet');
      await sleep(50);
      continue;
    }
    try {
      const connection = await Connection.connect({ address, connectTimeout: 1_000 });
      try {
        await connection.workflowService.describeNamespace({ namespace });
        return;
      } finally {
        await connection.close();
      }
    } catch (err) {
      lastError = err;
      await sleep(100);
    }
  }
  throw new Error(`no answer within ${timeoutMs} ms (last error: ${(lastError as Error | undefined)?.message})`);
}

function splitAddress(address: string): [string, number] {
  const separator = address.lastIndexOf(':');
  const host = address.slice(0, separator).replace(/^\[(.*)\]$/, '$1'); // [::1] -> ::1
  return [host, Number(address.slice(separator + 1))];
}

/** Keeps the last few KB of the server's output for error messages; optionally forwards it to stderr. */
function captureOutput(child: ChildProcess, forward: boolean) {
  let tail = '';
  const append = (chunk: Buffer | string) => {
    if (forward) process.stderr.write(chunk);
    tail = (tail + chunk.toString()).slice(-4_000);
  };
  child.stdout?.on('data', append);
  child.stderr?.on('data', append);
  return { append, tail: () => (tail ? `server output:\n${tail}` : '(no server output)') };
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // Already gone.
  }
}
