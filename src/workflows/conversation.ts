import {
  ActivityFailure,
  allHandlersFinished,
  ApplicationFailure,
  CancellationScope,
  condition,
  continueAsNew,
  getExternalWorkflowHandle,
  log,
  patched,
  proxyActivities,
  proxyLocalActivities,
  setCurrentDetails,
  setHandler,
  sleep,
  TemporalFailure,
  TimeoutFailure,
  upsertSearchAttributes,
  uuid4,
  workflowInfo,
} from '@temporalio/workflow';
import type { Activities } from '../activities/index.js';
import type { ClosedConversation, ConversationContext } from '../activities/conversation.js';
import type { BusinessHoursCheck, NewConversationRoute, RoutingDecision } from '../activities/routing.js';
import {
  isFromPerson,
  isOpenStage,
  openStageOf,
  statusOfStage,
  type Actor,
  type AutomaticMailKind,
  type ConversationStage,
  type CustomerMessageFacts,
  type ResolvedBy,
} from '../domain/conversation.js';
import { conversationWorkflowId } from './ids.js';
import {
  agentReplyUpdate,
  assignmentChangedSignal,
  cancelReplyUpdate,
  assignUpdate,
  conversationSnapshotQuery,
  csatRatingSignal,
  inboundMessageSignal,
  notSpamSignal,
  reopenSignal,
  reopenUpdate,
  resolveUpdate,
  type AssignInput,
  type CsatRatingInput,
  type InboundMessageInput,
  type ReopenInput,
  type ResolveInput,
} from './messages.js';
import {
  AssigneeIdAttribute,
  PriorityAttribute,
  SlaBreachedAttribute,
  StageAttribute,
  StatusAttribute,
} from './search-attributes.js';

// Reads only, inside the workflow task: a failed task that runs them again changes nothing.
const read = proxyLocalActivities<Activities>({
  startToCloseTimeout: '10 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

// Database writes (stage, assignment, timeline): quick; a worker that dies mid-way is retried within seconds.
const db = proxyActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

// The same writes as local activities, in runs started since LOCAL_DATABASE_STEPS: a run of them in one workflow task
// costs a marker each and no task of its own. They are as short as the reads and as safe to repeat (the outbox and
// `once` keys make a repeated write change nothing), which is all a local activity asks.
const localDb = proxyLocalActivities<Activities>({
  startToCloseTimeout: '15 seconds',
  retry: { initialInterval: '1 second', backoffCoefficient: 2, maximumInterval: '30 seconds' },
});

/**
 * The patch of the leaner history: database steps as local activities, the priority in the stage's upsert, one timer
 * per deadline however often the wait wakes. Runs that started before it keep the old commands to their end.
 */
export const LOCAL_DATABASE_STEPS = 'local-database-steps';

/**
 * The patch of the step that records the stage it leads to: the queue's assignment (assigned or queued), the
 * resolution, the survey sent and the close write the stage with their own change, and so does the out-of-office note
 * (or the record of why none went out) for the wait it starts; the stage needs no local activity of its own.
 */
export const STAGE_WITH_ITS_STEP = 'stage-with-its-step';

// SMTP: an outage can last hours; keep retrying (the outbox makes every retry safe), but not a refusal.
const smtp = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  // A send heartbeats every few seconds: a killed worker's send is retried within seconds, not minutes.
  heartbeatTimeout: '15 seconds',
  retry: {
    initialInterval: '2 seconds',
    backoffCoefficient: 2,
    maximumInterval: '15 minutes',
    nonRetryableErrorTypes: ['DeliveryFailed'],
  },
});

// Mail goes out first as a local activity, in the task that decided it (lean runs): when the mail server answers,
// that is one marker and no task of its own. Only when that one try fails does the send become an activity, which
// waits out an outage for hours with heartbeats; the outbox row (its id picked before the first try, its lease)
// makes the second try send the same mail once. Short: a slow server must not hold the task past its heartbeat.
const smtpFirstTry = proxyLocalActivities<Activities>({
  startToCloseTimeout: '5 seconds',
  retry: { maximumAttempts: 1 },
});

// The AI provider: a few attempts, then the conversation goes to people instead of waiting for it.
const ai = proxyActivities<Activities>({
  startToCloseTimeout: '1 minute',
  retry: { initialInterval: '2 seconds', backoffCoefficient: 2, maximumAttempts: 3 },
});

/** Who takes the conversation once business hours open. */
export type Handler = { kind: 'ai'; aiAgent: Actor } | { kind: 'humans' };

/** What arrived (signals, updates) and waits for the main loop; handlers only put things here. */
export interface Inbox {
  mails: InboundMessageInput[];
  /** Ids of recently signalled mails, to drop a signal the ingest repeats after a retry. */
  seenMailIds: string[];
  ratings: CsatRatingInput[];
  /** Why the assignment changed outside this workflow (the channel's queue was served). */
  assignmentChanged?: string;
  /** An agent replied while the AI agent had the conversation. */
  humanReplied?: Actor;
  /** The agent who released it from spam, until triage has routed it. */
  spamRelease?: Actor;
  resolve?: ResolveInput;
  assign?: AssignInput;
  reopen?: ReopenInput;
}

/** Everything a conversation knows, carried whole from run to run by continue-as-new. */
export interface ConversationState {
  conversationId: string;
  stage: ConversationStage;
  /** False until this run has read the conversation: a fresh run does not know yet whether it is open. */
  known: boolean;
  assignee: Actor | null;
  handler: Handler;
  aiTurns: number;
  /** The customer's last mail (from a person), with what it says. */
  lastCustomerMail: CustomerMessageFacts | null;
  /** A customer mail nobody (AI or person) has answered yet. */
  customerWaiting: boolean;
  /** Mails taken in (each once, machines' included): ops can tell at a glance that nothing was lost or taken twice. */
  mailsTaken: number;
  outOfOfficeSent: boolean;
  sla: { dueAt: number; dueAtText: string } | null;
  slaBreached: boolean;
  firstResponded: boolean;
  resolvedBy: ResolvedBy | null;
  resolvedAt: number | null;
  survey: { id: string; expiresAt: number } | null;
  /** Agents' replies waiting for their moment (undo grace period, send later); absent in runs before undo send. */
  scheduledReplies?: ScheduledReply[];
  /** What the Temporal UI says about the stage. */
  details: string;
  inbox: Inbox;
}

/** An agent's reply held in the outbox until `sendAt` (epoch ms), unless cancelled first. */
export interface ScheduledReply {
  outboxId: string;
  author: Actor;
  sendAt: number;
  /** Send later: the customer writing first cancels it. Undo send: only an agent does. */
  cancelsOnCustomerMail: boolean;
  /** Set by an agent's undo or by the customer's mail; the timer's waiter acts on it. */
  cancel?: { reason: 'undone' | 'customer_wrote'; by?: Actor };
}

export interface CustomerConversationInput {
  conversationId: string;
  /** Handed over by continue-as-new (or by the workflow this one replaced). */
  state?: ConversationState;
}

export interface ConversationOutcome {
  conversationId: string;
  stage: ConversationStage;
}

/** The next stage and what the Temporal UI says about it. */
interface Move {
  to: ConversationStage;
  details: string;
  /** The stage's first step records it in passing (the out-of-office note's), instead of a local activity of its own. */
  firstStepRecordsIt?: boolean;
}
/** What a stage returns: a move, or the end of the run (closed, or kept as spam). */
type Transition = Move | { end: true };

