import { mkdirSync, mkdtempSync, renameSync, rmSync, symlinkSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { CredentialError, CredentialStore } from './credentialStore.js';
import type { CredentialUser, FileStat } from './credentialStore.js';
import { ScramClientExchange } from './scramClient.js';
import { ScramServerExchange } from './scramServer.js';
import type { ScramVerifier } from './scramServer.js';

class FakeFs {
  private readonly files = new Map<string, { content: string; stat: FileStat }>();
  private nextIno = 1;
  private clock = 1_000;
  statCalls = 0;
  readCalls = 0;

  /** Rewrites in place: same inode, new mtime and size. */
  write(path: string, content: string): void {
    const ino = this.files.get(path)?.stat.ino ?? this.nextIno++;
    this.files.set(path, { content, stat: { mtimeMs: ++this.clock, size: Buffer.byteLength(content), ino } });
  }

  /** Rewrites without touching stat, as a same-size write inside one mtime tick would. */
  writeSilently(path: string, content: string): void {
    const f = this.files.get(path)!;
    this.files.set(path, { content, stat: f.stat });
  }

  remove(path: string): void {
    this.files.delete(path);
  }

  readonly statFs = (path: string): FileStat => {
    this.statCalls++;
    const f = this.files.get(path);
    if (f === undefined) throw Object.assign(new Error(`ENOENT: no such file, stat '${path}'`), { code: 'ENOENT' });
    return { ...f.stat };
  };

  readonly readFile = (path: string): string => {
    this.readCalls++;
    const f = this.files.get(path);
    if (f === undefined) throw Object.assign(new Error(`ENOENT: no such file, open '${path}'`), { code: 'ENOENT' });
    return f.content;
  };
}

function setup(users: CredentialUser[], recheckMs = 1000) {
  const fs = new FakeFs();
  let now = 0;
  const store = new CredentialStore(users, { statFs: fs.statFs, readFile: fs.readFile, recheckMs, now: () => now });
  return { fs, store, advance: (ms: number) => void (now += ms) };
}

function captureError(fn: () => unknown): CredentialError {
  try {
    fn();
  } catch (err) {
    expect(err).toBeInstanceOf(CredentialError);
    return err as CredentialError;
  }
  throw new Error('expected a CredentialError');
}

function authenticates(verifier: ScramVerifier, password: string): boolean {
  const server = new ScramServerExchange(verifier, 'c2VydmVy');
  const client = new ScramClientExchange(password);
  const first = server.handleClientFirst(client.clientFirst());
  if (!first.ok) return false;
  return server.handleClientFinal(client.handleServerFirst(first.serverFirst)).ok;
}

describe('CredentialStore construction', () => {
  test.each<[string, CredentialUser[], RegExp]>([
    ['both files', [{ name: 'a', passwordFile: '/p', secretFile: '/s' }], /exactly one of passwordFile or secretFile/],
    ['no file', [{ name: 'a' }], /exactly one of passwordFile or secretFile/],
    ['empty name', [{ name: '', passwordFile: '/p' }], /empty name/],
    ['empty path', [{ name: 'a', passwordFile: '' }], /empty file path/],
    ['duplicate', [{ name: 'a', passwordFile: '/p' }, { name: 'a', secretFile: '/s' }], /"a" is configured twice/],
  ])('rejects %s', (_label, users, message) => {
    expect(captureError(() => new CredentialStore(users)).message).toMatch(message);
  });

  test('rejects bad options', () => {
    expect(() => new CredentialStore([], { recheckMs: -1 })).toThrow(CredentialError);
    expect(() => new CredentialStore([], { recheckMs: Number.NaN })).toThrow(CredentialError);
    expect(() => new CredentialStore([], { scramIterations: 0 })).toThrow(CredentialError);
  });

  test('does not touch the filesystem until asked', () => {
    const { fs, store } = setup([{ name: 'a', passwordFile: '/missing' }]);
    expect(store.has('a')).toBe(true);
    expect(fs.statCalls).toBe(0);
  });

  test('CredentialError is an Error with its own name', () => {
    const e = new CredentialError('x');
    expect(e).toBeInstanceOf(Error);
    expect(e.name).toBe('CredentialError');
  });
});

describe('has', () => {
  test('reports configured users only', () => {
    const { store } = setup([{ name: 'app', passwordFile: '/p' }]);
    expect(store.has('app')).toBe(true);
    expect(store.has('App')).toBe(false);
    expect(store.has('')).toBe(false);
  });
});

describe('password from passwordFile', () => {
  test.each([
    ['hunter2', 'hunter2'],
    ['hunter2\n', 'hunter2'],
    ['hunter2\r\n', 'hunter2'],
    ['hunter2\n\n', 'hunter2\n'],
    ['hunter2\r', 'hunter2\r'],
    [' hunter2 \t', ' hunter2 \t'],
    ['p\u00E4ss\n', 'p\u00E4ss'],
  ])('%j -> %j (only one trailing newline is trimmed)', (content, expected) => {
    const { fs, store } = setup([{ name: 'app', passwordFile: '/p' }]);
    fs.write('/p', content);
    expect(store.password('app')).toBe(expected);
  });

  test.each(['', '\n', '\r\n'])('empty file %j is an error', (content) => {
    const { fs, store } = setup([{ name: 'app', passwordFile: '/p' }]);
    fs.write('/p', content);
    expect(captureError(() => store.password('app')).message).toBe('passwordFile /p for user "app" is empty');
  });

  test('missing file names user, file and errno', () => {
    const { store } = setup([{ name: 'app', passwordFile: '/secrets/app' }]);
    expect(captureError(() => store.password('app')).message).toBe(
      'cannot stat passwordFile /secrets/app for user "app": ENOENT',
    );
  });

  test('unreadable file names user, file and errno', () => {
    const fs = new FakeFs();
    fs.write('/p', 'pw');
    const store = new CredentialStore([{ name: 'app', passwordFile: '/p' }], {
      statFs: fs.statFs,
      readFile: () => {
        throw Object.assign(new Error('EACCES: permission denied'), { code: 'EACCES' });
      },
    });
    expect(captureError(() => store.password('app')).message).toBe('cannot read passwordFile /p for user "app": EACCES');
  });

  test('unknown user', () => {
    const { store } = setup([]);
    expect(captureError(() => store.password('nobody')).message).toBe('no credentials configured for user "nobody"');
  });
});

describe('password from secretFile', () => {
  const users: CredentialUser[] = [{ name: 'app', secretFile: '/s' }];

  test.each([
    ['{"username":"app","password":"s3cret"}', 's3cret'],
    ['{"password":"s3cret"}', 's3cret'],
    ['{"username":"app","password":"s3cret","engine":"postgres","host":"db","port":5432}\n', 's3cret'],
    ['{"password":"with\\nnewline\\n"}', 'with\nnewline\n'],
  ])('%j -> %j', (content, expected) => {
    const { fs, store } = setup(users);
    fs.write('/s', content);
    expect(store.password('app')).toBe(expected);
  });

  test.each([
    ['{"username":"other","password":"s3cret"}', 'secretFile /s for user "app" is for username "other", not "app"'],
    ['{"username":7,"password":"s3cret"}', 'secretFile /s for user "app" has a non-string "username"'],
    ['{"username":"app"}', 'secretFile /s for user "app" has no string "password" field'],
    ['{"password":12345}', 'secretFile /s for user "app" has no string "password" field'],
    ['{"password":""}', 'secretFile /s for user "app" has an empty "password"'],
    ['["s3cret"]', 'secretFile /s for user "app" must hold a JSON object'],
    ['"s3cret"', 'secretFile /s for user "app" must hold a JSON object'],
    ['null', 'secretFile /s for user "app" must hold a JSON object'],
    ['s3cret', 'secretFile /s for user "app" is not valid JSON'],
    ['{"password":"s3cret"', 'secretFile /s for user "app" is not valid JSON'],
    ['', 'secretFile /s for user "app" is not valid JSON'],
  ])('%j is refused', (content, message) => {
    const { fs, store } = setup(users);
    fs.write('/s', content);
    const err = captureError(() => store.password('app'));
    expect(err.message).toBe(message);
    expect(err.message).not.toContain('s3cret');
  });
});

describe('rotation', () => {
  test('re-checks at most once per recheckMs and re-reads only on change', () => {
    const { fs, store, advance } = setup([{ name: 'app', passwordFile: '/p' }], 1000);
    fs.write('/p', 'one\n');
    expect(store.password('app')).toBe('one');
    expect([fs.statCalls, fs.readCalls]).toEqual([1, 1]);

    fs.write('/p', 'two\n');
    advance(999);
    expect(store.password('app')).toBe('one');
    expect(fs.statCalls).toBe(1);

    advance(1);
    expect(store.password('app')).toBe('two');
    expect([fs.statCalls, fs.readCalls]).toEqual([2, 2]);

    advance(1000);
    expect(store.password('app')).toBe('two');
    expect([fs.statCalls, fs.readCalls]).toEqual([3, 2]);
  });

  test('a change invisible to stat is not picked up (documents the mtime/size/ino contract)', () => {
    const { fs, store, advance } = setup([{ name: 'app', passwordFile: '/p' }], 0);
    fs.write('/p', 'aaa');
    expect(store.password('app')).toBe('aaa');
    fs.writeSilently('/p', 'bbb');
    advance(1);
    expect(store.password('app')).toBe('aaa');
  });

  test('recheckMs 0 checks on every call', () => {
    const { fs, store } = setup([{ name: 'app', passwordFile: '/p' }], 0);
    fs.write('/p', 'one');
    store.password('app');
    store.password('app');
    expect(fs.statCalls).toBe(2);
    expect(fs.readCalls).toBe(1);
  });

  test('a missing file recovers once it appears; errors are cached until the next recheck', () => {
    const { fs, store, advance } = setup([{ name: 'app', passwordFile: '/p' }]);
    expect(() => store.password('app')).toThrow(/ENOENT/);
    expect(() => store.password('app')).toThrow(/ENOENT/);
    expect(fs.statCalls).toBe(1);
    fs.write('/p', 'pw');
    advance(1000);
    expect(store.password('app')).toBe('pw');
  });

  test('a broken rewrite errors, and is not re-parsed until it changes again', () => {
    const { fs, store, advance } = setup([{ name: 'app', secretFile: '/s' }]);
    fs.write('/s', '{"password":"one"}');
    expect(store.password('app')).toBe('one');
    fs.write('/s', '{"password":');
    advance(1000);
    expect(() => store.password('app')).toThrow(/not valid JSON/);
    advance(1000);
    expect(() => store.password('app')).toThrow(/not valid JSON/);
    expect(fs.readCalls).toBe(2);
    fs.write('/s', '{"password":"two"}');
    advance(1000);
    expect(store.password('app')).toBe('two');
  });

  test('a deleted file becomes an error after the recheck interval', () => {
    const { fs, store, advance } = setup([{ name: 'app', passwordFile: '/p' }]);
    fs.write('/p', 'pw');
    expect(store.password('app')).toBe('pw');
    fs.remove('/p');
    advance(1000);
    expect(() => store.password('app')).toThrow(/ENOENT/);
  });

  test('users are tracked independently', () => {
    const { fs, store } = setup([
      { name: 'a', passwordFile: '/a' },
      { name: 'b', secretFile: '/b' },
    ]);
    fs.write('/a', 'pa');
    fs.write('/b', '{"username":"b","password":"pb"}');
    expect(store.password('a')).toBe('pa');
    expect(store.password('b')).toBe('pb');
  });
});

describe('scramVerifier', () => {
  test('is computed once per password value with a random 16-byte salt', () => {
    const { fs, store, advance } = setup([{ name: 'app', passwordFile: '/p' }]);
    fs.write('/p', 'one');
    const v1 = store.scramVerifier('app');
    expect(v1.salt).toHaveLength(16);
    expect(v1.iterations).toBe(4096);
    expect(authenticates(v1, 'one')).toBe(true);
    expect(authenticates(v1, 'two')).toBe(false);
    expect(store.scramVerifier('app')).toBe(v1);

    // touched but same value: same verifier
    fs.write('/p', 'one\n');
    advance(1000);
    expect(store.scramVerifier('app')).toBe(v1);
    expect(fs.readCalls).toBe(2);

    fs.write('/p', 'two');
    advance(1000);
    const v2 = store.scramVerifier('app');
    expect(v2).not.toBe(v1);
    expect(v2.salt).not.toEqual(v1.salt);
    expect(authenticates(v2, 'two')).toBe(true);
    expect(authenticates(v2, 'one')).toBe(false);
  });

  test('different users get different salts even with the same password', () => {
    const { fs, store } = setup([
      { name: 'a', passwordFile: '/a' },
      { name: 'b', passwordFile: '/b' },
    ]);
    fs.write('/a', 'same');
    fs.write('/b', 'same');
    expect(store.scramVerifier('a').salt).not.toEqual(store.scramVerifier('b').salt);
  });

  test('honours scramIterations', () => {
    const fs = new FakeFs();
    fs.write('/p', 'pw');
    const store = new CredentialStore([{ name: 'app', passwordFile: '/p' }], { statFs: fs.statFs, readFile: fs.readFile, scramIterations: 10 });
    expect(store.scramVerifier('app').iterations).toBe(10);
  });

  test('throws CredentialError for unknown users and unusable files', () => {
    const { store } = setup([{ name: 'app', passwordFile: '/p' }]);
    expect(() => store.scramVerifier('nobody')).toThrow(CredentialError);
    expect(() => store.scramVerifier('app')).toThrow(/ENOENT/);
  });
});

describe('real filesystem', () => {
  let dir: string;
  beforeEach(() => {
    dir = mkdtempSync(join(tmpdir(), 'dbproxy-cred-'));
  });
  afterEach(() => {
    rmSync(dir, { recursive: true, force: true });
  });

  // Mimics the kubelet's AtomicWriter: files are links through "..data", which is itself a link
  // to a timestamped directory; an update writes a new directory and renames a new "..data" over
  // the old one.
  function publish(version: string, files: Record<string, string>): void {
    const target = join(dir, `..${version}`);
    mkdirSync(target);
    for (const [name, content] of Object.entries(files)) writeFileSync(join(target, name), content);
    symlinkSync(`..${version}`, join(dir, '..data_tmp'));
    renameSync(join(dir, '..data_tmp'), join(dir, '..data'));
  }

  test('picks up a Kubernetes-style symlink swap', () => {
    publish('2024_01_01', { password: 'one\n', secret: '{"username":"rds","password":"r1"}' });
    symlinkSync('..data/password', join(dir, 'password'));
    symlinkSync('..data/secret', join(dir, 'secret'));
    let now = 0;
    const store = new CredentialStore(
      [
        { name: 'app', passwordFile: join(dir, 'password') },
        { name: 'rds', secretFile: join(dir, 'secret') },
      ],
      { now: () => now },
    );
    expect(store.password('app')).toBe('one');
    expect(store.password('rds')).toBe('r1');
    const v1 = store.scramVerifier('app');

    // same length content, so only the inode tells the versions apart
    publish('2024_01_02', { password: 'two\n', secret: '{"username":"rds","password":"r2"}' });
    expect(store.password('app')).toBe('one');
    now += 1000;
    expect(store.password('app')).toBe('two');
    expect(store.password('rds')).toBe('r2');
    expect(store.scramVerifier('app')).not.toBe(v1);
    expect(authenticates(store.scramVerifier('app'), 'two')).toBe(true);
  });

  test('reports a dangling link as a CredentialError', () => {
    symlinkSync('..data/password', join(dir, 'password'));
    const store = new CredentialStore([{ name: 'app', passwordFile: join(dir, 'password') }]);
    expect(captureError(() => store.password('app')).message).toBe(
      `cannot stat passwordFile ${join(dir, 'password')} for user "app": ENOENT`,
    );
  });

  test('reading a directory is a CredentialError, not a crash', () => {
    const store = new CredentialStore([{ name: 'app', passwordFile: dir }]);
    expect(captureError(() => store.password('app')).message).toMatch(/cannot read passwordFile .* for user "app": EISDIR/);
  });
});
