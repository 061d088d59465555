// Decides, per Query (or Parse) text, whether running it makes the client's session depend on
// one backend connection, and why. The lexer clears ordinary statements without a parse; the
// rest go through the real PostgreSQL grammar (libpg-query). The per-text analysis does not
// depend on the session, so it is cached by exact text; the one context-dependent input,
// whether the session is inside a transaction block, only selects between two precomputed
// answers.

import { loadModule, normalizeSync, parsePlPgSQLSync, parseSync } from 'libpg-query';
import type {
  A_Const,
  CreateFunctionStmt,
  CreateSeqStmt,
  CreateStmt,
  CreateTableAsStmt,
  DeclareCursorStmt,
  DeallocateStmt,
  DiscardStmt,
  DoStmt,
  FuncCall,
  IntoClause,
  Node,
  RangeVar,
  RawStmt,
  SelectStmt,
  TransactionStmt,
  TypeCast,
  VariableSetStmt,
  ViewStmt,
} from 'libpg-query';
import { lexStatements, redactLiterals } from './lexer.js';
import { isPlainSql } from './prefilter.js';
import { LruMap } from '../runtime/lruMap.js';
import type { LexedStatement } from './lexer.js';
import { PIN_REASONS } from './pinReasons.js';
import type { PinReason } from './pinReasons.js';

/**
 * A session-level setting change the statement makes, for a session that tracks settings and
 * replays them on whichever backend it borrows instead of pinning. `sql` replays the change and
 * contains the value as written: never log it.
 */
export type SessionSetting =
  | { readonly kind: 'set'; readonly name: string; readonly sql: string }
  | { readonly kind: 'reset'; readonly name: string }
  | { readonly kind: 'reset_all' }
  /** A setting change the classifier cannot describe (e.g. set_config with computed arguments). */
  | { readonly kind: 'opaque' };

export interface Classification {
  /** Why this text pins the session, deduplicated, in PIN_REASONS order; empty for ordinary statements. */
  readonly pins: readonly PinReason[];
  /** DISCARD ALL or DEALLOCATE ALL is present: the session's prepared statements are gone. */
  readonly discardAll: boolean;
  /**
   * The text asks for read-write transactions (BEGIN/START ... READ WRITE, SET TRANSACTION READ
   * WRITE, SET SESSION CHARACTERISTICS ... READ WRITE, default_transaction_read_only or
   * transaction_read_only set off, or reset): what a read-only endpoint must refuse.
   */
  readonly readWrite: boolean;
  /** Whether the real parser ran (false: the prefilter or the lexer cleared every statement). */
  readonly parsed: boolean;
  /** Session-level SET / RESET / set_config changes, in statement order. */
  readonly settings: readonly SessionSetting[];
  /**
   * Top-level statements that reset parameters (RESET, SET ... TO DEFAULT, RESET ALL, DISCARD
   * ALL, also inside a DO block): on PostgreSQL they return to the values the client gave at
   * startup, which a proxy that applied those with SET must put back right after them.
   */
  readonly resets: readonly ResetPoint[];
  /**
   * How many statements the text holds (several run in one implicit transaction); 0 when the
   * prefilter cleared it without counting (it then resets nothing).
   */
  readonly statements: number;
  /**
   * It changes the catalog in a way that can change what a statement Parsed afterwards means
   * (CREATE, ALTER, DROP of tables, types, functions, views, ...): statements prepared before it
   * must not answer a Parse made after it.
   */
  readonly ddl: boolean;
  /** It creates temporary objects: that changes what names mean for this session only. */
  readonly ddlTemp: boolean;
  /** The text is exactly one `DEALLOCATE [PREPARE] name`: the name (it pins nothing by itself). */
  readonly deallocate: string | null;
  /**
   * The text is one statement that PostgreSQL refuses while any other session is connected to a
   * database (DROP DATABASE, ALTER DATABASE ... RENAME or SET TABLESPACE, CREATE DATABASE ...
   * TEMPLATE): that database's name. The proxy's own idle connections to it must go first.
   */
  readonly releasesDatabase: string | null;
}

export interface ResetPoint {
  /** Index of the top-level statement in the text (its CommandComplete is the (statement+1)-th). */
  readonly statement: number;
  /** Byte offset in the UTF-8 text just after the statement (before its semicolon). */
  readonly end: number;
  /** Parameters reset, or null for all of them. */
  readonly names: readonly string[] | null;
}

export interface StatementClassifierOptions {
  /** Distinct texts whose analysis is kept (LRU). Default 5000. */
  cacheSize?: number;
  /** Longer texts are analyzed every time rather than cached, so the cache's memory stays bounded. Default 8192. */
  maxCachedLength?: number;
}

export const DIGEST_MAX_LENGTH = 200;

// From PostgreSQL's src/include/nodes/parsenodes.h.
const CURSOR_OPT_HOLD = 0x0020;

const SEQUENCE_FUNCTIONS: ReadonlySet<string> = new Set(['nextval', 'setval', 'currval', 'lastval']);
// The _xact_ variants are released at transaction end, so they need no pin.
const SESSION_ADVISORY_LOCKS: ReadonlySet<string> = new Set([
  'pg_advisory_lock',
  'pg_advisory_lock_shared',
  'pg_try_advisory_lock',
  'pg_try_advisory_lock_shared',
]);
const ROLE_SETTINGS: ReadonlySet<string> = new Set(['role', 'session_authorization']);

// First keywords of statements that always need the parser, whatever words they contain.
// (LISTEN, DECLARE ... WITH HOLD, EXECUTE and CREATE TEMP are caught by their watched words.)
const PARSE_HEADS: ReadonlySet<string> = new Set(['set', 'reset', 'prepare', 'deallocate', 'load', 'discard', 'do']);
const OPEN_HEADS: ReadonlySet<string> = new Set(['begin', 'start']);
const CLOSE_HEADS: ReadonlySet<string> = new Set(['commit', 'end', 'rollback', 'abort']);

