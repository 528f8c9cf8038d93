import { continueAsNew, proxyActivities, setCurrentDetails } from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';

// The daily sweep (a Temporal Schedule per task queue starts it) that erases the closed conversations an account
// keeps no longer than its retention. Accounts take turns, a few conversations each: an account with a million
// expired conversations is worked through over many rounds while every other account gets its share in each.

const sweep = proxyActivities<Activities>({
  startToCloseTimeout: '5 minutes',
  heartbeatTimeout: '1 minute',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '5 minutes' },
});

export interface RetentionSweepInput {
  /** Where the round goes on, carried over continue-as-new. */
  afterAccountId?: string | null;
  /** Whether the accounts looked at since the first one erased anything. */
  foundThisCycle?: boolean;
  erased?: number;
}

/** Accounts per round, and conversations of each per round. */
const ACCOUNTS_PER_ROUND = 20;
const CONVERSATIONS_PER_ACCOUNT = 25;
// A round is a few activities per account: the history stays a few thousand events.
const ROUNDS_PER_RUN = 50;

/** Erases every closed conversation past its account's retention, round by round, until a whole cycle finds none. */
export async function retentionSweep(input: RetentionSweepInput = {}): Promise<{ erased: number }> {
  let afterAccountId = input.afterAccountId ?? null;
  let foundThisCycle = input.foundThisCycle ?? false;
  let erased = input.erased ?? 0;
  for (let round = 0; round < ROUNDS_PER_RUN; round++) {
    setCurrentDetails(`Erasing closed conversations past their account's retention: ${erased} so far`);
    const page = await sweep.findExpiredConversations.executeWithOptions(
      { summary: 'Find closed conversations past their account’s retention' },
      [{ afterAccountId, accounts: ACCOUNTS_PER_ROUND, perAccount: CONVERSATIONS_PER_ACCOUNT }],
    );
    for (const account of page.accounts) {
      const step = await sweep.eraseConversations.executeWithOptions(
        { summary: `Erase ${account.conversationIds.length} conversations of account ${account.accountId}` },
        [{ conversationIds: account.conversationIds }],
      );
      erased += step.erased;
      foundThisCycle = true;
    }
    afterAccountId = page.nextAccountId;
    if (afterAccountId === null) {
      if (!foundThisCycle) {
        setCurrentDetails(`Done: ${erased} conversations erased`);
        return { erased };
      }
      foundThisCycle = false;
    }
  }
  return continueAsNew<typeof retentionSweep>({ afterAccountId, foundThisCycle, erased });
}
