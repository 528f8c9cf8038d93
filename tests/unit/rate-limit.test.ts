import { describe, expect, it } from 'vitest';
import { createApp } from '../../src/api/app.js';
import type { ApiDeps } from '../../src/api/env.js';
import { RateLimiter } from '../../src/api/rate-limit.js';
import { loadConfig, RATE_LIMIT_DEFAULTS } from '../../src/config.js';
import { createLogger } from '../../src/logger.js';

// The token bucket's arithmetic on a clock the test moves: nothing sleeps, nothing is timed.

function limiterAt(perMinute: number, options: { maxKeys?: number } = {}) {
  const clock = { ms: 1_700_000_000_000 };
  const limiter = new RateLimiter(perMinute, { now: () => clock.ms, ...options });
  const takeMany = (key: string, count: number) => Array.from({ length: count }, () => limiter.take(key).allowed);
  return { clock, limiter, takeMany };
}

describe('the rate limiter (a token bucket per key)', () => {
  it('lets a rested key send its whole minute at once, then refuses with the seconds until the next request', () => {
    const { limiter, takeMany } = limiterAt(600);
    expect(takeMany('channel-a', 600).every(Boolean)).toBe(true);
    // 600 a minute refill one request every 100 ms: the next one is 1 s away at most.
    expect(limiter.take('channel-a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });

  it('says to retry after exactly the refill time, rounded up to whole seconds', () => {
    const { clock, limiter, takeMany } = limiterAt(5);
    expect(takeMany('a', 5).every(Boolean)).toBe(true);
    // One request every 12 s.
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 12 });
    clock.ms += 11_999;
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
    clock.ms += 1;
    expect(limiter.take('a')).toEqual({ allowed: true });
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 12 });
    clock.ms += 6_000;
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 6 });
  });

  it('refills at the rate and never beyond the burst, however long the key rested', () => {
    const { clock, limiter, takeMany } = limiterAt(60);
    takeMany('a', 60);
    clock.ms += 10_000;
    expect(takeMany('a', 11)).toEqual([...Array(10).fill(true), false]);
    clock.ms += 24 * 60 * 60 * 1000;
    expect(takeMany('a', 61)).toEqual([...Array(60).fill(true), false]);
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });

  it('does not count refused requests against the key', () => {
    const { clock, takeMany } = limiterAt(60);
    takeMany('a', 60);
    expect(takeMany('a', 100).some(Boolean)).toBe(false);
    clock.ms += 1_000;
    expect(takeMany('a', 2)).toEqual([true, false]);
  });

  it('keeps keys apart', () => {
    const { limiter, takeMany } = limiterAt(3);
    expect(takeMany('a', 4)).toEqual([true, true, true, false]);
    expect(takeMany('b', 4)).toEqual([true, true, true, false]);
    expect(limiter.take('a').allowed).toBe(false);
  });

  it('refills nothing when the clock steps back', () => {
    const { clock, limiter, takeMany } = limiterAt(60);
    takeMany('a', 60);
    clock.ms -= 60_000;
    expect(limiter.take('a')).toEqual({ allowed: false, retryAfterSeconds: 1 });
  });

  it('remembers at most its cap of keys, forgetting the least recently seen first', () => {
    const { limiter, takeMany } = limiterAt(2, { maxKeys: 3 });
    takeMany('a', 2);
    takeMany('b', 2);
    takeMany('c', 2);
    // Seen again (and refused): now the most recent.
    expect(limiter.take('a').allowed).toBe(false);
    takeMany('d', 1);
    expect(limiter.trackedKeys).toBe(3);
    // b was the least recently seen: forgotten, its bucket starts full again; a and c are still empty.
    expect(takeMany('b', 3)).toEqual([true, true, false]);
    expect(limiter.take('a').allowed).toBe(false);
    for (let address = 0; address < 10_000; address++) limiter.take(`192.0.2.${address}`);
    expect(limiter.trackedKeys).toBe(3);
  });

  it('caps the keys it tracks by default, so a flood of addresses cannot grow memory without bound', () => {
    const { limiter } = limiterAt(10);
    for (let address = 0; address < 25_000; address++) limiter.take(`client-${address}`);
    expect(limiter.trackedKeys).toBe(10_000);
  });

  it('lets everything through at 0 and tracks nothing', () => {
    const { limiter, takeMany } = limiterAt(0);
    expect(takeMany('a', 10_000).every(Boolean)).toBe(true);
    expect(limiter.trackedKeys).toBe(0);
  });
});

