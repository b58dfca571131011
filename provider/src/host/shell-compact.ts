/**
 * Returns a POSIX shell script without what the shell skips: comment lines, comments after code,
 * blank lines and the indentation of lines. About half of a shipped script's bytes are comments
 * and blank lines, and a body crosses the link with each remote shell that runs it (host/script.ts)
 * or inside each command on a session of its own.
 *
 * A small lexer of the shell's quoting decides what is code: nothing inside single or double
 * quotes, in a here-document's body, or on a line that a backslash continues is touched, and a
 * `#` is a comment only where it starts a word (POSIX 2.3: after a blank, an operator's character
 * or the start of a line, never after an escaped character or inside a word such as `${#x}` or
 * `$#`). Where the lexer cannot be sure (a `<<` it takes for a here-document, in arithmetic say),
 * it leaves more text as it is, never less. A unit test holds every shipped script's compact form
 * to the same parse as its source (bash's `declare -f` of both).
 */
export function compactShell(text: string): string {
  const out: string[] = [];
  // "code", or inside a quote that a line break does not end
  let state: "code" | "single" | "double" = "code";
  // the line before ended in code with a backslash: this line goes on with it
  let continued = false;
  // here-documents whose bodies start after the current line: their delimiters, in order
  let pending: Array<{ delim: string; tabs: boolean }> = [];
  const lines = text.split("\n");
  for (let i = 0; i < lines.length; i++) {
    let line = lines[i] ?? "";
    if (pending.length > 0) {
      // the bodies of the here-documents the line before opened: kept byte for byte
      for (const doc of pending) {
        while (i < lines.length) {
          const body = lines[i] ?? "";
          out.push(body);
          i++;
          if ((doc.tabs ? body.replace(/^\t+/, "") : body) === doc.delim) break;
        }
      }
      pending = [];
      i--;
      continue;
    }
    if (state === "code" && !continued) {
      line = line.replace(/^[ \t]+/, "");
      if (line === "" || line.startsWith("#")) continue;
    }
    // scan the line, keeping track of quotes; cut it at a comment. A line that goes on with the
    // one before may go on with its word too: its first character never starts a comment.
    let end = line.length;
    let wordStart = !continued;
    continued = false;
    for (let j = 0; j < line.length; j++) {
      const c = line[j];
      if (state === "single") {
        if (c === "'") state = "code";
        continue;
      }
      if (state === "double") {
        if (c === "\\") j++;
        else if (c === '"') state = "code";
        continue;
      }
      if (c === "\\") {
        if (j === line.length - 1) continued = true;
        j++;
        wordStart = false;
        continue;
      }
      if (c === "'") {
        state = "single";
        wordStart = false;
        continue;
      }
      if (c === '"') {
        state = "double";
        wordStart = false;
        continue;
      }
      if (c === "#" && wordStart) {
        end = j;
        break;
      }
      if (c === "<" && line[j + 1] === "<") {
        const m = /^<<(-?)[ \t]*([^ \t;&|()<>]+)/.exec(line.slice(j));
        // a `<<` not followed by a word: the script itself is wrong; keep the rest of it as it is
        if (!m) return [...out, ...lines.slice(i)].join("\n");
        pending.push({ delim: (m[2] ?? "").replace(/['"\\]/g, ""), tabs: m[1] === "-" });
        // the word may hold quotes: scan it as the shell would
        j++;
        wordStart = true;
        continue;
      }
      wordStart = c === " " || c === "\t" || ";&|()<>".includes(c ?? "");
    }
    if (end < line.length) {
      // drop the blanks before the comment, but never one that a backslash escapes
      line = line.slice(0, end);
      while (/[ \t]$/.test(line) && !/\\[ \t]$/.test(line)) line = line.slice(0, -1);
    }
    out.push(line);
  }
  return out.join("\n");
}
