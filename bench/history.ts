// History events and Temporal actions per conversation, for two lives: the typical one (greeting, assignment, two
// replies each way, resolution, survey, rating, close: tests/workflows/typical-life.test.ts) and the longest of the
// other workflow tests. Both run now on the time-skipping server and are counted next to the same lives as they were
// recorded before the conversation's history was made leaner (the replay fixtures of customerConversation, recorded
// from the code before the patch LOCAL_DATABASE_STEPS: they are what "today" means, and they stay to prove that
// running conversations still replay). The flood of tests/integration/long-conversation.test.ts (3,600 mails, each a
// signal) is not one of them: it runs on a dev server of its own for minutes, and its history is its signals.
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { LOCAL_DATABASE_STEPS, STAGE_WITH_ITS_STEP } from '../src/workflows/conversation.js';

const ROOT = fileURLToPath(new URL('..', import.meta.url));
const TYPICAL = 'typical-life--greets-is-assigned-has-two-replies-each-way-is-resolved-surveyed-rated-and-closed';
/** The recorded histories of the conversations as they were before the leaner history. */
const TODAY = 'tests/fixtures/histories/customerConversation';
const WORKFLOW_TESTS = 'tests/workflows';
/** Fixtures recorded since a patch carry its name after their scenario's name; they are "now", not "today". */
const PATCH_FIXTURE_SUFFIXES = [LOCAL_DATABASE_STEPS, STAGE_WITH_ITS_STEP].map((patch) => `--${patch}`);

interface HistoryEvent {
  eventType: string;
  markerRecordedEventAttributes?: { markerName?: string };
  upsertWorkflowSearchAttributesEventAttributes?: { searchAttributes?: { indexedFields?: Record<string, unknown> } };
  activityTaskStartedEventAttributes?: { attempt?: number };
  workflowExecutionStartedEventAttributes?: { continuedExecutionRunId?: string };
  workflowTaskCompletedEventAttributes?: { meteringMetadata?: { nonfirstLocalActivityExecutionAttempts?: number } };
}

/** The kinds of events a person reads in the Temporal UI, and what they cost in Temporal Cloud actions. */
export interface HistoryCounts {
  events: number;
  /** Temporal Cloud actions, by its published rules (see countActions). */
  actions: number;
  workflowTasks: number;
  activities: number;
  localActivities: number;
  /** Workflow tasks that ran local activities: all of one task's local activities are one action. */
  localActivityTasks: number;
  timers: number;
  signals: number;
  updates: number;
  searchAttributeUpserts: number;
}

export interface LifeFigures {
  /** The test's scenario (file--test name), as the fixtures name it. */
  scenario: string;
  today: HistoryCounts;
  now: HistoryCounts;
}

export interface HistoryFigures {
  typical: LifeFigures;
  longest: LifeFigures;
}

const LOCAL_ACTIVITY_MARKER = 'core_local_activity';
/** Set by patched(); Temporal Cloud does not count its upsert. */
const CHANGE_VERSION_ATTRIBUTE = 'TemporalChangeVersion';

const of = (event: HistoryEvent, type: string) => event.eventType === `EVENT_TYPE_${type}`;

/**
 * Temporal Cloud's actions in one run's history (docs.temporal.io/cloud/actions):
 * - workflow started (client start, continue-as-new): 1; a signalWithStart that starts it is one action with its
 *   signal (the signal recorded before the first workflow task of a run that did not continue as new);
 * - every other signal received: 1; every update accepted: 1 (rejected ones leave no event and are not counted);
 * - activity scheduled: 1, and each retry (the started event's attempt - 1): 1;
 * - local activities: all of one workflow task's markers are 1, plus each retry past the first attempt
 *   (meteringMetadata.nonfirstLocalActivityExecutionAttempts); workflow task heartbeats of a long local activity are
 *   not told apart in the history and not counted;
 * - timer started: 1; search-attribute upsert: 1 per command, except patched()'s TemporalChangeVersion;
 * - a signal this workflow sends another: 1 (Temporal Cloud bills it in the receiver's history, but this conversation
 *   caused it); a child workflow: 2. Queries leave no event and are not counted.
 */
export function countActions(events: HistoryEvent[]): number {
  let actions = 0;
  let firstTaskStarted = false;
  let markersOfTask = false;
  const startedFresh = !events[0]?.workflowExecutionStartedEventAttributes?.continuedExecutionRunId;
  for (const event of events) {
    if (of(event, 'WORKFLOW_TASK_COMPLETED')) {
      markersOfTask = false;
      actions += event.workflowTaskCompletedEventAttributes?.meteringMetadata?.nonfirstLocalActivityExecutionAttempts ?? 0;
    } else if (of(event, 'WORKFLOW_TASK_STARTED')) firstTaskStarted = true;
    else if (of(event, 'WORKFLOW_EXECUTION_STARTED')) actions += 1;
    else if (of(event, 'WORKFLOW_EXECUTION_SIGNALED')) actions += startedFresh && !firstTaskStarted ? 0 : 1;
    else if (of(event, 'WORKFLOW_EXECUTION_UPDATE_ACCEPTED')) actions += 1;
    else if (of(event, 'ACTIVITY_TASK_SCHEDULED')) actions += 1;
    else if (of(event, 'ACTIVITY_TASK_STARTED'))
      actions += Math.max(0, (event.activityTaskStartedEventAttributes?.attempt ?? 1) - 1);
    else if (of(event, 'MARKER_RECORDED') && event.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER) {
      if (!markersOfTask) actions += 1;
      markersOfTask = true;
    } else if (of(event, 'TIMER_STARTED')) actions += 1;
    else if (of(event, 'UPSERT_WORKFLOW_SEARCH_ATTRIBUTES')) {
      const keys = Object.keys(event.upsertWorkflowSearchAttributesEventAttributes?.searchAttributes?.indexedFields ?? {});
      if (keys.some((key) => key !== CHANGE_VERSION_ATTRIBUTE)) actions += 1;
    } else if (of(event, 'SIGNAL_EXTERNAL_WORKFLOW_EXECUTION_INITIATED')) actions += 1;
    else if (of(event, 'START_CHILD_WORKFLOW_EXECUTION_INITIATED')) actions += 2;
  }
  return actions;
}

