import { createHash, timingSafeEqual } from 'node:crypto';
import { createServer, type Server } from 'node:http';
import { sql } from 'kysely';
import { isLoopbackAddress } from '../security/destinations.js';
import type { Db } from '../db/connection.js';
import { conversationsWaiting, registry } from './metrics.js';

// GET /metrics in Prometheus' text format: Mailroom's registry, the database's queue gauges where the process has
// a database, and the Temporal SDK's worker metrics where the process runs workers. Served by the API on its own
// port and, with METRICS_PORT, by the worker and the SMTP receiver. Open to loopback; anyone else sends METRICS_TOKEN.

let sdkMetricsUrl: string | undefined;

/** Where this process's Temporal runtime serves its worker metrics (loopback only); see temporal-runtime.ts. */
export function exposeSdkMetrics(url: string): void {
  sdkMetricsUrl = url;
}

// A scrape must not wait on a stuck exporter or database for long: Prometheus' own timeout is 10 s by default.
const PART_TIMEOUT_MS = 3_000;

/** Sets the per-channel queue gauges from the database (one indexed count per scrape). */
async function readQueueGauges(db: Db): Promise<void> {
  const { rows } = await sql<{ channel_id: string; waiting: string }>`
    select channel_id, count(*) as waiting from conversations where stage = 'queued' group by channel_id`.execute(db);
  conversationsWaiting.reset();
  for (const row of rows) conversationsWaiting.set({ channel_id: row.channel_id }, Number(row.waiting));
}

async function sdkMetricsText(): Promise<string> {
  if (!sdkMetricsUrl) return '';
  const response = await fetch(sdkMetricsUrl, { signal: AbortSignal.timeout(PART_TIMEOUT_MS) });
  return response.ok ? await response.text() : '';
}

/** The whole exposition of this process; a part that fails leaves its metrics out rather than failing the scrape. */
export async function metricsText(db?: Db): Promise<string> {
  if (db) await readQueueGauges(db).catch(() => conversationsWaiting.reset());
  const [own, sdk] = await Promise.all([registry.metrics(), sdkMetricsText().catch(() => '')]);
  return sdk ? `${own}\n${sdk}` : own;
}

export const METRICS_CONTENT_TYPE = registry.contentType;

/** Loopback may scrape; anyone else must send `Authorization: Bearer <METRICS_TOKEN>` (none configured: nobody). */
export function mayScrape(remoteAddress: string | undefined, authorization: string | undefined, token: string | undefined) {
  if (isLoopbackAddress(remoteAddress)) return true;
  const given = /^Bearer\s+(\S+)$/i.exec(authorization ?? '')?.[1];
  if (!token || !given) return false;
  // Compared as digests: equal length, constant time.
  const digest = (value: string) => createHash('sha256').update(value).digest();
  return timingSafeEqual(digest(given), digest(token));
}

export const SCRAPE_REFUSED =
  'metrics are served to loopback, or to a scraper sending "Authorization: Bearer <METRICS_TOKEN>" (set METRICS_TOKEN)';

/** The worker's and the receiver's metrics port: GET /metrics only. */
export async function startMetricsServer(options: {
  port: number;
  host: string;
  token?: string | undefined;
  db?: Db;
}): Promise<{ url: string; close(): Promise<void> }> {
  const server: Server = createServer((request, response) => {
    if (request.method !== 'GET' || request.url?.split('?')[0] !== '/metrics') {
      response.writeHead(404, { 'content-type': 'text/plain' }).end('only GET /metrics is served here\n');
      return;
    }
    if (!mayScrape(request.socket.remoteAddress, request.headers.authorization, options.token)) {
      response.writeHead(403, { 'content-type': 'text/plain' }).end(`${SCRAPE_REFUSED}\n`);
      return;
    }
    metricsText(options.db).then(
      (text) => response.writeHead(200, { 'content-type': METRICS_CONTENT_TYPE }).end(text),
      (error: unknown) => response.writeHead(500, { 'content-type': 'text/plain' }).end(`${(error as Error).message}\n`),
    );
  });
  await new Promise<void>((resolve, reject) => server.once('error', reject).listen(options.port, options.host, resolve));
  const { port } = server.address() as { port: number };
  return {
    url: `http://${options.host.includes(':') ? `[${options.host}]` : options.host}:${port}/metrics`,
    close: () => new Promise((resolve) => server.close(() => resolve())),
  };
}
