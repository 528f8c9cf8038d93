import { createHash, randomBytes } from 'node:crypto';
import type { AddressInfo, Server } from 'node:net';
import { serve } from '@hono/node-server';
import { Hono } from 'hono';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { readRequestBody } from '../../src/api/request-body.js';

const MAX_BYTES = 4 * 1024 * 1024;

// The forwarder's body reader on a real Node HTTP server: what it reads is what was sent, with a Content-Length or
// chunked without one, and a body over the bound is refused, announced or not.
describe('reading a request body in pieces', () => {
  let server: Server;
  let url: string;

  beforeAll(async () => {
    const app = new Hono();
    app.post('/', async (c) => {
      try {
        const body = await readRequestBody(c.req.raw, MAX_BYTES, () => new Error('too large'));
        return c.json({ length: body.length, sha256: createHash('sha256').update(body).digest('hex') });
      } catch (error) {
        return c.json({ error: (error as Error).message }, 413);
      }
    });
    server = await new Promise<Server>((resolve) => {
      const started = serve({ fetch: app.fetch, port: 0, hostname: '127.0.0.1' }, () => resolve(started as Server));
    });
    url = `http://127.0.0.1:${(server.address() as AddressInfo).port}/`;
  });

  afterAll(() => new Promise<void>((resolve) => server?.close(() => resolve())));

  const digest = (bytes: Buffer) => createHash('sha256').update(bytes).digest('hex');
  /** The bytes as a stream of `pieces` parts: sent chunked, without Content-Length. */
  const streamed = (bytes: Buffer, pieces: number) =>
    new ReadableStream<Uint8Array>({
      start(controller) {
        const size = Math.ceil(bytes.length / pieces);
        for (let at = 0; at < bytes.length; at += size) controller.enqueue(bytes.subarray(at, at + size));
        controller.close();
      },
    });
  const post = (body: Buffer | ReadableStream<Uint8Array>) =>
    fetch(url, { method: 'POST', body, duplex: 'half' } as RequestInit).then(async (response) => ({
      status: response.status,
      body: (await response.json()) as { length?: number; sha256?: string; error?: string },
    }));

  it('reads a body of several megabytes with a Content-Length byte for byte', async () => {
    const bytes = randomBytes(3 * 1024 * 1024 + 17);
    expect(await post(bytes)).toEqual({ status: 200, body: { length: bytes.length, sha256: digest(bytes) } });
  });

  it('reads a chunked body without a Content-Length byte for byte, and an empty one as empty', async () => {
    const bytes = randomBytes(2 * 1024 * 1024 + 5);
    expect(await post(streamed(bytes, 37))).toEqual({ status: 200, body: { length: bytes.length, sha256: digest(bytes) } });
    expect(await post(Buffer.alloc(0))).toEqual({ status: 200, body: { length: 0, sha256: digest(Buffer.alloc(0)) } });
  });

  it('refuses a body over the bound, whether its Content-Length says so or only its bytes do', async () => {
    const tooMany = randomBytes(MAX_BYTES + 1);
    expect(await post(tooMany)).toEqual({ status: 413, body: { error: 'too large' } });
    expect(await post(streamed(tooMany, 9))).toEqual({ status: 413, body: { error: 'too large' } });
  });
});
