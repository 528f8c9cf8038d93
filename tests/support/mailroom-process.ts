import { spawn, type ChildProcess } from 'node:child_process';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';

const REPO_ROOT = fileURLToPath(new URL('../..', import.meta.url));
const STDERR_KEPT = 8 * 1024;

/** One line of pino's JSON output. */
export interface LogLine {
  level: number;
  msg: string;
  [field: string]: unknown;
}

export interface MailroomProcess {
  child: ChildProcess;
  /** What it has logged so far. */
  readonly logs: readonly LogLine[];
  /** The first line logged whose message starts with this, waiting for it; fails when the process exits first. */
  waitForLog(message: string, timeoutMs?: number): Promise<LogLine>;
  /** Settles with how the process ended. */
  exited: Promise<{ code: number | null; signal: NodeJS.Signals | null }>;
  /** Sends SIGTERM if it still runs and waits for it to end; SIGKILL after `graceMs`. For afterAll. */
  stop(graceMs?: number): Promise<void>;
}

/**
 * A production entry point (`npm run api`, `npm run worker`) in a process of its own, as a deploy runs it:
 * `node --import tsx`, so that a signal reaches the very process (the tsx CLI would run it in a second one).
 * Killed when the test process exits, whatever happens.
 */
export function startMailroomProcess(script: 'src/api/server.ts' | 'src/worker.ts', env: NodeJS.ProcessEnv): MailroomProcess {
  return startNodeProcess(['--import', 'tsx', script], { cwd: REPO_ROOT, env });
}

/** `node <args>` (this very node binary) in `cwd`, its pino output collected: e.g. the production build's entry points. */
export function startNodeProcess(args: string[], { cwd, env }: { cwd: string; env: NodeJS.ProcessEnv }): MailroomProcess {
  const script = args.join(' ');
  const child = spawn(process.execPath, args, { cwd, env, stdio: ['ignore', 'pipe', 'pipe'] });
  const logs: LogLine[] = [];
  const waiters = new Set<() => void>();
  const wake = () => {
    for (const waiter of [...waiters]) waiter();
  };
  let stderr = '';
  child.stderr!.setEncoding('utf8').on('data', (chunk: string) => {
    stderr = (stderr + chunk).slice(-STDERR_KEPT);
  });
  createInterface({ input: child.stdout! }).on('line', (line) => {
    try {
      logs.push(JSON.parse(line) as LogLine);
    } catch {
      return; // not pino's: nothing to wait for
    }
    wake();
  });
  let ended: { code: number | null; signal: NodeJS.Signals | null } | undefined;
  const exited = new Promise<{ code: number | null; signal: NodeJS.Signals | null }>((resolve) =>
    child.once('exit', (code, signal) => {
      ended = { code, signal };
      resolve(ended);
      wake();
    }),
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  void exited.then(() => process.removeListener('exit', killOnExit));

  const describe = () => `${script} (pid ${child.pid}); its stderr ends with:\n${stderr}`;
  return {
    child,
    logs,
    exited,
    async waitForLog(message, timeoutMs = 120_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const found = logs.find((line) => typeof line.msg === 'string' && line.msg.startsWith(message));
        if (found) return found;
        if (ended) throw new Error(`"${message}" was never logged: exited with ${JSON.stringify(ended)}; ${describe()}`);
        const remaining = deadline - Date.now();
        if (remaining <= 0) throw new Error(`"${message}" was not logged within ${timeoutMs} ms by ${describe()}`);
        await new Promise<void>((resolve) => {
          const done = () => {
            clearTimeout(timer);
            waiters.delete(done);
            resolve();
          };
          const timer = setTimeout(done, remaining);
          waiters.add(done);
        });
      }
    },
    async stop(graceMs = 60_000) {
      if (ended) return;
      child.kill('SIGTERM');
      const timer = setTimeout(() => child.kill('SIGKILL'), graceMs);
      await exited;
      clearTimeout(timer);
    },
  };
}
