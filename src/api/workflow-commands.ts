import { type Client, WorkflowNotFoundError, WorkflowUpdateFailedError } from '@temporalio/client';
import { Problem } from './problem.js';

const TEMPORAL_TIMEOUT_MS = 15_000;

/**
 * Runs a command against a conversation workflow and maps Temporal's answers to problems:
 * a rejected update is a conflict, a finished workflow too, anything else means Temporal is away.
 */
export async function commandConversation<T>(temporal: Client, command: () => Promise<T>): Promise<T> {
  try {
    return await temporal.withDeadline(Date.now() + TEMPORAL_TIMEOUT_MS, command);
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError) {
      throw new Problem(409, 'conversation-state', 'The conversation cannot do that now', error.cause?.message ?? error.message);
    }
    if (error instanceof WorkflowNotFoundError) {
      throw new Problem(409, 'conversation-state', 'The conversation is closed', 'its workflow is no longer running');
    }
    throw new Problem(503, 'workflows-unavailable', 'Workflows are unavailable', 'Temporal did not answer; retry later');
  }
}