/** One run of the workflow: the carried state, and what only this run tracks. */
interface Run {
  state: ConversationState;
  /** Agents' replies and automatic mail still being sent: the run neither ends nor continues as new before they went out. */
  sendsInFlight: number;
  /** Why the last request of an agent could not be done, for the update waiting on it. */
  refused: { assign?: string; reopen?: string };
  /** False from taking an agent's request until the stage it led to is recorded: their update answers then. */
  answerable: boolean;
  /** Held replies whose cancellation is being recorded: the agent's undo answers once it is. */
  cancelling: Set<string>;
  /** Decided once at the run's start (LOCAL_DATABASE_STEPS): database steps as local activities, deadlines kept. */
  lean: boolean;
  /** The stage the conversation's row holds, as this run wrote it (the carried stage at the run's start). */
  stageInDb: ConversationStage;
  /** The timer of the deadline the run waits for (lean runs): a wait that wakes early and waits again keeps it. */
  deadline?: Deadline;
  /** The routing rules' priority, upserted with the stage (lean runs). */
  priority?: string;
  /** The workflow task whose routing step started the SLA clock, or found no target (lean runs). */
  slaClockStartedInTask?: number;
  /** The quiet period after resolution, as the survey stage read it (lean runs). */
  closeAfterSeconds?: number;
  /**
   * What this workflow task already knows (lean runs; a later task reads again): the business hours, and whether
   * automatic mail may go out when none went out since triage read it.
   */
  known?: { task: number; hours?: BusinessHoursState; automaticMailBlocked?: string | null };
}

type BusinessHoursState = { closed: false } | { closed: true; opensAt: number; opensAtText: string };

/** One durable timer until `at`; `passed` once it fired. */
interface Deadline {
  at: number;
  passed: boolean;
  scope: CancellationScope;
}

/** Where the run's database steps go: local activities in lean runs, activities in runs before the patch. */
function writes(run: Run) {
  return run.lean ? localDb : db;
}

const RECENT_MESSAGES_KEPT = 200;

// A run continues as new when the server suggests it (~4,096 events) or sooner: a worker that lost the
// workflow from its cache replays the whole history, and long replays near the task timeout were seen.
const HISTORY_EVENTS_PER_RUN = 2_000;

function timeToContinueAsNew(): boolean {
  const info = workflowInfo();
  return info.continueAsNewSuggested || info.historyLength > HISTORY_EVENTS_PER_RUN;
}

export function initialState(conversationId: string): ConversationState {
  return {
    conversationId,
    stage: 'triage',
    known: false,
    assignee: null,
    handler: { kind: 'humans' },
    aiTurns: 0,
    lastCustomerMail: null,
    customerWaiting: false,
    mailsTaken: 0,
    outOfOfficeSent: false,
    sla: null,
    slaBreached: false,
    firstResponded: false,
    resolvedBy: null,
    resolvedAt: null,
    survey: null,
    details: 'Triage: routing rules, greeting',
    inbox: { mails: [], seenMailIds: [], ratings: [] },
  };
}

/**
 * One customer conversation, from the first mail to the CSAT rating: triage (routing rules, greeting)
 * → the AI agent, if the rules or the channel say so → waiting for business hours → queued until an
 * agent has capacity → assigned until resolved → CSAT survey after the channel's delay → closed after
 * the quiet period. A customer mail after resolution, or an agent, reopens it. Each stage is a function
 * that returns the next; `moveTo` is the one place the stage changes.
 */
export async function customerConversation(input: CustomerConversationInput): Promise<ConversationOutcome> {
  const carried = input.state ?? initialState(input.conversationId);
  const run: Run = {
    state: carried,
    sendsInFlight: 0,
    refused: {},
    answerable: true,
    cancelling: new Set(),
    lean: patched(LOCAL_DATABASE_STEPS),
    stageInDb: carried.stage,
  };
  registerHandlers(run);
  const { state } = run;
  if (input.state) describeStage(run, state.details);
  // Replies an earlier run held back wait on here (continue-as-new carries them).
  for (const reply of state.scheduledReplies ?? []) void sendWhenDue(run, reply);

  for (;;) {
    const next = await STAGES[state.stage](run);
    const transition = 'end' in next ? await lastWords(run) : next;
    if (!transition) return { conversationId: state.conversationId, stage: state.stage };
    await moveTo(run, transition);
    if (timeToContinueAsNew() && (await readyToContinueAsNew(run))) {
      await recordStage(run); // the next run takes the row to hold the stage it carries
      await continueAsNew<typeof customerConversation>({ conversationId: state.conversationId, state });
    }
  }
}

const STAGES: Record<ConversationStage, (run: Run) => Promise<Transition>> = {
  triage,
  ai: aiAgentAnswers,
  waiting_for_hours: waitForBusinessHours,
  queued: waitWhileOpen,
  assigned: waitWhileOpen,
  resolved: surveyAfterDelay,
  csat: waitUntilClosed,
  closed: collectLateRatings,
  spam: keptAsSpam,
};

// ── Stages ────────────────────────────────────────────────────────────────────────────────────────

/** The first mail (or a mail to a closed conversation, or a release from spam): greeting and routing rules. */
async function triage(run: Run): Promise<Transition> {
  const { state } = run;
  const conversationId = state.conversationId;
  setCurrentDetails('Triage: routing rules, greeting');
  let context: ConversationContext;
  let mails: CustomerMessageFacts[] = [];
  let routed: NewConversationRoute | null = null;
  if (run.lean) {
    // The mails' facts first, so that one local activity reads the conversation and routes it when nobody has it.
    mails = await takeMails(run);
    const person = mails[0] ? isFromPerson(mails[0]) : state.inbox.spamRelease !== undefined ? undefined : false;
    ({ context, route: routed } = await localDb.triageConversation.executeWithOptions(
      { summary: 'Read the conversation and channel settings; route it when nobody has it' },
      [{ conversationId, ...(person === undefined ? {} : { fromPerson: person }) }],
    ));
  } else {
    context = await read.loadConversation.executeWithOptions({ summary: 'Read the conversation and channel settings' }, [
      { conversationId },
    ]);
  }
  state.known = true;
  state.outOfOfficeSent = context.outOfOfficeSent;
  if (!run.lean) mails = await takeMails(run);
  if (context.status === 'spam') {
    return {
      to: 'spam',
      details: `Spam, kept out of the queue: ${context.spamReason ?? 'flagged'}. An agent can release it (not spam)`,
    };
  }
  // Released from spam: the mail that started it was taken in an earlier run.
  const fromPerson = mails[0] ? isFromPerson(mails[0]) : state.inbox.spamRelease !== undefined && context.heardFromPerson;
  state.inbox.spamRelease = undefined;
  const reopenRequest = state.inbox.reopen;
  if (context.status === 'open' && reopenRequest) {
    run.refused.reopen = 'the conversation is open already';
    takeRequest(run, () => (state.inbox.reopen = undefined));
  }
  if (context.status !== 'open') {
    // An auto-reply, a bounce or spam after the end (a mail loop, a forger) leaves it closed: the run ends again.
    if (!reopenRequest && !mails.some(isFromPerson)) {
      return { to: 'closed', details: 'Closed; a machine wrote afterwards (auto-reply, bounce or spam), which reopens nothing' };
    }
    const by = reopenRequest?.by;
    await writes(run).markReopened.executeWithOptions(
      { summary: by ? `Reopen: ${by.name} reopened the closed conversation` : 'Reopen: the customer wrote after it was closed' },
      [{ conversationId, ...(by ? { reopenedBy: by } : {}) }],
    );
    takeRequest(run, () => (state.inbox.reopen = undefined));
  }
  if (context.greetingEnabled && !context.greetingSent && fromPerson) {
    if (context.automaticMailBlocked) await suppressAutomaticMail(run, 'greeting', context.automaticMailBlocked);
    // Not awaited: the greeting never holds routing back while the mail server is away.
    else {
      const outboxId = uuid4();
      sendInBackground(run, 'greeting', () =>
        sendMail(run, (mail) =>
          mail.sendGreeting.executeWithOptions({ summary: 'Send the channel greeting to the customer' }, [
            { conversationId, outboxId },
          ]),
        ),
      );
    }
  }
  const greets = context.greetingEnabled && !context.greetingSent && fromPerson && !context.automaticMailBlocked;
  // No automatic mail went out since the read (a greeting counts against the flood limits): its answer holds in this task.
  if (run.lean && !greets) run.known = { task: currentTask(), automaticMailBlocked: context.automaticMailBlocked };
  if (context.assignee) {
    state.assignee = context.assignee; // started again after it was closed: back to the agent who had it
    return openStage(state);
  }
  const route = run.lean
    ? await routeNewConversation(run, fromPerson, routed)
    : await db.routeConversation.executeWithOptions({ summary: 'Apply the routing rules (first match wins)' }, [
        { conversationId },
      ]);
  if (!run.lean) upsertSearchAttributes([{ key: PriorityAttribute, value: route.priority }]);
  if (route.handler.kind === 'agent') {
    state.assignee = route.handler.agent;
    await startSlaClock(run);
    return openStage(state);
  }
  if (route.handler.kind === 'ai' && fromPerson) {
    state.handler = { kind: 'ai', aiAgent: route.handler.aiAgent };
    if (route.insideBusinessHours || route.handler.answersOutsideBusinessHours) return aiStage(state, 'answers');
    return toHandler(run);
  }
  return handToHumans(run);
}

