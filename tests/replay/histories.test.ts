import { bundleWorkflowCode, DefaultLogger, type WorkflowBundle } from '@temporalio/worker';
import { beforeAll, describe, expect, it } from 'vitest';
import { workflowBundleOptions } from '../../src/worker.js';
import { describeFailures, quietReplayRuntime, recordedHistories, replay } from './recorded-histories.js';

// Deploy safety: workflows that run today must go on with tomorrow's code. Each committed history was
// recorded from code that ran (`npm run record-histories`); replaying it on the current code fails with
// a determinism error where the code now issues other commands. Guard such a change with patched(), or
// make it a new workflow type (README, "Changing workflow code safely").

const historiesByType = recordedHistories();

describe('the workflow code replays every recorded history', () => {
  let workflowBundle: WorkflowBundle;

  beforeAll(async () => {
    quietReplayRuntime();
    workflowBundle = await bundleWorkflowCode({ ...workflowBundleOptions, logger: new DefaultLogger('WARN') });
  });

  for (const [workflowType, histories] of historiesByType) {
    it(`replays the ${histories.length} recorded ${workflowType} histories`, async () => {
      const outcomes = await replay(workflowBundle, histories);
      expect(outcomes.size).toBe(histories.length);
      expect(describeFailures(outcomes), 'histories that no longer replay').toEqual([]);
    });
  }
});
