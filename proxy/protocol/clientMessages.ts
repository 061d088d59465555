// Readers for the few frontend messages the proxy looks inside, and for the untyped startup
// packet. Each takes a whole message (header included) as the framer delivers it.

export const SSL_REQUEST_CODE = 80877103;
export const GSSENC_REQUEST_CODE = 80877104;
export const CANCEL_REQUEST_CODE = 80877102;
/** PostgreSQL refuses startup packets longer than this (MAX_STARTUP_PACKET_LENGTH). */
export const MAX_STARTUP_PACKET_LENGTH = 10000;

export type StartupPacket =
  | { kind: 'ssl' }
  | { kind: 'gssenc' }
  | { kind: 'cancel'; processId: number; secretKey: number }
  | { kind: 'startup'; major: number; minor: number; params: Map<string, string> };

export class ProtocolViolation extends Error {
  constructor(
    message: string,
    readonly code = '08P01',
  ) {
    super(message);
    this.name = 'ProtocolViolation';
  }
}

/** Parses a startup-phase packet: 4-byte length, 4-byte code, then the body. */
export function parseStartupPacket(packet: Buffer): StartupPacket {
  if (packet.length < 8) throw new ProtocolViolation('invalid length of startup packet');
  const code = packet.readUInt32BE(4);
  if (code === SSL_REQUEST_CODE) return { kind: 'ssl' };
  if (code === GSSENC_REQUEST_CODE) return { kind: 'gssenc' };
  if (code === CANCEL_REQUEST_CODE) {
    if (packet.length !== 16) throw new ProtocolViolation('invalid length of cancel request');
    return { kind: 'cancel', processId: packet.readUInt32BE(8), secretKey: packet.readUInt32BE(12) };
  }
  const major = code >>> 16;
  const minor = code & 0xffff;
  const params = new Map<string, string>();
  if (major !== 3) return { kind: 'startup', major, minor, params };
  let i = 8;
  for (;;) {
    const end = packet.indexOf(0, i);
    if (end < 0) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
    if (end === i) break;
    const name = packet.toString('utf8', i, end);
    const vEnd = packet.indexOf(0, end + 1);
    if (vEnd < 0) throw new ProtocolViolation('invalid startup packet layout: expected terminator as last byte');
    params.set(name, packet.toString('utf8', end + 1, vEnd));
    i = vEnd + 1;
  }
  return { kind: 'startup', major, minor, params };
}

function cstring(msg: Buffer, start: number): { value: string; next: number } {
  const end = msg.indexOf(0, start);
  if (end < 0) throw new ProtocolViolation('invalid string in message');
  return { value: end === start ? '' : msg.toString('utf8', start, end), next: end + 1 };
}

/** Query ('Q'): the SQL text. */
export function readQuery(msg: Buffer): string {
  return cstring(msg, 5).value;
}

/** Parse ('P'): statement name, SQL text, parameter type OIDs. */
export function readParse(msg: Buffer): { name: string; query: string; paramTypes: number[] } {
  const name = cstring(msg, 5);
  const query = cstring(msg, name.next);
  let i = query.next;
  if (i + 2 > msg.length) throw new ProtocolViolation('invalid Parse message');
  const n = msg.readInt16BE(i);
  i += 2;
  if (n < 0 || i + 4 * n > msg.length) throw new ProtocolViolation('invalid Parse message');
  const paramTypes: number[] = [];
  for (let k = 0; k < n; k++) paramTypes.push(msg.readUInt32BE(i + 4 * k));
  return { name: name.value, query: query.value, paramTypes };
}

/**
 * Where a Parse's parts sit, without decoding them: the name is bytes [5, nameEnd), the SQL text
 * [nameEnd + 1, textEnd).
 */
