import { execFile } from 'node:child_process';
import { randomBytes, randomUUID } from 'node:crypto';
import { promisify } from 'node:util';
import { Client, Connection } from '@temporalio/client';
import { bundleWorkflowCode, DefaultLogger, Worker } from '@temporalio/worker';
import { afterAll, beforeAll, describe, expect, inject, it } from 'vitest';
import { temporalCliPath } from '../../scripts/servers/tools.js';
import { startApiServer, type RunningApi } from '../../src/api/server.js';
import { createIngest } from '../../src/ingest/ingest.js';
import { createLogger } from '../../src/logger.js';
import { mailroomDataConverter } from '../../src/temporal/data-converter.js';
import { parsePayloadKeys, type PayloadKey } from '../../src/temporal/payload-codec.js';
import { workflowBundleOptions } from '../../src/worker.js';
import { conversationWorkflowId } from '../../src/workflows/ids.js';
import { ChannelIdAttribute, mailroomSearchAttributes } from '../../src/workflows/search-attributes.js';
import { eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import {
  seedSupportTeam,
  startTestStack,
  TEST_DATA_CONVERTER,
  TEST_INBOUND_DOMAIN,
  TEST_SECRET_KEY,
  type TestStack,
} from '../support/stack.js';

// What Temporal stores of a conversation, read the way ops read it: with the `temporal` CLI against the real dev
// server. Without keys it shows no clear text of the mail; through the codec endpoint it shows the mail.

const run = promisify(execFile);
const UI_ORIGIN = 'http://127.0.0.1:8233';
// Unique words of this test's mail, looked for everywhere Temporal keeps something.
const SECRET = {
  subject: `Refund for order Quokka-${randomUUID().slice(0, 8)}`,
  name: 'Mia Geheimnis',
  address: `mia.geheimnis.${randomUUID().slice(0, 8)}@example.com`,
  text: `my card number ends in Wombat-${randomUUID().slice(0, 8)}`,
};
const SECRETS = Object.values(SECRET);

/** Every string in a JSON document, and what each reads as once base64-decoded (payloads are base64 in JSON). */
function readableText(json: string): string {
  const texts: string[] = [];
  const walk = (value: unknown): void => {
    if (typeof value === 'string') {
      texts.push(value);
      if (/^[A-Za-z0-9+/]+={0,2}$/.test(value) && value.length % 4 === 0)
        texts.push(Buffer.from(value, 'base64').toString('utf8'));
    } else if (Array.isArray(value)) value.forEach(walk);
    else if (value && typeof value === 'object') Object.values(value).forEach(walk);
  };
  // One document (pretty-printed); should a CLI write one per line instead, each line is one.
  try {
    walk(JSON.parse(json));
  } catch {
    for (const line of json.split('\n').filter((candidate) => candidate.trim().startsWith('{'))) walk(JSON.parse(line));
  }
  return texts.join('\n');
}

describe('payload encryption: what Temporal keeps of a conversation', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let codecApi: RunningApi;
  let conversationId: string;
  const temporalArgs = () => ['--address', inject('temporalAddress'), '--namespace', 'default'];

  /** The `temporal` CLI's JSON of a workflow; with the codec endpoint and an API key when given. */
  async function cli(command: 'show' | 'describe', workflowId: string, codec?: { url: string; apiKey: string }) {
    const { stdout } = await run(
      temporalCliPath(),
      [
        'workflow',
        command,
        '--workflow-id',
        workflowId,
        '--output',
        'json',
        ...temporalArgs(),
        ...(codec ? ['--codec-endpoint', codec.url, '--codec-auth', `Bearer ${codec.apiKey}`] : []),
      ],
      { maxBuffer: 64 * 1024 * 1024 },
    );
    return stdout;
  }

  async function codec(direction: 'decode' | 'encode', body: unknown, headers: Record<string, string> = {}, url = codecApi.url) {
    const response = await fetch(`${url}/codec/${direction}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', 'x-namespace': 'default', ...headers },
      body: JSON.stringify(body),
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  }

  /** A second API on the stack's database, with the UI's origin configured and the given Temporal client. */
  async function apiWith(temporal: Client, options: { codecFromLoopback?: boolean } = {}): Promise<RunningApi> {
    return startApiServer(
      {
        db: stack.db,
        temporal,
        ingest: createIngest({ db: stack.db, temporal, taskQueue: stack.taskQueue, inboundDomain: TEST_INBOUND_DOMAIN }),
        config: {
          SECRET_KEY: TEST_SECRET_KEY,
          MAX_INBOUND_BYTES: 1024 * 1024,
          PUBLIC_URL: 'http://unused',
          INBOUND_DOMAIN: TEST_INBOUND_DOMAIN,
          RATE_LIMIT_API_KEY_PER_MINUTE: 0,
          TEMPORAL_UI_ORIGIN: [UI_ORIGIN],
        },
        logger: createLogger('silent'),
        ...options,
      },
      { port: 0, host: '127.0.0.1' },
    );
  }

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, {
      name: 'Acme Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks for writing!' },
    });
    codecApi = await apiWith(stack.temporal);
    // The customer's server refuses the greeting naming them, as real servers do: the failure carries the address.
    stack.capture.refuse({ at: 'rcpt', code: 550, message: `5.1.1 <${SECRET.address}>: Recipient address rejected` });
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({
        messageId: `${randomUUID()}@example.com`,
        from: `"${SECRET.name}" <${SECRET.address}>`,
        subject: SECRET.subject,
        text: `Hello, ${SECRET.text}.`,
      }),
    );
    expect(posted.status).toBe(202);
    conversationId = posted.body.conversationId;
    // The greeting's delivery failed for good: its failure is in the history (the marker of the send's first try).
    await eventually(async () => {
      const greeting = await stack.db
        .selectFrom('outbound_messages')
        .select('delivery_status')
        .where('conversation_id', '=', conversationId)
        .where('kind', '=', 'greeting')
        .executeTakeFirst();
      return greeting?.delivery_status === 'failed' ? greeting : undefined;
    }, 60_000);
  });

  afterAll(async () => {
    await codecApi?.close();
    await stack?.stop();
  });

  it('`temporal workflow show` and `describe` find no clear text of the mail: subject, text, sender name and address', async () => {
    const workflowId = conversationWorkflowId(conversationId);
    const history = await eventually(async () => {
      const shown = await cli('show', workflowId);
      // The refusal is in an activity's failure, or in the marker of the send's first try (a local activity).
      return shown.includes('Encoded failure') ? shown : undefined;
    });
    const described = await cli('describe', workflowId);
    for (const output of [history, described]) {
      const readable = `${output}\n${readableText(output)}`;
      for (const secret of SECRETS) expect(readable).not.toContain(secret);
    }
    // Not because nothing was written: the payloads are there, encrypted, and the failure is an encoded one.
    expect(history).toContain(Buffer.from('binary/encrypted').toString('base64'));
    expect(history).toContain('Encoded failure');
  });

  it('the codec endpoint decodes them: the same CLI with --codec-endpoint and an admin’s key shows the mail and the failure', async () => {
    const codecEndpoint = { url: `${codecApi.url}/codec`, apiKey: team.admin.apiKey };
    const history = await cli('show', conversationWorkflowId(conversationId), codecEndpoint);
    const readable = readableText(history);
    expect(readable).toContain(SECRET.subject); // the run's summary, as the UI titles it
    expect(readable).toContain(SECRET.address); // the SMTP server's refusal, in the encoded failure message
    const described = readableText(await cli('describe', conversationWorkflowId(conversationId), codecEndpoint));
    expect(described).toContain(SECRET.subject);
  });

  it('answers the Temporal UI: CORS for its origin only, the preflight without a key, then an admin’s key only', async () => {
    const payloads = [await encryptedPayloadOfHistory()];
    const preflight = await fetch(`${codecApi.url}/codec/decode`, {
      method: 'OPTIONS',
      headers: {
        origin: UI_ORIGIN,
        'access-control-request-method': 'POST',
        'access-control-request-headers': 'authorization,content-type,x-namespace',
      },
    });
    expect(preflight.status).toBe(204);
    expect(preflight.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
    expect(preflight.headers.get('access-control-allow-credentials')).toBe('true');
    expect(preflight.headers.get('access-control-allow-headers')?.toLowerCase().split(',')).toEqual(
      expect.arrayContaining(['authorization', 'content-type', 'x-namespace']),
    );
    const elsewhere = await fetch(`${codecApi.url}/codec/decode`, {
      method: 'OPTIONS',
      headers: { origin: 'https://evil.example', 'access-control-request-method': 'POST' },
    });
    expect(elsewhere.headers.get('access-control-allow-origin')).toBeNull();

    const anonymous = await codec('decode', { payloads }, { origin: UI_ORIGIN });
    expect(anonymous).toMatchObject({ status: 401, body: { type: 'https://mailroom.dev/problems/unauthenticated' } });
    expect(anonymous.headers.get('content-type')).toBe('application/problem+json');
    expect(anonymous.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN); // the UI can read why
    const agent = await codec('decode', { payloads }, { authorization: `Bearer ${team.agents[0]!.apiKey}` });
    expect(agent).toMatchObject({ status: 403, body: { type: 'https://mailroom.dev/problems/forbidden' } });
    const admin = await codec('decode', { payloads }, { authorization: `Bearer ${team.admin.apiKey}`, origin: UI_ORIGIN });
    expect(admin.status).toBe(200);
    expect(admin.headers.get('access-control-allow-origin')).toBe(UI_ORIGIN);
    const [decoded] = admin.body.payloads;
    expect(Buffer.from(decoded.metadata.encoding, 'base64').toString()).toBe('json/plain');
    expect(Buffer.from(decoded.data, 'base64').toString()).toContain(SECRET.subject);
  });

  it('lets this machine decode without a key only where npm start asks for it (its dev server’s UI)', async () => {
    const payloads = [await encryptedPayloadOfHistory()];
    expect((await codec('decode', { payloads })).status).toBe(401);
    const development = await apiWith(stack.temporal, { codecFromLoopback: true });
    try {
      const decoded = await codec('decode', { payloads }, { origin: UI_ORIGIN }, development.url);
      expect(decoded.status).toBe(200);
      expect(Buffer.from(decoded.body.payloads[0].data, 'base64').toString()).toContain(SECRET.subject);
    } finally {
      await development.close();
    }
  });

  it('encodes as the workers write, and bounds and checks what it is sent', async () => {
    const auth = { authorization: `Bearer ${team.admin.apiKey}` };
    const clear = { metadata: { encoding: b64('json/plain') }, data: b64(JSON.stringify(SECRET.text)) };
    const encoded = await codec('encode', { payloads: [clear] }, auth);
    expect(encoded.status).toBe(200);
    expect(Buffer.from(encoded.body.payloads[0].metadata.encoding, 'base64').toString()).toBe('binary/encrypted');
    expect(Buffer.from(encoded.body.payloads[0].data, 'base64').toString('latin1')).not.toContain(SECRET.text);
    const back = await codec('decode', encoded.body, auth);
    expect(back.body.payloads).toEqual([clear]);

    const tooMany = await codec('decode', { payloads: Array.from({ length: 1001 }, () => clear) }, auth);
    expect(tooMany).toMatchObject({ status: 422, body: { errors: [expect.objectContaining({ field: 'payloads' })] } });
    const notBase64 = await codec('decode', { payloads: [{ data: 'not base64!' }] }, auth);
    expect(notBase64).toMatchObject({ status: 422, body: { errors: [expect.objectContaining({ field: 'payloads.0.data' })] } });
    const huge = await codec('decode', { payloads: [{ data: 'A'.repeat(9 * 1024 * 1024) }] }, auth);
    expect(huge).toMatchObject({ status: 413, body: { type: 'https://mailroom.dev/problems/too-large' } });
    const notJson = await fetch(`${codecApi.url}/codec/decode`, { method: 'POST', headers: auth, body: 'payloads' });
    expect(notJson.status).toBe(415);
  });

  it('rotates keys without losing histories, and names a key it does not have', async () => {
    const [k1, k2] = parsePayloadKeys(`k1:${randomBytes(32).toString('base64')},k2:${randomBytes(32).toString('base64')}`) as [
      PayloadKey,
      PayloadKey,
    ];
    // A history written while k1 was current (a run no worker picks up: only what the client wrote is in it).
    const writer = await clientWith([k1]);
    const workflowId = `rotation-${randomUUID()}`;
    const handle = await writer.workflow.start('customerConversation', {
      workflowId,
      taskQueue: `no-worker-${randomUUID()}`,
      args: [{ conversationId: SECRET.subject }],
      staticSummary: SECRET.subject,
    });
    const started = (await handle.fetchHistory()).events![0]!.workflowExecutionStartedEventAttributes!;
    const payloads = [started.input!.payloads![0]!].map((payload) => ({
      metadata: Object.fromEntries(
        Object.entries(payload.metadata!).map(([name, value]) => [name, Buffer.from(value).toString('base64')]),
      ),
      data: Buffer.from(payload.data!).toString('base64'),
    }));
    expect(Buffer.from(payloads[0]!.metadata['encryption-key-id']!, 'base64').toString()).toBe('k1');
    await handle.terminate('rotation test');

    // k2 became current: the k1 history still decodes, and what is written now names k2.
    const rotated = await apiWith(await clientWith([k2, k1]));
    const auth = { authorization: `Bearer ${team.admin.apiKey}` };
    try {
      const decoded = await codec('decode', { payloads }, auth, rotated.url);
      expect(decoded.status).toBe(200);
      expect(Buffer.from(decoded.body.payloads[0].data, 'base64').toString()).toContain(SECRET.subject);
      const encoded = await codec('encode', decoded.body, auth, rotated.url);
      expect(Buffer.from(encoded.body.payloads[0].metadata['encryption-key-id'], 'base64').toString()).toBe('k2');
    } finally {
      await rotated.close();
    }
    // Without k1 the history cannot be read, and the answer says which key is missing.
    const without = await apiWith(await clientWith([k2]));
    try {
      const refused = await codec('decode', { payloads }, auth, without.url);
      expect(refused).toMatchObject({
        status: 422,
        body: { type: 'https://mailroom.dev/problems/undecodable-payload', errors: [{ field: 'payloads.0' }] },
      });
      expect(refused.body.detail).toContain('"k1"');
    } finally {
      await without.close();
    }
  });

  it('search attributes and memo of a conversation carry ids and states only, no personal data', async () => {
    const description = await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).describe();
    const names = mailroomSearchAttributes.map((key) => key.name);
    const values = description.typedSearchAttributes.getAll().filter((pair) => names.includes(pair.key.name));
    expect(values.find((pair) => pair.key.name === ChannelIdAttribute.name)?.value).toBe(team.channel.id);
    const shown = JSON.stringify({ searchAttributes: description.searchAttributes, memo: description.memo ?? null });
    for (const secret of SECRETS) expect(shown).not.toContain(secret);
    // Each custom attribute is an id (a UUID), one of its states, a priority or a flag: never free text.
    for (const { key, value } of values) {
      if (typeof value === 'string') expect(value, key.name).toMatch(/^(?:[0-9a-f-]{36}|[a-z_]{1,32})$/);
    }
  });

  it('a recorded history of encrypted payloads replays with the tests’ keys, and only with them', async () => {
    const history = await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory();
    const workflowBundle = await bundleWorkflowCode({ ...workflowBundleOptions, logger: new DefaultLogger('WARN') });
    const workflowId = conversationWorkflowId(conversationId);
    await Worker.runReplayHistory({ workflowBundle, dataConverter: TEST_DATA_CONVERTER }, history, workflowId);
    // Without them the workflow cannot read its input ("Unknown encoding: binary/encrypted", itself encoded).
    await expect(Worker.runReplayHistory({ workflowBundle }, history, workflowId)).rejects.toThrow(/Replay failed/);
  });

  const clients: Client[] = [];
  afterAll(async () => {
    for (const client of clients) await client.connection.close();
  });

  async function clientWith(keys: PayloadKey[]): Promise<Client> {
    const client = new Client({
      connection: await Connection.connect({ address: inject('temporalAddress') }),
      dataConverter: mailroomDataConverter(keys),
    });
    clients.push(client);
    return client;
  }

  /** One encrypted payload of the conversation's history (its first signal's), as the UI sends it. */
  async function encryptedPayloadOfHistory() {
    const history = await stack.temporal.workflow.getHandle(conversationWorkflowId(conversationId)).fetchHistory();
    const summary = history.events![0]!.userMetadata!.summary!;
    expect(Buffer.from(summary.metadata!.encoding!).toString()).toBe('binary/encrypted');
    return {
      metadata: Object.fromEntries(
        Object.entries(summary.metadata!).map(([name, value]) => [name, Buffer.from(value).toString('base64')]),
      ),
      data: Buffer.from(summary.data!).toString('base64'),
    };
  }
});

const b64 = (text: string) => Buffer.from(text).toString('base64');
