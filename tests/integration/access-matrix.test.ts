import { randomBytes, randomUUID } from 'node:crypto';
import MailComposer from 'nodemailer/lib/mail-composer/index.js';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { addAgentToChannel, createApiKey, createChannel, createUser } from '../../src/db/seed.js';
import { eventually, postMail } from '../support/http.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';
import { customerMail } from '../support/mail.js';

// The access rule of the whole API (A2), operation by operation, on the real stack: every /v1 route but the
// forwarder's needs a user's API key (401 otherwise); an object of another account answers 404 and is never
// listed; what the role or channel membership forbids within the account answers 403; every 4xx is problem+json.
// The table ROUTES must name every operation of the OpenAPI document, so a new route cannot skip the matrix.

/**
 * admin: admins only. work: admins and agents of the channel (the route names a channel or conversation).
 * account: any user of the account. self: a user for themselves, an admin for anyone of the account.
 */
type Access = 'admin' | 'work' | 'account' | 'self';
type Caller = 'adminA' | 'member' | 'outsider' | 'adminB';
/** Refusals first: a destructive call that is allowed must not change what a later refusal is checked on. */
const CALLERS: readonly Caller[] = ['adminB', 'outsider', 'member', 'adminA'];

type Params = Record<string, string>;

interface RouteCase {
  /** "METHOD /path/{template}", exactly as the OpenAPI document names the operation. */
  op: string;
  access: Access;
  /** Path parameters over the fixtures' (see defaultParams); `allowed` says whether this call is expected to succeed. */
  params?: (caller: Caller, allowed: boolean) => Params | Promise<Params>;
  body?: (caller: Caller) => unknown;
  /** The body names an object of account A (a channel), which account B's admin must get 404 for, as in a path. */
  bodyNamesA?: boolean;
  /** Statuses besides 2xx that still mean "past every access check" for this sample. */
  alsoAllowed?: number[];
}

const aiAgentBody = () => ({ name: uniq('Matrix AI'), provider: 'knowledge_base', enabled: false });
const articleBody = () => ({ title: 'Refunds', body: 'Refunds take five working days.' });
// Never matches: the fixture rule must not change how the matrix's conversations are routed.
const ruleBody = () => ({
  name: uniq('Matrix rule'),
  conditions: [{ field: 'subject', operator: 'contains', value: 'matrix-never-matches' }],
  actions: { priority: 'low' },
});

