// Separates what the sender wrote this time from the history their mail client quoted below it,
// in the shapes the common clients write in the languages our customers use.

// "On <date>, <name> wrote:" and its translations; Gmail wraps long ones onto a second line.
const ATTRIBUTION_LINES: RegExp[] = [
  /^On\b.{0,300}\bwrote:$/i, // English
  /^Am\b.{0,300}\bschrieb\b.{0,200}:$/i, // German
  /^Le\b.{0,300}\ba écrit\s?:$/i, // French
  /^El\b.{0,300}\bescribió:$/i, // Spanish
  /^Il\b.{0,300}\bha scritto:$/i, // Italian
  /^Op\b.{0,300}\bschreef.{0,200}:$/i, // Dutch
  /^Em\b.{0,300}\bescreveu:$/i, // Portuguese
  /^(Den|På)\b.{0,300}\bskrev.{0,200}:$/i, // Swedish, Danish, Norwegian
  /^(W dniu|Dnia)\b.{0,300}\bnapisał(a|\(a\))?:$/i, // Polish
  /^.{0,300}\s(пишет|написал|написала|написал\(а\)):$/i, // Russian
  /^\d{4}年\d{1,2}月\d{1,2}日.{0,300}[:：]$/, // Japanese and Chinese Gmail
  /^.{0,300}写道[:：]$/, // Chinese
  /^.{0,300}(さんは書きました|のメッセージ)[:：]$/, // Japanese
];

// Separator lines of clients that quote without ">" (Outlook, Thunderbird, Apple Mail, Lotus).
const SEPARATOR_LINES: RegExp[] = [
  /^-{2,}\s*(Original Message|Ursprüngliche Nachricht|Message d'origine|Mensaje original|Messaggio originale|Oorspronkelijk bericht|Ursprungligt meddelande|Mensagem original|Исходное сообщение|原始邮件|元のメッセージ)\s*-{2,}$/i,
  /^[-_]{20,}$/, // Outlook: a rule (plain text, or an <hr> made text), then "From: …"
];

// Outlook's header block: "From:" followed within a few lines by "Sent:" or "Date:" (and translations).
const FROM_FIELD = /^\*?(From|Von|De|Da|Van|Från|Fra|Od|От|发件人|寄件者|差出人)\s?[:：]/i;
const SENT_FIELD =
  /^\*?(Sent|Date|Gesendet|Datum|Envoyé|Date d'envoi|Enviado|Fecha|Inviato|Data|Verzonden|Skickat|Sendt|Wysłano|Отправлено|Дата|发送时间|寄件日期|送信日時|日付)\s?[:：]/i;

const QUOTED = /^\s*>/;

/** The new part of a mail's text; the whole text when nothing in it looks like quoted history. */
export function replyPart(text: string): string {
  const lines = text.replace(/\r\n?/g, '\n').split('\n');
  const historyStart = lines.findIndex((_line, i) => historyHeaderLength(lines, i) > 0);
  const reply = historyStart === -1 ? dropTrailingQuote(lines) : lines.slice(0, historyStart);
  const result = reply.join('\n').trim();
  return result || unquotedLines(lines).join('\n').trim();
}

/** Written below the quote (bottom-posting), or a forward without a word: what is not quoted. */
function unquotedLines(lines: readonly string[]): string[] {
  const kept: string[] = [];
  for (let i = 0; i < lines.length; i++) {
    const header = historyHeaderLength(lines, i);
    // Attribution lines and separators go; a From/Sent block is the forwarded mail's own header.
    if (header > 0 && !FROM_FIELD.test(lines[i]!.trim())) i += header - 1;
    else if (!QUOTED.test(lines[i]!)) kept.push(lines[i]!);
  }
  return kept;
}

/** How many lines at i introduce quoted history (an attribution may be wrapped onto two), or 0. */
function historyHeaderLength(lines: readonly string[], i: number): number {
  const line = lines[i]!.trim();
  if (!line || QUOTED.test(line)) return 0;
  if (ATTRIBUTION_LINES.some((pattern) => pattern.test(line))) return 1;
  const next = lines[i + 1]?.trim();
  if (next && !QUOTED.test(next) && ATTRIBUTION_LINES.some((pattern) => pattern.test(`${line} ${next}`))) return 2;
  if (SEPARATOR_LINES.some((pattern) => pattern.test(line))) {
    // A bare rule counts only when Outlook's header block follows it.
    const isRule = /^[-_]+$/.test(line);
    return !isRule || lines.slice(i + 1, i + 3).some((after) => FROM_FIELD.test(after.trim())) ? 1 : 0;
  }
  return FROM_FIELD.test(line) && lines.slice(i + 1, i + 5).some((after) => SENT_FIELD.test(after.trim())) ? 1 : 0;
}

/** Top-posting without an attribution line: the trailing run of "> " lines and the line introducing it. */
function dropTrailingQuote(lines: string[]): string[] {
  let end = lines.length;
  while (end > 0 && (QUOTED.test(lines[end - 1]!) || !lines[end - 1]!.trim())) end--;
  if (end === lines.length || !lines.slice(end).some((line) => QUOTED.test(line))) return lines;
  if (end > 0 && lines[end - 1]!.trim().endsWith(':')) end--;
  return trimBlankLines(lines.slice(0, end));
}

function trimBlankLines(lines: string[]): string[] {
  let end = lines.length;
  while (end > 0 && !lines[end - 1]!.trim()) end--;
  return lines.slice(0, end);
}
