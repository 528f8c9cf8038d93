import { randomUUID } from 'node:crypto';
import { gzipSync } from 'node:zlib';
import { Client, Connection } from '@temporalio/client';
import { MockActivityEnvironment } from '@temporalio/testing';
import { DefaultLogger } from '@temporalio/worker';
import { sql } from 'kysely';
import tar from 'tar-stream';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../../scripts/servers/tools.js';
import { createReconcileActivities } from '../../src/activities/reconcile.js';
import { startApiServer } from '../../src/api/server.js';
import { createAccount, createApiKey, createChannel, createUser } from '../../src/db/seed.js';
import { createIngest, type Ingest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { conversationWorkflowId, mailboxImportWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postEndlessBody, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// Whole mailbox exports through the real upload, the real workflow and the real ingest: what each mail becomes,
// what is counted, that nothing is sent to anyone, and what hostile exports come to.

const MAX_IMPORT_BYTES = 16 * 1024 * 1024;

/** Holds the worker's ingest at the mail carrying a marker until released; or fails once right after storing one. */
class IngestControl {
  private held: { marker: string; reached: () => void; released: Promise<void> } | undefined;
  private failAfter: string | undefined;

  holdAt(marker: string): { reached: Promise<void>; release: () => void } {
    let reached!: () => void;
    let release!: () => void;
    const reachedPromise = new Promise<void>((resolve) => (reached = resolve));
    const released = new Promise<void>((resolve) => (release = resolve));
    this.held = { marker, reached, released };
    return {
      reached: reachedPromise,
      release: () => {
        this.held = undefined;
        release();
      },
    };
  }

  /** The attempt dies after the mail is committed, before the import could note it: a worker lost at the worst moment. */
  failOnceAfter(marker: string) {
    this.failAfter = marker;
  }

  wrap = (ingest: Ingest): Ingest => ({
    ...ingest,
    ingestRawMail: async (channel, raw, options) => {
      const held = this.held;
      if (held && raw.includes(held.marker)) {
        held.reached();
        await held.released;
      }
      const result = await ingest.ingestRawMail(channel, raw, options);
      if (this.failAfter && raw.includes(this.failAfter)) {
        this.failAfter = undefined;
        throw new Error('the worker was lost right after the mail was stored');
      }
      return result;
    },
  });
}

const control = new IngestControl();
let stack: TestStack;
let team: Awaited<ReturnType<typeof seedSupportTeam>>;
let adminKey: string;
let agentKey: string;

beforeAll(async () => {
  // A run of the import activity per mail: the workflow's details change between two mails.
  stack = await startTestStack({ workerIngest: control.wrap, mailboxImports: { maxImportBytes: MAX_IMPORT_BYTES, runMs: 0 } });
  team = await seedSupportTeam(stack.db, {
    name: 'Support',
    emailAddress: 'support@acme.example',
    greeting: { text: 'Thanks, we got your mail.' },
  });
  // Small enough that one mail of a test export is over it.
  await stack.db.updateTable('channels').set({ max_inbound_bytes: 4096 }).where('id', '=', team.channel.id).execute();
  adminKey = (await createApiKey(stack.db, team.admin.id, 'admin')).key;
  agentKey = (await createApiKey(stack.db, team.agents[0]!.id, 'agent')).key;
}, 120_000);

afterAll(async () => {
  await stack?.stop();
});

async function upload(body: Buffer | string, contentType: string, headers: Record<string, string> = {}) {
  const response = await fetch(`${stack.api.url}/v1/channels/${team.channel.id}/imports`, {
    method: 'POST',
    headers: { authorization: `Bearer ${adminKey}`, 'content-type': contentType, ...headers },
    body: typeof body === 'string' ? body : new Uint8Array(body),
  });
  return { status: response.status, location: response.headers.get('location'), body: (await response.json()) as any };
}

async function importOf(importId: string) {
  return (await callApi(stack.api.url, adminKey, 'GET', `/v1/channels/${team.channel.id}/imports/${importId}`)).body;
}

/** Uploads an export and waits until its import has ended; returns the import as the API shows it. */
async function importToTheEnd(body: Buffer | string, contentType: string, headers: Record<string, string> = {}) {
  const uploaded = await upload(body, contentType, headers);
  expect(uploaded.status).toBe(202);
  return waitForEnd(uploaded.body.id);
}

function waitForEnd(importId: string) {
  return eventually(async () => {
    const current = await importOf(importId);
    return ['completed', 'failed', 'cancelled'].includes(current.state) ? current : undefined;
  }, 120_000);
}

/** A mail as an mbox holds it: envelope line, body lines starting with "From " quoted (mboxrd), an empty line after. */
function mboxEntry(mail: string, sender = 'ann@example.com'): string {
  const lines = mail.split('\r\n').map((line) => (/^>*From /.test(line) ? `>${line}` : line));
  return `From ${sender} Mon Jan  1 10:00:00 2024\n${lines.join('\n')}\n`;
}

function mbox(...entries: string[]): string {
  return entries.map((entry) => `${entry}\n`).join('');
}

async function inboundRows(messageIds: string[]) {
  return stack.db
    .selectFrom('inbound_messages')
    .select(['message_id', 'status', 'conversation_id', 'received_via', 'imported', 'rejection_reason', 'text_body'])
    .where('channel_id', '=', team.channel.id)
    .where(
      'message_id',
      'in',
      messageIds.map((id) => `<${id}>`),
    )
    .execute();
}

/** Waits until the conversation's workflow has taken `signals` mails and finished the task after the last. */
async function workflowTookMails(conversationId: string, signals: number) {
  await eventually(async () => {
    const events = (await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory()).events ?? [];
    const signalled = events.flatMap((event, index) =>
      event.workflowExecutionSignaledEventAttributes?.signalName === 'inboundMessage' ? [index] : [],
    );
    const done = events.slice((signalled.at(-1) ?? Infinity) + 1).some((event) => event.workflowTaskCompletedEventAttributes);
    return signalled.length === signals && done ? true : undefined;
  }, 60_000);
}

function tarOf(entries: Array<{ name: string; body?: string; type?: 'file' | 'directory' | 'symlink' }>): Promise<Buffer> {
  const pack = tar.pack();
  for (const entry of entries) {
    if (entry.type === 'directory') pack.entry({ name: entry.name, type: 'directory' });
    else if (entry.type === 'symlink') pack.entry({ name: entry.name, type: 'symlink', linkname: 'cur' });
    else pack.entry({ name: entry.name }, entry.body ?? '');
  }
  pack.finalize();
  return new Promise((resolve, reject) => {
    const parts: Buffer[] = [];
    pack.on('data', (part) => parts.push(part as Buffer));
    pack.on('end', () => resolve(Buffer.concat(parts)));
    pack.on('error', reject);
  });
}

/** Five plain mails from five senders, each carrying its marker in the body. */
function fiveMails(tag: string): { file: string; ids: string[] } {
  const ids = [1, 2, 3, 4, 5].map((n) => `${tag}-${n}@example.com`);
  const entries = ids.map((id, index) =>
    mboxEntry(
      customerMail({ messageId: id, from: `<${tag}${index}@example.com>`, text: `marker ${tag}-${index + 1}` }),
      `${tag}${index}@example.com`,
    ),
  );
  return { file: mbox(...entries), ids };
}

describe('importing an mbox', () => {
  it('threads its mails as history, counts duplicates, broken and oversized mail, and sends nothing to anyone', async () => {
    const first = customerMail({
      messageId: 'mbox-first@example.com',
      subject: 'Invoice',
      text: 'Where is my invoice?\r\nFrom the order page I could not find it.',
    });
    const reply = customerMail({
      messageId: 'mbox-reply@example.com',
      subject: 'Re: Invoice',
      inReplyTo: '<mbox-first@example.com>',
      text: 'Still waiting.',
    });
    const other = customerMail({ messageId: 'mbox-bob@example.com', from: '<bob@example.com>', subject: 'Delivery' });
    const oversized = customerMail({ messageId: 'mbox-big@example.com', subject: 'Scan', text: 'x'.repeat(6000) });
    const file = mbox(
      mboxEntry(first),
      mboxEntry(reply),
      mboxEntry(first), // the same mail again
      mboxEntry('this is not a mail at all\r\njust words'),
      mboxEntry(oversized),
      mboxEntry(other, 'bob@example.com'),
    );

    const uploaded = await upload(file, 'application/mbox');
    expect(uploaded).toMatchObject({
      status: 202,
      body: {
        state: expect.stringMatching(/^(uploaded|running|completed)$/),
        format: 'mbox',
        bytesTotal: Buffer.byteLength(file),
      },
    });
    expect(uploaded.location).toBe(`/v1/channels/${team.channel.id}/imports/${uploaded.body.id}`);
    const done = await waitForEnd(uploaded.body.id);
    expect(done).toMatchObject({
      state: 'completed',
      bytesProcessed: Buffer.byteLength(file),
      mails: { imported: 3, duplicates: 1, rejected: 2, skipped: 0 },
      failureReason: null,
      startedAt: expect.any(String),
      finishedAt: expect.any(String),
    });

    const rows = await inboundRows([
      'mbox-first@example.com',
      'mbox-reply@example.com',
      'mbox-bob@example.com',
      'mbox-big@example.com',
    ]);
    const byId = new Map(rows.map((row) => [row.message_id, row]));
    expect(rows.every((row) => row.received_via === 'import' && row.imported)).toBe(true);
    const ann = byId.get('<mbox-first@example.com>')!;
    expect(ann.status).toBe('threaded');
    // The mboxrd quoting is undone for the text; the envelope line is not part of it.
    expect(ann.text_body).toContain('From the order page');
    expect(ann.text_body).not.toContain('>From');
    expect(byId.get('<mbox-reply@example.com>')).toMatchObject({ status: 'threaded', conversation_id: ann.conversation_id });
    const bob = byId.get('<mbox-bob@example.com>')!;
    expect(bob.conversation_id).not.toBe(ann.conversation_id);
    expect(byId.get('<mbox-big@example.com>')).toMatchObject({
      status: 'rejected',
      rejection_reason: expect.stringContaining('too large'),
    });
    const notMail = await stack.db
      .selectFrom('inbound_messages')
      .select(['status', 'rejection_reason'])
      .where('channel_id', '=', team.channel.id)
      .where('received_via', '=', 'import')
      .where('message_id', 'like', '%not-mime.invalid>')
      .execute();
    expect(notMail).toEqual([{ status: 'rejected', rejection_reason: expect.any(String) }]);

    // Every conversation has had its mail; then a mail through the forwarder is greeted, and only that one.
    await workflowTookMails(ann.conversation_id!, 2);
    await workflowTookMails(bob.conversation_id!, 1);
    const live = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: 'live@example.com', from: '<carol@example.com>' }),
    );
    expect(live.status).toBe(202);
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('carol@example.com'));
    expect(stack.capture.mails.map((mail) => mail.envelope.to)).toEqual([['carol@example.com']]);

    // The Temporal UI says the same in words, and the stored export is gone.
    const metadata = (await stack.temporal.workflow
      .getHandle(mailboxImportWorkflowId(uploaded.body.id))
      .query('__temporal_workflow_metadata')) as { currentDetails: string };
    expect(metadata.currentDetails).toBe('Completed: 3 imported, 1 duplicates, 2 rejected');
    const pieces = await stack.db
      .selectFrom('mailbox_import_pieces')
      .select('position')
      .where('import_id', '=', uploaded.body.id)
      .execute();
    expect(pieces).toEqual([]);
  }, 180_000);

  it('reports its progress while it runs', async () => {
    const { file, ids } = fiveMails('progress');
    const hold = control.holdAt('marker progress-3');
    const uploaded = await upload(file, 'application/mbox');
    await hold.reached;
    const during = await importOf(uploaded.body.id);
    expect(during).toMatchObject({ state: 'running', mails: { imported: 2, duplicates: 0, rejected: 0 } });
    expect(during.bytesProcessed).toBeGreaterThan(0);
    expect(during.bytesProcessed).toBeLessThan(during.bytesTotal);
    const listed = await callApi(stack.api.url, adminKey, 'GET', `/v1/channels/${team.channel.id}/imports?limit=1`);
    expect(listed.body.data).toEqual([during]);
    // The Temporal UI says the same in words.
    const percent = Math.floor((during.bytesProcessed / during.bytesTotal) * 100);
    const metadata = (await stack.temporal.workflow
      .getHandle(mailboxImportWorkflowId(uploaded.body.id))
      .query('__temporal_workflow_metadata')) as { currentDetails: string };
    expect(metadata.currentDetails).toBe(
      `Importing: ${percent}% of ${during.bytesTotal} bytes read; 2 imported, 0 duplicates, 0 rejected`,
    );
    hold.release();
    expect(await waitForEnd(uploaded.body.id)).toMatchObject({ state: 'completed', mails: { imported: 5 } });
    expect(await inboundRows(ids)).toHaveLength(5);
  }, 180_000);

  it('stops between two mails when cancelled, keeping what it imported', async () => {
    const { file, ids } = fiveMails('cancel');
    const hold = control.holdAt('marker cancel-2');
    const uploaded = await upload(file, 'application/mbox');
    await hold.reached;
    const cancelling = await callApi(
      stack.api.url,
      adminKey,
      'DELETE',
      `/v1/channels/${team.channel.id}/imports/${uploaded.body.id}`,
    );
    expect(cancelling).toMatchObject({ status: 202, body: { state: 'running', cancelRequested: true } });
    hold.release();
    expect(await waitForEnd(uploaded.body.id)).toMatchObject({ state: 'cancelled', mails: { imported: 2 } });
    expect((await inboundRows(ids)).map((row) => row.message_id).sort()).toEqual([`<${ids[0]}>`, `<${ids[1]}>`]);
    const again = await callApi(
      stack.api.url,
      adminKey,
      'POST',
      `/v1/channels/${team.channel.id}/imports/${uploaded.body.id}/cancel`,
    );
    expect(again).toMatchObject({ status: 409, body: { detail: 'its state is cancelled' } });
  }, 180_000);

  it('resumes after an attempt dies with the mail in hand stored: nothing twice, nothing lost', async () => {
    const { file, ids } = fiveMails('resume');
    control.failOnceAfter('marker resume-3');
    const done = await importToTheEnd(file, 'application/mbox');
    expect(done).toMatchObject({ state: 'completed', mails: { imported: 5, duplicates: 0, rejected: 0 } });
    const rows = await inboundRows(ids);
    expect(rows.map((row) => row.message_id).sort()).toEqual(ids.map((id) => `<${id}>`).sort());
    expect(new Set(rows.map((row) => row.conversation_id)).size).toBe(5);
    // The activity did run a second attempt, which went on from the mail in hand.
    const history = await stack.temporal.workflow.getHandle(mailboxImportWorkflowId(done.id)).fetchHistory();
    const attempts = (history.events ?? []).flatMap((event) => event.activityTaskStartedEventAttributes?.attempt ?? []);
    expect(Math.max(...attempts)).toBe(2);
    for (const row of rows) await workflowTookMails(row.conversation_id!, 1);
  }, 180_000);

  it('takes a gzipped mbox (Content-Encoding), and a gzip whose content it recognises', async () => {
    const { file, ids } = fiveMails('gzipped');
    const encoded = await importToTheEnd(gzipSync(file), 'application/mbox', { 'content-encoding': 'gzip' });
    expect(encoded).toMatchObject({ state: 'completed', format: 'mbox', compressed: true, mails: { imported: 5 } });
    const recognised = await importToTheEnd(gzipSync(file), 'application/gzip');
    expect(recognised).toMatchObject({ state: 'completed', format: 'mbox', mails: { imported: 0, duplicates: 5 } });
    expect(await inboundRows(ids)).toHaveLength(5);
  }, 180_000);
});

