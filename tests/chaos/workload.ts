import { randomUUID } from 'node:crypto';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Db } from '../../src/db/connection.js';
import type { CapturedMail, SmtpCapture } from '../../src/mail/smtp-capture.js';
import { postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';

// The chaos tests' workload: distinct customers writing to a channel through its forwarder endpoint at a steady
// pace, what each post was answered, and what reached the customers afterwards.

export interface PostedMail {
  /** Without angle brackets, as the test wrote it. */
  messageId: string;
  customer: string;
  apiUrl: string;
  /** The HTTP status; 0 when no answer came (the connection failed). */
  status: number;
  /** The 202's conversation id; undefined for any other answer. */
  conversationId?: string;
  /** The answer as received, for failures' messages. */
  answer: string;
  /** When the answer arrived (epoch ms): greeting delays are counted from here. */
  answeredAt: number;
}

export interface Workload {
  /** Tells mails of one run from another's, in addresses and Message-IDs. */
  tag: string;
  count: number;
  /** Posts in flight at most. */
  concurrency: number;
  /** Post n starts no sooner than n × this after the first, so that the load spans the chaos around it. */
  intervalMs: number;
  /** Posted to in turn: mail n goes to apiUrls[n % apiUrls.length]. */
  apiUrls: string[];
  channel: { id: string; forwarderSecret: string };
}

/** Posts `count` mails, each from a customer of its own (so each opens a conversation), as a forwarder does: once. */
export async function postCustomerMails(workload: Workload): Promise<PostedMail[]> {
  const { tag, count, concurrency, intervalMs, apiUrls, channel } = workload;
  const posted: PostedMail[] = [];
  const start = Date.now();
  let next = 0;
  const lane = async () => {
    for (let index = next++; index < count; index = next++) {
      const due = start + index * intervalMs;
      if (due > Date.now()) await sleep(due - Date.now());
      const customer = `${tag}-${index}@customers.example`;
      const messageId = `${tag}-${index}-${randomUUID()}@customers.example`;
      const apiUrl = apiUrls[index % apiUrls.length]!;
      const raw = customerMail({
        messageId,
        from: `"Customer ${index}" <${customer}>`,
        subject: `Question ${index} of ${tag}`,
        text: `Hello, this is customer ${index}. My order has not arrived.`,
      });
      try {
        const { status, body } = await postMail(apiUrl, channel, raw);
        posted.push({
          messageId,
          customer,
          apiUrl,
          status,
          conversationId: status === 202 ? String(body.conversationId) : undefined,
          answer: JSON.stringify(body),
          answeredAt: Date.now(),
        });
      } catch (error) {
        posted.push({ messageId, customer, apiUrl, status: 0, answer: String(error), answeredAt: Date.now() });
      }
    }
  };
  await Promise.all(Array.from({ length: Math.min(concurrency, count) }, lane));
  return posted;
}

/** A captured mail's Message-ID as the outbox stores it, without angle brackets. */
export function bareMessageId(messageId: string | null): string {
  return (messageId ?? '').replace(/^<|>$/g, '');
}

export interface Figures {
  mails: number;
  p50: number;
  p95: number;
  max: number;
}

/** Nearest-rank percentiles of delays in ms. */
export function figuresOf(delaysMs: number[]): Figures {
  const sorted = [...delaysMs].sort((a, b) => a - b);
  const rank = (p: number) => sorted[Math.max(0, Math.ceil((p / 100) * sorted.length) - 1)] ?? NaN;
  return { mails: sorted.length, p50: rank(50), p95: rank(95), max: sorted.at(-1) ?? NaN };
}

export function formatFigures(rows: Array<{ run: string } & Figures & { note?: string }>): string {
  const seconds = (ms: number) => `${(ms / 1000).toFixed(1)} s`.padStart(8);
  const lines = rows.map(
    (row) =>
      `${row.run.padEnd(34)}${String(row.mails).padStart(6)}${seconds(row.p50)}${seconds(row.p95)}${seconds(row.max)}  ${row.note ?? ''}`,
  );
  return [`${'greeting delay (POST answered → SMTP)'.padEnd(34)} mails     p50     p95     max`, ...lines].join('\n');
}

export interface Outcome {
  conversationId: string;
  stage: string;
  /** The greeting's outbox row, if written. */
  greeting?: { id: string; messageId: string; deliveryStatus: string; deliveryError: string | null };
  /** Captured mails carrying the greeting's Message-ID. */
  greetingsCaptured: CapturedMail[];
}

/** Where each conversation stands, and which of its greetings reached the capture. */
export async function outcomes(db: Db, capture: SmtpCapture, conversationIds: string[]): Promise<Outcome[]> {
  if (conversationIds.length === 0) return [];
  const conversations = await db.selectFrom('conversations').select(['id', 'stage']).where('id', 'in', conversationIds).execute();
  const greetings = await db
    .selectFrom('outbound_messages')
    .select(['id', 'conversation_id', 'message_id', 'delivery_status', 'delivery_error'])
    .where('conversation_id', 'in', conversationIds)
    .where('kind', '=', 'greeting')
    .execute();
  const captured = new Map<string, CapturedMail[]>();
  for (const mail of capture.mails) {
    const id = bareMessageId(mail.messageId);
    captured.set(id, [...(captured.get(id) ?? []), mail]);
  }
  return conversations.map((conversation) => {
    const row = greetings.find((greeting) => greeting.conversation_id === conversation.id);
    return {
      conversationId: conversation.id,
      stage: conversation.stage,
      greeting: row && {
        id: row.id,
        messageId: bareMessageId(row.message_id),
        deliveryStatus: row.delivery_status,
        deliveryError: row.delivery_error,
      },
      greetingsCaptured: row ? (captured.get(bareMessageId(row.message_id)) ?? []) : [],
    };
  });
}

/** Open and with people: routed to an agent, or waiting in the queue for one. */
export const ROUTED_STAGES = ['assigned', 'queued'];

/** Greeted (the greeting at the capture, and its row sent) and routed: what every conversation of the workload must reach. */
export function settled(outcome: Outcome): boolean {
  return (
    ROUTED_STAGES.includes(outcome.stage) && outcome.greeting?.deliveryStatus === 'sent' && outcome.greetingsCaptured.length > 0
  );
}

/** What a conversation that has not settled lacks, for a failure's message. */
export function describeUnsettled(outcomes: Outcome[]): string {
  const unsettled = outcomes.filter((outcome) => !settled(outcome));
  return unsettled
    .slice(0, 20)
    .map(
      (outcome) =>
        `conversation ${outcome.conversationId}: stage ${outcome.stage}, greeting ${outcome.greeting ? `${outcome.greeting.deliveryStatus} (${outcome.greeting.deliveryError ?? 'no error'})` : 'not written'}, ${outcome.greetingsCaptured.length} captured`,
    )
    .join('\n');
}
