// The conversation workflow as it ran before it was reshaped (workflow type `conversationWorkflow`).
// Kept so that conversations started before the reshape replay; at their next step they continue as new
// as `customerConversation` (patch RESHAPED). Remove this file once no run of this type is left:
// `WorkflowType='conversationWorkflow' AND ExecutionStatus='Running'` finds none.
import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  makeContinueAsNewFunc,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../../activities/index.js';
import type {
  AutomaticMailKind,
  ConversationStage,
  ConversationStatus,
  CustomerMessageFacts,
  ResolvedBy,
} from '../../domain/conversation.js';
import type { ConversationState, customerConversation } from '../conversation.js';
import { conversationWorkflowId } from '../ids.js';
import {
  agentReplyUpdate,
  assignmentChangedSignal,
  assignUpdate,
  conversationSnapshotQuery,
  csatRatingSignal,
  inboundMessageSignal,
  notSpamSignal,
  reopenSignal,
  reopenUpdate,
  resolveUpdate,
  type Actor,
  type AssignInput,
  type CsatRatingInput,
  type ReopenInput,
  type ResolveInput,
} from '../messages.js';
import {
  AssigneeIdAttribute,
  PriorityAttribute,
  SlaBreachedAttribute,
  StageAttribute,
  StatusAttribute,
} from '../search-attributes.js';

// Reading the conversation and the channel's settings, and routing: quick database work that runs as
// local activities, inside the workflow task, without a round trip to the server each. (Most of
// the cost of starting a conversation was such round trips.)
const read = proxyLocalActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

// Database writes that change who has the conversation or where it stands: quick, retried briefly and often.
const db = proxyActivities<Activities>({
  startToCloseTimeout: '30 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '1 minute' },
});

// SMTP: an outage can last hours; keep retrying, the outbox makes every retry safe.
const smtp = proxyActivities<Activities>({
  startToCloseTimeout: '2 minutes',
  retry: { initialInterval: '5 seconds', backoffCoefficient: 2, maximumInterval: '15 minutes' },
});

// The AI provider: a few attempts, then the conversation goes to people instead of waiting for it.
const ai = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3 },
});

export interface ConversationWorkflowInput {
  conversationId: string;
  /** State handed over by continue-as-new. */
  carried?: CarriedState;
}

/** Who takes the conversation once business hours open. */
type Handler = { kind: 'ai'; aiAgent: Actor } | { kind: 'humans' };

interface CarriedState {
  stage: ConversationStage;
  assignee: Actor | null;
  handler: Handler;
  aiTurns: number;
  lastCustomerMail: CustomerMessageFacts | null;
  customerWaiting: boolean;
  sla: { dueAt: number; dueAtText: string } | null;
  slaBreached: boolean;
  firstResponded: boolean;
  resolvedBy: ResolvedBy | null;
  resolvedAt: number | null;
  pendingMessageIds: string[];
  recentMessageIds: string[];
  survey: { id: string; expiresAt: number } | null;
  /** What arrived during the last step of the previous run and still needs acting on. */
  assignmentChanged?: string;
  humanReplied?: Actor;
  ratings?: CsatRatingInput[];
  reopenRequest?: ReopenInput;
  spamRelease?: Actor;
}

export interface ConversationOutcome {
  conversationId: string;
  stage: ConversationStage;
}

// Patch: AI answers and handover notes are checked against the automatic-mail limits like a greeting.
const AUTOMATIC_MAIL_CHECKED_FOR_AI = 'automatic-mail-checked-for-ai';
// Patch: mail from a machine (or spam) to a closed conversation no longer reopens it.
const MACHINE_MAIL_DOES_NOT_REOPEN = 'machine-mail-does-not-reopen';

// Ids of recently signalled messages, kept to drop a signal the ingest repeats after a retry.
const RECENT_MESSAGES_KEPT = 200;

// A run continues as new when the server suggests it (~4,096 events) or sooner: a worker that lost the
// workflow from its cache replays the whole history, and long replays near the task timeout were seen.
const HISTORY_EVENTS_PER_RUN = 2_000;

function timeToContinueAsNew(): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || info.historyLength > HISTORY_EVENTS_PER_RUN;
}

/**
 * One customer conversation, from the first mail to the CSAT rating:
 * triage (routing rules, greeting) → the AI agent, if the rules or the channel say so → waiting for
 * business hours → queued until an agent has capacity → assigned until resolved → CSAT survey after
 * the channel's delay → closed after the quiet period. A customer mail after resolution, or an agent,
 * reopens it to its previous assignee. The first-response SLA runs in business time while people handle it.
 */
