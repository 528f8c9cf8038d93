import { performance } from 'node:perf_hooks';
import { parentPort } from 'node:worker_threads';
import { extractMailContent } from './mail-content.js';
import type { ParseRequest, ParseResponse } from './parser-pool.js';

// A parser thread: parses one mail at a time for the pool and hands the result back.
parentPort!.on('message', async ({ id, raw, messageId, senderTrust }: ParseRequest) => {
  let response: ParseResponse;
  const startedAt = performance.now();
  try {
    const mail = await extractMailContent(Buffer.from(raw.buffer, raw.byteOffset, raw.byteLength), messageId, senderTrust);
    response = { id, mail, threadMs: performance.now() - startedAt };
    parentPort!.postMessage(
      response,
      mail.attachments.map((attachment) => attachment.content.buffer as ArrayBuffer),
    );
  } catch (error) {
    const { name, message } = error instanceof Error ? error : new Error(String(error));
    response = { id, error: { name, message } };
    parentPort!.postMessage(response);
  }
});