/**
 * The AI agent answers the customer's mails until the customer confirms an answer (resolved by the AI
 * agent) or one of the escalation triggers hands the conversation to people.
 */
async function aiAgentAnswers(run: Run): Promise<Transition> {
  const { state } = run;
  const conversationId = state.conversationId;
  if (state.handler.kind !== 'ai') return handToHumans(run);
  const aiAgent = state.handler.aiAgent;
  if (!state.customerWaiting) {
    // Until the customer (a person) writes again, or a person steps in.
    await waitFor(run, { wakesOn: () => hasRequest(state.inbox) });
    if (state.inbox.humanReplied) return humanTakesOver(run, aiAgent, state.inbox.humanReplied);
    const handled = await handleRequests(run);
    if (handled || !state.customerWaiting) return handled ?? aiStage(state, 'waits');
  }
  const settings = await read.loadConversation.executeWithOptions(
    { summary: `May ${aiAgent.name} answer? (turns, confidence, loop and flood limits)` },
    [{ conversationId }],
  );
  const mail = state.lastCustomerMail;
  if (mail?.asksForPerson) return escalate(run, aiAgent, 'the customer asked for a person');
  if (state.aiTurns > 0 && mail?.confirmsResolution) {
    return resolve(run, { kind: 'ai_agent', id: aiAgent.id }, `${aiAgent.name}: the customer confirmed the answer`);
  }
  if (state.aiTurns >= settings.aiMaxTurns) {
    return escalate(run, aiAgent, `no resolution after ${state.aiTurns} AI answers (the channel allows ${settings.aiMaxTurns})`);
  }
  // An AI answer is automatic mail: the flood limits and sender checks hold it back like a greeting.
  if (settings.automaticMailBlocked) {
    return escalate(
      run,
      aiAgent,
      `no automatic answer may go out: ${settings.automaticMailBlocked}`,
      settings.automaticMailBlocked,
    );
  }
  let answer;
  try {
    answer = await ai.answerWithAi.executeWithOptions({ summary: `${aiAgent.name} drafts an answer` }, [
      { conversationId, aiAgentId: aiAgent.id },
    ]);
  } catch (error) {
    if (!(error instanceof ActivityFailure)) throw error;
    return escalate(run, aiAgent, `the AI provider failed: ${error.cause?.message ?? error.message}`);
  }
  // A person replied while the AI agent drafted: the conversation is theirs, the draft is not sent.
  if (state.inbox.humanReplied) return humanTakesOver(run, aiAgent, state.inbox.humanReplied);
  if (answer.confidence < settings.aiConfidenceThreshold) {
    return escalate(
      run,
      aiAgent,
      `confidence ${answer.confidence.toFixed(2)} is below the channel's threshold ${settings.aiConfidenceThreshold}`,
    );
  }
  const answerOutboxId = uuid4();
  const sent = await sendAutomaticMail(run, 'ai_reply', () =>
    sendMail(run, (mail) =>
      mail.sendAiReply.executeWithOptions(
        { summary: `Send the answer of ${aiAgent.name} (confidence ${answer.confidence.toFixed(2)})` },
        [{ conversationId, outboxId: answerOutboxId, aiAgentId: aiAgent.id, text: answer.text }],
      ),
    ),
  );
  if (!sent) return escalate(run, aiAgent, 'the answer could not be delivered');
  state.aiTurns++;
  state.customerWaiting = false;
  return { to: 'ai', details: `${aiAgent.name} answered (${state.aiTurns} of ${settings.aiMaxTurns}); waiting for the customer` };
}

/**
 * Outside business hours: the out-of-office note (once per conversation), then a timer until they open.
 * Then the conversation goes to whoever the handler is: the AI agent or the queue.
 */
async function waitForBusinessHours(run: Run): Promise<Transition> {
  const { state } = run;
  const hours = await checkHours(run);
  if (!hours.closed) return toHandler(run);
  if (owesOutOfOffice(state)) await sendOutOfOffice(run, hours.opensAtText);
  const woke = await waitFor(run, {
    until: hours.opensAt,
    summary: `Until business hours open ${hours.opensAtText}`,
    wakesOn: () => hasRequest(state.inbox),
  });
  if (woke !== 'woke') return woke === 'deadline' ? toHandler(run) : waitingStage(hours.opensAtText);
  state.inbox.humanReplied = undefined; // a reply outside hours: the SLA counts it; the conversation still waits
  return (await handleRequests(run)) ?? waitingStage(hours.opensAtText);
}

/** Queued or assigned: until resolved, with the first-response SLA running while nobody has answered. */
async function waitWhileOpen(run: Run): Promise<Transition> {
  const { state } = run;
  const sla = !state.firstResponded && !state.slaBreached ? state.sla : null; // the clock still running, if any
  const woke = await waitFor(run, {
    wakesOn: () => hasRequest(state.inbox) || (sla !== null && state.firstResponded),
    ...(sla ? { until: sla.dueAt, summary: `First response due by ${sla.dueAtText} (SLA)` } : {}),
  });
  if (woke === 'deadline') return breachSla(run);
  state.inbox.humanReplied = undefined;
  return (await handleRequests(run)) ?? openStage(state);
}

/**
 * After resolution: the CSAT survey after the channel's delay, unless the customer writes first.
 * Without a survey, the conversation waits out the quiet period and closes.
 */
async function surveyAfterDelay(run: Run): Promise<Transition> {
  const { state } = run;
  const conversationId = state.conversationId;
  const context = await read.loadConversation.executeWithOptions({ summary: 'Read the survey settings' }, [{ conversationId }]);
  if (run.lean) run.closeAfterSeconds = context.closeAfterSeconds;
  if (!context.csatEnabled || !context.heardFromPerson) return closeAfterQuietPeriod(run, context.closeAfterSeconds);
  const woke = await waitFor(run, {
    until: state.resolvedAt! + context.csatDelaySeconds * 1000,
    summary: `Send the CSAT survey in ${describeSeconds(context.csatDelaySeconds)} unless the customer writes again`,
    wakesOn: () => customerOrAgentReopens(state.inbox),
  });
  if (woke === 'woke') return reopen(run);
  if (woke === 'continue-as-new') return { to: 'resolved', details: state.details }; // the delay counts from the resolution
  // Read again after the delay: the per-recipient limit counts what was sent meanwhile.
  const { automaticMailBlocked } = await read.loadConversation.executeWithOptions(
    { summary: 'May the CSAT survey go out? (loop and flood limits)' },
    [{ conversationId }],
  );
  if (automaticMailBlocked) {
    await suppressAutomaticMail(run, 'csat_survey', automaticMailBlocked);
    return closeAfterQuietPeriod(run, context.closeAfterSeconds);
  }
  const surveyId = uuid4();
  const outboxId = uuid4();
  const recordsStage = stepRecordsStage(run);
  const sent = await sendAutomaticMail(run, 'csat_survey', () =>
    sendMail(run, (mail) =>
      mail.sendCsatSurvey.executeWithOptions({ summary: 'Send the CSAT survey' }, [
        { conversationId, outboxId, surveyId, resolvedBy: state.resolvedBy, ...(recordsStage ? { recordsStage } : {}) },
      ]),
    ),
  );
  if (!sent) return closeAfterQuietPeriod(run, context.closeAfterSeconds);
  if (recordsStage) run.stageInDb = 'csat';
  state.survey = { id: surveyId, expiresAt: Date.parse(sent.expiresAt) };
  return { to: 'csat', details: `CSAT survey sent; the link is valid until ${sent.expiresAt}` };
}

