import { describe, expect, it } from 'vitest';
import { ConfigError, loadConfig, webhookDeliverySettings } from '../../src/config.js';

const SECRET_KEY = 'a-secret-key-of-at-least-thirty-two-characters';

describe('webhook settings', () => {
  it('retry a failed delivery after 5 s, doubling, for a day by default', () => {
    expect(webhookDeliverySettings(loadConfig({ SECRET_KEY }))).toEqual({
      retryInitialMs: 5_000,
      retryWindowMs: 24 * 60 * 60_000,
    });
    expect(
      webhookDeliverySettings(loadConfig({ SECRET_KEY, WEBHOOK_RETRY_INITIAL_SECONDS: '30', WEBHOOK_RETRY_HOURS: '72' })),
    ).toEqual({
      retryInitialMs: 30_000,
      retryWindowMs: 72 * 60 * 60_000,
    });
  });

  it('refuse a retry window under a day, naming the setting', () => {
    expect(() => loadConfig({ SECRET_KEY, WEBHOOK_RETRY_HOURS: '12' })).toThrow(ConfigError);
    expect(() => loadConfig({ SECRET_KEY, WEBHOOK_RETRY_HOURS: '12' })).toThrow(/WEBHOOK_RETRY_HOURS/);
    expect(() => loadConfig({ SECRET_KEY, WEBHOOK_RETRY_INITIAL_SECONDS: '0' })).toThrow(/WEBHOOK_RETRY_INITIAL_SECONDS/);
  });
});
