/* global module */
// A webpack loader for the replay tests' mutants: replaces one piece of a source file's text with
// another, e.g. two activity calls in the opposite order. Options: { search, replacement }. Throws
// when the text is not in the file exactly once, so a mutant cannot silently turn into the original.
module.exports = function mutantLoader(source) {
  const { search, replacement } = this.getOptions();
  const at = source.indexOf(search);
  if (at < 0 || source.includes(search, at + 1)) {
    throw new Error(`mutant: ${this.resourcePath} does not contain this text exactly once (edit the mutant):\n${search}`);
  }
  return source.slice(0, at) + replacement + source.slice(at + search.length);
};
