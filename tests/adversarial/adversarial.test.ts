import { createTransport } from 'nodemailer';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { createSmtpReceiver, type SmtpReceiver } from '../../src/receiver/smtp-receiver.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually } from '../support/http.js';
import { appendMail } from '../support/imap.js';
import { seedSupportTeam, startTestStack, TEST_INBOUND_DOMAIN, type TestStack } from '../support/stack.js';
import {
  ADVERSARIAL_CHANNEL,
  adversarialCorpus,
  BOUNCED_CUSTOMER,
  largeOrdinaryMail,
  ordinaryMail,
  type Expected,
} from './corpus.js';

// Issue 9's "done when": every hostile mail of the corpus, posted through the real forwarder endpoint (PostgreSQL, the
// Temporal dev server, the worker, the SMTP sink), is stored or refused as its case says, with the reason; automatic
// mail goes to the one sender, if anyone; and none of them keeps the ordinary mail behind it from being greeted.
// Then every case again over SMTP to the SMTP receiver (the answer an MTA gets: 250, 552 or 554 with the reason), a
// subset through IMAP on a real Dovecot, and a burst of concurrent posts against the bounded parser queue.

type Stack = TestStack;
type Team = Awaited<ReturnType<typeof seedSupportTeam>>;

interface Answer {
  status: number;
  contentType: string | null;
  retryAfter: string | null;
  body: any;
}

/** POSTs raw mail to the channel's forwarder endpoint and reads the whole answer. */
async function postRaw(stack: Stack, channel: Team['channel'], raw: Buffer): Promise<Answer> {
  const response = await fetch(`${stack.api.url}/v1/channels/${channel.id}/inbound`, {
    method: 'POST',
    headers: { authorization: `Bearer ${channel.forwarderSecret}`, 'content-type': 'message/rfc822' },
    body: new Uint8Array(raw),
  });
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    retryAfter: response.headers.get('retry-after'),
    body: text ? JSON.parse(text) : undefined,
  };
}

const describeExpected = (expected: Expected) =>
  expected.outcome === 'refused'
    ? `refused ${expected.status}${expected.kept ? ', kept raw' : ''}`
    : `stored (${[expected.verdict, expected.classification].filter((word) => word !== 'ordinary').join(', ') || 'ordinary'}), ` +
      (expected.automaticMail.kind === 'greeting' ? `greeting to ${expected.sender} only` : 'no automatic mail');

