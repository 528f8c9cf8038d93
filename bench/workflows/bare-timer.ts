// The bare side of bench/waiting-conversations.ts: a workflow that only waits on a durable timer, started with a
// signal as the Mailroom conversations are. What Temporal and the worker spend on a waiting workflow, without Mailroom.
import { defineSignal, setHandler, sleep } from '@temporalio/workflow';

export const bareWakeSignal = defineSignal('wake');

export async function bareTimerWorkflow(): Promise<void> {
  setHandler(bareWakeSignal, () => undefined);
  await sleep('1 day');
}
