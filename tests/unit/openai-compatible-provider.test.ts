import { createServer, type IncomingMessage, type Server, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { afterAll, beforeAll, beforeEach, describe, expect, it } from 'vitest';
import { AiProviderError, createAiProvider, type AiAnswerRequest } from '../../src/ai/index.js';
import { createOpenAiCompatibleProvider } from '../../src/ai/openai-compatible-provider.js';

interface ReceivedRequest {
  method: string;
  url: string;
  authorization: string | undefined;
  contentType: string | undefined;
  body: any;
}

type Handler = (request: ReceivedRequest, response: ServerResponse) => void;

/** A chat-completions server on 127.0.0.1: each test says how it answers and reads what it received. */
let server: Server;
let baseUrl: string;
let handler: Handler;
let received: ReceivedRequest[];
const hanging = new Set<ServerResponse>();

beforeAll(async () => {
  server = createServer((request: IncomingMessage, response: ServerResponse) => {
    const chunks: Buffer[] = [];
    request.on('data', (chunk: Buffer) => chunks.push(chunk));
    request.on('end', () => {
      const text = Buffer.concat(chunks).toString('utf8');
      const entry: ReceivedRequest = {
        method: request.method ?? '',
        url: request.url ?? '',
        authorization: request.headers.authorization,
        contentType: request.headers['content-type'],
        body: text ? JSON.parse(text) : undefined,
      };
      received.push(entry);
      handler(entry, response);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  baseUrl = `http://127.0.0.1:${(server.address() as AddressInfo).port}/v1/`;
});

afterAll(async () => {
  for (const response of hanging) response.destroy();
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
});

beforeEach(() => {
  received = [];
  handler = () => {
    throw new Error('the test did not say how the server answers');
  };
});

const json = (response: ServerResponse, status: number, body: unknown) => {
  response.writeHead(status, { 'content-type': 'application/json' });
  response.end(JSON.stringify(body));
};

/** A chat completion whose message content is `content`. */
const completion = (content: string | null) => ({
  id: 'chatcmpl-1',
  object: 'chat.completion',
  created: 1_760_000_000,
  model: 'test-model',
  choices: [{ index: 0, message: { role: 'assistant', content }, finish_reason: 'stop' }],
  usage: { prompt_tokens: 100, completion_tokens: 20, total_tokens: 120 },
});

const answering =
  (content: string | null): Handler =>
  (_request, response) =>
    json(response, 200, completion(content));

const REQUEST: AiAnswerRequest = {
  channelName: 'Acme Support',
  agentName: 'Mia (AI)',
  subject: 'Password',
  conversation: [
    { role: 'customer', text: 'I cannot log in.' },
    { role: 'assistant', text: 'Did you try resetting your password?' },
    { role: 'customer', text: 'How do I reset it?' },
  ],
  articles: [
    { id: 'art-password', title: 'Resetting your password', body: 'Click "Forgot password?" on the sign-in page.' },
    { id: 'art-shipping', title: 'Shipping times', body: 'Standard shipping takes 2-4 business days.' },
  ],
};

const provider = (overrides: { apiKey?: string; timeoutMs?: number } = {}) =>
  createOpenAiCompatibleProvider({ baseUrl, apiKey: 'sk-test-123', model: 'test-model', ...overrides });

/** The AiProviderError `promise` rejects with. */
async function failure(promise: Promise<unknown>): Promise<AiProviderError> {
  const error = await promise.then(
    () => undefined,
    (rejection: unknown) => rejection,
  );
  expect(error).toBeInstanceOf(AiProviderError);
  return error as AiProviderError;
}

describe('OpenAI-compatible provider', () => {
  it('sends the conversation and the articles as a chat completion and reads the JSON answer', async () => {
    handler = answering(
      JSON.stringify({
        answer: 'Click "Forgot password?" on the sign-in page.',
        confidence: 0.86,
        sources: ['art-password', 'nope'],
      }),
    );

    const answer = await provider().answer(REQUEST);

    expect(answer).toEqual({
      text: 'Click "Forgot password?" on the sign-in page.',
      confidence: 0.86,
      sourceArticleIds: ['art-password'],
    });
    expect(received).toHaveLength(1);
    const [sent] = received;
    expect(sent!.method).toBe('POST');
    expect(sent!.url).toBe('/v1/chat/completions');
    expect(sent!.authorization).toBe('Bearer sk-test-123');
    expect(sent!.contentType).toBe('application/json');
    expect(sent!.body.model).toBe('test-model');
    expect(sent!.body.temperature).toBe(0.2);
    expect(sent!.body.response_format).toEqual({ type: 'json_object' });
    expect(sent!.body.messages.map((message: { role: string }) => message.role)).toEqual(['system', 'user', 'assistant', 'user']);
    expect(sent!.body.messages.slice(1).map((message: { content: string }) => message.content)).toEqual([
      'I cannot log in.',
      'Did you try resetting your password?',
      'How do I reset it?',
    ]);
    const system: string = sent!.body.messages[0].content;
    expect(system).toContain('Mia (AI)');
    expect(system).toContain('Acme Support');
    expect(system).toContain('Resetting your password');
    expect(system).toContain('Click "Forgot password?" on the sign-in page.');
    expect(system).toContain('Shipping times');
    expect(system).toContain('"confidence"');
  });

  it('sends no Authorization header without an API key (local models)', async () => {
    handler = answering('{"answer": "Hi", "confidence": 0.5}');
    const answer = await provider({ apiKey: undefined }).answer(REQUEST);
    expect(answer).toEqual({ text: 'Hi', confidence: 0.5, sourceArticleIds: [] });
    expect(received[0]!.authorization).toBeUndefined();
  });

  it('accepts JSON in a ```json fence', async () => {
    handler = answering('```json\n{"answer": "Use the reset link.", "confidence": 0.7}\n```');
    expect(await provider().answer(REQUEST)).toEqual({ text: 'Use the reset link.', confidence: 0.7, sourceArticleIds: [] });
  });

  it('clamps the confidence to 0..1', async () => {
    handler = answering('{"answer": "Sure.", "confidence": 7}');
    expect((await provider().answer(REQUEST)).confidence).toBe(1);
    handler = answering('{"answer": "Maybe.", "confidence": -0.4}');
    expect((await provider().answer(REQUEST)).confidence).toBe(0);
  });

  it('gives an empty answer no confidence', async () => {
    handler = answering('{"answer": "  ", "confidence": 0.9}');
    expect(await provider().answer(REQUEST)).toEqual({ text: '', confidence: 0, sourceArticleIds: [] });
  });

  it('works through createAiProvider', async () => {
    handler = answering('{"answer": "Hello", "confidence": 0.4}');
    const configured = createAiProvider({ kind: 'openai_compatible', baseUrl, apiKey: 'sk-x', model: 'other-model' });
    expect((await configured.answer(REQUEST)).text).toBe('Hello');
    expect(received[0]!.body.model).toBe('other-model');
    expect(received[0]!.authorization).toBe('Bearer sk-x');
  });

  it('fails retryably on a server error', async () => {
    handler = (_request, response) => json(response, 500, { error: { message: 'The server had an error' } });
    const error = await failure(provider().answer(REQUEST));
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('500');
  });

  it.each([408, 409, 429, 502, 503])('fails retryably on HTTP %i', async (status) => {
    handler = (_request, response) => json(response, status, { error: { message: 'try again later' } });
    expect((await failure(provider().answer(REQUEST))).retryable).toBe(true);
  });

  it('fails for good on a rejected key, naming the status and the server’s message', async () => {
    handler = (_request, response) =>
      json(response, 401, {
        error: {
          message: 'Incorrect API key provided: sk-test-123.',
          type: 'invalid_request_error',
          param: null,
          code: 'invalid_api_key',
        },
      });
    const error = await failure(provider().answer(REQUEST));
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('401');
    expect(error.message).toContain('Incorrect API key provided');
  });

  it('fails for good on an unknown model, with a plain-string error body', async () => {
    handler = (_request, response) => json(response, 404, { error: 'model "test-model" not found, try pulling it first' });
    const error = await failure(provider().answer(REQUEST));
    expect(error.retryable).toBe(false);
    expect(error.message).toContain('404');
    expect(error.message).toContain('model "test-model" not found');
  });

  it('fails for good when the content is not the expected JSON', async () => {
    handler = answering('Sure! To reset your password, click the link.');
    const error = await failure(provider().answer(REQUEST));
    expect(error.retryable).toBe(false);
    expect(error.message).toMatch(/^the model answered something that is not the expected JSON: Sure! To reset/);
  });

  it('fails for good when the JSON lacks the answer, or the completion has no content', async () => {
    handler = answering('{"reply": "Hello", "confidence": 0.9}');
    expect((await failure(provider().answer(REQUEST))).retryable).toBe(false);
    handler = answering(null);
    expect((await failure(provider().answer(REQUEST))).retryable).toBe(false);
    handler = (_request, response) => json(response, 200, { choices: [] });
    expect((await failure(provider().answer(REQUEST))).retryable).toBe(false);
  });

  it('truncates a long unusable answer in the error message', async () => {
    handler = answering('x'.repeat(5000));
    const error = await failure(provider().answer(REQUEST));
    expect(error.message.length).toBeLessThan(400);
  });

  it('fails retryably when the server does not answer in time', async () => {
    handler = (_request, response) => hanging.add(response);
    const error = await failure(provider({ timeoutMs: 200 }).answer(REQUEST));
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('200 ms');
  });

  it('stops when the caller aborts', async () => {
    handler = (_request, response) => hanging.add(response);
    const controller = new AbortController();
    const answer = provider().answer(REQUEST, controller.signal);
    await expect.poll(() => received.length).toBe(1);
    controller.abort(new Error('activity cancelled'));
    const error = await failure(answer);
    expect(error.message).toContain('cancelled');
  });

  it('fails retryably when nothing listens', async () => {
    const closed = createServer();
    await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
    const port = (closed.address() as AddressInfo).port;
    await new Promise<void>((resolve) => closed.close(() => resolve()));

    const unreachable = createOpenAiCompatibleProvider({ baseUrl: `http://127.0.0.1:${port}/v1`, model: 'test-model' });
    const error = await failure(unreachable.answer(REQUEST));
    expect(error.retryable).toBe(true);
    expect(error.message).toContain('could not be reached');
  });
});
