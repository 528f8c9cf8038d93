import { request as httpRequest, type IncomingMessage } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { LookupFunction } from 'node:net';
import { resolveDestination } from '../security/destinations.js';

// Requests to an OAuth provider (discovery, token, revocation) go where the destination policy allows, like IMAP
// and SMTP hosts: the name is resolved once and the request dials that checked address, TLS verified against
// the name. An answer is read up to a bound and within a deadline, so a hostile provider cannot flood or stall us.

/** The largest answer read from a provider; a discovery document or token response is a few KiB. */
export const MAX_PROVIDER_RESPONSE_BYTES = 64 * 1024;
const PROVIDER_TIMEOUT_MS = 10_000;

/** The provider answered more than MAX_PROVIDER_RESPONSE_BYTES. */
export class ProviderResponseTooLargeError extends Error {
  override name = 'ProviderResponseTooLargeError';
  constructor(readonly url: string) {
    super(`the OAuth provider's answer from ${url} is larger than ${MAX_PROVIDER_RESPONSE_BYTES} bytes`);
  }
}

/** A fetch for openid-client's customFetch: `fetch(url, { method, headers, body, signal })`, no redirects followed. */
export function providerFetch(allowedPrivateNetworks: readonly string[]) {
  return async (
    url: string,
    options: { method?: string; headers?: ConstructorParameters<typeof Headers>[0]; body?: unknown; signal?: AbortSignal },
  ) => {
    const target = new URL(url);
    const destination = await resolveDestination(target.hostname.replace(/^\[|\]$/g, ''), allowedPrivateNetworks);
    const family = destination.address.includes(':') ? 6 : 4;
    // Every lookup the request makes answers the checked address: no second resolution can point elsewhere.
    const lookup: LookupFunction = (_host, opts, callback) => {
      if ((opts as { all?: boolean }).all) (callback as any)(null, [{ address: destination.address, family }]);
      else callback(null, destination.address, family);
    };
    const body = options.body === undefined || options.body === null ? undefined : await bodyBytes(options.body);
    const signal = options.signal
      ? AbortSignal.any([options.signal, AbortSignal.timeout(PROVIDER_TIMEOUT_MS)])
      : AbortSignal.timeout(PROVIDER_TIMEOUT_MS);
    const send = target.protocol === 'https:' ? httpsRequest : httpRequest;
    const headers = Object.fromEntries(new Headers(options.headers).entries());
    const response = await new Promise<IncomingMessage>((resolve, reject) => {
      const req = send(
        target,
        {
          method: options.method ?? 'GET',
          headers: body ? { ...headers, 'content-length': String(body.length) } : headers,
          lookup,
          ...(destination.servername ? { servername: destination.servername } : {}),
          signal,
        },
        resolve,
      );
      req.on('error', reject);
      req.end(body);
    });
    const chunks: Buffer[] = [];
    let size = 0;
    for await (const chunk of response) {
      size += (chunk as Buffer).length;
      if (size > MAX_PROVIDER_RESPONSE_BYTES) {
        response.destroy();
        throw new ProviderResponseTooLargeError(url);
      }
      chunks.push(chunk as Buffer);
    }
    const responseHeaders = new Headers();
    for (const [name, value] of Object.entries(response.headers)) {
      if (value !== undefined) responseHeaders.set(name, Array.isArray(value) ? value.join(', ') : value);
    }
    const status = response.statusCode ?? 502;
    return new Response(status === 204 || status === 304 ? null : Buffer.concat(chunks), { status, headers: responseHeaders });
  };
}

async function bodyBytes(body: unknown): Promise<Buffer> {
  if (typeof body === 'string') return Buffer.from(body);
  if (body instanceof URLSearchParams) return Buffer.from(body.toString());
  if (body instanceof Uint8Array) return Buffer.from(body);
  if (body instanceof ArrayBuffer) return Buffer.from(body);
  return Buffer.from(await new Response(body as ConstructorParameters<typeof Response>[0]).arrayBuffer());
}
