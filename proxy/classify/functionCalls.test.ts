import { readFunctionCall } from '../protocol/clientMessages.js';
import { functionCallEffect } from './functionCalls.js';

/** A FunctionCall message, arguments in one format. */
function call(oid: number, args: Array<string | Buffer | null>, format = 0): Buffer {
  const parts: Buffer[] = [];
  const head = Buffer.alloc(4 + 2 + 2 + 2);
  head.writeUInt32BE(oid, 0);
  head.writeInt16BE(1, 4);
  head.writeInt16BE(format, 6);
  head.writeInt16BE(args.length, 8);
  parts.push(head);
  for (const a of args) {
    const len = Buffer.alloc(4);
    if (a === null) {
      len.writeInt32BE(-1);
      parts.push(len);
      continue;
    }
    const v = typeof a === 'string' ? Buffer.from(a) : a;
    len.writeInt32BE(v.length);
    parts.push(len, v);
  }
  parts.push(Buffer.alloc(2));
  const body = Buffer.concat(parts);
  const msg = Buffer.alloc(5);
  msg[0] = 'F'.charCodeAt(0);
  msg.writeUInt32BE(4 + body.length, 1);
  return Buffer.concat([msg, body]);
}

const effect = (msg: Buffer, inTx = false) => functionCallEffect(readFunctionCall(msg)!, inTx);

test('set_config through FunctionCall is a tracked SET, in text or binary format', () => {
  expect(effect(call(2078, ['Work_Mem', '64MB', 'false']))).toEqual({ pins: ['set'], settings: [{ kind: 'set', name: 'work_mem', sql: '' }] });
  expect(effect(call(2078, ['work_mem', '64MB', Buffer.of(0)], 1))).toEqual({ pins: ['set'], settings: [{ kind: 'set', name: 'work_mem', sql: '' }] });
  expect(effect(call(2078, ['work_mem', '64MB', 'true'])).pins).toEqual([]);
  expect(effect(call(2078, ['role', 'reader', 'off'])).pins).toEqual(['set_role']);
  expect(effect(call(2078, [null, '64MB', 'false']))).toEqual({ pins: ['set'], settings: [{ kind: 'opaque' }] });
});

test('session advisory locks pin; sequence functions pin outside a transaction block only', () => {
  expect(effect(call(2880, ['1'])).pins).toEqual(['session_advisory_lock']);
  expect(effect(call(2889, ['1', '2'])).pins).toEqual(['session_advisory_lock']);
  expect(effect(call(1574, ['s'])).pins).toEqual(['sequence_function_outside_transaction']);
  expect(effect(call(1574, ['s']), true).pins).toEqual([]);
  expect(effect(call(1990, ['x'])).pins).toEqual([]);
});

test('a malformed FunctionCall reads as null', () => {
  const m = call(2078, ['work_mem', '64MB', 'false']);
  expect(readFunctionCall(m.subarray(0, m.length - 8))).toBeNull();
});