/** The survey is out: ratings are recorded until the quiet period ends and the conversation closes. */
async function waitUntilClosed(run: Run): Promise<Transition> {
  if (run.closeAfterSeconds !== undefined) return closeAfterQuietPeriod(run, run.closeAfterSeconds);
  const { closeAfterSeconds } = await read.loadConversation.executeWithOptions(
    { summary: 'Read the quiet period after resolution' },
    [{ conversationId: run.state.conversationId }],
  );
  return closeAfterQuietPeriod(run, closeAfterSeconds);
}

/**
 * Closed: the run ends. Runs before the patch local-database-steps wait while a survey link is valid, for the
 * ratings the API signalled them; the API now stores them itself.
 */
async function collectLateRatings(run: Run): Promise<Transition> {
  const { state } = run;
  if (run.lean || !state.survey || state.survey.expiresAt <= Date.now()) return { end: true };
  const woke = await waitFor(run, {
    until: state.survey.expiresAt,
    summary: `Wait for the CSAT rating until the link expires (${new Date(state.survey.expiresAt).toISOString()})`,
    wakesOn: () => state.inbox.ratings.length > 0 || customerOrAgentReopens(state.inbox),
  });
  await recordRatings(run);
  if (woke === 'woke' && customerOrAgentReopens(state.inbox)) return reopen(run);
  if (woke === 'deadline') state.survey = null;
  return { to: 'closed', details: closedDetails(state) };
}

/** Spam waits for nobody: the run ends, and a release from spam (or another mail) starts it again. */
async function keptAsSpam(): Promise<Transition> {
  return { end: true };
}

// ── Steps shared by the stages ────────────────────────────────────────────────────────────────────

/**
 * The one place the stage changes: the search attributes ops filter by, the current details the Temporal
 * UI shows, and the conversation's row that the API reads, together (unless the step that led here wrote the row).
 */
async function moveTo(run: Run, transition: Move) {
  const { state } = run;
  state.stage = transition.to;
  state.details = transition.details;
  describeStage(run, transition.details);
  if (!transition.firstStepRecordsIt) await recordStage(run);
  run.answerable = true;
}

/** The stage into the conversation's row, unless the row holds it (the step that led there wrote it). */
async function recordStage(run: Run) {
  const { state } = run;
  if (run.stageInDb === state.stage) return;
  await writes(run).recordStage.executeWithOptions({ summary: `Stage: ${state.stage}` }, [
    { conversationId: state.conversationId, stage: state.stage },
  ]);
  run.stageInDb = state.stage;
}

/**
 * The stage the row still lacks, for the step that records it in passing; from here the run takes the row to hold it.
 * An agent's request that led here is answered with the task, after its local activities: the row holds it by then.
 */
function stageToCarry(run: Run): { stage?: ConversationStage } {
  const { stage } = run.state;
  if (run.stageInDb === stage) return {};
  run.stageInDb = stage;
  return { stage };
}

/** Whether the next step records the stage it leads to (runs since STAGE_WITH_ITS_STEP); the row then holds `stage`. */
function stepRecordsStage(run: Run): boolean {
  return run.lean && patched(STAGE_WITH_ITS_STEP);
}

/** Takes an agent's request off the inbox; their update is answered once the stage it leads to is recorded. */
function takeRequest(run: Run, take: () => void) {
  take();
  run.answerable = false;
}

/** The search attributes that changed (each upsert is a history event and an action), and the current details. */
function describeStage({ state, priority }: Run, details: string) {
  const shown = workflowInfo().typedSearchAttributes;
  const status = statusOfStage(state.stage);
  const assigneeId = state.assignee?.id ?? null;
  const changed = [
    ...(shown.get(StageAttribute) !== state.stage ? [{ key: StageAttribute, value: state.stage }] : []),
    ...(shown.get(StatusAttribute) !== status ? [{ key: StatusAttribute, value: status }] : []),
    ...((shown.get(AssigneeIdAttribute) ?? null) !== assigneeId ? [{ key: AssigneeIdAttribute, value: assigneeId }] : []),
    ...(priority !== undefined && shown.get(PriorityAttribute) !== priority ? [{ key: PriorityAttribute, value: priority }] : []),
  ];
  if (changed.length > 0) upsertSearchAttributes(changed);
  setCurrentDetails(details);
}

interface WaitOptions {
  /** Wakes the wait early; checked whenever something arrives. */
  wakesOn: () => boolean;
  /** The deadline (epoch ms); without one the wait has no timer. */
  until?: number;
  /** What the timer is for, as a person reads it in the Temporal UI. */
  summary?: string;
}

/** Waits until something the stage cares about arrives, the deadline passes, or the run should continue as new. */
async function waitFor(run: Run, { wakesOn, until, summary }: WaitOptions): Promise<'woke' | 'deadline' | 'continue-as-new'> {
  await recordStage(run); // whoever reads the row while the run waits reads the stage it waits in
  if (wakesOn()) return 'woke';
  if (until !== undefined && until <= Date.now()) return 'deadline';
  const stopWaiting = () => wakesOn() || timeToContinueAsNew();
  if (run.lean) {
    const deadline = keepDeadline(run, until, summary);
    await condition(() => stopWaiting() || deadline?.passed === true);
    if (wakesOn()) return 'woke';
    return deadline?.passed ? 'deadline' : 'continue-as-new';
  }
  const arrived =
    until === undefined
      ? await condition(stopWaiting).then(() => true)
      : await condition(stopWaiting, until - Date.now(), { summary: summary! });
  if (!arrived) return 'deadline';
  return wakesOn() ? 'woke' : 'continue-as-new';
}

/**
 * The timer of the deadline a lean run waits for: the one already running when the deadline is the same (a wait
 * woken by a rating or a mail waits on without a new timer), else a new one, and the earlier one cancelled.
 */
function keepDeadline(run: Run, until: number | undefined, summary: string | undefined): Deadline | undefined {
  if (run.deadline && run.deadline.at === until && !run.deadline.passed) return run.deadline;
  if (run.deadline && !run.deadline.passed) run.deadline.scope.cancel();
  run.deadline = undefined;
  if (until === undefined) return undefined;
  const deadline: Deadline = { at: until, passed: false, scope: new CancellationScope() };
  deadline.scope
    .run(() => sleep(until - Date.now(), { summary: summary! }))
    .then(
      () => void (deadline.passed = true),
      () => undefined, // cancelled: another deadline replaced it
    );
  return (run.deadline = deadline);
}

/** Something a person or another workflow asked for, or a customer mail, needs the open conversation's main loop. */
function hasRequest(inbox: Inbox): boolean {
  return (
    inbox.mails.length > 0 ||
    inbox.resolve !== undefined ||
    inbox.assign !== undefined ||
    inbox.assignmentChanged !== undefined ||
    inbox.humanReplied !== undefined
  );
}

/** After resolution only a person writing (not an auto-reply to our survey: no mail loop) or an agent reopens it. */
function customerOrAgentReopens(inbox: Inbox): boolean {
  return inbox.reopen !== undefined || inbox.mails.some((mail) => !mail.facts || isFromPerson(mail.facts));
}

/**
 * The customer mails that arrived since the last look, with what they say. Ingest hands the facts over
 * with the signal; a mail signalled without them (by an older release) is read.
 */
