// The name an uploaded file is stored and sent under: no path, no control or bidirectional-override characters
// (a name that reads "invoice‮fdp.exe" is not "invoice.exe" reversed), no leading dots, bounded in length.

const MAX_FILENAME_CHARS = 200;
const MAX_EXTENSION_CHARS = 20;
// C0 and C1 controls, DEL, and the Unicode direction marks, embeddings, overrides and isolates.
// eslint-disable-next-line no-control-regex -- removing control characters is the point
const UNSAFE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/gu;

export function sanitizeFilename(name: string | undefined): string {
  const last = (name ?? '').split(/[\\/]/).pop() ?? '';
  const cleaned = last.replace(UNSAFE, '').trim().replace(/^\.+/, '').trim();
  const chars = [...cleaned];
  if (chars.length <= MAX_FILENAME_CHARS) return cleaned || 'attachment';
  // Too long: the start of the name and its extension, so that the file still opens with the right program.
  const dot = cleaned.lastIndexOf('.');
  const extension = dot > 0 ? [...cleaned.slice(dot)] : [];
  const kept = extension.length > 1 && extension.length <= MAX_EXTENSION_CHARS ? extension : [];
  return chars.slice(0, MAX_FILENAME_CHARS - kept.length).join('') + kept.join('');
}
