// The lab's public surface: what tests, `npm run lab` and the bench use.
export { LAB_LEASE_DIR, readLeases } from "./allocate";
export {
  isProcessAlive,
  runLocal,
  type ExecOptions,
  type ExecResult,
  type LocalRunOptions,
} from "./exec";
export {
  attachLab,
  listLabs,
  startLab,
  type Lab,
  type LabConnection,
  type LabHost,
  type LabWan,
  type StartLabOptions,
} from "./lab";
export {
  LAB_MAX_HOSTS,
  LAB_MAX_INDEX,
  LAB_STATE_ROOT,
  LAB_WAN_ADDRESS,
  labGuestNet,
  labHostLayout,
  labInterfacePrefix,
} from "./layout";
export { LAB_USERS } from "./mounts";
export { checkLabPrerequisites } from "./prerequisites";
export { stopLab } from "./stop";
