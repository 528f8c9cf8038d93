import { randomUUID } from 'node:crypto';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { MAX_JSON_BYTES } from '../../src/api/app.js';
import { seedSupportTeam, startTestStack, type TestStack } from '../support/stack.js';

// What every route shares (src/api/app.ts, contract.ts, idempotency.ts, storable-text.ts): media types,
// methods, sizes, U+0000 and Idempotency-Key, each answered with problem+json.

describe('the API contract every route shares', () => {
  let stack: TestStack;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;

  beforeAll(async () => {
    stack = await startTestStack();
    team = await seedSupportTeam(stack.db, { name: 'Acme Support', emailAddress: 'support@acme.example' });
  });

  afterAll(async () => {
    await stack?.stop();
  });

  async function send(method: string, path: string, init: { body?: string; headers?: Record<string, string> } = {}) {
    const response = await fetch(`${stack.api.url}${path}`, {
      method,
      headers: { authorization: `Bearer ${team.admin.apiKey}`, ...init.headers },
      body: init.body,
    });
    const text = await response.text();
    return { status: response.status, headers: response.headers, body: text ? JSON.parse(text) : undefined };
  }

  const json = { 'content-type': 'application/json' };

  it('answers 415 when a required JSON body is missing or sent as another type, never treating it as {}', async () => {
    const missing = await send('POST', '/v1/channels');
    expect(missing.status).toBe(415);
    expect(missing.headers.get('content-type')).toBe('application/problem+json');
    const asText = await send('PATCH', `/v1/channels/${team.channel.id}`, {
      body: '{"name":"x"}',
      headers: { 'content-type': 'text/plain' },
    });
    expect(asText.status).toBe(415);
  });

  it('answers 405 with Allow for a known path asked with another method, 404 for an unknown path', async () => {
    const trace = await send('DELETE', '/v1/channels');
    expect(trace.status).toBe(405);
    expect(trace.headers.get('allow')).toBe('GET, POST');
    expect(trace.headers.get('content-type')).toBe('application/problem+json');
    expect((await send('GET', '/v1/nothing-here')).status).toBe(404);
    // The literal path decides, not the {ruleId} path beside it: GET …/order is a 405, not "order is no id".
    const order = await send('GET', `/v1/channels/${team.channel.id}/routing-rules/order`);
    expect(order.status).toBe(405);
    expect(order.headers.get('allow')).toBe('PUT');
  });

  it('answers 422 naming where a U+0000 is, in the body or the query, instead of a database error', async () => {
    const inBody = await send('POST', '/v1/channels', {
      body: JSON.stringify({ name: 'A\u0000B', emailAddress: 'nul@acme.example' }),
      headers: json,
    });
    expect(inBody.status).toBe(422);
    expect(inBody.body.errors).toEqual([{ field: 'name', message: expect.stringContaining('U+0000') }]);
    const inQuery = await send('GET', '/v1/contacts?q=a%00b');
    expect(inQuery.status).toBe(422);
    expect(inQuery.body.errors).toEqual([{ field: 'q', message: expect.stringContaining('U+0000') }]);
  });

  it('replays the first answer to a repeated Idempotency-Key, refuses the key for another body, and stores nothing readable', async () => {
    const key = randomUUID();
    const create = (name: string) =>
      send('POST', '/v1/channels', {
        body: JSON.stringify({ name, emailAddress: `${name.toLowerCase()}@acme.example` }),
        headers: { ...json, 'idempotency-key': key },
      });
    const first = await create('Billing');
    const again = await create('Billing');
    expect(first.status).toBe(201);
    expect(again.status).toBe(201);
    expect(again.headers.get('idempotent-replayed')).toBe('true');
    expect(again.body).toEqual(first.body);
    const channels = await stack.db
      .selectFrom('channels')
      .select('id')
      .where('email_address', '=', 'billing@acme.example')
      .execute();
    expect(channels).toHaveLength(1);
    const kept = await stack.db
      .selectFrom('idempotency_keys')
      .select('response_body')
      .where('key', '=', key)
      .executeTakeFirstOrThrow();
    expect(kept.response_body).not.toContain(first.body.forwarderSecret);

    const other = await create('Sales');
    expect(other.status).toBe(422);
    expect(other.body.type).toMatch(/idempotency-key-reused$/);
    const tooLong = await send('POST', '/v1/channels', {
      body: JSON.stringify({ name: 'X', emailAddress: 'x@acme.example' }),
      headers: { ...json, 'idempotency-key': 'k'.repeat(256) },
    });
    expect(tooLong.status).toBe(422);
    expect(tooLong.body.errors).toEqual([expect.objectContaining({ field: 'Idempotency-Key' })]);
  });

  it('answers 400 problem+json for malformed JSON and 413 for a body over the limit', async () => {
    const malformed = await send('POST', '/v1/channels', { body: '{"name":', headers: json });
    expect(malformed.status).toBe(400);
    expect(malformed.headers.get('content-type')).toBe('application/problem+json');
    // Last in the file: the server answers 413 before reading the whole body and then closes the connection.
    const huge = await send('POST', '/v1/channels', {
      body: JSON.stringify({ name: 'x'.repeat(MAX_JSON_BYTES), emailAddress: 'big@acme.example' }),
      headers: json,
    });
    expect(huge.status).toBe(413);
    expect(huge.body.type).toMatch(/too-large$/);
  });
});
