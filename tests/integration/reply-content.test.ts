import { createHash, randomUUID } from 'node:crypto';
import { simpleParser } from 'mailparser';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { sql } from 'kysely';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createAccount, createChannel, createUser } from '../../src/db/seed.js';
import { readAsRecipient } from '../../src/mail/outgoing.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, TEST_INBOUND_DOMAIN, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';

// Issue 12, replies: files (uploaded, and forwarded from the customer's mail), Cc and Bcc (reply-all done right,
// never anyone nobody chose), HTML sanitized with its text derived; the preview equals the mail that arrives.

const INVOICE = Buffer.from('%PDF-1.4\n% the invoice the customer asked for\n'.repeat(50));
const PHOTO = Buffer.from(Array.from({ length: 3000 }, (_, i) => i % 251));

/** A customer mail as a mail client builds it: real MIME, with Cc and attachments. */
async function mimeMail(input: {
  from?: string;
  to?: string;
  cc?: string | string[];
  subject?: string;
  text?: string;
  attachments?: { filename: string; contentType: string; content: Buffer }[];
  inReplyTo?: string;
}): Promise<Buffer> {
  return new MailComposer({
    from: input.from ?? '"Zoë Example" <zoe@example.com>',
    to: input.to ?? 'support@acme.example',
    ...(input.cc ? { cc: input.cc } : {}),
    subject: input.subject ?? 'My parcel',
    messageId: `<${randomUUID()}@example.com>`,
    text: input.text ?? 'My parcel never arrived. Photo attached.',
    ...(input.inReplyTo ? { inReplyTo: input.inReplyTo, references: [input.inReplyTo] } : {}),
    attachments: input.attachments ?? [],
  })
    .compile()
    .build();
}

async function upload(
  apiUrl: string,
  apiKey: string,
  conversationId: string,
  file: { name: string; type: string; bytes: Buffer },
) {
  const form = new FormData();
  form.append('file', new Blob([new Uint8Array(file.bytes)], { type: file.type }), file.name);
  const response = await fetch(`${apiUrl}/v1/conversations/${conversationId}/attachments`, {
    method: 'POST',
    headers: { authorization: `Bearer ${apiKey}` },
    body: form,
  });
  const text = await response.text();
  return {
    status: response.status,
    contentType: response.headers.get('content-type'),
    body: text ? JSON.parse(text) : undefined,
  };
}

