// A test that writes to the console fails, as in zod's own suite: output belongs in assertions.
// The methods are replaced outright (not spied), so a test's vi.restoreAllMocks() keeps them.
import { format } from "node:util";
import { afterAll, afterEach } from "vitest";

const METHODS = ["log", "info", "warn", "error", "debug", "trace", "dir", "table"] as const;

const written: string[] = [];
for (const method of METHODS) {
  // eslint-disable-next-line no-console -- this file is what catches console use in tests
  console[method] = (...args: unknown[]): void => {
    written.push(`console.${method}: ${format(...args)}`);
  };
}

function failOnWrites(where: string): void {
  if (written.length === 0) return;
  const lines = written.splice(0);
  throw new Error(`${where} wrote to the console:\n${lines.join("\n")}`);
}

afterEach(() => failOnWrites("this test"));
afterAll(() => failOnWrites("a hook of this file"));