const enum Txn {
  None,
  Open,
  Close,
}

/** What one statement does, independent of the session's transaction state. */
interface StatementFacts {
  readonly pins: ReadonlySet<PinReason>;
  readonly sequenceFunction: boolean;
  readonly txn: Txn;
  readonly discardAll: boolean;
  readonly settings: readonly SessionSetting[];
  readonly resets?: ResetPoint;
  readonly ddl?: boolean;
  readonly ddlTemp?: boolean;
  readonly deallocate?: string;
  readonly releasesDatabase?: string;
  readonly readWrite?: boolean;
}

interface Analysis {
  readonly outside: Classification;
  readonly inside: Classification;
}

const NO_PINS: ReadonlySet<PinReason> = new Set();
const NO_SETTINGS: readonly SessionSetting[] = Object.freeze([]);
const NO_PIN_LIST: readonly PinReason[] = Object.freeze([]);
const NO_RESETS: readonly ResetPoint[] = Object.freeze([]);

const LEXER_FACTS: Readonly<Record<Txn, StatementFacts>> = {
  [Txn.None]: { pins: NO_PINS, sequenceFunction: false, txn: Txn.None, discardAll: false, settings: NO_SETTINGS },
  [Txn.Open]: { pins: NO_PINS, sequenceFunction: false, txn: Txn.Open, discardAll: false, settings: NO_SETTINGS },
  [Txn.Close]: { pins: NO_PINS, sequenceFunction: false, txn: Txn.Close, discardAll: false, settings: NO_SETTINGS },
};
/** A statement the lexer clears that changes the catalog (CREATE, ALTER, DROP without a temporary word). */
const LEXER_DDL_FACTS: StatementFacts = { ...LEXER_FACTS[Txn.None], ddl: true };
/** First words of statements that change what later statements mean (the lexer's view of DDL). */
const DDL_HEADS: ReadonlySet<string> = new Set(['create', 'alter', 'drop', 'import']);

/**
 * Parse-tree statements that change the catalog in a way that can change a later statement's
 * analysis (its parameter or result types, which objects its names resolve to). Indexes,
 * grants, comments, statistics and triggers do not change what a statement means, and
 * PostgreSQL re-plans by itself for what changes only a plan.
 */
const DDL_NODES: ReadonlySet<string> = new Set([
  'CreateStmt',
  'CreateTableAsStmt',
  'CreateForeignTableStmt',
  'AlterTableStmt',
  'DropStmt',
  'RenameStmt',
  'AlterObjectSchemaStmt',
  'ViewStmt',
  'CreateSeqStmt',
  'AlterSeqStmt',
  'CreateEnumStmt',
  'AlterEnumStmt',
  'CompositeTypeStmt',
  'CreateRangeStmt',
  'CreateDomainStmt',
  'AlterDomainStmt',
  'AlterTypeStmt',
  'DefineStmt',
  'CreateFunctionStmt',
  'AlterFunctionStmt',
  'CreateCastStmt',
  'CreateSchemaStmt',
  'CreateExtensionStmt',
  'AlterExtensionStmt',
  'AlterExtensionContentsStmt',
  'DropOwnedStmt',
  'ImportForeignSchemaStmt',
  'CreateRuleStmt',
  'CreatePolicyStmt',
  'AlterPolicyStmt',
  'CreateConversionStmt',
  'CreateTransformStmt',
  'CreateOpClassStmt',
  'CreateOpFamilyStmt',
  'AlterOpFamilyStmt',
  'AlterOperatorStmt',
  'AlterCollationStmt',
]);

const UNPARSEABLE_FACTS: StatementFacts = {
  pins: new Set<PinReason>(['unparseable_statement']),
  sequenceFunction: false,
  txn: Txn.None,
  discardAll: false,
  settings: NO_SETTINGS,
};

/** What the prefilter's "nothing here" means, shared by every plain text. */
const PLAIN: Classification = Object.freeze({
  pins: Object.freeze([]) as readonly PinReason[],
  discardAll: false,
  readWrite: false,
  parsed: false,
  settings: Object.freeze([]) as readonly SessionSetting[],
  resets: Object.freeze([]) as readonly ResetPoint[],
  statements: 0,
  ddl: false,
  ddlTemp: false,
  deallocate: null,
  releasesDatabase: null,
});

export class StatementClassifier {
  private readonly cache: LruMap<string, Analysis>;
  private readonly cacheSize: number;
  private readonly maxCachedLength: number;
  private hits = 0;
  private misses = 0;

  /** Requires libpg-query's WASM module to be loaded already; prefer `StatementClassifier.create()`. */
  constructor(opts: StatementClassifierOptions = {}) {
    this.cacheSize = Math.max(0, Math.floor(opts.cacheSize ?? 5000));
    this.cache = new LruMap(this.cacheSize);
    this.maxCachedLength = opts.maxCachedLength ?? 8192;
    // Fail at startup, not by pinning every statement as unparseable later.
    try {
      parseSync('SELECT 1');
    } catch (err) {
      throw new Error('libpg-query is not loaded: construct the classifier with StatementClassifier.create()', {
        cause: err,
      });
    }
  }

  static async create(opts: StatementClassifierOptions = {}): Promise<StatementClassifier> {
    await loadModule();
    return new StatementClassifier(opts);
  }

