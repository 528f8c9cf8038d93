import { createServer } from 'node:net';
import type { LogLevel, LogMetadata, Logger as TemporalLogger } from '@temporalio/common';
import { makeTelemetryFilterString, Runtime } from '@temporalio/worker';
import type { Logger } from '../logger.js';
import { mailboxTaskQueue, webhookTaskQueue } from '../workflows/ids.js';
import { exposeSdkMetrics } from './metrics-endpoint.js';

// The Temporal SDK's runtime, installed once per process that runs workers: its logs (the SDK's own, the core's,
// workflows' and activities') go through Mailroom's pino logger with the fields Mailroom's own lines carry, and its
// worker metrics are served beside Mailroom's (src/observability/metrics-endpoint.ts).

const PINO_LEVEL: Record<LogLevel, 'trace' | 'debug' | 'info' | 'warn' | 'error'> = {
  TRACE: 'trace',
  DEBUG: 'debug',
  INFO: 'info',
  WARN: 'warn',
  ERROR: 'error',
};

const CONVERSATION_WORKFLOW = /^conversation-([0-9a-f-]{36})$/;
const CHANNEL_WORKFLOW = /^(?:mailbox|assignment-queue)-([0-9a-f-]{36})$/;

/** The ids Mailroom's own log lines carry, read from a workflow id: `conversation-<id>`, `mailbox-<channel id>`. */
export function idsOfWorkflow(workflowId: unknown): { conversationId?: string; channelId?: string } {
  if (typeof workflowId !== 'string') return {};
  const conversationId = CONVERSATION_WORKFLOW.exec(workflowId)?.[1];
  if (conversationId) return { conversationId };
  const channelId = CHANNEL_WORKFLOW.exec(workflowId)?.[1];
  return channelId ? { channelId } : {};
}

/** Temporal's Logger interface on a pino logger: one JSON line per message, with the workflow's ids as fields. */
export class PinoTemporalLogger implements TemporalLogger {
  constructor(private readonly logger: Logger) {}

  log(level: LogLevel, message: string, meta: LogMetadata = {}): void {
    // The mailbox and webhook workers run activities only, as meant: the SDK's warning that they poll no workflows is no fault.
    const activitiesOnly = [mailboxTaskQueue(''), webhookTaskQueue('')].some((suffix) => String(meta.taskQueue).endsWith(suffix));
    if (message.startsWith('No workflows registered') && activitiesOnly) return;
    this.logger[PINO_LEVEL[level]]({ ...meta, ...idsOfWorkflow(meta.workflowId) }, message);
  }
  trace(message: string, meta?: LogMetadata) {
    this.log('TRACE', message, meta);
  }
  debug(message: string, meta?: LogMetadata) {
    this.log('DEBUG', message, meta);
  }
  info(message: string, meta?: LogMetadata) {
    this.log('INFO', message, meta);
  }
  warn(message: string, meta?: LogMetadata) {
    this.log('WARN', message, meta);
  }
  error(message: string, meta?: LogMetadata) {
    this.log('ERROR', message, meta);
  }
}

/** A free port on loopback for the SDK's own exporter; only this process reads it. */
async function freeLoopbackPort(): Promise<number> {
  const server = createServer();
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(0, '127.0.0.1', resolve));
  const { port } = server.address() as { port: number };
  await new Promise((resolve) => server.close(resolve));
  return port;
}

export interface TemporalRuntimeOptions {
  /** Mailroom's logger; the runtime's lines get `component: temporal`. */
  logger: Logger;
  /** The least level the core (Rust) side forwards; the TS side follows the pino logger's level. */
  coreLevel?: LogLevel;
  /** Serve the SDK's worker metrics with Mailroom's; tests leave it off. */
  metrics?: boolean;
  /** Signals the SDK itself answers by shutting workers down; Mailroom's processes handle them on their own. */
  shutdownSignals?: NodeJS.Signals[];
}

/** Installs the runtime (once per process, before the first worker or native connection). */
export async function installTemporalRuntime({
  logger,
  coreLevel = 'WARN',
  metrics = true,
  shutdownSignals = [],
}: TemporalRuntimeOptions): Promise<void> {
  const metricsAddress = metrics ? `127.0.0.1:${await freeLoopbackPort()}` : undefined;
  Runtime.install({
    logger: new PinoTemporalLogger(logger.child({ component: 'temporal' })),
    shutdownSignals,
    telemetryOptions: {
      logging: { forward: {}, filter: makeTelemetryFilterString({ core: coreLevel, other: coreLevel }) },
      ...(metricsAddress ? { metrics: { prometheus: { bindAddress: metricsAddress, countersTotalSuffix: true } } } : {}),
    },
  });
  if (metricsAddress) exposeSdkMetrics(`http://${metricsAddress}/metrics`);
}
