import { createHash } from 'node:crypto';
import { existsSync, mkdirSync, readdirSync, readFileSync, realpathSync, writeFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import type { Client } from '@temporalio/client';
import type { temporal } from '@temporalio/proto';
import { expect } from 'vitest';

// Records the histories of the workflows tests run, as fixtures for the replay test
// (tests/replay/histories.test.ts): with RECORD_HISTORIES naming a directory, each history goes to
// <directory>/<workflow type>/<test file>--<test name>.json. `npm run record-histories` sets it.
// Fixtures are only ever added: a history recorded from released code stays until no workflow that
// code started runs any more, so a scenario recorded before is skipped (delete its file to record it again).

export type History = temporal.api.history.v1.IHistory;
type HistoryEvent = temporal.api.history.v1.IHistoryEvent;

/**
 * At most this many histories per workflow type: every path the tests take, and a patch's own histories beside those of
 * the code before it (which stay while its workflows run), small enough to review.
 */
export const MAX_HISTORIES_PER_TYPE = 80;
/** A history bigger than this (as JSON) is not kept: the fixtures stay a few MB. */
export const MAX_HISTORY_BYTES = 500_000;
/** Histories with fewer commands than this (activities, timers, markers, signals sent, the run's end) check nothing. */
const MIN_COMMANDS = 2;

// JSON in the form `temporal workflow show --output json` writes and the Web UI downloads. Not through
// historyToJSON/historyFromJSON of @temporalio/common: npm installs a copy of protobufjs for each
// @temporalio package, and the protojson of common's copy refuses the types @temporalio/proto built
// with its own ("type must be a Type"). The protojson of @temporalio/proto's copy accepts them.
const require = createRequire(import.meta.url);
const proto = require('@temporalio/proto') as typeof import('@temporalio/proto');
const protojson = createRequire(require.resolve('@temporalio/proto'))('protobufjs/ext/protojson') as {
  toJson(type: unknown, message: unknown): unknown;
  fromJson(type: unknown, json: unknown, options?: { ignoreUnknownFields?: boolean }): unknown;
};
const { patchProtobufRoot } = require('@temporalio/proto/lib/patch-protobuf-root') as {
  patchProtobufRoot(root: unknown): { lookupType(name: string): unknown };
};
const historyType = patchProtobufRoot(proto).lookupType('temporal.api.history.v1.History');

/**
 * One event per line: a diff shows which events changed, and the file stays a third of its indented size.
 * Identities (process id and host) and this checkout's location in stack traces are left out: they
 * differ from machine to machine, and replay does not read them.
 */
export function historyToJson(history: History): string {
  const json = protojson.toJson(historyType, proto.temporal.api.history.v1.History.fromObject(history)) as {
    events: unknown[];
  };
  const events = json.events.map((event) => JSON.stringify(event, withoutMachineDetails));
  return `{"events": [\n${events.join(',\n')}\n]}\n`;
}

const checkout = fileURLToPath(new URL('../../', import.meta.url));
// Stack traces name modules by their real path; node_modules may be a link into another checkout.
const localDirectories = [checkout, realpathSync(checkout), path.dirname(realpathSync(path.join(checkout, 'node_modules')))];

function withoutMachineDetails(key: string, value: unknown): unknown {
  if (key === 'identity') return 'mailroom-tests';
  if (typeof value !== 'string') return value;
  return localDirectories.reduce((text, directory) => text.replaceAll(`${path.resolve(directory)}/`, ''), value);
}

/** Reads a history written by historyToJson, the Temporal CLI or the Web UI (fields it does not know are ignored). */
export function historyFromJson(text: string): temporal.api.history.v1.History {
  return protojson.fromJson(historyType, JSON.parse(text), { ignoreUnknownFields: true }) as temporal.api.history.v1.History;
}

export function workflowTypeOf(history: History): string {
  const name = history.events?.[0]?.workflowExecutionStartedEventAttributes?.workflowType?.name;
  if (!name) throw new Error('the history does not start with WorkflowExecutionStarted');
  return name;
}

/**
 * Records the workflow's runs (the latest and, through continue-as-new, the ones before it) under the
 * name of the test that is running. For the time-skipping tests' harness, before it terminates the workflow.
 */
export async function recordWorkflowHistory(client: Client, workflowId: string): Promise<void> {
  const directory = process.env.RECORD_HISTORIES;
  if (!directory) return;
  const { testPath, currentTestName } = expect.getState();
  try {
    const runs: History[] = [];
    let runId: string | undefined;
    do {
      const history = await client.workflow.getHandle(workflowId, runId).fetchHistory();
      runs.unshift(history);
      runId = history.events?.[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId || undefined;
    } while (runId);
    saveRuns(directory, scenarioName(testPath, currentTestName), runs);
  } catch (error) {
    if ((error as Error).name === 'WorkflowNotFoundError') return; // the test started none
    console.warn(`history of ${workflowId} not recorded: ${(error as Error).message}`);
  }
}

/**
 * Records every workflow that ran on the task queue (dev server: it has visibility), each under the
 * name of the test that was running when it started. A conversation (any type named so) only when it
 * continued as new: the time-skipping tests record every other path of it, with less noise.
 */
export async function recordTaskQueueHistories(client: Client, taskQueue: string): Promise<void> {
  const directory = process.env.RECORD_HISTORIES;
  if (!directory) return;
  const { testPath } = expect.getState();
  try {
    const chains = new Map<string, { type: string; startedAt: number; runIds: string[] }>();
    for await (const execution of client.workflow.list({ query: `TaskQueue = '${taskQueue}'` })) {
      const chain = chains.get(execution.workflowId) ?? { type: execution.type, startedAt: Infinity, runIds: [] };
      chain.startedAt = Math.min(chain.startedAt, execution.startTime.getTime());
      chain.runIds.push(execution.runId);
      chains.set(execution.workflowId, chain);
    }
    for (const [workflowId, chain] of [...chains].sort(([, a], [, b]) => a.startedAt - b.startedAt)) {
      if (/conversation/i.test(chain.type) && chain.runIds.length < 2) continue;
      const runs = await Promise.all(chain.runIds.map((runId) => client.workflow.getHandle(workflowId, runId).fetchHistory()));
      runs.sort((a, b) => eventTime(a.events?.[0]) - eventTime(b.events?.[0]));
      saveRuns(directory, scenarioName(testPath, testRunningAt(chain.startedAt)), runs);
    }
  } catch (error) {
    console.warn(`histories of task queue ${taskQueue} not recorded: ${(error as Error).message}`);
  }
}

const testsRun: Array<{ name: string; startedAt: number; finishedAt: number }> = [];

/**
 * For recordTaskQueueHistories, which runs after the tests: which test ran when. The setup file that
 * vitest.config.ts adds while recording calls it before each test; it returns what to call after it.
 */
export function noteTestStarted(name: string): () => void {
  const test = { name, startedAt: Date.now(), finishedAt: Infinity };
  testsRun.push(test);
  return () => {
    test.finishedAt = Date.now();
  };
}

/** The test running at the time; between tests (in a beforeAll), the next test, which the setup was for. */
function testRunningAt(time: number): string {
  const test =
    testsRun.find(({ startedAt, finishedAt }) => startedAt <= time && time <= finishedAt) ??
    testsRun.find(({ startedAt }) => startedAt > time) ??
    testsRun[testsRun.length - 1];
  return test?.name ?? 'outside the tests';
}

function eventTime(event: HistoryEvent | undefined): number {
  const time = event?.eventTime;
  return time ? Number(time.seconds ?? 0) * 1000 + Math.floor((time.nanos ?? 0) / 1e6) : 0;
}

/** The test file, and the test's name within its outermost describe block (the file's name says that much). */
function scenarioName(testPath: string | undefined, testName: string | undefined): string {
  const file = path.basename(testPath ?? 'unknown').replace(/\.test\.ts$/, '');
  const names = (testName || 'outside a test').split(' > ');
  return `${slug(file)}--${slug(names.slice(names.length > 1 ? 1 : 0).join(' '))}`;
}

/** Lower-case words joined by '-', at most 100 characters (cut at a word). */
function slug(text: string): string {
  const words = text
    .toLowerCase()
    .normalize('NFKD')
    .replace(/[^a-z0-9]+/g, ' ')
    .trim()
    .split(' ');
  let result = '';
  for (const word of words) {
    if (result && result.length + 1 + word.length > 100) break;
    result = result ? `${result}-${word}` : word.slice(0, 100);
  }
  return result;
}

/** Of a continue-as-new chain, the first run (it continued as new) and the last (it started from what the one before carried). */
function saveRuns(directory: string, scenario: string, runs: History[]) {
  const kept = runs.length > 2 ? [runs[0]!, runs[runs.length - 1]!] : runs;
  kept.forEach((history, index) => {
    const name = `${scenario}${runs.length === 1 ? '' : index === 0 ? '--first-run' : '--last-run'}`;
    const outcome = saveHistory(directory, name, history);
    if (outcome === 'too big' || outcome === 'enough of this type already')
      console.warn(`history ${name} not recorded: ${outcome}`);
  });
}

type SaveOutcome =
  'saved' | 'recorded before' | 'shaped like one recorded' | 'trivial' | 'too big' | 'enough of this type already';

/** The fixtures this process wrote: a second workflow of the same type in one test is saved as <scenario>-2. */
const savedHere = new Set<string>();

/**
 * Saves the history unless its scenario was recorded before (delete the file to record it again), or it
 * is trivial, too big, or shaped like one already saved (the same events in the same order).
 */
function saveHistory(directory: string, scenario: string, history: History): SaveOutcome {
  const typeDirectory = path.join(directory, workflowTypeOf(history));
  const first = path.join(typeDirectory, `${scenario}.json`);
  if (existsSync(first) && !savedHere.has(first)) return 'recorded before';
  if (commandCount(history) < MIN_COMMANDS) return 'trivial';
  const json = historyToJson(history);
  if (Buffer.byteLength(json) > MAX_HISTORY_BYTES) return 'too big';
  mkdirSync(typeDirectory, { recursive: true });
  const existing = shapesIn(typeDirectory);
  if (existing.has(shapeOf(history))) return 'shaped like one recorded';
  if (existing.size >= MAX_HISTORIES_PER_TYPE) return 'enough of this type already';
  for (let attempt = 1; ; attempt++) {
    const file = attempt === 1 ? first : path.join(typeDirectory, `${scenario}-${attempt}.json`);
    if (existsSync(file)) continue;
    writeFileSync(file, json);
    savedHere.add(file);
    shapesByFile.set(file, shapeOf(history));
    return 'saved';
  }
}

const shapesByFile = new Map<string, string>();

function shapesIn(typeDirectory: string): Set<string> {
  const shapes = new Set<string>();
  for (const name of readdirSync(typeDirectory)) {
    if (!name.endsWith('.json')) continue;
    const file = path.join(typeDirectory, name);
    let shape = shapesByFile.get(file);
    if (shape === undefined) {
      shape = shapeOf(historyFromJson(readFileSync(file, 'utf8')));
      shapesByFile.set(file, shape);
    }
    shapes.add(shape);
  }
  return shapes;
}

const COMMAND_EVENTS = [
  'activityTaskScheduledEventAttributes',
  'timerStartedEventAttributes',
  'markerRecordedEventAttributes',
  'signalExternalWorkflowExecutionInitiatedEventAttributes',
  'startChildWorkflowExecutionInitiatedEventAttributes',
  'requestCancelExternalWorkflowExecutionInitiatedEventAttributes',
  'upsertWorkflowSearchAttributesEventAttributes',
  'workflowPropertiesModifiedEventAttributes',
  'workflowExecutionCompletedEventAttributes',
  'workflowExecutionFailedEventAttributes',
  'workflowExecutionContinuedAsNewEventAttributes',
] as const;

function commandCount(history: History): number {
  return (history.events ?? []).filter((event) => COMMAND_EVENTS.some((key) => event[key])).length;
}

/**
 * What replay checks, less what timing varies: the events in order with the activity, signal, marker
 * or update they name, without the workflow task events (how the server batched them).
 */
function shapeOf(history: History): string {
  const lines = (history.events ?? []).flatMap((event) => {
    const attributes = Object.entries(event).find(([key, value]) => key.endsWith('EventAttributes') && value)?.[0];
    if (!attributes || attributes.startsWith('workflowTask')) return [];
    const value = (event as Record<string, any>)[attributes];
    const name =
      value.activityType?.name ??
      value.signalName ??
      value.markerName ??
      value.workflowType?.name ??
      value.acceptedRequest?.input?.name ??
      '';
    return [`${attributes.replace(/EventAttributes$/, '')} ${name}`];
  });
  return createHash('sha256').update(lines.join('\n')).digest('hex');
}
