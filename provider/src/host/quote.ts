/** Returns the word quoted for a POSIX shell: single quotes, each ' written as '\''. */
export function quoteArg(word: string): string {
  if (word !== "" && /^[A-Za-z0-9_@%+:,./-]+$/.test(word)) return word;
  return `'${word.replace(/'/g, `'\\''`)}'`;
}

/** Returns the argv as one command line for a POSIX shell, every word quoted. */
export function quoteArgv(argv: readonly string[]): string {
  return argv.map(quoteArg).join(" ");
}