async function takeMails(run: Run): Promise<CustomerMessageFacts[]> {
  const { state } = run;
  const mails = state.inbox.mails.splice(0);
  if (mails.length === 0) return [];
  state.mailsTaken += mails.length;
  const unread = mails.filter((mail) => !mail.facts).map((mail) => mail.inboundMessageId);
  const readFacts =
    unread.length === 0
      ? []
      : await read.readCustomerMessages.executeWithOptions({ summary: `Read what ${unread.length} new mail(s) say` }, [
          { conversationId: state.conversationId, inboundMessageIds: unread },
        ]);
  const facts = mails.map(
    (mail) =>
      (mail.facts
        ? { inboundMessageId: mail.inboundMessageId, ...mail.facts }
        : readFacts.find((f) => f.inboundMessageId === mail.inboundMessageId))!,
  );
  const fromPerson = facts.filter(isFromPerson);
  if (fromPerson.length > 0) {
    state.lastCustomerMail = fromPerson[fromPerson.length - 1]!;
    state.customerWaiting = true;
  }
  return facts;
}

/**
 * Applies what arrived while the conversation is open: customer mail, manual (un)assignment, an
 * assignment the channel's queue made, a resolution. The transition when the stage changes.
 */
async function handleRequests(run: Run): Promise<Move | undefined> {
  const { state } = run;
  const { inbox } = state;
  const conversationId = state.conversationId;
  await takeMails(run);
  let next: Move | undefined;
  if (inbox.assignmentChanged !== undefined) {
    const reason = inbox.assignmentChanged;
    inbox.assignmentChanged = undefined;
    const context = await read.loadConversation.executeWithOptions({ summary: `Read the assignment again: ${reason}` }, [
      { conversationId },
    ]);
    if (context.status === 'open' && (state.stage === 'queued' || state.stage === 'assigned')) {
      state.assignee = context.assignee;
      next = openStage(state);
    }
  }
  if (inbox.assign) {
    const { assignee: wanted, by } = inbox.assign;
    if (wanted) {
      const given = await assignByHand(run, wanted, by, `${by.name} assigns it to ${wanted.name}`);
      if (given) {
        state.assignee = given;
        state.handler = { kind: 'humans' };
        next = openStage(state);
      }
    } else if (state.assignee) {
      const previous = state.assignee;
      await writes(run).unassign.executeWithOptions({ summary: `${by.name} takes it from ${previous.name}` }, [
        { conversationId, byId: by.id },
      ]);
      state.assignee = null;
      next = await assignFromQueue(run, [previous.id]);
    }
    takeRequest(run, () => (inbox.assign = undefined));
  }
  if (inbox.resolve) {
    next = await resolve(run, { kind: 'agent', id: inbox.resolve.resolvedBy.id }, inbox.resolve.resolvedBy.name);
    takeRequest(run, () => (inbox.resolve = undefined));
  }
  return next;
}

/**
 * Lean runs: the routing rules, the SLA clock when people handle it and the business hours in one local activity;
 * the stages after it in this task take the clock and the hours from here, and the priority goes out with the stage.
 */
async function routeNewConversation(
  run: Run,
  fromPerson: boolean,
  routed: NewConversationRoute | null,
): Promise<RoutingDecision> {
  const route =
    routed ??
    (await localDb.routeNewConversation.executeWithOptions(
      { summary: 'Apply the routing rules (first match wins), start the SLA clock, read the business hours' },
      [{ conversationId: run.state.conversationId, fromPerson }],
    ));
  run.priority = route.priority;
  if (route.slaChecked) run.slaClockStartedInTask = currentTask();
  if (route.sla) run.state.sla = { dueAt: Date.parse(route.sla.dueAt), dueAtText: route.sla.dueAtText };
  run.known = { ...knownInThisTask(run), task: currentTask(), hours: businessHoursState(route.hours) };
  return route;
}

async function startSlaClock(run: Run) {
  const { state } = run;
  if (state.sla || run.slaClockStartedInTask === currentTask()) return;
  const clock = await writes(run).startSlaClock.executeWithOptions({ summary: 'Start the first-response SLA (business time)' }, [
    { conversationId: state.conversationId },
  ]);
  if (clock) state.sla = { dueAt: Date.parse(clock.dueAt), dueAtText: clock.dueAtText };
}

/** From here people handle it: the SLA clock starts, and assignment waits for business hours. */
async function handToHumans(run: Run): Promise<Move> {
  run.state.handler = { kind: 'humans' };
  await startSlaClock(run);
  return toHandler(run);
}

async function checkHours(run: Run): Promise<BusinessHoursState> {
  const known = knownInThisTask(run)?.hours;
  if (known) return known;
  const hours = await read.checkBusinessHours.executeWithOptions({ summary: 'Are the business hours open?' }, [
    { conversationId: run.state.conversationId },
  ]);
  const state = businessHoursState(hours);
  if (run.lean) run.known = { ...knownInThisTask(run), task: currentTask(), hours: state };
  return state;
}

function businessHoursState(hours: BusinessHoursCheck): BusinessHoursState {
  if (hours.open || !hours.opensAt) return { closed: false };
  return { closed: true, opensAt: Date.parse(hours.opensAt), opensAtText: hours.opensAtText! };
}

/** What was read earlier in this workflow task (lean runs): the same moment, as good as a second read. */
function knownInThisTask(run: Run): Run['known'] {
  return run.lean && run.known?.task === currentTask() ? run.known : undefined;
}

/** The workflow task the code runs in: the history's length when it started, the same for all its local activities. */
function currentTask(): number {
  return workflowInfo().historyLength;
}

/** To whoever handles it now: the AI agent or the queue; outside business hours, the wait for them. */
async function toHandler(run: Run): Promise<Move> {
  const { state } = run;
  const hours = await checkHours(run);
  if (hours.closed) {
    // The out-of-office note, when one is owed, records the stage it waits in.
    const noteRecordsIt = owesOutOfOffice(state) && stepRecordsStage(run);
    return { ...waitingStage(hours.opensAtText), ...(noteRecordsIt ? { firstStepRecordsIt: true } : {}) };
  }
  if (state.handler.kind === 'ai') return aiStage(state, 'answers');
  return assignFromQueue(run);
}

/** Takes the next agent with free capacity by the channel's strategy, or joins the queue. */
async function assignFromQueue(run: Run, excludeUserIds: string[] = []): Promise<Move> {
  const { state } = run;
  const recordsStage = stepRecordsStage(run);
  const result = await writes(run).assignFromQueue.executeWithOptions(
    { summary: 'Assign to the next agent with free capacity' },
    [{ conversationId: state.conversationId, excludeUserIds, ...(recordsStage ? { recordsStage } : {}) }],
  );
  if (recordsStage) run.stageInDb = openStageOf(result.assignee);
  await tellAssigned(run, result.othersAssigned, 'the queue was served');
  state.assignee = result.assignee;
  return openStage(state);
}

/** Other conversations the queue gave an agent to: their workflows read the assignment again. */
async function tellAssigned({ state }: Run, conversationIds: string[], reason: string) {
  for (const other of conversationIds) {
    if (other === state.conversationId) continue;
    try {
      await getExternalWorkflowHandle(conversationWorkflowId(other)).signal(assignmentChangedSignal, { reason });
    } catch {
      // That conversation's workflow has ended; it reads its assignment when it starts again.
    }
  }
}

/** Assigns to a person regardless of capacity; undefined (and the reason for the waiting update) when they are no agent of the channel. */
async function assignByHand(run: Run, agent: Actor, by: Actor, summary: string): Promise<Actor | undefined> {
  try {
    return await writes(run).assignManually.executeWithOptions({ summary }, [
      { conversationId: run.state.conversationId, assigneeId: agent.id, byId: by.id },
    ]);
  } catch (error) {
    const failure = activityFailureOf(error);
    if (!failure) throw error;
    run.refused.assign = failure.message;
    return undefined;
  }
}

