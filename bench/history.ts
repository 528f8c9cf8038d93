// History events of a typical conversation (greeting, assignment, two replies each way, resolution, survey,
// rating, close): the workflow test tests/workflows/typical-life.test.ts runs that life now, on the time-skipping
// server, and its history is counted next to the same life of the earlier workflow type (conversationWorkflow),
// whose history was recorded before the reshape and is kept with the replay fixtures.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TEST_FILE = 'tests/workflows/typical-life.test.ts';
const BEFORE = 'tests/fixtures/histories/conversationWorkflow';

interface HistoryEvent {
  eventType: string;
}

/** The kinds of events a person reads in the Temporal UI, and what each costs. */
export interface HistoryCounts {
  events: number;
  workflowTasks: number;
  activities: number;
  localActivities: number;
  timers: number;
  signals: number;
  updates: number;
  searchAttributeUpserts: number;
}

export interface HistoryFigures {
  before: HistoryCounts;
  now: HistoryCounts;
}

function count(events: HistoryEvent[]): HistoryCounts {
  const of = (type: string) => events.filter((event) => event.eventType === `EVENT_TYPE_${type}`).length;
  return {
    events: events.length,
    workflowTasks: of('WORKFLOW_TASK_COMPLETED'),
    activities: of('ACTIVITY_TASK_SCHEDULED'),
    localActivities: of('MARKER_RECORDED'), // local activities and patches; the typical life has no patch
    timers: of('TIMER_STARTED'),
    signals: of('WORKFLOW_EXECUTION_SIGNALED'),
    updates: of('WORKFLOW_EXECUTION_UPDATE_ACCEPTED'),
    searchAttributeUpserts: of('UPSERT_WORKFLOW_SEARCH_ATTRIBUTES'),
  };
}

function typicalLifeIn(directory: string): HistoryEvent[] {
  const file = readdirSync(directory).find((name) => name.startsWith('typical-life--'));
  if (!file) throw new Error(`no typical-life history in ${directory}`);
  return (JSON.parse(readFileSync(path.join(directory, file), 'utf8')) as { events: HistoryEvent[] }).events;
}

/** Runs the typical life on the current code and counts its history next to the recorded one of the earlier type. */
export async function measureConversationHistory(): Promise<HistoryFigures> {
  const recorded = mkdtempSync(path.join(tmpdir(), 'mailroom-history-'));
  try {
    const vitest = spawn('npx', ['vitest', 'run', '--project', 'workflows', TEST_FILE], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, RECORD_HISTORIES: recorded },
    });
    const [code] = (await once(vitest, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`${TEST_FILE} failed (exit ${code})`);
    return {
      before: count(typicalLifeIn(path.join(ROOT, BEFORE))),
      now: count(typicalLifeIn(path.join(recorded, 'customerConversation'))),
    };
  } finally {
    rmSync(recorded, { recursive: true, force: true });
  }
}