  /**
   * Classify one Query (possibly several statements) or one Parse text.
   * `inTransactionBlock`: the session's last ReadyForQuery status was 'T' or 'E'.
   * The result is shared and frozen; do not mutate it.
   */
  classify(sql: string, inTransactionBlock: boolean): Classification {
    let analysis = this.cache.get(sql);
    if (analysis !== undefined) {
      this.hits++;
    } else {
      this.misses++;
      analysis = analyze(sql);
      if (this.cacheSize > 0 && sql.length <= this.maxCachedLength) this.cache.set(sql, analysis);
    }
    return inTransactionBlock ? analysis.inside : analysis.outside;
  }

  /**
   * Classify SQL text that sits in a message, bytes [start, end) of `msg` (UTF-8): a byte-level
   * prefilter clears ordinary statements without decoding them; the rest are decoded and
   * classified in full. The text is decoded only when the prefilter cannot tell.
   */
  classifyBytes(msg: Buffer, start: number, end: number, inTransactionBlock: boolean): Classification {
    if (isPlainSql(msg, start, end)) {
      this.plain++;
      return PLAIN;
    }
    return this.classify(msg.toString('utf8', start, end), inTransactionBlock);
  }

  /**
   * Normalized text for logs, at most DIGEST_MAX_LENGTH characters, never a literal value: built
   * only when a pin is logged. Texts the real parser takes use libpg-query's normalization ($n
   * placeholders); the others redactLiterals (? placeholders).
   */
  digest(sql: string): string {
    const cleared = lexStatements(sql).every(lexerClears);
    if (!cleared) {
      try {
        // normalize leaves constants in utility statements (COPY ... FROM 'file', column DEFAULTs,
        // EXPLAIN EXECUTE p(1)) and keeps comments; redact what it left.
        return digestOf(redactLiterals(normalizeSync(sql)));
      } catch {
        // Does not parse: redact the text as it is.
      }
    }
    return digestOf(redactLiterals(sql));
  }

  get cacheStats(): { readonly size: number; readonly hits: number; readonly misses: number; readonly plain: number } {
    return { size: this.cache.size, hits: this.hits, misses: this.misses, plain: this.plain };
  }

  private plain = 0;
}

// ---------------------------------------------------------------------------------------------
// Context-free analysis of one text.

function analyze(sql: string): Analysis {
  const lexed = lexStatements(sql);
  let cleared = true;
  for (const s of lexed) {
    if (!lexerClears(s)) {
      cleared = false;
      break;
    }
  }
  if (cleared) {
    return contextualize(
      lexed.map((s) => (DDL_HEADS.has(s.firstWord) ? LEXER_DDL_FACTS : LEXER_FACTS[lexerTxn(s)])),
      false,
    );
  }

  let facts: StatementFacts[];
  try {
    facts = factsFromParse(sql);
  } catch {
    // One bad statement fails the whole text; find which ones, so the others still count.
    facts = [];
    for (const s of lexed) {
      if (lexerClears(s)) {
        facts.push(DDL_HEADS.has(s.firstWord) ? LEXER_DDL_FACTS : LEXER_FACTS[lexerTxn(s)]);
        continue;
      }
      try {
        // The server refuses the whole text, so nothing in it resets anything.
        for (const f of factsFromParse(sql.slice(s.start, s.end))) facts.push({ ...f, resets: undefined });
      } catch {
        facts.push(UNPARSEABLE_FACTS);
      }
    }
  }
  return contextualize(facts, true);
}

/** Whether the lexer alone can decide the statement: no watched word, nothing opaque, no head that needs the grammar. */
function lexerClears(s: LexedStatement): boolean {
  if (s.opaque || s.words.length > 0 || PARSE_HEADS.has(s.firstWord)) return false;
  // DROP / ALTER / CREATE DATABASE: the parser says which database must have no other session.
  if (s.secondWord === 'database' && DDL_HEADS.has(s.firstWord)) return false;
  // BEGIN READ WRITE and friends carry options the parser reads (read-write requests).
  if (OPEN_HEADS.has(s.firstWord)) return isSimpleClose(s);
  if (CLOSE_HEADS.has(s.firstWord)) {
    // COMMIT AND CHAIN, COMMIT PREPARED 'x' and friends go to the parser; ROLLBACK TO [SAVEPOINT] x is common enough to clear here.
    return isSimpleClose(s) || (s.firstWord === 'rollback' && s.secondWord === 'to');
  }
  return true;
}

function isSimpleClose(s: LexedStatement): boolean {
  return s.tokenCount === 1 || (s.tokenCount === 2 && (s.secondWord === 'work' || s.secondWord === 'transaction'));
}

function lexerTxn(s: LexedStatement): Txn {
  if (OPEN_HEADS.has(s.firstWord)) return Txn.Open;
  if (CLOSE_HEADS.has(s.firstWord) && isSimpleClose(s)) return Txn.Close;
  return Txn.None;
}

/**
 * Apply the transaction context: sequence functions pin only in a statement that runs outside
 * any transaction block. A simple Query with several statements runs them all inside a block
 * (PostgreSQL wraps them in an implicit one, even after a COMMIT among them), so only a lone
 * statement outside an explicit block is exposed to its successor landing on another backend.
 */
