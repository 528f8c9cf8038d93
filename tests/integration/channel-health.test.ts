import { Client, Connection } from '@temporalio/client';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { startDovecot, type DovecotServer } from '../../scripts/servers/dovecot.js';
import { freePort } from '../../scripts/servers/tools.js';
import { IMAP_FAILURE_MESSAGES } from '../../src/mail/imap-connection.js';
import type { SmtpReceiver } from '../../src/receiver/smtp-receiver.js';
import { mailboxWorkflowId } from '../../src/workflows/ids.js';
import { callApi, eventually, postMail } from '../support/http.js';
import { customerMail } from '../support/mail.js';
import { deliver, refusal, startReceiver } from '../support/receiver.js';
import { seedSupportTeam, startTestStack, TEST_INBOUND_DOMAIN, type TestStack } from '../support/stack.js';

// GET /v1/channels/{id}/health through the real paths: the forwarder endpoint, the SMTP receiver, an IMAP mailbox on
// Dovecot, and sending through the stack's SMTP capture or a server that is not there.

const account = { user: 'support', password: 'imap-secret' };

describe("a channel's health", () => {
  let stack: TestStack;
  let dovecot: DovecotServer;
  let team: Awaited<ReturnType<typeof seedSupportTeam>>;
  let receiver: { receiver: SmtpReceiver; port: number };
  const forwarding = `support@acme.${TEST_INBOUND_DOMAIN}`;

  const health = async () => {
    const { status, body } = await callApi(
      stack.api.url,
      team.agents[0]!.apiKey,
      'GET',
      `/v1/channels/${team.channel.id}/health`,
    );
    expect(status).toBe(200);
    return body;
  };
  const handedOver = (messageId: string) =>
    eventually(() =>
      stack.db
        .selectFrom('inbound_messages')
        .select('conversation_id')
        .where('message_id', '=', `<${messageId}>`)
        .where('signalled_at', 'is not', null)
        .executeTakeFirst(),
    );

  beforeAll(async () => {
    [stack, dovecot] = await Promise.all([startTestStack(), startDovecot({ users: [account] })]);
    team = await seedSupportTeam(stack.db, {
      name: 'Support',
      emailAddress: 'support@acme.example',
      greeting: { text: 'Thanks, we got your mail.' },
    });
    const set = await callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${team.channel.id}/forwarding-address`, {
      username: 'support',
      subdomain: 'acme',
    });
    expect(set.status).toBe(200);
    receiver = await startReceiver(stack);
  });

  afterAll(async () => {
    await receiver?.receiver.close();
    await stack?.stop();
    await dovecot?.stop();
  });

  it('says every path is unused on a new channel, IMAP and the Sent copy off', async () => {
    const body = await health();
    expect(body.channelId).toBe(team.channel.id);
    expect(body.inbound.forwarder).toEqual({
      state: 'unused',
      lastMailAt: null,
      lastSuccessAt: null,
      lastError: null,
      failingSince: null,
    });
    expect(body.inbound.smtpReceiver.state).toBe('unused');
    expect(body.inbound.imap.state).toBe('off');
    expect(body.outbound.smtp.state).toBe('unused');
    expect(body.outbound.sentFolder.state).toBe('off');
  });

  it('shows the last mail of the forwarder and the receiver, and the greeting as the last send', async () => {
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: 'posted@example.com', from: '<pat@example.com>' }),
    );
    expect(posted.status).toBe(202);
    await deliver(
      receiver.port,
      { from: 'sam@example.com', to: [forwarding] },
      customerMail({ messageId: 'delivered@example.com', from: '<sam@example.com>' }),
    );
    await Promise.all([handedOver('posted@example.com'), handedOver('delivered@example.com')]);
    await stack.capture.waitFor((mail) => mail.envelope.to.includes('sam@example.com'));

    const body = await eventually(async () => {
      const now = await health();
      return now.outbound.smtp.state === 'ok' ? now : undefined;
    });
    for (const path of [body.inbound.forwarder, body.inbound.smtpReceiver]) {
      expect(path).toMatchObject({ state: 'ok', lastError: null, failingSince: null });
      expect(path.lastMailAt).not.toBeNull();
      // Handed to its conversation once stored.
      expect(Date.parse(path.lastSuccessAt)).toBeGreaterThanOrEqual(Date.parse(path.lastMailAt));
    }
    expect(body.outbound.smtp.lastSuccessAt).not.toBeNull();
  });

  it('shows a receiver failing since Temporal went away, and ok again with the next mail handed over', async () => {
    const temporal = new Client({ connection: Connection.lazy({ address: `127.0.0.1:${await freePort()}` }) });
    const away = await startReceiver(stack, { temporal });
    try {
      const first = customerMail({ messageId: 'away-1@example.com', from: '<ann@example.com>' });
      expect(await refusal(deliver(away.port, { from: 'ann@example.com', to: [forwarding] }, first))).toMatchObject({
        responseCode: 451,
      });
      const failing = (await health()).inbound.smtpReceiver;
      expect(failing).toMatchObject({ state: 'failing', lastError: { reason: 'workflows_unavailable' } });
      expect(failing.failingSince).toBe(failing.lastError.at);

      // Still away: failing since the first failure, not the latest.
      const second = customerMail({ messageId: 'away-2@example.com', from: '<ann@example.com>' });
      await refusal(deliver(away.port, { from: 'ann@example.com', to: [forwarding] }, second));
      const still = (await health()).inbound.smtpReceiver;
      expect(still.failingSince).toBe(failing.failingSince);
      expect(Date.parse(still.lastError.at)).toBeGreaterThanOrEqual(Date.parse(failing.lastError.at));

      // The sender tries again and Temporal is there: the path is ok, its last error still readable.
      await deliver(receiver.port, { from: 'ann@example.com', to: [forwarding] }, second);
      await handedOver('away-2@example.com');
      const recovered = (await health()).inbound.smtpReceiver;
      expect(recovered).toMatchObject({ state: 'ok', failingSince: null, lastError: { reason: 'workflows_unavailable' } });
    } finally {
      await away.receiver.close();
      await temporal.connection.close();
    }
  });

  it("shows the mailbox failing with the server's refusal, in the API and the workflow's details, then synced", async () => {
    const putImap = (password: string) =>
      callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${team.channel.id}/imap`, {
        enabled: true,
        host: dovecot.host,
        port: dovecot.port,
        tls: false,
        username: account.user,
        password,
      });
    expect((await putImap('not-the-password')).status).toBe(200);
    const failing = await eventually(async () => {
      const imap = (await health()).inbound.imap;
      return imap.state === 'failing' ? imap : undefined;
    }, 60_000);
    expect(failing.lastError).toMatchObject({ reason: 'auth', message: IMAP_FAILURE_MESSAGES.auth });
    expect(failing.failingSince).not.toBeNull();
    const mailbox = stack.temporal.workflow.getHandle(mailboxWorkflowId(team.channel.id));
    const details = await eventually(async () => {
      const { currentDetails } = (await mailbox.query('__temporal_workflow_metadata')) as { currentDetails: string };
      return currentDetails.includes('cannot be reached') ? currentDetails : undefined;
    });
    expect(details).toContain(`since ${failing.failingSince}`);
    expect(details).toContain(IMAP_FAILURE_MESSAGES.auth);

    // The admin corrects the password: the next session syncs.
    expect((await putImap(account.password)).status).toBe(200);
    const synced = await eventually(async () => {
      const imap = (await health()).inbound.imap;
      return imap.state === 'ok' ? imap : undefined;
    }, 60_000);
    expect(synced.lastSuccessAt).not.toBeNull();
    expect(synced.lastError).toMatchObject({ reason: 'auth' });
    expect(synced.failingSince).toBeNull();
  });

  it("shows sending failing when the channel's SMTP server is not there, with the reason", async () => {
    const closed = await freePort();
    const set = await callApi(stack.api.url, team.admin.apiKey, 'PUT', `/v1/channels/${team.channel.id}/smtp`, {
      host: '127.0.0.1',
      port: closed,
      secure: false,
    });
    expect(set.status).toBe(200);
    const posted = await postMail(
      stack.api.url,
      team.channel,
      customerMail({ messageId: 'no-server@example.com', from: '<lee@example.com>' }),
    );
    expect(posted.status).toBe(202);
    const smtp = await eventually(async () => {
      const now = (await health()).outbound.smtp;
      return now.state === 'failing' ? now : undefined;
    }, 60_000);
    expect(smtp.lastError.reason).toBe('deferred');
    expect(smtp.lastError.message).toMatch(/connection to the SMTP server failed/);
    expect(smtp.lastSuccessAt).not.toBeNull(); // the greeting of the earlier test
    await callApi(stack.api.url, team.admin.apiKey, 'DELETE', `/v1/channels/${team.channel.id}/smtp`);
  });
});