describe('importing a Maildir as tar', () => {
  const maildir = (tag: string) =>
    tarOf([
      { name: 'Maildir/', type: 'directory' },
      { name: 'Maildir/cur/', type: 'directory' },
      {
        name: 'Maildir/cur/1700000001.M1.host:2,S',
        body: customerMail({ messageId: `${tag}-cur@example.com`, from: `<${tag}a@example.com>` }),
      },
      {
        name: 'Maildir/new/1700000002.M2.host',
        body: customerMail({ messageId: `${tag}-new@example.com`, from: `<${tag}b@example.com>` }),
      },
      { name: 'Maildir/tmp/1700000003.M3.host', body: customerMail({ messageId: `${tag}-tmp@example.com` }) },
      { name: 'Maildir/dovecot-uidlist', body: '3 V1700000000 N4\n' },
      {
        name: 'Maildir/.Sent/cur/1700000004.M4.host:2,S',
        body: customerMail({ messageId: `${tag}-sent@example.com`, from: `<${tag}c@example.com>` }),
      },
      { name: 'Maildir/.Sent/link', type: 'symlink' },
    ]);

  it('imports the mails under cur/ and new/, of Maildir++ folders too, and counts the other entries', async () => {
    const done = await importToTheEnd(await maildir('tar'), 'application/x-tar');
    expect(done).toMatchObject({
      state: 'completed',
      format: 'maildir',
      mails: { imported: 3, duplicates: 0, rejected: 0, skipped: 3 },
    });
    const rows = await inboundRows(['tar-cur@example.com', 'tar-new@example.com', 'tar-sent@example.com', 'tar-tmp@example.com']);
    expect(rows.map((row) => row.message_id).sort()).toEqual([
      '<tar-cur@example.com>',
      '<tar-new@example.com>',
      '<tar-sent@example.com>',
    ]);
    expect(rows.every((row) => row.status === 'threaded' && row.imported)).toBe(true);
  }, 180_000);

  it('resumes after an attempt dies at the entry after the one in hand, as uploaded and gzipped', async () => {
    control.failOnceAfter('resume-tar-new@example.com');
    const plain = await importToTheEnd(await maildir('resume-tar'), 'application/x-tar');
    expect(plain).toMatchObject({ state: 'completed', mails: { imported: 3, duplicates: 0, rejected: 0, skipped: 3 } });
    control.failOnceAfter('resume-tgz-new@example.com');
    const gzipped = await importToTheEnd(gzipSync(await maildir('resume-tgz')), 'application/gzip');
    expect(gzipped).toMatchObject({ state: 'completed', mails: { imported: 3, duplicates: 0, rejected: 0, skipped: 3 } });
    for (const done of [plain, gzipped]) {
      const history = await stack.temporal.workflow.getHandle(mailboxImportWorkflowId(done.id)).fetchHistory();
      const attempts = (history.events ?? []).flatMap((event) => event.activityTaskStartedEventAttributes?.attempt ?? []);
      expect(Math.max(...attempts)).toBe(2);
    }
    const rows = await inboundRows(
      ['cur', 'new', 'sent'].flatMap((kind) => [`resume-tar-${kind}@example.com`, `resume-tgz-${kind}@example.com`]),
    );
    expect(rows).toHaveLength(6);
  }, 180_000);

  it('imports it gzipped, recognised as a tar', async () => {
    const done = await importToTheEnd(gzipSync(await maildir('tgz')), 'application/gzip');
    expect(done).toMatchObject({ state: 'completed', format: 'maildir', compressed: true, mails: { imported: 3, skipped: 3 } });
  }, 180_000);
});