export function locateParse(msg: Buffer): { nameEnd: number; textEnd: number } {
  const nameEnd = msg.indexOf(0, 5);
  const textEnd = nameEnd < 0 ? -1 : msg.indexOf(0, nameEnd + 1);
  if (textEnd < 0 || textEnd + 3 > msg.length) throw new ProtocolViolation('invalid Parse message');
  return { nameEnd, textEnd };
}

/** Bind ('B'): portal and statement names (the rest stays opaque). */
export function readBindNames(msg: Buffer): { portal: string; statement: string } {
  const portal = cstring(msg, 5);
  const statement = cstring(msg, portal.next);
  return { portal: portal.value, statement: statement.value };
}

/** Execute ('E'): the portal name (the row limit stays opaque). */
export function readExecutePortal(msg: Buffer): string {
  return cstring(msg, 5).value;
}

export interface FunctionCall {
  /** pg_proc OID of the function called. */
  oid: number;
  /** Arguments as sent (null for SQL NULL), each with its format: 0 text, 1 binary. */
  args: Array<{ value: Buffer | null; format: number }>;
}

/** FunctionCall ('F'); null when the message is malformed (the server will say so). */
export function readFunctionCall(msg: Buffer): FunctionCall | null {
  let i = 5;
  const need = (n: number): boolean => i + n <= msg.length;
  if (!need(6)) return null;
  const oid = msg.readUInt32BE(i);
  const nFormats = msg.readInt16BE(i + 4);
  i += 6;
  if (nFormats < 0 || !need(2 * nFormats + 2)) return null;
  const formats: number[] = [];
  for (let k = 0; k < nFormats; k++) formats.push(msg.readInt16BE(i + 2 * k));
  i += 2 * nFormats;
  const nArgs = msg.readInt16BE(i);
  i += 2;
  if (nArgs < 0) return null;
  const args: FunctionCall['args'] = [];
  for (let k = 0; k < nArgs; k++) {
    if (!need(4)) return null;
    const len = msg.readInt32BE(i);
    i += 4;
    const format = nFormats === 0 ? 0 : nFormats === 1 ? formats[0]! : (formats[k] ?? 0);
    if (len === -1) {
      args.push({ value: null, format });
      continue;
    }
    if (len < 0 || !need(len)) return null;
    args.push({ value: msg.subarray(i, i + len), format });
    i += len;
  }
  return { oid, args };
}

/** Describe ('D') and Close ('C'): target kind ('S' statement, 'P' portal) and name. */
export function readTarget(msg: Buffer): { kind: string; name: string } {
  if (msg.length < 7) throw new ProtocolViolation('invalid Describe/Close message');
  return { kind: String.fromCharCode(msg[5]!), name: cstring(msg, 6).value };
}

/** PasswordMessage / SASLInitialResponse / SASLResponse ('p'): the raw body. */
export function readPasswordBody(msg: Buffer): Buffer {
  return msg.subarray(5);
}

/** SASLInitialResponse: mechanism name and initial response (null when length is -1). */
export function readSaslInitialResponse(msg: Buffer): { mechanism: string; data: string | null } {
  const mech = cstring(msg, 5);
  if (mech.next + 4 > msg.length) throw new ProtocolViolation('invalid SASLInitialResponse');
  const len = msg.readInt32BE(mech.next);
  if (len === -1) return { mechanism: mech.value, data: null };
  if (len < 0 || mech.next + 4 + len > msg.length) throw new ProtocolViolation('invalid SASLInitialResponse');
  return { mechanism: mech.value, data: msg.toString('utf8', mech.next + 4, mech.next + 4 + len) };
}

/** Fields of an ErrorResponse/NoticeResponse from a server, keyed by field code. */
export function readErrorFields(msg: Buffer): Map<string, string> {
  const fields = new Map<string, string>();
  let i = 5;
  while (i < msg.length && msg[i] !== 0) {
    const code = String.fromCharCode(msg[i]!);
    const s = cstring(msg, i + 1);
    fields.set(code, s.value);
    i = s.next;
  }
  return fields;
}
