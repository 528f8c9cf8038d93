import { request as httpRequest } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import ipaddr from 'ipaddr.js';
import {
  DestinationRefusedError,
  DestinationUnresolvedError,
  refusedRange,
  resolveDestination,
  type Destination,
} from '../security/destinations.js';

// Webhook URLs are configured by an account's admin and dialled from inside the deployment, so they follow the
// destination policy of mail server hosts: resolved once, refused into non-public ranges the operator has not
// allowed, the checked address dialled (TLS verified against the name), no redirect followed, the answer read
// only up to a bound and within a deadline. Checked when saved (422) and again at every delivery (DNS changes).

export const MAX_WEBHOOK_URL_LENGTH = 2000;
/** Of an answer only this much is read (and thrown away): a receiver cannot flood the worker. */
const MAX_RESPONSE_BYTES = 64 * 1024;
const DEFAULT_TIMEOUT_MS = 15_000;

/** The URL may not be called: why, in words for the admin (a 422 at create time, an attempt's error later). */
export class WebhookUrlError extends Error {
  override name = 'WebhookUrlError';
}

/** The parts of the URL that cannot change with DNS: https (http only where the operator allows), no credentials. */
export function parseWebhookUrl(text: string, allowedPrivateNetworks: readonly string[]): URL {
  if (text.length > MAX_WEBHOOK_URL_LENGTH) throw new WebhookUrlError(`longer than ${MAX_WEBHOOK_URL_LENGTH} characters`);
  let url: URL;
  try {
    url = new URL(text);
  } catch {
    throw new WebhookUrlError('not an absolute URL');
  }
  if (url.protocol !== 'https:' && url.protocol !== 'http:') throw new WebhookUrlError('must be https');
  if (url.username || url.password) throw new WebhookUrlError('may not carry a user name or password');
  if (url.hash) throw new WebhookUrlError('may not carry a fragment (#…)');
  const host = hostOf(url);
  // http only to a literal address or name the operator's allowed networks contain (checked again once resolved).
  if (url.protocol === 'http:' && allowedPrivateNetworks.length === 0) throw new WebhookUrlError('must be https');
  if (ipaddr.isValid(host) && refusedRange(host, allowedPrivateNetworks) !== undefined) {
    throw new WebhookUrlError(`${host} is a private address, which is not allowed`);
  }
  return url;
}

function hostOf(url: URL): string {
  return url.hostname.replace(/^\[|\]$/g, '');
}

/** Resolves the URL's host under the policy; http is allowed only when it resolves into ALLOWED_PRIVATE_NETWORKS. */
export async function checkWebhookUrl(
  text: string,
  allowedPrivateNetworks: readonly string[],
): Promise<{ url: URL; destination: Destination }> {
  const url = parseWebhookUrl(text, allowedPrivateNetworks);
  let destination: Destination;
  try {
    destination = await resolveDestination(hostOf(url), allowedPrivateNetworks);
  } catch (error) {
    if (error instanceof DestinationRefusedError) {
      throw new WebhookUrlError(`${error.host} resolves to a private address (${error.range}), which is not allowed`);
    }
    if (error instanceof DestinationUnresolvedError) throw new WebhookUrlError(error.message);
    throw error;
  }
  // Plain http leaves the deployment's network only where the operator said it may (e.g. loopback in tests).
  if (url.protocol === 'http:' && refusedRange(destination.address, []) === undefined) {
    throw new WebhookUrlError('must be https');
  }
  return { url, destination };
}

/** What one POST came to: the receiver's status, or the class of error that kept it from answering. */
export type WebhookPostResult = { status: number } | { error: string };

/** POSTs `body` to the checked destination; never throws for what the receiver or the network does. */
export async function postWebhook(
  target: { url: URL; destination: Destination },
  headers: Record<string, string>,
  body: string,
  timeoutMs: number = DEFAULT_TIMEOUT_MS,
): Promise<WebhookPostResult> {
  const { url, destination } = target;
  const family = destination.address.includes(':') ? 6 : 4;
  // Every lookup the request makes answers the checked address: no second resolution can point elsewhere.
  const lookup: LookupFunction = (_host, opts, callback) => {
    if ((opts as { all?: boolean }).all) (callback as any)(null, [{ address: destination.address, family }]);
    else callback(null, destination.address, family);
  };
  const send = url.protocol === 'https:' ? httpsRequest : httpRequest;
  const payload = Buffer.from(body);
  return new Promise<WebhookPostResult>((resolve) => {
    const req = send(
      url,
      {
        method: 'POST',
        headers: {
          ...headers,
          'content-type': 'application/json',
          'content-length': String(payload.length),
          'user-agent': 'Mailroom-Webhooks/1',
        },
        lookup,
        ...(destination.servername ? { servername: destination.servername } : {}),
        signal: AbortSignal.timeout(timeoutMs),
      },
      (response) => {
        const status = response.statusCode ?? 0;
        let read = 0;
        response.on('data', (chunk: Buffer) => {
          read += chunk.length;
          if (read > MAX_RESPONSE_BYTES) response.destroy();
        });
        response.on('close', () => resolve({ status }));
        response.on('error', () => resolve({ status }));
      },
    );
    req.on('error', (error: NodeJS.ErrnoException) => resolve({ error: errorClass(error) }));
    req.end(payload);
  });
}

/** A coarse class for an attempt that got no answer: what an admin needs, not the stack's text. */
function errorClass(error: NodeJS.ErrnoException): string {
  if (error.name === 'AbortError' || error.name === 'TimeoutError' || error.code === 'ABORT_ERR') return 'timeout';
  if (error.code === 'ECONNREFUSED') return 'connection_refused';
  if (error.code === 'ECONNRESET' || error.code === 'EPIPE') return 'connection_reset';
  if (error.code?.startsWith('ERR_TLS') || error.code?.includes('CERT') || error.code === 'EPROTO') return 'tls';
  if (error.code === 'EHOSTUNREACH' || error.code === 'ENETUNREACH') return 'unreachable';
  return 'network';
}
