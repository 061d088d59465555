#!/usr/bin/env node
// `dbproxy proxy --config FILE`, `dbproxy operator` and `dbproxy token`: the one CLI of the one image.
// Conventions: `--help` on any command prints that command's usage on stdout and exits 0; a usage
// error (unknown command, unknown or missing flag) prints the message and the usage on stderr and
// exits 2; `dbproxy --version` prints the version.
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
  dbproxy help [COMMAND]          this text, or a command's own
  dbproxy --version               print the version

dbproxy COMMAND --help prints the command's flags.`;

export const PROXY_USAGE = `usage: dbproxy proxy --config FILE

Runs the PostgreSQL proxy. The config file is YAML (README "Proxy configuration"); it is re-read
when it changes, on SIGHUP and on RELOAD. SIGTERM drains: transactions finish within
shutdownGracePeriod.

  -c, --config FILE     the proxy config (required)
  -h, --help            print this help`;

export const TOKEN_USAGE = `usage: dbproxy token --proxy-id ID [--region REGION] [--endpoint URL]

Prints a login token for a dbproxy that accepts AWS IAM logins: a presigned STS GetCallerIdentity
request bound to the proxy whose iam.proxyId is ID (a DatabaseProxy's is "<namespace>/<name>"
unless clientAuth.awsIam.proxyId says otherwise). Use it as the password; it is valid for 15
minutes. AWS credentials come from the SDK's default chain (environment, profile, IRSA, ...).

  --proxy-id ID         the proxy's iam.proxyId (or env DBPROXY_PROXY_ID; required)
  --region REGION       STS region to sign for (default: the SDK's, else us-east-1)
  --endpoint URL        STS endpoint (default: the region's)
  -h, --help            print this help`;

/** The package version, from the package.json next to dist/ (in the image too). */
export function version(): string {
  try {
    const pkg = JSON.parse(readFileSync(new URL('../../../package.json', import.meta.url), 'utf8')) as { name?: string; version?: string };
    return pkg.version ?? 'unknown';
  } catch {
    return 'unknown';
  }
}

/** A usage error: the message and the command's usage on stderr, exit status 2. */
function usageError(command: string, message: string, usage: string): number {
  process.stderr.write(`${command}: ${message}\n\n${usage}\n`);
  return 2;
}

async function runProxy(args: string[]): Promise<number> {
  let values: { config?: string; help?: boolean };
  try {
    ({ values } = parseArgs({ args, options: { config: { type: 'string', short: 'c' }, help: { type: 'boolean', short: 'h' } }, strict: true, allowPositionals: false }));
  } catch (e) {
    return usageError('dbproxy proxy', (e as Error).message, PROXY_USAGE);
  }
  if (values.help) {
    process.stdout.write(`${PROXY_USAGE}\n`);
    return 0;
  }
  if (!values.config) return usageError('dbproxy proxy', '--config FILE is required', PROXY_USAGE);
  let text: string;
  try {
    text = readFileSync(values.config, 'utf8');
  } catch (e) {
    process.stderr.write(`dbproxy proxy: cannot read config file ${values.config}: ${(e as Error).message}\n`);
    return 2;
  }
  let config;
  // Logged once the logger exists: its level comes from this very config.
  const deprecated: string[] = [];
  try {
    config = parseConfigYaml(text, { onDeprecated: (m) => deprecated.push(m) });
  } catch (e) {
    if (e instanceof ConfigError) {
      process.stderr.write(`dbproxy proxy: ${values.config}: ${e.message}\n`);
      return 2;
    }
    throw e;
  }
  const log = createLogger(config.logLevel);
  for (const m of deprecated) log.warn({ configPath: values.config }, m);
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
  let values: { 'proxy-id'?: string; region?: string; endpoint?: string; help?: boolean };
  try {
    ({ values } = parseArgs({
      args,
      options: { 'proxy-id': { type: 'string' }, region: { type: 'string' }, endpoint: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
      strict: true,
      allowPositionals: false,
    }));
  } catch (e) {
    return usageError('dbproxy token', (e as Error).message, TOKEN_USAGE);
  }
  if (values.help) {
    process.stdout.write(`${TOKEN_USAGE}\n`);
    return 0;
  }
  const proxyId = values['proxy-id'] ?? process.env.DBPROXY_PROXY_ID;
  if (!proxyId) return usageError('dbproxy token', "--proxy-id ID is required (the proxy's iam.proxyId, e.g. namespace/name)", TOKEN_USAGE);
  const { stsToken } = await import('../auth/iamToken.js');
  try {
    process.stdout.write(`${await stsToken({ proxyId, region: values.region, endpoint: values.endpoint })}\n`);
  } catch (e) {
    process.stderr.write(`dbproxy token: ${(e as Error).message}\n`);
    return 1;
  }
  return 0;
}

async function commandUsage(command: string): Promise<string | undefined> {
  switch (command) {
    case 'proxy':
      return PROXY_USAGE;
    case 'token':
      return TOKEN_USAGE;
    case 'operator':
      return (await import('../../operator/cli.js')).OPERATOR_USAGE;
    default:
      return undefined;
  }
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
    case '-h': {
      if (rest.length === 0) {
        process.stdout.write(`${USAGE}\n`);
        return 0;
      }
      const usage = rest.length === 1 ? await commandUsage(rest[0]!) : undefined;
      if (!usage) return usageError('dbproxy help', `unknown command ${rest.join(' ')}`, USAGE);
      process.stdout.write(`${usage}\n`);
      return 0;
    }
    case 'version':
    case '--version':
    case '-V':
      if (rest.length > 0) return usageError(`dbproxy ${command}`, `unexpected argument ${rest[0]}`, USAGE);
      process.stdout.write(`dbproxy ${version()}\n`);
      return 0;
    default:
      return usageError('dbproxy', command === undefined ? 'unknown command (none)' : command.startsWith('-') ? `unknown option ${command}` : `unknown command ${command}`, USAGE);
  }
}

main(process.argv.slice(2)).then(
  (code) => process.exit(code),
  (e: Error) => {
    process.stderr.write(`dbproxy: ${e.stack ?? e.message}\n`);
    process.exit(1);
  },
);
