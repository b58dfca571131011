// Links of a lab: each host's management veth to this machine and, with a WAN, its uplink to the
// lab's WAN namespace, which has LAB_WAN_ADDRESS on its loopback and a route to nothing else.
// Everything goes through `ip -batch`, one call per namespace.
import { runOk } from "./exec";
import { LAB_WAN_ADDRESS, type LabHostLayout } from "./layout";

/** Creates the namespaces and links of hosts (and the WAN when wanNetns is given) and addresses them. */
export async function wireLab(
  layouts: LabHostLayout[],
  wanNetns: string | undefined,
): Promise<void> {
  const netnses = [...layouts.map((l) => l.netns), ...(wanNetns !== undefined ? [wanNetns] : [])];
  await Promise.all(netnses.map((ns) => runOk(["ip", "netns", "add", ns])));
  const rootBatch: string[] = [];
  for (const l of layouts) {
    rootBatch.push(`link add ${l.mgmtVeth} type veth peer name mgmt0 netns ${l.netns}`);
    rootBatch.push(`addr add ${l.controllerAddress}/24 dev ${l.mgmtVeth}`);
    rootBatch.push(`link set ${l.mgmtVeth} up`);
    if (wanNetns !== undefined) {
      rootBatch.push(
        `link add name wan0 netns ${l.netns} type veth peer name ${l.wanPeer} netns ${wanNetns}`,
      );
    }
  }
  await runOk(["ip", "-batch", "-"], { stdin: rootBatch.join("\n") + "\n" });
  if (wanNetns !== undefined) {
    const wanBatch = ["link set lo up", `addr add ${LAB_WAN_ADDRESS}/32 dev lo`];
    for (const l of layouts) {
      wanBatch.push(`addr add ${l.wanGateway}/24 dev ${l.wanPeer}`);
      wanBatch.push(`link set ${l.wanPeer} up`);
    }
    await runOk(["ip", "-n", wanNetns, "-batch", "-"], { stdin: wanBatch.join("\n") + "\n" });
  }
  await Promise.all(
    layouts.map((l) => {
      const batch = ["link set lo up", `addr add ${l.address}/24 dev mgmt0`, "link set mgmt0 up"];
      if (wanNetns !== undefined) {
        batch.push(`addr add ${l.wanAddress}/24 dev wan0`, "link set wan0 up");
        batch.push(`route add default via ${l.wanGateway} dev wan0`);
      }
      return runOk(["ip", "-n", l.netns, "-batch", "-"], { stdin: batch.join("\n") + "\n" });
    }),
  );
}
