// An SMTP server for tests that takes mail only after an XOAUTH2 login whose token the OpenID provider says is
// active and belongs to the login's user (introspection, as Google's and Microsoft's submission servers check
// theirs); loopback, no TLS. It keeps every mail and every login it saw.
import { SMTPServer } from 'smtp-server';
import { hashToken } from './oidc-provider.js';
import { freePort } from './tools.js';

export interface Xoauth2Login {
  user: string;
  tokenHash: string;
  accepted: boolean;
}

export interface Xoauth2Mail {
  user: string;
  from: string;
  to: string[];
  raw: Buffer;
}

export interface Xoauth2SmtpServer {
  host: '127.0.0.1';
  port: number;
  logins: Xoauth2Login[];
  mails: Xoauth2Mail[];
  stop(): Promise<void>;
}

const MAX_MAIL_BYTES = 10 * 1024 * 1024;

export async function startXoauth2Smtp(opts: {
  introspect: (token: string) => Promise<{ active: boolean; sub?: string }>;
  port?: number;
}): Promise<Xoauth2SmtpServer> {
  const port = opts.port ?? (await freePort());
  const logins: Xoauth2Login[] = [];
  const mails: Xoauth2Mail[] = [];
  const server = new SMTPServer({
    authMethods: ['XOAUTH2'],
    allowInsecureAuth: true,
    disabledCommands: ['STARTTLS'],
    size: MAX_MAIL_BYTES,
    logger: false,
    onAuth(auth, _session, callback) {
      const token = auth.accessToken ?? '';
      opts
        .introspect(token)
        .then((answer) => {
          const accepted = answer.active && answer.sub === auth.username;
          logins.push({ user: auth.username ?? '', tokenHash: hashToken(token), accepted });
          // RFC 7628 3.2.2: a refused token gets the error as a JSON challenge; the client answers it and gets 535.
          if (!accepted) return callback(null, { data: { status: '401', schemes: 'bearer' } });
          callback(null, { user: auth.username });
        })
        .catch((error: Error) => callback(error));
    },
    onData(stream, session, callback) {
      const chunks: Buffer[] = [];
      stream.on('data', (chunk: Buffer) => chunks.push(chunk));
      stream.on('end', () => {
        mails.push({
          user: String(session.user ?? ''),
          from: session.envelope.mailFrom ? session.envelope.mailFrom.address : '',
          to: session.envelope.rcptTo.map((rcpt) => rcpt.address),
          raw: Buffer.concat(chunks),
        });
        callback();
      });
    },
  });
  server.on('error', () => undefined); // a client going away mid-session is not the server's end
  await new Promise<void>((resolve, reject) => {
    server.listen(port, '127.0.0.1', () => resolve());
    server.server.once('error', reject);
  });
  return {
    host: '127.0.0.1',
    port,
    logins,
    mails,
    stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
