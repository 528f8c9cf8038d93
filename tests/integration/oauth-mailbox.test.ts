import { createServer, type Server } from 'node:http';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { hashToken, startOidcProvider, type OidcTestProvider } from '../../scripts/servers/oidc-provider.js';
import { freePort } from '../../scripts/servers/tools.js';
import { startXoauth2Smtp, type Xoauth2SmtpServer } from '../../scripts/servers/xoauth2-smtp.js';
import { LOOPBACK_NETWORKS } from '../../src/config.js';
import { createAccessTokens } from '../../src/oauth/access-tokens.js';
import { decryptCredential } from '../../src/security/credentials.js';
import { mailboxWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually } from '../support/http.js';
import { appendMail, sampleMail } from '../support/imap.js';
import { signInAndConsent } from '../support/oauth-browser.js';
import { seedSupportTeam, startTestStack, TEST_SECRET_KEY, type TestStack } from '../support/stack.js';

// The mailbox at an OAuth provider, end to end on real servers: oidc-provider (sign-in, consent, tokens,
// introspection, revocation), Dovecot checking every XOAUTH2/OAUTHBEARER login at the provider's introspection
// endpoint, and an SMTP server that takes only XOAUTH2 and checks the token the same way.

const ACCOUNT = 'support@oauth.example';
// Another client reads and writes the mailbox with a password, as the mail user would.
const imapUser = { user: ACCOUNT, password: 'the-users-own-password' };
// Short, so the suite sees tokens expire and get refreshed; Mailroom refreshes when a third of it is left.
const ACCESS_TOKEN_TTL_SECONDS = 15;

