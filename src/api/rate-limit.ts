import { getConnInfo } from '@hono/node-server/conninfo';
import type { OpenAPIHono } from '@hono/zod-openapi';
import type { Context } from 'hono';
import ipaddr from 'ipaddr.js';
import { RATE_LIMIT_DEFAULTS } from '../config.js';
import type { ApiDeps, AppEnv } from './env.js';
import { Problem, problemResponses } from './problem.js';

// Rate limits live in each API process's memory: a guard against floods, not a quota. Counting in
// PostgreSQL would add a write to every request and make the database what a flood hits.

/** Keys one limiter remembers; past it the least recently seen is forgotten (its bucket starts full again). */
export const MAX_TRACKED_KEYS = 10_000;

// A bucket counts in 1/60,000 of a request and refills `perMinute` units a millisecond: integers throughout.
const UNITS_PER_REQUEST = 60_000;

export type RateLimitVerdict = { allowed: true } | { allowed: false; retryAfterSeconds: number };

/**
 * A token bucket per key (a channel, a client address, an API key): it holds `perMinute` requests and
 * refills at `perMinute` a minute, so whoever paused may send that many at once. 0 = unlimited.
 */
export class RateLimiter {
  private readonly buckets = new Map<string, { units: number; at: number }>();
  private readonly now: () => number;
  private readonly maxKeys: number;

  constructor(
    readonly perMinute: number,
    options: { now?: () => number; maxKeys?: number } = {},
  ) {
    this.now = options.now ?? Date.now;
    this.maxKeys = options.maxKeys ?? MAX_TRACKED_KEYS;
  }

  /** Takes one request from `key`'s bucket, or says in how many seconds there is one again. */
  take(key: string): RateLimitVerdict {
    if (this.perMinute === 0) return { allowed: true };
    const now = this.now();
    const capacity = this.perMinute * UNITS_PER_REQUEST;
    const bucket = this.buckets.get(key);
    // A clock that steps back refills nothing.
    const units = bucket ? Math.min(capacity, bucket.units + Math.max(0, now - bucket.at) * this.perMinute) : capacity;
    const allowed = units >= UNITS_PER_REQUEST;
    // Delete and set again: a Map iterates in insertion order, so the first key is the least recently seen.
    this.buckets.delete(key);
    this.buckets.set(key, { units: allowed ? units - UNITS_PER_REQUEST : units, at: now });
    if (this.buckets.size > this.maxKeys) this.buckets.delete(this.buckets.keys().next().value!);
    if (allowed) return { allowed: true };
    return { allowed: false, retryAfterSeconds: Math.ceil((UNITS_PER_REQUEST - units) / (this.perMinute * 1000)) };
  }

  /** How many keys the limiter remembers now (at most its cap). */
  get trackedKeys(): number {
    return this.buckets.size;
  }
}

/** The API's three limits, from the configuration (a limit left out has its default). */
export function createRateLimits(config: ApiDeps['config'], now?: () => number) {
  const limiter = (name: keyof typeof RATE_LIMIT_DEFAULTS) =>
    new RateLimiter(config[name] ?? RATE_LIMIT_DEFAULTS[name], now ? { now } : {});
  return {
    inboundPerChannel: limiter('RATE_LIMIT_INBOUND_PER_MINUTE'),
    surveyPerClientAddress: limiter('RATE_LIMIT_SURVEY_PER_MINUTE'),
    perApiKey: limiter('RATE_LIMIT_API_KEY_PER_MINUTE'),
  };
}

export type RateLimits = ReturnType<typeof createRateLimits>;

/** The 429 problem (a JSON route's), naming the limit in `detail`. */
export function rateLimited(detail: string, retryAfterSeconds: number): Problem {
  return new Problem(429, 'rate-limited', 'Too many requests', detail, undefined, {
    'Retry-After': String(retryAfterSeconds),
  });
}

/**
 * Who is calling, as a rate-limit key: the connection's address, or, from a connection of a trusted proxy,
 * the nearest address in X-Forwarded-For that is not one of those proxies (the ones left of it anybody can
 * write). An IPv6 client counts by its /64, the block one customer line gets.
 */
export function clientAddressBehind(trustedProxies: string[]) {
  const proxies = trustedProxies.map((range) => ipaddr.parseCIDR(range));
  const trusted = (address: ipaddr.IPv4 | ipaddr.IPv6) =>
    proxies.some(([network, bits]) => network.kind() === address.kind() && address.match(network, bits));

  return (c: Context): string => {
    const socket = parsedAddress(socketAddress(c));
    if (!socket) return 'unknown';
    let client = socket;
    if (trusted(socket)) {
      const forwarded = (c.req.header('x-forwarded-for') ?? '').split(',').reverse();
      for (const hop of forwarded) {
        const address = parsedAddress(hop.trim());
        if (!address) break;
        client = address;
        if (!trusted(address)) break;
      }
    }
    if (client.kind() === 'ipv4') return client.toString();
    const parts = (client as ipaddr.IPv6).parts.slice(0, 4);
    return `${new ipaddr.IPv6([...parts, 0, 0, 0, 0]).toString()}/64`;
  };
}

function socketAddress(c: Context): string | undefined {
  // app.request() without a Node.js socket (some tests) has no connection to read.
  try {
    return getConnInfo(c).remote.address;
  } catch {
    return undefined;
  }
}

function parsedAddress(text: string | undefined): ipaddr.IPv4 | ipaddr.IPv6 | undefined {
  // process(): an IPv4-mapped IPv6 address (::ffff:192.0.2.7) is the IPv4 address it carries.
  return text && ipaddr.isValid(text) ? ipaddr.process(text) : undefined;
}

/** Documents 429 (with Retry-After) on every operation an API key authenticates: each is limited per key. */
export function documentApiKeyRateLimit(app: OpenAPIHono<AppEnv>) {
  for (const definition of app.openAPIRegistry.definitions) {
    if (definition.type !== 'route') continue;
    const { route } = definition;
    if (route.security?.some((scheme) => 'apiKey' in scheme)) route.responses = { ...route.responses, ...problemResponses(429) };
  }
}
