import { describe, expect, it } from 'vitest';
import { htmlToPlainText } from '../../src/mail/html-text.js';

describe('htmlToPlainText', () => {
  it.each<[string, string, string]>([
    ['paragraphs', '<p>One</p><p>Two</p>', 'One\n\nTwo'],
    ['line breaks', 'a<br>b', 'a\nb'],
    ['links with their address', '<a href="https://x.example/p">the page</a>', 'the page <https://x.example/p>'],
    ['links whose text is the address', '<a href="https://x.example/">https://x.example/</a>', 'https://x.example/'],
    ['quotes as "> " lines', '<p>Yes.</p><blockquote>Old<br>text</blockquote>', 'Yes.\n\n> Old\n> text'],
    ['no images', '<p>a<img src="cid:x" alt="logo"></p>', 'a'],
    ['headings as written', '<h1>Big news</h1>', 'Big news'],
  ])('%s', (_name, html, expected) => {
    expect(htmlToPlainText(html)).toBe(expected);
  });
});
