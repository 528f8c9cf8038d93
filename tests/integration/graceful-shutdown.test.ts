import { randomUUID } from 'node:crypto';
import { once } from 'node:events';
import { request, type IncomingMessage } from 'node:http';
import { connect, type AddressInfo } from 'node:net';
import { SMTPServer } from 'smtp-server';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { createTestDatabase } from '../support/database.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { startMailroomProcess, type MailroomProcess } from '../support/mailroom-process.js';
import { seedSupportTeam, TEST_SECRET_KEY } from '../support/stack.js';

const GREETING = 'Thanks for writing, we will answer soon.';
// Far longer than anything here takes: the processes must finish their work in flight, not run out of time.
const GRACE_SECONDS = 60;

/**
 * An SMTP server that takes each mail's DATA and answers it only once the test lets it: a send held in flight.
 * `accepted` lists the mails it answered 250.
 */
async function startHeldSmtpServer() {
  const accepted: string[] = [];
  let arrived!: () => void;
  const firstArrived = new Promise<void>((resolve) => (arrived = resolve));
  let release!: () => void;
  const released = new Promise<void>((resolve) => (release = resolve));
  const server = new SMTPServer({
    authOptional: true,
    disabledCommands: ['STARTTLS'],
    logger: false,
    onData(stream, _session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        arrived();
        void released.then(() => {
          accepted.push(Buffer.concat(chunks).toString('utf8'));
          callback();
        });
      });
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const { port } = server.server.address() as AddressInfo;
  return {
    url: `smtp://127.0.0.1:${port}`,
    accepted,
    firstArrived,
    release,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}

/** Resolves with the error of a fresh TCP connection to the port, or with undefined when the connection is taken. */
function connectionError(port: number): Promise<NodeJS.ErrnoException | undefined> {
  return new Promise((resolve) => {
    const socket = connect(port, '127.0.0.1');
    socket.once('connect', () => {
      socket.destroy();
      resolve(undefined);
    });
    socket.once('error', (error) => resolve(error));
  });
}

// One API process for the file: the worker's test posts through it, the API's own test stops it, last.
describe('SIGTERM to the API and the worker processes (a deploy)', () => {
  let database: Awaited<ReturnType<typeof createTestDatabase>>;
  let smtp: Awaited<ReturnType<typeof startHeldSmtpServer>>;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  const processes: MailroomProcess[] = [];
  let api: MailroomProcess;
  let apiUrl: string;
  let env: NodeJS.ProcessEnv;

  beforeAll(async () => {
    database = await createTestDatabase();
    team = await seedSupportTeam(database.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: GREETING },
    });
    smtp = await startHeldSmtpServer();
    env = {
      ...process.env,
      DATABASE_URL: database.url,
      TEMPORAL_ADDRESS: inject('temporalAddress'),
      TEMPORAL_TASK_QUEUE: `mailroom-test-${randomUUID()}`,
      SMTP_URL: smtp.url,
      SECRET_KEY: TEST_SECRET_KEY,
      HOST: '127.0.0.1',
      PORT: '0',
      LOG_LEVEL: 'info',
      SHUTDOWN_GRACE_SECONDS: String(GRACE_SECONDS),
    };
    api = startMailroomProcess('src/api/server.ts', env);
    processes.push(api);
    apiUrl = String((await api.waitForLog('API listening')).url);
  });

  afterAll(async () => {
    await Promise.all(processes.map((child) => child.stop()));
    smtp?.release();
    await smtp?.close();
    await database?.drop();
  });

  it('lets the worker finish the greeting it is sending, exits 0, and the next worker carries the conversation on', async () => {
    const first = startMailroomProcess('src/worker.ts', env);
    processes.push(first);
    await first.waitForLog('worker started');
    const posted = await postMail(apiUrl, team.channel, customerMail({ messageId: `held-greeting-${randomUUID()}@example.com` }));
    expect(posted.status).toBe(202);

    // The greeting's SMTP send is in flight, held by the server, when the deploy stops the worker.
    await smtp.firstArrived;
    first.child.kill('SIGTERM');
    expect(await first.waitForLog('worker stopping')).toMatchObject({ signal: 'SIGTERM', graceSeconds: GRACE_SECONDS });
    // The next worker starts while the old one drains, as in a rolling deploy.
    const next = startMailroomProcess('src/worker.ts', env);
    processes.push(next);
    smtp.release();

    expect(await first.exited).toEqual({ code: 0, signal: null });
    expect(first.logs.map((line) => line.msg)).toContain('worker stopped');
    expect(smtp.accepted).toHaveLength(1);
    expect(smtp.accepted[0]).toContain(GREETING);

    // The conversation goes on to an agent on the next worker, and the greeting is not sent again.
    await next.waitForLog('worker started');
    const [alice] = team.agents;
    await eventually(async () => {
      const { body } = await callApi(apiUrl, alice!.apiKey, 'GET', `/v1/conversations/${posted.body.conversationId}`);
      return body.stage === 'assigned' ? body : undefined;
    }, 60_000);
    expect(smtp.accepted).toHaveLength(1);
  });

  it('answers the request in flight, refuses new connections and exits 0', async () => {
    const raw = Buffer.from(
      customerMail({ messageId: `in-flight-${randomUUID()}@example.com`, text: 'a long question '.repeat(4096) }),
    );
    const inbound = new URL(`/v1/channels/${team.channel.id}/inbound`, apiUrl);
    // A forwarder's large post: headers first, the body once the server says to go on (100-continue).
    const posting = request(inbound, {
      method: 'POST',
      headers: {
        authorization: `Bearer ${team.channel.forwarderSecret}`,
        'content-type': 'message/rfc822',
        'content-length': raw.length,
        expect: '100-continue',
      },
    });
    const answered = once(posting, 'response');
    answered.catch(() => undefined); // awaited below; a failure before that must not surface twice
    const goOn = once(posting, 'continue');
    posting.flushHeaders();
    await goOn; // the API is handling this request
    const half = Math.floor(raw.length / 2);
    posting.write(raw.subarray(0, half));

    api.child.kill('SIGTERM');
    expect(await api.waitForLog('API stopping')).toMatchObject({ signal: 'SIGTERM', graceSeconds: GRACE_SECONDS });
    expect(await connectionError(Number(inbound.port))).toMatchObject({ code: 'ECONNREFUSED' });

    posting.end(raw.subarray(half));
    const [response] = (await answered) as [IncomingMessage];
    const chunks: Buffer[] = [];
    for await (const chunk of response) chunks.push(chunk as Buffer);
    expect(response.statusCode).toBe(202);
    expect(JSON.parse(Buffer.concat(chunks).toString('utf8'))).toMatchObject({ duplicate: false });

    expect(await api.exited).toEqual({ code: 0, signal: null });
    expect(api.logs.map((line) => line.msg)).toContain('API stopped');
  });
});
