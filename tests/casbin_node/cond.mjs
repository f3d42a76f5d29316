// remit's condition grammar (service/remit/model/conditions.py), ported for node-casbin:
// the matcher function cond(p.cond, r.ctx) of the exported model.conf.
//
// A condition is terms joined by "&" ("" is always true); a term is
//   fact op value    op: == != <= < >= > (written without spaces) or
//                        in, not_in, has, lacks (spaces around them)
// value: true/false, an integer, a name, or for in/not_in names joined by "|".
// Text outside the grammar, a fact the request does not carry, or a value of the wrong
// type throws: a fault is never an allow. Nothing is evaluated as code.

const TERM =
  /^([a-z][a-z0-9_]*)\s*(<=|>=|==|!=|<|>|\s+in\s+|\s+not_in\s+|\s+has\s+|\s+lacks\s+)\s*([A-Za-z0-9_|]+)$/;

const parsed = new Map();

/** The terms of a condition text: [{fact, op, value}], cached. */
export function parse(text) {
  let terms = parsed.get(text);
  if (terms !== undefined) return terms;
  terms = [];
  if (text.trim() !== '') {
    for (const raw of text.split('&')) {
      const m = TERM.exec(raw.trim());
      if (m === null) throw new Error(`condition term outside the grammar: ${JSON.stringify(raw.trim())}`);
      const [, fact, rawOp, text] = m;
      const op = rawOp.trim();
      let value;
      if (op === 'in' || op === 'not_in') value = new Set(text.split('|'));
      else if (op === 'has' || op === 'lacks') value = text;
      else if (text === 'true' || text === 'false') value = text === 'true';
      else if (/^-?[0-9]+$/.test(text)) value = Number(text);
      else value = text;
      terms.push({ fact, op, value });
    }
  }
  parsed.set(text, terms);
  return terms;
}

function isInteger(v) {
  return typeof v === 'number' && Number.isSafeInteger(v);
}

/** Whether one term holds in the typed context (a plain object from the request). */
export function holds(term, ctx) {
  const { fact, op, value: want } = term;
  if (!Object.hasOwn(ctx, fact)) throw new Error(`${fact}: not in the request context`);
  const actual = ctx[fact];
  switch (op) {
    case '==':
    case '!=':
      if (typeof actual !== typeof want) throw new Error(`${fact}: expected a ${typeof want}`);
      return (actual === want) === (op === '==');
    case 'has':
    case 'lacks':
      if (!Array.isArray(actual)) throw new Error(`${fact}: expected a role set`);
      return actual.includes(want) === (op === 'has');
    case 'in':
    case 'not_in':
      if (typeof actual !== 'string') throw new Error(`${fact}: expected a name`);
      return want.has(actual) === (op === 'in');
    case '<=':
    case '<':
    case '>=':
    case '>':
      if (!isInteger(actual)) throw new Error(`${fact}: expected an integer`);
      if (!isInteger(want)) throw new Error(`${fact}: condition value is not an integer`);
      if (op === '<=') return actual <= want;
      if (op === '<') return actual < want;
      if (op === '>=') return actual >= want;
      return actual > want;
    default:
      throw new Error(`unknown operator ${op}`);
  }
}

/** cond(p.cond, r.ctx): every term holds (stops at the first that does not). */
export function cond(text, ctx) {
  if (typeof text !== 'string' || ctx === null || typeof ctx !== 'object') {
    throw new Error('cond(text, ctx): expected the condition text and the context object');
  }
  return parse(text).every((term) => holds(term, ctx));
}
