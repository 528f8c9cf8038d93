import { createHash, randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import type { Channel } from '../../src/db/schema.js';
import { createIngest, type Ingest } from '../../src/ingest/ingest.js';
import { closeParserPool } from '../../src/mail/parse.js';
import {
  CHANNEL,
  CORPUS_DIR,
  CORPUS_MAX_ATTACHMENT_BYTES,
  corpus,
  sidecar,
  type Expected,
  type Given,
} from '../fixtures/eml/generate-corpus.js';
import { createTestDatabase } from '../support/database.js';
import { seedSupportTeam, TEST_DATA_CONVERTER } from '../support/stack.js';

const names = readdirSync(CORPUS_DIR)
  .filter((file) => file.endsWith('.eml'))
  .map((file) => file.slice(0, -'.eml'.length))
  .sort();

function load(name: string) {
  const { given, expect } = JSON.parse(readFileSync(`${CORPUS_DIR}${name}.expected.json`, 'utf8')) as {
    given?: Given;
    expect: Expected;
  };
  return { raw: readFileSync(`${CORPUS_DIR}${name}.eml`), given, expected: expect };
}

const sha256 = (bytes: Uint8Array) => createHash('sha256').update(bytes).digest('hex');

// Every fixture of tests/fixtures/eml/corpus, in name order, through createIngest on the real
// PostgreSQL and Temporal dev server (a task queue without a worker: signalWithStart needs only the
// server), then the stored rows read back and compared with the fixture's .expected.json.
describe('the .eml corpus through the ingest path', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let temporal: Client;
  let channel: Channel;
  let ingest: Ingest;
  // Fixture name → the conversation its mail was filed on.
  const conversationOf = new Map<string, string>();

  beforeAll(async () => {
    database = await createTestDatabase();
    temporal = new Client({
      connection: await Connection.connect({ address: inject('temporalAddress') }),
      dataConverter: TEST_DATA_CONVERTER,
    });
    const team = await seedSupportTeam(database.db, { name: 'Acme Support', emailAddress: CHANNEL });
    await database.db
      .updateTable('channels')
      .set({ max_attachment_bytes: CORPUS_MAX_ATTACHMENT_BYTES })
      .where('id', '=', team.channel.id)
      .execute();
    channel = await database.db.selectFrom('channels').selectAll().where('id', '=', team.channel.id).executeTakeFirstOrThrow();
    ingest = createIngest({ db: database.db, temporal, taskQueue: `corpus-test-no-worker-${randomUUID()}` });
  });

  afterAll(async () => {
    await temporal?.connection.close();
    await database?.drop();
    await closeParserPool();
  });

  it('holds what the generator writes, at least 40 cases', () => {
    const fixtures = corpus();
    expect(names).toEqual(fixtures.map((fixture) => fixture.name));
    expect(names.length).toBeGreaterThanOrEqual(40);
    for (const fixture of fixtures) {
      expect(readFileSync(`${CORPUS_DIR}${fixture.name}.eml`).equals(fixture.eml), fixture.name).toBe(true);
      expect(readFileSync(`${CORPUS_DIR}${fixture.name}.expected.json`, 'utf8'), fixture.name).toBe(sidecar(fixture));
    }
  });

  async function arrange(given: Given | undefined) {
    for (const outbound of given?.outbound ?? []) {
      await database.db
        .insertInto('outbound_messages')
        .values({
          id: randomUUID(),
          conversation_id: conversationOf.get(outbound.onConversationOf)!,
          kind: 'reply',
          message_id: outbound.messageId,
          from_address: CHANNEL,
          to_address: 'someone@example.com',
          subject: 'Re: something',
          text_body: 'Our answer.',
        })
        .execute();
    }
    if (given?.replyToken) {
      await database.db
        .updateTable('conversations')
        .set({ reply_token: given.replyToken.token })
        .where('id', '=', conversationOf.get(given.replyToken.onConversationOf)!)
        .execute();
    }
  }

  it.each(names)('%s', async (name) => {
    const { raw, given, expected } = load(name);
    await arrange(given);
    const result = await ingest.ingestRawMail(channel, raw);
    expect(await ingest.ingestRawMail(channel, raw)).toEqual({ ...result, duplicate: true });

    const { db } = database;
    const row = await db
      .selectFrom('inbound_messages')
      .selectAll()
      .where('id', '=', result.inboundMessageId)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({ status: 'threaded', conversation_id: result.conversationId });
    expect(row.signalled_at).not.toBeNull();
    expect(row.classification).toBe(expected.classification);

    if (expected.thread === 'new') {
      expect([...conversationOf.values()]).not.toContain(result.conversationId);
      const conversation = await db
        .selectFrom('conversations as c')
        .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
        .select(['ct.email', 'c.subject'])
        .where('c.id', '=', result.conversationId)
        .executeTakeFirstOrThrow();
      expect(conversation).toEqual({ email: expected.from.address, subject: expected.subject || '(no subject)' });
    } else {
      expect(result.conversationId).toBe(conversationOf.get(expected.thread.with));
    }
    conversationOf.set(name, result.conversationId);

    expect({ address: row.from_address, name: row.from_name }).toEqual(expected.from);
    expect(row.subject).toBe(expected.subject);
    if (expected.to) expect(row.to_addresses).toEqual(expected.to);
    if (expected.cc) expect(row.cc_addresses).toEqual(expected.cc);
    if (expected.messageIdPattern) expect(row.message_id).toMatch(new RegExp(expected.messageIdPattern));
    if (expected.sentAt !== undefined) expect(row.sent_at?.toISOString() ?? null).toBe(expected.sentAt);
    if (expected.returnedMessageId !== undefined) expect(row.returned_message_id).toBe(expected.returnedMessageId);

    if (expected.text === null) expect(row.text_body).toBeNull();
    else if (typeof expected.text === 'string') expect(row.text_body?.trim()).toBe(expected.text);
    else for (const part of expected.text?.contains ?? []) expect(row.text_body).toContain(part);
    if (expected.replyText !== undefined) expect(row.reply_text).toBe(expected.replyText);

    if (expected.html === null) expect(row.html_body).toBeNull();
    for (const part of expected.html?.contains ?? []) expect(row.html_body).toContain(part);
    for (const part of expected.html?.excludes ?? []) expect(row.html_body).not.toContain(part);

    const attachments = await db
      .selectFrom('attachments')
      .selectAll()
      .where('inbound_message_id', '=', row.id)
      .orderBy('position')
      .execute();
    expect(
      attachments.map((attachment) => ({
        filename: attachment.filename,
        contentType: attachment.content_type,
        size: attachment.size_bytes,
        inline: attachment.inline,
        contentId: attachment.content_id,
        stored: attachment.content !== null,
        sha256: attachment.content ? sha256(attachment.content) : attachment.sha256,
      })),
    ).toEqual(expected.attachments);
    for (const attachment of attachments) {
      if (attachment.content === null)
        expect(attachment.omitted_reason).toContain(`limit of ${CORPUS_MAX_ATTACHMENT_BYTES} bytes`);
      else expect(attachment.omitted_reason).toBeNull();
    }
  });
});
