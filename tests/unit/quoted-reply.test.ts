import { describe, expect, it } from 'vitest';
import { replyPart } from '../../src/mail/quoted-reply.js';

describe('replyPart', () => {
  it.each<[string, string, string]>([
    ['a mail without history', 'Hello,\n\nwhere is my order?\n\nAnn', 'Hello,\n\nwhere is my order?\n\nAnn'],
    ['English attribution', 'Thanks!\n\nOn Mon, 16 Nov 2026 at 10:00, Acme <support@acme.example> wrote:\n> Hi', 'Thanks!'],
    [
      'an attribution wrapped onto two lines',
      'Thanks!\n\nOn Mon, Nov 16, 2026 at 10:00 AM Acme Support <\nsupport@acme.example> wrote:\n> Hi',
      'Thanks!',
    ],
    ['German', 'Danke!\n\nAm 16.11.2026 um 10:00 schrieb Acme <support@acme.example>:\n> Hallo', 'Danke!'],
    ['French', 'Merci !\n\nLe lun. 16 nov. 2026 à 10:00, Acme <support@acme.example> a écrit :\n> Bonjour', 'Merci !'],
    ['Spanish', 'Gracias.\n\nEl lun, 16 nov 2026 a las 10:00, Acme (<support@acme.example>) escribió:\n> Hola', 'Gracias.'],
    ['Dutch', 'Dank je.\n\nOp ma 16 nov. 2026 om 10:00 schreef Acme <support@acme.example>:\n> Hoi', 'Dank je.'],
    ['Polish', 'Dzięki.\n\nW dniu 16.11.2026 o 10:00, Acme <support@acme.example> napisał:\n> Cześć', 'Dzięki.'],
    ['Russian', 'Спасибо.\n\n16 нояб. 2026 г., в 10:00, Acme <support@acme.example> пишет:\n> Привет', 'Спасибо.'],
    ['Japanese Gmail', 'ありがとう。\n\n2026年11月16日(月) 10:00 Acme <support@acme.example>:\n> こんにちは', 'ありがとう。'],
    ['Chinese', '谢谢。\n\n在 2026年11月16日 10:00，Acme <support@acme.example> 写道：\n> 你好', '谢谢。'],
    ['Outlook original message', 'Yes.\n\n-----Original Message-----\nFrom: Acme\nSent: Monday\n\nOld', 'Yes.'],
    ['German Outlook original message', 'Ja.\n\n-----Ursprüngliche Nachricht-----\nVon: Acme\nGesendet: Montag\n\nAlt', 'Ja.'],
    [
      'Outlook rule and header block',
      'Ok.\n\n________________________________\nFrom: Acme <support@acme.example>\nSent: Monday\nTo: Ann\n\nOld',
      'Ok.',
    ],
    [
      'Outlook header block alone',
      'Ok.\n\nFrom: Acme <support@acme.example>\nSent: Monday, 16 November 2026 10:00\nSubject: Order\n\nOld',
      'Ok.',
    ],
    [
      'a rule of dashes from an <hr> before the header block',
      'Ok.\n\n--------------------------------\n\nFrom: Acme\nSent: Monday\n\nOld',
      'Ok.',
    ],
    ['trailing ">" quotes introduced by an unknown line', 'Fine.\n\nAcme schrieb am Montag:\n> old\n> older\n', 'Fine.'],
    ['trailing ">" quotes without an introduction', 'Fine.\n\n> old\n>\n> older', 'Fine.'],
    ['bottom-posting', 'On Mon, Acme <support@acme.example> wrote:\n> Which size?\n\nSize M.', 'Size M.'],
    ['inline answers are kept whole', '> Which size?\nM.\n> Which colour?\nBlue.', '> Which size?\nM.\n> Which colour?\nBlue.'],
    [
      'a From: line that is not a header block',
      'From: the warehouse, nothing arrived.\nPlease check.',
      'From: the warehouse, nothing arrived.\nPlease check.',
    ],
    [
      'a rule that is just a rule',
      'Part one\n________________________________\nPart two',
      'Part one\n________________________________\nPart two',
    ],
    ['CRLF line breaks', 'Thanks!\r\n\r\nOn Mon, Acme <support@acme.example> wrote:\r\n> Hi', 'Thanks!'],
    [
      'a forward without a word: the forwarded text',
      '-----Original Message-----\nFrom: Olga\nSent: Friday\n\nWrong pallet.',
      'From: Olga\nSent: Friday\n\nWrong pallet.',
    ],
  ])('%s', (_name, text, expected) => {
    expect(replyPart(text)).toBe(expected);
  });
});