function contextualize(facts: readonly StatementFacts[], parsed: boolean): Analysis {
  const implicitBlock = facts.length > 1;
  let discardAll = false;
  let readWrite = false;
  let anySequence = false;
  let ddl = false;
  let ddlTemp = false;
  let settings: SessionSetting[] | null = null;
  let resets: ResetPoint[] | null = null;
  // A lone DEALLOCATE name is the session's to answer (the name may be one of its protocol-level
  // statements); with other statements it goes to the server, pinned.
  const deallocate = facts.length === 1 ? (facts[0]!.deallocate ?? null) : null;
  // These cannot run in a transaction block, so only ever alone in a text.
  const releasesDatabase = facts.length === 1 ? (facts[0]!.releasesDatabase ?? null) : null;
  const always = new Set<PinReason>();
  for (const f of facts) {
    if (deallocate === null) for (const p of f.pins) always.add(p);
    if (f.ddl) ddl = true;
    if (f.ddlTemp) ddlTemp = true;
    if (f.discardAll) discardAll = true;
    if (f.readWrite) readWrite = true;
    if (f.sequenceFunction) anySequence = true;
    if (f.settings.length > 0) (settings ??= []).push(...f.settings);
    if (f.resets) (resets ??= []).push(f.resets);
  }
  const frozenSettings = settings === null ? NO_SETTINGS : Object.freeze(settings);
  const frozenResets = resets === null ? NO_RESETS : Object.freeze(resets);
  const build = (pins: ReadonlySet<PinReason>): Classification =>
    Object.freeze({ pins: orderedPins(pins), discardAll, readWrite, parsed, settings: frozenSettings, resets: frozenResets, statements: facts.length, ddl, ddlTemp, deallocate, releasesDatabase });

  const inside = build(always);
  if (!anySequence || implicitBlock) return { outside: inside, inside };

  const sequencePins = (inTransactionBlock: boolean): ReadonlySet<PinReason> => {
    let inBlock = inTransactionBlock;
    for (const f of facts) {
      if (f.sequenceFunction && !inBlock) {
        const pins = new Set(always);
        pins.add('sequence_function_outside_transaction');
        return pins;
      }
      if (f.txn === Txn.Open) inBlock = true;
      else if (f.txn === Txn.Close) inBlock = false;
    }
    return always;
  };
  const outside = sequencePins(false);
  const insidePins = sequencePins(true);
  return {
    outside: outside === always ? inside : build(outside),
    inside: insidePins === always ? inside : build(insidePins),
  };
}

function orderedPins(pins: ReadonlySet<PinReason>): readonly PinReason[] {
  if (pins.size === 0) return NO_PIN_LIST;
  return Object.freeze(PIN_REASONS.filter((r) => pins.has(r)));
}

function digestOf(text: string): string {
  if (text.length <= DIGEST_MAX_LENGTH) return text;
  // Do not split a surrogate pair.
  const code = text.charCodeAt(DIGEST_MAX_LENGTH - 1);
  const cut = code >= 0xd800 && code <= 0xdbff ? DIGEST_MAX_LENGTH - 1 : DIGEST_MAX_LENGTH;
  return text.slice(0, cut);
}

// ---------------------------------------------------------------------------------------------
// Facts from the parse tree.

class FactsBuilder {
  readonly pins = new Set<PinReason>();
  sequenceFunction = false;
  txn: Txn = Txn.None;
  discardAll = false;
  ddl = false;
  ddlTemp = false;
  deallocate: string | undefined;
  releasesDatabase: string | undefined;
  readWrite = false;
  readonly settings: SessionSetting[] = [];

  build(statement?: number, end?: number): StatementFacts {
    let resets: ResetPoint | undefined;
    if (statement !== undefined && end !== undefined) {
      let names: string[] | null = [];
      for (const s of this.settings) {
        if (s.kind === 'reset_all') names = null;
        else if (s.kind === 'reset' && names !== null) names.push(s.name);
      }
      if (names === null || names.length > 0) resets = { statement, end, names };
    }
    return {
      pins: this.pins.size === 0 ? NO_PINS : this.pins,
      sequenceFunction: this.sequenceFunction,
      txn: this.txn,
      discardAll: this.discardAll,
      settings: this.settings.length === 0 ? NO_SETTINGS : this.settings,
      ...(resets ? { resets } : {}),
      ...(this.ddl ? { ddl: true } : {}),
      ...(this.ddlTemp ? { ddlTemp: true } : {}),
      ...(this.deallocate !== undefined ? { deallocate: this.deallocate } : {}),
      ...(this.releasesDatabase !== undefined ? { releasesDatabase: this.releasesDatabase } : {}),
      ...(this.readWrite ? { readWrite: true } : {}),
    };
  }
}

/** Throws when the text does not parse. */
function factsFromParse(sql: string): StatementFacts[] {
  const tree = parseSync(sql);
  const stmts = tree.stmts ?? [];
  const length = Buffer.byteLength(sql);
  return stmts.map((raw, i) => {
    const f = new FactsBuilder();
    if (raw.stmt !== undefined) analyzeTopLevel(raw.stmt, () => sourceOfStatement(sql, raw), f);
    const from = raw.stmt_location ?? 0;
    return f.build(i, raw.stmt_len ? from + raw.stmt_len : length);
  });
}

/** The text of one parsed statement. */
function sourceOfStatement(sql: string, raw: RawStmt): string {
  // Locations are byte offsets into the UTF-8 text; stmt_len 0 means "to the end".
  const from = raw.stmt_location ?? 0;
  const len = raw.stmt_len ?? 0;
  if (Buffer.byteLength(sql) === sql.length) return (len === 0 ? sql.slice(from) : sql.slice(from, from + len)).trim();
  const bytes = Buffer.from(sql);
  return (len === 0 ? bytes.subarray(from) : bytes.subarray(from, from + len)).toString('utf8').trim();
}

/** The node type and body of a node-type-keyed object ({SelectStmt: {...}}). */
function unwrap(node: Node): [string, unknown] {
  for (const key in node) return [key, (node as Record<string, unknown>)[key]];
  return ['', undefined];
}

