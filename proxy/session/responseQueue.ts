// Keeps the answers a client sees in the order it asked, when some answers come from the server
// and some from the proxy itself (a ParseComplete for a statement the backend already has, a
// CloseComplete answered locally, an error the proxy raises) and some server answers belong to
// messages the proxy slipped in (a Parse on a new backend) and must not be seen. Each request
// that gets an answer has a slot; server messages complete the slot at the head.

/** What a slot answers: the client message type ('P','B','C','D','E','S','Q','F'). */
export type RequestType = 'P' | 'B' | 'C' | 'D' | 'E' | 'S' | 'Q' | 'F';

export interface Slot {
  kind: 'client' | 'hidden' | 'local';
  req: RequestType;
  /** local: the bytes to send when the slot reaches the head. */
  bytes?: Buffer;
  /** hidden: send the server's error on to the client (its own request depended on this one). */
  forwardErrors?: boolean;
  /** hidden: DataRow messages of the result, for the proxy's own queries. */
  rows?: Buffer[];
  /** hidden: every message of the answer (a Describe's ParameterDescription and RowDescription). */
  collect?: Buffer[];
  /** hidden: parameter reports (ParameterStatus) reach the client too. */
  forwardReports?: boolean;
  /** client Query: what to send the client instead of the server's EmptyQueryResponse. */
  emptyAs?: Buffer;
  /**
   * Called once: ok is false when the server answered with an error or skipped the request;
   * failedHere says the error was this request's own (not an earlier one's, skipped to Sync).
   */
  done?: (ok: boolean, failedHere?: boolean) => void;
  /**
   * client Query: ordinals (from 0) of CommandComplete messages that answer statements the proxy
   * added to the client's query string, kept from the client.
   */
  swallow?: readonly number[];
}

/**
 * The slot of a plain client request (no callback, nothing to hide), one per type, shared: the
 * common request costs no allocation. Slots are never mutated by the queue.
 */
export const CLIENT_SLOT: Readonly<Record<RequestType, Slot>> = Object.freeze({
  P: Object.freeze({ kind: 'client', req: 'P' }),
  B: Object.freeze({ kind: 'client', req: 'B' }),
  C: Object.freeze({ kind: 'client', req: 'C' }),
  D: Object.freeze({ kind: 'client', req: 'D' }),
  E: Object.freeze({ kind: 'client', req: 'E' }),
  S: Object.freeze({ kind: 'client', req: 'S' }),
  Q: Object.freeze({ kind: 'client', req: 'Q' }),
  F: Object.freeze({ kind: 'client', req: 'F' }),
} satisfies Record<RequestType, Slot>);

const code = (c: string): number => c.charCodeAt(0);
const ERROR = code('E');
const COMMAND_COMPLETE = code('C');
const READY = code('Z');
const DATA_ROW = code('D');
const NOTIFICATION = code('A');
const PARAMETER_STATUS = code('S');
const EMPTY_QUERY = code('I');
const ASYNC = new Set([code('N'), PARAMETER_STATUS, NOTIFICATION]);

function completes(slot: Slot, type: number): boolean {
  switch (slot.req) {
    case 'P':
      return type === 0x31; // '1' ParseComplete
    case 'B':
      return type === 0x32; // '2' BindComplete
    case 'C':
      return type === 0x33; // '3' CloseComplete
    case 'D':
      return type === code('T') || type === code('n'); // after an optional ParameterDescription
    case 'E':
      return type === code('C') || type === code('I') || type === code('s');
    case 'S':
    case 'Q':
    case 'F':
      return type === READY;
  }
}

export class ResponseQueue {
  private readonly slots: Slot[] = [];
  private head = 0;
  /** The head request's answer included an error (a Query or FunctionCall goes on to its ReadyForQuery). */
  private headFailed = false;
  /** CommandCompletes seen so far for the head slot's `swallow`. */
  private headCompletions = 0;
  /** The server skips everything up to the next Sync after an extended-protocol error. */
  private skippingToSync = false;

  constructor(private readonly emit: (bytes: Buffer) => void) {}

  /** Slots still waiting on the server. */
  get waiting(): number {
    return this.slots.length - this.head;
  }

  /** Whether a request of the client's own (not only the proxy's) still waits for its answer. */
  get clientWaiting(): boolean {
    for (let i = this.head; i < this.slots.length; i++) if (this.slots[i]!.kind !== 'hidden') return true;
    return false;
  }

