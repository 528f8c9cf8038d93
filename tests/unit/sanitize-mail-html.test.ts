import { describe, expect, it } from 'vitest';
import { sanitizeMailHtml } from '../../src/mail/sanitize-mail-html.js';

describe('sanitizeMailHtml', () => {
  it.each<[string, string, string]>([
    ['keeps formatting', '<p>Hello <b>bold</b> <i>it</i> <u>u</u></p>', '<p>Hello <b>bold</b> <i>it</i> <u>u</u></p>'],
    ['drops scripts with their text', '<p>a</p><script>alert(1)</script>', '<p>a</p>'],
    ['drops <style> and <title> with their text', '<head><title>T</title><style>p{}</style></head><p>a</p>', '<p>a</p>'],
    ['drops event handlers', '<p onclick="x()" onmouseover="y()">a</p>', '<p>a</p>'],
    [
      'drops javascript: links',
      '<a href="javascript:alert(1)">x</a>',
      '<a target="_blank" rel="noopener noreferrer nofollow">x</a>',
    ],
    [
      'opens links in a new tab without a referrer',
      '<a href="https://x.example/">x</a>',
      '<a href="https://x.example/" target="_blank" rel="noopener noreferrer nofollow">x</a>',
    ],
    ['keeps cid: images', '<img src="cid:logo@x" alt="logo">', '<img src="cid:logo@x" alt="logo" />'],
    ['keeps data: images', '<img src="data:image/png;base64,AAAA">', '<img src="data:image/png;base64,AAAA" />'],
    [
      'drops data: links',
      '<a href="data:text/html,&lt;script&gt;">x</a>',
      '<a target="_blank" rel="noopener noreferrer nofollow">x</a>',
    ],
    ['drops frames and forms', '<iframe src="https://x"></iframe><form><input name="a"></form><p>a</p>', '<p>a</p>'],
    [
      'keeps harmless inline styles',
      '<p style="color: red; font-weight: bold">a</p>',
      '<p style="color:red;font-weight:bold">a</p>',
    ],
    [
      'drops styles that load or overlay',
      '<p style="background: url(https://t.example/x); position: fixed; color: red">a</p>',
      '<p style="color:red">a</p>',
    ],
    ['drops classes and ids', '<div class="gmail_quote" id="x">a</div>', '<div>a</div>'],
    [
      'keeps tables',
      '<table border="0"><tr><td colspan="2">a</td></tr></table>',
      '<table border="0"><tr><td colspan="2">a</td></tr></table>',
    ],
    ['drops comments (Outlook conditionals)', '<!--[if mso]><p>mso</p><![endif]--><p>a</p>', '<p>a</p>'],
  ])('%s', (_name, html, expected) => {
    expect(sanitizeMailHtml(html)).toBe(expected);
  });
});
