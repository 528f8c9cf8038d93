import { describe, expect, it } from 'vitest';
import { classifySendFailure } from '../../src/mail/send-failure.js';

// What nodemailer throws, as it throws it (code, responseCode, response, command), and what becomes of it.
const smtpError = (fields: Record<string, unknown>) => Object.assign(new Error('nodemailer said something'), fields);

describe('classifySendFailure', () => {
  it.each<[string, unknown, { permanent: boolean; reason: string }]>([
    [
      'an unknown recipient (550 to RCPT TO)',
      smtpError({
        code: 'EENVELOPE',
        responseCode: 550,
        response: '550 5.1.1 <ann@example.com>: Recipient address rejected',
        command: 'RCPT TO',
      }),
      { permanent: true, reason: 'RCPT TO: 550 5.1.1 <ann@example.com>: Recipient address rejected' },
    ],
    [
      'a message refused after DATA (554)',
      smtpError({ code: 'EMESSAGE', responseCode: 554, response: '554 5.7.1 Spam message rejected', command: 'DATA' }),
      { permanent: true, reason: 'DATA: 554 5.7.1 Spam message rejected' },
    ],
    [
      'a refused login (535)',
      smtpError({
        code: 'EAUTH',
        responseCode: 535,
        response: '535 5.7.8 Authentication credentials invalid',
        command: 'AUTH PLAIN',
      }),
      { permanent: true, reason: 'AUTH PLAIN: 535 5.7.8 Authentication credentials invalid' },
    ],
    [
      'a login without a reply code',
      smtpError({ code: 'EAUTH' }),
      { permanent: true, reason: 'the SMTP server refused the user name or password' },
    ],
    [
      'an address nodemailer will not send to',
      smtpError({ code: 'EENVELOPE', command: 'API' }),
      { permanent: true, reason: 'the sender or recipient address cannot be sent to' },
    ],
    [
      'greylisting (451 to RCPT TO)',
      smtpError({ code: 'EENVELOPE', responseCode: 451, response: '451 4.7.1 Greylisted, try again', command: 'RCPT TO' }),
      { permanent: false, reason: 'RCPT TO: 451 4.7.1 Greylisted, try again' },
    ],
    [
      'a temporary login failure (454)',
      smtpError({ code: 'EAUTH', responseCode: 454, response: '454 4.7.0 Temporary authentication failure' }),
      { permanent: false, reason: '454 4.7.0 Temporary authentication failure' },
    ],
    [
      'a session in the wrong state (503)',
      smtpError({ code: 'EPROTOCOL', responseCode: 503, response: '503 5.5.1 Bad sequence of commands' }),
      { permanent: false, reason: '503 5.5.1 Bad sequence of commands' },
    ],
    [
      'a server going away (421)',
      smtpError({ code: 'ECONNECTION', responseCode: 421, response: '421 4.3.2 Service shutting down' }),
      { permanent: false, reason: '421 4.3.2 Service shutting down' },
    ],
    [
      'a refused connection',
      smtpError({ code: 'ESOCKET', originalCode: 'ECONNREFUSED' }),
      { permanent: false, reason: 'the connection to the SMTP server failed' },
    ],
    ['a timeout', smtpError({ code: 'ETIMEDOUT' }), { permanent: false, reason: 'the SMTP server did not answer in time' }],
    ['DNS', smtpError({ code: 'EDNS' }), { permanent: false, reason: 'the SMTP server’s host name does not resolve' }],
    [
      'the whole send cut off at its deadline',
      Object.assign(new Error('This operation was aborted'), { name: 'AbortError', code: 'EABORT' }),
      { permanent: false, reason: 'the SMTP server did not finish taking the mail in time' },
    ],
    ['anything else', new TypeError('boom'), { permanent: false, reason: 'sending failed (unknown error)' }],
    ['not even an error', 'boom', { permanent: false, reason: 'sending failed (unknown error)' }],
  ])('%s', (_name, error, expected) => {
    expect(classifySendFailure(error)).toEqual(expected);
  });

  it('keeps the reason on one bounded line and never repeats the password a server echoes', () => {
    const failure = classifySendFailure(
      smtpError({
        code: 'EAUTH',
        responseCode: 535,
        response: `535-5.7.8 login hunter2-secret refused\r\n535 5.7.8 ${'x'.repeat(1000)}`,
        command: 'AUTH LOGIN',
      }),
      ['hunter2-secret', null],
    );
    expect(failure.permanent).toBe(true);
    expect(failure.reason).not.toContain('hunter2');
    expect(failure.reason).not.toMatch(/[\r\n]/);
    expect(failure.reason.startsWith('AUTH LOGIN: 535-5.7.8 login *** refused 535 5.7.8 xxx')).toBe(true);
    expect(failure.reason.length).toBeLessThanOrEqual(500);
  });

  it('names a command only, never what followed it', () => {
    const failure = classifySendFailure(
      smtpError({ code: 'EAUTH', responseCode: 535, response: '535 no', command: 'AUTH PLAIN AGFubgBodW50ZXIy' }),
    );
    expect(failure.reason).toBe('535 no');
  });
});
