#!/usr/bin/env node
// `dbproxy proxy --config FILE`, `dbproxy operator` and `dbproxy token`: the one CLI of the one image.
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';
import { ConfigError, parseConfigYaml } from '../contract/config.js';
import { ProxyServer } from '../proxyServer.js';
import { createLogger } from '../runtime/logger.js';

const USAGE = `usage:
  dbproxy proxy --config FILE     run the PostgreSQL proxy (config: YAML, see README "Proxy configuration")
  dbproxy operator [flags]        run the Kubernetes operator (dbproxy operator --help)
  dbproxy token --proxy-id ID [--region REGION] [--endpoint URL]
                                  print an STS login token for the proxy whose iam.proxyId is ID
                                  (AWS credentials from the SDK's default chain; use it as the password)
  dbproxy help`;

async function runProxy(args: string[]): Promise<number> {
  let values: { config?: string };
  try {
    ({ values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' } }, strict: true }));
  } catch (e) {
    process.stderr.write(`dbproxy proxy: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  if (!values.config) {
    process.stderr.write(`dbproxy proxy: --config FILE is required\n${USAGE}\n`);
    return 2;
  }
  let text: string;
  try {
    text = readFileSync(values.config, 'utf8');
  } catch (e) {
    process.stderr.write(`dbproxy proxy: cannot read config file ${values.config}: ${(e as Error).message}\n`);
    return 2;
  }
  let config;
  try {
    config = parseConfigYaml(text);
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`dbproxy proxy: ${values.config}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  const server = await ProxyServer.create({ config, configPath: values.config, log });
  await server.start();
  return new Promise<number>((resolve) => {
    let stopping = false;
    const stop = (signal: string): void => {
      if (stopping) return;
      stopping = true;
      log.info({ signal }, 'received signal');
      server.shutdown().then(
        () => resolve(0),
        () => resolve(1),
      );
    };
    process.on('SIGTERM', () => stop('SIGTERM'));
    process.on('SIGINT', () => stop('SIGINT'));
    process.on('SIGHUP', () => {
      server.reload().catch((e: Error) => log.error({ err: e.message }, 'reload failed'));
    });
  });
}

async function runToken(args: string[]): Promise<number> {
  let values: { 'proxy-id'?: string; region?: string; endpoint?: string };
  try {
    ({ values } = parseArgs({ args, options: { 'proxy-id': { type: 'string' }, region: { type: 'string' }, endpoint: { type: 'string' } }, strict: true }));
  } catch (e) {
    process.stderr.write(`dbproxy token: ${(e as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const proxyId = values['proxy-id'] ?? process.env.DBPROXY_PROXY_ID;
  if (!proxyId) {
    process.stderr.write(`dbproxy token: --proxy-id ID is required (the proxy's iam.proxyId, e.g. namespace/name)\n${USAGE}\n`);
    return 2;
  }
  const { stsToken } = await import('../auth/iamToken.js');
  try {
    process.stdout.write(`${await stsToken({ proxyId, region: values.region, endpoint: values.endpoint })}\n`);
  } catch (e) {
    process.stderr.write(`dbproxy token: ${(e as Error).message}\n`);
    return 1;
  }
  return 0;
}

async function main(argv: string[]): Promise<number> {
  const [command, ...rest] = argv;
  switch (command) {
    case 'proxy':
      return runProxy(rest);
    case 'operator':
      return (await import('../../operator/cli.js')).runOperatorCommand(rest);
    case 'token':
      return runToken(rest);
    case 'help':
    case '--help':
    case '-h':
      process.stdout.write(`${USAGE}\n`);
      return 0;
    default:
      process.stderr.write(`dbproxy: unknown command ${command ?? '(none)'}\n${USAGE}\n`);
      return 2;
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`dbproxy: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