function analyzeTopLevel(stmt: Node, source: () => string, f: FactsBuilder, depth = 0): void {
  const [type, body] = unwrap(stmt);
  switch (type) {
    case 'TransactionStmt':
      f.txn = transactionEffect(body as TransactionStmt);
      if (asksReadWrite((body as TransactionStmt).options)) f.readWrite = true;
      return;
    case 'VariableSetStmt':
      // Only at top level: the same node inside CREATE FUNCTION ... SET or ALTER ROLE ... SET
      // configures something else and changes nothing in this session.
      analyzeVariableSet(body as VariableSetStmt, source, f);
      return;
    case 'ListenStmt':
      f.pins.add('listen');
      return;
    case 'DeclareCursorStmt': {
      const d = body as DeclareCursorStmt;
      if (((d.options ?? 0) & CURSOR_OPT_HOLD) !== 0) f.pins.add('cursor_with_hold');
      walk(d.query, f);
      return;
    }
    case 'PrepareStmt':
      // The prepared query is not run here.
      f.pins.add('sql_prepare');
      return;
    case 'DeallocateStmt': {
      const d = body as DeallocateStmt;
      if (d.isall === true) f.discardAll = true;
      else {
        f.pins.add('sql_prepare');
        if (depth === 0 && d.name !== undefined) f.deallocate = d.name;
      }
      return;
    }
    case 'LoadStmt':
      f.pins.add('load');
      return;
    case 'RenameStmt': {
      const r = body as { renameType?: string; subname?: string };
      if (r.renameType === 'OBJECT_DATABASE') f.releasesDatabase = r.subname;
      walk(stmt, f);
      return;
    }
    case 'DropdbStmt':
      f.releasesDatabase = (body as { dbname?: string }).dbname;
      return;
    case 'CreatedbStmt':
      f.releasesDatabase = databaseOption(body as { options?: Node[] }, 'template');
      return;
    case 'AlterDatabaseStmt':
      if (databaseOption(body as { options?: Node[] }, 'tablespace') !== undefined) f.releasesDatabase = (body as { dbname?: string }).dbname;
      return;
    case 'DiscardStmt':
      if ((body as DiscardStmt).target === 'DISCARD_ALL') {
        // DISCARD ALL is DEALLOCATE ALL plus RESET ALL (and more).
        f.discardAll = true;
        f.settings.push({ kind: 'reset_all' });
      }
      return;
    case 'DoStmt':
      analyzeDoBody(body as DoStmt, f, depth);
      return;
    default:
      walk(stmt, f);
  }
}

/** The value of a CREATE / ALTER DATABASE option (TEMPLATE, TABLESPACE), when it names one. */
function databaseOption(stmt: { options?: Node[] }, name: string): string | undefined {
  for (const o of stmt.options ?? []) {
    if (!('DefElem' in o) || o.DefElem.defname !== name) continue;
    // The grammar gives a name (TEMPLATE tpl) or a string (TEMPLATE = 'tpl') as a String node.
    const arg = o.DefElem.arg;
    return arg !== undefined && 'String' in arg ? arg.String.sval : undefined;
  }
  return undefined;
}

function transactionEffect(t: TransactionStmt): Txn {
  switch (t.kind) {
    case 'TRANS_STMT_BEGIN':
    case 'TRANS_STMT_START':
      return Txn.Open;
    case 'TRANS_STMT_COMMIT':
    case 'TRANS_STMT_ROLLBACK':
      // ... AND CHAIN starts a new transaction block at once.
      return t.chain === true ? Txn.None : Txn.Close;
    case 'TRANS_STMT_PREPARE':
      // PREPARE TRANSACTION dissociates the transaction from the session, which is then outside any block.
      return Txn.Close;
    default:
      return Txn.None;
  }
}

/** A transaction_read_only option set to false (READ WRITE). */
function asksReadWrite(options: readonly Node[] | undefined): boolean {
  for (const o of options ?? []) {
    if (!('DefElem' in o) || o.DefElem.defname !== 'transaction_read_only') continue;
    // The grammar writes READ ONLY / READ WRITE as the integer 1 / 0.
    const c = constOf(o.DefElem.arg);
    if (c?.ival !== undefined ? (c.ival.ival ?? 0) === 0 : literalBool(o.DefElem.arg) !== true) return true;
  }
  return false;
}

const READ_ONLY_SETTINGS: ReadonlySet<string> = new Set(['default_transaction_read_only', 'transaction_read_only']);

function analyzeVariableSet(v: VariableSetStmt, source: () => string, f: FactsBuilder): void {
  const name = (v.name ?? '').toLowerCase();
  if (v.kind === 'VAR_SET_MULTI' && asksReadWrite(v.args)) f.readWrite = true;
  if (READ_ONLY_SETTINGS.has(name)) {
    const value = v.kind === 'VAR_SET_VALUE' ? literalBool(v.args?.[0]) : undefined;
    // Off, or back to the server's default (off), or a value the classifier cannot read.
    if (v.kind !== 'VAR_SET_VALUE' || value !== true) f.readWrite = true;
  }
  switch (v.kind) {
    case 'VAR_RESET_ALL':
      // A reset to the session's defaults, which a proxy that tracks settings replays anyway;
      // pools send it on every checkout, so pinning on it would defeat multiplexing.
      f.settings.push({ kind: 'reset_all' });
      return;
    case 'VAR_SET_MULTI':
      // SET TRANSACTION ... and SET TRANSACTION SNAPSHOT last one transaction.
      if (name.startsWith('transaction')) return;
      if (name === 'session characteristics') {
        // Lasts the session: it sets default_transaction_isolation, _read_only and _deferrable,
        // which are tracked like any SET (read back, replayed elsewhere).
        f.pins.add('set');
        for (const arg of v.args ?? []) {
          if ('DefElem' in arg && arg.DefElem.defname?.startsWith('transaction_')) {
            f.settings.push({ kind: 'set', name: `default_${arg.DefElem.defname}`, sql: source() });
          } else {
            f.settings.push({ kind: 'opaque' });
          }
        }
        return;
      }
      break;
    default:
      break;
  }
  if (name === 'search_path' && searchPathCreatesTemp((v.args ?? []).map(literalString))) {
    // Unqualified CREATE TABLE then creates temporary tables, even after SET LOCAL if created in the same transaction.
    f.pins.add('temporary_object');
  }
  if (v.is_local === true) return;
  f.pins.add(ROLE_SETTINGS.has(name) ? 'set_role' : 'set');
  // SET x TO DEFAULT is RESET x.
  f.settings.push(v.kind === 'VAR_RESET' || v.kind === 'VAR_SET_DEFAULT' ? { kind: 'reset', name } : { kind: 'set', name, sql: source() });
}

