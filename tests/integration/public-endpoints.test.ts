import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { postEndlessBody } from '../support/http.js';
import { startTestStack, type TestStack } from '../support/stack.js';

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
});
