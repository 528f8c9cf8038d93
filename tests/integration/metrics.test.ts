import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startMetricsServer } from '../../src/observability/metrics-endpoint.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, temporalRuntimeLog, type TestStack } from '../support/stack.js';

// What an operator's Prometheus and log pipeline see: Mailroom's counters move with the mail, the Temporal SDK's
// worker metrics are served beside them, and the runtime's log lines carry the ids Mailroom's own lines carry.

/** The value of one sample in a Prometheus exposition; 0 when the series is not there yet. */
function sample(text: string, name: string, labels: Record<string, string> = {}): number {
  const wanted = Object.entries(labels).map(([key, value]) => `${key}="${value}"`);
  for (const line of text.split('\n')) {
    if (line.startsWith('#')) continue;
    const [series, value] = [line.slice(0, line.lastIndexOf(' ')), line.slice(line.lastIndexOf(' ') + 1)];
    const seriesName = series.includes('{') ? series.slice(0, series.indexOf('{')) : series;
    if (seriesName === name && wanted.every((label) => series.includes(label))) return Number(value);
  }
  return 0;
}

describe('metrics and the runtime’s logs', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Hi! We received your message.' },
    });
  });

  afterAll(async () => {
    stack?.capture.refuse(null);
    await stack?.stop();
  });

  const scrape = async () => {
    const response = await fetch(`${stack.api.url}/metrics`);
    expect(response.status).toBe(200);
    expect(response.headers.get('content-type')).toContain('text/plain');
    return response.text();
  };

  it('counts a posted mail, its parse and its greeting, next to the SDK’s worker metrics', async () => {
    const before = await scrape();
    const messageId = `${randomUUID()}@example.com`;
    const posted = await postMail(stack.api.url, team.channel, customerMail({ messageId, from: 'ann@example.com' }));
    expect(posted.status).toBe(202);
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('ann@example.com'));
    // The same mail again is a duplicate, counted as one.
    const again = await postMail(stack.api.url, team.channel, customerMail({ messageId, from: 'ann@example.com' }));
    expect(again.body.duplicate).toBe(true);

    // The greeting goes out inside the workflow task that decided it: the task's own metrics come when it completes.
    const after = await eventually(async () => {
      const text = await scrape();
      const greeted =
        sample(text, 'mailroom_smtp_sends_total', { kind: 'greeting', outcome: 'sent' }) >
        sample(before, 'mailroom_smtp_sends_total', { kind: 'greeting', outcome: 'sent' });
      return greeted && sample(text, 'temporal_workflow_task_execution_latency_count') > 0 ? text : undefined;
    });
    const delta = (name: string, labels: Record<string, string> = {}) =>
      sample(after, name, labels) - sample(before, name, labels);
    expect(delta('mailroom_mails_received_total', { via: 'forwarder', outcome: 'accepted' })).toBe(1);
    expect(delta('mailroom_mails_received_total', { via: 'forwarder', outcome: 'duplicate' })).toBe(1);
    expect(delta('mailroom_mail_parse_seconds_count')).toBe(1);
    expect(delta('mailroom_smtp_sends_total', { kind: 'greeting', outcome: 'sent' })).toBe(1);
    // The Temporal SDK's worker metrics, from the runtime's own exporter, in the same scrape.
    expect(after).toMatch(/^temporal_\w+/m);
    expect(sample(after, 'temporal_workflow_task_execution_latency_count')).toBeGreaterThan(0);
  });

  it('counts a mail the server refuses for good, and the runtime logs it with the conversation’s id', async () => {
    const before = await scrape();
    stack.capture.refuse({ at: 'rcpt', code: 550, message: '5.1.1 no such user', times: 1 });
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: `${randomUUID()}@example.com`, from: 'bea@example.com' }),
    );
    const conversationId = posted.body.conversationId as string;
    await eventually(async () => {
      const detail = await callApi(stack.api.url, team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      const greeting = (detail.body.messages as { kind: string; deliveryStatus: string }[]).find((m) => m.kind === 'greeting');
      return greeting?.deliveryStatus === 'failed' ? true : undefined;
    });
    const after = await scrape();
    expect(
      sample(after, 'mailroom_smtp_sends_total', { kind: 'greeting', outcome: 'failed' }) -
        sample(before, 'mailroom_smtp_sends_total', { kind: 'greeting', outcome: 'failed' }),
    ).toBe(1);
    // The worker's warning about it went through pino, with the fields Mailroom's own lines carry.
    const line = await eventually(async () =>
      temporalRuntimeLog.find((entry) => entry.conversationId === conversationId && entry.level === 40),
    );
    expect(line).toMatchObject({ service: 'mailroom', component: 'temporal', workflowId: `conversation-${conversationId}` });
  });

  it('counts the queue of conversations waiting for an agent per channel, read from the database', async () => {
    await stack.db.updateTable('conversations').set({ stage: 'queued' }).where('channel_id', '=', team.channel.id).execute();
    const waiting = await stack.db
      .selectFrom('conversations')
      .select((eb) => eb.fn.countAll<string>().as('count'))
      .where('channel_id', '=', team.channel.id)
      .executeTakeFirstOrThrow();
    expect(sample(await scrape(), 'mailroom_conversations_waiting', { channel_id: team.channel.id })).toBe(Number(waiting.count));
  });

  it('serves the worker’s and the receiver’s metrics port: GET /metrics only', async () => {
    const server = await startMetricsServer({ port: 0, host: '127.0.0.1', db: stack.db });
    try {
      const response = await fetch(server.url);
      expect(response.status).toBe(200);
      expect(await response.text()).toContain('mailroom_mails_received_total');
      expect((await fetch(server.url.replace('/metrics', '/other'))).status).toBe(404);
      expect((await fetch(server.url, { method: 'POST' })).status).toBe(404);
    } finally {
      await server.close();
    }
  });
});