describe('a mailbox connected with OAuth 2.0', () => {
  let stack: TestStack;
  let provider: OidcTestProvider;
  let dovecot: DovecotServer;
  let smtp: Xoauth2SmtpServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let publicUrl: string;
  let firstCallback: URL;
  let conversationId: string;

  const messageIdOf = (raw: string) => /^Message-ID: (.+)$/m.exec(raw)![1]!;
  const asAdmin = (method: string, path: string, body?: unknown) => callApi(stack.api.url, team.admin.apiKey, method, path, body);
  const oauthPath = () => `/v1/channels/${team.channel.id}/oauth`;
  const connection = (overrides: Record<string, unknown> = {}) => ({
    provider: 'generic',
    issuer: provider.issuer,
    clientId: provider.client.clientId,
    clientSecret: provider.client.clientSecret,
    scopes: ['openid', 'email', 'offline_access', 'mail'],
    imap: { host: dovecot.host, port: dovecot.port, tls: false },
    smtp: { host: smtp.host, port: smtp.port, secure: false },
    ...overrides,
  });
  const start = (body = connection(), path = `${oauthPath()}/authorizations`, apiKey = team.admin.apiKey) =>
    callApi(stack.api.url, apiKey, 'POST', path, body);
  const openCallback = async (callback: URL) => {
    const response = await fetch(callback);
    return { status: response.status, page: await response.text() };
  };
  /** The whole flow as the admin's browser goes through it; returns the callback's page. */
  const connectAs = async (login: string) => {
    const started = await start();
    expect(started.status).toBe(201);
    const callback = await signInAndConsent(started.body.authorizationUrl, login);
    return { callback, ...(await openCallback(callback)) };
  };
  const threadedIds = async () =>
    (
      await stack.db
        .selectFrom('inbound_messages')
        .select('message_id')
        .where('channel_id', '=', team.channel.id)
        .where('status', '=', 'threaded')
        .execute()
    ).map((row) => row.message_id);
  const waitForThreaded = (ids: string[], timeoutMs = 90_000) =>
    eventually(async () => {
      const stored = await threadedIds();
      return ids.every((id) => stored.includes(id)) ? stored : undefined;
    }, timeoutMs);
  const grantRow = () =>
    stack.db.selectFrom('mailbox_oauth_grants').selectAll().where('channel_id', '=', team.channel.id).executeTakeFirstOrThrow();

  beforeAll(async () => {
    const apiPort = await freePort();
    publicUrl = `http://127.0.0.1:${apiPort}`;
    provider = await startOidcProvider({
      redirectUris: [`${publicUrl}/v1/oauth/callback`],
      accessTokenTtlSeconds: ACCESS_TOKEN_TTL_SECONDS,
    });
    [dovecot, smtp, stack] = await Promise.all([
      startDovecot({ users: [imapUser], oauth2: { introspectionUrl: provider.introspection.urlWithCredentials } }),
      startXoauth2Smtp({ introspect: provider.introspect }),
      startTestStack({ api: { port: apiPort, publicUrl } }),
    ]);
    team = await seedSupportTeam(stack.db, { name: 'OAuth Support', emailAddress: ACCOUNT });
  }, 120_000);

  afterAll(async () => {
    await stack?.stop();
    await dovecot?.stop();
    await smtp?.stop();
    await provider?.stop();
  });

  it("connects through the provider's sign-in and consent, and an appended mail becomes a conversation (IDLE)", async () => {
    const started = await start();
    expect(started.status).toBe(201);
    const authorization = new URL(started.body.authorizationUrl);
    expect(authorization.origin).toBe(provider.issuer);
    expect(authorization.searchParams.get('code_challenge_method')).toBe('S256');
    expect(authorization.searchParams.get('redirect_uri')).toBe(`${publicUrl}/v1/oauth/callback`);
    expect(started.body.redirectUri).toBe(`${publicUrl}/v1/oauth/callback`);

    firstCallback = await signInAndConsent(started.body.authorizationUrl, ACCOUNT);
    expect(firstCallback.origin).toBe(publicUrl);
    const answered = await openCallback(firstCallback);
    expect(answered).toMatchObject({ status: 200, page: expect.stringContaining(`${ACCOUNT} is connected to OAuth Support`) });

    const grant = await grantRow();
    const refreshToken = decryptCredential(grant.refresh_token_encrypted, TEST_SECRET_KEY);
    const accessToken = decryptCredential(grant.access_token_encrypted!, TEST_SECRET_KEY);
    const shown = await asAdmin('GET', oauthPath());
    expect(shown.body).toMatchObject({ method: 'oauth2', provider: 'generic', account: ACCOUNT, state: 'connected', smtp: true });
    const imap = await asAdmin('GET', `/v1/channels/${team.channel.id}/imap`);
    expect(imap.body).toMatchObject({ enabled: true, username: ACCOUNT, passwordSet: false, login: { method: 'oauth2' } });
    for (const answer of [shown.body, imap.body]) {
      expect(JSON.stringify(answer)).not.toContain(refreshToken);
      expect(JSON.stringify(answer)).not.toContain(accessToken);
    }
    expect(grant.refresh_token_encrypted).not.toContain(refreshToken);

    // A new mailbox starts at the end of its folder: mail appended once the first session has read it.
    await eventually(async () =>
      (await asAdmin('GET', `/v1/channels/${team.channel.id}/imap`)).body.cursors.length > 0 ? true : undefined,
    );
    const raw = sampleMail(1, { from: 'ann@customer.example', to: ACCOUNT });
    await appendMail(dovecot, imapUser, 'INBOX', raw);
    await waitForThreaded([messageIdOf(raw)]);
    const { conversation_id } = await stack.db
      .selectFrom('inbound_messages')
      .select('conversation_id')
      .where('message_id', '=', messageIdOf(raw))
      .executeTakeFirstOrThrow();
    conversationId = conversation_id!;
    // Dovecot let Mailroom in because the provider said its token was active and was ACCOUNT's.
    expect(provider.introspections.some((seen) => seen.active && seen.sub === ACCOUNT)).toBe(true);
  }, 120_000);

  it("sends an agent's reply through the provider's SMTP server with XOAUTH2", async () => {
    const sent = await callApi(stack.api.url, team.agents[0]!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Hello Ann, it is on its way.',
    });
    expect(sent.status).toBe(201);
    const mail = await eventually(async () => smtp.mails.find((m) => m.raw.toString().includes(sent.body.messageId)));
    expect(mail).toMatchObject({ user: ACCOUNT, from: ACCOUNT, to: ['ann@customer.example'] });
    expect(smtp.logins.length).toBeGreaterThan(0);
    expect(smtp.logins.every((login) => login.user === ACCOUNT && login.accepted)).toBe(true);
  }, 90_000);

  it('tests the connected logins with the grant, and never lets settings naming another server have it', async () => {
    const imapPath = `/v1/channels/${team.channel.id}/imap`;
    expect((await asAdmin('POST', `${imapPath}/test`, {})).body).toMatchObject({ ok: true, idle: true });
    expect((await asAdmin('POST', `/v1/channels/${team.channel.id}/smtp/test`, {})).body).toEqual({ ok: true });
    expect((await asAdmin('GET', `/v1/channels/${team.channel.id}/smtp`)).body).toMatchObject({
      oauth: true,
      passwordSet: false,
    });

    const elsewhere = { enabled: true, host: '127.0.0.2', port: dovecot.port, tls: false, username: ACCOUNT };
    const moved = await asAdmin('PUT', imapPath, elsewhere);
    expect(moved.status).toBe(422);
    expect(moved.body.errors).toEqual([{ field: 'password', message: expect.stringContaining('OAuth connection') }]);
    const tested = await asAdmin('POST', `${imapPath}/test`, { host: '127.0.0.2' });
    expect(tested.status).toBe(422);
    const smtpElsewhere = { host: '127.0.0.2', port: smtp.port, secure: false, username: ACCOUNT };
    expect((await asAdmin('PUT', `/v1/channels/${team.channel.id}/smtp`, smtpElsewhere)).status).toBe(422);
    expect((await asAdmin('POST', `/v1/channels/${team.channel.id}/smtp/test`, { host: '127.0.0.2' })).status).toBe(422);
    expect((await asAdmin('GET', oauthPath())).body).toMatchObject({ method: 'oauth2', smtp: true });
  }, 60_000);

  it('refreshes the access token ahead of its expiry, keeps the rotated refresh token, and never presents an expired token', async () => {
    const before = await grantRow();
    const firstToken = provider.grants.find((grant) => grant.grantType === 'authorization_code')!;
    // Wait (no assertion on time) until the token issued at the connection has expired at the provider.
    await eventually(async () => (Date.now() > firstToken.accessTokenExpiresAt + 1_000 ? true : undefined), 60_000, 250);

    // The IMAP session logs in again (a server restart would do the same), and a reply goes out by SMTP.
    await dovecot.kickAll();
    const raw = sampleMail(2, { from: 'ann@customer.example', to: ACCOUNT });
    await appendMail(dovecot, imapUser, 'INBOX', raw);
    await waitForThreaded([messageIdOf(raw)]);
    const sent = await callApi(stack.api.url, team.agents[0]!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'And here is the tracking number.',
    });
    expect(sent.status).toBe(201);
    await eventually(async () => smtp.mails.find((m) => m.raw.toString().includes(sent.body.messageId)));

    expect(provider.grants.some((grant) => grant.grantType === 'refresh_token')).toBe(true);
    const after = await grantRow();
    expect(after.refresh_count).toBeGreaterThan(before.refresh_count);
    // The provider rotates refresh tokens (and refuses an old one): the stored one is the newest.
    expect(decryptCredential(after.refresh_token_encrypted, TEST_SECRET_KEY)).not.toBe(
      decryptCredential(before.refresh_token_encrypted, TEST_SECRET_KEY),
    );
    // Every token a mail server was shown was active and within its lifetime when it was checked.
    const lifetimes = new Map(provider.grants.map((grant) => [grant.accessTokenHash, grant.accessTokenExpiresAt]));
    expect(provider.introspections.length).toBeGreaterThan(0);
    for (const seen of provider.introspections) {
      expect(seen.active).toBe(true);
      expect(seen.at).toBeLessThan(lifetimes.get(seen.tokenHash)!);
    }
    expect(smtp.logins.every((login) => login.accepted && lifetimes.has(login.tokenHash))).toBe(true);
  }, 120_000);

  it('refreshes a grant once however many sessions and sends want a token at the same moment (the row lock)', async () => {
    // Five worker processes' worth of token sources, as each would build its own.
    const sources = Array.from({ length: 5 }, () =>
      createAccessTokens({ db: stack.db, secretKey: TEST_SECRET_KEY, allowedPrivateNetworks: LOOPBACK_NETWORKS }),
    );
    await stack.db
      .updateTable('mailbox_oauth_grants')
      .set({ access_token_expires_at: new Date(Date.now() - 1_000) })
      .where('channel_id', '=', team.channel.id)
      .execute();
    const refreshesBefore = provider.grants.filter((grant) => grant.grantType === 'refresh_token').length;
    const tokens = await Promise.all(sources.map((source) => source.accessTokenFor(team.channel.id)));
    expect(new Set(tokens.map((token) => token.accessToken)).size).toBe(1);
    expect(provider.grants.filter((grant) => grant.grantType === 'refresh_token')).toHaveLength(refreshesBefore + 1);
    // With rotation, a second refresh with the same refresh token would have ended the grant at the provider.
    expect((await grantRow()).state).toBe('connected');
    expect((await provider.introspect(tokens[0]!.accessToken)).active).toBe(true);
  }, 60_000);

  it('waits for an admin when the grant is revoked, keeps mail of the meantime, and drains it after the reconnect', async () => {
    provider.revokeAccount(ACCOUNT);
    await dovecot.kickAll();
    const meanwhile = [
      sampleMail(3, { from: 'ann@customer.example', to: ACCOUNT }),
      sampleMail(4, { from: 'bo@customer.example', to: ACCOUNT }),
    ];
    for (const raw of meanwhile) await appendMail(dovecot, imapUser, 'INBOX', raw);

    const waiting = await eventually(async () => {
      const { body } = await asAdmin('GET', oauthPath());
      return body.state === 'reauthorization_required' ? body : undefined;
    }, 180_000);
    expect(waiting.reason).toMatch(/invalid_grant/);
    expect(waiting.since).toEqual(expect.any(String));
    const imap = await asAdmin('GET', `/v1/channels/${team.channel.id}/imap`);
    expect(imap.body.login).toMatchObject({ state: 'reauthorization_required', reason: waiting.reason });

    // The mailbox workflow stopped trying and says why.
    const mailbox = stack.temporal.workflow.getHandle(mailboxWorkflowId(team.channel.id));
    const details = await eventually(async () => {
      const { currentDetails } = (await mailbox.query('__temporal_workflow_metadata')) as { currentDetails: string };
      return currentDetails.startsWith('Waiting for an admin') ? currentDetails : undefined;
    });
    expect(details).toContain('invalid_grant');
    expect((await mailbox.describe()).raw.pendingActivities ?? []).toHaveLength(0);
    expect(await threadedIds()).not.toContain(messageIdOf(meanwhile[0]!));

    // A reply written meanwhile waits in the outbox, saying why, instead of failing.
    const reply = await callApi(stack.api.url, team.agents[0]!.apiKey, 'POST', `/v1/conversations/${conversationId}/replies`, {
      text: 'Written while the mailbox waits for its admin.',
    });
    expect(reply.status).toBe(201);
    const queued = await eventually(async () => {
      const { body } = await asAdmin('GET', `/v1/conversations/${conversationId}`);
      const message = (body.messages as Array<Record<string, any>>).find((m) => m.id === reply.body.outboundMessageId);
      return message?.deliveryError ? message : undefined;
    }, 60_000);
    expect(queued).toMatchObject({ deliveryStatus: 'queued' });
    expect(queued.deliveryError).toContain('waiting for an admin to connect the mailbox again');

    const reconnected = await connectAs(ACCOUNT);
    expect(reconnected.status).toBe(200);
    expect((await asAdmin('GET', oauthPath())).body).toMatchObject({ state: 'connected', reason: null });
    await waitForThreaded(meanwhile.map(messageIdOf));
    const ids = await threadedIds();
    expect(new Set(ids).size).toBe(ids.length);
    expect(ids).toHaveLength(4);
    // The queued reply goes out at its next attempt (a minute at most), with the new grant.
    await eventually(async () => smtp.mails.find((m) => m.raw.toString().includes(reply.body.messageId)), 120_000, 500);
  }, 420_000);

  describe('hostile callbacks and providers', () => {
    it('answers an unknown, a replayed and an expired state with a 400 page and connects nothing', async () => {
      const grantBefore = await grantRow();
      const unknown = await openCallback(new URL(`${publicUrl}/v1/oauth/callback?state=made-up&code=x`));
      expect(unknown).toMatchObject({ status: 400 });
      expect(unknown.page).toContain('unknown');

      const oversized = await fetch(`${publicUrl}/v1/oauth/callback?state=${'s'.repeat(600)}&code=x`);
      expect(oversized.status).toBe(422);
      expect(oversized.headers.get('content-type')).toContain('application/problem+json');
      expect(((await oversized.json()) as { errors: unknown[] }).errors).toEqual([expect.objectContaining({ field: 'state' })]);

      const replayed = await openCallback(firstCallback);
      expect(replayed.status).toBe(400);
      expect(replayed.page).toContain('used already');

      const started = await start();
      const state = new URL(started.body.authorizationUrl).searchParams.get('state')!;
      await stack.db
        .updateTable('oauth_authorizations')
        .set({ expires_at: new Date(Date.now() - 60_000) })
        .where('state_hash', '=', hashToken(state))
        .execute();
      const expired = await openCallback(await signInAndConsent(started.body.authorizationUrl, ACCOUNT));
      expect(expired.status).toBe(400);
      expect(expired.page).toContain('expired');
      expect((await grantRow()).connected_at).toEqual(grantBefore.connected_at);
    }, 60_000);

    it("refuses a code with another admin's state: nothing is connected to either channel", async () => {
      const other = await seedSupportTeam(stack.db, { name: 'Other Support', emailAddress: 'help@other.example' });
      const theirs = await start(connection(), `/v1/channels/${other.channel.id}/oauth/authorizations`, other.admin.apiKey);
      expect(theirs.status).toBe(201);
      const ours = await start();
      const callback = await signInAndConsent(ours.body.authorizationUrl, 'intruder@oauth.example');
      callback.searchParams.set('state', new URL(theirs.body.authorizationUrl).searchParams.get('state')!);
      const answered = await openCallback(callback);
      expect(answered.status).toBe(400);
      expect(answered.page).toContain('did not give a grant');
      expect(
        await stack.db.selectFrom('mailbox_oauth_grants').select('account').where('channel_id', '=', other.channel.id).execute(),
      ).toEqual([]);
      expect((await grantRow()).account).toBe(ACCOUNT);
      // Another admin of another account cannot start one for this channel either.
      expect((await start(connection(), `${oauthPath()}/authorizations`, other.admin.apiKey)).status).toBe(404);
    }, 60_000);

    it('names what a preset lacks (this deployment has no OAuth client of its own) and refuses what it brings itself', async () => {
      const fieldsOf = async (body: Record<string, unknown>) => {
        const answer = await start(body as ReturnType<typeof connection>);
        expect(answer.status).toBe(422);
        return answer.body.errors.map((error: { field: string }) => error.field);
      };
      expect(await fieldsOf({ provider: 'google' })).toEqual(['clientId']);
      expect(await fieldsOf({ provider: 'microsoft', tenant: '../common' })).toEqual(['tenant']);
      expect(await fieldsOf({ provider: 'google', clientId: 'x', tenant: 'common' })).toEqual(['tenant']);
      expect(await fieldsOf({ provider: 'google', clientId: 'x', issuer: provider.issuer })).toEqual(['issuer']);
      expect(await fieldsOf({ provider: 'generic', clientSecret: 'x', issuer: provider.issuer })).toEqual(['clientSecret']);
      expect(await fieldsOf({ provider: 'generic', clientId: 'x', imap: { host: dovecot.host } })).toEqual(['issuer']);
    });

    it.each([
      ['a private address', 'http://10.20.30.40/'],
      ['the cloud metadata address', 'http://169.254.169.254/'],
    ])('refuses a generic provider on %s (destination policy) with 422 naming issuer', async (_what, issuer) => {
      const refused = await start(connection({ issuer }));
      expect(refused.status).toBe(422);
      expect(refused.body.errors).toEqual([{ field: 'issuer', message: expect.stringContaining('not allowed') }]);
    });

    it("bounds an oversized provider error, in the token endpoint's answer and in the redirect", async () => {
      // A provider that sends the browser straight back, and answers the code exchange with 1 MiB of error.
      const hostile: Server = createServer((req, res) => {
        const url = new URL(req.url!, 'http://127.0.0.1');
        if (url.pathname === '/authorize') {
          const back = new URL(url.searchParams.get('redirect_uri')!);
          back.searchParams.set('code', 'any');
          back.searchParams.set('state', url.searchParams.get('state')!);
          res.writeHead(302, { location: back.toString() }).end();
          return;
        }
        res.writeHead(400, { 'content-type': 'application/json' });
        res.end(JSON.stringify({ error: 'invalid_grant', error_description: 'x'.repeat(1024 * 1024) }));
      });
      await new Promise<void>((resolve) => hostile.listen(0, '127.0.0.1', resolve));
      const base = `http://127.0.0.1:${(hostile.address() as { port: number }).port}`;
      try {
        const started = await start(
          connection({
            issuer: undefined,
            authorizationEndpoint: `${base}/authorize`,
            tokenEndpoint: `${base}/token`,
            username: ACCOUNT,
          }),
        );
        expect(started.status).toBe(201);
        const redirect = await fetch(started.body.authorizationUrl, { redirect: 'manual' });
        const answered = await openCallback(new URL(redirect.headers.get('location')!));
        expect(answered.status).toBe(400);
        expect(answered.page).toContain('larger than 65536 bytes');
        expect(answered.page.length).toBeLessThan(4_000);

        const second = await start(
          connection({
            issuer: undefined,
            authorizationEndpoint: `${base}/authorize`,
            tokenEndpoint: `${base}/token`,
            username: ACCOUNT,
          }),
        );
        const state = new URL(second.body.authorizationUrl).searchParams.get('state')!;
        const denied = await openCallback(
          new URL(`${publicUrl}/v1/oauth/callback?state=${state}&error=access_denied&error_description=${'y'.repeat(6000)}`),
        );
        expect(denied.status).toBe(400);
        expect(denied.page).toContain('access_denied');
        expect(denied.page.length).toBeLessThan(4_000);
      } finally {
        hostile.closeAllConnections();
        await new Promise((resolve) => hostile.close(resolve));
      }
      expect((await grantRow()).account).toBe(ACCOUNT);
    }, 60_000);
  });

  it('disconnects: the grant is revoked at the provider and removed, the sync stops', async () => {
    const grant = await grantRow();
    const refreshToken = decryptCredential(grant.refresh_token_encrypted, TEST_SECRET_KEY);
    const disconnected = await asAdmin('DELETE', oauthPath());
    expect(disconnected).toMatchObject({ status: 200, body: { revokedAtProvider: true } });
    expect((await provider.introspect(refreshToken)).active).toBe(false);
    expect((await asAdmin('GET', oauthPath())).body).toMatchObject({ method: 'password', state: null, smtp: false });
    expect((await asAdmin('GET', `/v1/channels/${team.channel.id}/imap`)).body.enabled).toBe(false);
  });
});
