// A private Dovecot IMAP server for tests: loopback only, plaintext logins, Maildir under a directory of its own.
import { execFile, execFileSync, spawn, type ChildProcess } from 'node:child_process';
import {
  appendFileSync,
  chmodSync,
  chownSync,
  existsSync,
  mkdirSync,
  mkdtempSync,
  readdirSync,
  readFileSync,
  renameSync,
  rmSync,
  utimesSync,
  writeFileSync,
} from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { ImapFlow } from 'imapflow';
import { acceptsConnections, doveadmBinary, dovecotBinary, freePort } from './tools.js';

export interface DovecotOptions {
  /** Accounts to create; more can be added while running with addUser(). */
  users?: Array<{ user: string; password: string }>;
  /** Port on 127.0.0.1; a free one when omitted. */
  port?: number;
  /** Holds dovecot.conf, dovecot.log and the mail (`mail/<user>`, Maildir); a new temp dir, removed at exit, when omitted. */
  dir?: string;
  /** Whether CAPABILITY lists IDLE (default true); false lets tests exercise a client's polling fallback. */
  idle?: boolean;
  /**
   * OAuth 2.0 logins (XOAUTH2, OAUTHBEARER) besides passwords: Dovecot's oauth2 passdb asks the provider's
   * introspection endpoint (RFC 7662, POST, this URL with the client's credentials in it) whether a token is active
   * and whose it is (its `sub` is the user name).
   */
  oauth2?: { introspectionUrl: string };
  /** A folder every account has, marked \Sent (RFC 6154 special use), as mail providers set one up; none when omitted. */
  sentFolder?: string;
}

export interface DovecotServer {
  host: '127.0.0.1';
  port: number;
  dir: string;
  /** Creates an account, or changes its password; takes effect at once, also while running. */
  addUser(user: string, password: string): Promise<void>;
  /** Drops every logged-in IMAP connection (`doveadm kick`), as a server restart or a network cut would. */
  kickAll(): Promise<void>;
  /**
   * Gives the folder a new UIDVALIDITY, its mails numbered anew from UID 1, as a server whose mail store was restored or
   * migrated does. Restarts the server for it: every connection drops.
   */
  resetUidValidity(user: string, folder: string): Promise<void>;
  /** Stops the server; its mail stays, for start(). */
  stop(): Promise<void>;
  /** Starts it again, on the same port with the same mail (a no-op while running). */
  start(): Promise<void>;
}

const host = '127.0.0.1';
// After SIGTERM the workers are gone within milliseconds, but the master may linger a second before it reaps them.
const stopGracePeriodMs = 300;
const startTimeoutMs = 10_000;

// Dovecot 2.3's default CAPABILITY less IDLE: imap_capability can only replace the whole list (or add to it).
const capabilitiesWithoutIdle =
  'IMAP4rev1 SASL-IR LOGIN-REFERRALS ID ENABLE SORT SORT=DISPLAY THREAD=REFERENCES THREAD=REFS THREAD=ORDEREDSUBJECT ' +
  'MULTIAPPEND URL-PARTIAL CATENATE UNSELECT CHILDREN NAMESPACE UIDPLUS LIST-EXTENDED I18NLEVEL=1 CONDSTORE QRESYNC ' +
  'ESEARCH ESORT SEARCHRES WITHIN CONTEXT=SEARCH LIST-STATUS BINARY MOVE SNIPPET=FUZZY PREVIEW=FUZZY PREVIEW STATUS=SIZE ' +
  'SAVEDATE LITERAL+ NOTIFY';