describe('the adversarial corpus', () => {
  let stack: Stack;
  let team: Team;
  const corpus = adversarialCorpus();

  /** A team whose channel trusts the corpus's receiving server, has its size limit, and greets everyone (no flood limits in the way). */
  async function adversarialTeam(name: string, options: { greeting: boolean }) {
    const seeded = await seedSupportTeam(stack.db, {
      name,
      emailAddress: ADVERSARIAL_CHANNEL.emailAddress,
      greeting: options.greeting ? { text: 'Thanks for writing!' } : null,
    });
    const configured = await callApi(stack.api.url, seeded.admin.apiKey, 'PATCH', `/v1/channels/${seeded.channel.id}`, {
      senders: { trustedAuthservIds: [ADVERSARIAL_CHANNEL.trustedAuthservId] },
      limits: {
        maxInboundBytes: ADVERSARIAL_CHANNEL.maxInboundBytes,
        automaticMailLimitPerDomainPerHour: 100_000,
        automaticMailLimitPerChannelPerHour: 1_000_000,
      },
    });
    expect(configured.status).toBe(200);
    return seeded;
  }

  const rowsOf = (channelId: string) =>
    stack.db.selectFrom('inbound_messages').selectAll().where('channel_id', '=', channelId).execute();

  const eventsOf = (conversationId: string) =>
    stack.db
      .selectFrom('conversation_events')
      .select(['type', 'data'])
      .where('conversation_id', '=', conversationId)
      .orderBy('created_at')
      .execute();

  const outboundOf = (conversationId: string) =>
    stack.db.selectFrom('outbound_messages').selectAll().where('conversation_id', '=', conversationId).execute();

  /** Resolves once the conversation's workflow has finished triage: ended in the spam stage, or routed to people. */
  async function triaged(conversationId: string, spam: boolean) {
    if (spam) {
      const outcome = await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).result();
      expect(outcome).toEqual({ conversationId, stage: 'spam' });
      return;
    }
    await eventually(async () => ((await eventsOf(conversationId)).some((event) => event.type === 'routed') ? true : undefined));
  }

  /** The greeting of the conversation once it went out: one outbound row, to `recipient`. */
  async function greetingTo(conversationId: string, recipient: string) {
    const sent = await eventually(async () => {
      const rows = await outboundOf(conversationId);
      return rows.length > 0 && rows.every((row) => row.sent_at) ? rows : undefined;
    });
    expect(sent.map((row) => [row.kind, row.to_address])).toEqual([['greeting', recipient]]);
  }

  /** Posts an ordinary mail and waits for its greeting: the hostile mail before it held nothing up. */
  async function ordinaryMailIsGreeted(channel: Team['channel'], n: number) {
    const probe = ordinaryMail(n);
    const answer = await postRaw(stack, channel, probe.raw);
    expect(answer.status).toBe(202);
    await greetingTo(answer.body.conversationId, probe.sender);
    return { ...probe, conversationId: answer.body.conversationId as string };
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await adversarialTeam('Acme Support', { greeting: true });
  }, 300_000);

  afterAll(async () => {
    await stack?.stop();
  });

  describe('through the forwarder endpoint, each followed by an ordinary mail', () => {
    /** Conversations seen so far: every stored hostile mail must start one of its own. */
    const conversations = new Set<string>();

    it('holds at least one case of each kind the issue names, each generated with a unique name', () => {
      const names = corpus.map((c) => c.name);
      expect(new Set(names).size).toBe(names.length);
      const outcomes = corpus.map((c) =>
        c.expected.outcome === 'refused' ? `refused ${c.expected.status}` : `${c.expected.verdict} ${c.expected.classification}`,
      );
      expect(new Set(outcomes)).toEqual(
        new Set(['refused 400', 'refused 413', 'ordinary ordinary', 'ordinary bounce', 'spam ordinary', 'unverified ordinary']),
      );
      expect(corpus.length).toBeGreaterThanOrEqual(35);
    });

    corpus.forEach((hostile, index) => {
      it(`${hostile.name}: ${hostile.description} → ${describeExpected(hostile.expected)}`, async () => {
        const mailsBefore = stack.capture.mails.length;
        const greetedBefore: string[] = [];
        for (const before of hostile.before ?? []) {
          const answer = await postRaw(stack, team.channel, before);
          expect(answer.status).toBe(202);
          conversations.add(answer.body.conversationId);
          const row = await stack.db
            .selectFrom('inbound_messages')
            .select('from_address')
            .where('id', '=', answer.body.inboundMessageId)
            .executeTakeFirstOrThrow();
          await greetingTo(answer.body.conversationId, row.from_address!);
          greetedBefore.push(row.from_address!);
        }
        const rowsBefore = (await rowsOf(team.channel.id)).length;

        const answer = await postRaw(stack, team.channel, hostile.raw);
        const expected = hostile.expected;
        if (expected.outcome === 'refused') {
          expect(answer.status).toBe(expected.status);
          expect(answer.contentType).toMatch(/^application\/problem\+json/);
          expect(answer.body.type).toBe(`https://mailroom.dev/problems/${expected.problem}`);
          expect(answer.body.detail).toMatch(expected.reason);
          const rows = await rowsOf(team.channel.id);
          if (expected.kept) {
            const keptAs = /the bytes are kept as inbound message ([0-9a-f-]{36})/.exec(answer.body.detail)?.[1];
            const row = rows.find((r) => r.id === keptAs);
            expect(row).toMatchObject({ status: 'rejected', conversation_id: null, size_bytes: hostile.raw.length });
            expect(row!.rejection_reason).toMatch(expected.reason);
            expect(Buffer.from(row!.raw!).equals(hostile.raw)).toBe(true);
            expect(rows).toHaveLength(rowsBefore + 1);
            // Delivered again, it is the same quarantined mail.
            const again = await postRaw(stack, team.channel, hostile.raw);
            expect(again.status).toBe(expected.status);
            expect(again.body.detail).toContain(`inbound message ${keptAs}`);
          } else {
            expect(rows).toHaveLength(rowsBefore);
          }
        } else {
          expect(answer.status).toBe(202);
          expect(answer.body.duplicate).toBe(false);
          const conversationId: string = answer.body.conversationId;
          expect(conversations.has(conversationId)).toBe(false);
          conversations.add(conversationId);
          const row = await stack.db
            .selectFrom('inbound_messages')
            .selectAll()
            .where('id', '=', answer.body.inboundMessageId)
            .executeTakeFirstOrThrow();
          expect(row).toMatchObject({
            status: 'threaded',
            conversation_id: conversationId,
            from_address: expected.sender,
            classification: expected.classification,
            sender_verdict: expected.verdict,
          });
          expect(Buffer.from(row.raw!).equals(hostile.raw)).toBe(true);
          const spam = expected.verdict === 'spam';
          await triaged(conversationId, spam);
          const conversation = await stack.db
            .selectFrom('conversations as c')
            .innerJoin('contacts as ct', 'ct.id', 'c.contact_id')
            .select(['c.status', 'c.stage', 'ct.email'])
            .where('c.id', '=', conversationId)
            .executeTakeFirstOrThrow();
          expect(conversation.email).toBe(expected.sender);
          expect(conversation.status).toBe(spam ? 'spam' : 'open');
          if (spam) expect(conversation.stage).toBe('spam');
          expect(
            await stack.db.selectFrom('inbound_messages').select('id').where('conversation_id', '=', conversationId).execute(),
          ).toHaveLength(1);

          const suppressed = (await eventsOf(conversationId)).filter((event) => event.type === 'automatic_mail_suppressed');
          if (expected.automaticMail.kind === 'greeting') {
            await greetingTo(conversationId, expected.sender);
          } else {
            expect(await outboundOf(conversationId)).toEqual([]);
          }
          if (expected.automaticMail.kind === 'suppressed') {
            expect(suppressed.map((event) => event.data)).toEqual([
              { kind: 'greeting', reason: expect.stringMatching(expected.automaticMail.reason) },
            ]);
          } else {
            expect(suppressed).toEqual([]);
          }
          // Delivered again, nothing new.
          const again = await postRaw(stack, team.channel, hostile.raw);
          expect(again).toMatchObject({ status: 202, body: { ...answer.body, duplicate: true } });
        }

        const probe = await ordinaryMailIsGreeted(team.channel, index);
        // What reached the SMTP sink meanwhile: one envelope recipient each, the case's sender (if greeted) and the others'.
        const greeted = expected.outcome === 'stored' && expected.automaticMail.kind === 'greeting' ? [expected.sender] : [];
        expect(
          stack.capture.mails
            .slice(mailsBefore)
            .map((mail) => mail.envelope.to)
            .sort(),
        ).toEqual([...greetedBefore, ...greeted, probe.sender].map((address) => [address]).sort());
      });
    });
  });

  describe('through the SMTP receiver: each delivered to the forwarding address, then an ordinary mail', () => {
    const forwarding = `support@acme-smtp.${TEST_INBOUND_DOMAIN}`;
    let smtpTeam: Team;
    let receiver: SmtpReceiver;
    let port: number;

    beforeAll(async () => {
      smtpTeam = await adversarialTeam('Acme SMTP', { greeting: true });
      const set = await callApi(
        stack.api.url,
        smtpTeam.admin.apiKey,
        'PUT',
        `/v1/channels/${smtpTeam.channel.id}/forwarding-address`,
        {
          username: 'support',
          subdomain: 'acme-smtp',
        },
      );
      expect(set.status).toBe(200);
      receiver = createSmtpReceiver({
        db: stack.db,
        ingest: createIngest({
          db: stack.db,
          temporal: stack.temporal,
          taskQueue: stack.taskQueue,
          inboundDomain: TEST_INBOUND_DOMAIN,
        }),
        logger: createLogger('silent'),
        inboundDomain: TEST_INBOUND_DOMAIN,
        maxInboundBytes: 1024 * 1024,
        perChannelPerMinute: 0,
        maxClients: 20,
        maxRecipients: 5,
        maxBadRecipients: 3,
        socketTimeoutMs: 60_000,
        maxBufferedBytes: 64 * 1024 * 1024,
        closeTimeoutMs: 1_000,
      });
      ({ port } = await receiver.listen(0, '127.0.0.1'));
    });

    afterAll(async () => {
      await receiver?.close();
    });

    /** One SMTP transaction as an MTA makes it (nodemailer); the final answer, 250 or the refusal. */
    async function deliver(raw: Buffer): Promise<string> {
      const transport = createTransport({ host: '127.0.0.1', port, secure: false, ignoreTLS: true });
      try {
        return (await transport.sendMail({ envelope: { from: 'mta@relay.example', to: [forwarding] }, raw })).response;
      } catch (error) {
        return (error as { response?: string }).response ?? String(error);
      } finally {
        transport.close();
      }
    }

    corpus.forEach((hostile, index) => {
      const expected = hostile.expected;
      const answers =
        expected.outcome === 'stored'
          ? '250, stored'
          : expected.status === 413
            ? '552, nothing kept'
            : '554 5.6.0 with the reason, kept';
      it(`${hostile.name} → ${answers}; the ordinary mail after it is greeted`, async () => {
        for (const before of hostile.before ?? []) expect(await deliver(before)).toMatch(/^250 /);
        const rowsBefore = await rowsOf(smtpTeam.channel.id);
        const answer = await deliver(hostile.raw);
        const rows = await rowsOf(smtpTeam.channel.id);
        const added = rows.filter((row) => !rowsBefore.some((before) => before.id === row.id));
        if (expected.outcome === 'stored') {
          expect(answer).toMatch(/^250 2\.0\.0 OK: stored as /);
          expect(added).toHaveLength(1);
          expect(added[0]).toMatchObject({
            status: 'threaded',
            received_via: 'smtp',
            from_address: expected.sender,
            classification: expected.classification,
            sender_verdict: expected.verdict,
          });
        } else if (expected.status === 413) {
          expect(answer).toMatch(/^552 5\.3\.4 /);
          expect(added).toEqual([]);
        } else {
          expect(answer).toMatch(/^554 5\.6\.0 The mail cannot be processed: /);
          expect(answer).toMatch(expected.reason);
          expect(added).toHaveLength(1);
          expect(added[0]).toMatchObject({ status: 'rejected', received_via: 'smtp', conversation_id: null });
          expect(added[0]!.rejection_reason).toMatch(expected.reason);
        }

        const probe = ordinaryMail(index, 'smtp-probe');
        expect(await deliver(probe.raw)).toMatch(/^250 /);
        const row = await stack.db
          .selectFrom('inbound_messages')
          .select('conversation_id')
          .where('channel_id', '=', smtpTeam.channel.id)
          .where('message_id', '=', probe.messageId)
          .executeTakeFirstOrThrow();
        await greetingTo(row.conversation_id!, probe.sender);
      });
    });
  });

  describe('through IMAP on a real Dovecot: a subset appended to a synced mailbox, then an ordinary mail', () => {
    const IMAP_SUBSET = [
      'message-id-at-storm-64k',
      'folded-100k-lines',
      'eight-bit-garbage-headers',
      'unterminated-encoded-word-64k',
      'long-lines-without-crlf',
      'from-address-list-in-brackets',
      'to-and-cc-10000-addresses',
      'multipart-nested-120',
      'ten-thousand-parts',
      'over-the-channel-limit',
      'boundary-never-closes',
      'quoted-printable-soft-break-storm',
      'message-rfc822-nested-100',
      'x-spam-flag-yes',
      'dmarc-fail-unenforced',
      'from-the-channel-itself',
    ];
    const subset = IMAP_SUBSET.map((name) => corpus.find((c) => c.name === name)!);
    const account = { user: 'adversary', password: 'adversary-secret' };
    let dovecot: DovecotServer;
    let imapTeam: Team;
    /** Case name → the UID its mail got. */
    const uids = new Map<string, number>();
    let ordinary: ReturnType<typeof ordinaryMail> & { uid: number };
    let imapSettings: Record<string, unknown> | undefined;

    const rowAt = (uid: number) =>
      stack.db
        .selectFrom('inbound_messages')
        .selectAll()
        .where('channel_id', '=', imapTeam.channel.id)
        .where('source_uid', '=', String(uid))
        .executeTakeFirst();

    beforeAll(async () => {
      dovecot = await startDovecot({ users: [account] });
      imapTeam = await adversarialTeam('Acme IMAP', { greeting: true });
      const admin = (method: string, path: string, body?: unknown) =>
        callApi(stack.api.url, imapTeam.admin.apiKey, method, path, body);
      imapSettings = {
        enabled: true,
        host: dovecot.host,
        port: dovecot.port,
        tls: false,
        username: account.user,
        password: account.password,
      };
      const saved = await admin('PUT', `/v1/channels/${imapTeam.channel.id}/imap`, imapSettings);
      expect(saved.status).toBe(200);
      // The first sync places the cursor at the folder's end; everything appended from now on is new mail.
      await eventually(async () => (await admin('GET', `/v1/channels/${imapTeam.channel.id}/imap`)).body.cursors[0]);
      for (const hostile of subset) {
        uids.set(hostile.name, (await appendMail(dovecot, account, 'INBOX', hostile.raw)).uid);
      }
      const mail = ordinaryMail(1000, 'after-imap');
      ordinary = { ...mail, uid: (await appendMail(dovecot, account, 'INBOX', mail.raw)).uid };
    }, 300_000);

    afterAll(async () => {
      // Switched off first, so that its session does not keep knocking at the stopped server during the next tests.
      if (imapSettings) {
        const off = await callApi(stack.api.url, imapTeam.admin.apiKey, 'PUT', `/v1/channels/${imapTeam.channel.id}/imap`, {
          ...imapSettings,
          enabled: false,
        });
        expect(off.status).toBe(200);
      }
      await dovecot?.stop();
    });

    it('ingests the ordinary mail appended after all of them, greets its sender, and moves the cursor past every one', async () => {
      const row = await eventually(async () => {
        const found = await rowAt(ordinary.uid);
        return found?.signalled_at ? found : undefined;
      }, 240_000);
      expect(row).toMatchObject({ status: 'threaded', received_via: 'imap', from_address: ordinary.sender });
      await greetingTo(row.conversation_id!, ordinary.sender);
      // The session takes several mails at once and moves the cursor in UID order: past the last one once every mail
      // before it is done, which a hostile mail still being quarantined can hold back after the ordinary one is in.
      const lastUid = Math.max(ordinary.uid, ...uids.values());
      const body = await eventually(async () => {
        const read = await callApi(stack.api.url, imapTeam.admin.apiKey, 'GET', `/v1/channels/${imapTeam.channel.id}/imap`);
        return Number(read.body.cursors?.[0]?.lastUid) >= lastUid ? read.body : undefined;
      }, 60_000);
      expect(body.cursors).toEqual([expect.objectContaining({ folder: 'INBOX' })]);
    }, 300_000);

    for (const hostile of subset) {
      const expected = hostile.expected;
      const what =
        expected.outcome === 'stored'
          ? describeExpected(expected)
          : expected.status === 413
            ? 'quarantined by its size without the download'
            : 'quarantined with its bytes and the reason';
      it(`${hostile.name}: ${what}`, async () => {
        // Stored, threaded or quarantined: anything but a mail still on its way.
        const row = await eventually(async () => {
          const found = await rowAt(uids.get(hostile.name)!);
          return found && found.status !== 'received' ? found : undefined;
        }, 240_000);
        expect(row).toMatchObject({ received_via: 'imap', source_folder: 'INBOX', size_bytes: hostile.raw.length });
        if (expected.outcome === 'refused') {
          expect(row.status).toBe('rejected');
          if (expected.status === 413) {
            expect(row.raw).toBeNull();
            expect(row.rejection_reason).toBe(
              `too large: ${hostile.raw.length} bytes, the channel accepts ${ADVERSARIAL_CHANNEL.maxInboundBytes}; not downloaded`,
            );
          } else {
            expect(row.rejection_reason).toMatch(expected.reason);
            expect(Buffer.from(row.raw!).equals(hostile.raw)).toBe(true);
          }
          return;
        }
        expect(row).toMatchObject({
          status: 'threaded',
          from_address: expected.sender,
          classification: expected.classification,
          sender_verdict: expected.verdict,
        });
        expect(Buffer.from(row.raw!).equals(hostile.raw)).toBe(true);
        const conversationId = row.conversation_id!;
        await triaged(conversationId, expected.verdict === 'spam');
        if (expected.automaticMail.kind === 'greeting') await greetingTo(conversationId, expected.sender);
        else expect(await outboundOf(conversationId)).toEqual([]);
      });
    }
  });

  describe('a burst of concurrent forwarder posts', () => {
    const BURST = 150;

    it(`answers ${BURST} concurrent posts of 250 KB mails 202 or 503 with Retry-After; posted again, each is stored once, in a conversation of its own`, async ({
      annotate,
    }) => {
      // No greeting: the burst is about the ingest, not the workflows' mail.
      const burstTeam = await adversarialTeam('Acme Burst', { greeting: false });
      const mails = Array.from({ length: BURST }, (_, n) => largeOrdinaryMail(n));
      const answers: Answer[] = [];
      let busy = 0;
      /** Posts until the mail is accepted, waiting as long as each 503 asks. */
      const deliver = async (raw: Buffer): Promise<Answer> => {
        for (;;) {
          const answer = await postRaw(stack, burstTeam.channel, raw);
          answers.push(answer);
          if (answer.status !== 503 || !/^[1-9]\d*$/.test(answer.retryAfter ?? '')) return answer;
          busy++;
          await new Promise((resolve) => setTimeout(resolve, Number(answer.retryAfter) * 1000));
        }
      };
      const accepted = await Promise.all(mails.map((mail) => deliver(mail.raw)));
      await annotate(`${answers.length} answers to ${BURST} mails, ${busy} of them 503 with Retry-After`);

      expect(answers.filter((answer) => answer.status !== 202 && answer.status !== 503)).toEqual([]);
      for (const answer of answers.filter((a) => a.status === 503)) {
        expect(answer.retryAfter).toMatch(/^[1-9]\d*$/);
        expect(answer.body).toMatchObject({ type: 'https://mailroom.dev/problems/busy' });
      }
      expect(accepted.map((answer) => answer.status)).toEqual(mails.map(() => 202));

      const rows = await stack.db
        .selectFrom('inbound_messages')
        .select(['message_id', 'status', 'conversation_id', 'signalled_at'])
        .where('channel_id', '=', burstTeam.channel.id)
        .execute();
      expect(rows.map((row) => row.message_id).sort()).toEqual(mails.map((mail) => mail.messageId).sort());
      expect(rows.every((row) => row.status === 'threaded' && row.signalled_at !== null)).toBe(true);
      const conversationIds = new Set(rows.map((row) => row.conversation_id));
      expect(conversationIds.size).toBe(BURST);
      expect(new Set(accepted.map((answer) => answer.body.conversationId))).toEqual(conversationIds);
      const conversations = await stack.db
        .selectFrom('conversations')
        .select('id')
        .where('channel_id', '=', burstTeam.channel.id)
        .execute();
      expect(conversations).toHaveLength(BURST);
    }, 600_000);
  });

  it('sent automatic mail to nobody but single senders, each mail in an envelope of one recipient', () => {
    const allowed = new Set([
      ...corpus.flatMap((c) =>
        c.expected.outcome === 'stored' && c.expected.automaticMail.kind === 'greeting' ? [c.expected.sender] : [],
      ),
      ...corpus.map((_, index) => ordinaryMail(index).sender),
      ...corpus.map((_, index) => ordinaryMail(index, 'smtp-probe').sender),
      ordinaryMail(1000, 'after-imap').sender,
      BOUNCED_CUSTOMER.address, // greeted for the mail the forged bounce names
    ]);
    expect(stack.capture.mails.length).toBeGreaterThan(corpus.length);
    for (const mail of stack.capture.mails) {
      expect(mail.envelope.to).toHaveLength(1);
      expect([...allowed]).toContain(mail.envelope.to[0]);
    }
  });
});
