import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { DefaultLogger, Runtime, Worker, type WorkflowBundle } from '@temporalio/worker';
import { historyFromJson, workflowTypeOf, type History } from '../support/history-recorder.js';
import { TEST_DATA_CONVERTER } from '../support/stack.js';

/** tests/fixtures/histories/<workflow type>/<scenario>.json, written by `npm run record-histories`. */
export const HISTORIES_DIRECTORY = fileURLToPath(new URL('../fixtures/histories/', import.meta.url));

export interface RecordedHistory {
  workflowType: string;
  /** <workflow type>/<scenario>, as the fixture's path names it. */
  name: string;
  history: History;
}

/** Every committed history, by workflow type (the directory it is in, which must be the type it starts). */
export function recordedHistories(): Map<string, RecordedHistory[]> {
  const byType = new Map<string, RecordedHistory[]>();
  if (!existsSync(HISTORIES_DIRECTORY)) return byType;
  for (const workflowType of readdirSync(HISTORIES_DIRECTORY).sort()) {
    const files = readdirSync(path.join(HISTORIES_DIRECTORY, workflowType)).filter((file) => file.endsWith('.json'));
    byType.set(
      workflowType,
      files.sort().map((file) => {
        const name = `${workflowType}/${file.replace(/\.json$/, '')}`;
        const history = historyFromJson(readFileSync(path.join(HISTORIES_DIRECTORY, workflowType, file), 'utf8'));
        if (workflowTypeOf(history) !== workflowType) throw new Error(`${name} is a history of ${workflowTypeOf(history)}`);
        return { workflowType, name, history };
      }),
    );
  }
  return byType;
}

/** Errors only: a history that does not replay is reported by the test, not in the SDK's warnings as well. Once per process. */
export function quietReplayRuntime() {
  Runtime.install({
    logger: new DefaultLogger('ERROR'),
    telemetryOptions: { logging: { filter: { core: 'ERROR', other: 'ERROR' } } },
  });
}

/** Replays each history on the bundle, one after the other in one replay worker; the error of each that did not replay. */
export async function replay(
  workflowBundle: WorkflowBundle,
  histories: RecordedHistory[],
): Promise<Map<string, Error | undefined>> {
  const outcomes = new Map<string, Error | undefined>();
  const replays = Worker.runReplayHistories(
    // Histories recorded since payloads are encrypted hold the test key's ciphertext; older ones pass through as they are.
    { workflowBundle, replayName: 'recorded-histories', dataConverter: TEST_DATA_CONVERTER },
    histories.map(({ name, history }) => ({ workflowId: name, history })),
  );
  for await (const { workflowId, error } of replays) outcomes.set(workflowId, error);
  return outcomes;
}

/** One line per history that did not replay: its name, and why. */
export function describeFailures(outcomes: Map<string, Error | undefined>): string[] {
  return [...outcomes].flatMap(([name, error]) => (error ? [`${name}: ${error.name}: ${error.message}`] : []));
}
