import { ImapFlow } from 'imapflow';

export interface ImapSettings {
  host: string;
  port: number;
  tls: boolean;
  username: string;
  password: string;
}

/** A client for one session; not connected yet. IDLE is driven by the caller, not started on its own. */
export function createImapClient(settings: ImapSettings): ImapFlow {
  return new ImapFlow({
    host: settings.host,
    port: settings.port,
    secure: settings.tls,
    auth: { user: settings.username, pass: settings.password },
    logger: false,
    disableAutoIdle: true,
    // Servers drop IDLE after 30 min (RFC 2177); renew well before.
    maxIdleTime: 5 * 60_000,
    connectionTimeout: 15_000,
    greetingTimeout: 15_000,
  });
}

export type ImapFailureReason = 'dns' | 'refused' | 'timeout' | 'tls' | 'auth' | 'folder_missing' | 'protocol';

export interface ImapFailure {
  reason: ImapFailureReason;
  message: string;
}

/** Turns whatever connecting, logging in or opening a folder threw into a reason an operator can act on. */
export function describeImapFailure(error: unknown, host: string): ImapFailure {
  const err = error as { code?: string; serverResponseCode?: string; authenticationFailed?: boolean; message?: string };
  const code = err.code ?? '';
  const detail = err.message ?? String(error);
  if (code === 'ENOTFOUND' || code === 'EAI_AGAIN') return { reason: 'dns', message: `the host name ${host} cannot be resolved` };
  if (code === 'ECONNREFUSED' || code === 'EHOSTUNREACH' || code === 'ECONNRESET') {
    return { reason: 'refused', message: `${host} refused the connection (${code}): check host and port` };
  }
  if (
    code === 'ETIMEDOUT' ||
    code === 'ETIMEOUT' ||
    code === 'GreetingTimeout' ||
    code === 'ConnectionTimeout' ||
    /timed? ?out/i.test(detail)
  ) {
    return { reason: 'timeout', message: `${host} did not answer in time: check host, port and firewall` };
  }
  if (code.startsWith('ERR_SSL') || code.startsWith('ERR_TLS') || /certificate|ssl|tls/i.test(`${code} ${detail}`)) {
    return { reason: 'tls', message: `TLS with ${host} failed: ${detail}` };
  }
  if (err.authenticationFailed || err.serverResponseCode === 'AUTHENTICATIONFAILED' || /auth/i.test(code)) {
    return { reason: 'auth', message: 'the server refused the user name or password' };
  }
  if (err.serverResponseCode === 'NONEXISTENT' || /doesn.t exist|not exist|unknown mailbox|no such mailbox/i.test(detail)) {
    return { reason: 'folder_missing', message: detail };
  }
  return { reason: 'protocol', message: detail };
}

export type ImapConnectionCheck =
  { ok: true; idle: boolean; folders: Array<{ folder: string; messages: number }> } | ({ ok: false } & ImapFailure);

/** Connects, logs in and opens every folder once, as the mailbox sync would, and says what failed. */
export async function checkImapConnection(settings: ImapSettings, folders: readonly string[]): Promise<ImapConnectionCheck> {
  const client = createImapClient(settings);
  client.on('error', () => undefined); // reported through the failing call below
  let folder: string | undefined;
  try {
    await client.connect();
    const opened = [];
    for (folder of folders) {
      const mailbox = await client.mailboxOpen(folder, { readOnly: true });
      opened.push({ folder, messages: mailbox.exists });
    }
    return { ok: true, idle: client.capabilities.has('IDLE'), folders: opened };
  } catch (error) {
    const failure = describeImapFailure(error, settings.host);
    if (failure.reason === 'folder_missing' || (folder && failure.reason === 'protocol')) {
      return { ok: false, reason: 'folder_missing', message: `the folder "${folder}" does not exist on the server` };
    }
    return { ok: false, ...failure };
  } finally {
    await client.logout().catch(() => client.close());
  }
}
