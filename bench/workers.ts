// The same load (bench/greeting-load.ts) on one worker process and on two worker processes polling one task queue, in
// ABBA order (one, two, two, one for two rounds) so drift weighs on both alike: throughput and CPU of two over one. On
// a machine of two cores, where the API, Temporal, PostgreSQL and the bench share those cores with the workers, the
// ratio shows that two workers share the work correctly (every conversation greeted once, both did work), not a speed-up.
import { runGreetingLoad, type LoadBench, type LoadRun } from './greeting-load.js';
import type { BenchStack } from './stack.js';

export interface WorkersOptions {
  conversations: number;
  /** Worker processes of each run, in order (workersOrder). */
  order: number[];
  concurrency: number;
}

/** Worker processes per run, ABBA: 1, 2 | 2, 1 | 1, 2 ... */
export function workersOrder(rounds: number): number[] {
  return Array.from({ length: rounds }, (_, index) => (index % 2 === 0 ? [1, 2] : [2, 1])).flat();
}

export async function measureWorkers(stack: BenchStack, bench: LoadBench, options: WorkersOptions): Promise<LoadRun[]> {
  const runs: LoadRun[] = [];
  for (const workers of options.order) {
    runs.push(
      await runGreetingLoad(stack, bench, { conversations: options.conversations, workers, concurrency: options.concurrency }),
    );
  }
  return runs;
}

/** Several runs of one worker count as one: totals over their conversations. */
export interface LoadSummary {
  workers: number;
  runs: number;
  conversations: number;
  seconds: number;
  perSecond: number;
  workerCpuMsPerConversation: number;
  apiCpuMsPerMail: number;
  serverCpuMsPerConversation: number | undefined;
  postgresCpuMsPerConversation: number | undefined;
  /** The workers' RSS above their idle baseline once all wait, per conversation (after a GC). */
  rssBytesPerConversation: number;
  /** One idle worker process's RSS (the mean of the baselines). */
  rssIdleBytes: number;
  historyEventsMean: number;
  historyEventsMax: number;
  historyBytesMean: number;
  historyBytesMax: number;
  /** Each process's share of the workflow tasks and activities, by run (for two workers: both above zero). */
  shares: Array<Array<{ workflowTasks: number; activities: number; localActivities: number }>>;
  checks: LoadRun['checks'] & { warnings: number; firstWarnings: string[] };
}

export function summarize(runs: LoadRun[]): LoadSummary {
  const sum = (values: number[]) => values.reduce((total, value) => total + value, 0);
  const optionalSum = (values: Array<number | undefined>) =>
    values.some((value) => value === undefined) ? undefined : sum(values as number[]);
  const conversations = sum(runs.map((run) => run.conversations));
  const seconds = sum(runs.map((run) => run.seconds));
  const shares = runs.flatMap((run) => run.shares);
  const perConversationMs = (value: number | undefined) => (value === undefined ? undefined : (value * 1000) / conversations);
  const events = runs.flatMap((run) => run.historyEvents);
  const bytes = runs.flatMap((run) => run.historyBytes);
  const checkSum = (key: Exclude<keyof LoadRun['checks'], 'failedTaskKinds'>) => sum(runs.map((run) => run.checks[key]));
  return {
    workers: runs[0]!.workers,
    runs: runs.length,
    conversations,
    seconds,
    perSecond: conversations / seconds,
    workerCpuMsPerConversation: perConversationMs(sum(shares.map((share) => share.cpuSeconds)))!,
    apiCpuMsPerMail: perConversationMs(sum(runs.map((run) => run.apiCpuSeconds)))!,
    serverCpuMsPerConversation: perConversationMs(optionalSum(runs.map((run) => run.serverCpuSeconds))),
    postgresCpuMsPerConversation: perConversationMs(optionalSum(runs.map((run) => run.postgresCpuSeconds))),
    rssBytesPerConversation: sum(shares.map((share) => share.rssSettled - share.rssBaseline)) / conversations,
    rssIdleBytes: sum(shares.map((share) => share.rssBaseline)) / shares.length,
    historyEventsMean: sum(events) / events.length,
    historyEventsMax: Math.max(...events),
    historyBytesMean: sum(bytes) / bytes.length,
    historyBytesMax: Math.max(...bytes),
    shares: runs.map((run) =>
      run.shares.map(({ workflowTasks, activities, localActivities }) => ({ workflowTasks, activities, localActivities })),
    ),
    checks: {
      greetedOnce: checkSum('greetedOnce'),
      greetedMoreThanOnce: checkSum('greetedMoreThanOnce'),
      notGreeted: checkSum('notGreeted'),
      greetingsSent: checkSum('greetingsSent'),
      notRunning: checkSum('notRunning'),
      failedTasks: checkSum('failedTasks'),
      failedTaskKinds: runs
        .flatMap((run) => Object.entries(run.checks.failedTaskKinds))
        .reduce<Record<string, number>>((kinds, [kind, times]) => ({ ...kinds, [kind]: (kinds[kind] ?? 0) + times }), {}),
      warnings: sum(shares.map((share) => share.warnings)),
      firstWarnings: shares.flatMap((share) => share.firstWarnings).slice(0, 3),
    },
  };
}

/** Why a run cannot be trusted, or null: a conversation not greeted exactly once, a failed workflow, an idle worker. */
export function loadCheckFailure(summary: LoadSummary): string | null {
  const { checks } = summary;
  const problems: string[] = [];
  if (checks.greetedOnce !== summary.conversations) {
    problems.push(
      `${checks.greetedOnce} of ${summary.conversations} greeted exactly once (${checks.greetedMoreThanOnce} more than once, ` +
        `${checks.notGreeted} never)`,
    );
  }
  if (checks.greetingsSent !== summary.conversations)
    problems.push(`${checks.greetingsSent} greetings marked sent in the outbox`);
  if (checks.notRunning > 0) problems.push(`${checks.notRunning} workflows not running`);
  // Every workflow task was taken by one of the processes; a process that took none did no share of the work.
  const idle = summary.shares.filter((run) => run.some((share) => share.workflowTasks === 0));
  if (idle.length > 0) problems.push(`in ${idle.length} run(s) a worker process took no workflow task`);
  return problems.length === 0 ? null : problems.join('; ');
}
