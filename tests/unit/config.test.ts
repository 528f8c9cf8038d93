import { describe, expect, it } from 'vitest';
import { ConfigError, deploymentOAuthClients, loadConfig } from '../../src/config.js';

const KEY = 'k'.repeat(32);

describe('loadConfig', () => {
  it('refuses to start without SECRET_KEY, whatever NODE_ENV says (no published development key)', () => {
    for (const NODE_ENV of [undefined, 'development', 'test', 'production']) {
      expect(() => loadConfig({ NODE_ENV })).toThrow(ConfigError);
      expect(() => loadConfig({ NODE_ENV })).toThrow(/SECRET_KEY/);
    }
  });

  it('refuses a short SECRET_KEY by name', () => {
    expect(() => loadConfig({ SECRET_KEY: 'short' })).toThrow(/SECRET_KEY must be at least 32 characters/);
  });

  it('allows no private network unless the operator lists it', () => {
    expect(loadConfig({ SECRET_KEY: KEY }).ALLOWED_PRIVATE_NETWORKS).toEqual([]);
    expect(loadConfig({ SECRET_KEY: KEY, ALLOWED_PRIVATE_NETWORKS: '127.0.0.0/8, ::1/128' }).ALLOWED_PRIVATE_NETWORKS).toEqual([
      '127.0.0.0/8',
      '::1/128',
    ]);
  });

  it('names an allowlist entry that is not a CIDR range', () => {
    expect(() => loadConfig({ SECRET_KEY: KEY, ALLOWED_PRIVATE_NETWORKS: '10.0.0.0/8,intranet' })).toThrow(
      /ALLOWED_PRIVATE_NETWORKS: "intranet" is not a CIDR range/,
    );
  });

  it('takes the OAuth clients of the providers it is given, empty as unset (docker-compose), and names a bad tenant', () => {
    expect(
      deploymentOAuthClients(loadConfig({ SECRET_KEY: KEY, OAUTH_GOOGLE_CLIENT_ID: '', OAUTH_MICROSOFT_TENANT: '' })),
    ).toEqual({});
    const config = loadConfig({
      SECRET_KEY: KEY,
      OAUTH_GOOGLE_CLIENT_ID: 'g-id',
      OAUTH_GOOGLE_CLIENT_SECRET: 'g-secret',
      OAUTH_MICROSOFT_CLIENT_ID: 'm-id',
      OAUTH_MICROSOFT_TENANT: 'contoso.onmicrosoft.com',
    });
    expect(deploymentOAuthClients(config)).toEqual({
      google: { clientId: 'g-id', clientSecret: 'g-secret' },
      microsoft: { clientId: 'm-id', tenant: 'contoso.onmicrosoft.com' },
    });
    expect(() => loadConfig({ SECRET_KEY: KEY, OAUTH_MICROSOFT_TENANT: '../evil' })).toThrow(/OAUTH_MICROSOFT_TENANT must be/);
  });
});