describe('hostile exports', () => {
  it('fails an upload that is not an mbox at all, naming why', async () => {
    const done = await importToTheEnd('Dear support,\nthis is a letter, not an mbox.\n', 'application/mbox');
    expect(done).toMatchObject({ state: 'failed', failureReason: 'not an mbox: it does not begin with a "From " line' });
    const notTar = await importToTheEnd('From a\nnot a tar\n', 'application/x-tar');
    expect(notTar).toMatchObject({ state: 'failed', failureReason: expect.stringContaining('not a tar archive') });
    const neither = await importToTheEnd(
      gzipSync('just text, gzipped, long enough to be looked at. '.repeat(20)),
      'application/gzip',
    );
    expect(neither).toMatchObject({ state: 'failed', failureReason: expect.stringContaining('neither an mbox') });
  }, 180_000);

  it('stops a gzip bomb with the bytes it unpacked', async () => {
    const bomb = gzipSync(
      Buffer.concat([Buffer.from('From bomb@example.com\nSubject: boom\n\n'), Buffer.alloc(64 * 1024 * 1024, 0x61)]),
    );
    const done = await importToTheEnd(bomb, 'application/gzip');
    expect(done).toMatchObject({
      state: 'failed',
      failureReason: expect.stringMatching(
        /^the export unpacks to more than \d+ bytes \(stopped after \d+ unpacked bytes\): refused as a decompression bomb$/,
      ),
      mails: { imported: 0 },
    });
  }, 180_000);

  it('reports a "mail" of many MiB without a line break, never stores it, and imports the mail after it', async () => {
    const huge = `From flood@example.com Mon Jan  1 10:00:00 2024\n${'a'.repeat(3 * 1024 * 1024)}\n`;
    const after = mboxEntry(
      customerMail({ messageId: 'after-flood@example.com', from: '<dave@example.com>' }),
      'dave@example.com',
    );
    const done = await importToTheEnd(mbox(huge, after), 'application/mbox');
    expect(done).toMatchObject({
      state: 'completed',
      mails: { imported: 1, rejected: 1 },
      notImported: [
        {
          offset: 0,
          sizeBytes: huge.length,
          messageId: null,
          reason: `too large: ${huge.length} bytes, Mailroom takes mails up to 1048576 bytes; not stored`,
        },
      ],
    });
    expect(await inboundRows(['after-flood@example.com'])).toHaveLength(1);
  }, 180_000);

  it('imports mail with NUL bytes in its Message-ID or References: keyed by its hash, the reference left out', async () => {
    const nulId = 'From: <nul@example.com>\r\nMessage-ID: <nul\0id@example.com>\r\nSubject: x\r\n\r\nbody';
    const nulReference = customerMail({ messageId: 'nul-ref@example.com', inReplyTo: '<ref\0x@example.com>' });
    const good = customerMail({ messageId: 'after-nul@example.com', from: '<frank@example.com>' });
    const done = await importToTheEnd(mbox(mboxEntry(nulId), mboxEntry(nulReference), mboxEntry(good)), 'application/mbox');
    expect(done).toMatchObject({ state: 'completed', mails: { imported: 3, rejected: 0 }, notImported: [] });
    const rows = await inboundRows(['nul-ref@example.com', 'after-nul@example.com']);
    expect(rows).toMatchObject([{ status: 'threaded' }, { status: 'threaded' }]);
    const hashed = await stack.db
      .selectFrom('inbound_messages')
      .select(['message_id', 'status'])
      .where('channel_id', '=', team.channel.id)
      .where('from_address', '=', 'nul@example.com')
      .executeTakeFirstOrThrow();
    expect(hashed).toMatchObject({ status: 'threaded', message_id: expect.stringMatching(/@synthetic\.mailroom\.invalid>$/) });
  }, 180_000);

  it('counts thousands of tiny entries that are no mail and imports the mail among them', async () => {
    const junk = Array.from({ length: 3000 }, (_, index) => ({ name: `junk/${index}`, body: 'x' }));
    const file = await tarOf([
      ...junk,
      { name: 'cur/1', body: customerMail({ messageId: 'among-junk@example.com', from: '<erin@example.com>' }) },
    ]);
    const done = await importToTheEnd(file, 'application/x-tar');
    expect(done).toMatchObject({ state: 'completed', mails: { imported: 1, skipped: 3000 } });
  }, 180_000);

  it('answers 413 over the upload limit and keeps nothing of it', async () => {
    const url = `${stack.api.url}/v1/channels/${team.channel.id}/imports`;
    const endless = await postEndlessBody(
      url,
      { authorization: `Bearer ${adminKey}`, 'content-type': 'application/mbox' },
      4 * MAX_IMPORT_BYTES,
    );
    expect(endless).toMatchObject({ status: 413, contentType: 'application/problem+json' });
    const declared = await fetch(url, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${adminKey}`,
        'content-type': 'application/mbox',
        'content-length': String(MAX_IMPORT_BYTES + 1),
      },
      body: new Uint8Array(MAX_IMPORT_BYTES + 1),
    });
    expect(declared.status).toBe(413);
    expect(((await declared.json()) as any).detail).toBe(
      `the limit is ${MAX_IMPORT_BYTES} bytes (MAX_IMPORT_BYTES); nothing was kept`,
    );
    const uploading = await stack.db.selectFrom('mailbox_imports').select('id').where('state', '=', 'uploading').execute();
    expect(uploading).toEqual([]);
    const pieces = await stack.db
      .selectFrom('mailbox_import_pieces as p')
      .leftJoin('mailbox_imports as i', 'i.id', 'p.import_id')
      .select('p.import_id')
      .where((eb) => eb.or([eb('i.id', 'is', null), eb('i.state', 'in', ['completed', 'failed', 'cancelled'])]))
      .execute();
    expect(pieces).toEqual([]);
  }, 180_000);

  it('answers 503 when Temporal is away, and keeps nothing of the upload', async () => {
    const temporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${await freePort()}` }) });
    const away = await startApiServer(
      {
        db: stack.db,
        temporal,
        ingest: createIngest({ db: stack.db, temporal, taskQueue: stack.taskQueue }),
        config: {
          SECRET_KEY: TEST_SECRET_KEY,
          MAX_INBOUND_BYTES: 1024 * 1024,
          PUBLIC_URL: 'http://unused',
          INBOUND_DOMAIN: 'inbound.mailroom.test',
        },
        logger: createLogger('silent'),
        taskQueue: stack.taskQueue,
      },
      { port: 0, host: '127.0.0.1' },
    );
    try {
      const before = await stack.db.selectFrom('mailbox_imports').select('id').execute();
      const response = await fetch(`${away.url}/v1/channels/${team.channel.id}/imports`, {
        method: 'POST',
        headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/mbox' },
        body: fiveMails('away').file,
      });
      expect(response.status).toBe(503);
      expect(await response.json()).toMatchObject({ detail: 'the upload was not kept; upload the export again' });
      expect(await stack.db.selectFrom('mailbox_imports').select('id').execute()).toEqual(before);
    } finally {
      await away.close();
      await temporal.connection.close();
    }
  }, 60_000);

  it("forgets an upload cut off a day ago with its pieces, in the mail reconciler's pass, and no other", async () => {
    const upload = async (state: 'uploading' | 'completed', age: string) => {
      const id = randomUUID();
      await stack.db
        .insertInto('mailbox_imports')
        .values({
          id,
          account_id: team.account.id,
          channel_id: team.channel.id,
          state,
          format: 'mbox',
          compressed: false,
          not_imported: '[]',
          created_at: sql<Date>`now() - ${age}::interval`,
        })
        .execute();
      await stack.db
        .insertInto('mailbox_import_pieces')
        .values({ import_id: id, position: 0, data: Buffer.from('From a\n') })
        .execute();
      return id;
    };
    const cutOff = await upload('uploading', '25 hours');
    const stillArriving = await upload('uploading', '23 hours');
    const ended = await upload('completed', '3 days');
    const { resumeStalledMail } = createReconcileActivities({
      db: stack.db,
      ingest: createIngest({ db: stack.db, temporal: stack.temporal, taskQueue: stack.taskQueue }),
    });
    await new MockActivityEnvironment(undefined, { logger: new DefaultLogger('ERROR') }).run(resumeStalledMail, { graceMs: 0 });
    const left = await stack.db
      .selectFrom('mailbox_imports as i')
      .leftJoin('mailbox_import_pieces as p', 'p.import_id', 'i.id')
      .select(['i.id', 'p.position'])
      .where('i.id', 'in', [cutOff, stillArriving, ended])
      .execute();
    expect(left.sort((x, y) => x.id.localeCompare(y.id))).toEqual(
      [
        { id: stillArriving, position: 0 },
        { id: ended, position: 0 },
      ].sort((x, y) => x.id.localeCompare(y.id)),
    );
    const orphans = await stack.db
      .selectFrom('mailbox_import_pieces')
      .select('import_id')
      .where('import_id', '=', cutOff)
      .execute();
    expect(orphans).toEqual([]);
    await stack.db.deleteFrom('mailbox_imports').where('id', 'in', [stillArriving, ended]).execute();
  });

  it('runs at most three imports of an account at once, and says so', async () => {
    const account = await createAccount(stack.db, 'Busy');
    const admin = await createUser(stack.db, {
      accountId: account.id,
      name: 'Busy Admin',
      email: 'admin@busy.example',
      role: 'admin',
    });
    const key = (await createApiKey(stack.db, admin.id, 'admin')).key;
    const channel = await createChannel(stack.db, { accountId: account.id, name: 'Busy', emailAddress: 'support@busy.example' });
    await stack.db
      .insertInto('mailbox_imports')
      .values(
        (['uploading', 'uploaded', 'running'] as const).map((state) => ({
          id: randomUUID(),
          account_id: account.id,
          channel_id: channel.id,
          state,
          format: 'mbox' as const,
          compressed: false,
          not_imported: '[]',
        })),
      )
      .execute();
    const response = await fetch(`${stack.api.url}/v1/channels/${channel.id}/imports`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/mbox' },
      body: fiveMails('busy').file,
    });
    expect(response.status).toBe(409);
    expect(await response.json()).toMatchObject({
      detail: 'at most 3 imports of an account run at once; wait for one to end, or cancel one',
    });
    // Another account's imports are not held back by these.
    const ours = await importToTheEnd(fiveMails('not-busy').file, 'application/mbox');
    expect(ours).toMatchObject({ state: 'completed', mails: { imported: 5 } });
  }, 180_000);

  it('refuses other media types, anyone but an admin, and other methods', async () => {
    expect(await upload('From a\n', 'text/plain')).toMatchObject({ status: 415, body: { title: 'Not a mailbox export type' } });
    expect(await upload('From a\n', 'application/mbox', { 'content-encoding': 'br' })).toMatchObject({ status: 415 });
    const byAgent = await fetch(`${stack.api.url}/v1/channels/${team.channel.id}/imports`, {
      method: 'POST',
      headers: { authorization: `Bearer ${agentKey}`, 'content-type': 'application/mbox' },
      body: 'From a\n',
    });
    expect(byAgent.status).toBe(403);
    const list = await callApi(stack.api.url, agentKey, 'GET', `/v1/channels/${team.channel.id}/imports`);
    expect(list.status).toBe(403);
    const anonymous = await fetch(`${stack.api.url}/v1/channels/${team.channel.id}/imports`, {
      method: 'POST',
      headers: { 'content-type': 'application/mbox' },
      body: 'From a\n',
    });
    expect(anonymous.status).toBe(401);
    const put = await fetch(`${stack.api.url}/v1/channels/${team.channel.id}/imports`, {
      method: 'PUT',
      headers: { authorization: `Bearer ${adminKey}`, 'content-type': 'application/mbox' },
      body: 'From a\n',
    });
    expect(put).toMatchObject({ status: 405 });
    expect(put.headers.get('allow')).toBe('GET, POST');
  });
});