/** An agent replied while the AI agent had the conversation: it is theirs now. */
async function humanTakesOver(run: Run, aiAgent: Actor, agent: Actor): Promise<Move> {
  const { state } = run;
  state.inbox.humanReplied = undefined;
  state.handler = { kind: 'humans' };
  const given = await assignByHand(run, agent, agent, `${agent.name} took over from ${aiAgent.name}`);
  run.refused.assign = undefined; // nobody waits for this one: someone who is no agent of the channel (an admin) replied
  if (!given) return handToHumans(run);
  state.assignee = given;
  return openStage(state);
}

/**
 * Hands over from the AI agent: a short note to the customer, then human assignment.
 * `automaticMailBlocked`: why no automatic mail may go out, when the caller has just read it.
 */
async function escalate(run: Run, aiAgent: Actor, reason: string, automaticMailBlocked?: string): Promise<Move> {
  const conversationId = run.state.conversationId;
  await writes(run).recordEscalation.executeWithOptions({ summary: `Escalate to people: ${reason}` }, [
    { conversationId, aiAgentId: aiAgent.id, reason },
  ]);
  const blocked =
    automaticMailBlocked ??
    (await read.loadConversation.executeWithOptions({ summary: 'May the handover note go out?' }, [{ conversationId }]))
      .automaticMailBlocked;
  if (blocked) await suppressAutomaticMail(run, 'handover', blocked);
  else {
    // Not awaited: the note never holds the assignment back while the mail server is away.
    const outboxId = uuid4();
    sendInBackground(run, 'handover', () =>
      sendMail(run, (mail) =>
        mail.sendHandoverNote.executeWithOptions({ summary: `${aiAgent.name} tells the customer a person takes over` }, [
          { conversationId, outboxId, aiAgentId: aiAgent.id },
        ]),
      ),
    );
  }
  return handToHumans(run);
}

/** The first-response target passed: flag it, raise the priority, offer it to the next available agent. */
async function breachSla(run: Run): Promise<Move> {
  const { state } = run;
  state.slaBreached = true;
  const { priority } = await writes(run).markSlaBreached.executeWithOptions(
    { summary: `SLA breached: no first response by ${state.sla!.dueAtText}` },
    [{ conversationId: state.conversationId }],
  );
  upsertSearchAttributes([
    { key: SlaBreachedAttribute, value: true },
    { key: PriorityAttribute, value: priority },
  ]);
  const offer = await writes(run).offerToNextAgent.executeWithOptions({ summary: 'Offer it to the next available agent' }, [
    { conversationId: state.conversationId },
  ]);
  state.assignee = offer.assignee;
  if (run.lean) run.priority = priority; // the stage's upsert must not set the routing's priority back
  const breached = `SLA breached (first response was due by ${state.sla!.dueAtText})`;
  return {
    to: state.assignee ? 'assigned' : 'queued',
    details: `${breached}; ${state.assignee ? `now with ${state.assignee.name}` : 'first in the queue'}`,
  };
}

async function resolve(run: Run, by: ResolvedBy, name: string): Promise<Move> {
  const { state } = run;
  const recordsStage = stepRecordsStage(run);
  const { othersAssigned } = await writes(run).markResolved.executeWithOptions({ summary: `Resolved by ${name}` }, [
    { conversationId: state.conversationId, resolvedBy: by, ...(recordsStage ? { recordsStage } : {}) },
  ]);
  if (recordsStage) run.stageInDb = 'resolved';
  // The agent's freed capacity went to the queue: tell those conversations.
  await tellAssigned(run, othersAssigned, 'an agent resolved a conversation and had capacity again');
  state.resolvedBy = by;
  state.resolvedAt = Date.now();
  state.survey = null;
  return { to: 'resolved', details: `Resolved by ${name}` };
}

/**
 * Back to whoever resolved it: the previous assignee, or the AI agent if it did and the customer wrote
 * again. An agent's reopen goes to people: the previous assignee, else the queue.
 */
async function reopen(run: Run): Promise<Move> {
  const { state } = run;
  const conversationId = state.conversationId;
  const by = state.inbox.reopen?.by;
  await takeMails(run);
  await writes(run).markReopened.executeWithOptions(
    { summary: by ? `Reopen: ${by.name} reopened it` : 'Reopen: the customer wrote again' },
    [{ conversationId, ...(by ? { reopenedBy: by } : {}) }],
  );
  const byAi = !by && state.resolvedBy?.kind === 'ai_agent' && state.handler.kind === 'ai';
  state.resolvedBy = null;
  state.resolvedAt = null;
  takeRequest(run, () => (state.inbox.reopen = undefined));
  const context = await read.loadConversation.executeWithOptions({ summary: 'Read who had the conversation' }, [
    { conversationId },
  ]);
  state.assignee = context.assignee;
  if (state.assignee) return openStage(state);
  if (byAi) return aiStage(state, 'answers again');
  return handToHumans(run);
}

/** Waits out the quiet period after resolution (ratings are recorded meanwhile); a customer mail reopens it. */
async function closeAfterQuietPeriod(run: Run, closeAfterSeconds: number): Promise<Transition> {
  const { state } = run;
  const until = state.resolvedAt! + closeAfterSeconds * 1000;
  const woke = await waitFor(run, {
    until,
    summary: `Close after the quiet period (${new Date(until).toISOString()}) unless the customer writes again`,
    wakesOn: () => state.inbox.ratings.length > 0 || customerOrAgentReopens(state.inbox),
  });
  await recordRatings(run);
  if (woke === 'woke' && customerOrAgentReopens(state.inbox)) return reopen(run);
  if (woke !== 'deadline') return { to: state.stage, details: state.stage === 'csat' ? 'CSAT survey sent' : 'Resolved' };
  const survey = run.lean && state.survey ? { surveyId: state.survey.id } : {};
  const recordsStage = stepRecordsStage(run);
  const closed = await writes(run).markClosed.executeWithOptions({ summary: 'Close: quiet since the resolution' }, [
    { conversationId: state.conversationId, ...survey, ...(recordsStage ? { recordsStage } : {}) },
  ]);
  if (recordsStage) run.stageInDb = 'closed';
  return { to: 'closed', details: closedDetails(state, run.lean ? closed : undefined) };
}

async function recordRatings(run: Run) {
  const { state } = run;
  for (const rating of state.inbox.ratings.splice(0)) {
    if (rating.surveyId !== state.survey?.id) continue; // a link from an earlier resolution
    await writes(run).recordCsatRating.executeWithOptions({ summary: `Record the CSAT rating ${rating.rating}/5` }, [
      { conversationId: state.conversationId, ...rating },
    ]);
  }
  // Machine mail that woke nobody is stored already; the inbox forgets it.
  state.inbox.mails = state.inbox.mails.filter((mail) => !mail.facts || isFromPerson(mail.facts));
}

/** A person wrote, and no out-of-office note went out yet: outside business hours one does (or why not is recorded). */
function owesOutOfOffice(state: ConversationState): boolean {
  return state.lastCustomerMail !== null && !state.outOfOfficeSent;
}

/** Once per conversation, and never to a machine or past the per-recipient limit. */
async function sendOutOfOffice(run: Run, opensAtText: string) {
  const conversationId = run.state.conversationId;
  run.state.outOfOfficeSent = true;
  const known = knownInThisTask(run);
  const { automaticMailBlocked } =
    known?.automaticMailBlocked !== undefined
      ? { automaticMailBlocked: known.automaticMailBlocked }
      : await read.loadConversation.executeWithOptions(
          { summary: 'May the out-of-office note go out? (loop and flood limits)' },
          [{ conversationId }],
        );
  if (automaticMailBlocked) return suppressAutomaticMail(run, 'out_of_office', automaticMailBlocked);
  const outboxId = uuid4();
  const stage = stageToCarry(run);
  sendInBackground(run, 'out_of_office', () =>
    sendMail(run, (mail) =>
      mail.sendOutOfOffice.executeWithOptions({ summary: `Send the out-of-office note (open ${opensAtText})` }, [
        { conversationId, outboxId, opensAtText, ...stage },
      ]),
    ),
  );
}

