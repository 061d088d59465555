// The floor for a Node proxy's CPU per transaction: a bare socket pipe, one server connection per
// client, no parsing, no pooling. `node dist/test/bench/barePipe.js LISTEN_PORT TARGET_PORT`.
// The CPU benchmark runs it beside dbproxy and PgBouncer to show what the runtime itself costs.
import net from 'node:net';

const [listenPort, targetPort] = process.argv.slice(2).map(Number);
if (!listenPort || !targetPort) {
  process.stderr.write('usage: barePipe LISTEN_PORT TARGET_PORT\n');
  process.exit(2);
}
const server = net.createServer({ noDelay: true }, (client) => {
  const upstream = net.connect({ host: '127.0.0.1', port: targetPort, noDelay: true });
  client.pipe(upstream);
  upstream.pipe(client);
  const close = (): void => {
    client.destroy();
    upstream.destroy();
  };
  client.on('error', close);
  upstream.on('error', close);
  client.on('close', close);
  upstream.on('close', close);
});
server.listen(listenPort, '127.0.0.1', () => process.stdout.write('listening\n'));
process.on('SIGTERM', () => process.exit(0));