const ROUTES: RouteCase[] = [
  // Channels
  { op: 'GET /v1/channels', access: 'account' },
  {
    op: 'POST /v1/channels',
    access: 'admin',
    body: () => ({ name: 'Matrix channel', emailAddress: `${uniq('created')}@acme.example` }),
  },
  { op: 'GET /v1/channels/{channelId}', access: 'work' },
  { op: 'PATCH /v1/channels/{channelId}', access: 'admin', body: () => ({ name: 'Acme Support' }) },
  { op: 'POST /v1/channels/{channelId}/automatic-mail/preview', access: 'admin', body: () => ({ mail: 'greeting' }) },
  // Removal, secret rotation and a foreign SMTP or IMAP server would break channel 1 for later checks: throwaways.
  { op: 'DELETE /v1/channels/{channelId}', access: 'admin', params: async () => ({ channelId: await throwawayChannel() }) },
  {
    op: 'POST /v1/channels/{channelId}/forwarder-secret',
    access: 'admin',
    params: async () => ({ channelId: await throwawayChannel() }),
  },
  {
    op: 'PUT /v1/channels/{channelId}/forwarding-address',
    access: 'admin',
    // The same address again answers 200.
    body: () => ({ username: 'support', subdomain: 'acme-matrix' }),
  },
  { op: 'GET /v1/channels/{channelId}/forwarding-confirmations', access: 'admin' },
  { op: 'GET /v1/channels/{channelId}/health', access: 'work' },
  { op: 'GET /v1/channels/{channelId}/smtp', access: 'admin' },
  {
    op: 'PUT /v1/channels/{channelId}/smtp',
    access: 'admin',
    params: async () => ({ channelId: await throwawayChannel() }),
    body: () => ({ host: 'smtp.acme.example', port: 587 }),
  },
  { op: 'DELETE /v1/channels/{channelId}/smtp', access: 'admin' },
  // Port 1 refuses at once: the answer is 200 with ok false, quickly.
  { op: 'POST /v1/channels/{channelId}/smtp/test', access: 'admin', body: () => ({ host: '127.0.0.1', port: 1, secure: false }) },
  { op: 'GET /v1/channels/{channelId}/imap', access: 'admin' },
  // OAuth: endpoints given need no request to the provider when starting; a channel without a grant answers 409.
  { op: 'GET /v1/channels/{channelId}/oauth', access: 'admin' },
  {
    op: 'POST /v1/channels/{channelId}/oauth/authorizations',
    access: 'admin',
    body: () => ({
      provider: 'generic',
      clientId: 'matrix',
      authorizationEndpoint: 'http://127.0.0.1:1/authorize',
      tokenEndpoint: 'http://127.0.0.1:1/token',
      imap: { host: '127.0.0.1' },
    }),
  },
  { op: 'DELETE /v1/channels/{channelId}/oauth', access: 'admin', alsoAllowed: [409] },
  // Mailbox imports. An upload is no JSON: its 415 comes after every access check. An ended import answers a cancel 409.
  { op: 'POST /v1/channels/{channelId}/imports', access: 'admin', alsoAllowed: [415] },
  { op: 'GET /v1/channels/{channelId}/imports', access: 'admin' },
  { op: 'GET /v1/channels/{channelId}/imports/{importId}', access: 'admin' },
  { op: 'DELETE /v1/channels/{channelId}/imports/{importId}', access: 'admin', alsoAllowed: [409] },
  { op: 'POST /v1/channels/{channelId}/imports/{importId}/cancel', access: 'admin', alsoAllowed: [409] },
  {
    op: 'PUT /v1/channels/{channelId}/imap',
    access: 'admin',
    params: async () => ({ channelId: await throwawayChannel() }),
    body: () => ({ enabled: false, host: 'imap.acme.example', username: 'support', password: 'secret' }),
  },
  {
    op: 'POST /v1/channels/{channelId}/imap/test',
    access: 'admin',
    body: () => ({ host: '127.0.0.1', port: 1, tls: false, username: 'support', password: 'secret' }),
  },

  // A channel's agents and availability
  { op: 'GET /v1/channels/{channelId}/agents', access: 'work' },
  {
    op: 'PUT /v1/channels/{channelId}/agents/{userId}',
    access: 'admin',
    // Not the outsider: they must stay outside channel 1.
    params: async () => ({ userId: await throwawayUser() }),
    body: () => ({ capacity: 5 }),
  },
  {
    op: 'DELETE /v1/channels/{channelId}/agents/{userId}',
    access: 'admin',
    params: async () => ({ userId: await throwawayUser({ agentOfChannel: true }) }),
  },
  { op: 'PUT /v1/users/{userId}/availability', access: 'self', body: () => ({ available: true }) },

  // AI agents
  { op: 'GET /v1/channels/{channelId}/ai-agents', access: 'work' },
  { op: 'POST /v1/channels/{channelId}/ai-agents', access: 'admin', body: aiAgentBody },
  {
    op: 'PUT /v1/channels/{channelId}/ai-agents/order',
    access: 'admin',
    body: async () => ({ ids: await idsOfChannelList('ai-agents') }),
  },
  { op: 'GET /v1/channels/{channelId}/ai-agents/{aiAgentId}', access: 'work' },
  { op: 'PATCH /v1/channels/{channelId}/ai-agents/{aiAgentId}', access: 'admin', body: () => ({ name: 'Matrix AI' }) },
  {
    op: 'DELETE /v1/channels/{channelId}/ai-agents/{aiAgentId}',
    access: 'admin',
    params: async () => ({ aiAgentId: await throwawayAiAgent() }),
  },

  // Knowledge articles
  { op: 'GET /v1/channels/{channelId}/knowledge-articles', access: 'work' },
  { op: 'POST /v1/channels/{channelId}/knowledge-articles', access: 'admin', body: articleBody },
  { op: 'GET /v1/channels/{channelId}/knowledge-articles/{articleId}', access: 'work' },
  { op: 'PUT /v1/channels/{channelId}/knowledge-articles/{articleId}', access: 'admin', body: articleBody },
  {
    op: 'DELETE /v1/channels/{channelId}/knowledge-articles/{articleId}',
    access: 'admin',
    params: async () => ({ articleId: await throwawayArticle() }),
  },

  // Routing rules
  { op: 'GET /v1/channels/{channelId}/routing-rules', access: 'work' },
  { op: 'POST /v1/channels/{channelId}/routing-rules', access: 'admin', body: ruleBody },
  {
    op: 'PUT /v1/channels/{channelId}/routing-rules/order',
    access: 'admin',
    body: async () => ({ ids: await idsOfChannelList('routing-rules') }),
  },
  { op: 'GET /v1/channels/{channelId}/routing-rules/{ruleId}', access: 'work' },
  { op: 'PUT /v1/channels/{channelId}/routing-rules/{ruleId}', access: 'admin', body: ruleBody },
  {
    op: 'DELETE /v1/channels/{channelId}/routing-rules/{ruleId}',
    access: 'admin',
    params: async () => ({ ruleId: await throwawayRule() }),
  },

  // Teams
  { op: 'GET /v1/teams', access: 'account' },
  { op: 'POST /v1/teams', access: 'admin', body: () => ({ name: uniq('Matrix team') }) },
  { op: 'GET /v1/teams/{teamId}', access: 'account' },
  { op: 'PATCH /v1/teams/{teamId}', access: 'admin', body: () => ({ name: 'Billing' }) },
  { op: 'PUT /v1/teams/{teamId}/members', access: 'admin', body: () => ({ userIds: [fx.member.id] }) },
  { op: 'DELETE /v1/teams/{teamId}', access: 'admin', params: async () => ({ teamId: await throwawayTeam() }) },

  // Users and API keys ({userId} is the member unless said otherwise: the outsider asks for someone else)
  { op: 'GET /v1/me', access: 'account' },
  { op: 'GET /v1/users', access: 'account' },
  {
    op: 'POST /v1/users',
    access: 'admin',
    body: () => ({ name: 'New Agent', email: `${uniq('new-user')}@acme.example`, role: 'agent' }),
  },
  { op: 'GET /v1/users/{userId}', access: 'account' },
  { op: 'PATCH /v1/users/{userId}', access: 'self', body: () => ({ name: 'Alice Agent' }) },
  { op: 'DELETE /v1/users/{userId}', access: 'admin', params: async () => ({ userId: await throwawayUser() }) },
  { op: 'GET /v1/users/{userId}/api-keys', access: 'self' },
  { op: 'POST /v1/users/{userId}/api-keys', access: 'self', body: () => ({ name: 'matrix' }) },
  {
    op: 'DELETE /v1/users/{userId}/api-keys/{keyId}',
    access: 'self',
    // A fresh key of the member each time: their own key must keep working.
    params: async () => ({ keyId: (await createApiKey(stack.db, fx.member.id, 'throwaway')).id }),
  },

  // Conversations
  { op: 'GET /v1/conversations', access: 'account' },
  {
    op: 'POST /v1/conversations',
    access: 'work',
    bodyNamesA: true,
    body: () => ({
      channelId: fx.channel.id,
      contact: { email: `${uniq('form')}@example.com`, name: 'Form Customer' },
      subject: 'From the web form',
      message: 'Hello from the web form.',
    }),
  },
  { op: 'GET /v1/conversations/{conversationId}', access: 'work' },
  { op: 'GET /v1/conversations/{conversationId}/attachments/{attachmentId}', access: 'work' },
  { op: 'POST /v1/conversations/{conversationId}/replies', access: 'work', body: () => ({ text: 'Thanks, we are on it.' }) },
  { op: 'POST /v1/conversations/{conversationId}/replies/preview', access: 'work', body: () => ({ text: 'A draft' }) },
  { op: 'PUT /v1/conversations/{conversationId}/language', access: 'work', body: () => ({ language: 'en' }) },
  // Past the access checks, a body that is not multipart/form-data is answered 415.
  { op: 'POST /v1/conversations/{conversationId}/attachments', access: 'work', alsoAllowed: [415] },
  { op: 'GET /v1/conversations/{conversationId}/participants', access: 'work' },
  { op: 'GET /v1/conversations/{conversationId}/replies/scheduled', access: 'work' },
  // A reply that does not wait (the channel has no undo grace period): an allowed caller is answered 409 reply-already-sent.
  {
    op: 'DELETE /v1/conversations/{conversationId}/replies/{replyId}',
    access: 'work',
    params: async (): Promise<Params> => ({ replyId: await writtenReply() }),
    alsoAllowed: [409],
  },
  { op: 'PUT /v1/conversations/{conversationId}/drafting', access: 'work' },
  { op: 'DELETE /v1/conversations/{conversationId}/drafting', access: 'work' },
  // Resolving and reopening change the conversation: each allowed call gets one of its own.
  {
    op: 'POST /v1/conversations/{conversationId}/resolve',
    access: 'work',
    params: async (_caller, allowed): Promise<Params> => (allowed ? { conversationId: await freshConversation() } : {}),
  },
  {
    op: 'POST /v1/conversations/{conversationId}/reopen',
    access: 'work',
    params: async (_caller, allowed): Promise<Params> => (allowed ? { conversationId: await resolvedConversation() } : {}),
  },
  // Not in spam: an allowed caller is answered 409 not-spam, which still proves access.
  { op: 'POST /v1/conversations/{conversationId}/not-spam', access: 'work', alsoAllowed: [409] },
  { op: 'PUT /v1/conversations/{conversationId}/assignment', access: 'work', body: () => ({ assigneeId: fx.member.id }) },
  { op: 'PUT /v1/conversations/{conversationId}/labels', access: 'work', body: () => ({ labels: ['matrix'] }) },
  { op: 'POST /v1/conversations/{conversationId}/labels', access: 'work', body: () => ({ label: 'matrix' }) },
  { op: 'DELETE /v1/conversations/{conversationId}/labels/{label}', access: 'work' },
  { op: 'POST /v1/conversations/{conversationId}/notes', access: 'work', body: () => ({ text: 'An internal note' }) },

  // Contacts: account-wide, every user reads and edits them
  { op: 'GET /v1/contacts', access: 'account' },
  { op: 'GET /v1/contacts/{contactId}', access: 'account' },
  { op: 'PATCH /v1/contacts/{contactId}', access: 'account', body: () => ({ name: 'Ann Example' }) },
  // Erasure is for good: the allowed call erases a throwaway contact, the refused ones name the fixture's.
  {
    op: 'DELETE /v1/contacts/{contactId}',
    access: 'admin',
    params: async (_caller, allowed): Promise<Params> => (allowed ? { contactId: await throwawayContact() } : {}),
  },
  {
    op: 'GET /v1/contacts/{contactId}/erasure',
    access: 'admin',
    params: async (_caller, allowed): Promise<Params> => (allowed ? { contactId: await throwawayContact({ erased: true }) } : {}),
  },
  // Webhooks: the account's admins subscribe; a delivery the fixture's subscriber never took is redelivered (202)
  { op: 'GET /v1/webhooks', access: 'admin' },
  { op: 'POST /v1/webhooks', access: 'admin', body: () => ({ url: 'http://127.0.0.1:9/matrix', events: ['message.sent'] }) },
  { op: 'GET /v1/webhooks/{webhookId}', access: 'admin' },
  { op: 'PATCH /v1/webhooks/{webhookId}', access: 'admin', body: () => ({ description: 'Matrix subscriber' }) },
  {
    op: 'DELETE /v1/webhooks/{webhookId}',
    access: 'admin',
    params: async (_caller, allowed): Promise<Params> => (allowed ? { webhookId: await throwawayWebhook() } : {}),
  },
  { op: 'POST /v1/webhooks/{webhookId}/secret', access: 'admin' },
  { op: 'GET /v1/webhooks/{webhookId}/deliveries', access: 'admin' },
  { op: 'POST /v1/webhooks/{webhookId}/deliveries/{deliveryId}/redeliver', access: 'admin', alsoAllowed: [409] },

  // The codec server of the Temporal UI: any admin (payloads name no account); nothing to decode is an empty answer
  { op: 'POST /codec/decode', access: 'admin', body: () => ({ payloads: [] }) },
  { op: 'POST /codec/encode', access: 'admin', body: () => ({ payloads: [] }) },

  // Account
  { op: 'GET /v1/account/settings', access: 'account' },
  { op: 'PATCH /v1/account/settings', access: 'admin', body: () => ({ retentionDays: null }) },

  // Inbound mail and its quarantine
  { op: 'GET /v1/inbound-messages', access: 'admin' },
  // The quarantined fixture (no From) is rejected again: 409 comes after every access check.
  { op: 'POST /v1/inbound-messages/{inboundMessageId}/reprocess', access: 'admin', alsoAllowed: [409] },

  // Reports
  { op: 'GET /v1/reports/csat', access: 'account' },
  { op: 'GET /v1/reports/conversations', access: 'account' },
];