describe('the rate-limit settings', () => {
  const required = { SECRET_KEY: 'x'.repeat(32) };

  it('default to a burst of 600 mails per channel, 60 survey requests per address and 1,200 calls per API key a minute', () => {
    const config = loadConfig(required);
    expect(config).toMatchObject({
      RATE_LIMIT_INBOUND_PER_MINUTE: 600,
      RATE_LIMIT_SURVEY_PER_MINUTE: 60,
      RATE_LIMIT_API_KEY_PER_MINUTE: 1200,
      TRUSTED_PROXIES: [],
    });
    expect(RATE_LIMIT_DEFAULTS.RATE_LIMIT_INBOUND_PER_MINUTE).toBeGreaterThanOrEqual(300);
  });

  it('take 0 for unlimited, empty for the default, and refuse what is not a whole number of requests, or a proxy that is no CIDR range', () => {
    expect(loadConfig({ ...required, RATE_LIMIT_API_KEY_PER_MINUTE: '0' }).RATE_LIMIT_API_KEY_PER_MINUTE).toBe(0);
    // docker-compose passes an unset variable as empty: that is the default, not 0.
    expect(loadConfig({ ...required, RATE_LIMIT_INBOUND_PER_MINUTE: '' }).RATE_LIMIT_INBOUND_PER_MINUTE).toBe(600);
    expect(() => loadConfig({ ...required, RATE_LIMIT_INBOUND_PER_MINUTE: '-1' })).toThrow(/RATE_LIMIT_INBOUND_PER_MINUTE/);
    expect(() => loadConfig({ ...required, RATE_LIMIT_SURVEY_PER_MINUTE: '2.5' })).toThrow(/RATE_LIMIT_SURVEY_PER_MINUTE/);
    expect(loadConfig({ ...required, TRUSTED_PROXIES: '10.0.0.0/8, fd00::/8' }).TRUSTED_PROXIES).toEqual([
      '10.0.0.0/8',
      'fd00::/8',
    ]);
    expect(() => loadConfig({ ...required, TRUSTED_PROXIES: '10.0.0.1' })).toThrow(/TRUSTED_PROXIES/);
  });
});

describe('the OpenAPI document of the limits', () => {
  const app = createApp({
    config: { SECRET_KEY: 'x'.repeat(32), MAX_INBOUND_BYTES: 1024, PUBLIC_URL: 'http://unused', INBOUND_DOMAIN: 'inbound.test' },
    logger: createLogger('silent'),
    capture: {},
  } as unknown as ApiDeps);
  const document = app.getOpenAPI31Document({ openapi: '3.1.0', info: { title: 'Mailroom API', version: 'test' } });
  const operations = Object.entries(document.paths ?? {}).flatMap(([path, item]) =>
    Object.entries(item ?? {})
      .filter(([method]) => ['get', 'put', 'post', 'patch', 'delete'].includes(method))
      .map(([method, operation]) => ({ name: `${method.toUpperCase()} ${path}`, operation: operation as any })),
  );

  it('lists 429 with a Retry-After header on every operation an API key, a channel secret or a survey link opens', () => {
    const limited = operations.filter(
      ({ name, operation }) =>
        name.includes('/csat/') ||
        (operation.security ?? []).some((scheme: object) => 'apiKey' in scheme || 'channelSecret' in scheme),
    );
    expect(limited.length).toBeGreaterThan(50);
    const gaps = limited
      .filter(({ operation }) => operation.responses['429']?.headers?.['Retry-After']?.required !== true)
      .map(({ name }) => name);
    expect(gaps).toEqual([]);
  });
});
