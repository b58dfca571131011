// Local processes for booted lab hosts: the namespace lab's runner (lab/exec.ts) under the names
// the booted lab uses, so both labs run commands, quote them and read pids one way.
export {
  findProgram as whichProgram,
  isProcessAlive as isAlive,
  LAB_ENV,
  pathExists as exists,
  quoteForMessage as formatArgv,
  quoteShellWord,
  runLocal,
  runOk,
  sleep,
  tail as tailOf,
  type ExecOptions,
  type ExecResult,
} from "../exec";
