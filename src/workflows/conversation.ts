import {
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  proxyActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { ConversationStage, ConversationStatus, MailClassification } from '../db/schema.js';
import {
  agentReplyUpdate,
  conversationSnapshotQuery,
  csatRatingSignal,
  inboundMessageSignal,
  resolveUpdate,
  type Actor,
  type CsatRatingInput,
  type ResolveInput,
} from './messages.js';
import { AssigneeIdAttribute, StageAttribute, StatusAttribute } from './search-attributes.js';

// Database reads and writes: quick, retried briefly and often.
const db = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

// SMTP: an outage can last hours; keep retrying, the outbox makes every retry safe.
const smtp = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '15 minutes' },
});

export interface ConversationWorkflowInput {
  conversationId: string;
  /** State handed over by continue-as-new. */
  carried?: CarriedState;
}

interface CarriedState {
  stage: ConversationStage;
  assignee: Actor | null;
  pendingMessageIds: string[];
  recentMessageIds: string[];
  survey: { id: string; expiresAt: number } | null;
}

export interface ConversationOutcome {
  conversationId: string;
  stage: ConversationStage;
}

// Ids of recently signalled messages, kept to drop a signal the ingest repeats after a retry.
const RECENT_MESSAGES_KEPT = 200;

/**
 * One customer conversation, from the first mail to the CSAT rating:
 * triage (greeting, assignment) → open until an agent resolves → CSAT survey after the
 * channel's delay → waiting for the rating until the link expires → closed.
 * A customer mail after resolution reopens it to its previous assignee.
 */
