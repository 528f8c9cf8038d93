import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startTemporalDevServer, type TemporalDevServer } from '../../scripts/servers/temporal-dev-server.js';
import { freePort } from '../../scripts/servers/tools.js';
import { startApiServer, type RunningApi } from '../../src/api/server.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { createTestDatabase } from '../support/database.js';
import { postMail } from '../support/http.js';
import { seedSupportTeam, TEST_DATA_CONVERTER, TEST_SECRET_KEY } from '../support/stack.js';

const question = readFileSync(new URL('../fixtures/eml/customer-question.eml', import.meta.url));
const withMessageId = (id: string) => question.toString().replace('<question-1.4711@mail.example.com>', `<${id}>`);
const MAX_INBOUND_BYTES = 64 * 1024;

// The ingest path on its own Temporal dev server, so that this file can stop and restart it.
describe('forwarded-mail ingest', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let temporalServer: TemporalDevServer;
  let temporal: Client;
  let api: RunningApi;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const temporalPort = { value: 0 };
  const temporalDir = mkdtempSync(join(tmpdir(), 'mailroom-ingest-'));
  const startTemporal = () => startTemporalDevServer({ port: temporalPort.value, dbFile: join(temporalDir, 'temporal.db') });

  beforeAll(async () => {
    temporalPort.value = await freePort();
    [database, temporalServer] = await Promise.all([createTestDatabase(), startTemporal()]);
    temporal = new Client({
      connection: Connection.lazy({ address: temporalServer.address }),
      dataConverter: TEST_DATA_CONVERTER,
    });
    api = await startApiServer(
      {
        db: database.db,
        temporal,
        ingest: createIngest({ db: database.db, temporal, temporalTimeoutMs: 3_000, taskQueue: 'ingest-test-no-worker' }),
        config: {
          SECRET_KEY: TEST_SECRET_KEY,
          MAX_INBOUND_BYTES,
          PUBLIC_URL: 'http://unused',
          INBOUND_DOMAIN: 'inbound.mailroom.test',
        },
        logger: createLogger('silent'),
      },
      { port: 0, host: '127.0.0.1' },
    );
    team = await seedSupportTeam(database.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await api?.close();
    await temporal?.connection.close();
    await temporalServer?.stop();
    await database?.drop();
    rmSync(temporalDir, { recursive: true, force: true });
  });

  const countRows = async (table: 'inbound_messages' | 'conversations' | 'contacts') =>
    Number(
      (
        await database.db
          .selectFrom(table)
          .select((eb) => eb.fn.countAll().as('n'))
          .executeTakeFirstOrThrow()
      ).n,
    );

  it('answers 202 with the conversation once the mail is stored and its workflow signalled', async () => {
    const posted = await postMail(api.url, team.channel, withMessageId('first@example.com'));
    expect(posted).toMatchObject({ status: 202, body: { duplicate: false } });
    const stored = await database.db
      .selectFrom('inbound_messages')
      .selectAll()
      .where('id', '=', posted.body.inboundMessageId)
      .executeTakeFirstOrThrow();
    expect(Buffer.from(stored.raw!).toString()).toBe(withMessageId('first@example.com'));
    expect(stored).toMatchObject({
      status: 'threaded',
      conversation_id: posted.body.conversationId,
      from_address: 'ann@example.com',
    });
    expect(stored.signalled_at).not.toBeNull();
    const description = await temporal.workflow.getHandle(conversationWorkflowId(posted.body.conversationId)).describe();
    expect(description.status.name).toBe('RUNNING');
  });

  it('takes mail as a forwarding script hands it over: the mbox From line, >From quoting, a space before the colon', async () => {
    // Postfix's pipe transport (flag F), procmail, fetchmail and mbox exports put the envelope line first.
    const raw = [
      'From ann@example.com Mon May  2 16:07:05 2005',
      'From : "Ann Example" <ann@example.com>',
      'To: support@acme.example',
      'Subject : Invoice 42',
      'Message-ID: <mbox-envelope-1@example.com>',
      '',
      'Hello,',
      '>From what I see the invoice is missing.',
      '',
    ].join('\n');
    const posted = await postMail(api.url, team.channel, raw);
    expect(posted).toMatchObject({ status: 202, body: { duplicate: false } });
    const stored = await database.db
      .selectFrom('inbound_messages')
      .select(['raw', 'status', 'from_address', 'subject', 'text_body'])
      .where('id', '=', posted.body.inboundMessageId)
      .executeTakeFirstOrThrow();
    // Kept exactly as received; read without the mbox quirks.
    expect(Buffer.from(stored.raw!).toString()).toBe(raw);
    expect(stored).toMatchObject({ status: 'threaded', from_address: 'ann@example.com', subject: 'Invoice 42' });
    expect(stored.text_body).toContain('\nFrom what I see the invoice is missing.');
  });

  it('answers a second post of the same Message-ID the same, creating nothing', async () => {
    const first = await postMail(api.url, team.channel, withMessageId('twice@example.com'));
    const counts = [await countRows('inbound_messages'), await countRows('conversations'), await countRows('contacts')];
    const second = await postMail(api.url, team.channel, `Received: by another relay\r\n${withMessageId('twice@example.com')}`);
    expect(second.status).toBe(202);
    expect(second.body).toEqual({ ...first.body, duplicate: true });
    expect([await countRows('inbound_messages'), await countRows('conversations'), await countRows('contacts')]).toEqual(counts);
  });

  it('accepts the channel secret as the HTTP Basic password', async () => {
    const response = await fetch(`${api.url}/v1/channels/${team.channel.id}/inbound`, {
      method: 'POST',
      headers: { authorization: `Basic ${Buffer.from(`forwarder:${team.channel.forwarderSecret}`).toString('base64')}` },
      body: withMessageId('basic@example.com'),
    });
    expect(response.status).toBe(202);
  });

  it('refuses a wrong or missing secret with 401', async () => {
    const wrong = await postMail(
      api.url,
      { id: team.channel.id, forwarderSecret: 'not-the-secret' },
      withMessageId('x1@example.com'),
    );
    expect(wrong.status).toBe(401);
    expect(wrong.contentType).toBe('application/problem+json');
    const missing = await fetch(`${api.url}/v1/channels/${team.channel.id}/inbound`, {
      method: 'POST',
      body: withMessageId('x2@example.com'),
    });
    expect(missing.status).toBe(401);
  });

  it('answers 404 for an unknown channel', async () => {
    const response = await postMail(
      api.url,
      { id: '00000000-0000-4000-8000-000000000000', forwarderSecret: 'x' },
      withMessageId('x3@example.com'),
    );
    expect(response.status).toBe(404);
    expect(response.body).toMatchObject({ status: 404, title: 'Channel not found' });
  });

  it('answers 422 naming the parameter when the channel id is not a uuid', async () => {
    const response = await postMail(api.url, { id: 'not-a-uuid', forwarderSecret: 'x' }, withMessageId('x4@example.com'));
    expect(response.status).toBe(422);
    expect(response.body.errors[0].field).toBe('channelId');
  });

  it('answers 413 for a body over the limit', async () => {
    const huge = `${withMessageId('huge@example.com')}${'x'.repeat(MAX_INBOUND_BYTES)}`;
    const response = await postMail(api.url, team.channel, huge);
    expect(response.status).toBe(413);
    expect(response.contentType).toBe('application/problem+json');
  });

  it('answers 400 for bytes that are no mail at all, and keeps them for an operator', async () => {
    const junk = '{"event": "inbound", "note": "this is JSON, not a mail"}';
    const response = await postMail(api.url, team.channel, junk);
    expect(response.status).toBe(400);
    expect(response.body.detail).toContain('not an RFC 822 message');
    const kept = await database.db.selectFrom('inbound_messages').selectAll().where('status', '=', 'rejected').execute();
    expect(kept.map((row) => Buffer.from(row.raw!).toString())).toContain(junk);
  });

  it('answers 503 while Temporal is down with the mail kept, and completes on the retry without duplicates', async () => {
    const mail = withMessageId('during-outage@example.com');
    await temporalServer.stop();
    try {
      const during = await postMail(api.url, team.channel, mail);
      expect(during.status).toBe(503);
      expect(during.contentType).toBe('application/problem+json');
      const kept = await database.db
        .selectFrom('inbound_messages')
        .select(['status', 'signalled_at', 'conversation_id'])
        .where('message_id', '=', '<during-outage@example.com>')
        .executeTakeFirstOrThrow();
      expect(kept).toMatchObject({ status: 'threaded', signalled_at: null });
    } finally {
      temporalServer = await startTemporal();
    }
    const counts = [await countRows('inbound_messages'), await countRows('conversations')];
    const retry = await postMail(api.url, team.channel, mail);
    expect(retry).toMatchObject({ status: 202, body: { duplicate: false } });
    expect([await countRows('inbound_messages'), await countRows('conversations')]).toEqual(counts);
    const handle = temporal.workflow.getHandle(conversationWorkflowId(retry.body.conversationId));
    expect((await handle.describe()).status.name).toBe('RUNNING');
    const again = await postMail(api.url, team.channel, mail);
    expect(again.body).toEqual({ ...retry.body, duplicate: true });
  });
});