describe('what a reply carries', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
    await stack.db
      .updateTable('channels')
      .set({ forwarding_username: 'acme', forwarding_subdomain: 'support' })
      .where('id', '=', team.channel.id)
      .execute();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  const api = (apiKey: string, method: string, path: string, body?: unknown) =>
    callApi(stack.api.url, apiKey, method, path, body);

  async function openConversation(raw: Buffer | string): Promise<string> {
    const posted = await postMail(stack.api.url, team.channel, raw);
    expect(posted.status).toBe(202);
    const conversationId: string = posted.body.conversationId;
    await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    });
    return conversationId;
  }

  it('sends an uploaded file and a forwarded one to the customer and the Cc; the Cc answering threads in and takes part', async () => {
    const conversationId = await openConversation(
      await mimeMail({
        cc: ['"Max Colleague" <max@example.com>', 'support+billing@acme.example'],
        attachments: [{ filename: 'parcel.png', contentType: 'image/png', content: PHOTO }],
      }),
    );
    const [alice] = team.agents;
    const uploaded = await upload(stack.api.url, alice!.apiKey, conversationId, {
      name: 'C:\\fakepath\\..\\invoice\u202e-2026.pdf',
      type: 'application/pdf',
      bytes: INVOICE,
    });
    expect(uploaded.status).toBe(201);
    expect(uploaded.body).toMatchObject({
      filename: 'invoice-2026.pdf',
      contentType: 'application/pdf',
      sizeBytes: INVOICE.length,
    });
    const { body: before } = await api(alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    const customerFile = before.messages[0].attachments[0];
    expect(customerFile).toMatchObject({ filename: 'parcel.png', sizeBytes: PHOTO.length });

    const reply = {
      text: 'Hello Zoë,\n\nthe invoice is attached, and your photo for Max.\n\nAlice',
      attachmentIds: [uploaded.body.id, customerFile.id],
    };
    const preview = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies/preview`, reply);
    expect(preview.status).toBe(200);
    // Reply-all: the Cc the customer chose, without our own +tag address.
    expect(preview.body.cc).toEqual(['max@example.com']);
    expect(preview.body.bcc).toEqual([]);
    expect(preview.body.attachments).toEqual([
      { filename: 'invoice-2026.pdf', contentType: 'application/pdf', sizeBytes: INVOICE.length },
      { filename: 'parcel.png', contentType: 'image/png', sizeBytes: PHOTO.length },
    ]);

    const sent = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, reply);
    expect(sent.status).toBe(201);
    const received = await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId);
    expect([...received.envelope.to].sort()).toEqual(['max@example.com', 'zoe@example.com']);
    const parsed = await simpleParser(received.raw);
    expect(parsed.to && !Array.isArray(parsed.to) ? parsed.to.value.map((a) => a.address) : []).toEqual(['zoe@example.com']);
    expect(parsed.cc && !Array.isArray(parsed.cc) ? parsed.cc.value.map((a) => a.address) : []).toEqual(['max@example.com']);
    expect(parsed.attachments.map((a) => [a.filename, a.contentType])).toEqual([
      ['invoice-2026.pdf', 'application/pdf'],
      ['parcel.png', 'image/png'],
    ]);
    expect(Buffer.compare(parsed.attachments[0]!.content, INVOICE)).toBe(0);
    expect(Buffer.compare(parsed.attachments[1]!.content, PHOTO)).toBe(0);

    // The preview equals the mail that arrived: headers, text, HTML, files.
    const asRead = await readAsRecipient(received.raw);
    expect(asRead.headers).toEqual(preview.body.headers);
    expect(asRead.text).toBe(preview.body.text);
    expect(asRead.html).toBe(preview.body.html);
    expect(asRead.attachments).toEqual(preview.body.attachments);

    // Stored like inbound files: shown on the outbound message, and downloadable.
    const { body: after } = await api(alice!.apiKey, 'GET', `/v1/conversations/${conversationId}`);
    const outbound = after.messages.find((m: { id: string }) => m.id === sent.body.outboundMessageId);
    expect(outbound).toMatchObject({ cc: ['max@example.com'], bcc: [] });
    expect(outbound.attachments.map((a: { filename: string }) => a.filename)).toEqual(['invoice-2026.pdf', 'parcel.png']);
    const download = await fetch(
      `${stack.api.url}/v1/conversations/${conversationId}/attachments/${outbound.attachments[1].id}`,
      {
        headers: { authorization: `Bearer ${alice!.apiKey}` },
      },
    );
    expect(download.status).toBe(200);
    expect(Buffer.compare(Buffer.from(await download.arrayBuffer()), PHOTO)).toBe(0);

    // An upload goes out once: a second reply naming it finds nothing.
    const again = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Once more',
      attachmentIds: [uploaded.body.id],
    });
    expect(again.status).toBe(404);
    expect(again.contentType).toBe('application/problem+json');

    // Max answers all (to the Reply-To, in reply to our mail): it threads into the conversation and Max takes part.
    const replyTo = parsed.replyTo && parsed.replyTo.value[0]!.address!;
    const fromMax = await postMail(
      stack.api.url,
      team.channel,
      customerMail({
        messageId: `${randomUUID()}@example.com`,
        from: '"Max Colleague" <max@example.com>',
        to: `${replyTo}, zoe@example.com`,
        subject: `Re: ${parsed.subject}`,
        inReplyTo: sent.body.messageId,
        text: 'Thanks, forwarded to accounting.',
      }),
    );
    expect(fromMax.status).toBe(202);
    expect(fromMax.body.conversationId).toBe(conversationId);
    const participants = await eventually(async () => {
      const { body } = await api(alice!.apiKey, 'GET', `/v1/conversations/${conversationId}/participants`);
      return body.participants.some(
        (p: { address: string; roles: string[] }) => p.address === 'max@example.com' && p.roles.includes('wrote'),
      )
        ? body.participants
        : undefined;
    });
    expect(participants).toEqual([
      { address: 'max@example.com', roles: ['wrote', 'cc'], lastWroteAt: expect.any(String) },
      { address: 'zoe@example.com', roles: ['contact', 'wrote'], lastWroteAt: expect.any(String) },
    ]);

    // A reply to Max alone: To Max, and nobody copied on its own, the customer least of all.
    const toMax = { text: 'Max, the credit note follows.', to: 'Max@Example.com' };
    const toMaxPreview = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies/preview`, toMax);
    expect(toMaxPreview.body).toMatchObject({ to: 'max@example.com', cc: [], bcc: [] });
    const sentToMax = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, toMax);
    expect(sentToMax.status).toBe(201);
    const atMax = await stack.capture.waitFor((mail) => mail.messageId === sentToMax.body.messageId);
    expect(atMax.envelope.to).toEqual(['max@example.com']);
    // The customer in copy only when the agent names them.
    const withZoe = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Max, Zoë in copy.',
      to: 'max@example.com',
      cc: ['zoe@example.com'],
    });
    expect(withZoe.status).toBe(201);
    const zoeInCopy = await stack.capture.waitFor((mail) => mail.messageId === withZoe.body.messageId);
    expect([...zoeInCopy.envelope.to].sort()).toEqual(['max@example.com', 'zoe@example.com']);
    // Only someone who took part: a stranger, our own address and a list of addresses are refused, naming `to`.
    for (const to of ['stranger@example.com', 'support@acme.example', 'max@example.com, eve@example.com']) {
      const refused = await api(alice!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, { text: 'Hi', to });
      expect(refused.status).toBe(422);
      expect(refused.body.errors).toEqual([expect.objectContaining({ field: 'to' })]);
    }
  });

  it('puts Bcc in the envelope only, and sends HTML sanitized with a text part derived from it', async () => {
    const conversationId = await openConversation(await mimeMail({ cc: 'max@example.com' }));
    const reply = {
      html: '<p onclick="steal()">Hello <b>Zoë</b>, <a href="javascript:alert(1)">click</a> <a href="https://acme.example/track">track it</a></p><script>alert(1)</script>',
      cc: [],
      bcc: ['Audit@Example.org'],
    };
    const preview = await api(team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies/preview`, reply);
    expect(preview.status).toBe(200);
    expect(preview.body.cc).toEqual([]);
    expect(preview.body.bcc).toEqual(['audit@example.org']);
    expect(preview.body.html).toContain('<b>Zoë</b>');
    expect(preview.body.html).not.toMatch(/script|onclick|javascript:/);
    expect(preview.body.text).toContain('Hello Zoë');
    expect(preview.body.text).toContain('https://acme.example/track');

    const sent = await api(team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, reply);
    expect(sent.status).toBe(201);
    const received = await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId);
    expect([...received.envelope.to].sort()).toEqual(['audit@example.org', 'zoe@example.com']);
    expect(received.raw.toLowerCase()).not.toContain('audit@example.org');
    expect(received.raw).toMatch(/multipart\/alternative/);
    const asRead = await readAsRecipient(received.raw);
    expect(asRead.headers).toEqual(preview.body.headers);
    expect(asRead.text).toBe(preview.body.text);
    expect(asRead.html).toBe(preview.body.html);
    expect(asRead.attachments).toEqual([]);

    // HTML that is nothing but what the allowlist removes is an empty reply.
    const empty = await api(team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      html: '<script>alert(1)</script><style>p{}</style>',
    });
    expect(empty.status).toBe(422);
    expect(empty.body.errors).toEqual([expect.objectContaining({ field: 'html' })]);
  });

  it('says on the reply which recipient the mail server refused while the others got it', async () => {
    const conversationId = await openConversation(await mimeMail({ subject: 'Refused Cc' }));
    // The first RCPT TO of the next mail (the contact's) is refused for good; the Cc's is taken.
    stack.capture.refuse({ at: 'rcpt', code: 550, message: 'no such mailbox', times: 1 });
    const sent = await api(team.admin.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'For both of you',
      cc: ['max@example.com'],
    });
    expect(sent.status).toBe(201);
    const received = await stack.capture.waitFor((mail) => mail.messageId === sent.body.messageId);
    expect(received.envelope.to).toEqual(['max@example.com']);
    const outbound = await eventually(async () => {
      const { body } = await api(team.admin.apiKey, 'GET', `/v1/conversations/${conversationId}`);
      const message = body.messages.find((m: { id: string }) => m.id === sent.body.outboundMessageId);
      return message?.deliveryStatus === 'sent' ? message : undefined;
    });
    expect(outbound.deliveryError).toBe('the mail server refused zoe@example.com; the others got it');
  });

  it('never mails anyone nobody chose: a hostile Cc list, our own addresses, another tenant’s channel', async () => {
    const other = await createAccount(stack.db, 'Globex');
    await createChannel(stack.db, { accountId: other.id, name: 'Globex Help', emailAddress: 'help@globex.example' });
    const hundreds = Array.from({ length: 300 }, (_, i) => `victim${i}@example.net`);
    const flood = await openConversation(await mimeMail({ cc: hundreds }));
    const floodPreview = await api(team.admin.apiKey, 'POST', `/v1/conversations/${flood}/replies/preview`, { text: 'Hi' });
    expect(floodPreview.body.cc).toEqual([]);
    const floodSent = await api(team.admin.apiKey, 'POST', `/v1/conversations/${flood}/replies`, { text: 'Hi' });
    expect(floodSent.status).toBe(201);
    const floodMail = await stack.capture.waitFor((mail) => mail.messageId === floodSent.body.messageId);
    expect(floodMail.envelope.to).toEqual(['zoe@example.com']);
    expect(floodMail.raw).not.toContain('victim');

    // Our address, a +tag of it, our forwarding address, another tenant's channel (and a +tag of it), a list in one
    // "address": none of them; the one person the customer kept in copy stays.
    const mixed = await openConversation(
      await mimeMail({
        to: 'support@acme.example, SUPPORT+x@acme.example',
        cc: [
          `acme@support.${TEST_INBOUND_DOMAIN}`,
          `acme+tag@support.${TEST_INBOUND_DOMAIN}`,
          'help@globex.example',
          'Help+abc@globex.example',
          'max@example.com',
          'zoe@example.com',
        ],
      }),
    );
    const mixedPreview = await api(team.admin.apiKey, 'POST', `/v1/conversations/${mixed}/replies/preview`, { text: 'Hi' });
    expect(mixedPreview.body.cc).toEqual(['max@example.com']);
    const mixedSent = await api(team.admin.apiKey, 'POST', `/v1/conversations/${mixed}/replies`, { text: 'Hi' });
    const mixedMail = await stack.capture.waitFor((mail) => mail.messageId === mixedSent.body.messageId);
    expect([...mixedMail.envelope.to].sort()).toEqual(['max@example.com', 'zoe@example.com']);

    // What an agent types is checked the same way, each problem named.
    const path = `/v1/conversations/${mixed}/replies`;
    const list = await api(team.admin.apiKey, 'POST', path, { text: 'Hi', cc: ['a@one.example, b@two.example'] });
    expect(list.status).toBe(422);
    expect(list.contentType).toBe('application/problem+json');
    expect(list.body.errors).toEqual([{ field: 'cc', message: expect.stringContaining('not a single mailbox') }]);
    const own = await api(team.admin.apiKey, 'POST', path, { text: 'Hi', cc: ['support+x@acme.example'] });
    expect(own.status).toBe(422);
    expect(own.body.errors[0].message).toContain('address of a channel');
    const foreign = await api(team.admin.apiKey, 'POST', path, { text: 'Hi', bcc: ['help@globex.example'] });
    expect(foreign.status).toBe(422);
    expect(foreign.body.errors[0]).toMatchObject({ field: 'bcc' });
    const many = await api(team.admin.apiKey, 'POST', path, {
      text: 'Hi',
      cc: Array.from({ length: 11 }, (_, i) => `p${i}@example.com`),
    });
    expect(many.status).toBe(422);
    expect(many.body.errors[0].message).toContain('at most 10');
    // Refused replies sent nothing.
    const replies = await stack.db
      .selectFrom('outbound_messages')
      .select('message_id')
      .where('conversation_id', '=', mixed)
      .where('kind', '=', 'reply')
      .execute();
    expect(replies.map((r) => r.message_id)).toEqual([mixedSent.body.messageId]);
  });

  it('bounds files: the channel’s limits named, other conversations’ and accounts’ files not found', async () => {
    const first = await openConversation(
      await mimeMail({ attachments: [{ filename: 'a.txt', contentType: 'text/plain', content: Buffer.from('a') }] }),
    );
    const second = await openConversation(await mimeMail({ subject: 'Another' }));
    const key = team.admin.apiKey;
    const { body: firstBody } = await api(key, 'GET', `/v1/conversations/${first}`);
    const firstFile = firstBody.messages[0].attachments[0].id;
    const firstUpload = await upload(stack.api.url, key, first, { name: 'x.txt', type: 'text/plain', bytes: Buffer.from('x') });
    expect(firstUpload.status).toBe(201);
    // Files of another conversation, uploaded or forwarded: 404.
    for (const id of [firstFile, firstUpload.body.id]) {
      const crossed = await api(key, 'POST', `/v1/conversations/${second}/replies/preview`, { text: 'Hi', attachmentIds: [id] });
      expect(crossed.status).toBe(404);
    }
    // Another account cannot upload into, or see, this conversation.
    const other = await createAccount(stack.db, 'Initech');
    const stranger = await createUser(stack.db, {
      accountId: other.id,
      name: 'Sam',
      email: 'sam@initech.example',
      role: 'admin',
    });
    expect(
      (await upload(stack.api.url, stranger.apiKey, first, { name: 'x.txt', type: 'text/plain', bytes: Buffer.from('x') }))
        .status,
    ).toBe(404);

    await stack.db
      .updateTable('channels')
      .set({ max_attachment_bytes: 1000, max_reply_attachments: 1 })
      .where('id', '=', team.channel.id)
      .execute();
    try {
      const tooLarge = await upload(stack.api.url, key, second, {
        name: 'big.bin',
        type: 'application/octet-stream',
        bytes: Buffer.alloc(5000, 1),
      });
      expect(tooLarge.status).toBe(413);
      expect(tooLarge.contentType).toBe('application/problem+json');
      expect(tooLarge.body.detail).toContain('1000 bytes');
      const kept = await stack.db.selectFrom('reply_attachments').select('id').where('conversation_id', '=', second).execute();
      expect(kept).toEqual([]);

      const two = await api(key, 'POST', `/v1/conversations/${first}/replies`, {
        text: 'Hi',
        attachmentIds: [firstFile, firstUpload.body.id],
      });
      expect(two.status).toBe(422);
      expect(two.body.detail).toContain('at most 1 attachments');
    } finally {
      await stack.db
        .updateTable('channels')
        .set({ max_attachment_bytes: 10 * 1024 * 1024, max_reply_attachments: 10 })
        .where('id', '=', team.channel.id)
        .execute();
    }

    // A file larger than one stored piece arrives whole.
    const large = Buffer.from(Array.from({ length: 700 * 1024 }, (_, i) => (i * 7) % 256));
    const stored = await upload(stack.api.url, key, second, { name: 'scan.tiff', type: 'image/tiff', bytes: large });
    expect(stored.status).toBe(201);
    const row = await stack.db
      .selectFrom('reply_attachments')
      .select(['content', 'size_bytes', 'sha256', 'complete'])
      .where('id', '=', stored.body.id)
      .executeTakeFirstOrThrow();
    expect(row).toMatchObject({
      size_bytes: large.length,
      sha256: createHash('sha256').update(large).digest('hex'),
      complete: true,
    });
    expect(Buffer.compare(Buffer.from(row.content), large)).toBe(0);

    // An upload no reply took for a week, or one cut off mid-stream an hour ago, goes with the next upload.
    const stale = await upload(stack.api.url, key, second, { name: 'old.txt', type: 'text/plain', bytes: Buffer.from('old') });
    await sql`update reply_attachments set created_at = now() - interval '8 days' where id = ${stale.body.id}`.execute(stack.db);
    const fresh = await upload(stack.api.url, key, second, { name: 'new.txt', type: 'text/plain', bytes: Buffer.from('new') });
    expect(fresh.status).toBe(201);
    const waiting = await stack.db
      .selectFrom('reply_attachments')
      .select('id')
      .where('id', 'in', [stale.body.id, fresh.body.id])
      .execute();
    expect(waiting.map((r) => r.id)).toEqual([fresh.body.id]);

    const notMultipart = await fetch(`${stack.api.url}/v1/conversations/${first}/attachments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'application/pdf' },
      body: INVOICE,
    });
    expect(notMultipart.status).toBe(415);
    const noBoundary = await fetch(`${stack.api.url}/v1/conversations/${first}/attachments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}`, 'content-type': 'multipart/form-data' },
      body: 'x',
    });
    expect(noBoundary.status).toBe(400);
    expect(noBoundary.headers.get('content-type')).toBe('application/problem+json');
    const form = new FormData();
    form.append('note', 'no file here');
    const noFile = await fetch(`${stack.api.url}/v1/conversations/${first}/attachments`, {
      method: 'POST',
      headers: { authorization: `Bearer ${key}` },
      body: form,
    });
    expect(noFile.status).toBe(422);
    expect(((await noFile.json()) as { errors: unknown[] }).errors).toEqual([expect.objectContaining({ field: 'file' })]);
  });

  it('stops reading an endless file at the channel’s limit, and keeps nothing of it', async () => {
    const conversationId = await openConversation(await mimeMail({ subject: 'Endless' }));
    await stack.db.updateTable('channels').set({ max_attachment_bytes: 100_000 }).where('id', '=', team.channel.id).execute();
    try {
      const head = new TextEncoder().encode(
        '--endless\r\nContent-Disposition: form-data; name="file"; filename="endless.bin"\r\n' +
          'Content-Type: application/octet-stream\r\n\r\n',
      );
      const chunk = new Uint8Array(64 * 1024).fill(0x61);
      let produced = 0;
      const body = new ReadableStream<Uint8Array>({
        pull(controller) {
          // A client that would send 1 GiB unless the server stops it.
          if (produced >= 1024 ** 3) return controller.close();
          controller.enqueue(produced === 0 ? head : chunk);
          produced += produced === 0 ? head.length : chunk.length;
        },
      });
      const response = await fetch(`${stack.api.url}/v1/conversations/${conversationId}/attachments`, {
        method: 'POST',
        headers: { authorization: `Bearer ${team.admin.apiKey}`, 'content-type': 'multipart/form-data; boundary=endless' },
        body,
        duplex: 'half',
      } as RequestInit);
      const answer = (await response.json()) as { detail: string };
      expect(response.status).toBe(413);
      expect(answer.detail).toContain('100000 bytes');
      expect(produced).toBeLessThan(1024 ** 3);
      const kept = await stack.db
        .selectFrom('reply_attachments')
        .select('id')
        .where('conversation_id', '=', conversationId)
        .execute();
      expect(kept).toEqual([]);
    } finally {
      await stack.db
        .updateTable('channels')
        .set({ max_attachment_bytes: 10 * 1024 * 1024 })
        .where('id', '=', team.channel.id)
        .execute();
    }
  });

  it('sends a reply repeated with the same Idempotency-Key once, its upload included', async () => {
    const conversationId = await openConversation(await mimeMail({ subject: 'Repeated' }));
    const uploaded = await upload(stack.api.url, team.admin.apiKey, conversationId, {
      name: 'receipt.pdf',
      type: 'application/pdf',
      bytes: INVOICE,
    });
    const send = () =>
      fetch(`${stack.api.url}/v1/conversations/${conversationId}/replies`, {
        method: 'POST',
        headers: {
          authorization: `Bearer ${team.admin.apiKey}`,
          'content-type': 'application/json',
          'idempotency-key': 'receipt-once',
        },
        body: JSON.stringify({ text: 'Your receipt', attachmentIds: [uploaded.body.id] }),
      });
    const first = await send();
    expect(first.status).toBe(201);
    const firstBody = (await first.json()) as { messageId: string };
    const second = await send();
    expect(second.status).toBe(201);
    expect(((await second.json()) as { messageId: string }).messageId).toBe(firstBody.messageId);
    const mail = await stack.capture.waitFor((m) => m.messageId === firstBody.messageId);
    expect((await simpleParser(mail.raw)).attachments.map((a) => a.filename)).toEqual(['receipt.pdf']);
    const replies = await stack.db
      .selectFrom('outbound_messages')
      .select('id')
      .where('conversation_id', '=', conversationId)
      .where('kind', '=', 'reply')
      .execute();
    expect(replies).toHaveLength(1);
  });
});
