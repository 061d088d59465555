// Messages the proxy itself sends to clients, in the server's role. pg-protocol serializes only
// the frontend side (what clients send), so the handful of backend messages the proxy originates
// are built here.

export type Severity = 'ERROR' | 'FATAL' | 'PANIC' | 'WARNING' | 'NOTICE' | 'INFO' | 'LOG' | 'DEBUG';

export interface ErrorFields {
  severity: Severity;
  code: string;
  message: string;
  detail?: string;
  hint?: string;
}

/** A message: type byte, 4-byte length, body. */
export function frame(type: string, body: Buffer): Buffer {
  const out = Buffer.allocUnsafe(5 + body.length);
  out[0] = type.charCodeAt(0);
  out.writeUInt32BE(4 + body.length, 1);
  body.copy(out, 5);
  return out;
}

const cstr = (s: string): Buffer => Buffer.from(s + '\0', 'utf8');
const int32 = (n: number): Buffer => {
  const b = Buffer.allocUnsafe(4);
  b.writeInt32BE(n, 0);
  return b;
};

function fieldsBody(f: ErrorFields): Buffer {
  const parts: Buffer[] = [cstr('S' + f.severity), cstr('V' + f.severity), cstr('C' + f.code), cstr('M' + f.message)];
  if (f.detail) parts.push(cstr('D' + f.detail));
  if (f.hint) parts.push(cstr('H' + f.hint));
  parts.push(Buffer.from([0]));
  return Buffer.concat(parts);
}

export const errorResponse = (f: ErrorFields): Buffer => frame('E', fieldsBody(f));
export const noticeResponse = (f: ErrorFields): Buffer => frame('N', fieldsBody(f));
export const readyForQuery = (status: 'I' | 'T' | 'E'): Buffer => frame('Z', Buffer.from(status, 'latin1'));
export const parameterStatus = (name: string, value: string): Buffer => frame('S', Buffer.concat([cstr(name), cstr(value)]));
export function backendKeyData(pid: number, secret: number): Buffer {
  const body = Buffer.allocUnsafe(8);
  body.writeUInt32BE(pid >>> 0, 0);
  body.writeUInt32BE(secret >>> 0, 4);
  return frame('K', body);
}
export const authenticationOk = (): Buffer => frame('R', int32(0));
export const authenticationCleartext = (): Buffer => frame('R', int32(3));
export const authenticationMd5 = (salt: Buffer): Buffer => frame('R', Buffer.concat([int32(5), salt]));
export const authenticationSasl = (mechanisms: string[]): Buffer =>
  frame('R', Buffer.concat([int32(10), ...mechanisms.map(cstr), Buffer.from([0])]));
export const authenticationSaslContinue = (data: string): Buffer => frame('R', Buffer.concat([int32(11), Buffer.from(data, 'utf8')]));
export const authenticationSaslFinal = (data: string): Buffer => frame('R', Buffer.concat([int32(12), Buffer.from(data, 'utf8')]));
export const commandComplete = (tag: string): Buffer => frame('C', cstr(tag));
export const emptyQueryResponse = (): Buffer => frame('I', Buffer.alloc(0));
export const closeComplete = (): Buffer => frame('3', Buffer.alloc(0));
export const parseComplete = (): Buffer => frame('1', Buffer.alloc(0));
export function parameterDescription(types: readonly number[]): Buffer {
  const body = Buffer.allocUnsafe(2 + 4 * types.length);
  body.writeInt16BE(types.length, 0);
  types.forEach((t, i) => body.writeUInt32BE(t, 2 + 4 * i));
  return frame('t', body);
}

export function negotiateProtocolVersion(minor: number, unrecognized: string[]): Buffer {
  return frame('v', Buffer.concat([int32(minor), int32(unrecognized.length), ...unrecognized.map(cstr)]));
}

/** RowDescription with text columns (type oid 25), for the admin console's result sets. */
export function rowDescription(columns: string[]): Buffer {
  const parts: Buffer[] = [Buffer.from([(columns.length >> 8) & 0xff, columns.length & 0xff])];
  for (const c of columns) {
    const meta = Buffer.alloc(18);
    // table oid 0, column 0, type oid 25 (text), size -1, typmod -1, format 0 (text)
    meta.writeInt32BE(0, 0);
    meta.writeInt16BE(0, 4);
    meta.writeInt32BE(25, 6);
    meta.writeInt16BE(-1, 10);
    meta.writeInt32BE(-1, 12);
    meta.writeInt16BE(0, 16);
    parts.push(cstr(c), meta);
  }
  return frame('T', Buffer.concat(parts));
}

export function dataRow(values: Array<string | null>): Buffer {
  const parts: Buffer[] = [Buffer.from([(values.length >> 8) & 0xff, values.length & 0xff])];
  for (const v of values) {
    if (v === null) {
      parts.push(int32(-1));
    } else {
      const b = Buffer.from(v, 'utf8');
      parts.push(int32(b.length), b);
    }
  }
  return frame('D', Buffer.concat(parts));
}
