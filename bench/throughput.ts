// The two workloads (a forwarded mail through the HTTP API, a bare signalWithStart) and the timer that drives them.
import { randomUUID } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { performance } from 'node:perf_hooks';
import { createConversationGateway } from '../src/temporal/gateway.js';
import { BARE_TASK_QUEUE, INGEST_TASK_QUEUE, type BenchStack } from './stack.js';

export interface Measurement {
  requests: number;
  seconds: number;
  /** Wall time of each request, in the order they finished. */
  latenciesMs: number[];
  failures: number;
  firstFailure?: string;
}

/** One request of a workload; it throws to report a failure (with what the server said). */
export type Request = () => Promise<void>;

/** Sends `requests` requests with at most `concurrency` in flight and times them. */
export async function measure(requests: number, concurrency: number, request: Request): Promise<Measurement> {
  const result: Measurement = { requests, seconds: 0, latenciesMs: [], failures: 0 };
  let started = 0;
  const lane = async () => {
    while (started < requests) {
      started++;
      const requestStart = performance.now();
      try {
        await request();
      } catch (error) {
        result.failures++;
        result.firstFailure ??= (error as Error).message;
      }
      result.latenciesMs.push(performance.now() - requestStart);
    }
  };
  const start = performance.now();
  await Promise.all(Array.from({ length: Math.min(concurrency, requests) }, lane));
  result.seconds = (performance.now() - start) / 1000;
  return result;
}

/** The mail every workload sends (the IMAP ones too, so all parse the same bytes); LF line ends, as in the repo. */
export const fixtureMail = readFileSync(new URL('../tests/fixtures/eml/customer-question.eml', import.meta.url), 'latin1');
if (!/^Message-ID: .*$/m.test(fixtureMail)) throw new Error('bench: the fixture mail has no Message-ID line to replace');

/**
 * POSTs a new mail (a Message-ID never seen before, so a new conversation) to the channel's forwarder endpoint of the
 * stack's API (or of `apiUrl`); 202 or it throws.
 */
export function forwardedMail(
  stack: BenchStack,
  apiUrl: string = stack.apiUrl,
  /** Told the stored mail's id as soon as the post is answered. */
  onAccepted?: (inboundMessageId: string) => void,
): Request {
  const url = `${apiUrl}/v1/channels/${stack.channel.id}/inbound`;
  const headers = { authorization: `Bearer ${stack.channel.forwarderSecret}`, 'content-type': 'message/rfc822' };
  return async () => {
    const raw = fixtureMail.replace(/^Message-ID: .*$/m, `Message-ID: <bench-${randomUUID()}@mail.example.com>`);
    const response = await fetch(url, { method: 'POST', headers, body: Buffer.from(raw, 'latin1') });
    const body = await response.text(); // read in full, so the connection is reused and the time includes the answer
    if (response.status !== 202) throw new Error(`HTTP ${response.status}: ${body}`);
    onAccepted?.((JSON.parse(body) as { inboundMessageId: string }).inboundMessageId);
  };
}

/** Starts a new workflow with a signal, on a queue no worker polls: Temporal's own cost of what ingest asks of it. */
export function bareSignalWithStart(stack: BenchStack): Request {
  return async () => {
    await stack.temporal.workflow.signalWithStart('benchNoopWorkflow', {
      workflowId: `bench-bare-${randomUUID()}`,
      taskQueue: BARE_TASK_QUEUE,
      args: [],
      signal: 'ping',
      signalArgs: [],
    });
  };
}

/**
 * The ingest's own Temporal call and nothing else: signalWithStart of a conversation workflow with its search
 * attributes, summary and encrypted payloads, as the ingest makes it, on the ingest's unpolled queue. What the
 * ingest costs beyond this is Mailroom's own work (HTTP, parse, PostgreSQL).
 */
export function conversationSignalWithStart(stack: BenchStack): Request {
  const conversations = createConversationGateway(stack.temporal, { taskQueue: INGEST_TASK_QUEUE });
  return async () => {
    const conversationId = randomUUID();
    await conversations.deliverMail(
      { conversationId, channelId: stack.channel.id, summary: "Email conversation on channel 'Bench support': A question" },
      {
        inboundMessageId: randomUUID(),
        facts: { classification: 'ordinary', senderVerdict: 'ordinary', asksForPerson: false, confirmsResolution: false },
      },
      { spam: false },
    );
  };
}
