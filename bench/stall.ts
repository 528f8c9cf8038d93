// Event-loop stalls of the API while it takes hostile mail: the adversarial corpus of tests/adversarial/corpus.ts posted
// to the forwarder endpoint, next to as many ordinary mails, one mail at a time, in ABBA order (BENCH_STALL_ROUNDS of
// each, default 2). The API runs in a process of its own (bench/stall-api.ts), which measures how late a 1 ms timer
// fires: the longest delay is the longest stall a request (or /health) would have waited behind. Each round posts to a
// fresh channel with the corpus's settings, so that no mail is a duplicate of an earlier round's. Parsing runs on the
// API's parser threads; conversation workflows are started on a queue no worker polls, as in the ingest section.
import { fileURLToPath } from 'node:url';
import { createChannel } from '../src/db/seed.js';
import { ADVERSARIAL_CHANNEL, adversarialCorpus, ordinaryMail } from '../tests/adversarial/corpus.js';
import { forkBenchProcess } from './child-process.js';
import type { StallApiReport, StallApiRequest, StallPeriod, StallSummary } from './stall-api.js';
import type { BenchStack } from './stack.js';

const API_SCRIPT = fileURLToPath(new URL('./stall-api.ts', import.meta.url));
const WARM_UP_MAILS = 20;

export type StallWorkload = 'corpus' | 'ordinary';

export interface StallFigures {
  rounds: number;
  /** Distinct cases in the corpus; a round posts these and the mail some of them need before them. */
  cases: number;
  workloads: Record<StallWorkload, StallSummary & { mails: number }>;
  /** The corpus mails with the longest stall while they were posted and answered, longest first. */
  worstMails: Array<{ name: string; maxMs: number }>;
  /** The longest stall monitorEventLoopDelay saw in the API process over all rounds and the pauses between them. */
  builtInMaxMs: number;
  /** Corpus mails answered otherwise than their case expects (the adversarial test says more). */
  unexpected: string[];
}

export interface StallApi {
  url: string;
  /** Ends the current period (answers its longest stall) and starts the next, counted for the workload if not null. */
  mark(workload: string | null): Promise<StallPeriod>;
  summary(workload: string): Promise<StallSummary>;
  /** A new channel in the API's own database, with the default limits. */
  channel(): Promise<{ id: string; forwarderSecret: string }>;
  stop(): Promise<void>;
}

export async function measureStalls(stack: BenchStack, options: { rounds: number }): Promise<StallFigures> {
  const corpus = adversarialCorpus(); // before the API starts: building it takes this process a moment
  const api = await startStallApi(stack);
  const channels = channelMaker(stack);

  const warmUp = await channels.next('warm-up');
  for (let n = 0; n < WARM_UP_MAILS; n++) await post(api.url, warmUp, ordinaryMail(n, 'stall-warm-up').raw);

  const unexpected: string[] = [];
  const perMail = new Map<string, number>();
  let corpusMails = 0;
  const rounds = { corpus: 0, ordinary: 0 };
  const order: StallWorkload[] = Array.from({ length: options.rounds }, (_, index): StallWorkload[] =>
    index % 2 === 0 ? ['corpus', 'ordinary'] : ['ordinary', 'corpus'],
  ).flat();
  await api.mark(null);
  for (const workload of order) {
    const round = ++rounds[workload];
    const channel = await channels.next(`${workload} ${round}`);
    await api.mark(workload);
    if (workload === 'corpus') {
      for (const hostile of corpus) {
        for (const [index, before] of (hostile.before ?? []).entries()) {
          await post(api.url, channel, before);
          record(perMail, `${hostile.name} (mail ${index + 1} before it)`, (await api.mark(workload)).maxMs);
          corpusMails++;
        }
        const answer = await post(api.url, channel, hostile.raw);
        record(perMail, hostile.name, (await api.mark(workload)).maxMs);
        corpusMails++;
        const expected = hostile.expected.outcome === 'stored' ? 202 : hostile.expected.status;
        if (answer.status !== expected) {
          unexpected.push(`${hostile.name}: HTTP ${answer.status} (expected ${expected}): ${answer.body.slice(0, 200)}`);
        }
      }
    } else {
      // As many ordinary mails as the corpus round posts.
      const mails = corpus.reduce((sum, hostile) => sum + 1 + (hostile.before?.length ?? 0), 0);
      for (let n = 0; n < mails; n++) {
        const answer = await post(api.url, channel, ordinaryMail(n, `stall-${round}`).raw);
        await api.mark(workload);
        if (answer.status !== 202) throw new Error(`ordinary mail ${n}: HTTP ${answer.status}: ${answer.body.slice(0, 200)}`);
      }
    }
    await api.mark(null);
  }
  const [corpusSummary, ordinarySummary] = [await api.summary('corpus'), await api.summary('ordinary')];
  await api.stop();
  const serverErrors = unexpected.filter((line) => / HTTP 5\d\d /.test(line));
  if (serverErrors.length > 0) throw new Error(`the API failed on corpus mails: ${serverErrors.join('; ')}`);
  return {
    rounds: options.rounds,
    cases: corpus.length,
    workloads: {
      corpus: { ...corpusSummary, mails: corpusMails },
      ordinary: { ...ordinarySummary, mails: corpusMails },
    },
    worstMails: [...perMail.entries()]
      .map(([name, maxMs]) => ({ name, maxMs }))
      .sort((a, b) => b.maxMs - a.maxMs)
      .slice(0, 5),
    builtInMaxMs: corpusSummary.builtInMaxMs,
    unexpected,
  };
}

