import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from 'prom-client';

// Mailroom's own metrics, one registry per process (the API, the worker, the SMTP receiver, or all three under
// `npm start`). Each process counts what it does; Prometheus adds them up across processes. Labels are codes from
// small fixed sets, never text from a mail, so one hostile sender cannot blow up the number of series.

export const registry = new Registry();
collectDefaultMetrics({ register: registry });

/** How an inbound mail ended, as the ingest answered its path. */
export type MailOutcome =
  | 'accepted'
  | 'duplicate'
  | 'quarantined'
  | 'forwarding_confirmation'
  /** Stored, handed to its conversation later (the parser pool was busy, Temporal away). */
  | 'deferred'
  | 'failed';

export const mailsReceived = new Counter({
  name: 'mailroom_mails_received_total',
  help: 'Inbound mails by the way they came in (forwarder, imap, smtp, import, form) and how the ingest ended',
  labelNames: ['via', 'outcome'] as const,
  registers: [registry],
});

export const mailsQuarantined = new Counter({
  name: 'mailroom_mails_quarantined_total',
  help: 'Inbound mails kept but not made a conversation (unparseable, too large, not threadable)',
  labelNames: ['via'] as const,
  registers: [registry],
});

export const mailParseSeconds = new Histogram({
  name: 'mailroom_mail_parse_seconds',
  help: 'Time to parse one inbound mail in the parser pool, the hand-off to its thread included',
  buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5],
  registers: [registry],
});

/** The steps of the ingest, so an operator (and the bench) sees where an inbound mail's time goes. */
export type IngestStep =
  /** The raw bytes stored (or found stored) under the channel and Message-ID. */
  | 'store_raw'
  /** Waiting for a parser thread and handing the bytes over and the result back. */
  | 'parse_handoff'
  /** The parse itself, on the parser thread. */
  | 'parse'
  /** The threading transaction: the sender's contact, conversation, parsed fields, attachments, timeline, webhook outbox. */
  | 'thread_transaction'
  /** signalWithStart of the conversation's workflow, and the mail marked as handed over. */
  | 'signal';

export const ingestStepSeconds = new Histogram({
  name: 'mailroom_ingest_step_seconds',
  help: 'Time of each step of the ingest of one inbound mail (store_raw, parse_handoff, parse, thread_transaction, signal)',
  labelNames: ['step'] as const,
  buckets: [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5],
  registers: [registry],
});

/** Runs one ingest step and records its time, whether it succeeds or not. */
export async function timeIngestStep<T>(step: IngestStep, run: () => Promise<T>): Promise<T> {
  const end = ingestStepSeconds.startTimer({ step });
  try {
    return await run();
  } finally {
    end();
  }
}

export const automaticMailSuppressed = new Counter({
  name: 'mailroom_automatic_mail_suppressed_total',
  help: 'Greetings, out-of-office notes, surveys and handover notes not sent, by kind and reason (loop safety, limits)',
  labelNames: ['kind', 'reason'] as const,
  registers: [registry],
});

export const smtpSends = new Counter({
  name: 'mailroom_smtp_sends_total',
  help: 'Attempts to send an outgoing mail, by kind and outcome (sent, deferred: retried later, failed: refused for good)',
  labelNames: ['kind', 'outcome'] as const,
  registers: [registry],
});

export const slaBreaches = new Counter({
  name: 'mailroom_sla_breaches_total',
  help: 'Conversations whose first-response SLA ran out before an agent answered',
  registers: [registry],
});

export const webhookDeliveries = new Counter({
  name: 'mailroom_webhook_deliveries_total',
  help: 'Webhook delivery attempts by outcome (delivered, failed: retried, refused: not sent to a forbidden address)',
  labelNames: ['outcome'] as const,
  registers: [registry],
});

/** Per channel, read from the database when scraped (see readQueueGauges). */
export const conversationsWaiting = new Gauge({
  name: 'mailroom_conversations_waiting',
  help: 'Open conversations waiting for an agent, per channel',
  labelNames: ['channel_id'] as const,
  registers: [registry],
});

/** Runs `parse` and records its time in the parse histogram, whether it succeeds or not. */
export async function timeParse<T>(parse: () => Promise<T>): Promise<T> {
  const end = mailParseSeconds.startTimer();
  try {
    return await parse();
  } finally {
    end();
  }
}
