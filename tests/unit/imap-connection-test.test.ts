import { createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { checkImapConnection } from '../../src/mail/imap-connection.js';

// A server that greets like IMAP and then never answers: the admin's test must still come back.
describe('the IMAP connection test', () => {
  let server: Server;
  let port: number;
  const commands: string[] = [];
  const sockets = new Set<Socket>();

  beforeAll(async () => {
    server = createServer((socket) => {
      sockets.add(socket);
      socket.write('* OK [CAPABILITY IMAP4rev1] ready\r\n');
      socket.on('data', (chunk) => commands.push(chunk.toString())); // and says nothing more
      socket.on('error', () => undefined);
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    port = (server.address() as { port: number }).port;
  });

  afterAll(async () => {
    for (const socket of sockets) socket.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  it('answers timeout when the server greets and then never answers', async () => {
    const result = await checkImapConnection(
      { host: 'localhost', port, tls: false, username: 'ann', password: 'secret' },
      { host: 'localhost', address: '127.0.0.1', servername: 'localhost' },
      ['INBOX'],
      1_000,
    );
    expect(result).toEqual({
      ok: false,
      reason: 'timeout',
      message: 'the server did not answer in time: check host, port and firewall',
    });
    expect(commands.join('')).not.toBe(''); // it did talk to the server
  });
});
