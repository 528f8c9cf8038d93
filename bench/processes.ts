// CPU time of the servers the bench runs against, read from /proc (Linux only; undefined elsewhere): the Temporal dev
// server by its port, PostgreSQL by the postmaster and its backends, so a section can put CPU per conversation on each.
import { execFileSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import { sql } from 'kysely';
import type { Db } from '../src/db/connection.js';

let clockTicksPerSecond: number | undefined;

/** The fields of /proc/<pid>/stat after the command name (which is in parentheses and may contain spaces). */
function statFields(pid: number): string[] | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  } catch {
    return undefined; // gone, or no /proc here
  }
}

function ticksToSeconds(ticks: number): number {
  clockTicksPerSecond ??= Number(execFileSync('getconf', ['CLK_TCK'], { encoding: 'utf8' }).trim()) || 100;
  return ticks / clockTicksPerSecond;
}

/** User and system CPU seconds of a process so far; with `children`, also of its children that exited and were reaped. */
export function cpuSecondsOf(pid: number, { children = false } = {}): number | undefined {
  const fields = statFields(pid);
  if (!fields) return undefined;
  // utime, stime, cutime, cstime are the 14th to 17th fields of the line, 12th to 15th after the name.
  const own = Number(fields[11]) + Number(fields[12]);
  return ticksToSeconds(children ? own + Number(fields[13]) + Number(fields[14]) : own);
}

function pids(): number[] {
  try {
    return readdirSync('/proc')
      .filter((entry) => /^\d+$/.test(entry))
      .map(Number);
  } catch {
    return [];
  }
}

/** The program a process runs (its first argument), undefined if it cannot be read. */
function commandOf(pid: number): string | undefined {
  try {
    return readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0')[0];
  } catch {
    return undefined;
  }
}

/** The pid of the `temporal server start-dev` listening on the address's port. */
export function temporalServerPid(address: string): number | undefined {
  const port = address.slice(address.lastIndexOf(':') + 1);
  for (const pid of pids()) {
    let args: string[];
    try {
      args = readFileSync(`/proc/${pid}/cmdline`, 'utf8').split('\0');
    } catch {
      continue; // gone meanwhile
    }
    if (args.includes('start-dev') && args[args.indexOf('--port') + 1] === port) return pid;
  }
  return undefined;
}

/**
 * The CPU seconds of a PostgreSQL server on this machine so far: the postmaster, the backends that ended (reaped by
 * it) and the ones still running. Undefined for a server elsewhere (DATABASE_URL naming another machine).
 */
export async function postgresCpuClock(db: Db): Promise<(() => number | undefined) | undefined> {
  const { rows } = await sql<{ pid: number }>`select pg_backend_pid() as pid`.execute(db);
  const backend = rows[0]?.pid;
  const postmaster = backend === undefined ? undefined : Number(statFields(backend)?.[1]);
  if (!postmaster || !commandOf(postmaster)?.endsWith('postgres')) return undefined;
  return () => {
    const total = cpuSecondsOf(postmaster, { children: true });
    if (total === undefined) return undefined;
    let live = 0;
    for (const pid of pids()) {
      if (Number(statFields(pid)?.[1]) === postmaster) live += cpuSecondsOf(pid) ?? 0;
    }
    return total + live;
  };
}