async function suppressAutomaticMail(run: Run, kind: AutomaticMailKind, reason: string) {
  setCurrentDetails(`No ${kind.replaceAll('_', ' ')}: ${reason}`);
  await writes(run).recordAutomaticMailSuppressed.executeWithOptions(
    { summary: `Do not send the ${kind.replaceAll('_', ' ')}: ${reason}` },
    [{ conversationId: run.state.conversationId, kind, reason, ...stageToCarry(run) }],
  );
}

/**
 * Sends and waits; undefined when the mail server refused it for good (the outbox marked it failed and
 * the timeline says why): the conversation goes on without it.
 */
async function sendAutomaticMail<T>(run: Run, kind: string, send: () => Promise<T>): Promise<T | undefined> {
  run.sendsInFlight += 1;
  try {
    return await send();
  } catch (error) {
    const failure = activityFailureOf(error);
    if (!failure) throw error;
    log.warn('mail not delivered', { kind, conversationId: run.state.conversationId, error: String(failure) });
    return undefined;
  } finally {
    run.sendsInFlight -= 1;
  }
}

/**
 * Why an activity or a local activity failed; undefined for any other error. An activity's failure comes wrapped
 * (ActivityFailure, its cause the activity's own), a local activity's as it is.
 */
function activityFailureOf(error: unknown): TemporalFailure | undefined {
  if (error instanceof ActivityFailure) return error.cause instanceof TemporalFailure ? error.cause : error;
  if (error instanceof ApplicationFailure || error instanceof TimeoutFailure) return error;
  return undefined;
}

/** Sends by `send` through the first try (lean runs) and, unless the mail server refused it for good, the activity. */
async function sendMail<T>(run: Run, send: (mail: typeof smtp) => Promise<T>): Promise<T> {
  if (run.lean) {
    try {
      return await send(smtpFirstTry as unknown as typeof smtp);
    } catch (error) {
      const failure = activityFailureOf(error);
      if (!failure || (failure instanceof ApplicationFailure && failure.type === 'DeliveryFailed')) throw error;
      log.info('mail goes out as an activity after its first try failed', {
        conversationId: run.state.conversationId,
        error: String(failure),
      });
    }
  }
  return send(smtp);
}

/** Sends without holding the conversation back; the run waits for it before it ends or continues as new. */
function sendInBackground(run: Run, kind: string, send: () => Promise<unknown>) {
  void sendAutomaticMail(run, kind, send);
}

/** At most this far ahead and this many waiting per conversation: a held reply is a timer and part of the state. */
export const SEND_LATER_MAX_DAYS = 30;
export const SCHEDULED_REPLIES_MAX = 10;

function holdUntilOf(undoSeconds: number | undefined, sendAt: number | undefined): number {
  return sendAt ?? Date.now() + (undoSeconds ?? 0) * 1000;
}

function validateReplyTiming(state: ConversationState, reply: { undoSeconds?: number; sendAt?: number }) {
  const refuse = (message: string) => ApplicationFailure.nonRetryable(message, 'InvalidReplyTiming');
  if (reply.undoSeconds !== undefined && !(reply.undoSeconds >= 0 && reply.undoSeconds <= 30)) {
    throw refuse('the undo grace period is 0 to 30 seconds');
  }
  if (reply.sendAt === undefined) return;
  if (!Number.isFinite(reply.sendAt) || reply.sendAt > Date.now() + SEND_LATER_MAX_DAYS * 86_400_000) {
    throw refuse(`a reply can be scheduled at most ${SEND_LATER_MAX_DAYS} days ahead`);
  }
  if ((state.scheduledReplies?.length ?? 0) >= SCHEDULED_REPLIES_MAX) {
    throw refuse(`at most ${SCHEDULED_REPLIES_MAX} replies may wait in a conversation`);
  }
}

/** Holds the written reply (its outbox row says scheduled) until its moment, unless cancelled first. */
function holdReply(run: Run, reply: ScheduledReply) {
  (run.state.scheduledReplies ??= []).push(reply);
  void sendWhenDue(run, reply);
}

/** The customer wrote: replies scheduled for later go nowhere (the agent may want to say something else). */
function cancelScheduledReplies(state: ConversationState) {
  for (const reply of state.scheduledReplies ?? []) {
    if (reply.cancelsOnCustomerMail && !reply.cancel) reply.cancel = { reason: 'customer_wrote' };
  }
}

/** What the Temporal UI shows for the wait, so that whoever looks knows what goes out when and what stops it. */
function describeHold(reply: ScheduledReply): string {
  const seconds = Math.round((reply.sendAt - Date.now()) / 1000);
  if (!reply.cancelsOnCustomerMail)
    return `Sending the reply of ${reply.author.name} in ${describeSeconds(seconds)} unless undone`;
  return `Sending the reply of ${reply.author.name} at ${new Date(reply.sendAt).toISOString()} unless undone or the customer writes first`;
}

/** The timer of one held reply: then it goes out, or its cancellation is recorded. */
async function sendWhenDue(run: Run, reply: ScheduledReply) {
  const { state } = run;
  const left = reply.sendAt - Date.now();
  if (left > 0 && !reply.cancel) await condition(() => reply.cancel !== undefined, left, { summary: describeHold(reply) });
  const { cancel } = reply;
  run.sendsInFlight += 1;
  if (cancel) run.cancelling.add(reply.outboxId);
  state.scheduledReplies = (state.scheduledReplies ?? []).filter((held) => held !== reply);
  const conversationId = state.conversationId;
  try {
    if (cancel) {
      const who = cancel.by ? `${cancel.by.name} undid it` : 'the customer wrote first';
      await writes(run).cancelScheduledReply.executeWithOptions(
        { summary: `Do not send the reply of ${reply.author.name}: ${who}` },
        [{ conversationId, outboxId: reply.outboxId, reason: cancel.reason, ...(cancel.by ? { by: cancel.by } : {}) }],
      );
      return;
    }
    await sendAutomaticMail(run, 'reply', async () => {
      const released = await writes(run).releaseScheduledReply.executeWithOptions(
        { summary: `The reply of ${reply.author.name} goes out now` },
        [{ outboxId: reply.outboxId }],
      );
      if (released) {
        run.state.firstResponded = true;
        await sendMail(run, (mail) =>
          mail.deliverOutbox.executeWithOptions({ summary: `Send the reply of ${reply.author.name}` }, [
            { outboxId: reply.outboxId },
          ]),
        );
      }
    });
  } finally {
    run.sendsInFlight -= 1;
    run.cancelling.delete(reply.outboxId);
  }
}

// ── Stage descriptions ────────────────────────────────────────────────────────────────────────────

function openStage(state: ConversationState): Move {
  const slaNote = state.sla && !state.firstResponded ? `; first response due by ${state.sla.dueAtText}` : '';
  const to = openStageOf(state.assignee);
  if (state.assignee) return { to, details: `Assigned to ${state.assignee.name}; open until resolved${slaNote}` };
  return { to, details: `Waiting in the queue for an agent with free capacity${slaNote}` };
}

function aiStage(state: ConversationState, what: 'answers' | 'answers again' | 'waits'): Move {
  const name = state.handler.kind === 'ai' ? state.handler.aiAgent.name : 'the AI agent';
  if (what === 'waits') return { to: 'ai', details: `${name} (AI agent) waits for the customer` };
  return { to: 'ai', details: `${name} (AI agent) ${what}` };
}

function waitingStage(opensAtText: string): Move {
  return { to: 'waiting_for_hours', details: `Outside business hours: waiting until they open ${opensAtText}` };
}

/** With how the customer rated the survey so far, when markClosed said (lean runs). */
function closedDetails(state: ConversationState, closed?: ClosedConversation): string {
  if (!state.survey) return 'Closed';
  const until = new Date(state.survey.expiresAt).toISOString();
  if (!closed) return `Closed; the survey link stays valid until ${until}`;
  const rated = closed.csatRating === null ? 'not rated yet' : `rated ${closed.csatRating}/5`;
  return `Closed; the survey is ${rated}, and its link takes ratings until ${until}`;
}

// ── Signals, updates and the query ────────────────────────────────────────────────────────────────