/**
 * Whether a search_path value puts a temporary schema first for creation ("$user" is skipped:
 * it usually names no schema). `undefined` elements are non-literal values.
 */
function searchPathCreatesTemp(elements: readonly (string | undefined)[]): boolean {
  for (const e of elements) {
    if (e === undefined) return false;
    if (e === '$user') continue;
    return isTempSchema(e);
  }
  return false;
}

/** Split a search_path string like set_config receives it: comma-separated, "quoted" elements keep case. */
function splitSearchPath(value: string): string[] {
  return value.split(',').map((part) => {
    const t = part.trim();
    return t.length >= 2 && t.startsWith('"') && t.endsWith('"') ? t.slice(1, -1).replaceAll('""', '"') : t.toLowerCase();
  });
}

function isTempSchema(schema: string | undefined): boolean {
  return schema !== undefined && (schema === 'pg_temp' || schema.startsWith('pg_temp_'));
}

function isTempRelation(rel: RangeVar | undefined): boolean {
  return rel !== undefined && (rel.relpersistence === 't' || isTempSchema(rel.schemaname));
}

/** A CREATE of a temporary object (lasting or not): it changes what names mean in this session only. */
function createsTemporary(type: string, body: object): boolean {
  switch (type) {
    case 'CreateStmt':
      return isTempRelation((body as CreateStmt).relation);
    case 'ViewStmt':
      return isTempRelation((body as ViewStmt).view);
    case 'CreateSeqStmt':
      return isTempRelation((body as CreateSeqStmt).sequence);
    case 'CreateTableAsStmt':
      return isTempRelation((body as CreateTableAsStmt).into?.rel);
    case 'SelectStmt':
      return isTempRelation((body as SelectStmt).intoClause?.rel);
    case 'CompositeTypeStmt':
      return isTempRelation((body as { typevar?: RangeVar }).typevar);
    default:
      return false;
  }
}

/** A temporary relation that disappears at commit cannot outlive the transaction, so needs no pin. */
function isLastingTempInto(into: IntoClause | undefined): boolean {
  return into !== undefined && isTempRelation(into.rel) && into.onCommit !== 'ONCOMMIT_DROP';
}

function qualifiedInTempSchema(names: readonly Node[] | undefined): boolean {
  return names !== undefined && names.length >= 2 && isTempSchema(stringValue(names[names.length - 2]));
}

/**
 * Visit every object in the tree. For the node types that matter, inspect them; `visit`
 * returns whether to look further inside (not into stored definitions that this statement
 * does not run: view queries, function bodies, column defaults of a new table, rules, triggers,
 * policies).
 */
function walk(node: unknown, f: FactsBuilder): void {
  if (typeof node !== 'object' || node === null) return;
  if (Array.isArray(node)) {
    for (const item of node) walk(item, f);
    return;
  }
  const record = node as Record<string, unknown>;
  for (const key in record) {
    const value = record[key];
    if (typeof value === 'object' && value !== null && visit(key, value, f)) walk(value, f);
  }
}

function visit(type: string, body: object, f: FactsBuilder): boolean {
  if (DDL_NODES.has(type) || (type === 'SelectStmt' && (body as SelectStmt).intoClause !== undefined)) {
    if (createsTemporary(type, body)) f.ddlTemp = true;
    else f.ddl = true;
  }
  switch (type) {
    case 'FuncCall':
      analyzeFuncCall(body as FuncCall, f);
      return true;
    case 'CreateStmt': {
      const c = body as CreateStmt;
      if (isTempRelation(c.relation) && c.oncommit !== 'ONCOMMIT_DROP') f.pins.add('temporary_object');
      return false;
    }
    case 'ViewStmt':
      if (isTempRelation((body as ViewStmt).view)) f.pins.add('temporary_object');
      return false;
    case 'CreateSeqStmt':
      if (isTempRelation((body as CreateSeqStmt).sequence)) f.pins.add('temporary_object');
      return false;
    case 'CreateTableAsStmt':
      if (isLastingTempInto((body as CreateTableAsStmt).into)) f.pins.add('temporary_object');
      return true;
    case 'SelectStmt':
      if (isLastingTempInto((body as SelectStmt).intoClause)) f.pins.add('temporary_object');
      return true;
    case 'ExecuteStmt':
      // Also inside EXPLAIN EXECUTE and CREATE TABLE ... AS EXECUTE.
      f.pins.add('sql_prepare');
      return true;
    case 'CreateFunctionStmt':
      if (qualifiedInTempSchema((body as CreateFunctionStmt).funcname)) f.pins.add('temporary_object');
      return false;
    case 'CompositeTypeStmt':
      if (isTempRelation((body as { typevar?: RangeVar }).typevar)) f.pins.add('temporary_object');
      return false;
    case 'CreateEnumStmt':
    case 'CreateRangeStmt':
      if (qualifiedInTempSchema((body as { typeName?: Node[] }).typeName)) f.pins.add('temporary_object');
      return false;
    case 'CreateDomainStmt':
      if (qualifiedInTempSchema((body as { domainname?: Node[] }).domainname)) f.pins.add('temporary_object');
      return false;
    case 'DefineStmt':
      if (qualifiedInTempSchema((body as { defnames?: Node[] }).defnames)) f.pins.add('temporary_object');
      return false;
    case 'RuleStmt':
    case 'CreateTrigStmt':
    case 'CreatePolicyStmt':
    case 'AlterPolicyStmt':
      return false;
    default:
      return true;
  }
}