interface User {
  id: string;
  apiKey: string;
}

interface Fixtures {
  accountA: string;
  adminA: User;
  /** An agent of channel 1. */
  member: User;
  /** An agent of account A who belongs to no channel. */
  outsider: User;
  adminB: User;
  channel: { id: string; forwarderSecret: string };
  conversationId: string;
  attachmentId: string;
  contactId: string;
  /** A mail of channel 1 in the quarantine. */
  inboundMessageId: string;
  threadedInboundMessageId: string;
  aiAgentId: string;
  articleId: string;
  ruleId: string;
  teamId: string;
  memberKeyId: string;
  /** A mailbox import of channel 1 that has ended. */
  importId: string;
  /** Account A's webhook subscription, and one of its deliveries. */
  webhookId: string;
  deliveryId: string;
  b: {
    channel: { id: string; forwarderSecret: string };
    conversationId: string;
    contactId: string;
    inboundMessageId: string;
    teamId: string;
  };
}

let stack: TestStack;
let fx: Fixtures;
let counter = 0;
const uniq = (prefix: string) => `${prefix}-${++counter}`;

interface Answer {
  status: number;
  contentType: string;
  body: any;
}

/** One request; JSON bodies parsed, anything else (an attachment) kept as text. */
async function send(authorization: string | undefined, method: string, path: string, body?: unknown): Promise<Answer> {
  const headers: Record<string, string> = {};
  if (authorization !== undefined) headers.authorization = authorization;
  if (body !== undefined) headers['content-type'] = 'application/json';
  const response = await fetch(`${stack.api.url}${path}`, {
    method,
    headers,
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const contentType = response.headers.get('content-type') ?? '';
  const text = await response.text();
  let parsed: unknown = text;
  if (text && contentType.includes('json')) {
    try {
      parsed = JSON.parse(text);
    } catch {
      // Left as text: the problem+json check names it.
    }
  }
  return { status: response.status, contentType, body: parsed };
}

const api = (apiKey: string, method: string, path: string, body?: unknown) => send(`Bearer ${apiKey}`, method, path, body);

/** A fixture call that must succeed. */
async function must(apiKey: string, method: string, path: string, body?: unknown) {
  const answer = await api(apiKey, method, path, body);
  if (answer.status >= 300) throw new Error(`fixture ${method} ${path}: ${answer.status} ${JSON.stringify(answer.body)}`);
  return answer.body;
}

async function waitForStage(apiKey: string, conversationId: string, stage: string) {
  await eventually(async () => {
    const { body } = await api(apiKey, 'GET', `/v1/conversations/${conversationId}`);
    return body.stage === stage ? true : undefined;
  });
}

/** A new conversation of channel 1, assigned to one of its agents. */
async function freshConversation(): Promise<string> {
  const posted = await postMail(
    stack.api.url,
    fx.channel,
    customerMail({ messageId: `${uniq('fresh')}@example.com`, to: 'support@acme.example' }),
  );
  if (posted.status !== 202) throw new Error(`fixture mail: ${posted.status} ${JSON.stringify(posted.body)}`);
  await waitForStage(fx.adminA.apiKey, posted.body.conversationId, 'assigned');
  return posted.body.conversationId;
}

/** A reply of account A's admin in channel 1's conversation. */
async function writtenReply(): Promise<string> {
  const sent = await must(fx.adminA.apiKey, 'POST', `/v1/conversations/${fx.conversationId}/replies`, { text: 'Written' });
  return sent.outboundMessageId;
}

async function resolvedConversation(): Promise<string> {
  const conversationId = await freshConversation();
  await must(fx.adminA.apiKey, 'POST', `/v1/conversations/${conversationId}/resolve`);
  return conversationId;
}

async function throwawayChannel(): Promise<string> {
  const channel = await createChannel(stack.db, {
    accountId: fx.accountA,
    name: 'Throwaway',
    emailAddress: `${uniq('throwaway')}@acme.example`,
  });
  return channel.id;
}

async function throwawayUser(options: { agentOfChannel?: boolean } = {}): Promise<string> {
  const user = await createUser(stack.db, {
    accountId: fx.accountA,
    name: 'Throwaway User',
    email: `${uniq('throwaway')}@acme.example`,
    role: 'agent',
  });
  if (options.agentOfChannel) await addAgentToChannel(stack.db, fx.channel.id, user.id);
  return user.id;
}

/** A contact of account A without conversations; `erased`: one whose erasure is done. */
async function throwawayContact(options: { erased?: boolean } = {}): Promise<string> {
  const id = randomUUID();
  await stack.db
    .insertInto('contacts')
    .values({
      id,
      account_id: fx.accountA,
      email: options.erased ? null : `${uniq('throwaway')}@example.com`,
      ...(options.erased ? { erasure_requested_at: new Date(), erased_at: new Date() } : {}),
    })
    .execute();
  return id;
}

/** A webhook subscription of account A, to a port where nobody listens. */
async function throwawayWebhook(): Promise<string> {
  const created = await must(fx.adminA.apiKey, 'POST', '/v1/webhooks', {
    url: 'http://127.0.0.1:9/matrix',
    events: ['message.received'],
  });
  return created.id as string;
}

/** A mailbox import of channel 1 that has ended. */
async function endedImport(): Promise<string> {
  const id = randomUUID();
  await stack.db
    .insertInto('mailbox_imports')
    .values({
      id,
      account_id: fx.accountA,
      channel_id: fx.channel.id,
      state: 'completed',
      format: 'mbox',
      compressed: false,
      not_imported: '[]',
    })
    .execute();
  return id;
}

const channelPath = (suffix: string) => `/v1/channels/${fx.channel.id}${suffix}`;
const throwawayAiAgent = async () => (await must(fx.adminA.apiKey, 'POST', channelPath('/ai-agents'), aiAgentBody())).id;
const throwawayArticle = async () => (await must(fx.adminA.apiKey, 'POST', channelPath('/knowledge-articles'), articleBody())).id;
const throwawayRule = async () => (await must(fx.adminA.apiKey, 'POST', channelPath('/routing-rules'), ruleBody())).id;
const throwawayTeam = async () => (await must(fx.adminA.apiKey, 'POST', '/v1/teams', { name: uniq('Throwaway team') })).id;

/** Every id of one of channel 1's ordered lists, as the order routes want them. */
async function idsOfChannelList(list: 'ai-agents' | 'routing-rules'): Promise<string[]> {
  const { data } = await must(fx.adminA.apiKey, 'GET', channelPath(`/${list}`));
  return data.map((item: { id: string }) => item.id);
}

function defaultParams(): Params {
  return {
    channelId: fx.channel.id,
    conversationId: fx.conversationId,
    attachmentId: fx.attachmentId,
    contactId: fx.contactId,
    inboundMessageId: fx.inboundMessageId,
    aiAgentId: fx.aiAgentId,
    articleId: fx.articleId,
    ruleId: fx.ruleId,
    teamId: fx.teamId,
    userId: fx.member.id,
    keyId: fx.memberKeyId,
    importId: fx.importId,
    webhookId: fx.webhookId,
    deliveryId: fx.deliveryId,
    replyId: randomUUID(), // the DELETE of a reply names its own
    label: 'matrix',
  };
}

function fill(template: string, params: Params): string {
  return template.replace(/\{(\w+)\}/g, (_match, name: string) => {
    const value = params[name];
    if (value === undefined) throw new Error(`no value for {${name}} in ${template}`);
    return encodeURIComponent(value);
  });
}

const namesA = (route: RouteCase) => route.op.includes('{') || route.bodyNamesA === true;

/** What the rule says `caller` gets: through every access check ('allowed'), or the refusal. */
function expectedFor(route: RouteCase, caller: Caller): 'allowed' | 403 | 404 {
  if (caller === 'adminB') return namesA(route) ? 404 : 'allowed';
  if (caller === 'adminA') return 'allowed';
  switch (route.access) {
    case 'admin':
      return 403;
    case 'work':
    case 'self':
      // The member works channel 1 and is the {userId} of 'self' routes; the outsider is neither.
      return caller === 'member' ? 'allowed' : 403;
    case 'account':
      return 'allowed';
  }
}

const keyOf = (caller: Caller) => fx[caller].apiKey;

/** What is wrong with a 4xx answer that is not RFC 9457 problem+json; undefined when it is. */
function problemFault(answer: Answer): string | undefined {
  if (answer.status < 400 || answer.status >= 500) return undefined;
  if (!answer.contentType.includes('application/problem+json')) return `content-type ${answer.contentType || 'none'}`;
  const body = answer.body;
  if (typeof body !== 'object' || body === null) return 'a body that is no JSON object';
  if (typeof body.type !== 'string' || typeof body.title !== 'string' || body.status !== answer.status)
    return `body ${JSON.stringify(body).slice(0, 200)} without type, title and the status`;
  return undefined;
}

const describeAnswer = (answer: Answer) =>
  `${answer.status}${typeof answer.body === 'object' && answer.body?.detail ? ` (${answer.body.detail})` : ''}`;

interface Operation {
  op: string;
  security: Array<Record<string, unknown>>;
}

let operations: Operation[] = [];
const apiKeyOperations = () => operations.filter((o) => o.security.some((scheme) => 'apiKey' in scheme)).map((o) => o.op);

describe('access matrix: every operation × admin, agent of the channel, agent of none, admin of another account', () => {
  beforeAll(async () => {
    stack = await startTestStack();
    const { db } = stack;
    // CSAT at once, so that the CSAT report has figures of both accounts to leak.
    const a = await seedSupportTeam(db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      csat: { delaySeconds: 0 },
    });
    const b = await seedSupportTeam(db, { name: 'Other Support', emailAddress: 'help@other.example', csat: { delaySeconds: 0 } });
    const outsider = await createUser(db, {
      accountId: a.account.id,
      name: 'Olga Outsider',
      email: 'olga@acme.example',
      role: 'agent',
    });
    const member = a.agents[0]!;
    const memberKey = await createApiKey(db, member.id, 'second');
    fx = {
      accountA: a.account.id,
      adminA: a.admin,
      member,
      outsider,
      adminB: b.admin,
      channel: a.channel,
      memberKeyId: memberKey.id,
    } as Fixtures;
    fx.importId = await endedImport();
    // Subscribed before the fixture's mail, whose message.received then is one of its deliveries.
    fx.webhookId = await throwawayWebhook();

    // Channel 1's conversation, with an attachment.
    const raw = await new MailComposer({
      from: '"Ann Example" <ann@example.com>',
      to: 'support@acme.example',
      subject: 'Wrong invoice',
      messageId: '<matrix-main@example.com>',
      text: 'The invoice total is wrong.',
      attachments: [{ filename: 'invoice.txt', content: 'total: 42\n', contentType: 'text/plain' }],
    })
      .compile()
      .build();
    const posted = await postMail(stack.api.url, a.channel, raw);
    expect(posted.status).toBe(202);
    fx.conversationId = posted.body.conversationId;
    fx.threadedInboundMessageId = posted.body.inboundMessageId;
    await waitForStage(a.admin.apiKey, fx.conversationId, 'assigned');
    const detail = await must(a.admin.apiKey, 'GET', `/v1/conversations/${fx.conversationId}`);
    fx.attachmentId = detail.messages[0].attachments[0].id;
    fx.deliveryId = (
      await db.selectFrom('webhook_deliveries').select('id').where('subscription_id', '=', fx.webhookId).executeTakeFirstOrThrow()
    ).id;
    fx.contactId = detail.contact.id;

    // A mail without a sender stays in the quarantine.
    const rejected = await postMail(
      stack.api.url,
      a.channel,
      'To: support@acme.example\r\nSubject: No sender\r\nMessage-ID: <matrix-rejected@example.com>\r\n\r\nHello\r\n',
    );
    expect(rejected.status).toBe(400);
    const quarantined = await db
      .selectFrom('inbound_messages')
      .select('id')
      .where('channel_id', '=', a.channel.id)
      .where('status', '=', 'rejected')
      .executeTakeFirstOrThrow();
    fx.inboundMessageId = quarantined.id;

    // Channel 1's AI agent is disabled: it must not take the matrix's conversations from the human agents.
    fx.aiAgentId = await throwawayAiAgent();
    fx.articleId = await throwawayArticle();
    fx.ruleId = await throwawayRule();
    fx.teamId = (await must(a.admin.apiKey, 'POST', '/v1/teams', { name: 'Billing', userIds: [member.id] })).id;

    // Account B: its own channel, conversation, contact, team; and a resolved conversation in each account for CSAT.
    const postedB = await postMail(
      stack.api.url,
      b.channel,
      customerMail({ messageId: 'matrix-b@example.com', to: 'help@other.example', subject: 'Other question' }),
    );
    expect(postedB.status).toBe(202);
    await waitForStage(b.admin.apiKey, postedB.body.conversationId, 'assigned');
    const detailB = await must(b.admin.apiKey, 'GET', `/v1/conversations/${postedB.body.conversationId}`);
    await must(b.admin.apiKey, 'POST', `/v1/conversations/${postedB.body.conversationId}/resolve`);
    fx.b = {
      channel: b.channel,
      conversationId: postedB.body.conversationId,
      contactId: detailB.contact.id,
      inboundMessageId: postedB.body.inboundMessageId,
      teamId: (await must(b.admin.apiKey, 'POST', '/v1/teams', { name: 'Other team' })).id,
    };
    await resolvedConversation();
    for (const [apiKey, channelId] of [
      [a.admin.apiKey, a.channel.id],
      [b.admin.apiKey, b.channel.id],
    ] as const) {
      await eventually(async () => {
        const { body } = await api(apiKey, 'GET', '/v1/reports/csat');
        return body.groups?.some(
          (g: { channelId: string; surveysSent: number }) => g.channelId === channelId && g.surveysSent > 0,
        )
          ? true
          : undefined;
      });
    }

    const doc = (await (await fetch(`${stack.api.url}/openapi.json`)).json()) as any;
    operations = Object.entries(doc.paths as Record<string, Record<string, any>>).flatMap(([path, item]) =>
      ['get', 'put', 'post', 'patch', 'delete']
        .filter((method) => item[method])
        .map((method) => ({ op: `${method.toUpperCase()} ${path}`, security: item[method].security ?? doc.security ?? [] })),
    );
  });

  afterAll(async () => {
    await stack?.stop();
  });

  it('documents an API key for every /v1 operation but the forwarder’s', () => {
    const withoutApiKey = operations
      .filter((o) => o.op.split(' ')[1]!.startsWith('/v1/') && !apiKeyOperations().includes(o.op))
      .map((o) => o.op);
    // The OAuth callback is the provider's redirect of an admin's browser: its state is its credential.
    expect(withoutApiKey).toEqual(['POST /v1/channels/{channelId}/inbound', 'GET /v1/oauth/callback']);
  });

  it('answers 401 problem+json to every API-key operation without a key, with an unknown, a revoked or a channel secret', async () => {
    const created = await must(fx.member.apiKey, 'POST', `/v1/users/${fx.member.id}/api-keys`, { name: 'to revoke' });
    expect((await api(fx.member.apiKey, 'DELETE', `/v1/users/${fx.member.id}/api-keys/${created.id}`)).status).toBe(204);
    const credentials: Record<string, string | undefined> = {
      'no Authorization': undefined,
      'an unknown key': `Bearer mr_${randomBytes(24).toString('base64url')}`,
      'a revoked key': `Bearer ${created.key}`,
      "a channel's forwarder secret": `Bearer ${fx.channel.forwarderSecret}`,
    };
    const mismatches: string[] = [];
    for (const op of apiKeyOperations()) {
      const [method, template] = op.split(' ') as [string, string];
      // Real ids of account A: the key, not a missing object, must be what is refused.
      const path = fill(template, defaultParams());
      for (const [name, authorization] of Object.entries(credentials)) {
        const answer = await send(authorization, method, path, ['POST', 'PUT', 'PATCH'].includes(method) ? {} : undefined);
        if (answer.status !== 401) mismatches.push(`${op} with ${name}: expected 401, got ${describeAnswer(answer)}`);
        else {
          const fault = problemFault(answer);
          if (fault) mismatches.push(`${op} with ${name}: 401 is not problem+json: ${fault}`);
        }
      }
    }
    expect(mismatches).toEqual([]);
    // The member's own key still works.
    expect((await api(fx.member.apiKey, 'GET', '/v1/me')).status).toBe(200);
  });

  it('has one ROUTES entry for each API-key operation of the OpenAPI document, and none stale', () => {
    const documented = apiKeyOperations();
    const listed = ROUTES.map((route) => route.op);
    expect({
      missingFromRoutes: documented.filter((op) => !listed.includes(op)),
      staleInRoutes: listed.filter((op) => !documented.includes(op)),
      listedTwice: listed.filter((op, index) => listed.indexOf(op) !== index),
    }).toEqual({ missingFromRoutes: [], staleInRoutes: [], listedTwice: [] });
  });

  it(
    'answers each caller of each operation as its access class says, every 4xx as problem+json',
    { timeout: 600_000 },
    async () => {
      const documented = new Set(apiKeyOperations());
      const mismatches: string[] = [];
      for (const route of ROUTES.filter((r) => documented.has(r.op))) {
        const [method, template] = route.op.split(' ') as [string, string];
        for (const caller of CALLERS) {
          const expected = expectedFor(route, caller);
          const params = { ...defaultParams(), ...(await route.params?.(caller, expected === 'allowed')) };
          const body = route.body ? await route.body(caller) : undefined;
          const answer = await api(keyOf(caller), method, fill(template, params), body);
          const where = `${route.op} as ${caller} (${route.access})`;
          if (answer.status >= 500) mismatches.push(`${where}: expected ${expected}, got ${describeAnswer(answer)}`);
          else if (expected === 'allowed') {
            const ok = (answer.status >= 200 && answer.status < 300) || route.alsoAllowed?.includes(answer.status);
            if (!ok) mismatches.push(`${where}: expected allowed (2xx), got ${describeAnswer(answer)}`);
          } else if (answer.status !== expected) mismatches.push(`${where}: expected ${expected}, got ${describeAnswer(answer)}`);
          const fault = problemFault(answer);
          if (fault) mismatches.push(`${where}: ${answer.status} is not problem+json: ${fault}`);
        }
      }
      expect(mismatches).toEqual([]);
    },
  );

  it("refuses an object of account A named under B's own objects, in a body or a query, and an agent's own promotion", async () => {
    const a = fx;
    const b = fx.b;
    const inB = (suffix: string) => `/v1/channels/${b.channel.id}${suffix}`;
    const assignTo = (assignee: object) => ({ ...ruleBody(), actions: { assignTo: assignee } });
    // [caller, method, path, body, expected]: a route that checks only the outer object would answer 2xx here.
    const cases: Array<[Caller, string, string, unknown, number]> = [
      ['adminB', 'GET', inB(`/ai-agents/${a.aiAgentId}`), undefined, 404],
      ['adminB', 'PATCH', inB(`/ai-agents/${a.aiAgentId}`), { name: 'Taken' }, 404],
      ['adminB', 'DELETE', inB(`/ai-agents/${a.aiAgentId}`), undefined, 404],
      ['adminB', 'GET', inB(`/knowledge-articles/${a.articleId}`), undefined, 404],
      ['adminB', 'PUT', inB(`/knowledge-articles/${a.articleId}`), articleBody(), 404],
      ['adminB', 'DELETE', inB(`/knowledge-articles/${a.articleId}`), undefined, 404],
      ['adminB', 'GET', inB(`/routing-rules/${a.ruleId}`), undefined, 404],
      ['adminB', 'PUT', inB(`/routing-rules/${a.ruleId}`), ruleBody(), 404],
      ['adminB', 'DELETE', inB(`/routing-rules/${a.ruleId}`), undefined, 404],
      ['adminB', 'PUT', inB(`/agents/${a.member.id}`), { capacity: 5 }, 404],
      ['adminB', 'DELETE', inB(`/agents/${a.member.id}`), undefined, 404],
      ['adminB', 'GET', `/v1/conversations/${b.conversationId}/attachments/${a.attachmentId}`, undefined, 404],
      ['adminB', 'DELETE', `/v1/users/${a.adminB.id}/api-keys/${a.memberKeyId}`, undefined, 404],
      ['adminB', 'PUT', `/v1/conversations/${b.conversationId}/assignment`, { assigneeId: a.member.id }, 422],
      ['adminB', 'PUT', `/v1/teams/${b.teamId}/members`, { userIds: [a.member.id] }, 422],
      ['adminB', 'POST', '/v1/teams', { name: 'Poached', userIds: [a.member.id] }, 422],
      ['adminB', 'POST', inB('/routing-rules'), assignTo({ kind: 'agent', agentId: a.member.id }), 422],
      ['adminB', 'POST', inB('/routing-rules'), assignTo({ kind: 'team', teamId: a.teamId }), 422],
      ['adminB', 'POST', inB('/routing-rules'), assignTo({ kind: 'ai_agent', aiAgentId: a.aiAgentId }), 422],
      ['adminB', 'PUT', inB('/ai-agents/order'), { ids: [a.aiAgentId] }, 422],
      ['adminB', 'PUT', inB('/routing-rules/order'), { ids: [a.ruleId] }, 422],
      ['adminB', 'GET', `/v1/reports/conversations?channelId=${a.channel.id}`, undefined, 404],
      ['adminA', 'GET', `/v1/channels/${b.channel.id}`, undefined, 404],
      ['adminA', 'GET', `/v1/conversations/${b.conversationId}`, undefined, 404],
      ['adminA', 'GET', `/v1/contacts/${b.contactId}`, undefined, 404],
      ['adminA', 'GET', `/v1/teams/${b.teamId}`, undefined, 404],
      ['adminA', 'GET', `/v1/users/${a.adminB.id}`, undefined, 404],
      ['outsider', 'GET', `/v1/reports/conversations?channelId=${a.channel.id}`, undefined, 403],
      // An agent renames themselves, but never makes themselves admin.
      ['member', 'PATCH', `/v1/users/${a.member.id}`, { role: 'admin' }, 403],
      ['member', 'PUT', `/v1/conversations/${a.conversationId}/assignment`, { assigneeId: a.outsider.id }, 422],
    ];
    const mismatches: string[] = [];
    for (const [caller, method, path, body, expected] of cases) {
      const answer = await api(keyOf(caller), method, path, body);
      if (answer.status !== expected)
        mismatches.push(`${method} ${path} as ${caller}: expected ${expected}, got ${describeAnswer(answer)}`);
      const fault = problemFault(answer);
      if (fault) mismatches.push(`${method} ${path} as ${caller}: ${answer.status} is not problem+json: ${fault}`);
    }
    expect(mismatches).toEqual([]);
  });

  it("never lists another account's objects, nor an agent another channel's", async () => {
    /** Every id of a list, page by page where it pages. */
    async function ids(apiKey: string, path: string): Promise<string[]> {
      const found: string[] = [];
      let cursor: string | null = null;
      do {
        const separator = path.includes('?') ? '&' : '?';
        const page: Answer = await api(apiKey, 'GET', `${path}${cursor ? `${separator}cursor=${cursor}` : ''}`);
        if (page.status !== 200) return [`${path}: ${describeAnswer(page)}`];
        found.push(...page.body.data.map((item: { id?: string; userId?: string }) => item.id ?? item.userId));
        cursor = page.body.nextCursor ?? null;
      } while (cursor);
      return found;
    }
    /** The channels a report has figures for (groupBy channel). */
    async function reportChannels(apiKey: string, path: string): Promise<string[]> {
      const answer = await api(apiKey, 'GET', path);
      if (answer.status !== 200) return [`${path}: ${describeAnswer(answer)}`];
      return answer.body.groups
        .filter((g: { surveysSent?: number; periods?: Array<{ created: number }> }) =>
          g.surveysSent !== undefined ? g.surveysSent > 0 : g.periods!.some((p) => p.created > 0),
        )
        .map((g: { channelId: string }) => g.channelId);
    }

    const a = fx;
    const b = fx.b;
    const lists: Array<{ caller: Caller; list: string; ids: () => Promise<string[]>; shows: string[]; hides: string[] }> = [
      {
        caller: 'adminA',
        list: 'channels',
        ids: () => ids(a.adminA.apiKey, '/v1/channels'),
        shows: [a.channel.id],
        hides: [b.channel.id],
      },
      {
        caller: 'adminB',
        list: 'channels',
        ids: () => ids(a.adminB.apiKey, '/v1/channels'),
        shows: [b.channel.id],
        hides: [a.channel.id],
      },
      {
        caller: 'member',
        list: 'channels',
        ids: () => ids(a.member.apiKey, '/v1/channels'),
        shows: [a.channel.id],
        hides: [b.channel.id],
      },
      {
        caller: 'outsider',
        list: 'channels',
        ids: () => ids(a.outsider.apiKey, '/v1/channels'),
        shows: [],
        hides: [a.channel.id, b.channel.id],
      },
      {
        caller: 'adminA',
        list: 'conversations',
        ids: () => ids(a.adminA.apiKey, '/v1/conversations?limit=100'),
        shows: [a.conversationId],
        hides: [b.conversationId],
      },
      {
        caller: 'adminB',
        list: 'conversations',
        ids: () => ids(a.adminB.apiKey, '/v1/conversations?limit=100'),
        shows: [b.conversationId],
        hides: [a.conversationId],
      },
      {
        caller: 'adminB',
        list: "conversations filtered by A's channel, contact and agent",
        ids: () =>
          ids(a.adminB.apiKey, `/v1/conversations?channelId=${a.channel.id}&contactId=${a.contactId}&assigneeId=${a.member.id}`),
        shows: [],
        hides: [a.conversationId],
      },
      {
        caller: 'outsider',
        list: 'conversations',
        ids: () => ids(a.outsider.apiKey, '/v1/conversations?limit=100'),
        shows: [],
        hides: [a.conversationId, b.conversationId],
      },
      {
        caller: 'outsider',
        list: 'conversations filtered by channel 1',
        ids: () => ids(a.outsider.apiKey, `/v1/conversations?channelId=${a.channel.id}`),
        shows: [],
        hides: [a.conversationId],
      },
      {
        caller: 'member',
        list: "the contact's conversations",
        ids: async () =>
          (await must(a.member.apiKey, 'GET', `/v1/contacts/${a.contactId}`)).conversations.map((c: { id: string }) => c.id),
        shows: [a.conversationId],
        hides: [b.conversationId],
      },
      {
        caller: 'outsider',
        list: "the contact's conversations",
        ids: async () =>
          (await must(a.outsider.apiKey, 'GET', `/v1/contacts/${a.contactId}`)).conversations.map((c: { id: string }) => c.id),
        shows: [],
        hides: [a.conversationId],
      },
      {
        caller: 'adminA',
        list: 'contacts',
        ids: () => ids(a.adminA.apiKey, '/v1/contacts'),
        shows: [a.contactId],
        hides: [b.contactId],
      },
      {
        caller: 'adminB',
        list: 'contacts',
        ids: () => ids(a.adminB.apiKey, '/v1/contacts'),
        shows: [b.contactId],
        hides: [a.contactId],
      },
      {
        caller: 'adminB',
        list: "contacts by A's contact's address",
        ids: () => ids(a.adminB.apiKey, '/v1/contacts?email=ann@example.com&q=ann'),
        shows: [b.contactId],
        hides: [a.contactId],
      },
      {
        caller: 'adminA',
        list: 'users',
        ids: () => ids(a.adminA.apiKey, '/v1/users'),
        shows: [a.adminA.id, a.member.id, a.outsider.id],
        hides: [a.adminB.id],
      },
      {
        caller: 'adminB',
        list: 'users',
        ids: () => ids(a.adminB.apiKey, '/v1/users'),
        shows: [a.adminB.id],
        hides: [a.adminA.id, a.member.id, a.outsider.id],
      },
      { caller: 'adminA', list: 'teams', ids: () => ids(a.adminA.apiKey, '/v1/teams'), shows: [a.teamId], hides: [b.teamId] },
      { caller: 'adminB', list: 'teams', ids: () => ids(a.adminB.apiKey, '/v1/teams'), shows: [b.teamId], hides: [a.teamId] },
      {
        caller: 'member',
        list: 'own API keys',
        ids: () => ids(a.member.apiKey, `/v1/users/${a.member.id}/api-keys`),
        shows: [a.memberKeyId],
        hides: [],
      },
      {
        caller: 'adminA',
        list: 'inbound messages',
        ids: () => ids(a.adminA.apiKey, '/v1/inbound-messages?limit=200'),
        shows: [a.inboundMessageId, a.threadedInboundMessageId],
        hides: [b.inboundMessageId],
      },
      {
        caller: 'adminB',
        list: 'inbound messages',
        ids: () => ids(a.adminB.apiKey, '/v1/inbound-messages?limit=200'),
        shows: [b.inboundMessageId],
        hides: [a.inboundMessageId, a.threadedInboundMessageId],
      },
      {
        caller: 'adminB',
        list: "inbound messages filtered by A's channel",
        ids: () => ids(a.adminB.apiKey, `/v1/inbound-messages?channelId=${a.channel.id}`),
        shows: [],
        hides: [a.inboundMessageId, a.threadedInboundMessageId],
      },
      {
        caller: 'adminA',
        list: 'conversations report',
        ids: () => reportChannels(a.adminA.apiKey, '/v1/reports/conversations'),
        shows: [a.channel.id],
        hides: [b.channel.id],
      },
      {
        caller: 'adminB',
        list: 'conversations report',
        ids: () => reportChannels(a.adminB.apiKey, '/v1/reports/conversations'),
        shows: [b.channel.id],
        hides: [a.channel.id],
      },
      {
        caller: 'outsider',
        list: 'conversations report',
        ids: () => reportChannels(a.outsider.apiKey, '/v1/reports/conversations'),
        shows: [],
        hides: [a.channel.id],
      },
      {
        caller: 'adminA',
        list: 'CSAT report',
        ids: () => reportChannels(a.adminA.apiKey, '/v1/reports/csat'),
        shows: [a.channel.id],
        hides: [b.channel.id],
      },
      {
        caller: 'adminB',
        list: 'CSAT report',
        ids: () => reportChannels(a.adminB.apiKey, '/v1/reports/csat'),
        shows: [b.channel.id],
        hides: [a.channel.id],
      },
      {
        caller: 'adminB',
        list: "CSAT report filtered by A's channel",
        ids: () => reportChannels(a.adminB.apiKey, `/v1/reports/csat?channelId=${a.channel.id}`),
        shows: [],
        hides: [a.channel.id],
      },
      // Agents read the conversations of their own channels only (A2), their figures too.
      {
        caller: 'outsider',
        list: 'CSAT report',
        ids: () => reportChannels(a.outsider.apiKey, '/v1/reports/csat'),
        shows: [],
        hides: [a.channel.id],
      },
      {
        caller: 'outsider',
        list: 'CSAT report filtered by channel 1',
        ids: () => reportChannels(a.outsider.apiKey, `/v1/reports/csat?channelId=${a.channel.id}`),
        shows: [],
        hides: [a.channel.id],
      },
    ];

    const mismatches: string[] = [];
    for (const check of lists) {
      const found = await check.ids();
      const missing = check.shows.filter((id) => !found.includes(id));
      const leaked = check.hides.filter((id) => found.includes(id));
      if (missing.length > 0 || leaked.length > 0)
        mismatches.push(
          `${check.list} as ${check.caller}: ${[
            missing.length ? `lacks ${missing.join(', ')}` : '',
            leaked.length ? `leaks ${leaked.join(', ')}` : '',
          ]
            .filter(Boolean)
            .join('; ')} (got ${found.join(', ') || 'nothing'})`,
        );
    }
    expect(mismatches).toEqual([]);
  });
});
