// Preloaded (node --import) into every process the local pod runner starts. Test infrastructure.
//
// Pods here share the host's network (there are no network namespaces and no CNI), but each has
// its own loopback address as its pod IP (Linux routes all of 127/8 to lo). A container that
// listens on the wildcard address, as servers in pods do ("0.0.0.0:5432"), would collide with
// every other pod on the same port; this turns a wildcard listen into a listen on the pod's own
// address, which is what the wildcard means inside a real pod's network namespace.
import net from 'node:net';

const podIp = process.env.PODRUNNER_POD_IP;
const WILDCARD = new Set<unknown>([undefined, null, '', '0.0.0.0', '::', '::0', '[::]']);
const isPort = (v: unknown): boolean => typeof v === 'number' || (typeof v === 'string' && /^\d+$/.test(v));

if (podIp) {
  const listen = net.Server.prototype.listen as (...args: unknown[]) => net.Server;
  net.Server.prototype.listen = function patchedListen(this: net.Server, ...args: unknown[]): net.Server {
    const [first, second] = args;
    if (first !== null && typeof first === 'object' && !Array.isArray(first)) {
      const opts = first as net.ListenOptions & { handle?: unknown; fd?: unknown };
      if (opts.path === undefined && opts.handle === undefined && opts.fd === undefined && WILDCARD.has(opts.host)) args[0] = { ...opts, host: podIp };
    } else if (isPort(first)) {
      if (typeof second === 'string') {
        if (WILDCARD.has(second)) args[1] = podIp;
      } else args.splice(1, 0, podIp); // listen(port[, backlog][, cb]): no host given means every address
    }
    return listen.apply(this, args);
  } as typeof net.Server.prototype.listen;
}
