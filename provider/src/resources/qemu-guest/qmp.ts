import { z } from "zod";
import type { Step } from "../../step";

// QMP is spoken from the host itself, through `socat` (Debian package `socat`): a host may have no
// python, and the shell cannot open a unix socket. socat runs as a coprocess on two FIFOs so the
// client sends one command, waits for its answer and only then sends the next: QEMU drops the
// queued commands of a client that closes its end early (monitor_qmp_cleanup_queues on CLOSED),
// so "send everything, then EOF" would lose answers.

/**
 * A POSIX shell function `qmp SOCKET COMMAND...`: negotiates capabilities, sends each command (one
 * JSON object per argument) and prints each answer line (`{"return"...` or `{"error"...`) in order;
 * events are skipped. Returns 3 when socat is missing, 1 when the monitor does not answer.
 */
export const QMP_FUNCTION = String.raw`qmp() {
  trap '' PIPE
  command -v socat >/dev/null 2>&1 || { echo "socat is not installed on the host; install socat (QMP needs it)" >&2; return 3; }
  _qs=$1; shift
  _qd=$(mktemp -d) || return 1
  mkfifo "$_qd/in" "$_qd/out" || { rm -rf "$_qd"; return 1; }
  socat -T 10 "UNIX-CONNECT:$_qs" - <"$_qd/in" >"$_qd/out" 2>"$_qd/err" &
  _qp=$!
  exec 8>"$_qd/in" 9<"$_qd/out"
  _qrc=0
  if IFS= read -r _ql <&9; then
    for _qc in '{"execute":"qmp_capabilities"}' "$@"; do
      printf '%s\n' "$_qc" >&8 2>/dev/null
      _qok=0
      while IFS= read -r _ql <&9; do
        case $_ql in
          '{"return"'*|'{"error"'*)
            [ "$_qc" = '{"execute":"qmp_capabilities"}' ] || printf '%s\n' "$_ql"
            _qok=1; break ;;
        esac
      done
      [ $_qok = 1 ] || { _qrc=1; break; }
    done
  else
    _qrc=1
  fi
  exec 8>&- 9<&-
  wait $_qp 2>/dev/null
  [ $_qrc = 0 ] || echo "qmp: no answer on $_qs: $(tr '\n' ' ' <"$_qd/err")" >&2
  rm -rf "$_qd"
  return $_qrc
}`;

// A stand-alone QMP call for a plan step: fails (exit 1) when an answer is an error.
const QMP_STEP_SCRIPT = [
  "trap '' PIPE",
  QMP_FUNCTION,
  'out=$(qmp "$@") || exit $?',
  "printf '%s\\n' \"$out\"",
  `case $out in *'{"error"'*) echo "qemu answered: $out" >&2; exit 1 ;; esac`,
  "exit 0",
].join("\n");

/** Returns the QMP command object as the one line QEMU reads. */
export function qmpCommand(execute: string, args?: Record<string, unknown>): string {
  return JSON.stringify(args === undefined ? { execute } : { execute, arguments: args });
}

/** Returns a step that runs QMP commands on the guest's monitor socket and fails on an error answer. */
export function qmpStep(summary: string, socket: string, commands: readonly string[]): Step {
  return { summary, argv: ["sh", "-c", QMP_STEP_SCRIPT, "sh", socket, ...commands] };
}

const QmpAnswer = z.union([
  z.object({ return: z.unknown() }).loose(),
  z.object({ error: z.object({ class: z.string(), desc: z.string() }).loose() }).loose(),
]);
export type QmpAnswer = z.infer<typeof QmpAnswer>;

/** Returns the answers printed by the `qmp` function, one per line, validated. */
export function parseQmpAnswers(text: string): QmpAnswer[] {
  return text
    .split("\n")
    .filter((l) => l.trim() !== "")
    .map((l) => {
      try {
        return QmpAnswer.parse(JSON.parse(l));
      } catch (e) {
        throw new Error(
          `unexpected QMP answer ${JSON.stringify(l.slice(0, 200))}: ${e instanceof Error ? e.message : String(e)}`,
        );
      }
    });
}

export const QueryStatus = z.object({ status: z.string(), running: z.boolean() }).loose();
export const QueryName = z.object({ name: z.string().optional() }).loose();
export const QueryKvm = z.object({ enabled: z.boolean(), present: z.boolean() }).loose();

/** Returns the `return` value of an answer parsed with the schema, or undefined for an error answer. */
export function answerValue<T>(
  answer: QmpAnswer | undefined,
  schema: z.ZodType<T>,
  what: string,
): T | undefined {
  if (answer === undefined || !("return" in answer)) return undefined;
  const r = schema.safeParse(answer.return);
  if (!r.success) throw new Error(`unexpected QMP answer to ${what}: ${r.error.message}`);
  return r.data;
}