export async function startDovecot(opts: DovecotOptions = {}): Promise<DovecotServer> {
  requireDovecot23();
  const dir = opts.dir ?? mkdtempSync(join(tmpdir(), 'mailroom-dovecot-'));
  if (opts.dir === undefined) tempDirs.add(dir);
  if (/[\s"#]/.test(dir)) throw new Error(`Dovecot's config cannot name ${JSON.stringify(dir)}: pick a dir without spaces`);
  const port = opts.port ?? (await freePort(host));
  const configFile = join(dir, 'dovecot.conf');
  const users = new Map((opts.users ?? []).map(({ user, password }) => [user, password]));
  prepareDir(dir);
  for (const [user, password] of users) writeUser(dir, user, password);
  writeFileSync(configFile, config(dir, port, opts.idle ?? true, opts.sentFolder));
  if (opts.oauth2) appendFileSync(configFile, oauth2Settings(dir, opts.oauth2.introspectionUrl));
  const doveadm = async (...args: string[]) =>
    (await promisify(execFile)(doveadmBinary(), ['-c', configFile, ...args], { cwd: '/' })).stdout;

  let child: ChildProcess | undefined;
  let exited = Promise.resolve();
  let output = '';

  const stop = async () => {
    const proc = child;
    if (!proc) return;
    child = undefined;
    if (proc.exitCode === null && proc.signalCode === null) {
      killGroup(proc, 'SIGTERM');
      if (!(await Promise.race([exited.then(() => true), sleep(stopGracePeriodMs, false, { ref: false })]))) {
        killGroup(proc, 'SIGKILL');
        await exited;
      }
    }
    running.delete(proc);
  };

  const start = async () => {
    if (child && child.exitCode === null && child.signalCode === null) return;
    await stop(); // forget a server that died by itself
    // Otherwise a server still listening there would look like this one being ready.
    if (await acceptsConnections(host, port))
      throw new Error(`cannot start Dovecot on ${host}:${port}: something is listening there`);
    rmSync(join(dir, 'run', 'master.pid'), { force: true }); // left by a killed instance; its pid may now be another process's
    // Own process group, so stop() reaches the imap, auth and login processes too.
    const proc = spawn(dovecotBinary(), ['-F', '-c', configFile], { detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    child = proc;
    running.add(proc);
    installExitHook();
    output = '';
    const append = (chunk: Buffer) => (output = (output + chunk.toString()).slice(-4_000));
    proc.stdout?.on('data', append);
    proc.stderr?.on('data', append);
    let processExited = false;
    exited = new Promise<void>((resolve) => {
      proc.once('exit', () => resolve());
      proc.once('error', (err) => {
        append(Buffer.from(`${err.message}\n`));
        resolve();
      });
    }).then(() => void (processExited = true));
    try {
      await waitUntilServing(port, [...users][0], () => processExited);
    } catch (err) {
      await stop();
      throw new Error(
        `Dovecot on ${host}:${port} did not start: ${(err as Error).message}\n` +
          `${output ? `dovecot output:\n${output}\n` : ''}dovecot.log (${dir}):\n${tail(join(dir, 'dovecot.log'))}`,
      );
    }
  };

  await start();
  return {
    host,
    port,
    dir,
    stop,
    start,
    addUser: async (user, password) => {
      users.set(user, password);
      const existed = writeUser(dir, user, password);
      if (!child || !existed) return; // a new file is read at the first login
      // The auth process checks a passwd-file it has read for changes at most once a second: wait until it sees this one.
      const deadline = Date.now() + 5_000;
      for (;;) {
        try {
          await doveadm('auth', 'test', user, password);
          return;
        } catch (err) {
          if (Date.now() > deadline)
            throw new Error(`Dovecot does not accept the new password of ${user}: ${(err as Error).message}`);
          await sleep(50);
        }
      }
    },
    kickAll: async () => {
      try {
        await doveadm('kick', '*');
      } catch (err) {
        if ((err as { code?: number }).code !== 68) throw err; // 68: nobody was connected
      }
    },
    resetUidValidity: async (user, folder) => {
      if (!child) throw new Error('resetUidValidity() needs the server running');
      const uidValidity = async () => (await doveadm('mailbox', 'status', '-u', user, 'uidvalidity', folder)).trim();
      const before = await uidValidity();
      const folderDir = (await doveadm('mailbox', 'path', '-u', user, '-t', 'dir', folder)).trim();
      // Open sessions would go on with the old index, and fail on it: restart, as a server whose store was restored would.
      await stop();
      // Maildir keeps UIDs and UIDVALIDITY only in dovecot-uidlist and the indexes; without them the mails are found anew.
      removeMatching(folderDir, /^(dovecot-uidlist|dovecot\.index)/);
      removeMatching(join(dir, 'mail', user), /^dovecot\.list\.index/); // caches every folder's UIDVALIDITY for STATUS
      await start();
      const after = await uidValidity();
      if (after === before) throw new Error(`UIDVALIDITY of ${user}'s ${folder} did not change (${after})`);
    },
  };
}

function config(dir: string, port: number, idle: boolean, sentFolder: string | undefined): string {
  const mail = mailOsUser();
  const asRoot = process.getuid?.() === 0;
  return `# Written by scripts/servers/dovecot.ts (Dovecot 2.3 settings).
protocols = imap
listen = ${host}
base_dir = ${dir}/run
state_dir = ${dir}/state
log_path = ${dir}/dovecot.log
ssl = no
disable_plaintext_auth = no
auth_mechanisms = plain login
# Wrong-password tests need not wait the default 2 s (2.3.19 still answers at its next half-second tick).
auth_failure_delay = 0
mail_location = maildir:${dir}/mail/%u
# Test mail: speed over durability.
mail_fsync = never
# Parallel connections of one test account all come from 127.0.0.1.
mail_max_userip_connections = 100
# Dovecot refuses mail processes with uids below 500 by default; mail is uid 8 on Debian.
first_valid_uid = ${mail.uid}
first_valid_gid = ${mail.gid}
${idle ? '' : `imap_capability = ${capabilitiesWithoutIdle}`}
${asRoot ? '' : rootlessSettings()}
${sentFolder ? sentFolderNamespace(sentFolder) : ''}
passdb {
  driver = passwd-file
  # A file per user, so a new user's is read fresh at once (a changed file only after up to a second).
  args = scheme=PLAIN username_format=%u ${dir}/users/%u
}
userdb {
  driver = static
  args = uid=${mail.uid} gid=${mail.gid} home=${dir}/mail/%u
}
# No auth penalty: after one wrong password, every login from 127.0.0.1 would wait 2 s and more.
service anvil {
  unix_listener anvil-auth-penalty {
    mode = 0
  }
}
service imap-login {
  inet_listener imap {
    port = ${port}
  }
  inet_listener imaps {
    port = 0
  }
}
`;
}

/** The default namespace with a folder marked \Sent, created at each account's first login. */
function sentFolderNamespace(folder: string): string {
  if (/["\\\r\n]/.test(folder)) throw new Error(`Dovecot's config cannot name the folder ${JSON.stringify(folder)}`);
  return `namespace inbox {
  inbox = yes
  mailbox "${folder}" {
    special_use = \\Sent
    auto = create
  }
}`;
}

/** A second passdb for XOAUTH2 and OAUTHBEARER, checking each token at the provider (a password login never gets here). */
function oauth2Settings(dir: string, introspectionUrl: string): string {
  if (/[\s"]/.test(introspectionUrl)) throw new Error(`Dovecot's config cannot hold ${JSON.stringify(introspectionUrl)}`);
  const file = join(dir, 'dovecot-oauth2.conf.ext');
  writeFileSync(
    file,
    [
      'introspection_mode = post',
      `introspection_url = ${introspectionUrl}`,
      'username_attribute = sub',
      'active_attribute = active',
      'active_value = true',
      // Every login asks the provider: a revoked token is refused at once.
      'force_introspection = yes',
      '',
    ].join('\n'),
  );
  return `
auth_mechanisms = plain login xoauth2 oauthbearer
passdb {
  driver = oauth2
  mechanisms = xoauth2 oauthbearer
  args = ${file}
}
`;
}

/** Without root, every process runs as ourselves (the dovecot and dovenull users need root to switch to). */
function rootlessSettings(): string {
  const { username } = userInfo();
  const group = execFileSync('id', ['-gn'], { encoding: 'utf8' }).trim();
  return [
    `default_login_user = ${username}`,
    `default_internal_user = ${username}`,
    `default_internal_group = ${group}`,
    // chroot needs root.
    'service imap-login {\n  chroot =\n}',
    'service anvil {\n  chroot =\n}',
  ].join('\n');
}

/** Mail processes run as `mail` when we are root (Dovecot refuses uid 0 for them), else as ourselves. */
function mailOsUser(): { uid: number; gid: number } {
  if (process.getuid?.() !== 0) return { uid: process.getuid!(), gid: process.getgid!() };
  cachedMailUser ??= {
    uid: Number(execFileSync('id', ['-u', 'mail'], { encoding: 'utf8' })),
    gid: Number(execFileSync('id', ['-g', 'mail'], { encoding: 'utf8' })),
  };
  return cachedMailUser;
}
let cachedMailUser: { uid: number; gid: number } | undefined;

/** As root, the mail user must reach dir/mail: mkdtemp makes dir private to us. */
function prepareDir(dir: string) {
  mkdirSync(join(dir, 'mail'), { recursive: true });
  if (process.getuid?.() !== 0) return;
  chmodSync(dir, 0o755);
  const { uid, gid } = mailOsUser();
  chownSync(join(dir, 'mail'), uid, gid);
}

/** Writes users/<user> (passwd-file format) and says whether it existed. */
function writeUser(dir: string, user: string, password: string): boolean {
  if (!/^[^/:\s]+$/.test(user) || user.startsWith('.') || /[:\n]/.test(password)) {
    throw new Error(`a Dovecot passwd-file cannot hold user ${JSON.stringify(user)} or its password`);
  }
  const file = join(dir, 'users', user);
  const existed = existsSync(file);
  mkdirSync(join(dir, 'users'), { recursive: true });
  // Written whole and renamed, so the auth process never reads half a file. It notices a change by mtime (in
  // seconds) or size, so a same-size rewrite within the second gets a later mtime of its own.
  usersMtime = Math.max(Math.floor(Date.now() / 1000), usersMtime + 1);
  writeFileSync(`${file}.tmp`, `${user}:{PLAIN}${password}\n`, { mode: 0o644 });
  utimesSync(`${file}.tmp`, usersMtime, usersMtime);
  renameSync(`${file}.tmp`, file);
  return existed;
}
let usersMtime = 0;

/** Polls until a LOGIN works, or with no accounts yet until a bogus LOGIN is refused (the auth process answers). */
async function waitUntilServing(port: number, account: [string, string] | undefined, hasExited: () => boolean) {
  const deadline = Date.now() + startTimeoutMs;
  let lastError: unknown;
  while (Date.now() < deadline) {
    if (hasExited()) throw new Error('the dovecot process exited');
    if (!(await acceptsConnections(host, port))) {
      lastError = new Error('port not open yet');
      await sleep(20);
      continue;
    }
    const [user, pass] = account ?? ['mailroom-readiness-probe', 'no such account'];
    const client = new ImapFlow({ host, port, secure: false, auth: { user, pass }, logger: false, connectionTimeout: 2_000 });
    client.on('error', () => undefined); // the failing connect() reports it
    try {
      await client.connect();
      await client.logout();
      return;
    } catch (err) {
      if (!account && (err as { authenticationFailed?: boolean }).authenticationFailed) return;
      lastError = err;
      client.close();
      await sleep(50);
    }
  }
  throw new Error(`no IMAP login within ${startTimeoutMs} ms (last error: ${(lastError as Error | undefined)?.message})`);
}

let cachedVersion: string | undefined;
/** The config above uses Dovecot 2.3's setting names; 2.4 renamed many of them. */
function requireDovecot23() {
  cachedVersion ??= execFileSync(dovecotBinary(), ['--version'], { encoding: 'utf8' }).trim();
  if (!cachedVersion.startsWith('2.3.')) throw new Error(`scripts/servers/dovecot.ts needs Dovecot 2.3, found ${cachedVersion}`);
}

function removeMatching(dir: string, pattern: RegExp) {
  for (const name of readdirSync(dir)) if (pattern.test(name)) rmSync(join(dir, name), { force: true });
}

// Never leave a server, or a temp dir of ours, behind: one exit hook for all instances.
const running = new Set<ChildProcess>();
const tempDirs = new Set<string>();
let exitHookInstalled = false;
function installExitHook() {
  if (exitHookInstalled) return;
  exitHookInstalled = true;
  process.once('exit', () => {
    for (const proc of running) killGroup(proc, 'SIGKILL');
    for (const dir of tempDirs) rmSync(dir, { recursive: true, force: true });
  });
}

function killGroup(child: ChildProcess, signal: NodeJS.Signals) {
  try {
    process.kill(-child.pid!, signal);
  } catch {
    // Already gone.
  }
}

function tail(file: string): string {
  try {
    return readFileSync(file, 'utf8').split('\n').slice(-20).join('\n');
  } catch {
    return '(no log)';
  }
}
