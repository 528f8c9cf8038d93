import createClient, { type Client } from 'openapi-fetch';
import type { paths } from './openapi.js';

// A typed client of the HTTP API for backend services in TypeScript: paths, parameters, bodies and
// answers are checked at compile time against the OpenAPI document (openapi.d.ts is generated from it).

export type { components, operations, paths } from './openapi.js';
export type MailroomClient = Client<paths>;

/**
 * A client for the deployment at baseUrl (its PUBLIC_URL) calling with a user's API key, or with a
 * channel's forwarder secret for the forwarder's inbound endpoint. Each call answers `{ data }` on
 * success or `{ error }` (the problem+json) otherwise, with the `response` beside it.
 */
export function createMailroomClient(
  baseUrl: string,
  credential: string,
  options: { fetch?: typeof fetch } = {},
): MailroomClient {
  return createClient<paths>({ baseUrl, headers: { Authorization: `Bearer ${credential}` }, ...options });
}

/**
 * Request options that post a raw mail as it is (`message/rfc822`), not as JSON:
 * `client.POST('/v1/channels/{channelId}/inbound', { params, body: raw, ...rawMail })`.
 */
export const rawMail = {
  bodySerializer: (raw: string) => raw,
  headers: { 'Content-Type': 'message/rfc822' },
};