function analyzeFuncCall(fc: FuncCall, f: FactsBuilder): void {
  const names = fc.funcname ?? [];
  const name = stringValue(names[names.length - 1]);
  if (name === undefined) return;
  // A schema other than pg_catalog names a user function that merely shares the name.
  if (names.length >= 2 && stringValue(names[names.length - 2]) !== 'pg_catalog') return;
  if (SEQUENCE_FUNCTIONS.has(name)) {
    f.sequenceFunction = true;
  } else if (SESSION_ADVISORY_LOCKS.has(name)) {
    f.pins.add('session_advisory_lock');
  } else if (name === 'set_config') {
    analyzeSetConfig(fc.args ?? [], f);
  }
}

function analyzeSetConfig(args: readonly Node[], f: FactsBuilder): void {
  const rawName = literalString(args[0]);
  const name = rawName?.toLowerCase();
  const value = literalString(args[1]);
  const isLocal = literalBool(args[2]);
  if (name !== undefined && READ_ONLY_SETTINGS.has(name) && (value === undefined || parseBoolText(value) !== true)) f.readWrite = true;
  if (name === 'search_path' && value !== undefined && searchPathCreatesTemp(splitSearchPath(value))) {
    f.pins.add('temporary_object');
  }
  if (isLocal === true) return;
  f.pins.add(name !== undefined && ROLE_SETTINGS.has(name) ? 'set_role' : 'set');
  if (name !== undefined && value !== undefined && isLocal === false) {
    f.settings.push({
      kind: 'set',
      name,
      sql: `SELECT pg_catalog.set_config(${quoteLiteral(name)}, ${quoteLiteral(value)}, false)`,
    });
  } else {
    f.settings.push({ kind: 'opaque' });
  }
}

/**
 * DO bodies are strings to the grammar but run in this session. A PL/pgSQL body is parsed with
 * PostgreSQL's own PL/pgSQL parser, and every SQL statement in it, at any depth (IF, LOOP,
 * exception blocks, EXECUTE of a constant string), is analyzed as if the client had sent it:
 * a SET three levels deep lasts the session just as a top-level one does. What cannot be seen
 * before it runs (EXECUTE of a computed string, another language) pins.
 */
function analyzeDoBody(d: DoStmt, f: FactsBuilder, depth: number): void {
  let source: string | undefined;
  let language = 'plpgsql';
  for (const arg of d.args ?? []) {
    if (!('DefElem' in arg)) continue;
    if (arg.DefElem.defname === 'as') source = stringValue(arg.DefElem.arg);
    if (arg.DefElem.defname === 'language') language = (stringValue(arg.DefElem.arg) ?? '').toLowerCase();
  }
  if (source === undefined) return;
  if (language !== 'plpgsql' || depth > MAX_NESTING) {
    f.pins.add('dynamic_sql');
    return;
  }
  let tree: unknown;
  try {
    tree = parsePlPgSQLSync(wrapAsFunction(source));
  } catch {
    // The server refuses it too; look for the watched words anyway, in case it does not.
    scanWords(source, f);
    return;
  }
  walkPlPgSql(tree, f, depth);
}

/** Nested DO blocks and EXECUTE strings deeper than this are not followed: they pin. */
const MAX_NESTING = 8;

/** The PL/pgSQL parser takes a CREATE FUNCTION; a dollar quote the body does not contain wraps it. */
function wrapAsFunction(body: string): string {
  let tag = 'dbproxy';
  while (body.includes(`$${tag}$`)) tag += '_';
  return `CREATE FUNCTION dbproxy_do() RETURNS void LANGUAGE plpgsql AS $${tag}$${body}$${tag}$`;
}

/** PL/pgSQL statement types whose `query` is a string expression computed at run time (dynamic SQL). */
const DYNAMIC_SQL_NODES: ReadonlySet<string> = new Set(['PLpgSQL_stmt_dynexecute', 'PLpgSQL_stmt_dynfors']);

interface PlPgSqlExpr {
  query?: string;
  parseMode?: number;
}

function walkPlPgSql(node: unknown, f: FactsBuilder, depth: number): void {
  if (typeof node !== 'object' || node === null) return;
  if (Array.isArray(node)) {
    for (const item of node) walkPlPgSql(item, f, depth);
    return;
  }
  const record = node as Record<string, unknown>;
  for (const key in record) {
    const value = record[key];
    if (typeof value !== 'object' || value === null) continue;
    if (key === 'PLpgSQL_expr') {
      analyzePlPgSqlExpr(value as PlPgSqlExpr, f, depth);
      continue;
    }
    if (DYNAMIC_SQL_NODES.has(key) || (key === 'PLpgSQL_stmt_open' && 'dynquery' in value) || (key === 'PLpgSQL_stmt_return_query' && 'dynquery' in value)) {
      const body = value as Record<string, unknown>;
      const expr = ((body.query ?? body.dynquery) as { PLpgSQL_expr?: PlPgSqlExpr } | undefined)?.PLpgSQL_expr;
      analyzeDynamicSql(expr?.query, f, depth);
      // Its other expressions (USING arguments, loop bodies) are ordinary ones.
      const rest: Record<string, unknown> = { ...body };
      delete rest.query;
      delete rest.dynquery;
      walkPlPgSql(rest, f, depth);
      continue;
    }
    walkPlPgSql(value, f, depth);
  }
}

/** PostgreSQL's RawParseMode values that PL/pgSQL stores with each expression. */
const PARSE_MODE_DEFAULT = 0;
const PARSE_MODE_EXPR = 2;

