// Webhook deliveries per second (`npm run bench`, section `webhooks`): an admin subscribes a receiver on loopback to
// message.received; N mails posted to the forwarder endpoint (each a new conversation, so each its own lane) must all
// arrive there, signed, through the dispatcher and the lanes of a Mailroom worker in this process. Measured from the
// first post to the last delivery, next to the forwarder's own rate in the same run.
import { createServer, type IncomingMessage } from 'node:http';
import { performance } from 'node:perf_hooks';
import { createUser } from '../src/db/seed.js';
import { startWebhookDispatcher } from '../src/temporal/webhooks.js';
import { webhookDispatcherWorkflowId } from '../src/workflows/ids.js';
import { startBenchWorker, type BenchStack } from './stack.js';
import { forwardedMail, measure, type Measurement } from './throughput.js';

/** The webhook workers' queue: the dispatcher and the lanes (no conversation workflow runs here). */
const WEBHOOK_TASK_QUEUE = 'bench-webhooks';

export interface WebhookFigures {
  mails: number;
  /** The posts themselves (the ingest now also writes a delivery per mail). */
  posts: Measurement;
  /** From the first post to the last delivery received. */
  seconds: number;
  /** Each delivery: its post answered → its POST received. */
  latenciesMs: number[];
}

function readBody(request: IncomingMessage): Promise<string> {
  return new Promise((resolve, reject) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => resolve(Buffer.concat(chunks).toString('utf8')));
    request.on('error', reject);
  });
}

export async function measureWebhookDeliveries(
  stack: BenchStack,
  { mails, concurrency }: { mails: number; concurrency: number },
): Promise<WebhookFigures> {
  // The subscriber: answers 204 at once and notes when each mail's delivery came (by webhook-id, once).
  const arrivedAt = new Map<string, number>();
  const seenIds = new Set<string>();
  let allArrived: () => void = () => undefined;
  const done = new Promise<void>((resolve) => (allArrived = resolve));
  const receiver = createServer((request, response) => {
    void readBody(request).then((body) => {
      const id = String(request.headers['webhook-id']);
      if (!seenIds.has(id)) {
        seenIds.add(id);
        const payload = JSON.parse(body) as { data: { messageId: string } };
        arrivedAt.set(payload.data.messageId, performance.now());
        if (arrivedAt.size >= mails) allArrived();
      }
      response.writeHead(204).end();
    });
  });
  await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
  stack.addStop(() => new Promise<void>((resolve) => receiver.close(() => resolve())));
  const { port } = receiver.address() as { port: number };

  const admin = await createUser(stack.db, {
    accountId: stack.accountId,
    name: 'Bench Admin',
    email: 'bench-admin@acme.example',
    role: 'admin',
  });
  const subscribed = await fetch(`${stack.apiUrl}/v1/webhooks`, {
    method: 'POST',
    headers: { authorization: `Bearer ${admin.apiKey}`, 'content-type': 'application/json' },
    body: JSON.stringify({ url: `http://127.0.0.1:${port}/hooks`, events: ['message.received'] }),
  });
  if (subscribed.status !== 201) throw new Error(`bench: subscribing failed: ${subscribed.status} ${await subscribed.text()}`);
  const subscription = (await subscribed.json()) as { id: string };

  await startBenchWorker(stack, WEBHOOK_TASK_QUEUE, { webhooks: { temporal: stack.temporal } });
  stack.addStop(async () => {
    // Stopped before the worker (stops run newest first), so that it does not outlive the bench on the dev server.
    await stack.temporal.workflow
      .getHandle(webhookDispatcherWorkflowId(WEBHOOK_TASK_QUEUE))
      .terminate('bench done')
      .catch(() => undefined);
  });
  await startWebhookDispatcher(stack.temporal, WEBHOOK_TASK_QUEUE);

  // Each post notes when it was answered, under the stored mail's id the delivery's payload carries.
  const answeredAt = new Map<string, number>();
  const post = forwardedMail(stack, stack.apiUrl, (inboundMessageId) => answeredAt.set(inboundMessageId, performance.now()));
  const start = performance.now();
  const posts = await measure(mails, concurrency, post);
  if (posts.failures > 0) throw new Error(`bench: ${posts.failures} posts failed; first: ${posts.firstFailure}`);
  const timeout = setTimeout(() => allArrived(), 10 * 60_000);
  await done;
  clearTimeout(timeout);
  if (arrivedAt.size < mails) throw new Error(`bench: only ${arrivedAt.size} of ${mails} webhook deliveries arrived in 10 min`);
  // Later sections measure the ingest without a subscriber, as the earlier ones did.
  await fetch(`${stack.apiUrl}/v1/webhooks/${subscription.id}`, {
    method: 'DELETE',
    headers: { authorization: `Bearer ${admin.apiKey}` },
  });
  const seconds = (Math.max(...arrivedAt.values()) - start) / 1000;
  const latenciesMs = [...arrivedAt].flatMap(([id, at]) => {
    const answered = answeredAt.get(id);
    return answered === undefined ? [] : [at - answered];
  });
  return { mails, posts, seconds, latenciesMs };
}
