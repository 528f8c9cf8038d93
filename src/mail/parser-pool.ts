import { availableParallelism } from 'node:os';
import { performance } from 'node:perf_hooks';
import { setImmediate } from 'node:timers/promises';
import { Worker } from 'node:worker_threads';
import type { SenderTrust } from '../domain/sender-verdict.js';
import { ingestStepSeconds } from '../observability/metrics.js';
import { UnparseableMailError, type ParsedMail } from './parsed-mail.js';

// Parsing a mail is CPU work (MIME, charsets, HTML sanitizing) that must not stall the event loop
// that serves the API and the Temporal worker: it runs on a small fixed pool of threads, one mail at
// a time each, the raw bytes transferred in and the attachments transferred out.

/** One thread per core the process may use: more only take turns on the same cores. */
const POOL_SIZE = Math.max(1, availableParallelism());
/** A mail that takes longer is taken as one we cannot parse: its thread is replaced. */
const PARSE_TIMEOUT_MS = 60_000;
const THREAD_HEAP_MB = 512;
/** A mail is copied for its thread this much at a time (about a millisecond each). */
const COPY_PIECE_BYTES = 1024 * 1024;
/**
 * Mails waiting for a thread, by count and by bytes: a burst beyond this is refused (the forwarder is
 * answered 503 and posts again, IMAP waits) instead of piling copies of raw mail up in memory.
 */
const MAX_QUEUED_MAILS = 64;
const MAX_QUEUED_BYTES = 256 * 1024 * 1024;

/** Every parser thread is busy and the queue is full; the mail is stored, parse it again in a moment. */
export class ParserBusyError extends Error {
  override name = 'ParserBusyError';
}

const ENTRY = new URL(import.meta.url.endsWith('.ts') ? './parse-worker.ts' : './parse-worker.js', import.meta.url).href;
const LOADER = new URL('./parse-worker-loader.mjs', import.meta.url);

export interface ParseRequest {
  id: number;
  raw: Uint8Array;
  messageId: string;
  senderTrust: SenderTrust;
}

export type ParseResponse =
  | { id: number; mail: ParsedMail; /** The parse's own time on its thread. */ threadMs: number; error?: never }
  | { id: number; error: { name: string; message: string } };

interface Job {
  id: number;
  /** When the mail was handed to the pool (performance.now()), before its copy. */
  queuedAt: number;
  raw: Uint8Array;
  messageId: string;
  senderTrust: SenderTrust;
  resolve(mail: ParsedMail): void;
  reject(error: Error): void;
}

interface Slot {
  worker: Worker | undefined;
  job: Job | undefined;
  timer: NodeJS.Timeout | undefined;
}

class ParserPool {
  private readonly slots: Slot[] = Array.from({ length: POOL_SIZE }, () => ({
    worker: undefined,
    job: undefined,
    timer: undefined,
  }));
  private readonly queue: Job[] = [];
  private queuedBytes = 0;
  /** Mails being copied before they join the queue: they count as waiting. */
  private copying = 0;
  private nextId = 0;

  async parse(raw: Uint8Array, messageId: string, senderTrust: SenderTrust): Promise<ParsedMail> {
    // Mails being copied take the idle threads first; the rest of them wait in the queue.
    const idle = this.slots.filter((slot) => !slot.job).length;
    const pending = this.queue.length + this.copying;
    const waiting = Math.max(0, pending - idle);
    const full = waiting >= MAX_QUEUED_MAILS || this.queuedBytes + raw.byteLength > MAX_QUEUED_BYTES;
    if (pending >= idle && full) {
      throw new ParserBusyError(`${waiting} mails (${this.queuedBytes} bytes) wait for a parser thread`);
    }
    const queuedAt = performance.now();
    this.queuedBytes += raw.byteLength;
    this.copying++;
    let copy: Uint8Array;
    try {
      copy = await ownCopy(raw);
    } catch (error) {
      this.queuedBytes -= raw.byteLength;
      throw error;
    } finally {
      this.copying--;
    }
    return new Promise((resolve, reject) => {
      this.queue.push({ id: this.nextId++, queuedAt, raw: copy, messageId, senderTrust, resolve, reject });
      this.dispatch();
    });
  }

