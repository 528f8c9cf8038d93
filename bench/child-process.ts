import { fork, type ChildProcess } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchStack } from './stack.js';

const REPO_ROOT = fileURLToPath(new URL('..', import.meta.url));
// A process told to stop that is still there after this is killed.
const STOP_GRACE_MS = 15_000;

export interface BenchProcess {
  child: ChildProcess;
  /** Settles when the process has exited, however. */
  exited: Promise<void>;
  /** Sends the stop message (SIGTERM without IPC), SIGKILL after a grace period; also run by the stack's stop. */
  stop(): Promise<void>;
}

/**
 * A part of the bench in a process of its own, measured apart from the driver: `node --import tsx`, not the
 * tsx CLI, which would run the script in a second process whose pid, RSS and CPU would not be the child's.
 * Killed when the bench exits, whatever happens.
 */
export function forkBenchProcess(
  stack: BenchStack,
  script: string,
  options: { execArgv?: string[]; env: NodeJS.ProcessEnv; stopMessage: unknown; onExit?: () => void },
): BenchProcess {
  const child = fork(script, [], {
    cwd: REPO_ROOT, // where `--import tsx` is found
    execArgv: ['--import', 'tsx', ...(options.execArgv ?? [])],
    env: options.env,
    stdio: ['ignore', 'inherit', 'inherit', 'ipc'],
  });
  const exited = new Promise<void>((resolve) =>
    child.once('exit', () => {
      options.onExit?.();
      resolve();
    }),
  );
  const killOnExit = () => child.kill('SIGKILL');
  process.once('exit', killOnExit);
  const stop = async () => {
    if (child.exitCode === null && child.signalCode === null) {
      if (child.connected) child.send(options.stopMessage as object);
      else child.kill('SIGTERM');
      const inTime = await Promise.race([exited.then(() => true), sleep(STOP_GRACE_MS, false, { ref: false })]);
      if (!inTime) child.kill('SIGKILL');
      await exited;
    }
    process.removeListener('exit', killOnExit);
  };
  stack.addStop(stop);
  return { child, exited, stop };
}

/** In a bench child process: a setting its parent passes in the environment, or a failure naming it. */
export function requiredEnv(name: string): string {
  const value = process.env[name];
  if (!value) throw new Error(`${name} is not set`);
  return value;
}
