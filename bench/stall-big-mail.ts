// The API's longest event-loop stall while it takes one big mail (a 16 MiB attachment, 21.6 MiB raw: within the default
// MAX_INBOUND_BYTES and channel limit of 25 MiB), next to a small ordinary mail, on PostgreSQL and on the embedded
// database as `npm start` opens it. The API runs in a process of its own (bench/stall-api.ts); each backend takes
// BENCH_STALL_ROUNDS rounds of one small and one big mail in ABBA order, one mail at a time.
import { randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { createChannel } from '../src/db/seed.js';
import { ordinaryMail } from '../tests/adversarial/corpus.js';
import { post, startStallApi } from './stall.js';
import type { BenchStack } from './stack.js';

export const BIG_MAIL_ATTACHMENT_BYTES = 16 * 1024 * 1024;
const WARM_UP_MAILS = 10;
/** After a mail's answer, its period goes on this long: what the API does after answering (a collection) counts too. */
const SETTLE_MS = 250;

export type StallBackend = 'postgres' | 'embedded';
export type MailSize = 'small' | 'big';

export interface BigMailStalls {
  rounds: number;
  bigMailBytes: number;
  /**
   * Per backend and mail size, milliseconds: the longest stall of each mail's period (from its post until shortly
   * after its answer), and the most CPU time the event loop's thread spent between two timer firings in it (its own
   * share of the stall; the rest is the machine's other work).
   */
  backends: Record<
    StallBackend,
    Record<MailSize, { maxMs: number; perMailMs: number[]; maxBusyMs: number; perMailBusyMs: number[]; cpuMs: number }>
  >;
  /** How long posting one big mail took to answer, per backend (the mean over the rounds), milliseconds. */
  bigMailAnswerMs: Record<StallBackend, number>;
}

/** A mail with a short text and a `attachmentBytes` attachment of random bytes (so nothing compresses it), base64. */
export function bigMail(tag: string, attachmentBytes = BIG_MAIL_ATTACHMENT_BYTES): Buffer {
  const encoded = randomBytes(attachmentBytes).toString('base64');
  const lines: string[] = [];
  for (let at = 0; at < encoded.length; at += 76) lines.push(encoded.slice(at, at + 76));
  const head = [
    `From: Bea Big <bea-${tag}@example.com>`,
    'To: support@acme.example',
    `Subject: The scans you asked for (${tag})`,
    `Message-ID: <big-${tag}-${randomBytes(8).toString('hex')}@example.com>`,
    'Date: Mon, 07 Dec 2026 09:00:00 +0000',
    'MIME-Version: 1.0',
    'Content-Type: multipart/mixed; boundary="scan"',
    '',
    '--scan',
    'Content-Type: text/plain; charset=utf-8',
    '',
    'Here are the scans; please have a look.',
    '--scan',
    'Content-Type: application/pdf',
    `Content-Disposition: attachment; filename="scans-${tag}.pdf"`,
    'Content-Transfer-Encoding: base64',
    '',
  ];
  return Buffer.from(`${head.join('\r\n')}\r\n${lines.join('\r\n')}\r\n--scan--\r\n`);
}

export async function measureBigMailStalls(stack: BenchStack, options: { rounds: number }): Promise<BigMailStalls> {
  const backends = {} as BigMailStalls['backends'];
  const bigMailAnswerMs = {} as BigMailStalls['bigMailAnswerMs'];
  let bigMailBytes = 0;
  for (const backend of ['postgres', 'embedded'] as const) {
    const dataDir = backend === 'embedded' ? mkdtempSync(join(tmpdir(), 'mailroom-bench-embedded-')) : undefined;
    try {
      const api = await startStallApi(stack, { embeddedDataDir: dataDir });
      const channel = dataDir
        ? await api.channel()
        : await createChannel(stack.db, {
            accountId: stack.accountId,
            name: 'Bench stalls, big mail',
            emailAddress: 'support@acme.example',
          });
      for (let n = 0; n < WARM_UP_MAILS; n++)
        await expectAccepted(api.url, channel, ordinaryMail(n, `big-warm-up-${backend}`).raw);
      await expectAccepted(api.url, channel, bigMail(`warm-up-${backend}`, 1024 * 1024));

      const perMailMs: Record<MailSize, number[]> = { small: [], big: [] };
      const perMailBusyMs: Record<MailSize, number[]> = { small: [], big: [] };
      const answerMs: number[] = [];
      const order = Array.from({ length: options.rounds }, (_, index): MailSize[] =>
        index % 2 === 0 ? ['small', 'big'] : ['big', 'small'],
      ).flat();
      await api.mark(null);
      for (const [index, size] of order.entries()) {
        const raw = size === 'big' ? bigMail(`${backend}-${index}`) : ordinaryMail(index, `big-small-${backend}`).raw;
        if (size === 'big') bigMailBytes = raw.length;
        await api.mark(null); // building the mail in this process is no part of the API's period
        await api.mark(size);
        const startedAt = performance.now();
        await expectAccepted(api.url, channel, raw);
        if (size === 'big') answerMs.push(performance.now() - startedAt);
        await sleep(SETTLE_MS);
        const period = await api.mark(null);
        perMailMs[size].push(period.maxMs);
        perMailBusyMs[size].push(period.maxBusyMs);
      }
      const [small, big] = [await api.summary('small'), await api.summary('big')];
      await api.stop();
      const figures = (size: MailSize, cpuMs: number) => ({
        maxMs: Math.max(...perMailMs[size]),
        perMailMs: perMailMs[size],
        maxBusyMs: Math.max(...perMailBusyMs[size]),
        perMailBusyMs: perMailBusyMs[size],
        cpuMs,
      });
      backends[backend] = { small: figures('small', small.cpuMs), big: figures('big', big.cpuMs) };
      bigMailAnswerMs[backend] = answerMs.reduce((sum, ms) => sum + ms, 0) / answerMs.length;
    } finally {
      if (dataDir) rmSync(dataDir, { recursive: true, force: true });
    }
  }
  return { rounds: options.rounds, bigMailBytes, backends, bigMailAnswerMs };
}

async function expectAccepted(apiUrl: string, channel: { id: string; forwarderSecret: string }, raw: Buffer) {
  const answer = await post(apiUrl, channel, raw);
  if (answer.status !== 202)
    throw new Error(`a mail of ${raw.length} bytes: HTTP ${answer.status}: ${answer.body.slice(0, 200)}`);
}
