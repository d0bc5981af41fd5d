/**
 * Evaluates a MongoDB filter against a document already read, for servers whose filters beyond
 * `_id` cannot be trusted or afforded (server-adapter.ts). Only the operators conditional updates
 * use: equality (null matches a missing field), `$ne`, `$lt`, `$lte`, `$gt`, `$gte`, `$or`, `$and`,
 * dotted paths. Anything else throws, so a new condition cannot be silently treated as true.
 */

type Doc = Record<string, unknown>;

function valueAt(doc: unknown, path: string): unknown {
  let v: unknown = doc;
  for (const key of path.split(".")) {
    if (v === null || typeof v !== "object") return undefined;
    v = (v as Doc)[key];
  }
  return v;
}

/** Comparable form of a scalar: Dates by time; other objects are not compared. */
function scalar(v: unknown): string | number | boolean | null | undefined {
  if (v instanceof Date) return v.getTime();
  if (v === null || v === undefined || typeof v === "string" || typeof v === "number" || typeof v === "boolean") {
    return v;
  }
  throw new Error(`matchesCondition: cannot compare ${JSON.stringify(v)}`);
}

function equals(actual: unknown, expected: unknown): boolean {
  if (expected === null) return actual === null || actual === undefined;
  if (Array.isArray(actual)) return actual.some((a) => equals(a, expected));
  const a = scalar(actual);
  const e = scalar(expected);
  // Dates equal Dates only, numbers numbers.
  return a === e && actual instanceof Date === expected instanceof Date;
}

function compare(actual: unknown, expected: unknown, test: (order: number) => boolean): boolean {
  if (actual === null || actual === undefined || expected === null) return false;
  if (actual instanceof Date !== expected instanceof Date) return false;
  const a = scalar(actual);
  const e = scalar(expected);
  if (typeof a !== typeof e) return false;
  return test(a! < e! ? -1 : a! > e! ? 1 : 0);
}

const OPERATORS: Record<string, (actual: unknown, expected: unknown) => boolean> = {
  $eq: equals,
  $ne: (a, e) => !equals(a, e),
  $lt: (a, e) => compare(a, e, (o) => o < 0),
  $lte: (a, e) => compare(a, e, (o) => o <= 0),
  $gt: (a, e) => compare(a, e, (o) => o > 0),
  $gte: (a, e) => compare(a, e, (o) => o >= 0),
};

function matchesField(actual: unknown, expected: unknown): boolean {
  const isOperators =
    expected !== null &&
    typeof expected === "object" &&
    !(expected instanceof Date) &&
    Object.keys(expected).every((k) => k.startsWith("$"));
  if (!isOperators) return equals(actual, expected);
  return Object.entries(expected as Doc).every(([op, value]) => {
    const test = OPERATORS[op];
    if (!test) throw new Error(`matchesCondition: unsupported operator ${op}`);
    return test(actual, value);
  });
}

/** Whether `doc` matches `condition`. */
export function matchesCondition(doc: unknown, condition: Doc): boolean {
  return Object.entries(condition).every(([key, expected]) => {
    if (key === "$or") return (expected as Doc[]).some((c) => matchesCondition(doc, c));
    if (key === "$and") return (expected as Doc[]).every((c) => matchesCondition(doc, c));
    if (key.startsWith("$")) throw new Error(`matchesCondition: unsupported operator ${key}`);
    return matchesField(valueAt(doc, key), expected);
  });
}