export async function conversationWorkflow(input: ConversationWorkflowInput): Promise<ConversationOutcome> {
  const { conversationId } = input;
  let stage: ConversationStage = input.carried?.stage ?? 'triage';
  let assignee = input.carried?.assignee ?? null;
  let survey = input.carried?.survey ?? null;
  const pendingMessageIds = [...(input.carried?.pendingMessageIds ?? [])];
  const recentMessageIds = [...(input.carried?.recentMessageIds ?? [])];
  let resolveRequest: ResolveInput | undefined;
  const ratings: CsatRatingInput[] = [];

  // Handlers first, before any await, so that no signal or update is missed.
  setHandler(inboundMessageSignal, ({ inboundMessageId }) => {
    if (recentMessageIds.includes(inboundMessageId)) return;
    recentMessageIds.push(inboundMessageId);
    if (recentMessageIds.length > RECENT_MESSAGES_KEPT) recentMessageIds.shift();
    pendingMessageIds.push(inboundMessageId);
  });

  setHandler(csatRatingSignal, (rating) => {
    ratings.push(rating);
  });

  setHandler(
    agentReplyUpdate,
    ({ author, text, subject }) =>
      smtp.sendAgentReply.executeWithOptions({ summary: `Send the reply of ${author.name}` }, [
        { conversationId, outboxId: uuid4(), authorId: author.id, text, ...(subject ? { subject } : {}) },
      ]),
    {
      validator: (reply) => {
        if (!reply.text.trim()) throw ApplicationFailure.nonRetryable('the reply text is empty', 'InvalidReply');
        if (stage === 'closed') throw ApplicationFailure.nonRetryable('the conversation is closed', 'ConversationClosed');
      },
    },
  );

  setHandler(
    resolveUpdate,
    async (request) => {
      resolveRequest = request;
      await condition(() => resolveRequest === undefined); // the main loop has recorded it
      return { status: 'resolved' as ConversationStatus };
    },
    {
      validator: (_request: ResolveInput) => {
        if (!isOpen(stage) || resolveRequest) {
          throw ApplicationFailure.nonRetryable(`the conversation is not open (stage ${stage})`, 'ConversationNotOpen');
        }
      },
    },
  );

  setHandler(conversationSnapshotQuery, () => ({
    conversationId,
    stage,
    assigneeId: assignee?.id ?? null,
    pendingMessages: pendingMessageIds.length,
  }));

  function enterStage(next: ConversationStage, details: string) {
    stage = next;
    upsertSearchAttributes([
      { key: StageAttribute, value: next },
      { key: StatusAttribute, value: statusOf(next) },
      { key: AssigneeIdAttribute, value: assignee?.id ?? null },
    ]);
    setCurrentDetails(details);
  }

  /** Takes the customer mails that arrived since the last look; returns their classifications. */
  async function takeNewMessages(): Promise<MailClassification[]> {
    const inboundMessageIds = pendingMessageIds.splice(0);
    return inboundMessageIds.length === 0 ? [] : db.classifyInboundMessages({ inboundMessageIds });
  }

  async function reopen() {
    await db.markReopened.executeWithOptions({ summary: 'Reopen: the customer wrote again' }, [{ conversationId }]);
    enterOpenStage();
  }

  function enterOpenStage() {
    if (assignee) enterStage('assigned', `Assigned to ${assignee.name}; open until resolved`);
    else enterStage('queued', 'Waiting for an available agent');
  }

  async function triage() {
    setCurrentDetails('Triage: greeting and assignment');
    const context = await db.loadConversation.executeWithOptions({ summary: 'Load the conversation and channel settings' }, [
      { conversationId },
    ]);
    const classifications = await takeNewMessages();
    const fromPerson = classifications[0] === 'ordinary';
    if (context.status !== 'open') {
      await db.markReopened.executeWithOptions({ summary: 'Reopen: the customer wrote after it was closed' }, [
        { conversationId },
      ]);
    }
    if (context.greetingEnabled && !context.greetingSent && fromPerson) {
      if (context.automaticMailBlocked) {
        await suppressAutomaticMail('greeting', context.automaticMailBlocked);
      } else {
        await smtp.sendGreeting.executeWithOptions({ summary: 'Send the channel greeting to the customer' }, [
          { conversationId, outboxId: uuid4() },
        ]);
      }
    }
    assignee =
      context.assignee ??
      (await db.assignRoundRobin.executeWithOptions({ summary: 'Assign to the next available agent (round robin)' }, [
        { conversationId },
      ]));
    enterOpenStage();
  }

  async function waitForResolution() {
    await condition(() => pendingMessageIds.length > 0 || resolveRequest !== undefined || workflowInfo().continueAsNewSuggested);
    await takeNewMessages();
    if (resolveRequest) {
      await db.markResolved.executeWithOptions({ summary: `Resolved by ${resolveRequest.resolvedBy.name}` }, [
        { conversationId, resolvedBy: resolveRequest.resolvedBy.id },
      ]);
      resolveRequest = undefined;
      enterStage('resolved', 'Resolved');
    }
  }

  /**
   * After resolution: the CSAT survey after the channel's delay, unless the customer writes first.
   * False when the channel has no survey: the workflow then ends, and a later mail starts it again.
   */
  async function surveyAfterDelay(): Promise<boolean> {
    const context = await db.loadConversation({ conversationId });
    if (!context.csatEnabled || !context.heardFromPerson) return false;
    const delay = describeSeconds(context.csatDelaySeconds);
    const outcome = await customerWritesWithin(
      context.csatDelaySeconds * 1000,
      `Send the CSAT survey in ${delay} unless the customer writes again`,
    );
    if (outcome === 'customer') {
      await reopen();
      return true;
    }
    // Read again after the delay: the per-recipient limit counts what was sent meanwhile.
    const { automaticMailBlocked } = await db.loadConversation({ conversationId });
    if (automaticMailBlocked) {
      await suppressAutomaticMail('csat_survey', automaticMailBlocked);
      return false;
    }
    const surveyId = uuid4();
    const { expiresAt } = await smtp.sendCsatSurvey.executeWithOptions({ summary: 'Send the CSAT survey' }, [
      { conversationId, outboxId: uuid4(), surveyId },
    ]);
    survey = { id: surveyId, expiresAt: Date.parse(expiresAt) };
    enterStage('csat', `CSAT survey sent; the link is valid until ${expiresAt}`);
    return true;
  }

  /** Records ratings (a later one replaces an earlier one) until the survey link expires. */
  async function collectRatings() {
    const expiresAt = new Date(survey!.expiresAt).toISOString();
    const outcome = await customerWritesWithin(
      survey!.expiresAt - Date.now(),
      `Wait for the CSAT rating until the link expires (${expiresAt})`,
      () => ratings.length > 0,
    );
    if (outcome === 'timeout') {
      await db.markClosed.executeWithOptions({ summary: 'Close: the survey link expired' }, [{ conversationId }]);
      enterStage('closed', 'Closed');
      return;
    }
    for (const rating of ratings.splice(0)) {
      if (rating.surveyId !== survey!.id) continue; // a link from an earlier resolution
      await db.recordCsatRating.executeWithOptions({ summary: `Record the CSAT rating ${rating.rating}/5` }, [
        { conversationId, ...rating },
      ]);
    }
    if (outcome === 'customer') await reopen();
  }

  /**
   * Waits until the customer (a person) writes, something else wakes it, or the time is up. Mail from
   * machines is kept by the ingest but wakes nothing here: an out-of-office answer to our survey must
   * not reopen the conversation and start a mail loop.
   */
  async function customerWritesWithin(
    ms: number,
    summary: string,
    alsoWakeOn = () => false,
  ): Promise<'customer' | 'other' | 'timeout'> {
    const deadline = Date.now() + ms;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return 'timeout';
      if (!(await condition(() => pendingMessageIds.length > 0 || alsoWakeOn(), remaining, { summary }))) return 'timeout';
      if ((await takeNewMessages()).includes('ordinary')) return 'customer';
      if (alsoWakeOn()) return 'other';
    }
  }

  async function suppressAutomaticMail(kind: 'greeting' | 'csat_survey', reason: string) {
    setCurrentDetails(`No ${kind === 'greeting' ? 'greeting' : 'survey'}: ${reason}`);
    await db.recordAutomaticMailSuppressed.executeWithOptions(
      { summary: `Do not send the ${kind.replace('_', ' ')}: ${reason}` },
      [{ conversationId, kind, reason }],
    );
  }

  async function finish(): Promise<ConversationOutcome> {
    await condition(allHandlersFinished);
    return { conversationId, stage };
  }

  for (;;) {
    switch (stage) {
      case 'triage':
        await triage();
        break;
      case 'queued':
      case 'assigned':
        await waitForResolution();
        break;
      case 'resolved':
        if (!(await surveyAfterDelay())) return finish();
        break;
      case 'csat':
        await collectRatings();
        break;
      case 'closed':
        return finish();
    }
    if (workflowInfo().continueAsNewSuggested) {
      await condition(allHandlersFinished);
      await continueAsNew<typeof conversationWorkflow>({
        conversationId,
        carried: { stage, assignee, pendingMessageIds, recentMessageIds, survey },
      });
    }
  }
}

function isOpen(stage: ConversationStage): boolean {
  return stage === 'triage' || stage === 'queued' || stage === 'assigned';
}

function statusOf(stage: ConversationStage): ConversationStatus {
  if (isOpen(stage)) return 'open';
  return stage === 'closed' ? 'closed' : 'resolved';
}

function describeSeconds(seconds: number): string {
  if (seconds % 86_400 === 0 && seconds > 0) return `${seconds / 86_400} d`;
  if (seconds % 3600 === 0 && seconds > 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0 && seconds > 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
