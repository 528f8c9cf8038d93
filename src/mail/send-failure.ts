// Why an SMTP send failed, and whether trying again can help. RFC 5321: a 5yz reply is a permanent
// refusal, a 4yz reply a transient one; a connection that fails or goes silent is always worth a retry.

export interface SendFailure {
  /** The server refused this mail for good: sending it again gets the same answer. */
  permanent: boolean;
  /** What a person reads: the server's reply (bounded, one line) or a fixed text; never the credentials. */
  reason: string;
}

const MAX_REASON_CHARS = 500;

// Fixed texts where the server said nothing we can show; nodemailer's own messages are not passed on.
const REASONS: Record<string, string> = {
  EAUTH: 'the SMTP server refused the user name or password',
  ENOAUTH: 'the SMTP server asks for a login and the channel has none',
  EENVELOPE: 'the sender or recipient address cannot be sent to',
  ECONNECTION: 'the connection to the SMTP server failed or was closed',
  ESOCKET: 'the connection to the SMTP server failed',
  ETIMEDOUT: 'the SMTP server did not answer in time',
  EDNS: 'the SMTP server’s host name does not resolve',
  ETLS: 'TLS with the SMTP server failed',
  EPROTOCOL: 'the SMTP server did not answer as an SMTP server does',
  EABORT: 'the SMTP server did not finish taking the mail in time',
};

interface NodemailerError {
  name?: string;
  code?: string;
  /** The SMTP reply code, when the failure was a reply. */
  responseCode?: number;
  /** The server's reply text, code included. */
  response?: string;
  /** The SMTP command the reply answered (RCPT TO, DATA, AUTH PLAIN). */
  command?: string;
}

/**
 * Permanent: a 5xx reply (503, a session in the wrong state, excepted: a new connection gets past it), a
 * login the server refuses (unless it says 4xx, try later), an address nodemailer will not send to.
 * Transient: 4xx replies, connection failures and timeouts, DNS, TLS, a send cut off at its deadline,
 * and anything unknown (retrying is safe: the outbox row keeps the mail and its Message-ID).
 * `secrets` (the channel's SMTP password) are blanked should a server echo them.
 */
/** The server refused the login (AUTH): with an OAuth access token, a refreshed one may be taken. */
export function isLoginRefused(error: unknown): boolean {
  return typeof error === 'object' && error !== null && (error as NodemailerError).code === 'EAUTH';
}

export function classifySendFailure(error: unknown, secrets: ReadonlyArray<string | null | undefined> = []): SendFailure {
  const err = (typeof error === 'object' && error !== null ? error : {}) as NodemailerError;
  const code = err.name === 'AbortError' ? 'EABORT' : (err.code ?? '');
  const reply = typeof err.responseCode === 'number' ? err.responseCode : undefined;
  const permanent =
    reply !== undefined
      ? reply >= 500 && reply < 600 && reply !== 503
      : code === 'EAUTH' || code === 'ENOAUTH' || code === 'EENVELOPE';
  const said = typeof err.response === 'string' && reply !== undefined ? oneLine(err.response) : '';
  // Only a command's name (RCPT TO, AUTH PLAIN), never what followed it.
  const command = typeof err.command === 'string' && /^[A-Z]+(?: [A-Z]+)?$/.test(err.command) ? err.command : undefined;
  const reason = said
    ? `${command ? `${command}: ` : ''}${said}`
    : (REASONS[code] ?? `sending failed (${/^E[A-Z]+$/.test(code) ? code : 'unknown error'})`);
  return { permanent, reason: bounded(blank(reason, secrets)) };
}

function oneLine(text: string): string {
  // Control characters (a multi-line reply's line breaks among them) become spaces.
  return text
    .replace(/\p{Cc}+/gu, ' ')
    .replace(/ {2,}/g, ' ')
    .trim();
}

function blank(text: string, secrets: ReadonlyArray<string | null | undefined>): string {
  let result = text;
  for (const secret of secrets) {
    if (secret && secret.length >= 4) result = result.split(secret).join('***');
  }
  return result;
}

function bounded(text: string): string {
  return text.length > MAX_REASON_CHARS ? `${text.slice(0, MAX_REASON_CHARS - 1)}…` : text;
}
