// A private Postfix for tests: a real MTA on loopback that relays every mail it takes to one SMTP server (the
// SMTP receiver under test) and queues what that server answers 4xx, as a team's mail server does; it tries a queued
// mail again when the test flushes the queue.
// Its own configuration, queue and log under a directory of its own; its master runs as root, as Postfix's must.
import { execFile } from 'node:child_process';
import { chmodSync, chownSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir, userInfo } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { promisify } from 'node:util';
import { acceptsConnections, freePort, postfixBinary, postqueueBinary } from './tools.js';

const run = promisify(execFile);

export interface QueuedMail {
  queueName: string;
  sender: string;
  recipients: Array<{ address: string; delayReason?: string }>;
}

export interface RunningPostfix {
  /** Where it takes mail (SMTP, from loopback). */
  port: number;
  /** Its log, for a failing test to read. */
  logFile: string;
  /** Relays from now on to this port on 127.0.0.1 (a reload: mail in the queue goes there at its next try). */
  relayTo(port: number): Promise<void>;
  /** The mail it holds (deferred, active), as `postqueue -j` lists it. */
  queue(): Promise<QueuedMail[]>;
  /** Tries every queued mail again now. */
  flush(): Promise<void>;
  stop(): Promise<void>;
}

/** Postfix's services as its package lists them, none chrooted, and smtpd on the given port only (no port 25). */
function masterCf(port: number): string {
  return `# service type private unpriv chroot wakeup maxproc command
127.0.0.1:${port} inet n - n - - smtpd
pickup unix n - n 60 1 pickup
cleanup unix n - n - 0 cleanup
qmgr unix n - n 300 1 qmgr
tlsmgr unix - - n 1000? 1 tlsmgr
rewrite unix - - n - - trivial-rewrite
bounce unix - - n - 0 bounce
defer unix - - n - 0 bounce
trace unix - - n - 0 bounce
verify unix - - n - 1 verify
flush unix n - n 1000? 0 flush
proxymap unix - - n - - proxymap
smtp unix - - n - - smtp
relay unix - - n - - smtp
showq unix n - n - - showq
error unix - - n - - error
retry unix - - n - - error
discard unix - - n - - discard
anvil unix - - n - 1 anvil
scache unix - - n - 1 scache
postlog unix-dgram n - n - 1 postlogd
`;
}

function mainCf(dir: string, relayPort: number): string {
  return [
    'compatibility_level = 3.6',
    `queue_directory = ${join(dir, 'spool')}`,
    `data_directory = ${join(dir, 'data')}`,
    // postfix-files and the like, from the package.
    'meta_directory = /etc/postfix',
    'mail_owner = postfix',
    'setgid_group = postdrop',
    'inet_interfaces = 127.0.0.1',
    'inet_protocols = ipv4',
    'myhostname = relay.mailroom.test',
    // Nothing is delivered here: everything goes to the relay host.
    'mydestination =',
    'local_recipient_maps =',
    'alias_maps =',
    'alias_database =',
    `relayhost = [127.0.0.1]:${relayPort}`,
    'mynetworks = 127.0.0.0/8',
    'smtpd_relay_restrictions = permit_mynetworks, reject',
    // A deferred mail waits for its next try until flush() (a test says when); the queue is looked at every second.
    'queue_run_delay = 1s',
    'minimal_backoff_time = 1h',
    'maximal_backoff_time = 1h',
    `maillog_file = ${join(dir, 'maillog')}`,
    `maillog_file_prefixes = ${dir}`,
    'syslog_name = postfix-mailroom-test',
    '',
  ].join('\n');
}

export async function startPostfix(options: { relayPort: number }): Promise<RunningPostfix> {
  if (userInfo().uid !== 0) throw new Error("Postfix's master runs as root: run the tests as root, or leave this test out");
  const postfix = postfixBinary();
  const postqueue = postqueueBinary();
  const dir = mkdtempSync(join(tmpdir(), 'mailroom-postfix-'));
  // Postfix's own processes (user postfix) read the configuration and write the queue and data directories.
  chmodSync(dir, 0o755);
  const config = join(dir, 'etc');
  for (const sub of ['etc', 'spool', 'data']) mkdirSync(join(dir, sub));
  const { uid: postfixUid } = await userIds('postfix');
  chownSync(join(dir, 'data'), postfixUid, -1);
  const port = await freePort();
  writeFileSync(join(config, 'master.cf'), masterCf(port));
  writeFileSync(join(config, 'main.cf'), mainCf(dir, options.relayPort));
  const logFile = join(dir, 'maillog');
  const postfixCommand = (...args: string[]) => run(postfix, ['-c', config, ...args]);
  await postfixCommand('start');
  for (let attempt = 0; !(await acceptsConnections('127.0.0.1', port)); attempt += 1) {
    if (attempt > 100) throw new Error(`Postfix did not listen on ${port}; see ${logFile}`);
    await sleep(100);
  }
  return {
    port,
    logFile,
    async relayTo(relayPort) {
      writeFileSync(join(config, 'main.cf'), mainCf(dir, relayPort));
      await postfixCommand('reload');
    },
    async queue() {
      const { stdout } = await run(postqueue, ['-c', config, '-j']);
      return stdout
        .split('\n')
        .filter(Boolean)
        .map((line) => {
          const entry = JSON.parse(line) as {
            queue_name: string;
            sender: string;
            recipients: Array<{ address: string; delay_reason?: string }>;
          };
          return {
            queueName: entry.queue_name,
            sender: entry.sender,
            recipients: entry.recipients.map((recipient) => ({
              address: recipient.address,
              ...(recipient.delay_reason ? { delayReason: recipient.delay_reason } : {}),
            })),
          };
        });
    },
    async flush() {
      await run(postqueue, ['-c', config, '-f']);
    },
    async stop() {
      await postfixCommand('abort').catch(() => undefined);
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** The uid of a system user, from getent. */
async function userIds(name: string): Promise<{ uid: number }> {
  const { stdout } = await run('getent', ['passwd', name]);
  const uid = Number(stdout.split(':')[2]);
  if (!Number.isInteger(uid)) throw new Error(`no system user ${name}: is Postfix installed?`);
  return { uid };
}