function analyzePlPgSqlExpr(expr: PlPgSqlExpr, f: FactsBuilder, depth: number): void {
  const text = expr.query;
  if (text === undefined) return;
  const mode = expr.parseMode ?? PARSE_MODE_DEFAULT;
  const sql = mode === PARSE_MODE_DEFAULT ? text : mode === PARSE_MODE_EXPR ? `SELECT ${text}` : null;
  if (sql !== null && analyzeNestedSql(sql, f, depth)) return;
  // Assignments ("x := expr") and anything that does not parse alone: the watched words.
  scanWords(text, f);
}

/** EXECUTE of a string: a constant string is analyzed like any statement; a computed one cannot be. */
function analyzeDynamicSql(text: string | undefined, f: FactsBuilder, depth: number): void {
  if (text === undefined) {
    f.pins.add('dynamic_sql');
    return;
  }
  let constant: string | undefined;
  try {
    const stmts = parseSync(`SELECT ${text}`).stmts ?? [];
    const select = stmts.length === 1 && stmts[0]!.stmt !== undefined && 'SelectStmt' in stmts[0]!.stmt ? stmts[0]!.stmt.SelectStmt : undefined;
    const targets = select?.targetList ?? [];
    if (targets.length === 1 && select?.fromClause === undefined && 'ResTarget' in targets[0]!) constant = literalString(targets[0].ResTarget.val);
  } catch {
    constant = undefined;
  }
  if (constant === undefined || !analyzeNestedSql(constant, f, depth + 1)) {
    f.pins.add('dynamic_sql');
    // It may change the catalog too: nobody can tell before it runs.
    f.ddl = true;
  }
}

/** Analyzes SQL run from inside a DO block; false when it does not parse. */
function analyzeNestedSql(sql: string, f: FactsBuilder, depth: number): boolean {
  let stmts: RawStmt[];
  try {
    stmts = parseSync(sql).stmts ?? [];
  } catch {
    return false;
  }
  for (const raw of stmts) {
    if (raw.stmt === undefined) continue;
    const txn = f.txn;
    analyzeTopLevel(raw.stmt, () => sourceOfStatement(sql, raw), f, depth + 1);
    // COMMIT inside a DO block ends that block's own transaction, not the client's view of it.
    f.txn = txn;
  }
  return true;
}

/** The watched words of a text the grammar cannot take alone (PL/pgSQL assignments, unparseable bodies). */
function scanWords(source: string, f: FactsBuilder): void {
  for (const s of lexStatements(source)) {
    for (const w of s.words) {
      switch (w) {
        case 'temp':
        case 'temporary':
        case 'pg_temp':
          f.pins.add('temporary_object');
          break;
        case 'listen':
          f.pins.add('listen');
          break;
        case 'nextval':
        case 'setval':
        case 'currval':
        case 'lastval':
          f.sequenceFunction = true;
          break;
        case 'set_config':
          f.pins.add('set');
          f.settings.push({ kind: 'opaque' });
          break;
        case 'pg_advisory_lock':
        case 'pg_advisory_lock_shared':
        case 'pg_try_advisory_lock':
        case 'pg_try_advisory_lock_shared':
          f.pins.add('session_advisory_lock');
          break;
        default:
          // hold and execute mean other things in PL/pgSQL.
          break;
      }
    }
    const head = s.firstWord === 'begin' ? s.secondWord : s.firstWord;
    if (DDL_HEADS.has(head)) f.ddl = true;
    if (head === 'set' || head === 'reset') {
      f.pins.add('set');
      f.settings.push({ kind: 'opaque' });
    }
  }
}

function stringValue(node: Node | undefined): string | undefined {
  if (node === undefined || !('String' in node)) return undefined;
  return node.String.sval ?? '';
}

function constOf(node: Node | undefined): A_Const | undefined {
  return node !== undefined && 'A_Const' in node ? node.A_Const : undefined;
}

function castOf(node: Node | undefined): TypeCast | undefined {
  return node !== undefined && 'TypeCast' in node ? node.TypeCast : undefined;
}

/** The value of a string constant, possibly cast ('x'::text); undefined when not a literal string. */
function literalString(node: Node | undefined): string | undefined {
  const c = constOf(node);
  if (c !== undefined) return c.sval !== undefined ? (c.sval.sval ?? '') : undefined;
  const cast = castOf(node);
  return cast !== undefined ? literalString(cast.arg) : undefined;
}

/** The value of a boolean constant (true, 'on', 'true'::bool, 1::boolean); undefined when not a literal. */
function literalBool(node: Node | undefined): boolean | undefined {
  const c = constOf(node);
  if (c !== undefined) {
    if (c.boolval !== undefined) return c.boolval.boolval === true;
    if (c.sval !== undefined) return parseBoolText(c.sval.sval ?? '');
    return undefined;
  }
  const cast = castOf(node);
  if (cast === undefined) return undefined;
  const inner = constOf(cast.arg);
  // An integer only becomes a boolean through an explicit cast.
  if (inner?.ival !== undefined) return (inner.ival.ival ?? 0) !== 0;
  return literalBool(cast.arg);
}

/** PostgreSQL's parse_bool: case-insensitive, unique prefixes of true/false/yes/no, on/off, 1/0. */
function parseBoolText(text: string): boolean | undefined {
  const s = text.trim().toLowerCase();
  if (s.length === 0) return undefined;
  if ('true'.startsWith(s) || 'yes'.startsWith(s) || s === 'on' || s === '1') return true;
  if ('false'.startsWith(s) || 'no'.startsWith(s) || s === 'off' || s === 'of' || s === '0') return false;
  return undefined;
}

function quoteLiteral(value: string): string {
  return `'${value.replaceAll("'", "''")}'`;
}
