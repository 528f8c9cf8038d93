import { createServer, type AddressInfo, type Socket } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { createChannel } from '../../src/db/seed.js';
import { applyMailboxSettings } from '../../src/temporal/mailbox.js';
import { SMTP_FAILURE_MESSAGES } from '../../src/mail/transport.js';
import { encryptCredential } from '../../src/security/credentials.js';
import { conversationWorkflowId, mailboxWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { appendMail, sampleMail } from '../support/imap.js';
import { customerMail } from '../support/mail.js';
import { failureMessage } from '../support/payloads.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// Issue 9, "safe on the open internet": a stored IMAP/SMTP password only goes to the server and user it
// was saved for, admin-configured hosts pass the destination policy (ALLOWED_PRIVATE_NETWORKS) in the
// API, the mailbox sync and the sends, and connection tests answer coarse reasons, never a server's words.

const account = { user: 'support', password: 'imap-secret' };
const MARKER = 'LEAKED-BANNER-7f3a';

/** A bare TCP server on loopback that counts who connects; it greets with `greeting` when given, else hangs up. */
async function connectionRecorder(greeting?: string) {
  const sockets = new Set<Socket>();
  let connections = 0;
  const server = createServer((socket) => {
    connections++;
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
    if (greeting) socket.write(greeting);
    else socket.destroy();
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return {
    port: (server.address() as AddressInfo).port,
    get connections() {
      return connections;
    },
    close: async () => {
      for (const socket of sockets) socket.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** A real SMTP server (smtp-server) that records every connection and login; refuses logins with `refusal` when given. */
async function smtpLoginServer(refusal?: string) {
  const logins: Array<{ username: string; password: string }> = [];
  let connections = 0;
  const server = new SMTPServer({
    logger: false,
    disabledCommands: ['STARTTLS'],
    allowInsecureAuth: true,
    authMethods: ['PLAIN', 'LOGIN'],
    onConnect: (_session, callback) => {
      connections++;
      callback();
    },
    onAuth: (auth, _session, callback) => {
      logins.push({ username: auth.username ?? '', password: auth.password ?? '' });
      if (refusal) callback(new Error(refusal));
      else callback(null, { user: auth.username });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  return {
    port: (server.server.address() as AddressInfo).port,
    logins,
    get connections() {
      return connections;
    },
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

const fieldsOf = (body: { errors?: Array<{ field: string }> }) => (body.errors ?? []).map((error) => error.field);

describe('stored mail server passwords and connection tests', () => {
  let stack: TestStack;
  let dovecot: DovecotServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const stops: Array<() => Promise<void>> = [];

  const admin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);

  beforeAll(async () => {
    [stack, dovecot] = await Promise.all([startTestStack(), startDovecot({ users: [account] })]);
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    for (const stop of stops) await stop();
    await stack?.stop();
    await dovecot?.stop();
  });

  it('sends the stored IMAP password only to the stored host, port, user and TLS mode; a change needs it again', async () => {
    const other = await connectionRecorder();
    stops.push(other.close);
    const path = `/v1/channels/${team.channel.id}/imap`;
    // Saved by name: the sync dials the address localhost resolved to. A day of import: the mail below may be
    // appended before the first session reaches the folder, which would otherwise start after it.
    const stored = { enabled: true, host: 'localhost', port: dovecot.port, tls: false, username: account.user, importDays: 1 };
    expect((await admin('PUT', path, { ...stored, password: account.password })).status).toBe(200);
    const raw = sampleMail(1);
    await appendMail(dovecot, account, 'INBOX', raw);
    const messageId = /^Message-ID: (.+)$/m.exec(raw)![1]!;
    await eventually(() =>
      stack.db.selectFrom('inbound_messages').select('id').where('message_id', '=', messageId).executeTakeFirst(),
    );

    for (const change of [
      { host: '127.0.0.1', port: other.port },
      { port: other.port },
      { host: '127.0.0.1' },
      { tls: true },
      { username: 'sales' },
    ]) {
      const saved = await admin('PUT', path, { ...stored, ...change });
      expect(saved.status, JSON.stringify(change)).toBe(422);
      expect(fieldsOf(saved.body)).toEqual(['password']);
      expect(saved.body.errors[0].message).toMatch(
        /required again: .*stored password only goes to the server and user it was saved for/,
      );
      const tested = await admin('POST', `${path}/test`, change);
      expect(tested.status, JSON.stringify(change)).toBe(422);
      expect(fieldsOf(tested.body)).toEqual(['password']);
    }
    expect(other.connections).toBe(0);
    const row = await stack.db
      .selectFrom('channels')
      .select(['imap_host', 'imap_port'])
      .where('id', '=', team.channel.id)
      .executeTakeFirstOrThrow();
    expect(row).toEqual({ imap_host: 'localhost', imap_port: dovecot.port });

    // The stored server itself keeps working without the password, for the test and for saving.
    expect((await admin('POST', `${path}/test`, {})).body).toMatchObject({ ok: true });
    expect((await admin('PUT', path, { ...stored, folders: ['INBOX'] })).status).toBe(200);
    // With the password typed again, another server may be tried: that one is then dialled.
    const retyped = await admin('POST', `${path}/test`, { host: '127.0.0.1', port: other.port, password: 'typed-again' });
    expect(retyped.body).toMatchObject({ ok: false, reason: 'refused' });
    expect(other.connections).toBe(1);

    expect((await admin('PUT', path, { ...stored, enabled: false })).status).toBe(200);
  }, 120_000);

  it('sends the stored SMTP password only to the stored host, port, user and secure mode; a change needs it again', async () => {
    const [own, other] = await Promise.all([smtpLoginServer(), smtpLoginServer()]);
    stops.push(own.close, other.close);
    const channel = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Own SMTP',
      emailAddress: 'own-smtp@acme.example',
    });
    const path = `/v1/channels/${channel.id}/smtp`;
    const stored = { host: '127.0.0.1', port: own.port, secure: false, username: 'mailer' };
    expect((await admin('PUT', path, { ...stored, password: 'pa55-w0rd' })).status).toBe(200);
    expect((await admin('POST', `${path}/test`, {})).body).toEqual({ ok: true });
    expect(own.logins).toEqual([{ username: 'mailer', password: 'pa55-w0rd' }]);

    for (const change of [
      { host: 'localhost' },
      { port: other.port },
      { host: 'localhost', port: other.port },
      { secure: true },
      { username: 'other' },
    ]) {
      const saved = await admin('PUT', path, { ...stored, ...change });
      expect(saved.status, JSON.stringify(change)).toBe(422);
      expect(fieldsOf(saved.body)).toEqual(['password']);
      const tested = await admin('POST', `${path}/test`, change);
      expect(tested.status, JSON.stringify(change)).toBe(422);
      expect(fieldsOf(tested.body)).toEqual(['password']);
    }
    // Implicit TLS without a port means port 465: a change of port and mode.
    expect(fieldsOf((await admin('PUT', path, { host: '127.0.0.1', secure: true, username: 'mailer' })).body)).toEqual([
      'password',
    ]);
    expect(other.connections).toBe(0);
    expect(other.logins).toEqual([]);
    expect(own.logins).toHaveLength(1);

    expect((await admin('PUT', path, stored)).body).toMatchObject({ port: own.port, passwordSet: true });
    const retyped = await admin('POST', `${path}/test`, { port: other.port, password: 'typed-again' });
    expect(retyped.body).toEqual({ ok: true });
    expect(other.logins).toEqual([{ username: 'mailer', password: 'typed-again' }]);
  });

  it("answers an SMTP test with a coarse reason and a fixed message, never the server's banner or error text", async () => {
    const refusing = await smtpLoginServer(`${MARKER} user unknown on this host`);
    const banner = await connectionRecorder(`554 ${MARKER} internal-relay.corp.example ESMTP not for you\r\n`);
    stops.push(refusing.close, banner.close);
    const path = `/v1/channels/${team.channel.id}/smtp/test`;
    const login = { host: '127.0.0.1', secure: false, username: 'mailer', password: 'secret' };

    const refused = await admin('POST', path, { ...login, port: refusing.port });
    expect(refused).toMatchObject({ status: 200, body: { ok: false, reason: 'auth', message: SMTP_FAILURE_MESSAGES.auth } });
    expect(refusing.logins).toHaveLength(1);
    const greeted = await admin('POST', path, { ...login, port: banner.port });
    expect(greeted).toMatchObject({
      status: 200,
      body: { ok: false, reason: 'protocol', message: SMTP_FAILURE_MESSAGES.protocol },
    });
    expect(banner.connections).toBe(1);
    for (const answer of [refused, greeted]) {
      expect(JSON.stringify(answer.body)).not.toContain(MARKER);
      expect(Object.keys(answer.body).sort()).toEqual(['message', 'ok', 'reason']);
    }

    // Implicit TLS spoken to a plain-text SMTP port.
    expect((await admin('POST', path, { ...login, port: refusing.port, secure: true })).body).toEqual({
      ok: false,
      reason: 'tls',
      message: SMTP_FAILURE_MESSAGES.tls,
    });
    const closed = await connectionRecorder();
    await closed.close();
    expect((await admin('POST', path, { ...login, port: closed.port })).body).toEqual({
      ok: false,
      reason: 'refused',
      message: SMTP_FAILURE_MESSAGES.refused,
    });
    expect((await admin('POST', path, { ...login, host: 'no-such-host.invalid', port: 25 })).body).toEqual({
      ok: false,
      reason: 'dns',
      message: SMTP_FAILURE_MESSAGES.dns,
    });
  });
});

describe('a deployment that allows no private networks (the production default)', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let recorder: Awaited<ReturnType<typeof connectionRecorder>>;

  const admin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);

  beforeAll(async () => {
    [stack, recorder] = await Promise.all([startTestStack({ allowedPrivateNetworks: [] }), connectionRecorder()]);
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing.' },
    });
  });

  afterAll(async () => {
    await stack?.stop();
    await recorder?.close();
  });

  it.each(['127.0.0.1', 'localhost', '::ffff:127.0.0.1', '127.1'])(
    'refuses %s as IMAP or SMTP host when saving and testing: 422 naming host, and nothing is dialled',
    async (host) => {
      const imap = `/v1/channels/${team.channel.id}/imap`;
      const smtp = `/v1/channels/${team.channel.id}/smtp`;
      const imapSettings = { host, port: recorder.port, tls: false, username: 'support', password: 'secret' };
      const smtpSettings = { host, port: recorder.port, secure: false, username: 'mailer', password: 'secret' };
      for (const [method, path, body] of [
        ['PUT', imap, { enabled: true, ...imapSettings }],
        ['POST', `${imap}/test`, imapSettings],
        ['PUT', smtp, smtpSettings],
        ['POST', `${smtp}/test`, smtpSettings],
      ] as const) {
        const answer = await admin(method, path, body);
        expect(answer.status, `${method} ${path}`).toBe(422);
        expect(answer.contentType).toContain('application/problem+json');
        expect(fieldsOf(answer.body)).toEqual(['host']);
        expect(answer.body.errors[0].message).toMatch(
          /resolves to a private address \(loopback\), which is not allowed; the operator can allow it with ALLOWED_PRIVATE_NETWORKS/,
        );
      }
      expect(recorder.connections).toBe(0);
      const row = await stack.db
        .selectFrom('channels')
        .select(['imap_host', 'smtp_host'])
        .where('id', '=', team.channel.id)
        .executeTakeFirstOrThrow();
      expect(row).toEqual({ imap_host: null, smtp_host: null });
    },
  );

  it('saves a host that does not resolve yet (DNS may be down), and its test answers dns', async () => {
    const channel = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Later',
      emailAddress: 'later@acme.example',
    });
    const imap = `/v1/channels/${channel.id}/imap`;
    const saved = await admin('PUT', imap, {
      enabled: false,
      host: 'imap.not-yet.invalid',
      username: 'support',
      password: 'secret',
    });
    expect(saved.status).toBe(200);
    expect((await admin('POST', `${imap}/test`, {})).body).toEqual({
      ok: false,
      reason: 'dns',
      message: 'the host name does not resolve',
    });
    // The same settings to a refused host: the destination policy applies before any connection.
    const refused = await admin('POST', `${imap}/test`, { host: 'localhost', port: recorder.port, password: 'secret' });
    expect(fieldsOf(refused.body)).toEqual(['host']);
    expect(recorder.connections).toBe(0);
  });

  it('fails the mailbox sync of a refused host without connecting, naming why', async () => {
    // Settings written before the policy (or by hand): the worker checks them again at every session.
    const channel = await createChannel(stack.db, {
      accountId: team.account.id,
      name: 'Old IMAP',
      emailAddress: 'old@acme.example',
    });
    await stack.db
      .updateTable('channels')
      .set({
        imap_enabled: true,
        imap_host: '127.0.0.1',
        imap_port: recorder.port,
        imap_tls: false,
        imap_username: 'support',
        imap_password_encrypted: encryptCredential('secret', TEST_SECRET_KEY),
      })
      .where('id', '=', channel.id)
      .execute();
    await applyMailboxSettings(stack.temporal, { id: channel.id, name: 'Old IMAP' }, stack.taskQueue);
    const mailbox = stack.temporal.workflow.getHandle(mailboxWorkflowId(channel.id));
    try {
      const failure = await eventually(
        async () => (await mailbox.describe()).raw.pendingActivities?.[0]?.lastFailure ?? undefined,
      );
      expect(await failureMessage(failure)).toMatch(
        /IMAP refused: 127\.0\.0\.1 resolves to a private address \(loopback\).*ALLOWED_PRIVATE_NETWORKS/,
      );
      expect(failure.applicationFailureInfo?.type).toBe('ImapDestinationRefused');
      expect(recorder.connections).toBe(0);
    } finally {
      await mailbox.terminate('test over');
    }
  });

  it("fails a send through the channel's own SMTP server of a refused host without connecting, naming why", async () => {
    await stack.db
      .updateTable('channels')
      .set({ smtp_host: 'localhost', smtp_port: recorder.port, smtp_secure: false })
      .where('id', '=', team.channel.id)
      .execute();
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: 'refused-smtp-1@example.com', subject: 'Hello', text: 'Anyone there?' }),
    );
    expect(posted.status).toBe(202);
    const conversation = stack.temporal.workflow.getHandle(conversationWorkflowId(posted.body.conversationId));
    try {
      const failure = await eventually(
        async () =>
          (await conversation.describe()).raw.pendingActivities?.find((activity) => activity.lastFailure)?.lastFailure ??
          undefined,
      );
      expect(await failureMessage(failure)).toMatch(
        /^localhost resolves to a private address \(loopback\), which is not allowed/,
      );
      expect(failure.applicationFailureInfo?.type).toBe('DestinationRefusedError');
      expect(recorder.connections).toBe(0);
      expect(stack.capture.mails.some((mail) => mail.inReplyTo === '<refused-smtp-1@example.com>')).toBe(false);
    } finally {
      await conversation.terminate('test over');
    }
  });
});
