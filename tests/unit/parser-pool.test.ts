import { createHash } from 'node:crypto';
import { afterAll, describe, expect, it } from 'vitest';
import { closeParserPool, parseMail, ParserBusyError, UnparseableMailError } from '../../src/mail/parse.js';

const mail = (id: number, body = `Mail number ${id}`) =>
  Buffer.from(`From: sender${id}@example.com\r\nSubject: Mail ${id}\r\nMessage-ID: <${id}@example.com>\r\n\r\n${body}\r\n`);

// parseMail runs on the parser threads: the same results as in-thread, and an event loop left free.
describe('the parser pool', () => {
  afterAll(() => closeParserPool());

  it('parses many mails at once, each into its own result', async () => {
    const results = await Promise.all(Array.from({ length: 40 }, (_, id) => parseMail(mail(id), `<${id}@example.com>`)));
    expect(results.map((result) => [result.from.address, result.subject, result.messageId])).toEqual(
      Array.from({ length: 40 }, (_, id) => [`sender${id}@example.com`, `Mail ${id}`, `<${id}@example.com>`]),
    );
  });

  it('refuses a mail while both threads are busy and 64 mails wait (the caller delivers it again), and parses the rest', async () => {
    const submitted = Array.from({ length: 2 + 64 + 1 }, (_, id) =>
      parseMail(mail(id), `<${id}@example.com>`).then(
        () => 'parsed',
        (error: unknown) => (error instanceof ParserBusyError ? 'busy' : String(error)),
      ),
    );
    const outcomes = await Promise.all(submitted);
    expect(outcomes.slice(0, 66)).toEqual(Array.from({ length: 66 }, () => 'parsed'));
    expect(outcomes[66]).toBe('busy');
    // Taken again once the queue has room.
    expect((await parseMail(mail(99), '<99@example.com>')).subject).toBe('Mail 99');
  });

  it('hands attachments back intact, and leaves the caller its bytes', async () => {
    const content = Buffer.from(Array.from({ length: 5000 }, (_, i) => (i * 7) % 256));
    const raw = Buffer.from(
      'From: a@example.com\r\nSubject: file\r\nContent-Type: multipart/mixed; boundary=b\r\n\r\n--b\r\nContent-Type: text/plain\r\n\r\nsee file\r\n' +
        `--b\r\nContent-Type: application/octet-stream\r\nContent-Disposition: attachment; filename="data.bin"\r\nContent-Transfer-Encoding: base64\r\n\r\n${content.toString('base64')}\r\n--b--\r\n`,
    );
    const [attachment] = (await parseMail(raw, '<file@example.com>')).attachments;
    expect(attachment).toMatchObject({
      filename: 'data.bin',
      size: 5000,
      sha256: createHash('sha256').update(content).digest('hex'),
    });
    expect(Buffer.from(attachment!.content).equals(content)).toBe(true);
    expect(raw.length).toBeGreaterThan(0); // not detached by the transfer
  });

  it('rejects a mail it cannot use with UnparseableMailError and its reason', async () => {
    const error = await parseMail(Buffer.from('To: support@acme.example\r\nSubject: who\r\n\r\nx'), '<x@y>').catch(
      (e: unknown) => e,
    );
    expect(error).toBeInstanceOf(UnparseableMailError);
    expect((error as Error).message).toBe('the message has no From address that is a single mailbox (local@domain)');
  });

  it('keeps the event loop turning while a heavy mail is parsed', async () => {
    const heavy = mail(
      1,
      `Content-Type: text/html\r\n\r\n${'<div><p style="color:red">word <b>bold</b> <a href="https://x.example/">link</a></p></div>'.repeat(40_000)}`,
    );
    const raw = Buffer.from(heavy.toString().replace('\r\n\r\nContent-Type', '\r\nContent-Type'));
    let ticks = 0;
    const timer = setInterval(() => ticks++, 5);
    const parsed = await parseMail(raw, '<heavy@example.com>');
    clearInterval(timer);
    expect(parsed.html).toContain('<b>bold</b>');
    // Sanitizing these megabytes is one synchronous call: on the main thread no timer could fire meanwhile.
    expect(ticks).toBeGreaterThanOrEqual(3);
  }, 60_000);

  it('starts again after it was closed', async () => {
    await closeParserPool();
    expect((await parseMail(mail(7), '<7@example.com>')).subject).toBe('Mail 7');
  });
});
