import { isUtf8 } from 'node:buffer';

// Text whose charset the mail does not say (or says is us-ascii while it is not) is decoded the
// way browsers do: UTF-8 when it is valid UTF-8, ISO-2022-JP when it has its escape sequences
// (Japanese mail that forgot its label), else windows-1252, the superset of ISO-8859-1.

// ESC $ B, ESC $ @ (JIS X 0208) and ESC ( J (JIS X 0201 Roman).
const ISO_2022_JP_ESCAPES = ['\u001b$B', '\u001b$@', '\u001b(J'];

const iso2022jp = new TextDecoder('iso-2022-jp');

export function decodeUndeclared(bytes: Uint8Array): string {
  const latin1 = Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('latin1');
  const sevenBit = bytes.every((byte) => byte < 0x80);
  if (sevenBit && ISO_2022_JP_ESCAPES.some((escape) => latin1.includes(escape))) return iso2022jp.decode(bytes);
  if (isUtf8(bytes)) return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength).toString('utf8');
  return decodeWindows1252(latin1);
}

/**
 * A header line as the MIME splitter hands it over (one char per byte) with raw 8-bit text that is
 * not UTF-8 re-encoded as UTF-8, which is what the parser expects of unlabelled header bytes.
 */
export function repairHeaderLine(binaryLine: string): string {
  const bytes = Buffer.from(binaryLine, 'latin1');
  if (isUtf8(bytes)) return binaryLine;
  return Buffer.from(decodeUndeclared(bytes), 'utf8').toString('latin1');
}

// windows-1252 is ISO-8859-1 but for 0x80–0x9F; Node 20's TextDecoder reads that range as ISO-8859-1.
const WINDOWS_1252_HIGH = '€\u0081‚ƒ„…†‡ˆ‰Š‹Œ\u008dŽ\u008f\u0090‘’“”•–—˜™š›œ\u009džŸ';

function decodeWindows1252(latin1: string): string {
  return latin1.replace(/[\x80-\x9f]/g, (char) => WINDOWS_1252_HIGH[char.charCodeAt(0) - 0x80]!);
}