/** Keeps the longest stall seen for each mail over the rounds. */
function record(perMail: Map<string, number>, name: string, maxMs: number) {
  perMail.set(name, Math.max(perMail.get(name) ?? 0, maxMs));
}

/** New channels with the corpus channel's settings: its address, trusted receiving server and size limit. */
function channelMaker(stack: BenchStack) {
  return {
    async next(label: string) {
      const channel = await createChannel(stack.db, {
        accountId: stack.accountId,
        name: `Bench stalls, ${label}`,
        emailAddress: ADVERSARIAL_CHANNEL.emailAddress,
      });
      await stack.db
        .updateTable('channels')
        .set({
          trusted_authserv_ids: JSON.stringify([ADVERSARIAL_CHANNEL.trustedAuthservId]),
          max_inbound_bytes: ADVERSARIAL_CHANNEL.maxInboundBytes,
        })
        .where('id', '=', channel.id)
        .execute();
      return channel;
    },
  };
}

/** POSTs a mail to the channel's forwarder endpoint and reads the whole answer. */
export async function post(apiUrl: string, channel: { id: string; forwarderSecret: string }, raw: Buffer) {
  const response = await fetch(`${apiUrl}/v1/channels/${channel.id}/inbound`, {
    method: 'POST',
    headers: { authorization: `Bearer ${channel.forwarderSecret}`, 'content-type': 'message/rfc822' },
    body: raw as Uint8Array<ArrayBuffer>, // no copy: the 68 MB case would cost this process (and the machine) another
  });
  return { status: response.status, body: await response.text() };
}

/**
 * The stall API process on the stack's PostgreSQL, or with `embeddedDataDir` on the embedded database in that directory.
 * Workloads are named freely (the API counts whatever the marks name).
 */
export async function startStallApi(stack: BenchStack, options: { embeddedDataDir?: string } = {}): Promise<StallApi> {
  let failure: string | undefined;
  const gone = () => new Error(`the stall API process exited: ${failure ?? 'see its output above'}`);
  const pending = new Map<number, (report: StallApiReport) => void>();
  const { child, exited, stop } = forkBenchProcess(stack, API_SCRIPT, {
    env: {
      ...process.env,
      DATABASE_URL: stack.databaseUrl,
      TEMPORAL_ADDRESS: stack.temporalAddress,
      ...(options.embeddedDataDir ? { STALL_DATA_DIR: options.embeddedDataDir } : {}),
    },
    stopMessage: { type: 'stop' } satisfies StallApiRequest,
    onExit: () => pending.clear(),
  });

  const url = await new Promise<string>((resolve, reject) => {
    child.on('message', (report: StallApiReport) => {
      if (report.type === 'ready') resolve(report.url);
      else if (report.type === 'failed') failure = report.message;
      else {
        pending.get(report.id)?.(report);
        pending.delete(report.id);
      }
    });
    void exited.then(() => reject(gone()));
  });

  let nextId = 1;
  const ask = (
    request: { type: 'mark'; workload: string | null } | { type: 'summary'; workload: string } | { type: 'channel' },
  ) =>
    new Promise<StallApiReport>((resolve, reject) => {
      if (!child.connected) return reject(gone());
      const id = nextId++;
      pending.set(id, resolve);
      void exited.then(() => reject(gone()));
      child.send({ ...request, id } satisfies StallApiRequest);
    });
  return {
    url,
    async mark(workload) {
      const report = await ask({ type: 'mark', workload });
      return report.type === 'mark' ? { maxMs: report.maxMs, maxBusyMs: report.maxBusyMs } : { maxMs: NaN, maxBusyMs: NaN };
    },
    async summary(workload) {
      const report = await ask({ type: 'summary', workload });
      if (report.type !== 'summary') throw new Error(`the stall API answered ${report.type} to a summary`);
      const { type: _type, id: _id, ...summary } = report;
      return summary;
    },
    async channel() {
      const report = await ask({ type: 'channel' });
      if (report.type !== 'channel') throw new Error(`the stall API answered ${report.type} to a channel`);
      return report.channel;
    },
    stop,
  };
}