function count(runs: HistoryEvent[][]): HistoryCounts {
  const events = runs.flat();
  const number = (type: string) => events.filter((event) => of(event, type)).length;
  const localActivities = events.filter(
    (event) => of(event, 'MARKER_RECORDED') && event.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER,
  ).length;
  const localActivityTasks = runs.reduce((sum, run) => {
    let tasks = 0;
    let counted = false;
    for (const event of run) {
      if (of(event, 'WORKFLOW_TASK_COMPLETED')) counted = false;
      else if (event.markerRecordedEventAttributes?.markerName === LOCAL_ACTIVITY_MARKER && !counted) {
        tasks++;
        counted = true;
      }
    }
    return sum + tasks;
  }, 0);
  return {
    events: events.length,
    actions: runs.reduce((sum, run) => sum + countActions(run), 0),
    workflowTasks: number('WORKFLOW_TASK_COMPLETED'),
    activities: number('ACTIVITY_TASK_SCHEDULED'),
    localActivities,
    localActivityTasks,
    timers: number('TIMER_STARTED'),
    signals: number('WORKFLOW_EXECUTION_SIGNALED'),
    updates: number('WORKFLOW_EXECUTION_UPDATE_ACCEPTED'),
    searchAttributeUpserts: number('UPSERT_WORKFLOW_SEARCH_ATTRIBUTES'),
  };
}

/** The runs of one scenario in a directory: the history, or its first and last runs when it continued as new. */
function runsOf(directory: string, scenario: string): HistoryEvent[][] | undefined {
  const names = [`${scenario}.json`, `${scenario}--first-run.json`, `${scenario}--last-run.json`];
  const files = readdirSync(directory).filter((name) => names.includes(name));
  if (files.length === 0) return undefined;
  return files.map((file) => (JSON.parse(readFileSync(path.join(directory, file), 'utf8')) as { events: HistoryEvent[] }).events);
}

/** The scenarios of the workflow tests recorded today, by their events, the typical life left out; longest first. */
function longestRecordedToday(): string[] {
  const today = path.join(ROOT, TODAY);
  const scenarios = new Set(
    readdirSync(today)
      .filter((name) => name.endsWith('.json') && !name.startsWith('long-conversation--') && !name.startsWith('typical-life--'))
      .map((name) => name.replace(/(--first-run|--last-run)?\.json$/, ''))
      .filter((scenario) => !PATCH_FIXTURE_SUFFIXES.some((suffix) => scenario.endsWith(suffix))),
  );
  const events = (scenario: string) => runsOf(today, scenario)!.flat().length;
  return [...scenarios].sort((a, b) => events(b) - events(a));
}

/**
 * Scenarios whose test was renamed when the life took another shape: the same life, told by its new name. The
 * customer still rates the survey, and a changed rating still counts, but the API stores ratings since the patch
 * local-database-steps, and the closed conversation's run no longer waits for them.
 */
const RENAMED: Record<string, string> = {
  'csat-survey--records-the-rating-and-a-changed-one-closes-after-the-quiet-period-and-takes-ratings-until-the-link':
    'csat-survey--closes-after-the-quiet-period-and-ends-its-run-there-saying-how-the-survey-was-rated-the-api-stores',
};

/** Runs both lives' test files on the current code and counts their histories next to the recorded ones. */
export async function measureConversationHistory(): Promise<HistoryFigures> {
  const longest = longestRecordedToday()[0]!;
  const recorded = mkdtempSync(path.join(tmpdir(), 'mailroom-history-'));
  try {
    const nameNow = (scenario: string) => RENAMED[scenario] ?? scenario;
    const files = [
      ...new Set([TYPICAL, longest].map((scenario) => `${WORKFLOW_TESTS}/${nameNow(scenario).split('--')[0]}.test.ts`)),
    ];
    const vitest = spawn('npx', ['vitest', 'run', '--project', 'workflows', ...files], {
      cwd: ROOT,
      stdio: ['ignore', 'ignore', 'inherit'],
      env: { ...process.env, RECORD_HISTORIES: recorded },
    });
    const [code] = (await once(vitest, 'exit')) as [number | null];
    if (code !== 0) throw new Error(`${files.join(', ')} failed (exit ${code})`);
    const life = (scenario: string): LifeFigures => {
      const today = runsOf(path.join(ROOT, TODAY), scenario);
      const now = runsOf(path.join(recorded, 'customerConversation'), nameNow(scenario));
      if (!today || !now) throw new Error(`no history of ${scenario} ${today ? 'recorded now' : `in ${TODAY}`}`);
      return { scenario, today: count(today), now: count(now) };
    };
    return { typical: life(TYPICAL), longest: life(longest) };
  } finally {
    rmSync(recorded, { recursive: true, force: true });
  }
}