/** Registered before the first await, so that nothing is missed. They only record what arrived; the main loop acts on it. */
function registerHandlers(run: Run) {
  const { state } = run;
  const { inbox } = state;

  setHandler(inboundMessageSignal, (mail) => {
    if (inbox.seenMailIds.includes(mail.inboundMessageId)) return;
    inbox.seenMailIds.push(mail.inboundMessageId);
    if (inbox.seenMailIds.length > RECENT_MESSAGES_KEPT) inbox.seenMailIds.shift();
    inbox.mails.push(mail);
    if (!mail.facts || isFromPerson(mail.facts)) cancelScheduledReplies(state);
  });
  setHandler(csatRatingSignal, (rating) => void inbox.ratings.push(rating));
  setHandler(assignmentChangedSignal, ({ reason }) => void (inbox.assignmentChanged = reason));
  setHandler(notSpamSignal, ({ by }) => void (inbox.spamRelease = by));

  setHandler(
    agentReplyUpdate,
    async ({ author, text, subject, content, undoSeconds, sendAt, lastSeenMessageId }) => {
      const outboxId = uuid4();
      // Undo send and send later: a timer in this workflow; replies of earlier releases went out at once.
      const holdUntil = (undoSeconds || sendAt) && patched('reply-timing') ? holdUntilOf(undoSeconds, sendAt) : undefined;
      const scheduledFor = holdUntil === undefined ? undefined : new Date(holdUntil).toISOString();
      const written = await writes(run).writeAgentReply.executeWithOptions({ summary: `Write the reply of ${author.name}` }, [
        {
          conversationId: state.conversationId,
          outboxId,
          authorId: author.id,
          text,
          ...(subject ? { subject } : {}),
          ...(scheduledFor ? { scheduledFor } : {}),
          ...(lastSeenMessageId ? { lastSeenMessageId } : {}),
          ...(content ? { content } : {}),
        },
      ]);
      if (holdUntil === undefined) state.firstResponded = true; // a held reply counts once it goes out
      if (state.stage === 'ai') inbox.humanReplied = author; // a person took over from the AI agent
      if (holdUntil !== undefined) {
        holdReply(run, { outboxId, author, sendAt: holdUntil, cancelsOnCustomerMail: sendAt !== undefined });
        return { ...written, scheduledFor: scheduledFor! };
      }
      // The agent is answered once the reply is in the outbox; sending waits out a mail server outage.
      sendInBackground(run, 'reply', () =>
        sendMail(run, (mail) =>
          mail.deliverOutbox.executeWithOptions({ summary: `Send the reply of ${author.name}` }, [{ outboxId }]),
        ),
      );
      return written;
    },
    {
      validator: (reply) => {
        if (!reply.text.trim()) throw ApplicationFailure.nonRetryable('the reply text is empty', 'InvalidReply');
        if (state.stage === 'closed') throw ApplicationFailure.nonRetryable('the conversation is closed', 'ConversationClosed');
        validateReplyTiming(state, reply);
      },
    },
  );

  setHandler(
    cancelReplyUpdate,
    async ({ outboxId, by }) => {
      const reply = state.scheduledReplies!.find((held) => held.outboxId === outboxId)!;
      reply.cancel = { reason: 'undone', by };
      await condition(() => !run.cancelling.has(outboxId) && !state.scheduledReplies!.includes(reply)); // recorded
      return { status: 'cancelled' as const };
    },
    {
      validator: ({ outboxId }) => {
        const reply = state.scheduledReplies?.find((held) => held.outboxId === outboxId);
        if (!reply || reply.cancel) {
          throw ApplicationFailure.nonRetryable(
            `the reply ${outboxId} no longer waits: it was sent or cancelled`,
            'ReplyNotHeld',
          );
        }
      },
    },
  );

  const requireOpen = (pending: unknown) => {
    if (!isOpenStage(state.stage) || pending) {
      throw ApplicationFailure.nonRetryable(`the conversation is not open (stage ${state.stage})`, 'ConversationNotOpen');
    }
  };

  setHandler(
    resolveUpdate,
    async (request) => {
      inbox.resolve = request;
      await condition(() => inbox.resolve === undefined && run.answerable); // resolved, and the stage recorded
      return { status: 'resolved' as const };
    },
    { validator: (_request: ResolveInput) => requireOpen(inbox.resolve) },
  );

  setHandler(
    assignUpdate,
    async (request) => {
      inbox.assign = request;
      await condition(() => inbox.assign === undefined && run.answerable); // applied, and the stage recorded
      const refused = run.refused.assign;
      run.refused.assign = undefined;
      if (refused) throw ApplicationFailure.nonRetryable(refused, 'AssignmentRefused');
      return { assignee: state.assignee };
    },
    { validator: (_request: AssignInput) => requireOpen(inbox.assign) },
  );

  // Also the first update of a run started for it (update-with-start, the conversation was closed and its
  // run had ended): that run does not know yet whether it is open, and triage answers it.
  setHandler(
    reopenUpdate,
    async (request) => {
      inbox.reopen = request;
      // Reopened and routed (a fresh run's triage answers it too), or refused; the stage recorded.
      await condition(() => inbox.reopen === undefined && run.answerable);
      const refused = run.refused.reopen;
      run.refused.reopen = undefined;
      if (refused) throw ApplicationFailure.nonRetryable(refused, 'ConversationOpen');
      return { status: statusOfStage(state.stage), assignee: state.assignee };
    },
    {
      validator: (_request: ReopenInput) => {
        if ((state.known && isOpenStage(state.stage)) || inbox.reopen) {
          throw ApplicationFailure.nonRetryable(`the conversation is open already (stage ${state.stage})`, 'ConversationOpen');
        }
      },
    },
  );

  // Sent by earlier releases of the API with signalWithStart; update-with-start replaced it.
  setHandler(reopenSignal, (request) => {
    if (!state.known || !isOpenStage(state.stage)) inbox.reopen ??= request;
  });

  setHandler(conversationSnapshotQuery, () => ({
    conversationId: state.conversationId,
    stage: state.stage,
    assigneeId: state.assignee?.id ?? null,
    aiAgentId: state.handler.kind === 'ai' ? state.handler.aiAgent.id : null,
    slaBreached: state.slaBreached,
    pendingMessages: inbox.mails.length,
    mailsTaken: state.mailsTaken,
    lastCustomerMailId: state.lastCustomerMail?.inboundMessageId ?? null,
  }));
}

/**
 * The run ends once every update is answered and every mail sent, unless a person writes, an agent
 * reopens it or releases it from spam meanwhile: then it goes on.
 */
async function lastWords(run: Run): Promise<Move | undefined> {
  const { state } = run;
  const goesOn = () => state.inbox.spamRelease !== undefined || customerOrAgentReopens(state.inbox);
  await condition(() => (allHandlersFinished() && run.sendsInFlight === 0 && !state.scheduledReplies?.length) || goesOn());
  if (!goesOn()) return undefined;
  if (state.stage === 'spam') return { to: 'triage', details: 'Triage again: a mail or a release from spam arrived' };
  return reopen(run);
}

/**
 * Before continuing as new: an update waiting for the main loop is served first (or both would wait
 * forever), and mail still being sent goes out.
 */
async function readyToContinueAsNew(run: Run): Promise<boolean> {
  const { inbox } = run.state;
  await condition(
    () =>
      (allHandlersFinished() && run.sendsInFlight === 0) ||
      inbox.resolve !== undefined ||
      inbox.assign !== undefined ||
      inbox.reopen !== undefined,
  );
  return allHandlersFinished() && run.sendsInFlight === 0;
}

function describeSeconds(seconds: number): string {
  if (seconds % 86_400 === 0 && seconds > 0) return `${seconds / 86_400} d`;
  if (seconds % 3600 === 0 && seconds > 0) return `${seconds / 3600} h`;
  if (seconds % 60 === 0 && seconds > 0) return `${seconds / 60} min`;
  return `${seconds} s`;
}