  /** The request the server answers next, or null. */
  get headSlot(): Slot | null {
    return this.head < this.slots.length ? this.slots[this.head]! : null;
  }

  get headIsHidden(): boolean {
    return this.head < this.slots.length && this.slots[this.head]!.kind === 'hidden';
  }

  push(slot: Slot): void {
    if (this.skippingToSync && slot.req !== 'S') {
      // The server will not look at this request; neither would PostgreSQL answer it.
      slot.done?.(false);
      return;
    }
    if (slot.req === 'S') this.skippingToSync = false;
    this.slots.push(slot);
    this.flushLocal();
  }

  /** The proxy itself failed a request: like the server, ignore what follows until Sync. */
  failLocally(errorBytes: Buffer): void {
    this.push({ kind: 'local', req: 'P', bytes: errorBytes });
    this.skippingToSync = true;
  }

  /** Whether the server is skipping the client's messages until its next Sync. */
  get skipping(): boolean {
    return this.skippingToSync;
  }

  /**
   * Routes one whole server message: on to the client (through `emit`, in order with local
   * answers) or swallowed. Returns the slot it completed, if any.
   */
  onServer(type: number, msg: Buffer): Slot | null {
    const slot = this.slots[this.head];
    if (!slot) {
      this.emit(msg);
      return null;
    }
    const visible = slot.kind === 'client';
    if (ASYNC.has(type)) {
      // A notification is the client's whatever request it arrives during; a notice or parameter
      // report during the proxy's own request belongs to that request.
      if (visible || type === NOTIFICATION || (type === PARAMETER_STATUS && slot.forwardReports === true)) this.emit(msg);
      return null;
    }
    if (type === ERROR && slot.req !== 'Q' && slot.req !== 'F' && slot.req !== 'S') {
      if (visible || slot.forwardErrors) this.emit(msg);
      this.complete(false, true);
      this.dropToSync();
      return slot;
    }
    if (!visible) {
      if (type === DATA_ROW && slot.rows) slot.rows.push(Buffer.from(msg));
      if (slot.collect) slot.collect.push(Buffer.from(msg));
    }
    if (type === EMPTY_QUERY && slot.emptyAs !== undefined) {
      this.emit(slot.emptyAs);
      return null;
    }
    if (type === ERROR) {
      this.headFailed = true;
      if (visible || slot.forwardErrors) this.emit(msg);
      return null;
    }
    if (visible && !this.isAddedCompletion(slot, type)) this.emit(msg);
    if (completes(slot, type)) {
      this.complete(!this.headFailed);
      return slot;
    }
    return null;
  }

  /** Counts a Query's CommandCompletes; true for one that answers a statement the proxy added. */
  private isAddedCompletion(slot: Slot, type: number): boolean {
    if (type !== COMMAND_COMPLETE || slot.swallow === undefined) return false;
    return slot.swallow.includes(this.headCompletions++);
  }

  /** The backend went away: every open request fails. */
  abandon(): void {
    const open = this.slots.slice(this.head);
    this.slots.length = 0;
    this.head = 0;
    this.headFailed = false;
    this.headCompletions = 0;
    this.skippingToSync = false;
    for (const s of open) s.done?.(false);
  }

  private complete(ok: boolean, failedHere = false): void {
    const slot = this.slots[this.head++]!;
    this.headFailed = false;
    this.headCompletions = 0;
    slot.done?.(ok, failedHere);
    this.flushLocal();
  }

  /** After an error the server answers nothing until the Sync: those slots end unanswered. */
  private dropToSync(): void {
    while (this.head < this.slots.length && this.slots[this.head]!.req !== 'S') {
      const s = this.slots[this.head++]!;
      s.done?.(false);
    }
    this.headFailed = false;
    this.headCompletions = 0;
    if (this.head >= this.slots.length) this.skippingToSync = true;
    this.flushLocal();
  }

  private flushLocal(): void {
    while (this.head < this.slots.length && this.slots[this.head]!.kind === 'local') {
      const s = this.slots[this.head++]!;
      this.emit(s.bytes!);
      s.done?.(true);
    }
    if (this.head === this.slots.length && this.head > 0) {
      this.slots.length = 0;
      this.head = 0;
    }
  }
}
