import { readFileSync } from 'node:fs';
import type { Middleware } from 'openapi-fetch';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { servedOpenApiDocument } from '../../scripts/client-types.js';
import { createMailroomClient, rawMail, type MailroomClient } from '../../src/client/mailroom-client.js';
import { createAccount, createUser } from '../../src/db/seed.js';
import { eventually } from '../support/http.js';
import { startTestStack, type TestStack } from '../support/stack.js';

// The contract from the consumer's side: a backend service drives Mailroom only through the client
// generated from the OpenAPI document. Every path, parameter, body and answer below is type-checked
// against the generated types, and every answer's status and media type must be declared in the document.

const question = readFileSync(new URL('../fixtures/eml/customer-question.eml', import.meta.url), 'utf8');

/** What the server answered each call with: operation, status and media type. */
interface Answer {
  method: string;
  path: string;
  status: number;
  mediaType: string | undefined;
}

/** Every answer of these clients is recorded, to be held against the document afterwards. */
function recordAnswers(answers: Answer[], ...clients: MailroomClient[]) {
  const record: Middleware = {
    onResponse({ request, response, schemaPath }) {
      const mediaType = response.headers.get('content-type')?.split(';')[0]?.trim();
      answers.push({ method: request.method.toLowerCase(), path: schemaPath, status: response.status, mediaType });
    },
  };
  for (const client of clients) client.use(record);
}

describe('a backend service on the generated client', () => {
  let stack: TestStack;
  let adminKey: string;

  beforeAll(async () => {
    stack = await startTestStack();
    // The first admin of an account is created at set-up (as `npm start` does), not through the API.
    const account = await createAccount(stack.db, 'Acme');
    ({ apiKey: adminKey } = await createUser(stack.db, {
      accountId: account.id,
      name: 'Ada Admin',
      email: 'ada@acme.example',
      role: 'admin',
    }));
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('sets up a channel and an agent, takes in a mail, answers and resolves it', async () => {
    const baseUrl = stack.api.url;
    const answers: Answer[] = [];
    const admin = createMailroomClient(baseUrl, adminKey);
    recordAnswers(answers, admin);

    // The admin creates the channel (its forwarder secret is in this answer only) and an agent for it.
    const channel = await admin.POST('/v1/channels', {
      body: {
        name: 'Acme Support',
        emailAddress: 'support@acme.example',
        greeting: { enabled: false },
        csat: { enabled: false },
      },
    });
    expect(channel.response.status).toBe(201);
    const { id: channelId, forwarderSecret } = channel.data!;
    const user = await admin.POST('/v1/users', {
      params: { header: { 'idempotency-key': 'create-alice' } },
      body: { name: 'Alice Agent', email: 'alice@acme.example', role: 'agent' },
    });
    expect(user.response.status).toBe(201);
    const alice = user.data!;
    const joined = await admin.PUT('/v1/channels/{channelId}/agents/{userId}', {
      params: { path: { channelId, userId: alice.user.id } },
      body: { capacity: null },
    });
    expect(joined.data).toMatchObject({ userId: alice.user.id });

    // The mail forwarder posts the customer's mail as it is, with the channel's secret.
    const forwarder = createMailroomClient(baseUrl, forwarderSecret);
    recordAnswers(answers, forwarder);
    const delivered = await forwarder.POST('/v1/channels/{channelId}/inbound', {
      params: { path: { channelId } },
      body: question,
      ...rawMail,
    });
    expect(delivered.response.status).toBe(202);
    // 200 would be a provider's forwarding confirmation, 202 a conversation's mail: the types tell them apart.
    if (!delivered.data || !('conversationId' in delivered.data)) throw new Error('the mail did not become a conversation');
    const { conversationId } = delivered.data;

    // The agent finds it in their list once routing has assigned it to them.
    const agent = createMailroomClient(baseUrl, alice.apiKey.key);
    recordAnswers(answers, agent);
    const listed = await eventually(async () => {
      const page = await agent.GET('/v1/conversations', { params: { query: { channelId, stage: 'assigned', limit: 10 } } });
      return page.data?.data.find((conversation) => conversation.id === conversationId);
    });
    expect(listed).toMatchObject({ assigneeId: alice.user.id, subject: 'Invoice for März is missing' });

    const read = await agent.GET('/v1/conversations/{conversationId}', { params: { path: { conversationId } } });
    expect(read.data!.contact).toMatchObject({ email: 'ann@example.com', name: 'Ann Example' });
    expect(read.data!.messages.map((message) => message.kind)).toEqual(['customer']);

    // A reply without text is refused with the problem+json the document declares, naming what is missing.
    const empty = await agent.POST('/v1/conversations/{conversationId}/replies', {
      params: { path: { conversationId } },
      body: {},
    });
    expect(empty.response.status).toBe(422);
    expect(empty.error!.type).toContain('validation');
    expect(empty.error!.errors!.length).toBeGreaterThan(0);

    // The reply goes to the customer, threaded under their question.
    const replied = await agent.POST('/v1/conversations/{conversationId}/replies', {
      params: { path: { conversationId }, header: { 'idempotency-key': 'reply-1' } },
      body: { text: 'Hello Ann, the invoice for March is in your account again.' },
    });
    expect(replied.response.status).toBe(201);
    const sent = await stack.capture.waitFor((mail) => mail.messageId === replied.data!.messageId);
    expect(sent.envelope.to).toEqual(['ann@example.com']);
    expect(sent.inReplyTo).toBe('<question-1.4711@mail.example.com>');
    expect(sent.text).toContain('the invoice for March is in your account again');

    // Resolved once; resolving again is the conflict the document declares.
    const resolved = await agent.POST('/v1/conversations/{conversationId}/resolve', { params: { path: { conversationId } } });
    expect(resolved.data).toMatchObject({ status: 'resolved' });
    const again = await agent.POST('/v1/conversations/{conversationId}/resolve', { params: { path: { conversationId } } });
    expect(again.response.status).toBe(409);
    expect(again.response.headers.get('content-type')).toContain('application/problem+json');
    expect(again.error!.status).toBe(409);

    const closed = await agent.GET('/v1/conversations/{conversationId}', { params: { path: { conversationId } } });
    expect(closed.data!.status).toBe('resolved');
    expect(closed.data!.messages.map((message) => message.kind)).toEqual(['customer', 'reply']);

    // Each answer, successes and problems alike, is one the document declares for its operation.
    const document = await servedOpenApiDocument();
    const undeclared = answers.filter(({ method, path, status, mediaType }) => {
      const item = document.paths?.[path];
      const operation = item && !('$ref' in item) ? item[method as 'get' | 'post' | 'put'] : undefined;
      const declared = operation && !('$ref' in operation) ? operation.responses?.[String(status)] : undefined;
      if (!declared || '$ref' in declared) return true;
      return mediaType === undefined ? Boolean(declared.content) : !declared.content?.[mediaType];
    });
    expect(undeclared).toEqual([]);
    expect(answers.map(({ status }) => status)).toEqual(expect.arrayContaining([200, 201, 202, 409, 422]));
  });
});
