import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { SmtpCapture } from '../../src/mail/smtp-capture.js';
import { postEndlessBody } from '../support/http.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// The routes anyone on the internet can call: the survey pages and the forwarder endpoint.
describe('public endpoints under hostile load', () => {
  let stack: TestStack;

  beforeAll(async () => {
    stack = await startTestStack();
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('stops reading a survey form at 32 KiB: a 4 GiB POST is answered 413 long before its end', async () => {
    const answer = await postEndlessBody(`${stack.api.url}/csat/some-token`, {
      'content-type': 'application/x-www-form-urlencoded',
    });
    expect(answer.status).toBe(413);
    expect(answer.contentType).toMatch(/^text\/html/);
    // What the kernel and fetch buffered before the answer arrived, nowhere near the 4 GiB offered.
    expect(answer.produced).toBeLessThan(256 * 1024 ** 2);
  });

  it('lists the development mail capture to this machine, and to anyone else only with an API key', async () => {
    const team = await seedSupportTeam(stack.db, { name: 'Capture', emailAddress: 'capture@acme.example' });
    const app = createApp({
      db: stack.db,
      temporal: stack.temporal,
      ingest: createIngest({ db: stack.db, temporal: stack.temporal, taskQueue: stack.taskQueue }),
      config: {
        SECRET_KEY: TEST_SECRET_KEY,
        MAX_INBOUND_BYTES: 1024,
        PUBLIC_URL: 'http://unused',
        INBOUND_DOMAIN: 'inbound.test',
      },
      logger: createLogger('silent'),
      capture: new SmtpCapture(),
    });
    // What @hono/node-server hands the app: the connection's socket.
    const from = (remoteAddress: string, headers: Record<string, string> = {}) =>
      app.request('/v1/captured-mail', { headers }, { incoming: { socket: { remoteAddress } } });
    expect((await from('127.0.0.1')).status).toBe(200);
    expect((await from('::1')).status).toBe(200);
    expect((await from('::ffff:127.0.0.1')).status).toBe(200);
    expect((await from('192.0.2.7')).status).toBe(401);
    expect((await from('10.0.0.3')).status).toBe(401);
    expect((await from('192.0.2.7', { authorization: `Bearer ${team.admin.apiKey}` })).status).toBe(200);
  });
});
