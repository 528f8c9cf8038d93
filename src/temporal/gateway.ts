import {
  WithStartWorkflowOperation,
  WorkflowIdConflictPolicy,
  WorkflowNotFoundError,
  WorkflowUpdateFailedError,
  type Client,
} from '@temporalio/client';
import { ActivityFailure, ApplicationFailure } from '@temporalio/common';
import type { Actor } from '../domain/conversation.js';
import { customerConversation } from '../workflows/conversation.js';
import { conversationWorkflowId, TASK_QUEUE } from '../workflows/ids.js';
import {
  agentReplyUpdate,
  assignUpdate,
  cancelReplyUpdate,
  inboundMessageSignal,
  notSpamSignal,
  reopenUpdate,
  resolveUpdate,
  type AgentReplyInput,
  type AgentReplyResult,
  type AssignResult,
  type CancelReplyResult,
  type InboundMessageInput,
  type ReopenResult,
  type ResolveResult,
} from '../workflows/messages.js';
import { ChannelIdAttribute, StageAttribute, StatusAttribute } from '../workflows/search-attributes.js';

// Everything the API and the ingest ask of Temporal goes through here: one deadline, and two kinds of
// failure the callers turn into answers (409 for what the conversation cannot do now, 503 for Temporal away).

/** How long a request waits for Temporal before it answers that workflows are unavailable. */
export const TEMPORAL_DEADLINE_MS = 10_000;

/** Temporal did not answer in time (or at all): what was stored stays stored, the caller may repeat. */
export class WorkflowsUnavailableError extends Error {
  override name = 'WorkflowsUnavailableError';
  /** What the client should do about it, for the 503 it gets (what was saved, what to repeat). */
  readonly whenAway: string | undefined;
  constructor(message: string, options: { cause?: unknown; whenAway?: string } = {}) {
    super(message, { cause: options.cause });
    this.whenAway = options.whenAway;
  }
}

/** The conversation's workflow refused (an update's validator or handler), or its run has ended. */
export class ConversationStateError extends Error {
  override name = 'ConversationStateError';
  constructor(
    message: string,
    /** The workflow's failure type, e.g. `ConversationOpen`, `ConversationNotOpen`, `AssignmentRefused`; `Ended` when no run is there. */
    readonly type: string,
  ) {
    super(message);
  }
}

/** Runs one call to Temporal under the deadline; any failure but a refusal means Temporal is away. */
export async function withTemporal<T>(
  temporal: Client,
  call: () => Promise<T>,
  {
    what = 'the call to Temporal',
    deadlineMs = TEMPORAL_DEADLINE_MS,
    whenAway,
  }: { what?: string; deadlineMs?: number; whenAway?: string } = {},
): Promise<T> {
  try {
    return await temporal.withDeadline(Date.now() + deadlineMs, call);
  } catch (error) {
    if (error instanceof WorkflowUpdateFailedError) {
      // A refusal from an activity the update ran (the collision guard) is named by the activity's failure.
      const cause = error.cause instanceof ActivityFailure && error.cause.cause ? error.cause.cause : error.cause;
      const type = cause instanceof ApplicationFailure ? (cause.type ?? 'Refused') : 'Refused';
      throw new ConversationStateError(cause?.message ?? error.message, type);
    }
    if (error instanceof WorkflowNotFoundError) throw new ConversationStateError('its workflow is no longer running', 'Ended');
    throw new WorkflowsUnavailableError(`${what} failed: ${(error as Error).message}`, {
      cause: error,
      ...(whenAway ? { whenAway } : {}),
    });
  }
}

/** What a conversation's workflow is started with, when a request may start it. */
export interface ConversationStart {
  conversationId: string;
  channelId: string;
  /** The Temporal UI's title for the run: channel, subject and why it started. */
  summary: string;
}

export function createConversationGateway(
  temporal: Client,
  { taskQueue = TASK_QUEUE, deadlineMs = TEMPORAL_DEADLINE_MS }: { taskQueue?: string; deadlineMs?: number } = {},
) {
  const call = <T>(run: () => Promise<T>, what?: string) =>
    withTemporal(temporal, run, { deadlineMs, ...(what ? { what } : {}) });
  const handle = (conversationId: string) => temporal.workflow.getHandle(conversationWorkflowId(conversationId));

  function startOptions(start: ConversationStart, stage: 'triage' | 'spam' = 'triage') {
    return {
      workflowId: conversationWorkflowId(start.conversationId),
      taskQueue,
      args: [{ conversationId: start.conversationId }] as [{ conversationId: string }],
      staticSummary: start.summary,
      staticDetails: `Conversation ${start.conversationId}, channel ${start.channelId}`,
      typedSearchAttributes: [
        { key: ChannelIdAttribute, value: start.channelId },
        { key: StatusAttribute, value: stage === 'spam' ? 'spam' : 'open' },
        { key: StageAttribute, value: stage },
      ],
    };
  }

  return {
    /** A stored and threaded customer mail: signals the conversation's run, starting one when none runs. */
    deliverMail(start: ConversationStart, mail: InboundMessageInput, options: { spam: boolean }): Promise<void> {
      return call(async () => {
        await temporal.workflow.signalWithStart(customerConversation, {
          ...startOptions(start, options.spam ? 'spam' : 'triage'),
          signal: inboundMessageSignal,
          signalArgs: [mail],
        });
      }, 'signalling the conversation workflow');
    },

    /** An agent's reply; the same `requestId` (an Idempotency-Key) within a run sends it once. */
    reply(conversationId: string, reply: AgentReplyInput, requestId?: string): Promise<AgentReplyResult> {
      return call(() =>
        handle(conversationId).executeUpdate(agentReplyUpdate, { args: [reply], ...(requestId ? { updateId: requestId } : {}) }),
      );
    },

    /** Undoes a reply that still waits (undo grace period, send later); `ReplyNotHeld` once it went out. */
    cancelReply(conversationId: string, outboxId: string, by: Actor): Promise<CancelReplyResult> {
      return call(() => handle(conversationId).executeUpdate(cancelReplyUpdate, { args: [{ outboxId, by }] }));
    },

    resolve(conversationId: string, resolvedBy: Actor): Promise<ResolveResult> {
      return call(() => handle(conversationId).executeUpdate(resolveUpdate, { args: [{ resolvedBy }] }));
    },

    assign(conversationId: string, assignee: Actor | null, by: Actor): Promise<AssignResult> {
      return call(() => handle(conversationId).executeUpdate(assignUpdate, { args: [{ assignee, by }] }));
    },

    /** Reopens a resolved or closed conversation; a closed one whose run has ended starts again for it. */
    reopen(start: ConversationStart, by: Actor): Promise<ReopenResult> {
      return call(() =>
        temporal.workflow.executeUpdateWithStart(reopenUpdate, {
          args: [{ by }],
          startWorkflowOperation: new WithStartWorkflowOperation(customerConversation, {
            ...startOptions(start),
            workflowIdConflictPolicy: WorkflowIdConflictPolicy.USE_EXISTING,
          }),
        }),
      );
    },

    /** Released from spam (the database says so already): its run had ended, and routing starts afresh. */
    releaseFromSpam(start: ConversationStart, by: Actor): Promise<void> {
      return call(async () => {
        await temporal.workflow.signalWithStart(customerConversation, {
          ...startOptions(start),
          signal: notSpamSignal,
          signalArgs: [{ by }],
        });
      });
    },
  };
}

export type ConversationGateway = ReturnType<typeof createConversationGateway>;