  async close(): Promise<void> {
    await Promise.all(this.slots.map((slot) => slot.worker?.terminate()));
  }

  private dispatch() {
    for (const slot of this.slots) {
      if (slot.job) continue;
      const job = this.queue.shift();
      if (!job) return;
      this.queuedBytes -= job.raw.byteLength;
      const worker = (slot.worker ??= this.spawn(slot));
      slot.job = job;
      slot.timer = setTimeout(() => {
        this.finish(slot, (pending) =>
          pending.reject(new UnparseableMailError(`parsing took longer than ${PARSE_TIMEOUT_MS / 1000} s`)),
        );
        this.replace(slot);
      }, PARSE_TIMEOUT_MS);
      worker.ref(); // a mail being parsed keeps the process alive; an idle pool does not
      worker.postMessage(
        { id: job.id, raw: job.raw, messageId: job.messageId, senderTrust: job.senderTrust } satisfies ParseRequest,
        [job.raw.buffer as ArrayBuffer],
      );
    }
  }

  private spawn(slot: Slot): Worker {
    const worker = new Worker(LOADER, {
      workerData: { entry: ENTRY },
      execArgv: [],
      resourceLimits: { maxOldGenerationSizeMb: THREAD_HEAP_MB },
    });
    worker.unref();
    worker.on('message', (response: ParseResponse) => {
      if (slot.job?.id !== response.id) return;
      this.finish(slot, (job) => {
        if (response.error) return job.reject(rebuildError(response.error));
        // The parse itself, and everything around it: the wait for a thread, the bytes there, the result back.
        ingestStepSeconds.observe({ step: 'parse' }, response.threadMs / 1000);
        ingestStepSeconds.observe({ step: 'parse_handoff' }, (performance.now() - job.queuedAt - response.threadMs) / 1000);
        job.resolve(response.mail);
      });
      this.dispatch();
    });
    worker.on('error', (error: Error & { code?: string }) => {
      // Out of memory on one mail happens again on every try: that mail cannot be parsed.
      const failure =
        error.code === 'ERR_WORKER_OUT_OF_MEMORY'
          ? new UnparseableMailError('the message needs more memory to parse than a parser thread has')
          : new Error(`the parser thread failed: ${error.message}`, { cause: error });
      this.finish(slot, (job) => job.reject(failure));
    });
    worker.on('exit', () => {
      if (slot.worker !== worker) return;
      slot.worker = undefined;
      this.finish(slot, (job) => job.reject(new Error('the parser thread stopped')));
      this.dispatch();
    });
    return worker;
  }

  private finish(slot: Slot, settle: (job: Job) => void) {
    clearTimeout(slot.timer);
    const job = slot.job;
    slot.job = undefined;
    slot.timer = undefined;
    slot.worker?.unref();
    if (job) settle(job);
  }

  private replace(slot: Slot) {
    const worker = slot.worker;
    slot.worker = undefined;
    void worker?.terminate();
    this.dispatch();
  }
}

/**
 * The pool's own copy of a mail, so that transferring it to a thread detaches nothing the caller still holds; a big
 * mail is copied a piece at a time, the event loop turning between pieces.
 */
async function ownCopy(raw: Uint8Array): Promise<Uint8Array> {
  const copy = new Uint8Array(raw.byteLength);
  for (let offset = 0; offset < raw.byteLength; offset += COPY_PIECE_BYTES) {
    if (offset > 0) await setImmediate();
    copy.set(raw.subarray(offset, offset + COPY_PIECE_BYTES), offset);
  }
  return copy;
}

function rebuildError({ name, message }: { name: string; message: string }): Error {
  if (name === 'UnparseableMailError') return new UnparseableMailError(message);
  const error = new Error(message);
  error.name = name;
  return error;
}

let pool: ParserPool | undefined;

/** Parses a raw mail on the parser pool, started on first use. */
export function parseOnPool(raw: Uint8Array, messageId: string, senderTrust: SenderTrust): Promise<ParsedMail> {
  pool ??= new ParserPool();
  return pool.parse(raw, messageId, senderTrust);
}

/** Stops the parser threads; the next parse starts them again. */
export async function closeParserPool(): Promise<void> {
  const closing = pool;
  pool = undefined;
  await closing?.close();
}
