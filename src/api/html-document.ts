import { z } from '@hono/zod-openapi';
import { html, raw } from 'hono/html';
import type { HtmlEscapedString } from 'hono/utils/html';

// The few pages a browser sees (the survey, the OAuth callback): one plain layout, never indexed.

type Body = HtmlEscapedString | Promise<HtmlEscapedString>;

/** A page titled `title` (escaped like the body's values); `style` is the page's own CSS, ours and never input. */
export function htmlDocument(title: string, body: Body, style = '', lang = 'en') {
  return html`<!doctype html>
    <html lang="${lang}">
      <head>
        <meta charset="utf-8" />
        <meta name="viewport" content="width=device-width, initial-scale=1" />
        <meta name="robots" content="noindex" />
        <title>${title}</title>
        <style>
          body {
            font-family: system-ui, sans-serif;
            max-width: 32rem;
            margin: 3rem auto;
            padding: 0 1rem;
            color: #1f2933;
          }
          ${raw(style)}
        </style>
      </head>
      <body>
        <h1>${title}</h1>
        ${body}
      </body>
    </html>`;
}

/** An HTML page among a route's OpenAPI responses. */
export const htmlResponse = (description: string) => ({ description, content: { 'text/html': { schema: z.string() } } });