export async function conversationWorkflow(input: ConversationWorkflowInput): Promise<ConversationOutcome> {
  const { conversationId } = input;
  const carried = input.carried;
  let stage: ConversationStage = carried?.stage ?? 'triage';
  let assignee = carried?.assignee ?? null;
  let handler: Handler = carried?.handler ?? { kind: 'humans' };
  let aiTurns = carried?.aiTurns ?? 0;
  let lastCustomerMail = carried?.lastCustomerMail ?? null;
  // A customer mail nobody (AI or person) has answered yet.
  let customerWaiting = carried?.customerWaiting ?? false;
  let sla = carried?.sla ?? null;
  let slaBreached = carried?.slaBreached ?? false;
  let firstResponded = carried?.firstResponded ?? false;
  // Agents' replies written to the outbox and still being sent: the run neither ends nor continues as new before they went out.
  let deliveriesInFlight = 0;
  let resolvedBy = carried?.resolvedBy ?? null;
  let resolvedAt = carried?.resolvedAt ?? null;
  let survey = carried?.survey ?? null;
  const pendingMessageIds = [...(carried?.pendingMessageIds ?? [])];
  const recentMessageIds = [...(carried?.recentMessageIds ?? [])];
  let resolveRequest: ResolveInput | undefined;
  let assignRequest: AssignInput | undefined;
  let reopenRequest: ReopenInput | undefined = carried?.reopenRequest;
  let assignRefused: string | undefined; // why the last manual assignment could not be made
  let assignmentChanged: string | undefined = carried?.assignmentChanged;
  let humanReplied: Actor | undefined = carried?.humanReplied;
  const ratings: CsatRatingInput[] = [...(carried?.ratings ?? [])];
  // The agent who released it from spam, until triage has routed it.
  let spamRelease: Actor | undefined = carried?.spamRelease;

  // Handlers first, before any await, so that no signal or update is missed. They only record
  // what arrived; the main loop acts on it.
  setHandler(inboundMessageSignal, ({ inboundMessageId }) => {
    if (recentMessageIds.includes(inboundMessageId)) return;
    recentMessageIds.push(inboundMessageId);
    if (recentMessageIds.length > RECENT_MESSAGES_KEPT) recentMessageIds.shift();
    pendingMessageIds.push(inboundMessageId);
  });

  setHandler(csatRatingSignal, (rating) => {
    ratings.push(rating);
  });

  setHandler(assignmentChangedSignal, ({ reason }) => {
    assignmentChanged = reason;
  });

  setHandler(notSpamSignal, ({ by }) => {
    spamRelease = by;
  });

  setHandler(
    agentReplyUpdate,
    async ({ author, text, subject }) => {
      const outboxId = uuid4();
      const written = await db.writeAgentReply.executeWithOptions({ summary: `Write the reply of ${author.name}` }, [
        { conversationId, outboxId, authorId: author.id, text, ...(subject ? { subject } : {}) },
      ]);
      firstResponded = true;
      if (stage === 'ai') humanReplied = author; // a person took over from the AI agent
      // The agent is answered once the reply is in the outbox; sending waits out a mail server outage.
      deliveriesInFlight += 1;
      void smtp.deliverOutbox
        .executeWithOptions({ summary: `Send the reply of ${author.name}` }, [{ outboxId }])
        .catch((error: unknown) => log.error('the reply could not be sent', { outboxId, error: String(error) }))
        .finally(() => (deliveriesInFlight -= 1));
      return written;
    },
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
    { validator: (_request: ResolveInput) => requireOpen(resolveRequest) },
  );

  setHandler(
    assignUpdate,
    async (request) => {
      assignRequest = request;
      await condition(() => assignRequest === undefined); // the main loop has applied it
      if (assignRefused) {
        const reason = assignRefused;
        assignRefused = undefined;
        throw ApplicationFailure.nonRetryable(reason, 'AssignmentRefused');
      }
      return { assignee };
    },
    { validator: (_request: AssignInput) => requireOpen(assignRequest) },
  );

  setHandler(
    reopenUpdate,
    async (request) => {
      reopenRequest = request;
      await condition(() => reopenRequest === undefined); // the main loop has reopened it
      return { status: statusOf(stage), assignee };
    },
    {
      validator: (_request: ReopenInput) => {
        if (isOpen(stage) || reopenRequest) {
          throw ApplicationFailure.nonRetryable(`the conversation is open already (stage ${stage})`, 'ConversationOpen');
        }
      },
    },
  );

  setHandler(reopenSignal, (request) => {
    // A fresh run (triage) reads whether it was closed; an open conversation (a customer mail was faster) stays as it is.
    if (!isOpen(stage) || stage === 'triage') reopenRequest ??= request;
  });

  setHandler(conversationSnapshotQuery, () => ({
    conversationId,
    stage,
    assigneeId: assignee?.id ?? null,
    aiAgentId: handler.kind === 'ai' ? handler.aiAgent.id : null,
    slaBreached,
    pendingMessages: pendingMessageIds.length,
  }));

  function requireOpen(pendingRequest: unknown) {
    if (!isOpen(stage) || pendingRequest) {
      throw ApplicationFailure.nonRetryable(`the conversation is not open (stage ${stage})`, 'ConversationNotOpen');
    }
  }

  function enterStage(next: ConversationStage, details: string) {
    stage = next;
    upsertSearchAttributes([
      { key: StageAttribute, value: next },
      { key: StatusAttribute, value: statusOf(next) },
      { key: AssigneeIdAttribute, value: assignee?.id ?? null },
    ]);
    setCurrentDetails(details);
  }

  function enterOpenStage() {
    const slaNote = sla && !firstResponded ? `; first response due by ${sla.dueAtText}` : '';
    if (assignee) enterStage('assigned', `Assigned to ${assignee.name}; open until resolved${slaNote}`);
    else enterStage('queued', `Waiting in the queue for an agent with free capacity${slaNote}`);
  }

  /** Something a person or another workflow asked for, or a customer mail, needs the main loop. */
  const somethingArrived = () =>
    pendingMessageIds.length > 0 ||
    resolveRequest !== undefined ||
    assignRequest !== undefined ||
    assignmentChanged !== undefined ||
    humanReplied !== undefined;

  /** The customer mails that arrived since the last look, with what they say (person? asks for a human?). */
  async function takeNewMessages(): Promise<CustomerMessageFacts[]> {
    const inboundMessageIds = pendingMessageIds.splice(0);
    if (inboundMessageIds.length === 0) return [];
    // A regular activity, not a local one: with local activities, mails read in the workflow task that also
    // continued as new went missing from the history (seen in tests/integration/long-conversation.test.ts).
    const facts = await db.readCustomerMessages({ conversationId, inboundMessageIds });
    const fromPerson = facts.filter(isFromPerson);
    if (fromPerson.length > 0) {
      lastCustomerMail = fromPerson[fromPerson.length - 1]!;
      customerWaiting = true;
    }
    return facts;
  }

  /**
   * Applies what arrived while the conversation is open: manual (un)assignment, an assignment the
   * channel's queue made, a resolution. True when the stage changed.
   */
  async function handleRequests(): Promise<boolean> {
    await takeNewMessages();
    const before = stage;
    if (assignmentChanged !== undefined) {
      const reason = assignmentChanged;
      assignmentChanged = undefined;
      const context = await read.loadConversation.executeWithOptions({ summary: `Read the assignment again: ${reason}` }, [
        { conversationId },
      ]);
      if (context.status === 'open' && (stage === 'queued' || stage === 'assigned')) {
        assignee = context.assignee;
        enterOpenStage();
      }
    }
    if (assignRequest) {
      const { assignee: wanted, by } = assignRequest;
      if (wanted) {
        const given = await assignByHand(wanted, by, `${by.name} assigns it to ${wanted.name}`);
        if (given) {
          assignee = given;
          handler = { kind: 'humans' };
          enterOpenStage();
        }
      } else if (assignee) {
        const previous = assignee;
        await db.unassign.executeWithOptions({ summary: `${by.name} takes it from ${previous.name}` }, [
          { conversationId, byId: by.id },
        ]);
        assignee = null;
        await assignFromQueue([previous.id]);
      }
      assignRequest = undefined;
    }
    if (resolveRequest) {
      await resolve({ kind: 'agent', id: resolveRequest.resolvedBy.id }, resolveRequest.resolvedBy.name);
      resolveRequest = undefined;
    }
    return stage !== before;
  }

  async function triage() {
    setCurrentDetails('Triage: routing rules, greeting');
    const context = await read.loadConversation.executeWithOptions({ summary: 'Load the conversation and channel settings' }, [
      { conversationId },
    ]);
    const mails = await takeNewMessages();
    if (context.status === 'spam') {
      enterStage('spam', `Spam, kept out of the queue: ${context.spamReason ?? 'flagged'}. An agent can release it (not spam)`);
      return;
    }
    // Released from spam: the mail that started it was taken in an earlier run.
    const fromPerson = mails[0] ? isFromPerson(mails[0]) : spamRelease !== undefined && context.heardFromPerson;
    spamRelease = undefined;
    // An auto-reply, a bounce or spam after the end (a mail loop, a forger) leaves it closed: the run ends again.
    if (context.status === 'closed' && !reopenRequest && !mails.some(isFromPerson) && patched(MACHINE_MAIL_DOES_NOT_REOPEN)) {
      enterStage('closed', 'Closed; a machine wrote afterwards (auto-reply, bounce or spam), which reopens nothing');
      return;
    }
    if (context.status !== 'open') {
      const by = reopenRequest?.by;
      await db.markReopened.executeWithOptions(
        {
          summary: by ? `Reopen: ${by.name} reopened the closed conversation` : 'Reopen: the customer wrote after it was closed',
        },
        [{ conversationId, ...(by ? { reopenedBy: by } : {}) }],
      );
    }
    reopenRequest = undefined; // applied above, or moot: it was open
    if (context.greetingEnabled && !context.greetingSent && fromPerson) {
      if (context.automaticMailBlocked) await suppressAutomaticMail('greeting', context.automaticMailBlocked);
      else {
        await smtp.sendGreeting.executeWithOptions({ summary: 'Send the channel greeting to the customer' }, [
          { conversationId, outboxId: uuid4() },
        ]);
      }
    }
    if (context.assignee) {
      // Started again after it was closed: back to the agent who had it.
      assignee = context.assignee;
      enterOpenStage();
      return;
    }
    const route = await read.routeConversation.executeWithOptions({ summary: 'Apply the routing rules (first match wins)' }, [
      { conversationId },
    ]);
    upsertSearchAttributes([{ key: PriorityAttribute, value: route.priority }]);
    if (route.handler.kind === 'agent') {
      assignee = route.handler.agent;
      await startSlaClock();
      enterOpenStage();
    } else if (route.handler.kind === 'ai' && fromPerson) {
      handler = { kind: 'ai', aiAgent: route.handler.aiAgent };
      if (route.insideBusinessHours || route.handler.answersOutsideBusinessHours) {
        enterStage('ai', `${handler.aiAgent.name} (AI agent) answers`);
      } else {
        await waitForBusinessHours();
      }
    } else {
      await handToHumans();
    }
  }

  /**
   * The AI agent answers the customer's mails until the customer confirms an answer (resolved by the
   * AI agent) or one of the escalation triggers hands the conversation to people.
   */
  async function aiAgentAnswers() {
    if (handler.kind !== 'ai') return handToHumans();
    const aiAgent = handler.aiAgent;
    const settings = await read.loadConversation({ conversationId });
    for (;;) {
      if (!customerWaiting) {
        // Until the customer (a person) writes again, or a person steps in.
        await condition(() => somethingArrived() || timeToContinueAsNew());
        if (humanReplied) return humanTakesOver(aiAgent, humanReplied);
        if (await handleRequests()) return;
        if (!customerWaiting) {
          if (timeToContinueAsNew()) return;
          continue;
        }
      }
      if (lastCustomerMail?.asksForPerson) return escalate(aiAgent, 'the customer asked for a person');
      if (aiTurns > 0 && lastCustomerMail?.confirmsResolution) {
        return resolve({ kind: 'ai_agent', id: aiAgent.id }, `${aiAgent.name}: the customer confirmed the answer`);
      }
      if (aiTurns >= settings.aiMaxTurns) {
        return escalate(aiAgent, `no resolution after ${aiTurns} AI answers (the channel allows ${settings.aiMaxTurns})`);
      }
      // An AI answer is automatic mail: the flood limits and sender checks hold it back like a greeting.
      if (patched(AUTOMATIC_MAIL_CHECKED_FOR_AI)) {
        const { automaticMailBlocked } = await read.loadConversation.executeWithOptions(
          { summary: 'May an automatic answer go out? (loop and flood limits)' },
          [{ conversationId }],
        );
        if (automaticMailBlocked) {
          return escalate(aiAgent, `no automatic answer may go out: ${automaticMailBlocked}`, automaticMailBlocked);
        }
      }
      let answer;
      try {
        answer = await ai.answerWithAi.executeWithOptions({ summary: `${aiAgent.name} drafts an answer` }, [
          { conversationId, aiAgentId: aiAgent.id },
        ]);
      } catch (error) {
        if (!(error instanceof ActivityFailure)) throw error;
        return escalate(aiAgent, `the AI provider failed: ${error.cause?.message ?? error.message}`);
      }
      // A person replied while the AI agent drafted: the conversation is theirs, the draft is not sent.
      if (humanReplied) return humanTakesOver(aiAgent, humanReplied);
      if (answer.confidence < settings.aiConfidenceThreshold) {
        return escalate(
          aiAgent,
          `confidence ${answer.confidence.toFixed(2)} is below the channel's threshold ${settings.aiConfidenceThreshold}`,
        );
      }
      await smtp.sendAiReply.executeWithOptions(
        { summary: `Send the answer of ${aiAgent.name} (confidence ${answer.confidence.toFixed(2)})` },
        [{ conversationId, outboxId: uuid4(), aiAgentId: aiAgent.id, text: answer.text }],
      );
      aiTurns++;
      customerWaiting = false;
      enterStage('ai', `${aiAgent.name} answered (${aiTurns} of ${settings.aiMaxTurns}); waiting for the customer`);
    }
  }

  /** An agent replied while the AI agent had the conversation: it is theirs now. */
  async function humanTakesOver(aiAgent: Actor, agent: Actor) {
    humanReplied = undefined;
    handler = { kind: 'humans' };
    const given = await assignByHand(agent, agent, `${agent.name} took over from ${aiAgent.name}`);
    assignRefused = undefined; // nobody waits for this one: someone who is no agent of the channel (an admin) replied
    if (!given) return handToHumans();
    assignee = given;
    enterOpenStage();
  }

  /** Assigns to a person regardless of capacity; undefined (and the reason in assignRefused) when they are no agent of the channel. */
  async function assignByHand(agent: Actor, by: Actor, summary: string): Promise<Actor | undefined> {
    try {
      return await db.assignManually.executeWithOptions({ summary }, [{ conversationId, assigneeId: agent.id, byId: by.id }]);
    } catch (error) {
      if (!(error instanceof ActivityFailure)) throw error;
      assignRefused = error.cause?.message ?? error.message;
      return undefined;
    }
  }

  /** Hands over from the AI agent: a short note to the customer, then human assignment. */
  /** `automaticMailBlocked`: why no automatic mail may go out, when the caller has just read it. */
  async function escalate(aiAgent: Actor, reason: string, automaticMailBlocked?: string) {
    await db.recordEscalation.executeWithOptions({ summary: `Escalate to people: ${reason}` }, [
      { conversationId, aiAgentId: aiAgent.id, reason },
    ]);
    const blocked =
      automaticMailBlocked ??
      (patched(AUTOMATIC_MAIL_CHECKED_FOR_AI)
        ? (await read.loadConversation.executeWithOptions({ summary: 'May the handover note go out?' }, [{ conversationId }]))
            .automaticMailBlocked
        : null);
    if (blocked) await suppressAutomaticMail('handover', blocked);
    else {
      await smtp.sendHandoverNote.executeWithOptions({ summary: `${aiAgent.name} tells the customer a person takes over` }, [
        { conversationId, outboxId: uuid4(), aiAgentId: aiAgent.id },
      ]);
    }
    handler = { kind: 'humans' };
    await handToHumans();
  }

  /** From here people handle it: the SLA clock starts, and assignment waits for business hours. */
  async function handToHumans() {
    handler = { kind: 'humans' };
    await startSlaClock();
    await waitForBusinessHours();
  }

  async function startSlaClock() {
    if (sla) return;
    const clock = await read.startSlaClock.executeWithOptions({ summary: 'Start the first-response SLA (business time)' }, [
      { conversationId },
    ]);
    if (clock) sla = { dueAt: Date.parse(clock.dueAt), dueAtText: clock.dueAtText };
  }

  /**
   * Outside business hours: the out-of-office note (once per conversation), then a timer until they
   * open. Then the conversation goes to whoever the handler is: the AI agent or the queue.
   */
  async function waitForBusinessHours() {
    for (;;) {
      const hours = await read.checkBusinessHours.executeWithOptions({ summary: 'Check the business hours' }, [
        { conversationId },
      ]);
      if (hours.open || !hours.opensAt) break;
      if (lastCustomerMail) await sendOutOfOffice(hours.opensAtText!);
      enterStage('waiting_for_hours', `Outside business hours: waiting until they open ${hours.opensAtText}`);
      const arrived = await condition(somethingArrived, Date.parse(hours.opensAt) - Date.now(), {
        summary: `Until business hours open ${hours.opensAtText}`,
      });
      if (arrived) {
        humanReplied = undefined;
        if ((await handleRequests()) || timeToContinueAsNew()) return;
      }
    }
    if (handler.kind === 'ai') enterStage('ai', `${handler.aiAgent.name} (AI agent) answers`);
    else await assignFromQueue();
  }

  /** Once per conversation, and never to a machine or past the per-recipient limit. */
  async function sendOutOfOffice(opensAtText: string) {
    const context = await read.loadConversation({ conversationId });
    if (context.outOfOfficeSent) return;
    if (context.automaticMailBlocked) return suppressAutomaticMail('out_of_office', context.automaticMailBlocked);
    await smtp.sendOutOfOffice.executeWithOptions({ summary: `Send the out-of-office note (open ${opensAtText})` }, [
      { conversationId, outboxId: uuid4(), opensAtText },
    ]);
  }

  /** Takes the next agent with free capacity by the channel's strategy, or joins the queue. */
  async function assignFromQueue(excludeUserIds: string[] = []) {
    const result = await db.assignFromQueue.executeWithOptions({ summary: 'Assign to the next agent with free capacity' }, [
      { conversationId, excludeUserIds },
    ]);
    await tellAssigned(result.othersAssigned, 'the queue was served');
    assignee = result.assignee;
    enterOpenStage();
  }

  /** Other conversations the queue gave an agent to: their workflows read the assignment again. */
  async function tellAssigned(conversationIds: string[], reason: string) {
    for (const other of conversationIds) {
      if (other === conversationId) continue;
      try {
        await getExternalWorkflowHandle(conversationWorkflowId(other)).signal(assignmentChangedSignal, { reason });
      } catch {
        // That conversation's workflow has ended; it reads its assignment when it starts again.
      }
    }
  }

  async function waitWhileOpen() {
    const slaRunning = sla && !firstResponded && !slaBreached;
    if (slaRunning) {
      const arrived = await condition(() => somethingArrived() || firstResponded, Math.max(0, sla!.dueAt - Date.now()), {
        summary: `First response due by ${sla!.dueAtText} (SLA)`,
      });
      if (!arrived) return breachSla();
    } else {
      await condition(() => somethingArrived() || timeToContinueAsNew());
    }
    humanReplied = undefined;
    await handleRequests();
  }

  /** The first-response target passed: flag it, raise the priority, offer it to the next available agent. */
  async function breachSla() {
    slaBreached = true;
    const { priority } = await db.markSlaBreached.executeWithOptions(
      { summary: `SLA breached: no first response by ${sla!.dueAtText}` },
      [{ conversationId }],
    );
    upsertSearchAttributes([
      { key: SlaBreachedAttribute, value: true },
      { key: PriorityAttribute, value: priority },
    ]);
    const offer = await db.offerToNextAgent.executeWithOptions({ summary: 'Offer it to the next available agent' }, [
      { conversationId },
    ]);
    assignee = offer.assignee;
    enterOpenStage();
    setCurrentDetails(
      `SLA breached (first response was due by ${sla!.dueAtText}); ${assignee ? `now with ${assignee.name}` : 'first in the queue'}`,
    );
  }

  async function resolve(by: ResolvedBy, name: string) {
    const { othersAssigned } = await db.markResolved.executeWithOptions({ summary: `Resolved by ${name}` }, [
      { conversationId, resolvedBy: by },
    ]);
    // The agent's freed capacity went to the queue: tell those conversations.
    await tellAssigned(othersAssigned, 'an agent resolved a conversation and had capacity again');
    resolvedBy = by;
    resolvedAt = Date.now();
    survey = null;
    enterStage('resolved', `Resolved by ${name}`);
  }

  /**
   * Back to whoever resolved it: the previous assignee, or the AI agent if it did and the customer wrote
   * again. An agent's reopen (reopenRequest) goes to people: the previous assignee, else the queue.
   */
  async function reopen() {
    const by = reopenRequest?.by;
    await db.markReopened.executeWithOptions(
      { summary: by ? `Reopen: ${by.name} reopened it` : 'Reopen: the customer wrote again' },
      [{ conversationId, ...(by ? { reopenedBy: by } : {}) }],
    );
    const byAi = !by && resolvedBy?.kind === 'ai_agent' && handler.kind === 'ai';
    resolvedBy = null;
    resolvedAt = null;
    const context = await read.loadConversation({ conversationId });
    assignee = context.assignee;
    if (assignee) enterOpenStage();
    else if (byAi) enterStage('ai', `${(handler as { aiAgent: Actor }).aiAgent.name} (AI agent) answers again`);
    // The agent's update is answered "open" before the queue, which may wait for business hours. Only for
    // them: a customer's reopen issues the commands it always did, so running histories replay unchanged.
    else if (by) enterOpenStage();
    reopenRequest = undefined;
    if (!assignee && !byAi) await handToHumans();
  }

  /**
   * After resolution: the CSAT survey after the channel's delay, unless the customer writes first.
   * Without a survey, the conversation waits out the quiet period and closes.
   */
  async function surveyAfterDelay() {
    const context = await read.loadConversation({ conversationId });
    if (!context.csatEnabled || !context.heardFromPerson) return waitUntilClosed(context.closeAfterSeconds);
    const delay = describeSeconds(context.csatDelaySeconds);
    const outcome = await customerWritesWithin(
      resolvedAt! + context.csatDelaySeconds * 1000 - Date.now(),
      `Send the CSAT survey in ${delay} unless the customer writes again`,
    );
    if (outcome === 'reopen') return reopen();
    if (outcome === 'other') return; // continue-as-new first; the delay is counted from the resolution
    // Read again after the delay: the per-recipient limit counts what was sent meanwhile.
    const { automaticMailBlocked } = await read.loadConversation({ conversationId });
    if (automaticMailBlocked) {
      await suppressAutomaticMail('csat_survey', automaticMailBlocked);
      return waitUntilClosed(context.closeAfterSeconds);
    }
    const surveyId = uuid4();
    const sent = await smtp.sendCsatSurvey.executeWithOptions({ summary: 'Send the CSAT survey' }, [
      { conversationId, outboxId: uuid4(), surveyId, resolvedBy },
    ]);
    // Null: the contact unsubscribed from surveys (the timeline says so); the quiet period goes on without one.
    if (!sent) return waitUntilClosed(context.closeAfterSeconds);
    const { expiresAt } = sent;
    survey = { id: surveyId, expiresAt: Date.parse(expiresAt) };
    enterStage('csat', `CSAT survey sent; the link is valid until ${expiresAt}`);
  }

  /** Quiet period after resolution (ratings are recorded meanwhile); a customer mail reopens it. */
  async function waitUntilClosed(closeAfterSeconds?: number) {
    const quietSeconds = closeAfterSeconds ?? (await read.loadConversation({ conversationId })).closeAfterSeconds;
    const until = resolvedAt! + quietSeconds * 1000;
    const outcome = await customerWritesWithin(
      until - Date.now(),
      `Close after the quiet period (${new Date(until).toISOString()}) unless the customer writes again`,
      () => ratings.length > 0,
    );
    if (outcome === 'reopen') return reopen();
    await recordRatings();
    if (outcome === 'timeout') {
      await db.markClosed.executeWithOptions({ summary: 'Close: quiet since the resolution' }, [{ conversationId }]);
      enterStage(
        'closed',
        survey ? `Closed; the survey link stays valid until ${new Date(survey.expiresAt).toISOString()}` : 'Closed',
      );
    }
  }

  /** Closed, with a survey link still valid: ratings count until it expires. */
  async function collectLateRatings(): Promise<boolean> {
    if (!survey || survey.expiresAt <= Date.now()) return false;
    const outcome = await customerWritesWithin(
      survey.expiresAt - Date.now(),
      `Wait for the CSAT rating until the link expires (${new Date(survey.expiresAt).toISOString()})`,
      () => ratings.length > 0,
    );
    await recordRatings();
    if (outcome === 'reopen') await reopen();
    return outcome !== 'timeout';
  }

  async function recordRatings() {
    for (const rating of ratings.splice(0)) {
      if (rating.surveyId !== survey?.id) continue; // a link from an earlier resolution
      await db.recordCsatRating.executeWithOptions({ summary: `Record the CSAT rating ${rating.rating}/5` }, [
        { conversationId, ...rating },
      ]);
    }
  }

  /**
   * Waits until the customer (a person) writes or an agent reopens it ('reopen'), something else wakes it,
   * or the time is up. Mail from machines is kept by the ingest but wakes nothing here: an out-of-office
   * answer to our survey must not reopen the conversation and start a mail loop.
   */
  async function customerWritesWithin(
    ms: number,
    summary: string,
    alsoWakeOn = () => false,
  ): Promise<'reopen' | 'other' | 'timeout'> {
    const deadline = Date.now() + ms;
    for (;;) {
      const remaining = deadline - Date.now();
      if (remaining <= 0) return 'timeout';
      const woke = () => pendingMessageIds.length > 0 || reopenRequest !== undefined || alsoWakeOn() || timeToContinueAsNew();
      if (!(await condition(woke, remaining, { summary }))) return 'timeout';
      if ((await takeNewMessages()).some(isFromPerson)) return 'reopen';
      if (reopenRequest) return 'reopen';
      if (alsoWakeOn() || timeToContinueAsNew()) return 'other';
    }
  }

  async function suppressAutomaticMail(kind: AutomaticMailKind, reason: string) {
    setCurrentDetails(`No ${kind.replaceAll('_', ' ')}: ${reason}`);
    await db.recordAutomaticMailSuppressed.executeWithOptions(
      { summary: `Do not send the ${kind.replaceAll('_', ' ')}: ${reason}` },
      [{ conversationId, kind, reason }],
    );
  }

  /**
   * Spam waits for nobody: the run ends, and the release (or another mail) starts it again. False when
   * an agent released it meanwhile: it goes through triage like a new conversation.
   */
  async function keptAsSpam(): Promise<boolean> {
    await condition(() => spamRelease !== undefined || (allHandlersFinished() && deliveriesInFlight === 0));
    if (!spamRelease) return true;
    enterStage('triage', `Released from spam by ${spamRelease.name}: routed like a new conversation`);
    return false;
  }

  /** Whether the run may end: once no update is in flight; an agent's reopen arriving meanwhile continues it instead. */
  async function finished(): Promise<boolean> {
    await condition(() => (allHandlersFinished() && deliveriesInFlight === 0) || reopenRequest !== undefined);
    if (!reopenRequest) return true;
    await reopen();
    return false;
  }

  for (;;) {
    // Between steps, with nothing in flight: go on as the reshaped workflow with everything this run knows.
    if (allHandlersFinished() && deliveriesInFlight === 0 && patched(RESHAPED)) {
      await makeContinueAsNewFunc<typeof customerConversation>({ workflowType: 'customerConversation' })({
        conversationId,
        state: reshapedState(),
      });
    }
    switch (stage) {
      case 'triage':
        await triage();
        break;
      case 'ai':
        await aiAgentAnswers();
        break;
      case 'waiting_for_hours':
        await waitForBusinessHours();
        break;
      case 'queued':
      case 'assigned':
        await waitWhileOpen();
        break;
      case 'resolved':
        await surveyAfterDelay();
        break;
      case 'csat':
        await waitUntilClosed();
        break;
      case 'closed':
        if (!(await collectLateRatings()) && (await finished())) return { conversationId, stage };
        break;
      case 'spam':
        if (await keptAsSpam()) return { conversationId, stage };
        break;
    }
    if (timeToContinueAsNew()) {
      // A resolve, assign or reopen update waits for the main loop: serve it first, or both would wait forever.
      await condition(
        () =>
          (allHandlersFinished() && deliveriesInFlight === 0) ||
          resolveRequest !== undefined ||
          assignRequest !== undefined ||
          reopenRequest !== undefined,
      );
      if (!allHandlersFinished() || deliveriesInFlight > 0) continue;
      await continueAsNew<typeof conversationWorkflow>({
        conversationId,
        carried: {
          stage,
          assignee,
          handler,
          aiTurns,
          lastCustomerMail,
          customerWaiting,
          sla,
          slaBreached,
          firstResponded,
          resolvedBy,
          resolvedAt,
          pendingMessageIds,
          recentMessageIds,
          survey,
          assignmentChanged,
          humanReplied,
          ratings,
          reopenRequest,
          spamRelease,
        },
      });
    }
  }

  function reshapedState(): ConversationState {
    return {
      conversationId,
      stage,
      known: true,
      assignee,
      handler,
      aiTurns,
      lastCustomerMail,
      customerWaiting,
      mailsTaken: 0, // not counted before
      outOfOfficeSent: false, // the activity sends it once per conversation anyway
      sla,
      slaBreached,
      firstResponded,
      resolvedBy,
      resolvedAt,
      survey,
      details: `Continued from the earlier conversation workflow (stage ${stage})`,
      inbox: {
        mails: pendingMessageIds.map((inboundMessageId) => ({ inboundMessageId })),
        seenMailIds: recentMessageIds,
        ratings,
        ...(assignmentChanged !== undefined ? { assignmentChanged } : {}),
        ...(humanReplied ? { humanReplied } : {}),
        ...(spamRelease ? { spamRelease } : {}),
        ...(reopenRequest ? { reopen: reopenRequest } : {}),
      },
    };
  }
}

// Patch: the run goes on as the reshaped workflow type.
const RESHAPED = 'reshaped-as-customer-conversation';

function isOpen(stage: ConversationStage): boolean {
  return stage === 'triage' || stage === 'ai' || stage === 'waiting_for_hours' || stage === 'queued' || stage === 'assigned';
}

function statusOf(stage: ConversationStage): ConversationStatus {
  if (isOpen(stage)) return 'open';
  if (stage === 'spam') return 'spam';
  return stage === 'closed' ? 'closed' : 'resolved';
}

/** A person wrote it: not an auto-reply or a bounce, and not spam (which never reopens or wakes anything). */
function isFromPerson(mail: CustomerMessageFacts): boolean {
  return mail.classification === 'ordinary' && mail.senderVerdict !== 'spam';
}

function describeSeconds(seconds: number): string {
  if (seconds % 86_400 === 0 && seconds > 0) return `${seconds / 86_400} d`;
  if (seconds % 3600 === 0 && seconds > 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0 && seconds > 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
