import { fileURLToPath } from 'node:url';
import { bundleWorkflowCode, DefaultLogger, ReplayError } from '@temporalio/worker';
import { DeterminismViolationError } from '@temporalio/workflow';
import { beforeAll, describe, expect, it } from 'vitest';
import { workflowBundleOptions } from '../../src/worker.js';
import { quietReplayRuntime, recordedHistories, replay, type RecordedHistory } from './recorded-histories.js';

// The replay test of the replay test: a workflow changed the way that breaks running workflows (a
// mutant, made by rewriting its source text as it is bundled) must fail to replay the recorded
// histories that take the changed path, with a determinism error, and replay the others.

interface Mutant {
  description: string;
  /** The workflow source file to change. */
  file: string;
  search: string;
  replacement: string;
  workflowType: string;
  /** The histories that take the changed path. */
  affects(history: RecordedHistory): boolean;
}

const MUTANT_LOADER = fileURLToPath(new URL('./mutant-loader.cjs', import.meta.url));

const takeBackThenServe = {
  takeBack: `    for (const { reason, takeBackFromUserId } of batch) {
      if (!takeBackFromUserId) continue;
      const taken = await db.takeBackConversations.executeWithOptions({ summary: \`Take back open conversations: \${reason}\` }, [
        { channelId, userId: takeBackFromUserId },
      ]);
      for (const id of taken) changed.set(id, reason);
    }
`,
  serve: `    const reasons = [...new Set(batch.map((request) => request.reason))].join('; ');
    const { othersAssigned } = await db.assignFromQueue.executeWithOptions({ summary: \`Serve the queue: \${reasons}\` }, [
      { channelId },
    ]);
`,
};

const breachThenOffer = {
  breach: `  const { priority } = await writes(run).markSlaBreached.executeWithOptions(
    { summary: \`SLA breached: no first response by \${state.sla!.dueAtText}\` },
    [{ conversationId: state.conversationId }],
  );
  upsertSearchAttributes([
    { key: SlaBreachedAttribute, value: true },
    { key: PriorityAttribute, value: priority },
  ]);
`,
  offer: `  const offer = await writes(run).offerToNextAgent.executeWithOptions({ summary: 'Offer it to the next available agent' }, [
    { conversationId: state.conversationId },
  ]);
`,
};

const MUTANTS: Mutant[] = [
  {
    description: 'the assignment queue serves the queue before it takes back the conversations of an agent who left',
    file: fileURLToPath(new URL('../../src/workflows/assignment-queue.ts', import.meta.url)),
    search: takeBackThenServe.takeBack + takeBackThenServe.serve,
    replacement: takeBackThenServe.serve + takeBackThenServe.takeBack,
    workflowType: 'assignmentQueueWorkflow',
    affects: ({ history }) =>
      (history.events ?? []).some(
        (event) => event.activityTaskScheduledEventAttributes?.activityType?.name === 'takeBackConversations',
      ),
  },
  {
    description: 'a breached SLA offers the conversation to the next agent before it flags the breach',
    file: fileURLToPath(new URL('../../src/workflows/conversation.ts', import.meta.url)),
    search: breachThenOffer.breach + breachThenOffer.offer,
    replacement: breachThenOffer.offer + breachThenOffer.breach,
    workflowType: 'customerConversation',
    // As an activity (runs before LOCAL_DATABASE_STEPS) or as a local activity's marker.
    affects: ({ history }) =>
      (history.events ?? []).some(
        (event) =>
          event.activityTaskScheduledEventAttributes?.activityType?.name === 'markSlaBreached' ||
          localActivityTypeOf(event) === 'markSlaBreached',
      ),
  },
];

/** The activity type a local activity's marker names (its data is JSON the worker writes, never encoded). */
function localActivityTypeOf(event: NonNullable<RecordedHistory['history']['events']>[number]): string | undefined {
  const marker = event.markerRecordedEventAttributes;
  const data = marker?.markerName === 'core_local_activity' ? marker.details?.data?.payloads?.[0]?.data : undefined;
  if (!data) return undefined;
  return (JSON.parse(Buffer.from(data).toString('utf8')) as { activity_type?: string }).activity_type;
}

const historiesByType = recordedHistories();

describe('replay catches a workflow change that would break running workflows', () => {
  beforeAll(() => {
    quietReplayRuntime();
  });

  for (const mutant of MUTANTS) {
    it(`fails the histories that ${mutant.description} would break, and only those`, async () => {
      const histories = historiesByType.get(mutant.workflowType) ?? [];
      const affected = histories.filter((history) => mutant.affects(history)).map((history) => history.name);
      expect(affected.length, `recorded ${mutant.workflowType} histories that take the changed path`).toBeGreaterThan(0);

      const workflowBundle = await bundleWorkflowCode({
        ...workflowBundleOptions,
        logger: new DefaultLogger('WARN'),
        webpackConfigHook: (config) => {
          config.module?.rules?.push({
            resource: mutant.file,
            enforce: 'pre',
            use: [{ loader: MUTANT_LOADER, options: { search: mutant.search, replacement: mutant.replacement } }],
          });
          return config;
        },
      });
      const outcomes = await replay(workflowBundle, histories);

      const failed = [...outcomes].filter(([, error]) => error).map(([name]) => name);
      expect(failed).toEqual(affected);
      for (const name of affected) {
        // Replay matches a local activity's marker by its sequence number: the swapped calls get each other's results,
        // and the run fails its workflow task on them (a ReplayError) instead of at the command (a determinism error).
        const ranLocally = histories
          .find((history) => history.name === name)!
          .history.events?.some((event) => localActivityTypeOf(event) === 'markSlaBreached');
        expect(outcomes.get(name)).toBeInstanceOf(ranLocally ? ReplayError : DeterminismViolationError);
      }
    });
  }
});
